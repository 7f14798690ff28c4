"""Segment analytics, computed by the database engine: size over time, order value and purchase frequency month by
month, the members' averages beside all customers', and overlaps of segments. No HTTP.

Orders count when their status is a purchase (``COUNTED_ORDER_STATUSES``, as in the customer summary). Month by month
figures are for the segment's current members; months are calendar months in the project's time zone.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from cohorta.access.service import Principal
from cohorta.clv.service import PredictedClv, predicted_averages
from cohorta.config import Settings
from cohorta.customers.models import COUNTED_ORDER_STATUSES, Order
from cohorta.db import table_of
from cohorta.errors import FieldError, InvalidInput
from cohorta.membership import monthly
from cohorta.membership.service import divide_minor, kept_all_customer_sums, size_over_time
from cohorta.money import from_minor
from cohorta.segments.models import SegmentMember
from cohorta.segments.schemas import SizePoint
from cohorta.segments.service import get_segment

MAX_MONTHS = 60
MAX_OVERLAP_SEGMENTS = 5


class Averages(BaseModel):
    customers: int
    avg_transaction_value: Decimal | None = Field(description="Spending / transactions")
    avg_transactions: float | None = Field(description="Transactions per customer")
    avg_spending: Decimal | None = Field(description="Spending per customer (historical CLV)")
    as_of: dt.datetime | None = Field(
        default=None,
        description="The last exact recount of these sums (entries and exits adjust a segment's at once; orders of "
        "customers who stay count from the next recount, every COHORTA_STATS_PERIOD_SECONDS); null: counted now",
    )


class MonthPoint(BaseModel):
    month: str = Field(description="YYYY-MM, project time zone")
    orders: int
    revenue: Decimal
    average_order_value: Decimal | None
    purchase_frequency: float = Field(description="Orders per member in the month")
    buyers: int = Field(description="Members with at least one order in the month")


class Clv(BaseModel):
    historical: Decimal | None = Field(description="Average spending per member so far")
    predicted: PredictedClv | None = Field(
        description="Expected spend over the next horizon (BG/NBD x Gamma-Gamma), for the members and for all "
        "customers; null until a CLV model is fitted and scored"
    )
    method: str = Field(description="How the historical figure is computed")


class Analytics(BaseModel):
    segment_id: str
    members: int
    start: dt.date
    end: dt.date
    size: list[SizePoint]
    months: list[MonthPoint]
    segment: Averages
    all_customers: Averages
    clv: Clv


def _averages(customers: int, orders: int, spent: int, exponent: int, as_of: dt.datetime | None) -> Averages:
    return Averages(
        customers=customers,
        avg_transaction_value=from_minor(divide_minor(spent, orders), exponent) if orders else None,
        avg_transactions=orders / customers if customers else None,
        avg_spending=from_minor(divide_minor(spent, customers), exponent) if customers else None,
        as_of=as_of,
    )


def months_from_orders(
    session: Session, segment_id: str, months: Sequence[dt.date], zone: ZoneInfo
) -> dict[dt.date, tuple[int, int, int]]:
    """(orders, revenue, buyers) per month from the members' orders themselves: the answer when no month figures
    are kept in the project's zone (being built, or built for another zone)."""
    bucket = monthly.month_bucket(table_of(Order).c.created_at, months, zone).label("bucket")
    members = sa.select(SegmentMember.customer_id).where(SegmentMember.segment_id == segment_id)
    per_month = sa.select(
        bucket,
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(Order.total_minor), 0),
        sa.func.count(sa.distinct(Order.customer_id)),
    ).where(
        Order.customer_id.in_(members),
        Order.status.in_(COUNTED_ORDER_STATUSES),
        Order.created_at >= monthly.month_bounds(months[0], zone)[0],
        Order.created_at < monthly.month_bounds(months[-1], zone)[1],
    )
    rows = session.execute(per_month.group_by(bucket).having(bucket.is_not(None)))
    return {monthly.as_date(m): (int(n), int(r), int(u)) for m, n, r, u in rows}


def analytics(
    session: Session, settings: Settings, principal: Principal, segment_id: str, first: dt.date, last: dt.date
) -> Analytics:
    segment = get_segment(session, segment_id, principal)
    zone = ZoneInfo(settings.timezone)
    spanned = (last.year - first.year) * 12 + last.month - first.month + 1
    if first > last or spanned > MAX_MONTHS:
        raise InvalidInput([FieldError(("from",), f"must be on or before 'to', at most {MAX_MONTHS} months apart")])
    if last.year >= dt.MAXYEAR:
        raise InvalidInput([FieldError(("to",), f"must be before {dt.MAXYEAR}")])
    months = monthly.months_between(first, last)
    exponent = settings.currency_exponent
    kept = monthly.kept_zone(session)
    if kept is not None and kept.key == settings.timezone:
        rows = monthly.segment_months(session, segment.id, months[0], months[-1])
    else:
        rows = months_from_orders(session, segment.id, months, zone)
    member_count = segment.member_count or 0
    points = []
    for month in months:
        n, revenue, buyers = rows.get(month, (0, 0, 0))
        points.append(
            MonthPoint(
                month=month.strftime("%Y-%m"),
                orders=n,
                revenue=from_minor(revenue, exponent),
                average_order_value=from_minor(divide_minor(revenue, n), exponent) if n else None,
                purchase_frequency=n / member_count if member_count else 0.0,
                buyers=buyers,
            )
        )
    everyone, everyone_as_of = kept_all_customer_sums(session)
    own = _averages(member_count, segment.stats_orders or 0, segment.stats_spent_minor or 0, exponent,
                    segment.stats_at)  # fmt: skip
    size = [SizePoint(day=d.isoformat(), members=m, entered=e, exited=x)
            for d, m, e, x in size_over_time(session, segment, first, last, zone)]  # fmt: skip
    return Analytics(
        segment_id=segment.id, members=member_count, start=first, end=last, size=size, months=points, segment=own,
        all_customers=_averages(everyone["customers"], everyone["orders"], everyone["spent_minor"], exponent,
                                everyone_as_of),
        clv=Clv(historical=own.avg_spending, method="historical: average spending per member",
                predicted=predicted_averages(session, segment.avg_clv_minor, exponent)),
    )  # fmt: skip


# --- overlap ------------------------------------------------------------------------------------------------------


class Intersection(BaseModel):
    segments: list[str]
    size: int = Field(description="Customers in every one of these segments")


class PairOverlap(BaseModel):
    a: str
    b: str
    both: int
    jaccard: float | None = Field(description="|A and B| / |A or B|")


class Overlap(BaseModel):
    sizes: dict[str, int]
    intersections: list[Intersection]
    pairs: list[PairOverlap]


def member_arrays(session: Session, segment_ids: Sequence[str]) -> list[npt.NDArray[np.int64]]:
    """Each segment's member ids as a NumPy array. The database aggregates each segment's members into one text
    value (``group_concat`` on SQLite, ``string_agg`` on PostgreSQL): one row per segment crosses to Python instead
    of one per member, and NumPy parses the text at C speed."""
    members = table_of(SegmentMember)
    listed = sa.func.aggregate_strings(sa.cast(members.c.customer_id, sa.String), ",")
    query = (
        sa.select(members.c.segment_id, sa.func.count(), listed)
        .where(members.c.segment_id.in_(list(segment_ids)))
        .group_by(members.c.segment_id)
    )
    found: dict[str, npt.NDArray[np.int64]] = {}
    for segment_id, count, text in session.connection().execute(query):
        ids = np.fromstring(text, dtype=np.int64, sep=",")
        if ids.size != count:  # a partial parse would be a wrong answer, never a silent one
            raise RuntimeError(f"segment {segment_id}: read {ids.size} member ids of {count}")
        found[segment_id] = ids
    return [found.get(segment_id, np.zeros(0, dtype=np.int64)) for segment_id in segment_ids]


def pattern_counts(lists: Sequence[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
    """Customers per membership pattern: entry ``mask`` counts the customers in exactly the lists whose bits (list
    ``i``: ``1 << i``) are set in ``mask``. Each list holds distinct ids. Vectorised: one OR per list into a mask per
    customer id, then one ``bincount``."""
    if len(lists) > 8:
        raise ValueError("at most 8 lists (one byte of bits per customer)")
    patterns = 1 << len(lists)
    sizes = [ids.size for ids in lists]
    if not any(sizes):
        return np.zeros(patterns, dtype=np.int64)
    low = min(int(ids.min()) for ids in lists if ids.size)
    high = max(int(ids.max()) for ids in lists if ids.size)
    if low >= 0 and high < 4 * sum(sizes) + 1_000_000:
        masks = np.zeros(high + 1, dtype=np.uint8)
        for i, ids in enumerate(lists):
            masks[ids] |= 1 << i
    else:  # sparse or negative ids: number the distinct ids first
        everyone = np.concatenate(lists)
        _, position = np.unique(everyone, return_inverse=True)
        bits = np.repeat(np.array([1 << i for i in range(len(lists))], dtype=np.float64), sizes)
        masks = np.bincount(position, weights=bits).astype(np.uint8)  # distinct ids per list: sums of distinct bits
    counts = np.bincount(masks, minlength=patterns).astype(np.int64)
    counts[0] = 0  # ids in none of the lists (gaps of the dense array)
    return counts


def overlap(session: Session, principal: Principal, segment_ids: Sequence[str]) -> Overlap:
    """The size of every intersection of 2 to 5 segments, and Jaccard per pair, from one read of their members:
    each customer's memberships become a bit mask, customers are counted per mask, and every intersection is the
    sum over the masks that hold all its bits.

    The database reads each segment's members in index order and hands them over as one value per segment; the
    masks are counted with NumPy. Grouping the members by customer in SQL (one sort of every member row) took
    1.4-2.1 s at 1,000,000 customers on SQLite (docs/design.md, "Overlap and a new segment's month sums")."""
    ids = list(dict.fromkeys(segment_ids))
    if not 2 <= len(ids) <= MAX_OVERLAP_SEGMENTS:
        raise InvalidInput([FieldError(("segments",), f"give 2 to {MAX_OVERLAP_SEGMENTS} different segments")])
    for segment_id in ids:
        get_segment(session, segment_id, principal)
    counts = pattern_counts(member_arrays(session, ids))
    masks = np.arange(counts.size)

    def holding(wanted: int) -> int:
        return int(counts[(masks & wanted) == wanted].sum())

    sizes = {sid: holding(1 << i) for i, sid in enumerate(ids)}
    intersections = [
        Intersection(segments=list(combo), size=holding(sum(1 << ids.index(sid) for sid in combo)))
        for size in range(2, len(ids) + 1)
        for combo in itertools.combinations(ids, size)
    ]
    both = {tuple(i.segments): i.size for i in intersections if len(i.segments) == 2}
    pairs = []
    for a, b in itertools.combinations(ids, 2):
        union = sizes[a] + sizes[b] - both[(a, b)]
        pairs.append(PairOverlap(a=a, b=b, both=both[(a, b)], jaccard=both[(a, b)] / union if union else None))
    return Overlap(sizes=sizes, intersections=intersections, pairs=pairs)


OPERATIONS = ("intersection", "union", "difference")


def combination(session: Session, principal: Principal, operation: str, segment_ids: Sequence[str]) -> sa.Select[Any]:
    """A query of the customer ids of the intersection (in all), union (in any) or difference (in the first, in none
    of the others) of the segments' current members, each id once.

    Written as index probes, never as a compound SELECT (SQLite sorts every operand of INTERSECT, UNION and EXCEPT):
    an intersection walks the smallest segment's members and keeps those found in every other segment (``EXISTS``
    on the primary key); a difference walks the first segment's and keeps those found in none of the others; a
    union takes each segment's members not found in the segments before it, biggest first."""
    if operation not in OPERATIONS:
        raise InvalidInput([FieldError(("operation",), f"one of {', '.join(OPERATIONS)}")])
    ids = list(dict.fromkeys(segment_ids))
    if len(ids) < 2:
        raise InvalidInput([FieldError(("segments",), "give at least 2 different segments")])
    segments = [get_segment(session, segment_id, principal) for segment_id in ids]
    members = table_of(SegmentMember)

    aliases = itertools.count()

    def walk(segment_id: str, found_in: Sequence[str], missing_from: Sequence[str]) -> sa.Select[Any]:
        walked = members.alias(f"walked_{next(aliases)}")

        def member_of(other: str) -> sa.Exists:
            probe = members.alias(f"probe_{next(aliases)}")
            return sa.exists().where(probe.c.segment_id == other, probe.c.customer_id == walked.c.customer_id)

        probes = [member_of(other) for other in found_in] + [~member_of(other) for other in missing_from]
        return sa.select(walked.c.customer_id).where(walked.c.segment_id == segment_id, *probes)

    if operation == "intersection":
        smallest = min(segments, key=lambda s: s.member_count or 0).id
        return walk(smallest, [sid for sid in ids if sid != smallest], [])
    if operation == "difference":
        return walk(ids[0], [], ids[1:])
    biggest_first = [s.id for s in sorted(segments, key=lambda s: -(s.member_count or 0))]
    parts = [walk(sid, [], biggest_first[:i]) for i, sid in enumerate(biggest_first)]
    united = sa.union_all(*parts).subquery("united")
    return sa.select(united.c.customer_id)
