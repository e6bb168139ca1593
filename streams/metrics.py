"""Prometheus metrics of a long-running reverify process (served on ``/metrics``, port ``metrics_port``).

The seed's gauges (drift_psi, rl_avg_reward, circuit_breaker_state,
degradation_level, assurance_failures_total, recovery_time) sit beside
throughput, dead letters and processing latency, and the SLO gauges
(reverify_slo_error_budget_remaining, reverify_slo_burn_rate) from SloReports. A worker keeps the seed's
gauges from what its pipelines emit (:class:`SeedGauges`), so they cover the
agents whose partitions it owns and start empty after a restart until the
next emission of each series.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from reverify.processors.degradation_levels import effective_level
from reverify.processors.errors import CIRCUIT_STATE_CODES

EVENTS_CONSUMED = Counter("reverify_events_consumed_total", "Input events consumed", ["topic"])
EVENTS_PRODUCED = Counter("reverify_events_produced_total", "Events produced", ["topic"])
DECODE_FAILURES = Counter(
    "reverify_decode_failures_total", "Inputs sent to the dead-letter topic", ["topic", "error_type"]
)
BATCH_SIZE = Histogram(
    "reverify_batch_events", "Input events per batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000)
)
BATCH_SECONDS = Histogram("reverify_batch_seconds", "Time to process one input batch")
PROCESSING_DELAY = Histogram(
    "reverify_processing_delay_seconds",
    "From an input's event time to the end of its batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DRIFT_PSI = Gauge("drift_psi", "Latest PSI per series", ["agent_name", "feature"])
RL_AVG_REWARD = Gauge("rl_avg_reward", "Mean reward of an arm", ["agent_name", "task_type", "variant_id"])
CIRCUIT_BREAKER_STATE = Gauge("circuit_breaker_state", "0 closed, 1 half-open, 2 open", ["agent_name", "component"])
DEGRADATION_LEVEL = Gauge("degradation_level", "Graceful-degradation level (0-4)", ["agent_name"])
ASSURANCE_FAILURES = Counter("assurance_failures_total", "Assurance verdicts that turned failed", ["case"])
RECOVERY_TIME = Histogram("recovery_time", "Seconds from a rollback's cause to the new active variant")
NOTIFICATIONS_SENT = Counter(
    "reverify_notifications_sent_total", "Notifications a receiver accepted", ["receiver", "channel"]
)
NOTIFICATIONS_FAILED = Counter(
    "reverify_notifications_failed_total", "Notifications dead-lettered after every attempt", ["receiver", "channel"]
)
NOTIFICATIONS_RETRIED = Counter(
    "reverify_notifications_retried_total",
    "Delivery attempts that failed and were tried again",
    ["receiver", "channel"],
)
NOTIFICATION_LATENCY = Histogram(
    "reverify_notification_delivery_seconds",
    "From a notification being due to its receiver accepting it (retries included)",
    ["receiver", "channel"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
FEEDBACK_PENDING = Gauge(
    "reverify_feedback_pending", "Outcomes of an arm awaiting feedback", ["agent_name", "task_type", "variant_id"]
)
FEEDBACK_TIMEOUTS = Gauge(
    "reverify_feedback_timeouts",
    "Outcomes of an arm counted by the feedback timeout's default",
    ["agent_name", "task_type", "variant_id"],
)
ROLLBACKS = Counter("reverify_rollbacks_total", "Rollbacks emitted", ["agent_name", "task_type"])
_INCIDENT_BUCKETS = (1, 5, 10, 20, 30, 45, 60, 90, 120, 300, 600, 1800, 3600)
MTTR = Histogram(
    "reverify_mttr_seconds",
    "Incidents: first evidence of the failure to verified recovery (seed 004: < 60 s)",
    ["cause"],
    buckets=_INCIDENT_BUCKETS,
)
TIME_TO_DETECT = Histogram(
    "reverify_time_to_detect_seconds",
    "Incidents: first evidence of the failure to the alarm",
    ["cause"],
    buckets=_INCIDENT_BUCKETS,
)
INCIDENTS = Counter("reverify_incidents_total", "Incidents by how they ended", ["cause", "outcome"])
# The names Sloth and Pyrra users look for; one series per SLO and scope value (task_type "" when not per task).
SLO_BUDGET_REMAINING = Gauge(
    "reverify_slo_error_budget_remaining",
    "Fraction of the SLO window's error budget left (below 0: overspent)",
    ["slo", "agent_name", "task_type"],
)
SLO_BURN_RATE = Gauge(
    "reverify_slo_burn_rate",
    "Error ratio over the window divided by the error budget (1 - objective)",
    ["slo", "agent_name", "task_type", "window"],
)


def child(cache: dict[tuple[str, ...], Any], metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, kept in ``cache``: ``labels()`` costs ~4 us a call, and the worker asks for the
    same children at every emission (a QValue a second for every arm)."""
    found = cache.get(labels)
    if found is None:
        found = cache[labels] = metric.labels(*labels)
    return found


class SeedGauges:
    """Sets the seed's gauges from emitted records (``observe(record_type, record)``); other types cost a lookup.

    ``degradation_level`` is, as for :class:`streams.client.VariantRouter`, the highest level any source (error
    monitor, assurance cases) currently asks of the agent (:func:`processors.degradation_levels.effective_level`). ``drift_psi`` follows the agent-level
    series (reports of per-variant series would make it flap between variants). ``recovery_time`` is the time
    from the event that caused a rollback to the emission of the rollback (and of the new active variant).
    Incident records feed ``reverify_time_to_detect_seconds`` (when one opens), ``reverify_mttr_seconds`` (when one
    is verified) and ``reverify_incidents_total`` (escalated, recovered, recovered without a person).
    """

    def __init__(self) -> None:
        self._levels: dict[str, dict[str, int]] = {}
        self._rewards: dict[tuple[str, ...], Any] = {}  # children of RL_AVG_REWARD and DRIFT_PSI (see child)
        self._psis: dict[tuple[str, ...], Any] = {}
        self._pending: dict[tuple[str, ...], Any] = {}
        self._timeouts: dict[tuple[str, ...], Any] = {}
        self._observers = {
            "QValue": self._qvalue,
            "DriftReport": self._drift,
            "AgentControl": self._control,
            "AssuranceResult": self._assurance,
            "Rollback": self._rollback,
            "Incident": self._incident,
            "SloReport": self._slo,
        }

    def observe(self, record_type: str, record: dict[str, Any]) -> None:
        observer = self._observers.get(record_type)
        if observer is not None:
            observer(record)

    def _qvalue(self, record: dict[str, Any]) -> None:
        labels = (record["agent_name"], record["task_type"], record["variant_id"])
        child(self._rewards, RL_AVG_REWARD, *labels).set(record["reward_mean"])
        if record.get("pending") or record.get("timeouts") or labels in self._pending:  # arms with delayed outcomes
            child(self._pending, FEEDBACK_PENDING, *labels).set(record.get("pending", 0))
            child(self._timeouts, FEEDBACK_TIMEOUTS, *labels).set(record.get("timeouts", 0))

    def _drift(self, record: dict[str, Any]) -> None:
        if record.get("variant_id") is None:
            child(self._psis, DRIFT_PSI, record["agent_name"], record["feature"]).set(record["psi"])

    def _control(self, record: dict[str, Any]) -> None:
        agent = record["agent_name"]
        state = record.get("circuit_state")
        if record["kind"] == "circuit" and record.get("component") and state in CIRCUIT_STATE_CODES:
            CIRCUIT_BREAKER_STATE.labels(agent, record["component"]).set(CIRCUIT_STATE_CODES[state])
        if record["kind"] in ("degrade", "circuit"):
            DEGRADATION_LEVEL.labels(agent).set(effective_level(self._levels.setdefault(agent, {}), record))

    @staticmethod
    def _assurance(record: dict[str, Any]) -> None:
        if record["verdict"] == "failed" and record.get("previous_verdict") != "failed":
            ASSURANCE_FAILURES.labels(record["case_name"]).inc()

    @staticmethod
    def _slo(record: dict[str, Any]) -> None:
        labels = (record["slo"], record["agent_name"], record.get("task_type") or "")
        SLO_BUDGET_REMAINING.labels(*labels).set(record["error_budget_remaining"])
        for window, rate in record["burn_rates"].items():
            SLO_BURN_RATE.labels(*labels, window).set(rate)

    @staticmethod
    def _rollback(record: dict[str, Any]) -> None:
        ROLLBACKS.labels(record["agent_name"], record["task_type"]).inc()
        RECOVERY_TIME.observe(max(0.0, time.time() - record["ts"] / 1000))

    @staticmethod
    def _incident(record: dict[str, Any]) -> None:
        cause = record["cause"]
        if record["change"] == "opened":
            TIME_TO_DETECT.labels(cause).observe(record["time_to_detect_ms"] / 1000)
        elif record["change"] == "escalated":
            INCIDENTS.labels(cause, "escalated").inc()
        elif record["status"] == "resolved":
            MTTR.labels(cause).observe(record["mttr_ms"] / 1000)
            INCIDENTS.labels(cause, "recovered_without_a_person" if record["automatic"] else "recovered").inc()


def serve(port: int) -> None:
    """Expose ``/metrics`` on ``port`` (0 = off)."""
    if port:
        start_http_server(port)
