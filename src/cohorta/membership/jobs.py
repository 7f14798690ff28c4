"""Recompute jobs: queued segments are recomputed as diffs, dependencies first, each in its own transaction.

The queue is the segments table itself (``refresh_state``), so a job survives a restart: a segment left ``running``
by a killed process is picked up again once it has been running for longer than STALE_AFTER. Because a recompute's
diff is applied in one transaction, a kill midway leaves the previous membership whole.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cohorta import rules
from cohorta.clock import Clock
from cohorta.config import Settings
from cohorta.customers.models import Customer
from cohorta.db import insert_rows, table_of, unit_of_work
from cohorta.evaluation.snapshots import load_snapshots
from cohorta.evaluation.wakeups import wakeup_candidates
from cohorta.membership.live import SegmentIndex, lock_segments, memberships_of, next_wakeup, plan_wakeups, wake
from cohorta.membership.service import enter_list, has_members, recompute
from cohorta.segments.models import (
    ChangeCause,
    RefreshState,
    Segment,
    SegmentStatus,
    SegmentType,
    SegmentWakeup,
)

log = logging.getLogger("cohorta.jobs")
STALE_AFTER = timedelta(minutes=15)
MAX_ATTEMPTS = 5


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff: 10 s, 20 s, 40 s ... capped at 10 minutes."""
    return timedelta(seconds=min(10 * 2 ** max(attempts - 1, 0), 600))


#: The refresh reason of a new static segment whose list is saved and whose members enter in the background.
LIST_ENTRY = "list"


def queue(segment: Segment, now: datetime, reason: str = "definition") -> None:
    segment.refresh_reason = reason
    segment.refresh_state = RefreshState.queued.value
    segment.refresh_requested_at = now
    segment.refresh_error = None
    segment.refresh_attempts = 0


def dependents(session: Session, segment_id: str) -> list[Segment]:
    """Active dynamic segments whose rule references this one."""
    candidates = session.scalars(
        sa.select(Segment).where(
            Segment.type == SegmentType.dynamic.value,
            Segment.status == SegmentStatus.active.value,
            Segment.id != segment_id,
            # only rules whose text names the id are parsed (parsing all 200 after every recompute that moved
            # someone cost a safety net 200 x 200 parses); the parse below decides
            sa.cast(Segment.rule, sa.Text).contains(segment_id),
        )
    ).all()
    return [
        s for s in candidates if s.rule and segment_id in rules.segment_references(rules.Rule.model_validate(s.rule))
    ]


def queue_dependents(session: Session, segment_id: str, now: datetime) -> None:
    """The segment's membership moved: recompute the active segments whose rules use it (unless already queued)."""
    for dependent in dependents(session, segment_id):
        if dependent.refresh_state not in (RefreshState.queued.value, RefreshState.running.value):
            queue(dependent, now)


def _due(session: Session, now: datetime) -> list[tuple[str, int]]:
    """(id, version) of every segment whose recompute is due, oldest request first: ids, not whole rows, since
    :func:`run_pending` asks again after every recompute (whole rows made a safety net of 200 segments read 20,000)."""
    stale = now - STALE_AFTER
    query = (
        sa.select(Segment.id, Segment.version)
        .where(
            sa.or_(
                sa.and_(Segment.refresh_state == RefreshState.queued.value, Segment.refresh_requested_at <= now),
                sa.and_(Segment.refresh_state == RefreshState.running.value, Segment.refresh_started_at < stale),
            )
        )
        .order_by(Segment.refresh_requested_at, Segment.id)
    )
    return [(segment_id, version) for segment_id, version in session.execute(query)]


def _references(session: Session, segment_id: str) -> set[str]:
    rule = session.scalar(sa.select(Segment.rule).where(Segment.id == segment_id))
    return rules.segment_references(rules.Rule.model_validate(rule)) if rule else set()


#: PostgreSQL plans the live path's reads of membership and wake-ups (a customer's memberships, wake-up deletes) from
#: table statistics. A first computation that fills these tables leaves statistics of empty tables until they are
#: analyzed, which autovacuum does late or, where it is off, never: each write then probed every (segment, customer)
#: pair through the table's pages (at 1,000,000 customers and 200 segments: 8.15 s of membership reads for two bulk
#: events requests of 5,000, 0.46 s once analyzed; docs/design.md). The tables live writes read by customer are also
#: vacuumed, which sets their visibility map: a customer's memberships are then read from the (customer, segment)
#: index alone, not from one heap page per segment they are in (at 100,000 customers, 36 pages read for one
#: customer before, 4 after; a write's membership read 2.3 -> 1.1 ms).
#: A recompute run that wrote at least this many rows there, and at least a tenth of the rows the statistics know
#: of (autovacuum's own rule), vacuums and analyzes them when it ends.
ANALYZE_AFTER_ROWS = 10_000
ANALYZED_TABLES = ("segment_members", "segment_membership_history", "segment_wakeups")
VACUUMED_TABLES = ("segment_members", "segment_wakeups")  # read by customer; history is only appended to


def run_pending(
    factory: sessionmaker[Session], clock: Clock, settings: Settings, index: SegmentIndex | None = None
) -> list[str]:
    """Recompute every due segment; returns the ids done (or failed). Segments a queued one depends on go first."""
    finished: list[str] = []
    uses: dict[tuple[str, int], set[str]] = {}  # by (id, version): a rule changes only with a new version
    written = 0  # rows written to the membership tables (ANALYZE_AFTER_ROWS)
    while True:
        with unit_of_work(factory) as session:
            due = _due(session, clock.now())
            for key in due:
                if key not in uses:
                    uses[key] = _references(session, key[0])
            pending = {segment_id for segment_id, _ in due}
            ready = [key for key in due if not uses[key] & (pending - {key[0]})] or due[:1]
            if not ready:
                break
            segment = session.get(Segment, ready[0][0])
            assert segment is not None
            segment.refresh_state = RefreshState.running.value
            segment.refresh_started_at = clock.now()
            segment_id = segment.id
        finished.append(segment_id)
        replan, moved = _run_one(factory, clock, settings, segment_id)
        written += 2 * moved  # a member row and a history row each
        if replan and index is not None:
            written += plan_all_wakeups(factory, clock, settings, index, segment_id)
    if written >= ANALYZE_AFTER_ROWS:
        refresh_statistics(factory, written)
    return finished


def refresh_statistics(factory: sessionmaker[Session], written: int) -> None:
    """Vacuum and analyze the membership tables on PostgreSQL when ``written`` rows are at least a tenth of what
    their statistics know of (see ANALYZE_AFTER_ROWS)."""
    with unit_of_work(factory) as session:
        if session.get_bind().dialect.name != "postgresql":
            return
        known = session.execute(
            sa.text("SELECT COALESCE(SUM(GREATEST(reltuples, 0)), 0) FROM pg_class WHERE relname = ANY(:tables)"),
            {"tables": list(ANALYZED_TABLES)},
        ).scalar()
        if written < 0.1 * float(known or 0):
            return
        engine = session.get_bind().engine
    # VACUUM runs outside any transaction; it blocks neither reads nor writes.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text(f"VACUUM (ANALYZE) {', '.join(VACUUMED_TABLES)}"))
        analyzed = [t for t in ANALYZED_TABLES if t not in VACUUMED_TABLES]
        connection.execute(sa.text(f"ANALYZE {', '.join(analyzed)}"))
    log.info("vacuumed and analyzed %s after %d rows written", ", ".join(ANALYZED_TABLES), written)


def _run_one(factory: sessionmaker[Session], clock: Clock, settings: Settings, segment_id: str) -> tuple[bool, int]:
    """Recompute one segment; returns whether its wake-ups must be planned again, and how many customers it moved.
    They must be planned again after every recompute except a safety net that found no drift. Writes and wake-ups
    keep the stored wake-ups current as they keep membership, so a safety net without drift has nothing to correct
    in them either (re-planning every customer of a time-dependent segment was most of its time; the customers it
    moved because their wake-up was due keep that wake-up, which the scheduler runs next and which plans their
    following one); one with drift plans the whole segment again."""
    try:
        with unit_of_work(factory, write_lock=True) as session:
            # The row lock serialises this recompute with live re-evaluations of the same segment.
            segment = session.get(Segment, segment_id, with_for_update=True)
            if segment is None:
                return False, 0
            now = clock.now()
            replan = True
            if segment.refresh_reason == LIST_ENTRY and not has_members(session, segment_id):
                # A new static segment's long list: the same single statements as entry within the request.
                entered, exited = enter_list(session, segment, now, ChangeCause.manual), 0
            else:
                # A start or expiry passing is a change by time; a list's entry is manual (its list was edited
                # meanwhile: a diff); everything else recomputes the definition.
                cause = {"window": ChangeCause.time, LIST_ENTRY: ChangeCause.manual}.get(
                    segment.refresh_reason or "", ChangeCause.definition
                )
                entering, exiting = recompute(session, segment, now, settings, cause)
                entered, exited = len(entering), len(exiting)
                if segment.refresh_reason == "safety_net":
                    # A customer whose wake-up is due already is the time mechanism's pending work, not drift: the
                    # scheduler runs due wake-ups after recomputes, and a safety net over many segments takes a
                    # while.
                    pending = due_wakeups(session, segment_id, now)
                    missing, extra = len(entering - pending), len(exiting - pending)
                    segment.drift_checked_at, segment.drift_entered, segment.drift_exited = now, missing, extra
                    replan = bool(missing or extra)
                    if replan:
                        log.warning("drift in segment %s: %d members missing, %d extra", segment_id, missing, extra)
            segment.refresh_state = RefreshState.done.value
            segment.refresh_finished_at = clock.now()
            segment.refresh_entered, segment.refresh_exited = entered, exited
            segment.refresh_error = None
            if entered or exited:
                queue_dependents(session, segment_id, now)
            return replan, entered + exited
    except Exception as exc:
        log.exception("recompute of segment %s failed", segment_id)
        with unit_of_work(factory) as session:
            segment = session.get(Segment, segment_id)
            if segment is None:
                return False, 0
            segment.refresh_attempts += 1
            segment.refresh_error = f"{type(exc).__name__}: {exc}"[:2000]
            segment.refresh_finished_at = clock.now()
            if segment.refresh_attempts < MAX_ATTEMPTS:
                segment.refresh_state = RefreshState.queued.value
                segment.refresh_requested_at = clock.now() + retry_delay(segment.refresh_attempts)
            else:
                segment.refresh_state = RefreshState.failed.value
        return False, 0


def due_wakeups(session: Session, segment_id: str, now: datetime) -> set[int]:
    """Customers whose wake-up in this segment is due (at or before ``now``) and not yet processed."""
    query = sa.select(SegmentWakeup.customer_id).where(
        SegmentWakeup.segment_id == segment_id, SegmentWakeup.due_at <= now
    )
    return set(session.scalars(query))


def queue_safety_net(factory: sessionmaker[Session], clock: Clock, settings: Settings) -> list[str]:
    """Queue a full recompute of every active dynamic segment whose last one is older than its sync period."""
    now = clock.now()
    queued: list[str] = []
    with unit_of_work(factory) as session:
        candidates = session.scalars(
            sa.select(Segment).where(
                Segment.type == SegmentType.dynamic.value,
                Segment.status == SegmentStatus.active.value,
                Segment.refresh_state.in_(
                    [RefreshState.idle.value, RefreshState.done.value, RefreshState.failed.value]
                ),
            )
        ).all()
        for segment in candidates:
            period = timedelta(seconds=segment.sync_period_seconds or settings.default_sync_period_seconds)
            last = segment.refresh_finished_at or segment.created_at
            if now - last >= period:
                queue(segment, now, "safety_net")
                queued.append(segment.id)
    return queued


def plan_all_wakeups(factory: sessionmaker[Session], clock: Clock, settings: Settings, index: SegmentIndex,
                     segment_id: str, chunk_size: int = 2_000) -> int:  # fmt: skip
    """After a recompute: the next wake-up of every customer in a time-dependent segment. Set-based where the rule
    allows (:func:`cohorta.evaluation.wakeups.wakeup_candidates`: one transaction, instants possibly early), else
    a walk over every customer's snapshot in chunked transactions."""
    with unit_of_work(factory, write_lock=True) as session:
        now = clock.now()
        live = {s.id: s for s in index.current(session, settings, now)}.get(segment_id)
        lock_segments(session, [segment_id])
        session.execute(sa.delete(SegmentWakeup).where(SegmentWakeup.segment_id == segment_id))
        if live is None or not live.requirements.time_dependent:
            return 0
        ctx = live.context(now, settings, index.catalog)
        # One transaction holding the write lock (SQLite) or the segment's row (taken first, as live writes take
        # the segments they decide): a write committed between reading the rows and storing the instants would
        # otherwise have its exact wake-up replaced by one computed before it.
        candidates = wakeup_candidates(session, live.rule, ctx, index.types)
        if candidates is not None:
            insert_rows(session.connection(), table_of(SegmentWakeup), [
                {"segment_id": segment_id, "customer_id": cid, "due_at": at} for cid, at in sorted(candidates.items())
            ])  # fmt: skip
            return len(candidates)
        ids = list(session.scalars(sa.select(Customer.id).order_by(Customer.id)))
    planned = 0
    cache = rules.NextChangeCache()  # the same rule and instant for every chunk
    used = sorted(live.uses)  # the memberships the rule reads (reading all of them cost most of planning)
    for start in range(0, len(ids), chunk_size):
        chunk = ids[start : start + chunk_size]
        with unit_of_work(factory, write_lock=True) as session:
            memberships = memberships_of(session, chunk, used) if used else {}
            snapshots = load_snapshots(session, chunk, live.requirements, segment_ids=memberships, types=index.types)
            due = {(segment_id, cid): next_wakeup(live, snapshot, ctx, cache) for cid, snapshot in snapshots.items()}
            plan_wakeups(session, {segment_id: chunk}, due)
            planned += sum(1 for at in due.values() if at is not None)
    return planned


def run_due_wakeups(factory: sessionmaker[Session], clock: Clock, settings: Settings, index: SegmentIndex,
                    batch: int = 5_000) -> int:  # fmt: skip
    """Re-evaluate every (segment, customer) whose wake-up is due; returns how many were processed."""
    processed = 0
    while True:
        with unit_of_work(factory, write_lock=True) as session:
            now = clock.now()
            due = [
                (segment_id, customer_id)
                for segment_id, customer_id in session.execute(
                    sa.select(SegmentWakeup.segment_id, SegmentWakeup.customer_id)
                    .where(SegmentWakeup.due_at <= now)
                    .order_by(SegmentWakeup.due_at)
                    .limit(batch)
                )
            ]
            if not due:
                return processed
            by_segment: dict[str, list[int]] = {}
            for segment_id, customer_id in due:
                by_segment.setdefault(segment_id, []).append(customer_id)
            for segment_id, customer_ids in by_segment.items():
                session.execute(
                    sa.delete(SegmentWakeup).where(
                        SegmentWakeup.segment_id == segment_id, SegmentWakeup.customer_id.in_(customer_ids)
                    )
                )
            wake(session, settings, now, due, index=index)
        processed += len(due)


def queue_window_edges(factory: sessionmaker[Session], clock: Clock) -> list[str]:
    """Queue a recompute of every active segment whose start or expiry passed since its last recompute."""
    now = clock.now()
    queued: list[str] = []
    with unit_of_work(factory) as session:
        last = sa.func.coalesce(Segment.refresh_finished_at, Segment.created_at)
        passed = sa.or_(
            sa.and_(Segment.starts_at.is_not(None), Segment.starts_at <= now, last < Segment.starts_at),
            sa.and_(Segment.expires_at.is_not(None), Segment.expires_at <= now, last < Segment.expires_at),
        )
        candidates = session.scalars(
            sa.select(Segment).where(
                Segment.status == SegmentStatus.active.value,
                Segment.refresh_state.not_in([RefreshState.queued.value, RefreshState.running.value]),
                passed,
            )
        ).all()
        for segment in candidates:
            queue(segment, now, "window")
            queued.append(segment.id)
    return queued
