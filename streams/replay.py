"""``reverify replay``: the worker's rules, offline, on any events; what the worker would have emitted.

Each input is one JSON object, ``{"kind": "outcome" | "error" | "metric" | "feedback", ...the arguments of
:meth:`AgentEvents.outcome <streams.client.AgentEvents.outcome>` / ``error`` / ``metric`` / ``feedback``...,
"ts": epoch ms}``.
It takes the path an event takes live, without the broker:

1. the SDK builds and checks the record (:func:`~streams.client.outcome_record` ...; the defaults of the SDK's
   arguments fill the fields a line leaves out) and encodes it as the SDK does; a line the SDK would reject
   is a *bad line*, reported with its number and skipped (or, ``strict``, the end of the replay);
2. the worker's first step decodes, checks and groups the encoded inputs, dead-lettering with the worker's
   reasons (:func:`streams.inputs.sort_inputs`);
3. the worker's pipelines apply them, one :class:`~processors.pipeline.AgentPipeline` per agent, configured
   by :meth:`PipelineConfig.from_settings <processors.pipeline.PipelineConfig.from_settings>`, in batches of
   at most ``[worker] batch_size`` inputs (:func:`~processors.drift.feed_fetch`);
4. the worker's timers run on the inputs' clock: every second the time-driven work
   (:meth:`AgentPipeline.tick <processors.pipeline.AgentPipeline.tick>`, the dead-letter monitor), every
   ``[learning] publish_interval_ms`` the held Q-values (:meth:`AgentPipeline.flush`), and once at the end.

Time is the inputs' ``ts``: the clock is the latest ``ts`` seen. A batch ends where a timer falls due. In a
stretch of more than ``GAP_TICKS`` seconds without inputs the timers run for its first ``GAP_TICKS`` seconds
and then once at its end (a worker would run them every second; an alert repeat due in such a gap comes once).

Offsets: the worker's processors skip an input offset they already applied, and a dead letter's id derives
from its topic, partition and offset. A replay gives input ``n`` (its line number) partition 0 and offset
``n``; the ids of other emissions derive from the inputs' event ids, as in the worker. A line without an
``event_id`` gets one derived from the input's name and its line number, so replaying a file twice gives
the same output.

>>> lines = [json.dumps({"kind": "outcome", "agent_name": "hunter", "task_type": "scrape", "variant_id": "v1",
...                      "success": True, "reward": 0.9, "ts": 1_700_000_000_000 + i}) for i in range(3)]
>>> [record_type for record_type, _ in replay(lines + ['{"kind": "outcome"}'])]
['ActiveVariant', 'VariantDecision', 'QValue']
>>> r = Replay()
>>> _ = list(r.run(['{"kind": "metric", "agent_name": "a", "name": "q", "value": "high", "ts": 5}', "[1]"]))
>>> r.bad
[BadLine(line=1, reason='value must be a number, got str'), BadLine(line=2, reason='not a JSON object')]
"""

from __future__ import annotations

import inspect
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from reverify.processors.base import Emission, derive_id
from reverify.processors.deadletters import DeadLetterMonitor, DeadLetterSettings
from reverify.processors.drift import feed_fetch
from reverify.processors.pipeline import AgentPipeline
from reverify.schemas.codec import decode, encoder
from reverify.streams.client import AgentEvents, error_record, feedback_record, metric_record, outcome_record
from reverify.streams.inputs import EXPECTED, INPUTS, Message, dead_letter_record, key_text, sort_inputs
from reverify.streams.settings import Settings, WorkerSettings

TICK_MS = 1000
"""The worker's time-driven work runs every second (:func:`streams.app.create_app`)."""
GAP_TICKS = 60
"""Timer runs in one stretch without inputs, before the rest of the stretch is taken in one step."""
WORKER = "replay"
"""The ``worker`` of the dead letters a replay emits."""

Emitted = tuple[str, dict[str, Any]]
"""``(record type, record)`` of one emission, e.g. ``("Rollback", {...})``."""


@dataclass(frozen=True)
class BadLine:
    """An input the SDK would not have sent: its line number (from 1) and why."""

    line: int
    reason: str


class BadLineError(ValueError):
    """A bad line in a ``strict`` replay."""

    def __init__(self, bad: BadLine) -> None:
        super().__init__(f"line {bad.line}: {bad.reason}")
        self.bad = bad


@dataclass(frozen=True)
class _Kind:
    """One kind of input line: the SDK call it stands for and where its record goes."""

    record_type: str
    topic: str
    build: Callable[..., dict[str, Any]]
    defaults: Mapping[str, Any]
    required: frozenset[str]
    names: frozenset[str]

    @classmethod
    def of(cls, record_type: str, topic: str, build: Callable[..., dict[str, Any]], sdk: Callable[..., Any]) -> _Kind:
        """The fields and defaults of SDK method ``sdk``; ``build`` makes its record from them."""
        named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        params = [p for p in inspect.signature(sdk).parameters.values() if p.kind in named and p.name != "self"]
        defaults = {p.name: p.default for p in params if p.default is not p.empty}
        names = frozenset(p.name for p in params)
        return cls(record_type, topic, build, defaults, names - set(defaults), names)


KINDS = {
    "outcome": _Kind.of("AgentOutcome", "agent.outcomes", outcome_record, AgentEvents.outcome),
    "error": _Kind.of("AgentError", "agent.errors", error_record, AgentEvents.error),
    "metric": _Kind.of("AgentMetric", "agent.metrics", metric_record, AgentEvents.metric),
    "feedback": _Kind.of("AgentFeedback", "agent.feedback", feedback_record, AgentEvents.feedback),
}
"""The ``kind`` of a line -> its SDK call."""


class Replay:
    """One replay: the worker's pipelines, dead-letter monitor and timers, fed lines in order by :meth:`run`.

    Parameters
    ----------
    settings
        Settings as the worker reads them (``[learning]``, ``[drift]``, ``[worker] batch_size`` ...);
        the defaults when omitted.
    strict
        Stop at the first bad line (:class:`BadLineError`) instead of skipping it.
    on_bad
        Called with each :class:`BadLine` as it is found (they are kept in :attr:`bad` too).
    source
        Names the input (a file's name): the event ids given to lines without one derive from it and the
        line number, in UUID layout like the SDK's (a prefix and a counter).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        strict: bool = False,
        on_bad: Callable[[BadLine], None] | None = None,
        source: str = "",
    ) -> None:
        settings = settings if settings is not None else Settings()
        self.config = AgentPipeline.configure(settings)
        self.deadletters = DeadLetterMonitor(settings.section("deadletters", DeadLetterSettings))
        self.batch_size = settings.section("worker", WorkerSettings).batch_size
        self.strict, self.on_bad = strict, on_bad
        self.pipelines: dict[str, AgentPipeline] = {}
        self.bad: list[BadLine] = []
        self.inputs: Counter[str] = Counter()  # good lines by kind
        self._physical = {name: settings.topic(name) for name in INPUTS}
        self._logical = {physical: name for name, physical in self._physical.items()}
        self._expected = {self._physical[name]: record_type for name, record_type in EXPECTED.items()}
        self._encoders = {kind.record_type: encoder(kind.record_type, int_timestamps=True) for kind in KINDS.values()}
        self._publish_ms = self.config.learning.publish_interval_ms
        self._out: list[Emitted] = []
        self._built: dict[bytes, tuple[str, dict[str, Any]]] = {}  # encoded value -> the SDK's record
        self._decode = _decoder(self._built)
        self._id_prefix = derive_id("replay", source)[:24]
        self._clock: int | None = None
        self._next_tick = self._next_publish = math.inf

    # ------------------------------------------------------------------ the run

    def run(self, lines: Iterable[str | bytes | Mapping[str, Any]]) -> Iterator[Emitted]:
        """Replay ``lines`` (JSON text, or the objects already parsed); yields what the worker would emit."""
        batch: list[Message] = []
        for number, line in enumerate(lines, 1):
            parsed = self._message(number, line)
            if parsed is None:
                continue
            ts, message = parsed
            if self._clock is None:
                self._start(ts)
            if ts >= self._next_tick or ts >= self._next_publish or len(batch) >= self.batch_size:
                self._apply(batch)
                batch = []
                self._advance(ts)
            batch.append(message)
            if self._out:
                yield from self._drain()
        self._apply(batch)
        self._publish_held()  # a worker publishes what it holds within a publish interval
        yield from self._drain()

    def _start(self, ts: int) -> None:
        self._clock = ts
        self._next_tick = ts + TICK_MS
        self._next_publish = ts + self._publish_ms if self._publish_ms > 0 else math.inf

    def _drain(self) -> list[Emitted]:
        out, self._out = self._out, []
        return out

    def _emit(self, emissions: list[Emission]) -> None:
        self._out += [(e.record_type, e.value) for e in emissions]

    def _apply(self, batch: list[Message]) -> None:
        if not batch:
            return
        by_agent, _ = sort_inputs(
            batch, self._expected, self._logical, self._clock or 0, self._dead_letter, self._decode
        )
        feed_fetch([self._pipeline(agent).feed(items, self._emit) for agent, items in by_agent.items()])

    def _pipeline(self, agent: str) -> AgentPipeline:
        pipeline = self.pipelines.get(agent)
        if pipeline is None:
            pipeline = self.pipelines[agent] = AgentPipeline(agent, self.config)
        return pipeline

    def _dead_letter(self, message: Message, reason: str, error_type: str) -> None:
        now = self._clock or 0
        record = dead_letter_record(message, reason, error_type, now, WORKER)
        self._emit([Emission("reverify.deadletter", key_text(message.key), "DeadLetter", record)])
        topic = self._logical.get(message.topic, message.topic)
        self._emit(self.deadletters.on_dead_letter(topic, error_type, now))

    # ------------------------------------------------------------------ timers

    def _advance(self, ts: int) -> None:
        """Run the timers due up to ``ts`` in time order; the clock moves to ``ts`` (never back)."""
        assert self._clock is not None
        runs = 0
        while min(self._next_tick, self._next_publish) <= ts:
            if runs == GAP_TICKS:  # a long stretch without inputs: its remaining timer runs become one each
                self._next_tick = _last_due(self._next_tick, TICK_MS, ts)
                self._next_publish = _last_due(self._next_publish, self._publish_ms, ts)
            runs += 1
            if self._next_publish <= self._next_tick:
                self._clock = max(self._clock, int(self._next_publish))
                self._publish_held()
                self._next_publish += self._publish_ms
            else:
                self._clock = max(self._clock, int(self._next_tick))
                self._tick(self._clock)
                self._next_tick += TICK_MS
        self._clock = max(self._clock, ts)

    def _publish_held(self) -> None:
        for pipeline in self.pipelines.values():
            self._emit(pipeline.flush())

    def _tick(self, now_ms: int) -> None:
        self._emit(self.deadletters.tick(now_ms))
        for pipeline in self.pipelines.values():
            self._emit(pipeline.tick(now_ms))

    # ------------------------------------------------------------------ lines

    def _message(self, number: int, line: str | bytes | Mapping[str, Any]) -> tuple[int, Message] | None:
        """Line ``number`` as the SDK would have sent it, with its event time; ``None`` for a bad or blank line."""
        if isinstance(line, Mapping):
            fields = dict(line)
        else:
            if not line.strip():
                return None
            try:
                fields = _loads(line)
            except ValueError as exc:
                return self._bad(number, f"not JSON: {exc}")
            if not isinstance(fields, dict):
                return self._bad(number, "not a JSON object")
        name = fields.pop("kind", None)
        kind = KINDS.get(name) if isinstance(name, str) else None
        if kind is None:
            return self._bad(number, f"kind must be one of {', '.join(KINDS)}, got {name!r}")
        problem = _field_problem(kind, name, fields)
        if problem:
            return self._bad(number, problem)
        if fields.get("event_id") is None:
            fields["event_id"] = f"{self._id_prefix}{number:012x}"
        try:
            record = kind.build(**{**kind.defaults, **fields})
            value = self._encoders[kind.record_type](record)
        except (TypeError, ValueError) as exc:
            return self._bad(number, str(exc))
        self.inputs[name] += 1
        self._built.setdefault(value, (kind.record_type, record))
        topic = self._physical[kind.topic]
        return record["ts"], Message(topic, 0, number, record["agent_name"].encode(), value)

    def _bad(self, number: int, reason: str) -> None:
        bad = BadLine(number, reason)
        if self.strict:
            raise BadLineError(bad)
        self.bad.append(bad)
        if self.on_bad is not None:
            self.on_bad(bad)
        return None


def _loads(line: str | bytes) -> Any:
    """One line's JSON. orjson is ~4x faster than ``json``; what it refuses (``NaN``, which Python's ``json.dumps``
    writes by default) is read by ``json``, so a line means what it meant before and a bad one gets the same reason."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


def _decoder(built: dict[bytes, tuple[str, dict[str, Any]]]) -> Callable[[bytes | None], tuple[str, dict[str, Any]]]:
    """The worker's :func:`~schemas.codec.decode`, spared for the values this replay encoded itself.

    Decoding the bytes the SDK's encoder made of a record gives that record back (the SDK fills every field and
    normalises each to its Avro type: ``tests/unit/test_replay.py`` checks it), so the record is taken, once, from
    ``built``; decoding costs a fifth of a replay otherwise. Any other value is decoded.
    """

    def decode_value(value: bytes | None) -> tuple[str, dict[str, Any]]:
        found = built.pop(value, None) if value else None
        return found if found is not None else decode(value)

    return decode_value


def _field_problem(kind: _Kind, name: str, fields: Mapping[str, Any]) -> str | None:
    """What is wrong with the fields of a ``name`` line before the SDK sees them, or ``None``."""
    if fields.keys() <= kind.names and kind.required <= fields.keys() and fields.get("ts") is not None:
        return None
    unknown = sorted(fields.keys() - kind.names)
    if unknown:
        known = ", ".join(sorted(kind.names))
        return f"{name} has no field {unknown[0]!r}; its fields: kind, {known}"
    missing = sorted(kind.required - set(fields))
    if missing:
        return f"{name} is missing {', '.join(map(repr, missing))}"
    if fields.get("ts") is None:
        return "ts is missing: each line needs its event time in epoch milliseconds"
    return None


def _last_due(due: float, every: int, ts: int) -> float:
    """The last time ``due + k * every`` (k >= 0) at or before ``ts``; ``due`` itself when it is after ``ts``."""
    if due > ts or every <= 0:
        return due
    return due + (ts - due) // every * every


def replay(lines: Iterable[str | bytes | Mapping[str, Any]], settings: Settings | None = None) -> Iterator[Emitted]:
    """What the worker would emit for ``lines``; bad lines are skipped (:class:`Replay` reports them)."""
    return Replay(settings).run(lines)


def json_line(record_type: str, record: Mapping[str, Any]) -> str:
    """One emission as a line of JSON, ``{"record_type": ..., ...its fields}``: NaN and infinities as null,
    bytes as text (``\\x..`` escapes for what is not UTF-8).

    >>> json_line("QValue", {"q": float("nan"), "n": 3})
    '{"record_type":"QValue","q":null,"n":3}'
    """
    data = {"record_type": record_type, **record}
    try:  # orjson writes NaN and infinities as null itself, ~6x faster than json
        return orjson.dumps(data, default=_bytes_text, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except orjson.JSONEncodeError:  # what orjson does not take (an int beyond 64 bits ...): rare
        return json.dumps(_finite(data), allow_nan=False, default=_bytes_text)


def _bytes_text(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "backslashreplace")
    raise TypeError(f"{type(value).__name__} is not JSON")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
