"""Delayed outcomes: outcomes published before their result is known, joined with the feedback that brings it.

An agent publishes an ``AgentOutcome`` with ``awaiting_feedback`` when its success and reward are known only later
(a lead converts days after the agent acted; a person rates an answer the next morning), and an ``AgentFeedback``
naming the outcome's ``event_id`` when they are. :class:`FeedbackJoin` pairs them for one agent; both topics are
keyed by ``agent_name``, so one agent's outcomes and feedback meet in one worker. It returns a
:class:`Judgment` per paired outcome, which the learning loop, the reward's drift series, the assurance cases and
the model monitor then take as if the outcome had been published with its result, **in the order the feedback
arrives** (a replay of the same inputs gives the same Q-values).

* Feedback for an outcome not seen yet waits for it (*early* feedback: the two topics are read side by side, so
  feedback may be read before its outcome), until the agent's outcomes are ``early_wait`` past the feedback's
  time, or ``max_early`` others wait: then it is dead-lettered as feedback for an unknown outcome.
* While early feedback waits, later feedback is *held* behind it, even when its outcome is there: judgments are
  released from the front of the queue, in arrival order, up to the next feedback whose outcome has not come.
  So the judgments (and the Q-values, bit for bit) are the same whatever the interleaving of the two topics, as
  in an uninterrupted run and after a restart that re-reads both side by side. Held feedback counts towards
  ``max_early``; when the front one is dead-lettered, those behind it are released. The cost: one feedback for
  an outcome that never comes holds the agent's later judgments for up to ``early_wait`` (of stream time).
* A held feedback's outcome does not time out while it is held (it is still pending, but its feedback is here):
  it is judged by that feedback when released, as it is when nothing holds it. A timeout there would depend on
  how the topics were interleaved, and a replay would judge differently. A judgment by feedback is dated by the
  later of the feedback's and the outcome's times and carries the feedback's position, whenever it is released.
* Feedback for an outcome already judged (by feedback or by the timeout) is dead-lettered with the reason.
* An outcome still waiting ``timeout`` after its event time counts as ``default``: ``failure`` (success false,
  reward 0), ``ignore`` (it never counts), or a reward value in [0, 1] (success false). Its judgment says
  ``timed_out``, and the arm's QValue counts it in ``timeouts``, so nobody takes a timeout for a real result.
  ``max_pending`` bounds the outcomes waiting: past it the oldest (but not one whose feedback is held) times
  out early.

Time is the join's own *stream time*, the latest event time among the outcomes and feedback it has seen, as in
Kafka Streams' windowed joins: expiry is deterministic (a replay expires exactly what the worker expired; the
timeouts and expiries one step of stream time passes come in the order of their times) and a backlog read after
downtime does not time out outcomes whose feedback is still unread. An agent that sends
nothing more keeps its waiting outcomes (at most ``max_pending``) until it does.

State is JSON-compatible (:meth:`FeedbackJoin.to_dict`) and holds only what waits, plus the ids judged within the
last ``timeout`` (to recognise a second feedback), so it stays bounded. Waiting feedback, early or held, is kept
in ``early`` in arrival order: early feedback whole (a dead letter re-encodes it), held feedback as the list of
what judges its outcome (event id, time, success, reward, label, position: about half the size), its outcome
staying in ``pending``. An agent's state is one changelog message, so its size matters. Each input stream has
its replay guard
(:class:`~processors.applied.AppliedOffsets`).

Examples
--------
>>> join = FeedbackJoin(FeedbackSettings(timeout="1h"))
>>> outcome = {"event_id": "o1", "ts": 0, "agent_name": "a", "task_type": "t", "variant_id": "v1"}
>>> join.on_outcome(outcome, (0, 0))
(True, [])
>>> join.pending_count
1
>>> feedback = {"event_id": "f1", "ts": 60_000, "agent_name": "a", "outcome_id": "o1", "success": True,
...             "reward": 0.8, "label": None, "attributes": {}}
>>> [(j.outcome["event_id"], j.success, j.reward, j.timed_out) for j in join.on_feedback(feedback, (0, 0))[0]]
[('o1', True, 0.8, False)]
>>> [d.value["reason"] for d in join.on_feedback({**feedback, "event_id": "f2"}, (0, 1))[1]]
['outcome o1 was already judged (by feedback)']
>>> FeedbackJoin.from_dict(join.to_dict(), join.settings).to_dict() == join.to_dict()
True

Feedback read before its outcome holds the feedback after it, whose outcome is there:

>>> _ = join.on_outcome({**outcome, "event_id": "o2"}, (0, 1))
>>> join.on_feedback({**feedback, "event_id": "f3", "outcome_id": "o3"}, (0, 2))
([], [])
>>> join.on_feedback({**feedback, "event_id": "f4", "outcome_id": "o2"}, (0, 3))
([], [])
>>> [j.cause for j in join.on_outcome({**outcome, "event_id": "o3"}, (0, 2))[1]]
['f3', 'f4']

References
----------
Kafka Streams, stream-stream joins with join windows and grace periods:
https://kafka.apache.org/documentation/streams/developer-guide/dsl-api.html#kstream-kstream-join
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reverify.processors.applied import AppliedOffsets
from reverify.processors.base import Emission, derive_id
from reverify.schemas import encode
from reverify.schemas.fields import duration_ms

__all__ = ["FEEDBACK_TOPIC", "FeedbackJoin", "FeedbackSettings", "Judgment", "TimeoutRule"]

FEEDBACK_TOPIC = "agent.feedback"
DEFAULTS = ("failure", "ignore")
"""What an outcome that timed out counts as, besides a reward value."""

# The fields of an outcome the join keeps while it waits: what the processors that take the judged outcome read.
_KEPT = ("event_id", "ts", "agent_name", "task_type", "variant_id", "latency_ms", "cost_usd", "next_state")
_KEPT_OPTIONAL = ("prediction", "model_version")


@dataclass(frozen=True)
class TimeoutRule:
    """The timeout of one agent/task: after ``ms`` an outcome counts as ``default``."""

    ms: int
    default: str

    @property
    def reward(self) -> float | None:
        """The reward a timed-out outcome counts with; ``None`` for ``ignore``."""
        if self.default == "ignore":
            return None
        return 0.0 if self.default == "failure" else float(self.default)


def _rule(timeout: str, default: str, where: str) -> TimeoutRule:
    ms = duration_ms(str(timeout))
    if ms is None or ms <= 0:
        raise ValueError(f"{where}timeout = {timeout!r} is not a duration such as '30m', '2h', '7d'")
    default = str(default).strip()
    if default not in DEFAULTS:
        try:
            value = float(default)
        except ValueError:
            value = -1.0
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{where}default = {default!r}: use failure, ignore or a reward in [0, 1]")
    return TimeoutRule(ms, default)


@dataclass(frozen=True)
class FeedbackSettings:
    """``[feedback]`` in reverify.toml: how long outcomes wait for feedback and what a timeout counts as.

    ``overrides`` maps ``"agent"`` or ``"agent/task"`` (``"*"`` for any) to ``{timeout = ..., default = ...}``;
    the most specific match wins.

    >>> s = FeedbackSettings(overrides={"shop": {"timeout": "1d"}, "shop/refund": {"default": "ignore"}})
    >>> s.rule("shop", "refund"), s.rule("shop", "buy").ms, s.rule("hunter", "x").default
    (TimeoutRule(ms=86400000, default='ignore'), 86400000, 'failure')
    """

    timeout: str = "7d"
    default: str = "failure"
    early_wait: str = "1h"
    # bounds one agent's state, a changelog message of at most 32 MiB (streams.restore.STATE_MAX_BYTES): at the
    # defaults about 12 MB of waiting outcomes, 2.5 MB of judged ids and 3 MB of early feedback
    max_pending: int = 50_000
    max_early: int = 10_000
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        _rule(self.timeout, self.default, "feedback.")
        if duration_ms(str(self.early_wait)) is None:
            raise ValueError(f"feedback.early_wait = {self.early_wait!r} is not a duration such as '10m', '1h'")
        if self.max_pending < 1 or self.max_early < 1:
            raise ValueError("feedback.max_pending and feedback.max_early must be at least 1")
        for scope, values in self.overrides.items():
            unknown = set(values) - {"timeout", "default"}
            if unknown:
                raise ValueError(f"feedback.overrides[{scope!r}]: unknown keys {', '.join(sorted(unknown))}")
            _rule(values.get("timeout", self.timeout), values.get("default", self.default), f"overrides[{scope!r}].")

    @property
    def longest_ms(self) -> int:
        """The longest timeout of any scope: how long a judged outcome's id is remembered."""
        scopes = [self.timeout, *(v["timeout"] for v in self.overrides.values() if "timeout" in v)]
        return max(duration_ms(str(s)) or 0 for s in scopes)

    @property
    def early_wait_ms(self) -> int:
        return duration_ms(str(self.early_wait)) or 0

    def rule(self, agent_name: str, task_type: str) -> TimeoutRule:
        """The timeout rule of ``agent_name``/``task_type``: the defaults, then matching overrides, most specific
        last."""
        values = {"timeout": self.timeout, "default": self.default}
        for scope in ("*", "*/*", agent_name, f"*/{task_type}", f"{agent_name}/*", f"{agent_name}/{task_type}"):
            values.update(self.overrides.get(scope, {}))
        return _rule(values["timeout"], values["default"], "feedback.")


@dataclass(frozen=True)
class Judgment:
    """An outcome whose result is known: by its feedback, or by the timeout's default (``timed_out``).

    ``outcome`` holds the outcome's fields the processors read (event id, its own ``ts``, task, variant, latency,
    cost, prediction, model version); ``ts`` is when it was judged (the feedback's time, or the deadline), ``cause``
    the feedback's event id (or a derived one for a timeout) and ``position`` the input that judged it, for the
    replay guards downstream (``None`` for a timeout: the state that applied it is the guard).
    """

    outcome: dict[str, Any]
    success: bool
    reward: float | None
    label: Any
    ts: int
    cause: str
    timed_out: bool
    position: tuple[Any, ...] | None

    @property
    def counts(self) -> bool:
        """False for an outcome that timed out with ``default = "ignore"``: it stops waiting and counts nowhere."""
        return self.reward is not None

    def record(self) -> dict[str, Any]:
        """The outcome as if it had been published with its result: what the learning loop and the cases take.

        Its ``ts`` is the judgment's (windows and Q-value records move forward in feedback order) and its
        ``event_id`` the cause's (the feedback's), so the outputs it causes have ids derived from what judged it;
        ``outcome_id`` is the outcome's.
        """
        return {
            **self.outcome,
            "event_id": self.cause,
            "outcome_id": self.outcome["event_id"],
            "ts": self.ts,
            "success": self.success,
            "reward": self.reward,
            "features": {},
            "attributes": {},
            "awaiting_feedback": False,
            "timed_out": self.timed_out,
        }


class FeedbackJoin:
    """Pairs one agent's outcomes awaiting feedback with their feedback; see the module docstring."""

    def __init__(self, settings: FeedbackSettings | None = None) -> None:
        self.settings = settings or FeedbackSettings()
        self.now = 0  # stream time: the latest event time seen
        # outcome id -> the kept fields of the outcome and its deadline, in arrival order
        self.pending: dict[str, dict[str, Any]] = {}
        # outcome id -> waiting feedback, in arrival order: early ({"record", "position"}: its outcome not seen yet)
        # or held (:func:`_held`, a list: its outcome is in ``pending``)
        self.early: dict[str, Any] = {}
        # outcome id -> [stream time when judged, how]; in judgment order, so by stream time
        self.judged: dict[str, list[Any]] = {}
        self.timed_out = 0
        self.offsets = {"outcomes": AppliedOffsets(), "feedback": AppliedOffsets()}
        self._deadlines: list[tuple[int, str]] = []  # heap over pending (lazily cleaned; rebuilt from state)
        self._rules: dict[tuple[str, str], TimeoutRule] = {}
        self._memory_ms = self.settings.longest_ms

    @property
    def pending_count(self) -> int:
        """Outcomes waiting for their feedback (the ``reverify_feedback_pending`` gauge)."""
        return len(self.pending)

    def pending_by_arm(self) -> dict[tuple[str, str], int]:
        """Waiting outcomes per ``(task_type, variant_id)``."""
        counts: dict[tuple[str, str], int] = {}
        for kept in self.pending.values():
            key = (kept["task_type"], kept["variant_id"])
            counts[key] = counts.get(key, 0) + 1
        return counts

    def rule(self, agent_name: str, task_type: str) -> TimeoutRule:
        key = (agent_name, task_type)
        rule = self._rules.get(key)
        if rule is None:
            rule = self._rules[key] = self.settings.rule(agent_name, task_type)
        return rule

    # ------------------------------------------------------------------ inputs

    def on_outcome(self, record: Mapping[str, Any], position: tuple[Any, ...] | None) -> tuple[bool, list[Judgment]]:
        """An outcome published with ``awaiting_feedback`` (after :meth:`advance` to its time): whether it is new
        (not a replay, not an id seen already), and the judgments it causes: its own when its feedback came first,
        or the oldest waiting outcome's when more than ``max_pending`` wait."""
        if self.offsets["outcomes"].replayed(position):
            return False, []
        outcome_id = str(record["event_id"])
        if outcome_id in self.pending or outcome_id in self.judged:
            return False, []  # the same outcome id twice: counted once
        kept = {name: record.get(name) for name in _KEPT}
        for name in _KEPT_OPTIONAL:
            if record.get(name) is not None:
                kept[name] = record[name]
        rule = self.rule(str(kept["agent_name"]), str(kept["task_type"]))
        kept["deadline"] = int(kept["ts"]) + rule.ms
        self.pending[outcome_id] = kept
        heapq.heappush(self._deadlines, (kept["deadline"], outcome_id))
        if outcome_id in self.early:  # its feedback came first: judged when every feedback before it is
            self.early[outcome_id] = _compact(self.early[outcome_id])  # held now (the order of ``early`` kept)
            return True, self._release()
        if len(self.pending) > self.settings.max_pending:
            oldest = next((oid for oid in self.pending if oid not in self.early), None)
            if oldest is not None:
                return True, self._expire(oldest, self.now, "max_pending")
        return True, []

    def on_feedback(
        self, record: Mapping[str, Any], position: tuple[Any, ...] | None
    ) -> tuple[list[Judgment], list[Emission]]:
        """An ``AgentFeedback`` (after :meth:`advance` to its time): judges its waiting outcome, waits for it, or is
        dead-lettered with the reason."""
        judgments: list[Judgment] = []
        dead: list[Emission] = []
        if self.offsets["feedback"].replayed(position):
            return judgments, dead
        outcome_id = str(record["outcome_id"])
        if outcome_id in self.early:
            reason = f"another feedback for outcome {outcome_id} is already waiting for it"
            dead.append(self._dead_letter(record, position, reason))
            return judgments, dead
        if outcome_id in self.judged:
            how = self.judged[outcome_id][1]
            dead.append(self._dead_letter(record, position, f"outcome {outcome_id} was already judged ({how})"))
            return judgments, dead
        if outcome_id in self.pending:
            if not self.early:
                judgments.append(self._judge(self.pending.pop(outcome_id), _held(record, position)))
                return judgments, dead
            self.early[outcome_id] = _held(record, position)  # held behind early feedback
        else:  # early: its outcome not seen yet
            self.early[outcome_id] = {"record": dict(record), "position": list(position) if position else None}
        if len(self.early) > self.settings.max_early:
            front = next(iter(self.early))
            dead.append(self._unknown(front, f"more than max_early = {self.settings.max_early} feedback waiting"))
            judgments += self._release()
        return judgments, dead

    def advance(self, now_ms: int) -> tuple[list[Judgment], list[Emission]]:
        """Move stream time to ``now_ms`` (never back): the outcomes that time out by then (judged as their
        default) and the early feedback that stops waiting (dead letters). Called before each input."""
        return self._advance(now_ms)

    # ------------------------------------------------------------------ internals

    def _judge(self, kept: dict[str, Any], held: list[Any]) -> Judgment:
        """``kept`` judged by the feedback ``held`` (:func:`_held`), at the later of their times and at the
        feedback's position: a judgment reads the same whatever order the two topics were read in."""
        outcome_id = str(kept["event_id"])
        self._remember(outcome_id, "by feedback")
        outcome = {k: v for k, v in kept.items() if k != "deadline"}
        event_id, ts, success, reward, label, position = held
        where = ("agent.feedback", *position) if position else None
        return Judgment(outcome, success, reward, label, max(ts, int(kept["ts"])), event_id, False, where)

    def _release(self) -> list[Judgment]:
        """Judge the waiting feedback from the front of ``early``, in arrival order, up to the first whose outcome
        has not come: that one keeps every later feedback waiting (the order of judgments is the feedback's). The
        positions are the feedback's own, so increasing for the replay guards downstream."""
        judgments: list[Judgment] = []
        while self.early:
            outcome_id, entry = next(iter(self.early.items()))
            kept = self.pending.pop(outcome_id, None)
            if kept is None:
                break
            del self.early[outcome_id]
            judgments.append(self._judge(kept, entry))
        return judgments

    def _remember(self, outcome_id: str, how: str) -> None:
        self.judged[outcome_id] = [self.now, how]
        if len(self.judged) > self.settings.max_pending:
            del self.judged[next(iter(self.judged))]

    def _advance(self, ts: int) -> tuple[list[Judgment], list[Emission]]:
        if ts <= self.now:
            return [], []
        self.now = ts
        judgments: list[Judgment] = []
        dead: list[Emission] = []
        heap, wait = self._deadlines, self.settings.early_wait_ms
        # the timeouts and the early feedback's expiries due by ``ts``, in the order of their times (a timeout first
        # at a tie), however far this step moves: the same whether stream time gets there at once or bit by bit
        while True:
            front = next(iter(self.early.items()), None)
            expiry = int(front[1]["record"]["ts"]) + wait if front is not None else None  # the front one is early
            due = heap[0][0] if heap and heap[0][0] <= ts else None
            if expiry is not None and expiry <= ts and (due is None or expiry < due):
                why = f"no outcome with this id within early_wait = {self.settings.early_wait}"
                dead.append(self._unknown(front[0], why))
                judgments += self._release()  # the feedback it held back
                continue
            if due is None:
                break
            deadline, outcome_id = heapq.heappop(heap)
            kept = self.pending.get(outcome_id)
            if kept is not None and kept["deadline"] == deadline and outcome_id not in self.early:
                judgments += self._expire(outcome_id, deadline, "timeout")
            # an outcome whose feedback is held (waiting behind early feedback) does not time out: it is judged by
            # that feedback when released, as it would have been had no earlier feedback come before its outcome
        if len(heap) > 2 * len(self.pending) + 64:  # judged entries linger in the heap: keep it bounded
            self._rebuild_deadlines()
        horizon = ts - self._memory_ms
        while self.judged:
            outcome_id, (judged_at, _) = next(iter(self.judged.items()))
            if judged_at > horizon:
                break
            del self.judged[outcome_id]
        return judgments, dead

    def _expire(self, outcome_id: str, ts: int, why: str) -> list[Judgment]:
        """The waiting outcome ``outcome_id`` counted as its rule's default (none for ``ignore``)."""
        kept = self.pending.pop(outcome_id)
        rule = self.rule(str(kept["agent_name"]), str(kept["task_type"]))
        self.timed_out += 1
        self._remember(outcome_id, f"timed out ({why}) and counted as {rule.default}")
        outcome = {k: v for k, v in kept.items() if k != "deadline"}
        cause = derive_id("feedback-timeout", outcome_id)
        return [Judgment(outcome, False, rule.reward, None, max(ts, int(kept["ts"])), cause, True, None)]

    def _unknown(self, outcome_id: str, why: str) -> Emission:
        entry = self.early.pop(outcome_id)
        position = tuple(entry["position"]) if entry["position"] else None
        return self._dead_letter(entry["record"], position, f"feedback for unknown outcome {outcome_id}: {why}")

    def _dead_letter(self, record: Mapping[str, Any], position: tuple[Any, ...] | None, reason: str) -> Emission:
        """The ``DeadLetter`` of a feedback the join cannot use (its bytes re-encoded: the record decoded fine)."""
        partition, offset = (int(position[-2]), int(position[-1])) if position else (-1, -1)
        key = str(record["agent_name"])
        value = {
            "event_id": derive_id("deadletter", FEEDBACK_TOPIC, partition, offset, record["event_id"]),
            "ts": self.now,
            "topic": FEEDBACK_TOPIC,
            "partition": partition,
            "offset": offset,
            "key": key.encode(),
            "value": encode("AgentFeedback", dict(record)),
            "reason": reason,
            "error_type": "unmatched",
            "worker": "",
        }
        return Emission("reverify.deadletter", key, "DeadLetter", value)

    def _rebuild_deadlines(self) -> None:
        self._deadlines = [(int(kept["deadline"]), oid) for oid, kept in self.pending.items()]
        heapq.heapify(self._deadlines)

    # ------------------------------------------------------------------ state

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state (settings come from the config on restore)."""
        return {
            "now": self.now,
            "pending": {k: dict(v) for k, v in self.pending.items()},
            "early": {k: _entry(v) for k, v in self.early.items()},  # held entries: lists
            "judged": {k: list(v) for k, v in self.judged.items()},
            "timed_out": self.timed_out,
            "offsets": {kind: a.to_dict() for kind, a in self.offsets.items()},
            "ordered": True,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], settings: FeedbackSettings | None = None) -> FeedbackJoin:
        join = cls(settings)
        join.now = int(data["now"])
        join.pending = {k: dict(v) for k, v in data["pending"].items()}
        join.early = {k: _entry(v) for k, v in data["early"].items()}
        if not data.get("ordered"):  # state of a version that judged early feedback at its outcome's position
            for entry in join.early.values():
                if isinstance(entry, dict):
                    entry["legacy"] = True
        join.judged = {k: list(v) for k, v in data["judged"].items()}
        join.timed_out = int(data.get("timed_out", 0))
        join.offsets = {kind: AppliedOffsets.from_dict(a) for kind, a in data["offsets"].items()}
        join._rebuild_deadlines()
        return join


def _held(record: Mapping[str, Any], position: Any) -> list[Any]:
    """A held feedback as the join keeps it: what judges its outcome, ``[event id, ts, success, reward, label,
    position]`` (JSON-compatible; no copy of the outcome, which waits in ``pending``)."""
    where = list(position) if position else None
    return [str(record["event_id"]), int(record["ts"]), bool(record["success"]), float(record["reward"]),
            record.get("label"), where]  # fmt: skip


def _compact(entry: Any) -> list[Any]:
    """An early feedback whose outcome has come, held: its record is no longer needed for a dead letter. Feedback
    from state written before the hold existed gets no position (it was judged at its outcome's: no guard
    downstream may skip it)."""
    if isinstance(entry, list):
        return entry
    return _held(entry["record"], None if entry.get("legacy") else entry["position"])


def _entry(entry: Any) -> Any:
    """A waiting feedback as state holds it: held, the list of :func:`_held`; early, its record and position."""
    if isinstance(entry, list):
        return [*entry[:5], list(entry[5]) if entry[5] else None]
    out = {"record": dict(entry["record"]), "position": entry["position"]}
    if entry.get("legacy"):
        out["legacy"] = True
    return out
