"""The per-customer summary: one set-based definition, for all customers or for the ones a write touched.

Every write recomputes the touched customers' summaries from their own (indexed) rows in the write's transaction,
rather than adjusting counters: exact under updates, out-of-order arrivals and deletes. Bulk loads rebuild every
customer's with the same statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cohorta.customers.models import (
    COUNTED_ORDER_STATUSES,
    Customer,
    CustomerProgramSummary,
    CustomerSummary,
    LoyaltyTransaction,
    LoyaltyType,
    Order,
)
from cohorta.db import InValues, insert_rows, table_of

# Bound parameters per IN list: well under SQLite's limit of 32,766 and PostgreSQL's 65,535.
CHUNK = 5_000
# rebuild_summaries repeats the id list in six places.
REBUILD_CHUNK = 2_000
T = TypeVar("T")

EMPTY_SUMMARY: dict[str, Any] = {
    "order_count": 0,
    "total_spent_minor": 0,
    "average_order_value_minor": None,
    "first_order_at": None,
    "last_order_at": None,
    "last_order_amount_minor": None,
    "points_balance": 0,
    "redemption_count": 0,
    "referral_count": 0,
    "gift_card_balance_minor": 0,
}


def chunked(ids: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def average_minor(total_minor: int, count: int) -> int | None:
    """Average in minor units, rounded half up (amounts are never negative). The SQL below computes the same."""
    if count == 0:
        return None
    return (2 * total_minor + count) // (2 * count)


def ensure_summary_rows(session: Session, customer_ids: Sequence[int]) -> None:
    """An empty summary for new customers (zeros and NULLs: no activity yet)."""
    rows = [{"customer_id": cid, **EMPTY_SUMMARY} for cid in customer_ids]
    insert_rows(session.connection(), table_of(CustomerSummary), rows)


def refresh_summaries(session: Session, customer_ids: Sequence[int]) -> None:
    """Recompute the summaries of these customers (after any write to their orders or loyalty journal)."""
    ids = sorted(set(customer_ids))
    for chunk in chunked(ids, REBUILD_CHUNK):
        rebuild_summaries(session.connection(), chunk)


def rebuild_summaries(connection: sa.Connection, customer_ids: Sequence[int] | None = None) -> None:
    """Recompute ``customer_summaries`` and ``customer_program_summaries`` set-based from the raw rows.

    ``customer_ids`` None: every customer (bulk loads). Definitions: orders count when their status is in
    COUNTED_ORDER_STATUSES; the average is rounded half up to the minor unit; the last order is the latest by
    ``created_at``, ties broken by the highest id; points are the signed sum of ``points`` entries; gift-card balance
    the signed sum of gift-card amounts; a program's tier is that of its latest tier change (ties: highest id); a
    program row exists for each (customer, program) with a points entry or a tier change.
    """
    params = None if customer_ids is None else {"ids": list(customer_ids)}
    for statement in _rebuild_statements(customer_ids is not None):
        connection.execute(statement, params)


def read_summary_sources(connection: sa.Connection, customer_ids: Sequence[int]) -> None:
    """Read what :func:`refresh_summaries` reads of these customers, writing nothing: a read ahead of an orders or
    loyalty write (``cohorta.db.ReadAhead``)."""
    programs = table_of(CustomerProgramSummary)
    for chunk in chunked(sorted(set(customer_ids)), REBUILD_CHUNK):
        for statement in _rebuild_statements(True):
            if isinstance(statement, sa.Insert) and statement.select is not None:
                connection.execute(statement.select, {"ids": list(chunk)}).all()
        connection.execute(sa.select(programs.c.program).where(InValues(programs.c.customer_id, chunk))).all()


@cache
def _rebuild_statements(scoped: bool) -> tuple[sa.Executable, ...]:
    """The four statements of :func:`rebuild_summaries`, built once (``scoped``: for the customers of the parameter
    ``ids``): building them cost half of a single order's write (their column collections, cache keys)."""
    summaries, programs = table_of(CustomerSummary), table_of(CustomerProgramSummary)
    customers, orders, journal = table_of(Customer), table_of(Order), table_of(LoyaltyTransaction)

    def only(column: sa.ColumnElement[Any]) -> list[sa.ColumnElement[bool]]:
        return [InValues(column, key="ids")] if scoped else []

    statements: list[sa.Executable] = [
        sa.delete(summaries).where(*only(summaries.c.customer_id)),
        sa.delete(programs).where(*only(programs.c.customer_id)),
    ]

    counted = [orders.c.status.in_(COUNTED_ORDER_STATUSES), *only(orders.c.customer_id)]
    order_totals = (
        sa.select(
            orders.c.customer_id,
            sa.func.count().label("order_count"),
            sa.cast(sa.func.sum(orders.c.total_minor), sa.BigInteger).label("total"),
            sa.func.min(orders.c.created_at).label("first_at"),
            sa.func.max(orders.c.created_at).label("last_at"),
        )
        .where(*counted)
        .group_by(orders.c.customer_id)
        .subquery("o")
    )
    ranked_orders = (
        sa.select(
            orders.c.customer_id,
            orders.c.total_minor,
            sa.func.row_number()
            .over(partition_by=orders.c.customer_id, order_by=(orders.c.created_at.desc(), orders.c.id.desc()))
            .label("rank"),
        )
        .where(*counted)
        .subquery("ranked")
    )
    last_order = (
        sa.select(ranked_orders.c.customer_id, ranked_orders.c.total_minor)
        .where(ranked_orders.c.rank == 1)
        .subquery("lo")
    )

    def sum_when(kind: LoyaltyType, value: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.cast(sa.func.sum(sa.case((journal.c.type == kind.value, value), else_=0)), sa.BigInteger)

    loyalty = (
        sa.select(
            journal.c.customer_id,
            sum_when(LoyaltyType.points, journal.c.points).label("points"),
            sum_when(LoyaltyType.redemption, sa.literal(1)).label("redemptions"),
            sum_when(LoyaltyType.referral, sa.literal(1)).label("referrals"),
            sum_when(LoyaltyType.gift_card, journal.c.amount_minor).label("gift"),
        )
        .where(*only(journal.c.customer_id))
        .group_by(journal.c.customer_id)
        .subquery("l")
    )
    o, lo, loy = order_totals.c, last_order.c, loyalty.c
    summary_rows = (
        sa.select(
            customers.c.id,
            sa.func.coalesce(o.order_count, 0),
            sa.func.coalesce(o.total, 0),
            (2 * o.total + o.order_count) // (2 * o.order_count),
            o.first_at,
            o.last_at,
            lo.total_minor,
            sa.func.coalesce(loy.points, 0),
            sa.func.coalesce(loy.redemptions, 0),
            sa.func.coalesce(loy.referrals, 0),
            sa.func.coalesce(loy.gift, 0),
        )
        .select_from(customers)
        .outerjoin(order_totals, o.customer_id == customers.c.id)
        .outerjoin(last_order, lo.customer_id == customers.c.id)
        .outerjoin(loyalty, loy.customer_id == customers.c.id)
        .where(*only(customers.c.id))
    )
    statements.append(
        sa.insert(summaries).from_select(
            ["customer_id", "order_count", "total_spent_minor", "average_order_value_minor", "first_order_at",
             "last_order_at", "last_order_amount_minor", "points_balance", "redemption_count", "referral_count",
             "gift_card_balance_minor"],
            summary_rows,
        )
    )  # fmt: skip

    in_programs = [journal.c.program.is_not(None), *only(journal.c.customer_id)]
    program_points = (
        sa.select(
            journal.c.customer_id, journal.c.program, sum_when(LoyaltyType.points, journal.c.points).label("points")
        )
        .where(journal.c.type.in_([LoyaltyType.points.value, LoyaltyType.tier.value]), *in_programs)
        .group_by(journal.c.customer_id, journal.c.program)
        .subquery("p")
    )
    ranked_tiers = (
        sa.select(
            journal.c.customer_id,
            journal.c.program,
            journal.c.tier,
            sa.func.row_number()
            .over(
                partition_by=(journal.c.customer_id, journal.c.program),
                order_by=(journal.c.occurred_at.desc(), journal.c.id.desc()),
            )
            .label("rank"),
        )
        .where(journal.c.type == LoyaltyType.tier.value, *in_programs)
        .subquery("ranked_tiers")
    )
    tiers = (
        sa.select(ranked_tiers.c.customer_id, ranked_tiers.c.program, ranked_tiers.c.tier)
        .where(ranked_tiers.c.rank == 1)
        .subquery("t")
    )
    p, t = program_points.c, tiers.c
    statements.append(
        sa.insert(programs).from_select(
            ["customer_id", "program", "points_balance", "tier"],
            sa.select(p.customer_id, p.program, p.points, t.tier)
            .select_from(program_points)
            .outerjoin(tiers, sa.and_(t.customer_id == p.customer_id, t.program == p.program)),
        )
    )
    return tuple(statements)
