"""The learning loop of one (agent_name, task_type): arms, safety decisions, promotions and rollbacks.

:class:`LearningLoop` holds every arm (variant) of one agent/task, which one is
active, pending proposals and rollback cooldowns. Its methods take decoded
events and return the :class:`~processors.base.Emission` s to publish; time
comes only from the events' ``ts``. It records the highest input offset it has
applied per input topic and partition, so a replay after a crash applies
nothing twice, and every output id is derived from its input event id.

Rules (docs/design.md section 4, issue 3):

* every outcome updates its arm (:mod:`processors.qvalues`) and publishes a
  ``QValue``; with ``publish_interval_ms`` > 0 (the default) the update is held
  and :meth:`LearningLoop.flush_qvalues` publishes each changed arm's latest
  state once, which the worker calls every ``publish_interval_ms`` -- Kafka
  Streams' record cache for a compacted topic: a hot arm costs one record per
  interval, not one per event, and the last state always gets out;
* the arm's safety decision (:mod:`processors.safety`) is published when it
  changes; ``auto_apply`` makes the arm active, ``human_approval`` publishes one
  ``Proposal`` per decision change, and an approved proposal makes its arm active;
* the first variant seen is active (``first_seen``);
* when the active arm's degradation test (:mod:`processors.degradation`) fires:
  ``Rollback`` to the other arm with the highest Q and ``n >= rollback_min_n``,
  a critical ``Alert`` and the new ``ActiveVariant``; with no eligible target (or
  only targets in cooldown) the Alert says why and the variant stays;
* with propensities logged (``AgentOutcome.propensity``, from ``VariantRouter.choose``), a challenger's
  ``auto_apply`` also needs its self-normalised IPS value (:attr:`processors.qvalues.ArmStats.snips`), the value
  of always playing it estimated from the traffic routing gave it, not to be below ``auto_apply_q`` with
  ``promotion_probability`` (its upper bound, :meth:`processors.qvalues.ArmStats.snips_upper`, reaches the bar);
  the decision's reasoning shows it;
* a rollback reopens exploration (:meth:`LearningLoop.reopen`): every arm keeps ``reopen_weight`` of the
  evidence of its Beta posterior, which its Q-value carries (``successes``, ``failures``) for Thompson routing
  (:mod:`processors.routing`); so does a drift alarm on the agent (:mod:`processors.pipeline`);
* that critical Alert reports an event (a detected change), not a lasting
  condition, so it resolves (same fingerprint, ``status`` ``resolved``,
  ``ends_at``) once the episode is over: when another variant is activated for
  the agent/task (promotion, approval, the next rollback), or when the variant
  active since the alarm has its own evidence, i.e. ``cooldown_ms`` have passed
  and it has ``cooldown_min_outcomes`` outcomes since the alarm, the same rule
  that ends the rollback cooldown. Until then it inhibits the agent's warnings;
  a lasting degradation is the assurance cases' to report after that;
* a running experiment on the agent/task (:mod:`processors.experiments`, known from
  the ``experiment_start`` / ``experiment_stop`` commands) turns its treatments into
  arms that can be rolled back although they are not the active variant: a
  treatment whose degradation test fires is rolled back to the experiment's
  control like an active variant (``Rollback``, critical ``Alert``, the control
  made active if it was not), and any rollback from one of the experiment's
  variants stops the experiment: the ``Experiment`` record, ``stopped``, with
  the rollback as its reason, on ``crl.experiments`` (routers then stop
  assigning units to it).

Examples
--------
>>> loop = LearningLoop("hunter", "search")
>>> out = loop.on_outcome({"event_id": "e1", "ts": 1700000000000, "variant_id": "v1",
...                        "success": True, "reward": 1.0}, offset=(0, 0))
>>> [e.record_type for e in out]
['ActiveVariant', 'VariantDecision']
>>> [(e.record_type, e.value["n"]) for e in loop.flush_qvalues()]
[('QValue', 1)]
>>> loop.on_outcome({"event_id": "e1", "ts": 1700000000000, "variant_id": "v1",
...                  "success": True, "reward": 1.0}, offset=(0, 0))
[]
>>> LearningLoop.from_dict(loop.to_dict()).to_dict() == loop.to_dict()
True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from reverify.processors.applied import AppliedOffsets
from reverify.processors.base import Emission, derive_id, make_alert, short_hex
from reverify.processors.degradation import (
    REFERENCE_BUDGET,
    DegradationAlarm,
    DegradationDetector,
    thresholds_for_budget,
)
from reverify.processors.experiments.record import RUNNING, stopped
from reverify.processors.qvalues import ArmStats
from reverify.processors.safety import AUTO_APPLY, HUMAN_APPROVAL, classify, decide, prob_beats

# The inputs a loop applies, each with its own replay guard.
_INPUT_KINDS = ("outcomes", "errors", "approvals")

__all__ = ["LearningLoop", "LearningSettings"]


@dataclass(frozen=True)
class LearningSettings:
    """Every threshold of the learning loop; field names are the keys of ``[learning]`` in reverify.toml.

    Defaults come from the seed documents (decision matrix, degradation rule)
    and from the tuning in :mod:`processors.degradation`.

    ``fleet_false_rollbacks`` is the rollback budget of the whole deployment: the expected number of false
    rollbacks per million stationary invocations, all arms together. Each arm's CUSUM spends it in
    proportion to its own traffic (a false-alarm rate per invocation), so the fleet's total holds however
    many arms there are, whenever they appear, and each decision still depends only on its agent's inputs.
    ``success_threshold``, ``reward_threshold`` and ``error_threshold`` are derived from it
    (:func:`processors.degradation.thresholds_for_budget`) unless set.

    >>> round(LearningSettings(fleet_false_rollbacks=0.05).detector_params()["threshold_nats"], 2)
    4.61
    """

    alpha: float = 0.1
    gamma: float = 0.0
    auto_apply_q: float = 0.9
    auto_apply_n: int = 10
    approval_q: float = 0.7
    approval_n: int = 5
    promotion_probability: float = 0.95
    window: int = 20
    success_drop: float = 0.10
    reward_drop: float = 0.15
    error_increase: float = 0.20
    rollback_min_n: int = 5
    cooldown_ms: int = 900_000
    cooldown_min_outcomes: int = 20
    publish_interval_ms: int = 1000
    success_shift: float = 0.25
    error_shift: float = 0.10
    reward_shift: float = 0.15
    fleet_false_rollbacks: float = REFERENCE_BUDGET
    success_threshold: float | None = None
    error_threshold: float | None = None
    reward_threshold: float | None = None
    min_baseline: int = 50
    reopen_weight: float = 0.1
    # Off by default: a drift alarm's timing depends on the fleet drift budget split across the series a worker
    # sees, so with it on the posteriors depend on how partitions were assigned, not on the inputs alone.
    reopen_on_drift: bool = False

    def __post_init__(self) -> None:
        thresholds_for_budget(self.fleet_false_rollbacks)  # a budget <= 0 is an error now, not at the first arm
        if not 0.0 <= self.reopen_weight <= 1.0:
            raise ValueError(f"reopen_weight = {self.reopen_weight} is not allowed; use a fraction in [0, 1]")

    def detector_params(self) -> dict[str, Any]:
        """The :class:`DegradationDetector` parameters: thresholds from ``fleet_false_rollbacks`` unless set."""
        extra, reward, errors = thresholds_for_budget(self.fleet_false_rollbacks)
        return {
            "success_shift": self.success_shift,
            "success_threshold": self.success_threshold,
            "threshold_nats": extra,
            "error_shift": self.error_shift,
            "error_threshold": errors if self.error_threshold is None else self.error_threshold,
            "reward_shift": self.reward_shift,
            "reward_threshold": reward if self.reward_threshold is None else self.reward_threshold,
            "min_baseline": self.min_baseline,
            "window": self.window,
        }


@dataclass(frozen=True)
class ExternalAlarm:
    """A rollback asked for from outside the detector (an assurance case), shaped like a DegradationAlarm."""

    trigger: str
    reason: str
    statistic: float
    threshold: float
    metrics: dict[str, float]


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, tz=timezone.utc).strftime("%Y%m%d")


class LearningLoop:
    """State machine of one (agent_name, task_type); see the module docstring."""

    def __init__(self, agent_name: str, task_type: str, settings: LearningSettings | None = None) -> None:
        self.agent_name = agent_name
        self.task_type = task_type
        self.settings = settings or LearningSettings()
        self.arms: dict[str, ArmStats] = {}
        self.detectors: dict[str, DegradationDetector] = {}
        self.decisions: dict[str, str] = {}
        self.active: str | None = None
        self.proposals: dict[str, str] = {}  # pending proposal_id -> variant
        self.proposed: dict[str, str] = {}  # variant -> its latest proposal_id (open while in self.proposals)
        self.degraded_at: dict[str, int] = {}  # variant -> arm.n when its test last fired
        self.last_rollback: dict[str, int] = {}  # "a|b" (sorted pair) -> ts of the last rollback between them
        self.promoted_at: dict[str, int] = {}  # variant -> arm.n when it became active
        self.held: dict[str, tuple[int, str]] = {}  # variant -> (ts, event_id) of its latest unpublished update
        # Delayed outcomes (processors.feedback): per variant, outcomes awaiting feedback and outcomes counted by the
        # feedback timeout's default; what a timeout counts as here (reported with the Q-values).
        self.pending: dict[str, int] = {}
        self.timeouts: dict[str, int] = {}
        self.timeout_default = ""
        self.offsets = {kind: AppliedOffsets() for kind in _INPUT_KINDS}
        # Firing rollback alerts of this agent/task by fingerprint, until they resolve (module docstring): what
        # the resolved Alert repeats (title, labels, starts_at), the variant active since the alarm ("watch")
        # and its n then ("n0"). Every open alert watches the active variant: an activation resolves them all.
        self.open_alerts: dict[str, dict[str, Any]] = {}
        self.reopened_at: int | None = None  # ts of the last reopening of exploration
        self.experiments: dict[str, dict[str, Any]] = {}  # running experiments of this agent/task by name (record)
        s = self.settings
        self._thresholds = (s.auto_apply_q, s.auto_apply_n, s.approval_q, s.approval_n, s.promotion_probability)

    # -- helpers ------------------------------------------------------------------------------------

    def _arm(self, variant: str) -> ArmStats:
        arm = self.arms.get(variant)
        if arm is None:
            arm = self.arms[variant] = ArmStats(window=self.settings.window)
            self.detectors[variant] = DegradationDetector(**self.settings.detector_params())
        return arm

    def _key(self) -> str:
        return f"{self.agent_name}/{self.task_type}"

    def _degraded(self, variant: str) -> bool:
        at = self.degraded_at.get(variant)
        return at is not None and self.arms[variant].n - at < self.settings.window

    def _watched(self, variant: str) -> bool:
        """An open rollback alert waits for ``variant`` to show evidence of its own (:meth:`_settled`)."""
        return any(info["watch"] == variant for info in self.open_alerts.values())

    @staticmethod
    def _pair(a: str, b: str) -> str:
        return "|".join(sorted((a, b)))

    def _in_cooldown(self, current: str, other: str, ts: int) -> bool:
        """A rollback between ``current`` and ``other`` happened lately, or ``current`` lacks its own evidence."""
        last = self.last_rollback.get(self._pair(current, other))
        if last is None:
            return False
        own = self.arms[current].n - self.promoted_at.get(current, 0)
        return ts - last < self.settings.cooldown_ms or own < self.settings.cooldown_min_outcomes

    def _activate(self, variant: str, reason: str, ts: int, cause: str, cause_id: str | None) -> list[Emission]:
        """Make ``variant`` active; a new choice ends the episode of any open rollback alert."""
        for proposal_id in [p for p, v in self.proposals.items() if v == variant]:
            del self.proposals[proposal_id]  # moot once the variant is active: approving it later must do nothing
        out = self._resolve_alerts(ts, cause, f"{variant} activated ({reason})") if self.open_alerts else []
        out.append(self._activation(variant, reason, ts, cause, cause_id))
        return out

    def _activation(self, variant: str, reason: str, ts: int, cause: str, cause_id: str | None) -> Emission:
        previous = self.active
        self.active = variant
        self.promoted_at[variant] = self._arm(variant).n
        value = {
            "event_id": derive_id("active", cause, variant),
            "ts": ts,
            "agent_name": self.agent_name,
            "task_type": self.task_type,
            "variant_id": variant,
            "previous_variant": previous,
            "reason": reason,
            "cause_id": cause_id,
        }
        return Emission("crl.active", self._key(), "ActiveVariant", value)

    def _qvalue(self, variant: str, ts: int, cause: str) -> list[Emission]:
        if self.settings.publish_interval_ms > 0:
            self.held[variant] = (ts, cause)
            return []
        return [self._qvalue_record(variant, ts, cause)]

    def flush_qvalues(self) -> list[Emission]:
        """Publish the latest state of every arm updated since the last flush (``publish_interval_ms`` > 0).

        The record is the one an unheld update would have published last (same ``ts`` and derived id), so
        the compacted topic ends the same either way.
        """
        held, self.held = self.held, {}
        return [self._qvalue_record(variant, ts, cause) for variant, (ts, cause) in held.items()]

    def _qvalue_record(self, variant: str, ts: int, cause: str) -> Emission:
        arm = self.arms[variant]
        value = {
            "event_id": derive_id("qvalue", cause, variant),
            "ts": ts,
            "agent_name": self.agent_name,
            "task_type": self.task_type,
            "variant_id": variant,
            "q": arm.q,
            "n": arm.n,
            "alpha": arm.last_alpha,
            "success_rate": arm.success_rate,
            "reward_mean": arm.reward_mean,
            "reward_var": arm.reward_var,
            "error_rate": arm.error_rate,
            "errors": arm.errors,
            "last_outcomes": list(arm.last_outcomes),
            "source_event_id": cause,
            "successes": arm.evidence[0],
            "failures": arm.evidence[1],
            "pending": self.pending.get(variant, 0),
            "timeouts": self.timeouts.get(variant, 0),
            "timeout_default": self.timeout_default,
        }
        return Emission("crl.qvalues", f"{self._key()}/{variant}", "QValue", value)

    # -- decisions ----------------------------------------------------------------------------------

    def _decide(self, variant: str, ts: int, cause: str) -> list[Emission]:
        s = self.settings
        arm = self.arms[variant]
        p_beats: float | None = None
        challenger = self.active is not None and variant != self.active
        if challenger and arm.q >= s.auto_apply_q - 1e-9 and arm.n >= s.auto_apply_n:
            act = self.arms[self.active]  # type: ignore[index]
            p_beats = prob_beats(arm.successes, arm.failures, act.successes, act.failures)
        degraded = self._degraded(variant)
        thresholds = self._thresholds
        # The decision alone first: it is published only when it changes, so the reasoning (string formatting,
        # most of decide's cost) is built only then.
        decision = classify(arm.q, arm.n, degraded, p_beats, *thresholds)
        cooled = decision == AUTO_APPLY and challenger and self._in_cooldown(self.active, variant, ts)  # type: ignore[arg-type]
        snips = arm.snips if challenger and arm.ips_n >= s.approval_n else None
        snips_upper = arm.snips_upper(s.promotion_probability) if snips is not None else None
        off_policy_low = (
            decision == AUTO_APPLY and not cooled and snips_upper is not None and snips_upper < s.auto_apply_q - 1e-9
        )
        pending = self.pending.get(variant, 0)
        awaited = decision == AUTO_APPLY and challenger and pending > arm.n  # most of its outcomes still unknown
        if cooled or off_policy_low or awaited:
            decision = HUMAN_APPROVAL
        previous = self.decisions.get(variant)
        if decision == previous:
            return []
        d = decide(
            arm.q,
            arm.n,
            degraded=degraded,
            p_beats_active=p_beats,
            active_variant=self.active if challenger else None,
            auto_apply_q=s.auto_apply_q,
            auto_apply_n=s.auto_apply_n,
            approval_q=s.approval_q,
            approval_n=s.approval_n,
            promotion_probability=s.promotion_probability,
        )
        reasoning = d.reasoning
        if cooled:
            reasoning += f", but within the rollback cooldown between {self.active} and {variant}: needs human approval"
        if off_policy_low:
            reasoning += (
                f", but its off-policy value {snips:.3f} is below {s.auto_apply_q:g} (at most {snips_upper:.3f},"
                f" {s.promotion_probability:.0%} upper bound): needs human approval"
            )
        if snips is not None:
            reasoning += f" (SNIPS value {snips:.3f} over {arm.ips_n} routed outcomes, ESS {arm.ips_ess:.0f})"
        if pending:
            reasoning += f"; {pending} of its {pending + arm.n} outcomes await feedback"
            if awaited:
                reasoning += ": most are unknown, so it is not promoted automatically (needs human approval)"
        self.decisions[variant] = decision
        out = [
            Emission(
                "crl.decisions",
                f"{self._key()}/{variant}",
                "VariantDecision",
                {
                    "event_id": derive_id("decision", cause, variant),
                    "ts": ts,
                    "agent_name": self.agent_name,
                    "task_type": self.task_type,
                    "variant_id": variant,
                    "decision": decision,
                    "previous_decision": previous,
                    "reasoning": reasoning,
                    "q": arm.q,
                    "n": arm.n,
                    "p_beats_active": d.p_beats_active,
                    "active_variant": self.active,
                    "thresholds": {
                        "auto_apply_q": s.auto_apply_q,
                        "auto_apply_n": float(s.auto_apply_n),
                        "approval_q": s.approval_q,
                        "approval_n": float(s.approval_n),
                        "promotion_probability": s.promotion_probability,
                    },
                },
            )
        ]
        if decision == AUTO_APPLY and challenger:
            out += self._activate(variant, "auto_apply", ts, cause, derive_id("decision", cause, variant))
        elif decision == HUMAN_APPROVAL and challenger and self.proposed.get(variant) not in self.proposals:
            # One open proposal per arm: a decision flickering around approval_q must not queue a new one
            # for people each time; the unanswered one stays valid until approved, rejected or moot.
            proposal_id = f"prop-{_day(ts)}-{short_hex('proposal', cause, variant)}"
            self.proposals[proposal_id] = variant
            self.proposed[variant] = proposal_id
            supporting = {"n_invocations": float(arm.n), "q": arm.q, "success_rate": arm.success_rate}
            supporting["reward_mean"] = arm.reward_mean
            if snips is not None:
                supporting["snips_value"] = snips
            if d.p_beats_active is not None:
                supporting["p_beats_active"] = d.p_beats_active
            out.append(
                Emission(
                    "crl.proposals",
                    self._key(),
                    "Proposal",
                    {
                        "event_id": derive_id("proposal", cause, variant),
                        "ts": ts,
                        "proposal_id": proposal_id,
                        "agent_name": self.agent_name,
                        "task_type": self.task_type,
                        "variant_id": variant,
                        "proposal_type": "promote_variant",
                        "reasoning": reasoning,
                        "confidence": arm.q,
                        "supporting_data": supporting,
                        "status": "pending",
                    },
                )
            )
        return out

    # -- degradation --------------------------------------------------------------------------------

    def _treated_by(self, variant: str) -> dict[str, Any] | None:
        """The running experiment in which ``variant`` is a treatment (not the control), if any."""
        return next((e for e in self.experiments.values() if variant in e["variants"][1:]), None)

    def _on_alarm(self, variant: str, alarm: DegradationAlarm | ExternalAlarm, ts: int, cause: str) -> list[Emission]:
        self.degraded_at[variant] = self.arms[variant].n
        experiment = self._treated_by(variant) if variant != self.active else None
        if variant != self.active and experiment is None:
            # A challenger degrading only blocks its auto_apply for a window; nothing to roll back.
            return []
        s = self.settings
        labels = {"agent_name": self.agent_name, "task_type": self.task_type, "variant_id": variant}
        evidence = dict(alarm.metrics)
        if experiment is not None:  # a treatment goes back to its control, whatever the Q-values say
            candidates = eligible = [(0.0, experiment["variants"][0])]
        else:
            candidates = [
                (arm.q, name) for name, arm in self.arms.items() if name != variant and arm.n >= s.rollback_min_n
            ]
            eligible = [(q, name) for q, name in candidates if not self._in_cooldown(variant, name, ts)]
        if not eligible:
            why = (
                f"every eligible target is within the rollback cooldown of {variant}"
                if candidates
                else f"no other variant has n >= {s.rollback_min_n}"
            )
            title = f"{self._key()}: {variant} degraded, no rollback"
            message = (
                f"{alarm.reason}; {alarm.trigger} {alarm.statistic:.2f} > {alarm.threshold:g}; kept {variant}: {why}"
            )
            return [self._open_alert(title, labels, message, evidence, variant, ts, cause)]
        target = max(eligible)[1]
        rollback_id = f"rb-{_day(ts)}-{short_hex('rollback', cause)}"
        self.last_rollback[self._pair(variant, target)] = ts
        rollback = Emission(
            "control.rollbacks",
            self._key(),
            "Rollback",
            {
                "event_id": derive_id("rollback", cause),
                "ts": ts,
                "rollback_id": rollback_id,
                "agent_name": self.agent_name,
                "task_type": self.task_type,
                "from_variant": variant,
                "to_variant": target,
                "reason": alarm.reason,
                "trigger": alarm.trigger,
                "statistic": alarm.statistic,
                "threshold": alarm.threshold,
                "degradation_metrics": evidence,
            },
        )
        # Earlier alerts end with this new choice of variant; resolved before the new one fires, which may share
        # their fingerprint (the same variant degraded again).
        out = self._resolve_alerts(ts, cause, f"{target} activated by rollback {rollback_id}")
        out.append(rollback)
        title = f"{self._key()}: rolled back {variant} -> {target}"
        message = f"{rollback_id}: {alarm.reason}; {alarm.trigger} {alarm.statistic:.2f} > {alarm.threshold:g}"
        out.append(self._open_alert(title, labels, message, evidence, target, ts, cause))
        if target != self.active:
            out.append(self._activation(target, "rollback", ts, cause, rollback_id))
        why = f"rollback {rollback_id}: {variant} degraded ({alarm.reason}), rolled back to {target}"
        return out + self._stop_experiments(variant, why, rollback_id, ts) + self.reopen(ts, cause)

    def _stop_experiments(self, variant: str, why: str, rollback_id: str, ts: int) -> list[Emission]:
        """Stop every running experiment that has ``variant`` among its variants; the rollback is the reason."""
        names = [name for name, e in self.experiments.items() if variant in e["variants"]]
        return [
            Emission(
                "crl.experiments",
                name,
                "Experiment",
                stopped(self.experiments.pop(name), ts=ts, reason=why, cause_id=rollback_id, by="worker"),
            )
            for name in names
        ]

    def on_experiment(self, record: dict[str, Any]) -> list[Emission]:
        """Follow one experiment of this agent/task (command ``experiment_start`` or ``experiment_stop``)."""
        if record.get("status") == RUNNING:
            self.experiments[record["name"]] = dict(record)
        else:
            self.experiments.pop(record["name"], None)
        return []

    def reopen(self, ts: int, cause: str, *, min_interval_ms: int = 0) -> list[Emission]:
        """Reopen exploration: every arm keeps ``reopen_weight`` of its posterior evidence (a rollback, a drift alarm).

        Thompson routers read the evidence from the Q-values, which are published again. ``min_interval_ms``:
        nothing happens within that long of the last reopening (a drift alarm lasts several looks).
        """
        last = self.reopened_at
        if last is not None and ts - last < min_interval_ms:
            return []
        self.reopened_at = ts
        out: list[Emission] = []
        for variant, arm in self.arms.items():
            arm.reopen(self.settings.reopen_weight)
            out += self._qvalue(variant, ts, cause)
        return out

    def _open_alert(
        self,
        title: str,
        labels: dict[str, str],
        message: str,
        evidence: dict[str, float],
        watch: str,
        ts: int,
        cause: str,
    ) -> Emission:
        """The firing critical rollback alert, remembered until it resolves; ``watch`` is active after the alarm."""
        alert = make_alert(
            source="rollback",
            status="firing",
            severity="critical",
            title=title,
            labels=labels,
            ts=ts,
            starts_at=ts,
            cause=cause,
            message=message,
            evidence=evidence,
        )
        self.open_alerts[alert.value["fingerprint"]] = {
            "title": title,
            "labels": dict(labels),
            "starts_at": ts,
            "watch": watch,
            "n0": self._arm(watch).n,
        }
        return alert

    def _resolve_alerts(self, ts: int, cause: str, why: str, fingerprints: list[str] | None = None) -> list[Emission]:
        """Resolve open rollback alerts (all, or ``fingerprints``): same fingerprint, ``ends_at``, ``why``."""
        chosen = list(self.open_alerts) if fingerprints is None else fingerprints
        out = [
            make_alert(
                source="rollback",
                status="resolved",
                severity="critical",
                title=info["title"],
                labels=info["labels"],
                ts=ts,
                starts_at=int(info["starts_at"]),
                cause=cause,
                message=f"resolved: {why}",
                ends_at=ts,
            )
            for info in (self.open_alerts.pop(fp) for fp in chosen)
        ]
        return out

    def _settled(self, variant: str, ts: int, cause: str) -> list[Emission]:
        """Resolve the open alerts once ``variant``, active since their alarm, has its own evidence."""
        s = self.settings
        n = self.arms[variant].n
        done = [
            fp
            for fp, info in self.open_alerts.items()
            if info["watch"] == variant
            and ts - int(info["starts_at"]) >= s.cooldown_ms
            and n - int(info["n0"]) >= s.cooldown_min_outcomes
        ]
        if not done:
            return []
        why = (
            f"{variant} has its own evidence: {s.cooldown_min_outcomes} outcomes and {s.cooldown_ms / 60_000:g} min "
            "since the alarm"
        )
        return self._resolve_alerts(ts, cause, why, done)

    # -- inputs -------------------------------------------------------------------------------------

    def on_outcome(
        self, event: dict[str, Any], offset: tuple[Any, ...] | None = None, *, max_next_q: float | None = None
    ) -> list[Emission]:
        """Apply one ``AgentOutcome``; ``max_next_q`` is ``max_a Q(next_state, a)`` when the shell knows it."""
        if self.offsets["outcomes"].replayed(offset):
            return []
        variant, ts, cause = event["variant_id"], int(event["ts"]), event["event_id"]
        out: list[Emission] = []
        arm = self._arm(variant)
        if self.active is None:
            out.append(self._activation(variant, "first_seen", ts, cause, None))
        success, reward = bool(event["success"]), float(event["reward"])
        s = self.settings
        propensity = event.get("propensity")
        arm.update(success, reward, alpha=s.alpha, gamma=s.gamma, max_next_q=max_next_q, propensity=propensity)
        alarm = self.detectors[variant].update(success, reward, ts)
        out += self._qvalue(variant, ts, cause)
        if alarm is not None:
            out += self._on_alarm(variant, alarm, ts, cause)
        elif self.open_alerts and variant == self.active:
            out += self._settled(variant, ts, cause)
        out += self._decide(variant, ts, cause)
        return out

    def on_awaiting(self, event: dict[str, Any], timeout_default: str) -> list[Emission]:
        """An outcome published awaiting feedback: its arm counts it as pending (published with the Q-value) until
        :meth:`on_judgment`. The replay guard is the feedback join's, which calls this once per outcome."""
        variant = event["variant_id"]
        self._arm(variant)
        self.pending[variant] = self.pending.get(variant, 0) + 1
        self.timeout_default = timeout_default
        return self._qvalue(variant, int(event["ts"]), event["event_id"])

    def on_judgment(self, event: dict[str, Any], offset: tuple[Any, ...] | None, counts: bool) -> list[Emission]:
        """A pending outcome judged (:class:`processors.feedback.Judgment`): ``event`` is the outcome with its
        result, applied like any outcome when it ``counts``; a timeout is counted in ``timeouts``."""
        variant = event["variant_id"]
        self._arm(variant)
        self.pending[variant] = max(0, self.pending.get(variant, 0) - 1)
        if event.get("timed_out"):
            self.timeouts[variant] = self.timeouts.get(variant, 0) + 1
        if counts:
            return self.on_outcome(event, offset)
        return self._qvalue(variant, int(event["ts"]), event["event_id"])

    def on_error(self, event: dict[str, Any], offset: tuple[Any, ...] | None = None) -> list[Emission]:
        """Apply one ``AgentError``; pipeline errors and errors naming no variant never count."""
        if self.offsets["errors"].replayed(offset) or event.get("pipeline") or not event.get("variant_id"):
            return []
        variant, ts, cause = event["variant_id"], int(event["ts"]), event["event_id"]
        self._arm(variant).record_error()
        alarm = self.detectors[variant].record_error(ts)
        out = self._qvalue(variant, ts, cause)
        if alarm is not None:
            out += self._on_alarm(variant, alarm, ts, cause)
        return out

    def on_rollback_command(self, event: dict[str, Any]) -> list[Emission]:
        """Roll the active variant back because an assurance case said so (``Command`` ``rollback``).

        The same path as a detector alarm: same target rule, cooldown, Rollback schema and alert; the
        reason names the case.
        """
        if self.active is None:
            return []
        if str(event.get("by", "")).startswith("assurance:") and self._watched(self.active):
            # The active variant is a rollback's target without evidence of its own yet: the case's window still
            # holds the failed variant's outcomes, and that rollback (its incident verifies it) is the action.
            return []
        args = event["args"]
        case = args.get("case", "assurance")
        metrics = self.detectors[self.active].evidence() if self.active in self.detectors else {}
        if args.get("failing_since"):
            metrics["run_started_at"] = float(args["failing_since"])  # the case's first failed verdict
        alarm = ExternalAlarm(
            trigger=f"assurance:{case}",
            reason=args.get("reason") or f"assurance case {case} failed",
            statistic=float(args.get("value", 0.0) or 0.0),
            threshold=float(args.get("threshold", 0.0) or 0.0),
            metrics=metrics,
        )
        return self._on_alarm(self.active, alarm, int(event["ts"]), event["event_id"])

    def on_approval(self, event: dict[str, Any], offset: tuple[Any, ...] | None = None) -> list[Emission]:
        """Apply one ``Approval``: an approved pending proposal makes its variant active."""
        if self.offsets["approvals"].replayed(offset):
            return []
        variant = self.proposals.pop(event["proposal_id"], None)
        if variant is None or not event["approved"] or variant == self.active:
            return []
        return self._activate(variant, "approval", int(event["ts"]), event["event_id"], event["proposal_id"])

    # -- state --------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state (settings are not part of it: they come from the config on restore)."""
        return {
            "agent_name": self.agent_name,
            "task_type": self.task_type,
            "arms": {k: a.to_dict() for k, a in self.arms.items()},
            "detectors": {k: d.to_dict() for k, d in self.detectors.items()},
            "decisions": dict(self.decisions),
            "active": self.active,
            "proposals": dict(self.proposals),
            "proposed": dict(self.proposed),
            "degraded_at": dict(self.degraded_at),
            "last_rollback": dict(self.last_rollback),
            "promoted_at": dict(self.promoted_at),
            "held": {k: list(v) for k, v in self.held.items()},
            # one flat map, "outcomes:0" -> offset, as before the replay guard was shared
            "offsets": {f"{kind}:{k}": v for kind, a in self.offsets.items() for k, v in a.to_dict().items()},
            "open_alerts": {fp: dict(info) for fp, info in self.open_alerts.items()},
            "reopened_at": self.reopened_at,
            "experiments": {name: dict(e) for name, e in self.experiments.items()},
            "pending": dict(self.pending),
            "timeouts": dict(self.timeouts),
            "timeout_default": self.timeout_default,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], settings: LearningSettings | None = None) -> LearningLoop:
        """Restore the state written by :meth:`to_dict`."""
        loop = cls(data["agent_name"], data["task_type"], settings)
        params = loop.settings.detector_params()
        loop.arms = {k: ArmStats.from_dict(v) for k, v in data["arms"].items()}
        loop.detectors = {k: DegradationDetector.from_dict(v, **params) for k, v in data["detectors"].items()}
        loop.decisions = dict(data["decisions"])
        loop.active = data["active"]
        loop.proposals = dict(data["proposals"])
        loop.proposed = dict(data["proposed"])
        loop.degraded_at = {k: int(v) for k, v in data["degraded_at"].items()}
        loop.last_rollback = {k: int(v) for k, v in data["last_rollback"].items()}
        loop.promoted_at = {k: int(v) for k, v in data["promoted_at"].items()}
        loop.held = {k: (int(ts), str(cause)) for k, (ts, cause) in data.get("held", {}).items()}
        by_kind: dict[str, dict[str, int]] = {kind: {} for kind in _INPUT_KINDS}
        for key, offset in data["offsets"].items():
            kind, _, where = key.partition(":")
            by_kind.setdefault(kind, {})[where] = offset
        loop.offsets = {kind: AppliedOffsets.from_dict(offsets) for kind, offsets in by_kind.items()}
        # Absent from state written before alerts resolved.
        loop.open_alerts = {fp: dict(info) for fp, info in data.get("open_alerts", {}).items()}
        loop.reopened_at = data.get("reopened_at")  # absent from state written before exploration reopened
        loop.experiments = {name: dict(e) for name, e in data.get("experiments", {}).items()}  # absent before them
        # Absent from state written before delayed outcomes.
        loop.pending = {k: int(v) for k, v in data.get("pending", {}).items()}
        loop.timeouts = {k: int(v) for k, v in data.get("timeouts", {}).items()}
        loop.timeout_default = str(data.get("timeout_default", ""))
        return loop


def settings_from_mapping(values: dict[str, Any]) -> LearningSettings:
    """Build settings from a ``[learning]`` table, rejecting unknown keys (a typo must not pass silently).

    >>> settings_from_mapping({"alpha": 0.2}).alpha
    0.2
    """
    known = {f.name for f in dataclasses.fields(LearningSettings)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown [learning] settings: {', '.join(sorted(unknown))}")
    return LearningSettings(**values)
