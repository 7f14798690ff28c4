"""The background worker inside ``cohorta serve`` (or ``cohorta worker``): applies due recomputes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from cohorta.campaigns.distribution import run_due_distributions
from cohorta.clock import Clock
from cohorta.clv.service import score_if_due
from cohorta.config import Settings
from cohorta.exports.jobs import run_pending_exports
from cohorta.membership.jobs import queue_safety_net, queue_window_edges, run_due_wakeups, run_pending
from cohorta.membership.live import SegmentIndex
from cohorta.membership.monthly import build_if_needed
from cohorta.membership.service import recount_all_statistics
from cohorta.sources.service import run_due_syncs
from cohorta.webhooks.service import dispatch

log = logging.getLogger("cohorta.scheduler")
CLV_CHECK_SECONDS = 60


class Scheduler:
    """Two threads: membership upkeep (recomputes, wake-ups, window edges, safety nets, statistics, CLV scoring) and
    deliveries (webhook outbox, distribution campaigns, background exports, source syncs), so that slow outside work
    never delays a membership change."""

    def __init__(self, factory: sessionmaker[Session], clock: Clock, settings: Settings, index: SegmentIndex,
                 interval: float = 1.0) -> None:  # fmt: skip
        self.factory, self.clock, self.settings, self.interval = factory, clock, settings, interval
        self.index = index
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stats_at: datetime | None = None
        self._clv_checked_at: datetime | None = None

    def start(self) -> None:
        for name, work in (("cohorta-scheduler", self.membership_pass), ("cohorta-deliveries", self._deliveries)):
            thread = threading.Thread(target=self._loop, args=(work,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def membership_pass(self) -> None:
        """One pass of membership upkeep, as the scheduler thread runs it every second (benchmarks and tests call it
        with a frozen clock)."""
        # Month figures for the analytics: built once after the upgrade that added them, again if the zone changes.
        build_if_needed(self.factory, self.settings.timezone)
        queue_window_edges(self.factory, self.clock)
        queue_safety_net(self.factory, self.clock, self.settings)
        run_pending(self.factory, self.clock, self.settings, self.index)
        run_due_wakeups(self.factory, self.clock, self.settings, self.index)
        now = self.clock.now()
        if self._stats_at is None or (now - self._stats_at).total_seconds() >= self.settings.stats_period_seconds:
            recount_all_statistics(self.factory, now)
            self._stats_at = now
        # Predicted CLV: re-scored when the model's last scoring is a period old (checked once a minute; the time of
        # the last scoring is kept with the model, so restarts and several workers do not score again at once).
        if self._clv_checked_at is None or (now - self._clv_checked_at).total_seconds() >= CLV_CHECK_SECONDS:
            self._clv_checked_at = now
            score_if_due(self.factory, self.clock, self.settings)

    def _deliveries(self) -> None:
        dispatch(self.factory, self.clock, self.settings)
        run_due_distributions(self.factory, self.clock, self.settings)
        run_pending_exports(self.factory, self.clock, self.settings)
        run_due_syncs(self.factory, self.clock, self.settings)  # one due source sync per pass

    def _loop(self, work: Callable[[], None]) -> None:
        while not self._stop.is_set():
            try:
                work()
            except Exception:
                log.exception("scheduler pass failed")
            self._stop.wait(self.interval)
