"""Membership diffs and recomputes. No HTTP; never commits (the caller's transaction makes a diff atomic)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cohorta import rules
from cohorta.access.service import Principal
from cohorta.clv.models import CustomerClv
from cohorta.config import Settings
from cohorta.customers.models import CustomerGroupAssignment, CustomerSummary
from cohorta.customers.summary import chunked
from cohorta.db import (
    UTCDateTime,
    add_rows,
    delete_rows,
    insert_rows,
    pipelined,
    select_rows,
    send_rows,
    table_of,
    update_rows,
)
from cohorta.evaluation import store
from cohorta.evaluation.catalog import build_catalog
from cohorta.evaluation.idsets import IdSet
from cohorta.membership import monthly
from cohorta.project_settings import get_setting, put_setting
from cohorta.segments.models import (
    ChangeCause,
    MembershipChange,
    Segment,
    SegmentListEntry,
    SegmentMember,
    SegmentSizeChange,
    SegmentStatus,
    SegmentType,
)
from cohorta.webhooks.service import enqueue_memberships, hears_entries, send_subscriptions


def member_ids(session: Session, segment_id: str) -> set[int]:
    return set(member_id_set(session, segment_id).ids())


def member_id_set(session: Session, segment_id: str) -> IdSet:
    """The segment's stored members, as a mask."""
    return IdSet.of(store.id_array(session, _ids_in(table_of(SegmentMember), segment_id)))


def has_members(session: Session, segment_id: str) -> bool:
    table = table_of(SegmentMember)
    query = sa.select(table.c.customer_id).where(table.c.segment_id == segment_id).limit(1)
    return session.connection().execute(query).first() is not None


def list_ids(session: Session, segment_id: str) -> set[int]:
    return set(list_id_set(session, segment_id).ids())


def list_id_set(session: Session, segment_id: str) -> IdSet:
    """The customers on a static or external segment's list, as a mask."""
    return IdSet.of(store.id_array(session, _ids_in(table_of(SegmentListEntry), segment_id)))


def _ids_in(table: sa.Table, segment_id: str) -> sa.Select[Any]:
    return sa.select(table.c.customer_id).where(table.c.segment_id == segment_id)


def is_live(segment: Segment, now: datetime) -> bool:
    """Whether the segment may have members now: active and inside its start/expiry window."""
    return segment.status == SegmentStatus.active.value and in_window(segment.starts_at, segment.expires_at, now)


def in_window(starts_at: datetime | None, expires_at: datetime | None, now: datetime) -> bool:
    if starts_at is not None and now < starts_at:
        return False
    return not (expires_at is not None and now >= expires_at)


def target_ids(session: Session, segment: Segment, now: datetime, settings: Settings) -> IdSet:
    """Who should be a member now: nobody unless live; the rule's matches (dynamic) or the explicit list."""
    if not is_live(segment, now):
        return IdSet.nobody()
    if segment.type != SegmentType.dynamic.value:
        return list_id_set(session, segment.id)
    assert segment.rule is not None
    catalog = build_catalog(session)
    rule = rules.validate(segment.rule, catalog, settings.currency_exponent)
    ctx = rules.Context(
        as_of=now,
        timezone=segment.timezone or settings.timezone,
        currency_exponent=settings.currency_exponent,
        catalog=catalog,
    )
    return store.matching_id_set(session, rule, ctx)


@dataclass
class SegmentFigures:
    """A segment's name, version and kept figures as a plain object: what a live write's diff reads and updates,
    through the driver (:func:`segment_figures`, :func:`store_figures`). Loading the changed segments as ORM rows and
    flushing them cost a single order at 100,000 customers on PostgreSQL about 3 of its 18 ms of re-evaluation."""

    id: str
    name: str
    version: int
    member_count: int
    stats_orders: int
    stats_spent_minor: int
    stats_clv_minor: int | None
    avg_transaction_value_minor: int | None
    avg_transactions: float | None
    avg_spending_minor: int | None
    avg_clv_minor: int | None


_FIGURES = tuple(f.name for f in fields(SegmentFigures))
_KEPT_FIGURES = _FIGURES[3:]  # what a diff changes


def segment_figures(session: Session, segment_ids: Sequence[str]) -> list[SegmentFigures]:
    """The figures of these segments, in the order of their ids."""
    rows = select_rows(session.connection(), table_of(Segment), _FIGURES, {"id": sorted(segment_ids)})
    return sorted((SegmentFigures(**row) for row in rows), key=lambda figures: figures.id)


def store_figures(session: Session, figures: Sequence[SegmentFigures]) -> None:
    """Write back what :func:`apply_diffs` changed (one statement); ORM copies of these segments loaded earlier in
    the transaction read them again."""
    update_rows(session.connection(), table_of(Segment), "id", [
        {"id": f.id, **{name: getattr(f, name) for name in _KEPT_FIGURES}} for f in figures
    ])  # fmt: skip
    changed = {f.id for f in figures}
    for loaded in list(session.identity_map.values()):
        if isinstance(loaded, Segment) and loaded.id in changed:
            session.expire(loaded, list(_KEPT_FIGURES))


def apply_diff(
    session: Session,
    segment: Segment,
    entered: Iterable[int],
    exited: Iterable[int],
    *,
    cause: ChangeCause,
    now: datetime,
) -> tuple[int, int]:
    """Add and remove members, with one history row per change; returns (entered, exited) counts."""
    return apply_diffs(session, [(segment, entered, exited)], cause=cause, now=now)[0]


def apply_diffs(
    session: Session,
    diffs: Sequence[tuple[Segment | SegmentFigures, Iterable[int], Iterable[int]]],
    *,
    cause: ChangeCause,
    now: datetime,
) -> list[tuple[int, int]]:
    """:func:`apply_diff` for several segments at once, in one set of statements: a write that moves a customer in
    or out of ten segments pays for each kind of row once, not once per segment. Segments that enter or leave the
    same customers share their statements (a single customer's write: one of each). Returns the counts per diff."""
    rows = settle_diffs(session, diffs, cause=cause, now=now)
    # Not pipelined: archiving or replacing a list moves up to every member, whose rows COPY writes fastest (a live
    # write, whose rows are few, sends them in its own pipeline).
    write_diff_rows(session, rows)
    return rows.counts


@dataclass
class DiffRows:
    """The membership rows a diff still has to write (:func:`settle_diffs`, :func:`write_diff_rows`)."""

    prepared: list[tuple[Segment | SegmentFigures, list[int], list[int]]]
    cause: ChangeCause
    now: datetime

    @property
    def counts(self) -> list[tuple[int, int]]:
        """(entered, exited) per diff."""
        return [(len(entering), len(exiting)) for _, entering, exiting in self.prepared]

    @cached_property
    def exits(self) -> dict[tuple[int, ...], list[str]]:
        """The segments grouped by the customers leaving them (:func:`_by_customers`): worked out once, read by
        both :func:`settle_diffs` and :func:`write_diff_rows`."""
        return _by_customers((segment.id, exiting) for segment, _, exiting in self.prepared)


def settle_diffs(
    session: Session,
    diffs: Sequence[tuple[Segment | SegmentFigures, Iterable[int], Iterable[int]]],
    *,
    cause: ChangeCause,
    now: datetime,
) -> DiffRows:
    """Everything of :func:`apply_diffs` but its membership rows: the segments' figures (on the objects given), the
    month figures and the outbox; returns the rows left to write with :func:`write_diff_rows`, which needs no answer
    from the database, so a caller can send them with its own writes (:func:`cohorta.db.pipelined`)."""
    rows = DiffRows([(segment, sorted(set(entered)), sorted(set(exited))) for segment, entered, exited in diffs],
                    cause, now)  # fmt: skip
    prepared = rows.prepared
    if not prepared:
        return rows
    connection = session.connection()
    exits = rows.exits
    entries = _by_customers((segment.id, entering) for segment, entering, _ in prepared)
    # Every read the diff needs, sent before any is read: one round trip on PostgreSQL.
    with pipelined(connection):
        read_sums = send_summary_sums(connection, [*entries, *exits])
        read_zone = monthly.send_kept_zone(connection)
        read_subscriptions = send_subscriptions(connection)
        sums, zone, subscriptions = read_sums(), read_zone(), read_subscriptions()
    for groups, sign in ((entries, 1), (exits, -1)):
        for customer_ids, segment_ids in groups.items():
            monthly.carry_members(session, segment_ids, customer_ids, sign, zone)
    for segment, entering, exiting in prepared:
        segment.member_count = (segment.member_count or 0) + len(entering) - len(exiting)
        for ids, sign in ((entering, 1), (exiting, -1)):
            if ids:
                orders, spent, clv = sums[tuple(ids)]
                segment.stats_orders = (segment.stats_orders or 0) + sign * orders
                segment.stats_spent_minor = (segment.stats_spent_minor or 0) + sign * spent
                if clv is not None:
                    segment.stats_clv_minor = (segment.stats_clv_minor or 0) + sign * clv
        derive_averages(segment)
    enqueue_memberships(session, prepared, cause.value, now, subscriptions)  # same transaction: the outbox
    return rows


def write_diff_rows(session: Session, rows: DiffRows) -> None:
    """The member, history and quarter-hour count rows of settled diffs, through the driver."""
    members, history = table_of(SegmentMember), table_of(MembershipChange)
    connection = session.connection()
    for customer_ids, segment_ids in rows.exits.items():
        for chunk in chunked(list(customer_ids)):
            delete_rows(connection, members, {"segment_id": sorted(segment_ids), "customer_id": chunk})
    insert_rows(connection, members, [
        {"segment_id": segment.id, "customer_id": cid, "since": rows.now}
        for segment, entering, _ in rows.prepared for cid in entering
    ])  # fmt: skip
    insert_rows(connection, history, [
        {"segment_id": segment.id, "customer_id": cid, "entered": entered_, "cause": rows.cause.value,
         "version": segment.version, "occurred_at": rows.now}
        for segment, entering, exiting in rows.prepared
        for cids, entered_ in ((entering, True), (exiting, False)) for cid in cids
    ])  # fmt: skip
    count_size_changes(
        session, rows.now, [(segment.id, len(entering), len(exiting)) for segment, entering, exiting in rows.prepared]
    )


def _by_customers(changes: Iterable[tuple[str, list[int]]]) -> dict[tuple[int, ...], list[str]]:
    """Segments grouped by the exact (sorted) customers that enter or leave them; empty lists are left out."""
    grouped: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for segment_id, customer_ids in changes:
        if customer_ids:
            grouped[tuple(customer_ids)].append(segment_id)
    return grouped


def enter_list(session: Session, segment: Segment, now: datetime, cause: ChangeCause) -> int:
    """A new static or external segment's first membership: if it is live, its whole explicit list enters at once.
    The same rows and figures as :func:`recompute` writes (members, history, the quarter-hour count, month figures,
    statistics, outbox rows), each by one statement inside the database (``INSERT ... SELECT`` from the list, the
    month figures and statistics by a join on the new members) instead of ids carried through Python and back.
    The segment must have no members yet. Returns how many entered."""
    started = time.perf_counter()
    live = is_live(segment, now)
    if live:
        entries, members, history = table_of(SegmentListEntry), table_of(SegmentMember), table_of(MembershipChange)
        listed = entries.c.segment_id == segment.id
        at = sa.literal(now, UTCDateTime())
        connection = session.connection()
        connection.execute(
            sa.insert(members).from_select(
                ["segment_id", "customer_id", "since"],
                sa.select(entries.c.segment_id, entries.c.customer_id, at).where(listed),
            )
        )
        connection.execute(
            sa.insert(history).from_select(
                ["segment_id", "customer_id", "entered", "cause", "version", "occurred_at"],
                sa.select(
                    entries.c.segment_id, entries.c.customer_id, sa.literal(True, sa.Boolean),
                    sa.literal(cause.value, sa.String), sa.literal(segment.version, sa.Integer), at,
                ).where(listed),
            )
        )  # fmt: skip
    recount_statistics(session, now, [segment.id])  # member count, sums and averages: one join on the members
    entered = segment.member_count or 0
    if live and entered:
        count_size_change(session, [segment.id], now, entered, 0)
        monthly.carry_all_members(session, segment.id)
        if hears_entries(session, segment.id):
            query = sa.select(members.c.customer_id).where(members.c.segment_id == segment.id)
            entered_ids = list(connection.execute(query).scalars())
            enqueue_memberships(session, [(segment, entered_ids, [])], cause.value, now)
    segment.refresh_duration_ms = int((time.perf_counter() - started) * 1000)
    return entered


def send_summary_sums(
    connection: sa.Connection, groups: Sequence[tuple[int, ...]]
) -> Callable[[], dict[tuple[int, ...], tuple[int, int, int | None]]]:
    """Send the reads of, per group of customers, their orders, spending and predicted CLV (minor units) together
    (those with a summary row; CLV None when none of them has a predicted CLV: no model scored yet); the function
    returned reads them. Through the driver: on a single write's path, where building the aggregate statement cost
    more than reading one or two rows."""
    chunks = list(chunked(sorted({cid for group in groups for cid in group})))
    summary_columns = ("customer_id", "order_count", "total_spent_minor")
    sent_summaries = [send_rows(connection, table_of(CustomerSummary), summary_columns, {"customer_id": chunk})
                      for chunk in chunks]  # fmt: skip
    sent_clv = [send_rows(connection, table_of(CustomerClv), ("customer_id", "predicted_minor"), {"customer_id": chunk})
                for chunk in chunks]  # fmt: skip

    def sums() -> dict[tuple[int, ...], tuple[int, int, int | None]]:
        summaries = {row["customer_id"]: row for sent in sent_summaries for row in sent.rows()}
        predicted = {row["customer_id"]: row["predicted_minor"] for sent in sent_clv for row in sent.rows()}
        found: dict[tuple[int, ...], tuple[int, int, int | None]] = {}
        for group in groups:
            orders = spent = 0
            clv: int | None = None
            for cid in group:
                summary = summaries.get(cid)
                if summary is None:
                    continue
                orders, spent = orders + summary["order_count"], spent + summary["total_spent_minor"]
                if predicted.get(cid) is not None:
                    clv = (clv or 0) + predicted[cid]
            found[group] = (orders, spent, clv)
        return found

    return sums


def divide_minor(total: int, count: int) -> int:
    """total / count in whole minor units, rounded half away from zero (money is never a float)."""
    return int((Decimal(total) / Decimal(count)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def derive_averages(segment: Segment | SegmentFigures) -> None:
    """The list's figures from the kept sums: average transaction value (spent / orders), average number of
    transactions, average spending and average predicted CLV per member (null while no member has a prediction)."""
    members, orders, spent = segment.member_count or 0, segment.stats_orders or 0, segment.stats_spent_minor or 0
    if members <= 0:
        segment.avg_transactions = segment.avg_spending_minor = segment.avg_transaction_value_minor = None
        segment.avg_clv_minor = None
        return
    segment.avg_transactions = orders / members
    segment.avg_spending_minor = divide_minor(spent, members)
    segment.avg_transaction_value_minor = divide_minor(spent, orders) if orders else None
    clv = segment.stats_clv_minor
    segment.avg_clv_minor = divide_minor(clv, members) if clv is not None else None


def recount_all_statistics(factory: Any, now: datetime) -> int:
    """The periodic recount, off the request path: the grouped query runs in a read transaction, then each segment
    is updated in a short write only if its member count has not moved meanwhile (a live entry or exit adjusted it
    already; the next recount catches up). Returns how many segments were updated."""
    with factory() as session:
        counted = _counts(session)
        current = dict(session.execute(
            sa.select(Segment.id, Segment.member_count).where(Segment.status != SegmentStatus.archived.value)
        ).all())  # fmt: skip
        everyone = all_customer_sums(session)
    with factory.begin() as session:
        put_setting(session, ALL_CUSTOMERS_KEY, {**everyone, "as_of": now.isoformat()})
    updated = 0
    for segment_id, member_count in current.items():
        n, orders, spent, clv = counted.get(segment_id, (0, 0, 0, None))
        with factory.begin() as session:
            segment = session.get(Segment, segment_id)
            if segment is None or segment.member_count != member_count:
                continue
            segment.member_count, segment.stats_orders, segment.stats_spent_minor = n, orders, spent
            segment.stats_clv_minor = clv
            segment.stats_at = now
            derive_averages(segment)
            updated += 1
    return updated


ALL_CUSTOMERS_KEY = "all_customer_statistics"


def all_customer_sums(session: Session) -> dict[str, int]:
    """Customers, their orders and their spending (minor units), over every customer."""
    summaries = table_of(CustomerSummary)
    customers, orders, spent = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(summaries.c.order_count), 0),
            sa.func.coalesce(sa.func.sum(summaries.c.total_spent_minor), 0),
        )
    ).one()
    return {"customers": int(customers), "orders": int(orders), "spent_minor": int(spent)}


def kept_all_customer_sums(session: Session) -> tuple[dict[str, int], datetime | None]:
    """All customers' sums as of the last periodic recount (a grouped read of every summary, 0.2 s at 1,000,000
    customers, is too slow for every analytics request), or counted now when no recount has run yet."""
    setting = get_setting(session, ALL_CUSTOMERS_KEY)
    if setting is None:
        return all_customer_sums(session), None
    kept = dict(setting)
    as_of = datetime.fromisoformat(kept.pop("as_of"))
    return {key: int(value) for key, value in kept.items()}, as_of


def _counts(
    session: Session, segment_ids: Sequence[str] | None = None
) -> dict[str, tuple[int, int, int, int | None]]:
    """(members, their orders, their spending, their predicted CLV or None) per segment, from stored membership,
    summaries and predicted CLV."""
    members, summaries, clv = table_of(SegmentMember), table_of(CustomerSummary), table_of(CustomerClv)
    query = (
        sa.select(
            members.c.segment_id,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(summaries.c.order_count), 0),
            sa.func.coalesce(sa.func.sum(summaries.c.total_spent_minor), 0),
            sa.func.sum(clv.c.predicted_minor),
        )
        .outerjoin(summaries, summaries.c.customer_id == members.c.customer_id)
        .outerjoin(clv, clv.c.customer_id == members.c.customer_id)
        .group_by(members.c.segment_id)
    )
    if segment_ids is not None:
        query = query.where(members.c.segment_id.in_(list(segment_ids)))
    return {sid: (int(n), int(o), int(s), None if c is None else int(c)) for sid, n, o, s, c in session.execute(query)}


def recount_statistics(session: Session, now: datetime, segment_ids: Sequence[str] | None = None) -> int:
    """Make the kept sums exact again from the members' current summaries (these segments, or all that are not
    archived), in the caller's transaction; returns how many segments were recounted."""
    targets = sa.select(Segment).where(Segment.status != SegmentStatus.archived.value)
    if segment_ids is not None:
        targets = targets.where(Segment.id.in_(list(segment_ids)))
    counted = _counts(session, segment_ids)
    segments = list(session.scalars(targets))
    for segment in segments:
        n, orders, spent, clv = counted.get(segment.id, (0, 0, 0, None))
        segment.member_count, segment.stats_orders, segment.stats_spent_minor = n, orders, spent
        segment.stats_clv_minor = clv
        segment.stats_at = now
        derive_averages(segment)
    return len(segments)


def recompute(
    session: Session, segment: Segment, now: datetime, settings: Settings, cause: ChangeCause
) -> tuple[set[int], set[int]]:
    """Bring stored membership to what it should be now, as one diff (atomic in the caller's transaction); returns
    the customers who entered and those who exited."""
    started = time.perf_counter()
    target = target_ids(session, segment, now, settings)
    current = member_id_set(session, segment.id)
    # As masks: at 1,000,000 customers a segment's ids and members are up to a million ids each, and Python sets
    # of them cost more to build and subtract than the rest of the diff.
    entered, exited = set((target & ~current).ids()), set((current & ~target).ids())
    apply_diff(session, segment, entered, exited, cause=cause, now=now)
    if entered or exited or segment.stats_at is None:
        # A recompute that moved nobody changes no sums: they stay as entries and exits keep them between the
        # periodic recounts (docs/analytics.md). Recounting a daily safety net's 200 unchanged segments was a fifth
        # of its time.
        recount_statistics(session, now, [segment.id])
    segment.refresh_duration_ms = int((time.perf_counter() - started) * 1000)
    return entered, exited


def customer_segment_rows(session: Session, customer_id: int) -> list[dict[str, Any]]:
    """The segments a customer is a member of, with since when."""
    members, segments = table_of(SegmentMember), table_of(Segment)
    query = (
        sa.select(
            segments.c.id,
            segments.c.name,
            segments.c.type,
            segments.c.team,
            segments.c.customer_groups,
            members.c.since,
        )
        .join(members, members.c.segment_id == segments.c.id)
        .where(members.c.customer_id == customer_id)
        .order_by(segments.c.name)
    )
    return [dict(row._mapping) for row in session.execute(query)]


def forget_customer(session: Session, customer_id: int, now: datetime) -> None:
    """Before erasing a customer: take them out of the member counts and month figures of the segments they are
    in, and count their leaving now in the size over time (their own membership history goes with them)."""
    monthly.forget_customer(session, customer_id)
    members = table_of(SegmentMember)
    segments = table_of(Segment)
    their_segments = sa.select(members.c.segment_id).where(members.c.customer_id == customer_id)
    count_size_change(session, list(session.scalars(their_segments)), now, 0, 1)
    session.execute(
        sa.update(segments).where(segments.c.id.in_(their_segments)).values(member_count=segments.c.member_count - 1)
    )


def quarter_of(instant: datetime) -> datetime:
    """The start of the quarter hour (UTC) the instant falls in."""
    instant = instant.astimezone(UTC)
    return instant.replace(minute=instant.minute - instant.minute % 15, second=0, microsecond=0)


def count_size_change(session: Session, segment_ids: Sequence[str], now: datetime, entered: int, exited: int) -> None:
    """Add entries and exits to these segments' counts for the quarter hour of ``now``."""
    count_size_changes(session, now, [(segment_id, entered, exited) for segment_id in segment_ids])


def count_size_changes(session: Session, now: datetime, changes: Sequence[tuple[str, int, int]]) -> None:
    """Add (segment, entered, exited) to the segments' counts for the quarter hour of ``now``: one statement (an
    executemany through SQLAlchemy ran one upsert per segment on PostgreSQL, each its own execution on the server)."""
    rows = [{"segment_id": sid, "quarter": quarter_of(now), "entered": entered, "exited": exited}
            for sid, entered, exited in changes if entered or exited]  # fmt: skip
    add_rows(session.connection(), table_of(SegmentSizeChange), ("segment_id", "quarter"), rows)


def size_over_time(
    session: Session, segment: Segment, first: date, last: date, zone: ZoneInfo
) -> list[tuple[date, int, int, int]]:
    """(local day, members at the end of it, entered, exited) for each day from ``first`` to ``last``, from the
    quarter-hour counts of entries and exits."""
    counts = table_of(SegmentSizeChange)
    start = datetime.combine(first, dt_time.min, zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), dt_time.min, zone).astimezone(UTC)
    before = session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(counts.c.entered - counts.c.exited), 0)).where(
            counts.c.segment_id == segment.id, counts.c.quarter < start
        )
    ).scalar_one()
    rows = session.execute(
        sa.select(counts.c.quarter, counts.c.entered, counts.c.exited).where(
            counts.c.segment_id == segment.id, counts.c.quarter >= start, counts.c.quarter < end
        )
    ).all()
    per_day: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for quarter, entered, exited in rows:
        counted = per_day[quarter.astimezone(zone).date()]
        counted[0] += entered
        counted[1] += exited
    points: list[tuple[date, int, int, int]] = []
    size = int(before)
    day = first
    while day <= last:
        entered_count, exited_count = per_day.get(day, [0, 0])
        size += entered_count - exited_count
        points.append((day, size, entered_count, exited_count))
        day += timedelta(days=1)
    return points


HIDDEN_ORIGIN = "another team's segment"


def visible_changes(
    session: Session, principal: Principal, changes: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """Membership changes restricted to the segments the principal may see."""
    if principal.teams is None or not changes:
        return changes
    teams = dict(session.execute(sa.select(Segment.id, Segment.team).where(Segment.id.in_(sorted(changes)))).all())
    return {segment_id: counts for segment_id, counts in changes.items() if principal.sees(teams.get(segment_id))}


def groups_of(
    session: Session, customer_id: int, principal: Principal | None = None
) -> list[tuple[str, list[str]]]:
    """A customer's groups, each once, with its origins: 'manual' and/or the segments that give it. A segment the
    principal may not see is named only as 'another team's segment'."""
    origins: dict[str, list[str]] = defaultdict(list)
    manual = session.scalars(
        sa.select(CustomerGroupAssignment.group).where(CustomerGroupAssignment.customer_id == customer_id)
    )
    for group in manual:
        origins[group].append("manual")
    for row in customer_segment_rows(session, customer_id):
        origin = row["id"] if principal is None or principal.sees(row["team"]) else HIDDEN_ORIGIN
        for group in row["customer_groups"] or []:
            if origin not in origins[group]:
                origins[group].append(origin)
    return sorted(origins.items())


def set_manual_groups(session: Session, customer_id: int, groups: Iterable[str], now: datetime) -> None:
    session.execute(sa.delete(CustomerGroupAssignment).where(CustomerGroupAssignment.customer_id == customer_id))
    insert_rows(
        session.connection(),
        table_of(CustomerGroupAssignment),
        [{"customer_id": customer_id, "group": group, "assigned_at": now} for group in sorted(set(groups))],
    )
