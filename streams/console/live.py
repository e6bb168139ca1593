"""What is happening now: the console follows the ``alerts`` topic itself.

The pages read the history, which is as fresh as the sink's last batch (``[sink] max_delay``, 1 s by default,
longer when the sink is behind or stopped). The fleet page's *Live* section comes from the topic: a daemon thread
reads it through the SDK's :class:`~reverify.streams.client.AlertSubscriber` (its own consumer group, from the
beginning of what the topic keeps) and holds the latest alerts, firing and resolved, newest first.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from reverify.streams.settings import Settings

log = logging.getLogger("reverify.console")


class LiveAlerts:
    """The latest ``keep`` alerts published, newest first.

    >>> live = LiveAlerts(keep=2)
    >>> for n in range(3):
    ...     live.add({"title": f"alert {n}"})
    >>> [a["title"] for a in live.recent()]
    ['alert 2', 'alert 1']
    """

    def __init__(self, keep: int = 20) -> None:
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def add(self, alert: dict[str, Any]) -> None:
        with self._lock:
            self._recent.appendleft(alert)

    def recent(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._recent)

    def follow(self, settings: Settings) -> None:
        """Read ``settings``' alerts topic on a daemon thread until :meth:`close`."""
        threading.Thread(target=self._run, args=(settings,), name="reverify-console-live", daemon=True).start()

    def close(self) -> None:
        self._stop.set()

    def _run(self, settings: Settings) -> None:
        from reverify.streams.client import AlertSubscriber

        try:
            subscriber = AlertSubscriber(settings=settings, from_beginning=True)
        except Exception as exc:  # a configuration Kafka refuses: the pages still serve the history
            log.warning("console: cannot follow the alerts topic: %s", exc)
            return
        with subscriber:
            while not self._stop.is_set():
                alert = subscriber.poll(0.5)
                if alert is not None:
                    self.add(alert)
