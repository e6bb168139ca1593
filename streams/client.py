"""The SDK: publish agent events, follow the active variant, subscribe to alerts.

``AgentEvents`` validates and encodes on the caller's thread and hands the bytes
to librdkafka's queue, which delivers them in the background: a call does not
wait for the broker while the queue has room. The queue holds ``max_buffer``
events. When a fast producer fills it while the broker is reachable, the call
waits for room (serving delivery reports) up to ``max_block_ms``, like Kafka's
``max.block.ms``: nothing is lost because the broker was slower than the loop
for a moment. While the broker is away (librdkafka reports all brokers down and
the queue does not move) librdkafka keeps retrying (``message.timeout.ms=0``: no
give-up time) and a call never waits: past ``max_buffer`` an event is dropped,
counted in :attr:`AgentEvents.dropped` and logged, never silently; so is one
that waited ``max_block_ms`` in vain.

>>> events = AgentEvents(bootstrap="127.0.0.1:1")     # nothing listens there: events are buffered
>>> events.outcome(agent_name="hunter", task_type="scrape", variant_id="v1", success=True, reward=1.5)
Traceback (most recent call last):
...
ValueError: reward must be within [0, 1], got 1.5
>>> events.outcome(agent_name="hunter", task_type="scrape", variant_id="v1", success=True, reward=1.0, latency_ms=-1.0)
Traceback (most recent call last):
...
ValueError: latency_ms must be >= 0, got -1.0
>>> event_id = events.metric(agent_name="hunter", name="queue_depth", value=12.0)
>>> events.pending
1
>>> events.close(timeout=0)
1
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, Producer
from reverify.processors.learning import LearningSettings
from reverify.processors.routing import MODES, Choice, RoutingSettings, RoutingState
from reverify.schemas import DecodeError, decode, decode_as
from reverify.schemas.codec import encoder
from reverify.schemas.fields import ALERT_SEVERITIES, ERROR_SEVERITIES
from reverify.streams.settings import Settings

log = logging.getLogger("reverify.sdk")

_ALERT_RANK = {severity: rank for rank, severity in enumerate(ALERT_SEVERITIES)}
MAX_STRING = 4096
# fastavro's tuple notation for a union branch: naming the branch spares fastavro trying each in turn.
_NULL = ("null", None)
# Serving librdkafka's queue (failed deliveries, its log lines) every call costs more than it gains; it only
# has to keep up, and flush() and a full buffer serve it too.
_POLL_EVERY = 64
# How long a call waiting for room in a full queue blocks in one poll (it then tries again), and how long the first
# full queue after a report of every broker down is watched for events leaving before it counts as an outage.
_WAIT_SLICE = 0.005
_AWAY_GRACE = 0.2
_INF = math.inf


def _now_ms() -> int:
    return int(time.time() * 1000)


def _string(field: str, value: Any, required: bool = True) -> str | None:
    if type(value) is str and 0 < len(value) <= MAX_STRING:  # the common case, checked cheaply
        return value
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, got {type(value).__name__}")
    if required and not value:
        raise ValueError(f"{field} must not be empty")
    if len(value) > MAX_STRING:
        raise ValueError(f"{field} is {len(value)} characters long; the limit is {MAX_STRING}")
    return value


def _finite_floats(values: dict[Any, Any]) -> bool:
    """True when every key is a plain name and every value a finite float: the features the fast path accepts."""
    for key, value in values.items():
        if type(key) is not str or not 0 < len(key) <= MAX_STRING or type(value) is not float or value - value != 0.0:
            return False
    return True


def _number(field: str, value: Any) -> float:
    if type(value) is float and math.isfinite(value):  # the common case, checked cheaply
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number, got {value}")
    return value


def _amount(field: str, value: Any) -> float:
    """A duration or a cost: finite and never negative."""
    value = _number(field, value)
    if value < 0.0:
        raise ValueError(f"{field} must be >= 0, got {value}")
    return value


def _count(field: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int or None, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{field} must be >= 0, got {value}")
    return value


def _mapping(field: str, value: Any, check: Any) -> dict[str, Any]:
    if not value and (value is None or isinstance(value, Mapping)):
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{field} must be a dict, got {type(value).__name__}")
    return {_string(f"{field} key", k): check(f"{field}[{k!r}]", v) for k, v in value.items()}


def _timestamp(ts: Any) -> int:
    if ts is None:
        return _now_ms()
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise TypeError(f"ts must be epoch milliseconds (int), got {type(ts).__name__}")
    return ts


def outcome_record(
    agent_name: Any,
    task_type: Any,
    variant_id: Any,
    success: Any,
    reward: Any,
    latency_ms: Any,
    cost_usd: Any,
    tokens_in: Any,
    tokens_out: Any,
    features: Any,
    attributes: Any,
    trace_id: Any,
    next_state: Any,
    ts: Any,
    event_id: Any,
    propensity: Any = None,
    awaiting_feedback: Any = False,
    prediction: Any = None,
    model_version: Any = None,
) -> dict[str, Any]:
    """The ``AgentOutcome`` record :meth:`AgentEvents.outcome` publishes, every field checked (arguments as there).

    Raises ``TypeError`` or ``ValueError`` naming the field; ``reverify replay`` builds its inputs with it too.

    >>> outcome_record("a", "t", "v1", True, 1, 0.0, 0.0, None, None, None, None, None, None, 5, "e-1")["reward"]
    1.0
    >>> r = outcome_record("a", "t", "v1", None, None, 0.0, 0.0, None, None, None, None, None, None, 5, "e-1", None, True)
    >>> r["awaiting_feedback"], r["success"], r["reward"]
    (True, False, 0.0)
    """
    if not isinstance(awaiting_feedback, bool):
        raise TypeError(f"awaiting_feedback must be a bool, got {type(awaiting_feedback).__name__}")
    if awaiting_feedback:
        if success is not None or reward is not None:
            raise ValueError("an outcome awaiting feedback has no success or reward yet: send them with feedback()")
        success, reward = False, 0.0  # placeholders (the schema's defaults); the worker waits for the feedback
    if not isinstance(success, bool):
        raise TypeError(f"success must be a bool, got {type(success).__name__}")
    reward = _reward(reward)
    return {
        "event_id": _string("event_id", event_id),
        "ts": _timestamp(ts),
        "agent_name": _string("agent_name", agent_name),
        "task_type": _string("task_type", task_type),
        "variant_id": _string("variant_id", variant_id),
        "success": success,
        "reward": reward,
        "latency_ms": _amount("latency_ms", latency_ms),
        "cost_usd": _amount("cost_usd", cost_usd),
        "tokens_in": _count("tokens_in", tokens_in),
        "tokens_out": _count("tokens_out", tokens_out),
        "features": _mapping("features", features, _number),
        "attributes": _mapping("attributes", attributes, _string),
        "trace_id": _string("trace_id", trace_id, required=False),
        "next_state": _string("next_state", next_state, required=False),
        "propensity": _propensity(propensity),
        "awaiting_feedback": awaiting_feedback,
        "prediction": _prediction("prediction", prediction),
        "model_version": _string("model_version", model_version, required=False),
    }


def _reward(value: Any) -> float:
    reward = _number("reward", value)
    if not 0.0 <= reward <= 1.0:
        raise ValueError(f"reward must be within [0, 1], got {reward}")
    return reward


def _prediction(field: str, value: Any) -> float | str | None:
    """A prediction or a label: a class (str), a score or value (a finite number; a bool is 1.0 or 0.0), or None."""
    if value is None or isinstance(value, str):
        return _string(field, value, required=False)
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    return _number(field, value)


def feedback_record(
    outcome_id: Any,
    agent_name: Any,
    success: Any,
    reward: Any,
    label: Any,
    attributes: Any,
    ts: Any,
    event_id: Any,
) -> dict[str, Any]:
    """The ``AgentFeedback`` record :meth:`AgentEvents.feedback` publishes, every field checked.

    >>> feedback_record("o-1", "a", True, 0.5, "spam", None, 5, "f-1")["label"]
    'spam'
    """
    if not isinstance(success, bool):
        raise TypeError(f"success must be a bool, got {type(success).__name__}")
    return {
        "event_id": _string("event_id", event_id),
        "ts": _timestamp(ts),
        "agent_name": _string("agent_name", agent_name),
        "outcome_id": _string("outcome_id", outcome_id),
        "success": success,
        "reward": _reward(reward),
        "label": _prediction("label", label),
        "attributes": _mapping("attributes", attributes, _string),
    }


def _propensity(value: Any) -> float | None:
    """The probability a routed call had of its variant (:meth:`VariantRouter.choose`): in (0, 1], or None.

    >>> _propensity(0.0)
    Traceback (most recent call last):
    ...
    ValueError: propensity must be within (0, 1], got 0.0
    """
    if value is None:
        return None
    value = _number("propensity", value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"propensity must be within (0, 1], got {value}")
    return value


def error_record(
    agent_name: Any,
    component: Any,
    error_type: Any,
    message: Any,
    retryable: Any,
    severity: Any,
    task_type: Any,
    variant_id: Any,
    pipeline: Any,
    attributes: Any,
    trace_id: Any,
    ts: Any,
    event_id: Any,
) -> dict[str, Any]:
    """The ``AgentError`` record :meth:`AgentEvents.error` publishes, every field checked (arguments as there).

    >>> error_record("a", "db", "Timeout", "", False, "fatal", None, None, False, None, None, 5, "e-1")
    Traceback (most recent call last):
    ...
    ValueError: severity must be one of info, warning, error, critical, got 'fatal'
    """
    if severity not in ERROR_SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(ERROR_SEVERITIES)}, got {severity!r}")
    for name, flag in (("retryable", retryable), ("pipeline", pipeline)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    return {
        "event_id": _string("event_id", event_id),
        "ts": _timestamp(ts),
        "agent_name": _string("agent_name", agent_name),
        "task_type": _string("task_type", task_type, required=False),
        "variant_id": _string("variant_id", variant_id, required=False),
        "component": _string("component", component),
        "error_type": _string("error_type", error_type),
        "message": _string("message", message, required=False) or "",
        "retryable": retryable,
        "severity": severity,
        "pipeline": pipeline,
        "attributes": _mapping("attributes", attributes, _string),
        "trace_id": _string("trace_id", trace_id, required=False),
    }


def metric_record(
    agent_name: Any,
    name: Any,
    value: Any,
    task_type: Any,
    variant_id: Any,
    attributes: Any,
    ts: Any,
    event_id: Any,
) -> dict[str, Any]:
    """The ``AgentMetric`` record :meth:`AgentEvents.metric` publishes, every field checked (arguments as there).

    >>> metric_record("a", "queue_depth", 12, None, None, None, 5, "e-1")["value"]
    12.0
    """
    return {
        "event_id": _string("event_id", event_id),
        "ts": _timestamp(ts),
        "agent_name": _string("agent_name", agent_name),
        "task_type": _string("task_type", task_type, required=False),
        "variant_id": _string("variant_id", variant_id, required=False),
        "name": _string("name", name),
        "value": _number("value", value),
        "attributes": _mapping("attributes", attributes, _string),
    }


class AgentEvents:
    """Publish outcome, error and metric events from an agent; nothing lost while the broker is reachable.

    Parameters
    ----------
    bootstrap
        Kafka bootstrap servers; default from settings (``REVERIFY_KAFKA``, else ``localhost:9092``).
    settings
        Loaded :class:`~streams.settings.Settings`; read from the environment when omitted.
    max_buffer
        Events librdkafka's queue holds (``sdk_max_buffer``). While the broker is away, beyond it events are
        dropped and counted.
    max_block_ms
        How long a call waits for room in a full queue while the broker is reachable (``sdk_max_block_ms``,
        Kafka's ``max.block.ms``); an event that found none by then is dropped and counted. 0: never wait.
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        settings: Settings | None = None,
        max_buffer: int | None = None,
        max_block_ms: int | None = None,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings or Settings.load()
        buffer = max_buffer or self.settings.sdk_max_buffer
        self.max_block = (self.settings.sdk_max_block_ms if max_block_ms is None else max_block_ms) / 1000
        conf = self.settings.kafka_config(
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "batch.num.messages": 10000,
                "message.timeout.ms": 0,
                "delivery.report.only.error": True,  # retry until the broker is back; the bound is max_buffer, not time
                "queue.buffering.max.messages": buffer,
                "queue.buffering.max.kbytes": 1048576,
                "partitioner": "murmur2_random",  # Java-compatible: the workers (aiokafka) place keys alike
                "logger": logging.getLogger("reverify.sdk.librdkafka"),
                "on_delivery": self._on_delivery,
                "error_cb": self._on_error,
            }
        )
        if bootstrap:
            conf["bootstrap.servers"] = bootstrap
        conf.update(producer_config or {})
        self._producer = Producer(conf)
        self._outcomes = self.settings.topic("agent.outcomes")
        self._errors = self.settings.topic("agent.errors")
        self._metrics = self.settings.topic("agent.metrics")
        self._feedback = self.settings.topic("agent.feedback")
        # Every ts is checked to be an int before it is encoded.
        self._encode_outcome = encoder("AgentOutcome", int_timestamps=True)
        self._encode_error = encoder("AgentError", int_timestamps=True)
        self._encode_metric = encoder("AgentMetric", int_timestamps=True)
        self._encode_feedback = encoder("AgentFeedback", int_timestamps=True)
        self._lock = threading.Lock()
        # Event ids: a random 96-bit prefix per client and a counter, in UUID layout. As unique as uuid4
        # across clients, and a tenth of its cost on the caller's thread.
        prefix = uuid.uuid4().hex[:20]
        self._id_prefix = (
            f"{prefix[:8]}-{prefix[8:12]}-4{prefix[13:16]}-{'89ab'[int(prefix[16], 16) % 4]}{prefix[17:20]}-"
        )
        self._ids = itertools.count()
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self.waited = 0  # calls that found the queue full and waited for room
        # Set when librdkafka reports every broker down; cleared once the queue is seen to move again. While it
        # is set a full queue drops at once, since waiting would only block the agent.
        self._broker_away = False
        self._away_queue: int | None = None  # the queue length when a full queue last dropped while away

    def _event_id(self, event_id: str | None) -> str:
        if event_id is not None:
            return _string("event_id", event_id)  # type: ignore[return-value]
        return f"{self._id_prefix}{next(self._ids):012x}"

    @property
    def delivered(self) -> int:
        """Events the broker acknowledged (delivery reports come only for failures, to keep the hot path cheap)."""
        pending = self.pending  # first, as it serves the failure reports that count in failed
        return self.sent - pending - self.failed

    @property
    def pending(self) -> int:
        """What librdkafka still holds: events not yet acknowledged (and, while connecting, its own requests)."""
        # Publishing serves librdkafka's queue only now and then; what it still holds unserved (log lines,
        # failure reports) would count here too.
        self._producer.poll(0)
        return len(self._producer)

    def outcome(
        self,
        *,
        agent_name: str,
        task_type: str,
        variant_id: str,
        success: bool | None = None,
        reward: float | None = None,
        latency_ms: float = 0.0,
        cost_usd: float = 0.0,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        features: Mapping[str, float] | None = None,
        attributes: Mapping[str, str] | None = None,
        trace_id: str | None = None,
        next_state: str | None = None,
        ts: int | None = None,
        event_id: str | None = None,
        propensity: float | None = None,
        awaiting_feedback: bool = False,
        prediction: float | str | None = None,
        model_version: str | None = None,
    ) -> str:
        """Record one finished invocation; returns its ``event_id``.

        ``propensity``: the probability the variant had of being chosen for this call, as
        :meth:`VariantRouter.choose` returned it (``choice.propensity``); off-policy estimates weigh by it.
        ``awaiting_feedback=True``: its success and reward are not known yet (leave them out); send them later with
        :meth:`feedback`, naming the returned id. ``prediction`` (a score or a class) and ``model_version`` feed
        the model monitor, which compares the prediction with the feedback's ``label``.
        """
        if (
            type(success) is bool
            and type(reward) is float
            and 0.0 <= reward <= 1.0
            # x - x == 0.0 is false for nan and +-inf only, and cheaper than a call to math.isfinite
            and type(latency_ms) is float
            and 0.0 <= latency_ms < _INF  # false for nan too
            and type(cost_usd) is float
            and 0.0 <= cost_usd < _INF
            and type(agent_name) is str
            and 0 < len(agent_name) <= MAX_STRING
            and type(task_type) is str
            and 0 < len(task_type) <= MAX_STRING
            and type(variant_id) is str
            and 0 < len(variant_id) <= MAX_STRING
            and (tokens_in is None or (type(tokens_in) is int and tokens_in >= 0))
            and (tokens_out is None or (type(tokens_out) is int and tokens_out >= 0))
            and (features is None or (type(features) is dict and _finite_floats(features)))
            and not attributes
            and trace_id is None
            and next_state is None
            and event_id is None
            and (ts is None or type(ts) is int)
            and (propensity is None or (type(propensity) is float and 0.0 < propensity <= 1.0))
            and not awaiting_feedback
            and prediction is None
            and model_version is None
        ):
            # The common call, checked in one expression; anything unusual takes the path that names the field.
            event_id = f"{self._id_prefix}{next(self._ids):012x}"
            record = {
                "event_id": event_id,
                "ts": _now_ms() if ts is None else ts,
                "agent_name": agent_name,
                "task_type": task_type,
                "variant_id": variant_id,
                "success": success,
                "reward": reward,
                "latency_ms": latency_ms,
                "cost_usd": cost_usd,
                "tokens_in": _NULL if tokens_in is None else ("long", tokens_in),
                "tokens_out": _NULL if tokens_out is None else ("long", tokens_out),
                "features": features or {},
                "attributes": {},
                "trace_id": _NULL,
                "next_state": _NULL,
                "propensity": _NULL if propensity is None else ("double", propensity),
                "awaiting_feedback": False,
                "prediction": _NULL,
                "model_version": _NULL,
            }
        else:
            record = outcome_record(
                agent_name,
                task_type,
                variant_id,
                success,
                reward,
                latency_ms,
                cost_usd,
                tokens_in,
                tokens_out,
                features,
                attributes,
                trace_id,
                next_state,
                ts,
                self._event_id(event_id),
                propensity,
                awaiting_feedback,
                prediction,
                model_version,
            )
            event_id = record["event_id"]
        self._publish(self._outcomes, agent_name, self._encode_outcome(record))
        return event_id

    def feedback(
        self,
        outcome_id: str,
        *,
        agent_name: str,
        success: bool,
        reward: float,
        label: float | str | None = None,
        attributes: Mapping[str, str] | None = None,
        ts: int | None = None,
        event_id: str | None = None,
    ) -> str:
        """The late result of the outcome ``outcome_id`` (published with ``awaiting_feedback=True``); ``label`` is
        the true value its ``prediction`` is judged against. Returns the feedback's own ``event_id``."""
        record = feedback_record(
            outcome_id, agent_name, success, reward, label, attributes, ts, self._event_id(event_id)
        )
        self._publish(self._feedback, agent_name, self._encode_feedback(record))
        return record["event_id"]

    def error(
        self,
        *,
        agent_name: str,
        component: str,
        error_type: str,
        message: str = "",
        retryable: bool = False,
        severity: str = "error",
        task_type: str | None = None,
        variant_id: str | None = None,
        pipeline: bool = False,
        attributes: Mapping[str, str] | None = None,
        trace_id: str | None = None,
        ts: int | None = None,
        event_id: str | None = None,
    ) -> str:
        """Record an error; ``pipeline=True`` marks one that is not the agent's fault."""
        record = error_record(
            agent_name,
            component,
            error_type,
            message,
            retryable,
            severity,
            task_type,
            variant_id,
            pipeline,
            attributes,
            trace_id,
            ts,
            self._event_id(event_id),
        )
        self._publish(self._errors, agent_name, self._encode_error(record))
        return record["event_id"]

    def metric(
        self,
        *,
        agent_name: str,
        name: str,
        value: float,
        task_type: str | None = None,
        variant_id: str | None = None,
        attributes: Mapping[str, str] | None = None,
        ts: int | None = None,
        event_id: str | None = None,
    ) -> str:
        """Record a numeric measurement (watched for drift per agent and name)."""
        record = metric_record(agent_name, name, value, task_type, variant_id, attributes, ts, self._event_id(event_id))
        self._publish(self._metrics, agent_name, self._encode_metric(record))
        return record["event_id"]

    def _publish(self, topic: str, key: str, value: bytes) -> None:
        try:
            self._producer.produce(topic, value, key.encode())
        except BufferError:
            if not self._wait_for_room(topic, key.encode(), value):
                self._drop()
                return
        self.sent += 1
        if not self.sent % _POLL_EVERY:
            self._producer.poll(0)

    def _wait_for_room(self, topic: str, key: bytes, value: bytes) -> bool:
        """Produce into a full queue once there is room; ``False`` when the broker is away or ``max_block`` ran out.

        Serving delivery reports is what frees room: librdkafka removes an acknowledged event from the queue
        when its report is served.
        """
        producer = self._producer
        if self._broker_away and not self._queue_moves():
            return False
        self.waited += 1
        deadline = time.monotonic() + self.max_block
        while True:
            producer.poll(_WAIT_SLICE)
            try:
                producer.produce(topic, value, key)
                return True
            except BufferError:
                pass
            if time.monotonic() >= deadline or (self._broker_away and not self._queue_moves()):
                return False

    def _queue_moves(self) -> bool:
        """While the broker was reported away: whether events leave the queue again (it is back, or never went).

        Asked with a full queue. The first time in an outage it watches the queue for a moment (a report of
        every broker down may be a passing reconnection); after that it compares with the length it saw last, so
        that while the broker stays away a call drops at once instead of waiting.
        """
        producer = self._producer
        producer.poll(0)
        queued = len(producer)
        if self._away_queue is None:
            deadline = time.monotonic() + _AWAY_GRACE
            while len(producer) >= queued and time.monotonic() < deadline:
                producer.poll(_WAIT_SLICE)
            moved = len(producer) < queued
        else:
            moved = queued < self._away_queue
        if moved:
            self._broker_away, self._away_queue = False, None
        else:
            self._away_queue = len(producer)
        return moved

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN or err.fatal():
            self._broker_away = True
            log.warning("reverify: %s", err)
        else:  # a broker connection failing now and then; librdkafka retries it
            log.debug("reverify: %s", err)

    def _drop(self) -> None:
        with self._lock:
            self.dropped += 1
            dropped = self.dropped
        if dropped == 1 or dropped % 1000 == 0:
            log.warning("reverify: buffer full (%d events), dropped %d events so far", self.pending, dropped)
        self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            with self._lock:
                self.failed += 1
            log.warning("reverify: event not delivered: %s", err)

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` seconds for delivery; returns how many events are still undelivered."""
        return self._producer.flush(timeout)

    def close(self, timeout: float = 10.0) -> int:
        """Flush and report what could not be delivered; returns the undelivered count."""
        left = self.flush(timeout)
        if left or self.dropped or self.failed:
            log.warning(
                "reverify: closing with %d undelivered, %d dropped (buffer full), %d failed",
                left,
                self.dropped,
                self.failed,
            )
        return left

    def __enter__(self) -> AgentEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _consumer(settings: Settings, group: str | None, **extra: Any) -> Consumer:
    conf = settings.kafka_config(
        **{
            "group.id": group or f"reverify-sdk-{uuid.uuid4().hex[:12]}",
            "auto.offset.reset": "latest",
            "enable.auto.commit": True,
            "session.timeout.ms": 6000,  # quick joins: the broker waits about half of it before assigning
            "logger": logging.getLogger("reverify.sdk.librdkafka"),
        }
    )
    conf.update(extra)
    return Consumer(conf)


class AlertSubscriber:
    """Iterate alerts as they are published; its own consumer group, optional minimum severity.

    ``for alert in AlertSubscriber(min_severity="warning"): ...`` yields dicts shaped
    like ``schemas/Alert.avsc``. ``from_beginning=True`` replays the history kept on the topic.
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        settings: Settings | None = None,
        group: str | None = None,
        min_severity: str = "info",
        agent_name: str | None = None,
        from_beginning: bool = False,
    ) -> None:
        if min_severity not in _ALERT_RANK:
            raise ValueError(f"min_severity must be one of {', '.join(_ALERT_RANK)}, got {min_severity!r}")
        self.settings = settings or Settings.load()
        extra = {"auto.offset.reset": "earliest" if from_beginning else "latest"}
        if bootstrap:
            extra["bootstrap.servers"] = bootstrap
        self._consumer = _consumer(self.settings, group, **extra)
        self._consumer.subscribe([self.settings.topic("alerts")])
        self._min = _ALERT_RANK[min_severity]
        self._agent = agent_name

    def poll(self, timeout: float = 1.0) -> dict[str, Any] | None:
        """The next matching alert, or ``None`` when none arrived within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self._consumer.poll(max(0.0, deadline - time.monotonic()))
            if msg is None:
                return None
            if msg.error() is None:
                try:
                    alert = decode_as("Alert", msg.value())
                except DecodeError as exc:
                    log.warning("reverify: skipping an undecodable alert: %s", exc)
                else:
                    if _ALERT_RANK.get(alert["severity"], 0) >= self._min and (
                        self._agent is None or alert["labels"].get("agent_name") == self._agent
                    ):
                        return alert
            if time.monotonic() >= deadline:
                return None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            alert = self.poll(1.0)
            if alert is not None:
                yield alert

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> AlertSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VariantRouter:
    """Which variant an agent uses for each call, decided in this process from the control topics it follows.

    A background thread reads ``crl.active`` and ``control.agents`` (pause, degradation level, circuits) from the
    beginning, and in ``thompson`` mode also ``crl.qvalues``, ``crl.decisions`` and ``control.rollbacks``; the
    decisions themselves are :class:`processors.routing.RoutingState`'s. :meth:`choose` reads only what this process
    holds: it never waits for the broker and never raises because it is away (the last known state, else the
    ``default`` variant).

    Parameters
    ----------
    mode
        ``active`` (the active variant) or ``thompson`` (safe Thompson sampling, docs/decision-rules.md); default
        ``[routing] mode``.
    seed
        Seeds the Thompson draws and the Monte Carlo propensities (reproducible runs, tests).
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        settings: Settings | None = None,
        mode: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.settings = settings or Settings.load()
        routing = self.settings.section("routing", RoutingSettings)
        if mode is not None:
            if mode not in MODES:
                raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
            routing = dataclasses.replace(routing, mode=mode)
        self.mode = routing.mode
        learning = self.settings.section("learning", LearningSettings)
        self._state = RoutingState(
            routing,
            cooldown_ms=learning.cooldown_ms,
            approval_q=learning.approval_q,
            promotion_probability=learning.promotion_probability,
            rng=random.Random(seed),
            np_rng=np.random.default_rng(seed),
        )
        extra: dict[str, Any] = {"auto.offset.reset": "earliest", "enable.auto.commit": False}
        if bootstrap:
            extra["bootstrap.servers"] = bootstrap
        self._consumer = _consumer(self.settings, None, **extra)
        followed = ["crl.active", "control.agents", "crl.experiments"]
        if self.mode == "thompson":
            followed += ["crl.qvalues", "crl.decisions", "control.rollbacks"]
        self._consumer.subscribe([self.settings.topic(name) for name in followed])
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="reverify-variant-router", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.1)
            if msg is None or msg.error() is not None or msg.value() is None:
                continue
            try:
                name, record = decode(msg.value())
            except DecodeError as exc:
                log.warning("reverify: skipping an undecodable control record: %s", exc)
                continue
            with self._lock:
                self._state.apply(name, record)

    def choose(
        self,
        agent_name: str,
        task_type: str,
        unit_id: str | None = None,
        *,
        default: str = "default",
        candidates: Sequence[str] | None = None,
    ) -> Choice:
        """The variant for one call and its propensity (:class:`processors.routing.Choice`).

        ``unit_id`` names the unit (user, session ...) a call is for: while an experiment runs on the agent/task
        (``reverify experiment start``) the same unit gets the same variant in every process; pass
        ``choice.attributes`` with the outcome so that the experiment counts the unit once.
        ``default`` is used while nothing is known of the agent/task. ``candidates``, the variants this process can
        run, lets Thompson routing explore variants that have no outcomes yet (and only those it can run).
        """
        _string("agent_name", agent_name)
        _string("task_type", task_type)
        _string("unit_id", unit_id, required=False)
        try:
            with self._lock:
                return self._state.choose(
                    agent_name, task_type, unit_id, now_ms=_now_ms(), default=default, candidates=candidates
                )
        except Exception:  # a bug of ours must not stop the agent: it runs the variant it would have run before
            log.exception("reverify: choosing a variant failed; using the active variant")
            return Choice(self.variant_for(agent_name, task_type, default), 1.0, "fallback", "error while choosing")

    def variant_for(self, agent_name: str, task_type: str, default: str = "default") -> str:
        """The active variant of ``agent_name``/``task_type``, or ``default`` while none is known."""
        with self._lock:
            return self._state.variant_for(agent_name, task_type, default)

    def is_paused(self, agent_name: str) -> bool:
        """True while an assurance case holds the agent paused (the latest pause/resume record says so)."""
        with self._lock:
            return self._state.is_paused(agent_name)

    def degradation_level(self, agent_name: str) -> int:
        """The graceful-degradation level (0 = full service ... 4) the agent must run at: the highest any source asks."""
        with self._lock:
            return self._state.degradation_level(agent_name)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()

    def __enter__(self) -> VariantRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
