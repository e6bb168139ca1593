"""Everything reverify decides about one agent, composed: the processors behind one key of the ``agents`` table.

One agent's inputs (outcomes, errors, metrics, approvals, operator commands)
all arrive on one partition, so one :class:`AgentPipeline` sees them in order
and can pass evidence between its processors without another topic: Q-values
and drift reports feed the assurance cases, rollback alerts feed the alert
manager's inhibition, and an assurance ``rollback`` action goes straight to the
learning loop that knows the previous best variant.

>>> p = AgentPipeline("hunter", PipelineConfig())
>>> out = p.on_event("AgentOutcome", {"event_id": "e1", "ts": 0, "agent_name": "hunter", "task_type": "scrape",
...     "variant_id": "v1", "success": True, "reward": 0.9, "latency_ms": 800.0, "cost_usd": 0.002,
...     "features": {}, "attributes": {}}, (0, 7))
>>> sorted({e.record_type for e in out})
['ActiveVariant', 'VariantDecision']
>>> [e.key for e in p.flush()]  # Q-values are held until the host flushes them (LearningSettings)
['hunter/scrape/v1']
>>> p.on_event("AgentMetric", {"event_id": "m", "ts": 0, "agent_name": "hunter", "name": "q", "value": 1.0}, (0, 7))
[]
>>> AgentPipeline.from_dict(p.to_dict(), PipelineConfig()).to_dict() == p.to_dict()
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from reverify.processors.alerting import AlertingSettings, AlertManager
from reverify.processors.assurance import AssuranceCase, AssuranceEvaluator, parse_cases
from reverify.processors.base import Emission
from reverify.processors.drift import DriftProcessor, DriftSettings, feed_fetch
from reverify.processors.errors import ErrorMonitor, ErrorSettings
from reverify.processors.feedback import FeedbackJoin, FeedbackSettings, Judgment
from reverify.processors.incidents import IncidentSettings, IncidentTracker
from reverify.processors.learning import LearningLoop, LearningSettings
from reverify.processors.models import ModelMonitor, ModelSettings, prediction_feature
from reverify.processors.slo import Slo, SloEvaluator, SloSettings, parse_slos


@dataclass(frozen=True)
class PipelineConfig:
    """The settings of every processor, read once per worker; ``version`` is stamped on alerts and verdicts."""

    learning: LearningSettings = field(default_factory=LearningSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    alerting: AlertingSettings = field(default_factory=AlertingSettings)
    errors: ErrorSettings = field(default_factory=ErrorSettings)
    cases: tuple[AssuranceCase, ...] = ()
    incidents: IncidentSettings = field(default_factory=IncidentSettings)
    version: str = ""
    slo: SloSettings = field(default_factory=SloSettings)
    slos: tuple[Slo, ...] = ()
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    # the drift series every pipeline of this config (one worker's) has seen: how a fleet budget is split

    @classmethod
    def from_settings(cls, settings: Any) -> PipelineConfig:
        """Build from :class:`streams.settings.Settings` sections ``[learning]``, ``[drift]`` ... ``[[assurance]]``,
        ``[slo_alerting]`` and ``[[slo]]``."""
        learning = settings.section("learning", LearningSettings)
        drift = settings.section("drift", DriftSettings)
        alerting = settings.section("alerting", AlertingSettings)
        errors = settings.section("errors", ErrorSettings)
        cases = tuple(parse_cases(settings.sections.get("assurance", [])))
        incidents = settings.section("incidents", IncidentSettings)
        slo = settings.section("slo_alerting", SloSettings)
        slos = tuple(parse_slos(settings.sections.get("slo", []), slo))
        parts: list[Any] = [asdict(learning), asdict(alerting), asdict(errors), [c.to_dict() for c in cases]]
        parts.append(repr(drift))
        if incidents != IncidentSettings():  # versions of older configs hold
            parts.append(asdict(incidents))
        if slos:  # configurations without SLOs keep the version they had
            parts += [asdict(slo), [s.to_dict() for s in slos]]
        feedback = settings.section("feedback", FeedbackSettings)
        models = settings.section("models", ModelSettings)
        if feedback != FeedbackSettings() or feedback.overrides:  # the version of a config without them is unchanged
            parts.append(asdict(feedback))
        if models != ModelSettings():
            parts.append(asdict(models))
        text = json.dumps(parts, sort_keys=True, default=str)
        version = hashlib.sha256(text.encode()).hexdigest()[:12]
        return cls(
            learning,
            drift,
            alerting,
            errors,
            cases,
            incidents,
            version,
            slo=slo,
            slos=slos,
            feedback=feedback,
            models=models,
        )


class AgentPipeline:
    """Routes one agent's decoded inputs to its processors and returns what they emit."""

    def __init__(self, agent_name: str, config: PipelineConfig) -> None:
        self.agent_name = agent_name
        self.config = config
        self.loops: dict[str, LearningLoop] = {}
        self.drift = DriftProcessor(config.drift)
        self.alerts = AlertManager(config.alerting)
        self.errors = ErrorMonitor(config.errors, self.alerts, settings_version=config.version)
        self.assurance = AssuranceEvaluator(config.cases, self.alerts, config.version)
        self.incidents = IncidentTracker(config.incidents, self.alerts, config.version)
        self.slos = SloEvaluator(config.slos, self.alerts, config.version, config.slo)
        self.join = FeedbackJoin(config.feedback)
        self.models = ModelMonitor(config.models, self.alerts)

    # What the incident tracker asks of the other processors (processors.incidents.Context).
    def failing_since(self, agent: str, component: str) -> int | None:
        return self.errors.failing_since(agent, component)

    def drift_in_alarm(self, agent: str) -> list[str]:
        return self.drift.in_alarm(agent)

    def open_circuits(self, agent: str) -> list[str]:
        return self.errors.open_circuits(agent)

    @staticmethod
    def configure(settings: Any) -> PipelineConfig:
        return PipelineConfig() if settings is None else PipelineConfig.from_settings(settings)

    def loop(self, task_type: str) -> LearningLoop:
        loop = self.loops.get(task_type)
        if loop is None:
            loop = self.loops[task_type] = LearningLoop(self.agent_name, task_type, self.config.learning)
        return loop

    def on_event(self, record_type: str, record: dict[str, Any], offset: tuple[int, int]) -> list[Emission]:
        """Apply one input; every processor skips an offset it already applied (a replay)."""
        out: list[Emission] = []
        feed_fetch([self.feed([(record_type, record, offset)], out.extend)])
        return out

    def feed(self, inputs: Sequence[Input], emit: Callable[[list[Emission]], None]) -> AgentFeed:
        """This agent's ``inputs`` (in order) as a :class:`~processors.drift.LookFeed`: :func:`~processors.drift.
        feed_fetch` applies them, with the drift looks of every agent of a fetch taken together; ``emit`` gets each
        input's emissions, exactly what :meth:`on_event` returns for it, in input order.

        >>> config = PipelineConfig()
        >>> def outcome(agent, i):
        ...     return ("AgentOutcome", {"event_id": f"{agent}{i}", "ts": i, "agent_name": agent, "task_type": "t",
        ...         "variant_id": "v1", "success": True, "reward": (i * 37 % 100) / 100, "latency_ms": 100.0 + i % 7,
        ...         "cost_usd": None, "features": {}, "attributes": {}}, (0, i))
        >>> inputs = {a: [outcome(a, i) for i in range(1300)] for a in ("ann", "bob")}
        >>> together, alone = [], []
        >>> feed_fetch([AgentPipeline(a, config).feed(xs, together.append) for a, xs in inputs.items()])
        >>> for a, xs in inputs.items():
        ...     p = AgentPipeline(a, config)
        ...     alone += [p.on_event(*x) for x in xs]
        >>> sorted(map(repr, together)) == sorted(map(repr, alone))
        True
        >>> sum(e.record_type == "DriftReport" for out in together for e in out)  # 300 values after each baseline
        24
        """
        return AgentFeed(self, inputs, emit)

    def _apply(self, record_type: str, record: dict[str, Any], offset: tuple[int, int]) -> list[Emission]:
        """Apply one input that is not an outcome (those go through :meth:`_outcomes`)."""
        if record_type == "AgentError":
            task = record.get("task_type")
            out = self.loops[task].on_error(record, offset) if task in self.loops else []
            out += self._follow(out)  # an error alarm's rollback alert inhibits like any other
            out += self.errors.on_error(record, offset)
            out += self.assurance.on_error(record, offset)
            self.incidents.on_error(record, offset)
            out += self.slos.on_error(record, offset)
        elif record_type == "AgentMetric":
            out = self.drift.on_metric(record, offset)
            out += self._follow(out)
            out += self.assurance.on_metric(record, offset)
            out += self.slos.on_metric(record, offset)
        elif record_type == "Approval":
            task = record.get("task_type")
            loops = [self.loops[task]] if task in self.loops else list(self.loops.values())
            out = [e for loop in loops for e in loop.on_approval(record, offset)]
            out += self._follow(out)  # an approval may resolve a rollback alert: its inhibition ends
        elif record_type == "AgentFeedback":
            out = self._feedback(record, offset)
        elif record_type == "Command":
            out = self.on_command(record)
        else:
            out = []
        return self._act(out, manual=record_type == "Command")  # a command is a person's action

    def _outcomes(self, run: Sequence[Input], emit: Callable[[list[Emission]], None]) -> tuple[int, _Stopped | None]:
        """Apply a run of outcomes, drift fed in bulk (:meth:`DriftProcessor.feed`), until one has looks due: how
        many were taken and the one that stopped. Drift neither reads nor is read by the other processors and emits
        nothing before a look, so each outcome's emissions are :meth:`on_event`'s."""
        records, offsets = [x[1] for x in run], [x[2] for x in run]
        if any(r.get("awaiting_feedback") for r in records):
            records = [_unjudged(r) if r.get("awaiting_feedback") else r for r in records]  # no reward to watch yet
        learn, done = self._learn, 0
        while done < len(run):
            fed, pushed, due = self.drift.feed(records[done:], offsets[done:])
            for _, record, offset in run[done : done + fed - 1]:
                emit(self._end_outcome(record, offset, learn(record, offset)))
            done += fed
            _, record, offset = run[done - 1]
            out = learn(record, offset) + pushed
            if due:
                return done, _Stopped(record, offset, out, due)
            emit(self._end_outcome(record, offset, out))
        return done, None

    def _finish(self, stopped: _Stopped, reports: Sequence[dict[str, Any] | None]) -> list[Emission]:
        """Complete an outcome stopped at its drift looks with their reports."""
        out = stopped.out + self.drift.finish(stopped.due, reports)
        return self._end_outcome(stopped.record, stopped.offset, out)

    def _end_outcome(self, record: dict[str, Any], offset: tuple[int, int], out: list[Emission]) -> list[Emission]:
        if type(record.get("prediction")) is float:  # the model monitor's drift series of its scores
            out += self.drift.on_metric(_prediction_metric(record), ("prediction", *offset) if offset else None)
        out += self.errors.on_outcome(record, offset)  # the call completed: known now, whatever its result
        out += self._follow(out)
        if not record.get("awaiting_feedback"):
            out += self._judges(record, offset)
        # an outcome awaiting feedback has placeholders for success and reward: what judges them takes it with its
        # result, once judged (_judged)
        return self._act(out)

    def _judges(self, record: dict[str, Any], offset: tuple[Any, ...] | None) -> list[Emission]:
        """The processors that judge an outcome by its success and reward: the assurance cases, the incidents'
        verification and the SLOs."""
        out = self.assurance.on_outcome(record, offset)
        out += self.incidents.on_outcome(record, offset)
        return out + self.slos.on_outcome(record, offset)

    def _learn(self, record: dict[str, Any], offset: tuple[int, int]) -> list[Emission]:
        """The learning loop's part of an outcome; one awaiting feedback goes to the join first."""
        if not record.get("awaiting_feedback"):
            return self.loop(record["task_type"]).on_outcome(record, offset)
        out = self._judged(*self.join.advance(int(record["ts"])))
        new, judgments = self.join.on_outcome(record, offset)
        if new:
            default = self.join.rule(self.agent_name, record["task_type"]).default
            out += self.loop(record["task_type"]).on_awaiting(record, default)
        return out + self._judged(judgments, [])

    def _feedback(self, record: dict[str, Any], offset: tuple[int, int]) -> list[Emission]:
        """An ``AgentFeedback``: the outcomes it (and the time it brings) judges, or its dead letter."""
        out = self._judged(*self.join.advance(int(record["ts"])))
        return out + self._judged(*self.join.on_feedback(record, offset))

    def _judged(self, judgments: list[Judgment], dead: list[Emission]) -> list[Emission]:
        """Apply judged outcomes as the outcomes they would have been had their result been known at once: the arm
        (Q-value, success, reward, degradation test), the reward's drift series, the assurance cases, the incidents'
        verification and the SLOs."""
        out = list(dead)
        for judgment in judgments:
            record = judgment.record()
            position = judgment.position
            emitted = self.loop(record["task_type"]).on_judgment(record, position, judgment.counts)
            if judgment.label is not None and record.get("prediction") is not None:
                emitted += self.models.observe(
                    self.agent_name, record.get("model_version"), record["prediction"], judgment.label, judgment.ts,
                    judgment.cause,
                )  # fmt: skip
            if judgment.counts:
                emitted += self.drift.on_outcome(_reward_only(record), position)
                emitted += self._follow(emitted)
                emitted += self._judges(record, position)
            out += self._act(emitted)
        return out

    def _follow(self, emitted: list[Emission]) -> list[Emission]:
        """Feed what the learning loop and drift monitor emitted to the cases and the alert manager."""
        if not emitted:
            return []  # most events emit nothing: skip building a list
        out: list[Emission] = []
        for e in emitted:
            if e.record_type == "QValue":
                out += self.assurance.on_qvalue(e.value)
            elif e.record_type == "DriftReport":
                out += self.assurance.on_drift(e.value)
                if e.value.get("alarm") and self.config.learning.reopen_on_drift:
                    out += self._reopen(e.value)
                if e.value["feature"].startswith("prediction"):
                    self.models.note_drift(self.agent_name, e.value["feature"].partition(":")[2], e.value)
            elif e.record_type == "ModelReport":
                out += self.assurance.on_model(e.value)
            elif e.record_type == "Alert" and e.value["source"] == "rollback":
                out += self.alerts.note_alert(e.value)
        return out

    def _reopen(self, report: dict[str, Any]) -> list[Emission]:
        """A drift alarm reopens exploration in every learning loop of the agent, at most once per cooldown."""
        ts, cause = int(report["ts"]), report["event_id"]
        interval = self.config.learning.cooldown_ms
        out = [e for loop in self.loops.values() for e in loop.reopen(ts, cause, min_interval_ms=interval)]
        return out + self._follow(out) if out else out

    def _act(self, emitted: list[Emission], manual: bool = False) -> list[Emission]:
        """Carry out an assurance ``rollback`` here: this pipeline owns the agent's learning loops; then the
        incidents (:mod:`processors.incidents`) read everything emitted."""
        if not emitted:
            return emitted
        out: list[Emission] = []
        for e in emitted:
            out.append(e)
            if e.record_type == "Command" and e.value["command"] == "rollback":
                task = e.value["args"].get("task_type")
                if task in self.loops:
                    done = self.loops[task].on_rollback_command(e.value)
                    out += done + self._follow(done)
        return self.incidents.observe(out, self, manual=manual)

    def on_command(self, record: dict[str, Any]) -> list[Emission]:
        """Operator commands: baseline pin/reset, alert ack/silence, rollback, experiment start/stop."""
        args, ts = record["args"], int(record["ts"])
        command = record["command"]
        if command == "baseline_reset":
            return self.drift.reset_baseline(self.agent_name, args["feature"], args.get("variant_id") or None)
        if command == "baseline_pin":
            values = [float(v) for v in json.loads(args["values"])]
            return self.drift.pin_baseline(self.agent_name, args["feature"], values, args.get("variant_id") or None)
        if command == "ack":
            return self.alerts.acknowledge(args["fingerprint"], record.get("by", ""), ts)
        if command == "silence":
            matchers = json.loads(args["matchers"])
            self.alerts.add_silence(
                matchers,
                int(args["until_ms"]),
                record.get("by", ""),
                args.get("comment", ""),
                now_ms=ts,
                silence_id=args.get("silence_id"),
            )
            return []
        if command == "rollback":
            if str(record.get("by", "")).startswith("assurance:"):
                # an assurance case's own Command, read back: :meth:`_act` carried it out where the case decided it,
                # and again it would judge the restored variant by the failed one's evidence ("degraded, no rollback")
                return []
            task = args.get("task_type")
            return self.loops[task].on_rollback_command(record) if task in self.loops else []
        if command in ("experiment_start", "experiment_stop"):
            experiment = json.loads(args["experiment"])
            return self.loop(experiment["task_type"]).on_experiment(experiment)
        return []

    def flush(self) -> list[Emission]:
        """Publish the held Q-values (:meth:`LearningLoop.flush_qvalues`) and what the cases make of them."""
        out = [e for loop in self.loops.values() for e in loop.flush_qvalues()]
        return self._act(out + self._follow(out)) if out else out

    def tick(self, now_ms: int) -> list[Emission]:
        """Time-driven work: stale evidence, ``for`` clocks, circuit recovery, alert repeats."""
        out = self.assurance.tick(now_ms) + self.errors.tick(now_ms) + self.slos.tick(now_ms)
        out += self.incidents.tick(now_ms)
        out += self.alerts.tick(now_ms)
        return self._act(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_name": self.agent_name,
            "loops": {t: loop.to_dict() for t, loop in self.loops.items()},
            "drift": self.drift.to_dict(),
            "alerts": self.alerts.to_dict(),
            "errors": self.errors.to_dict(),
            "assurance": self.assurance.to_dict(),
            "incidents": self.incidents.to_dict(),
            "slo": self.slos.to_dict(),
            "feedback": self.join.to_dict(),
            "models": self.models.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], config: PipelineConfig) -> AgentPipeline:
        p = cls(data["agent_name"], config)
        p.loops = {t: LearningLoop.from_dict(d, config.learning) for t, d in data["loops"].items()}
        p.drift = DriftProcessor.from_dict(data["drift"], config.drift)
        p.alerts = AlertManager.from_dict(data["alerts"], config.alerting)
        p.errors = ErrorMonitor.from_dict(data["errors"], config.errors, p.alerts, settings_version=config.version)
        p.assurance = AssuranceEvaluator.from_dict(data["assurance"], config.cases, p.alerts, config.version)
        # absent from state written before incidents: none open
        p.incidents = IncidentTracker.from_dict(data.get("incidents", {}), config.incidents, p.alerts, config.version)
        p.slos = SloEvaluator.from_dict(data.get("slo", {}), config.slos, p.alerts, config.version, config.slo)
        if "feedback" in data:  # absent from state written before delayed outcomes
            p.join = FeedbackJoin.from_dict(data["feedback"], config.feedback)
        p.models = ModelMonitor.from_dict(data.get("models", {}), config.models, p.alerts)
        return p


Input = tuple[str, dict[str, Any], tuple[int, int]]
"""``(record type, record, (partition, offset))`` of one decoded input."""


def _unjudged(record: dict[str, Any]) -> dict[str, Any]:
    """An outcome awaiting feedback as the drift monitor takes it: its reward is a placeholder, not a value."""
    return {**record, "reward": None}


def _prediction_metric(record: dict[str, Any]) -> dict[str, Any]:
    """An outcome's score as the drift monitor's series ``prediction:MODEL_VERSION`` takes it."""
    return {
        "agent_name": record["agent_name"],
        "name": prediction_feature(record.get("model_version")),
        "value": record["prediction"],
        "ts": record["ts"],
        "variant_id": None,
    }


def _reward_only(record: dict[str, Any]) -> dict[str, Any]:
    """A judged outcome as the drift monitor takes it: the reward alone (the rest was watched when it arrived)."""
    return {
        "agent_name": record["agent_name"],
        "variant_id": record["variant_id"],
        "ts": record["ts"],
        "reward": record["reward"],
        "features": {},
        "attributes": {},
    }


@dataclass
class _Stopped:
    """An outcome applied up to its drift looks: what it emitted so far and the drift monitors whose look is due."""

    record: dict[str, Any]
    offset: tuple[int, int]
    out: list[Emission]
    due: list[Any]


class AgentFeed:
    """One agent's inputs of a fetch as a :class:`~processors.drift.LookFeed` (see :meth:`AgentPipeline.feed`)."""

    __slots__ = ("at", "emit", "inputs", "pipeline", "stopped")

    def __init__(self, pipeline: AgentPipeline, inputs: Sequence[Input], emit: Callable[[list[Emission]], None]):
        self.pipeline, self.inputs, self.emit = pipeline, inputs, emit
        self.at = 0
        self.stopped: _Stopped | None = None

    def feed(self) -> Sequence[Any]:
        """Apply inputs in order until an outcome has drift looks due: those monitors (none: all applied)."""
        inputs, end, emit, pipeline = self.inputs, len(self.inputs), self.emit, self.pipeline
        at = self.at
        while at < end:
            if inputs[at][0] != "AgentOutcome":
                emit(pipeline._apply(*inputs[at]))
                at += 1
                continue
            stop = at + 1
            while stop < end and inputs[stop][0] == "AgentOutcome":
                stop += 1
            taken, stopped = pipeline._outcomes(inputs[at:stop], emit)
            at += taken
            if stopped is not None:
                self.at, self.stopped = at, stopped
                return stopped.due
        self.at = end
        return ()

    def finish(self, reports: Sequence[dict[str, Any] | None]) -> None:
        """Complete the outcome that stopped with its looks' reports."""
        stopped, self.stopped = self.stopped, None
        assert stopped is not None, "finish() follows a feed() that returned looks"
        self.emit(self.pipeline._finish(stopped, reports))
