"""Prometheus metrics of a long-running reverify process (served on ``/metrics``, port ``metrics_port``).

The seed's gauges (drift_psi, rl_avg_reward, circuit_breaker_state,
degradation_level, assurance_failures_total, recovery_time) sit beside
throughput, dead letters and processing latency.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

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
ROLLBACKS = Counter("reverify_rollbacks_total", "Rollbacks emitted", ["agent_name", "task_type"])


def serve(port: int) -> None:
    """Expose ``/metrics`` on ``port`` (0 = off)."""
    if port:
        start_http_server(port)
