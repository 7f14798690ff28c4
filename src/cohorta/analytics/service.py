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


def _members(segment_id: str) -> sa.Select[Any]:
    return sa.select(SegmentMember.customer_id).where(SegmentMember.segment_id == segment_id)


def overlap(session: Session, principal: Principal, segment_ids: Sequence[str]) -> Overlap:
    """The size of every intersection of 2 to 5 segments, and Jaccard per pair, from one pass over their members:
    each customer's memberships become a bit mask, the database counts customers per mask, and every intersection is
    the sum over the masks that hold all its bits (one query instead of one INTERSECT per combination)."""
    ids = list(dict.fromkeys(segment_ids))
    if not 2 <= len(ids) <= MAX_OVERLAP_SEGMENTS:
        raise InvalidInput([FieldError(("segments",), f"give 2 to {MAX_OVERLAP_SEGMENTS} different segments")])
    for segment_id in ids:
        get_segment(session, segment_id, principal)
    bit = sa.case(*[(SegmentMember.segment_id == sid, 1 << i) for i, sid in enumerate(ids)], else_=0)
    masks = (
        sa.select(SegmentMember.customer_id, sa.func.sum(bit).label("mask"))
        .where(SegmentMember.segment_id.in_(ids))
        .group_by(SegmentMember.customer_id)
        .subquery()
    )
    counted = {int(mask): int(n) for mask, n in session.execute(
        sa.select(masks.c.mask, sa.func.count()).group_by(masks.c.mask))}  # fmt: skip

    def holding(wanted: int) -> int:
        return sum(n for mask, n in counted.items() if mask & wanted == wanted)

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


def combined_ids(session: Session, principal: Principal, operation: str, segment_ids: Sequence[str]) -> set[int]:
    """Members of the intersection (in all), union (in any) or difference (in the first, in none of the others)."""
    ids = list(dict.fromkeys(segment_ids))
    if len(ids) < 2:
        raise InvalidInput([FieldError(("segments",), "give at least 2 different segments")])
    for segment_id in ids:
        get_segment(session, segment_id, principal)
    selects = [_members(sid) for sid in ids]
    if operation == "intersection":
        combined = sa.intersect(*selects)
    elif operation == "union":
        combined = sa.union(*selects)
    else:
        # A EXCEPT B EXCEPT C, flat: evaluated left to right, and SQLite refuses a parenthesised compound operand.
        combined = sa.except_(*selects)
    return {int(customer_id) for customer_id in session.scalars(sa.select(combined.subquery().c.customer_id))}
