"""The background worker inside ``cohorta serve`` (or ``cohorta worker``): applies due recomputes."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from cohorta.clock import Clock
from cohorta.config import Settings
from cohorta.membership.jobs import queue_safety_net, queue_window_edges, run_due_wakeups, run_pending
from cohorta.membership.live import SegmentIndex

log = logging.getLogger("cohorta.scheduler")


class Scheduler:
    def __init__(self, factory: sessionmaker[Session], clock: Clock, settings: Settings, index: SegmentIndex,
                 interval: float = 1.0) -> None:  # fmt: skip
        self.factory, self.clock, self.settings, self.interval = factory, clock, settings, interval
        self.index = index
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="cohorta-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                queue_window_edges(self.factory, self.clock)
                queue_safety_net(self.factory, self.clock, self.settings)
                run_pending(self.factory, self.clock, self.settings, self.index)
                run_due_wakeups(self.factory, self.clock, self.settings, self.index)
            except Exception:
                log.exception("scheduler pass failed")
            self._stop.wait(self.interval)
