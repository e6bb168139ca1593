"""Which variant an agent process uses for one call, and the probability it had of being chosen.

:class:`RoutingState` is what one agent process knows of the control topics (the ``VariantRouter`` of the SDK
feeds it the records it follows): the active variant of every agent/task (``crl.active``), each arm's posterior
evidence (``crl.qvalues``), its latest safety decision (``crl.decisions``), rollbacks (``control.rollbacks``)
and the agents' control state (``control.agents``: pause, degradation level, circuits). :meth:`RoutingState.choose`
decides locally from it, in microseconds, with no round trip to anything.

Modes (:class:`RoutingSettings` ``mode``, or per router):

* ``active`` (the default): the active variant, propensity 1.
* ``thompson``: Thompson sampling over the eligible arms' Beta posteriors (:mod:`processors.thompson`), safety first:

  - no traffic to an arm the safety matrix marks ``no_action`` once it has ``exclude_min_n`` outcomes of evidence
    and a posterior that makes ``approval_q`` unlikely (:meth:`RoutingState.excluded_by_evidence`; the active
    variant excepted: rollbacks are what move traffic off it), to an arm in rollback cooldown (rolled back from
    within ``cooldown_ms``), or to an arm whose circuit is open (an AgentControl ``circuit`` record whose
    component is the variant id, or ``variant:<id>``);
  - no exploration while the agent is paused: the active variant, propensity 1;
  - an arm that is neither the active variant nor passed the promotion gate (decision ``auto_apply``) gets at most
    ``explore_cap`` of the traffic, and its propensity says so;
  - a drift alarm or a rollback reopens exploration: the learning loop scales every arm's evidence by its
    ``reopen_weight`` (:meth:`processors.learning.LearningLoop.reopen`), which the next Q-values carry here.

Experiments come first, in every mode: while an experiment runs on the agent/task (``crl.experiments``, see
:mod:`processors.experiments`), a call is assigned by :func:`processors.experiments.assignment.assign` -- by hash of
``(experiment, unit_id)`` when the call names its unit (the same unit, the same variant, in every process), else by
a draw per call -- with the variant's share of the split as propensity, mode ``experiment``. A paused agent is
not experimented on (the active variant, propensity 1). A stopped experiment (by hand, or by the worker when it
rolls one of its variants back) hands the agent/task back to its mode.

Nothing known for an agent/task (a process that started while Kafka is away): the ``default`` variant,
propensity 1, mode ``fallback``. Known state is kept while the broker is away.

Examples
--------
>>> import random
>>> state = RoutingState(RoutingSettings(mode="thompson", explore_cap=0.2), rng=random.Random(1))
>>> state.choose("hunter", "search", now_ms=0)
Choice(variant_id='default', propensity=1.0, mode='fallback', reason='nothing known yet')
>>> state.apply("ActiveVariant", {"agent_name": "hunter", "task_type": "search", "variant_id": "v1"})
>>> for variant, successes, failures in [("v1", 60, 40), ("v2", 90, 10)]:
...     state.apply("QValue", {"agent_name": "hunter", "task_type": "search", "variant_id": variant,
...                            "n": 100, "success_rate": successes / 100, "successes": successes, "failures": failures})
>>> choice = state.choose("hunter", "search", now_ms=0)
>>> choice.variant_id, round(choice.propensity, 3), choice.reason
('v2', 0.2, 'thompson, capped')
>>> state.apply("AgentControl", {"agent_name": "hunter", "kind": "circuit", "component": "v2", "circuit_state": "open",
...                              "degradation_level": 1, "reason": "errors: circuit v2 open"})
>>> state.choose("hunter", "search", now_ms=0)
Choice(variant_id='v1', propensity=1.0, mode='thompson', reason='thompson, one eligible arm')
>>> state.apply("Experiment", {"name": "copy", "agent_name": "hunter", "task_type": "search", "status": "running",
...                              "variants": ["v1", "v2"], "split": [0.5, 0.5]})
>>> choice = state.choose("hunter", "search", unit_id="user-7", now_ms=0)
>>> choice == state.choose("hunter", "search", unit_id="user-7", now_ms=0), choice.mode, choice.propensity
(True, 'experiment', 0.5)
>>> choice.attributes
{'experiment': 'copy', 'unit_id': 'user-7'}
>>> RoutingState.from_dict(state.to_dict()).to_dict() == state.to_dict()
True
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from reverify.processors.degradation_levels import effective_level
from reverify.processors.experiments.assignment import assign
from reverify.processors.experiments.record import RUNNING
from reverify.processors.safety import AUTO_APPLY, NO_ACTION
from reverify.processors.thompson import Evidence, PropensityCache, apply_cap, choose_arm
from scipy.special import betainc

__all__ = ["MODES", "Choice", "RoutingSettings", "RoutingState", "evidence_of"]

MODES = ("active", "thompson")


@dataclass(frozen=True, slots=True)
class Choice:
    """The variant to use for one call and the probability it had of being chosen.

    ``mode`` says which rule chose (``active``, ``thompson``, ``experiment``, ``fallback``, and whatever a later rule
    adds); ``reason`` says why in a few words. Pass ``propensity`` on to ``AgentEvents.outcome`` so that off-policy
    estimates can weigh the outcome, and ``attributes`` (the experiment and unit of an experiment's call) so that
    ``reverify experiment status`` counts the unit once however many outcomes it reports.
    """

    variant_id: str
    propensity: float
    mode: str
    reason: str
    experiment: str | None = field(default=None, repr=False)  # repr: only what every choice has
    unit_id: str | None = field(default=None, repr=False)

    @property
    def attributes(self) -> dict[str, str]:
        """``{"experiment": name, "unit_id": id}`` for a call of an experiment (what it knows of them), else ``{}``."""
        if self.experiment is None:
            return {}
        return {"experiment": self.experiment, **({"unit_id": self.unit_id} if self.unit_id is not None else {})}


@dataclass(frozen=True)
class RoutingSettings:
    """``[routing]`` in reverify.toml (``REVERIFY_ROUTING__EXPLORE_CAP=0.05`` ...).

    ``mode``: what a ``VariantRouter`` does when not told (``active`` or ``thompson``). ``explore_cap``: the most
    traffic an arm that is not the active variant gets before it passes the promotion gate. ``exclude_min_n``: the
    evidence (outcomes, after reopenings) from which an arm marked ``no_action`` gets no more traffic.
    ``propensity_samples``: Monte Carlo draws behind the propensities of three arms or more. ``cooldown_ms``: how
    long an arm rolled back from gets no traffic (``None``: ``[learning] cooldown_ms``).

    >>> RoutingSettings(explore_cap=1.5)
    Traceback (most recent call last):
    ...
    ValueError: explore_cap = 1.5 is not allowed; use a share in (0, 1]
    """

    mode: str = "active"
    explore_cap: float = 0.1
    exclude_min_n: int = 30
    propensity_samples: int = 4000
    cooldown_ms: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode = {self.mode!r} is not allowed; use one of: {', '.join(MODES)}")
        if not 0.0 < self.explore_cap <= 1.0:
            raise ValueError(f"explore_cap = {self.explore_cap} is not allowed; use a share in (0, 1]")
        if self.propensity_samples < 100:
            raise ValueError(f"propensity_samples = {self.propensity_samples} is not allowed; use 100 or more")


def evidence_of(qvalue: dict[str, Any]) -> Evidence:
    """An arm's posterior evidence from its QValue record; records written before it was carried give it by n.

    >>> evidence_of({"n": 10, "success_rate": 0.7, "successes": None, "failures": None})
    (7, 3)
    >>> evidence_of({"n": 10, "success_rate": 0.7, "successes": 2, "failures": 1})
    (2, 1)
    """
    successes, failures = qvalue.get("successes"), qvalue.get("failures")
    if successes is None or failures is None:
        n = int(qvalue["n"])
        successes = round(float(qvalue["success_rate"]) * n)
        failures = n - successes
    return int(successes), int(failures)


@dataclass
class _Task:
    """What is known of one agent/task."""

    active: str | None = None
    evidence: dict[str, Evidence] = field(default_factory=dict)
    decisions: dict[str, str] = field(default_factory=dict)
    cooldown_until: dict[str, int] = field(default_factory=dict)


@dataclass
class _Agent:
    """What is known of one agent's control state."""

    paused: bool = False
    levels: dict[str, int] = field(default_factory=dict)
    level: int = 0
    circuits: dict[str, str] = field(default_factory=dict)


class RoutingState:
    """The control state one process follows, and the choice of a variant per call (module docstring).

    Parameters
    ----------
    settings
        :class:`RoutingSettings`.
    cooldown_ms
        The rollback cooldown when ``settings.cooldown_ms`` is ``None`` (the learning loop's).
    approval_q, promotion_probability
        The learning loop's: a ``no_action`` arm is excluded only while its posterior gives less than
        ``1 - promotion_probability`` to a success rate of ``approval_q`` or more (:meth:`excluded_by_evidence`).
    rng, np_rng
        Sources of the Thompson draws and of the Monte Carlo propensities; seed them for reproducible runs.
    """

    def __init__(
        self,
        settings: RoutingSettings | None = None,
        *,
        cooldown_ms: int = 900_000,
        approval_q: float = 0.7,
        promotion_probability: float = 0.95,
        rng: random.Random | None = None,
        np_rng: np.random.Generator | None = None,
    ) -> None:
        self.settings = settings or RoutingSettings()
        self.cooldown_ms = cooldown_ms if self.settings.cooldown_ms is None else self.settings.cooldown_ms
        self.approval_q = approval_q
        self.promotion_probability = promotion_probability
        self.rng = rng or random.Random()
        self.propensities = PropensityCache(self.settings.propensity_samples, rng=np_rng)
        self.tasks: dict[tuple[str, str], _Task] = {}
        self.agents: dict[str, _Agent] = {}
        self.experiments: dict[tuple[str, str], dict[str, Any]] = {}  # the running experiment of an agent/task

    # -- following the control topics ---------------------------------------------------------------

    def apply(self, record_type: str, record: dict[str, Any]) -> None:
        """Fold one record of a followed topic into the state (other record types are ignored)."""
        if record_type == "AgentControl":
            self._control(record)
            return
        if record_type == "Experiment":
            self._experiment(record)
            return
        if record_type not in ("ActiveVariant", "QValue", "VariantDecision", "Rollback"):
            return
        task = self.tasks.setdefault((record["agent_name"], record["task_type"]), _Task())
        if record_type == "ActiveVariant":
            task.active = record["variant_id"]
        elif record_type == "QValue":
            task.evidence[record["variant_id"]] = evidence_of(record)
        elif record_type == "VariantDecision":
            task.decisions[record["variant_id"]] = record["decision"]
        else:
            until = int(record["ts"]) + self.cooldown_ms
            variant = record["from_variant"]
            task.cooldown_until[variant] = max(until, task.cooldown_until.get(variant, until))

    def _experiment(self, record: dict[str, Any]) -> None:
        """Follow one Experiment record: a running one routes its agent/task; its stop (same name) ends that."""
        key = (record["agent_name"], record["task_type"])
        if record["status"] == RUNNING:
            self.experiments[key] = {k: record[k] for k in ("name", "variants", "split")}
        elif key in self.experiments and self.experiments[key]["name"] == record["name"]:
            del self.experiments[key]

    def _control(self, record: dict[str, Any]) -> None:
        """Fold one AgentControl.

        Several processors publish control records for one agent, each carrying only its own view: the error
        monitor's records always say ``paused=False`` and its circuit level, an assurance case's its own level.
        So ``paused`` is taken from pause/resume records only, and the level the agent must run at is the
        highest level any source currently asks for (:func:`processors.degradation_levels.effective_level`).
        """
        agent = self.agents.setdefault(record["agent_name"], _Agent())
        kind = record["kind"]
        if kind in ("pause", "resume"):
            agent.paused = bool(record["paused"]) if kind == "pause" else False
        if kind == "circuit" and record.get("component"):
            agent.circuits[record["component"]] = record.get("circuit_state") or "closed"
        agent.level = effective_level(agent.levels, record)

    # -- answers ------------------------------------------------------------------------------------

    def variant_for(self, agent_name: str, task_type: str, default: str = "default") -> str:
        """The active variant, or ``default`` while none is known."""
        task = self.tasks.get((agent_name, task_type))
        return task.active if task is not None and task.active is not None else default

    def is_paused(self, agent_name: str) -> bool:
        agent = self.agents.get(agent_name)
        return agent is not None and agent.paused

    def degradation_level(self, agent_name: str) -> int:
        agent = self.agents.get(agent_name)
        return agent.level if agent is not None else 0

    def choose(
        self,
        agent_name: str,
        task_type: str,
        unit_id: str | None = None,
        *,
        now_ms: int,
        mode: str | None = None,
        default: str = "default",
        candidates: Collection[str] | None = None,
    ) -> Choice:
        """The variant for one call of ``agent_name``/``task_type`` (for ``unit_id``) at ``now_ms`` (module docstring).

        ``candidates``: the variants this process can run. Thompson mode then routes among them and the active
        variant only, those without a Q-value yet starting from the uniform prior (capped like any challenger);
        without it, among the arms that have Q-values.
        """
        experiment = self.experiments.get((agent_name, task_type))
        if experiment is not None and not self.is_paused(agent_name):
            name = experiment["name"]
            got = assign(name, experiment["variants"], experiment["split"], unit_id, self.rng)
            why = f"experiment {name}, " + ("by unit" if unit_id is not None else "per call")
            return Choice(got.variant_id, got.propensity, "experiment", why, name, unit_id)
        mode = mode or self.settings.mode
        task = self.tasks.get((agent_name, task_type))
        if task is None or (task.active is None and not task.evidence):
            return Choice(default, 1.0, "fallback", "nothing known yet")
        active = task.active or default
        if mode == "active":
            return Choice(active, 1.0, "active", "active variant")
        if self.is_paused(agent_name):
            return Choice(active, 1.0, mode, "paused: no exploration")
        eligible = self.eligible(agent_name, task, now_ms, candidates)
        if not eligible:
            return Choice(active, 1.0, mode, "no eligible arm: the active variant")
        if len(eligible) == 1:
            return Choice(eligible[0], 1.0, mode, "thompson, one eligible arm")
        arms = {name: task.evidence.get(name, (0, 0)) for name in eligible}
        capped = [name for name in eligible if name != task.active and task.decisions.get(name) != AUTO_APPLY]
        cap = self.settings.explore_cap
        probs = self.propensities.get(arms)
        final = apply_cap(probs, capped, cap)
        chosen = choose_arm(arms, probs, capped, cap, self.rng)
        reason = "thompson, capped" if final != probs else "thompson"
        return Choice(chosen, min(1.0, final[chosen]), mode, reason)  # a sum of shares may round above 1

    def eligible(
        self, agent_name: str, task: _Task, now_ms: int, candidates: Collection[str] | None = None
    ) -> list[str]:
        """The arms that may get traffic now, sorted: the known arms (or ``candidates``) and the active variant,
        less the excluded ones."""
        names = set(task.evidence) if candidates is None else set(candidates)
        if task.active is not None:
            names.add(task.active)
        circuits = self.agents[agent_name].circuits if agent_name in self.agents else {}
        return sorted(name for name in names if not self._excluded(name, task, circuits, now_ms))

    def _excluded(self, name: str, task: _Task, circuits: dict[str, str], now_ms: int) -> bool:
        if circuits.get(name) == "open" or circuits.get(f"variant:{name}") == "open":
            return True
        if now_ms < task.cooldown_until.get(name, -1):
            return True
        if name == task.active or task.decisions.get(name) != NO_ACTION:
            return False
        return self.excluded_by_evidence(*task.evidence.get(name, (0, 0)))

    def excluded_by_evidence(self, successes: int, failures: int) -> bool:
        """Whether a ``no_action`` arm with this posterior evidence gets no traffic.

        ``no_action`` comes from the arm's Q-value, an exponentially weighted mean of the last ~20 outcomes: an arm
        succeeding 90 % of the time dips below ``approval_q`` now and then, and an arm excluded at such a moment got
        no traffic again, so its decision never changed (an end-to-end run lost its best variant so). The
        exclusion therefore also needs ``exclude_min_n`` outcomes and a posterior, ``Beta(1 + successes,
        1 + failures)``, that gives less than ``1 - promotion_probability`` to reaching ``approval_q``.

        >>> state = RoutingState()
        >>> state.excluded_by_evidence(15, 15), state.excluded_by_evidence(80, 8), state.excluded_by_evidence(5, 5)
        (True, False, False)
        """
        if successes + failures < self.settings.exclude_min_n:
            return False
        reaches = betainc(1 + failures, 1 + successes, 1.0 - self.approval_q)  # P(rate >= approval_q)
        return bool(reaches < 1.0 - self.promotion_probability)

    # -- state --------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state (what was followed), e.g. to start from the last known state."""
        return {
            "tasks": [
                {
                    "agent_name": agent,
                    "task_type": task_type,
                    "active": t.active,
                    "evidence": {k: list(v) for k, v in t.evidence.items()},
                    "decisions": dict(t.decisions),
                    "cooldown_until": dict(t.cooldown_until),
                }
                for (agent, task_type), t in self.tasks.items()
            ],
            "agents": {
                name: {"paused": a.paused, "levels": dict(a.levels), "level": a.level, "circuits": dict(a.circuits)}
                for name, a in self.agents.items()
            },
            "experiments": [
                {"agent_name": agent, "task_type": task_type, **e} for (agent, task_type), e in self.experiments.items()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], settings: RoutingSettings | None = None, **kwargs: Any) -> RoutingState:
        """Restore the state written by :meth:`to_dict`."""
        state = cls(settings, **kwargs)
        for t in data["tasks"]:
            state.tasks[(t["agent_name"], t["task_type"])] = _Task(
                active=t["active"],
                evidence={k: (int(v[0]), int(v[1])) for k, v in t["evidence"].items()},
                decisions=dict(t["decisions"]),
                cooldown_until={k: int(v) for k, v in t["cooldown_until"].items()},
            )
        for name, a in data["agents"].items():
            state.agents[name] = _Agent(bool(a["paused"]), dict(a["levels"]), int(a["level"]), dict(a["circuits"]))
        for e in data.get("experiments", []):  # absent from state written before experiments
            state.experiments[(e["agent_name"], e["task_type"])] = {k: e[k] for k in ("name", "variants", "split")}
        return state
