"""Dead letters rising: an alert when a topic's inputs start failing to decode or validate.

One bad message is the producer's problem and is in ``reverify.deadletter``
with its reason; a stream of them means a producer was deployed with a bug or
a schema changed incompatibly, and people should hear of it. Per input topic,
the monitor counts dead letters in a sliding time window; at ``threshold``
or more the ``deadletter`` alert fires (through the Alertmanager lifecycle of
:class:`~processors.alerting.AlertManager`), and it resolves once a whole
window passes below the threshold. The counts live in the worker's memory: dead
letters are kept on their topic, so a restart forgets only a minute of counting.

>>> m = DeadLetterMonitor(DeadLetterSettings(threshold=3, window_ms=60_000))
>>> [e.value["status"] for t in (0, 1_000, 2_000) for e in m.on_dead_letter("agent.outcomes", "invalid", t)]
['firing']
>>> m.tick(30_000)
[]
>>> [e.value["status"] for e in m.tick(70_000)]
['resolved']
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from reverify.processors.alerting import AlertManager
from reverify.processors.base import Emission


@dataclass(frozen=True)
class DeadLetterSettings:
    """``[deadletters]``: how many dead letters of one topic within ``window_ms`` raise the alert."""

    threshold: int = 10
    window_ms: int = 60_000
    severity: str = "warning"


class DeadLetterMonitor:
    """Counts dead letters per input topic and keeps the ``deadletter`` alert of each."""

    def __init__(self, settings: DeadLetterSettings | None = None, alerts: AlertManager | None = None) -> None:
        self.settings = settings or DeadLetterSettings()
        self.alerts = alerts or AlertManager()
        self._times: dict[str, deque[int]] = {}
        self._reasons: dict[str, dict[str, int]] = {}

    def on_dead_letter(self, topic: str, error_type: str, now_ms: int) -> list[Emission]:
        times = self._times.setdefault(topic, deque())
        times.append(now_ms)
        kinds = self._reasons.setdefault(topic, {})
        kinds[error_type] = kinds.get(error_type, 0) + 1
        return self._observe(topic, now_ms)

    def tick(self, now_ms: int) -> list[Emission]:
        out: list[Emission] = []
        for topic in list(self._times):
            out += self._observe(topic, now_ms)
        return out + self.alerts.tick(now_ms)

    def _observe(self, topic: str, now_ms: int) -> list[Emission]:
        s = self.settings
        times = self._times[topic]
        while times and times[0] <= now_ms - s.window_ms:
            times.popleft()
        count = len(times)
        if count == 0:
            self._reasons.pop(topic, None)
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self._reasons.get(topic, {}).items()))
        return self.alerts.observe(
            "deadletter",
            {"topic": topic},
            count >= s.threshold,
            now_ms,
            severity=s.severity,
            title=f"Dead letters rising on {topic}",
            message=f"{count} inputs of {topic} went to the dead-letter topic in {s.window_ms // 1000} s ({kinds})",
            evidence={"value": float(count), "threshold": float(s.threshold), "sample_size": float(count)},
            statistic="dead_letters_per_window",
        )
