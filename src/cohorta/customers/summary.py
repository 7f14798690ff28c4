"""The per-customer summary, recomputed set-based from the raw rows for the customers a write touched.

Recomputing a customer's aggregates from their own (indexed) rows, rather than adjusting counters, keeps the summary
exact under updates, out-of-order arrivals and deletes, at the cost of reading that customer's orders again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cohorta.customers.models import (
    COUNTED_ORDER_STATUSES,
    CustomerProgramSummary,
    CustomerSummary,
    LoyaltyTransaction,
    LoyaltyType,
    Order,
)
from cohorta.db import InValues, insert_rows, table_of, update_rows

# Bound parameters per IN list: well under SQLite's limit of 32,766 and PostgreSQL's 65,535.
CHUNK = 5_000


T = TypeVar("T")


def chunked(ids: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def ensure_summary_rows(session: Session, customer_ids: Sequence[int]) -> None:
    """Insert an empty summary row for new customers (zeros and NULLs: no activity yet)."""
    if customer_ids:
        rows = [{"customer_id": cid, **EMPTY_SUMMARY} for cid in customer_ids]
        insert_rows(session.connection(), table_of(CustomerSummary), rows)


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


def average_minor(total_minor: int, count: int) -> int | None:
    """Average in minor units, rounded half up (amounts are never negative)."""
    if count == 0:
        return None
    return (2 * total_minor + count) // (2 * count)


def refresh_order_summaries(session: Session, customer_ids: Sequence[int]) -> None:
    ids = sorted(set(customer_ids))
    for chunk in chunked(ids):
        counted = sa.and_(InValues(Order.customer_id, chunk), Order.status.in_(COUNTED_ORDER_STATUSES))
        aggregates = session.execute(
            sa.select(
                Order.customer_id,
                sa.func.count(),
                sa.func.sum(Order.total_minor),
                sa.func.min(Order.created_at),
                sa.func.max(Order.created_at),
            )
            .where(counted)
            .group_by(Order.customer_id)
        ).all()
        # The latest order's amount; ties on time are broken by arrival order.
        ranked = (
            sa.select(
                Order.customer_id,
                Order.total_minor,
                sa.func.row_number()
                .over(partition_by=Order.customer_id, order_by=(Order.created_at.desc(), Order.id.desc()))
                .label("rank"),
            )
            .where(counted)
            .subquery()
        )
        last_amounts = dict(
            session.execute(sa.select(ranked.c.customer_id, ranked.c.total_minor).where(ranked.c.rank == 1)).all()
        )
        values: dict[int, dict[str, Any]] = {
            cid: {
                "order_count": 0,
                "total_spent_minor": 0,
                "average_order_value_minor": None,
                "first_order_at": None,
                "last_order_at": None,
                "last_order_amount_minor": None,
            }
            for cid in chunk
        }
        for cid, count, total, first_at, last_at in aggregates:
            values[cid] = {
                "order_count": count,
                "total_spent_minor": int(total),
                "average_order_value_minor": average_minor(int(total), count),
                "first_order_at": first_at,
                "last_order_at": last_at,
                "last_order_amount_minor": last_amounts[cid],
            }
        _update_summaries(session, values)


def refresh_loyalty_summaries(session: Session, customer_ids: Sequence[int]) -> None:
    ids = sorted(set(customer_ids))
    journal = LoyaltyTransaction
    for chunk in chunked(ids):
        in_chunk = InValues(journal.customer_id, chunk)
        points = session.execute(
            sa.select(journal.customer_id, journal.program, sa.func.sum(journal.points))
            .where(in_chunk, journal.type == LoyaltyType.points.value)
            .group_by(journal.customer_id, journal.program)
        ).all()
        ranked_tiers = (
            sa.select(
                journal.customer_id,
                journal.program,
                journal.tier,
                sa.func.row_number()
                .over(
                    partition_by=(journal.customer_id, journal.program),
                    order_by=(journal.occurred_at.desc(), journal.id.desc()),
                )
                .label("rank"),
            )
            .where(in_chunk, journal.type == LoyaltyType.tier.value)
            .subquery()
        )
        tiers = session.execute(
            sa.select(ranked_tiers.c.customer_id, ranked_tiers.c.program, ranked_tiers.c.tier).where(
                ranked_tiers.c.rank == 1
            )
        ).all()
        counts = session.execute(
            sa.select(journal.customer_id, journal.type, sa.func.count(), sa.func.sum(journal.amount_minor))
            .where(
                in_chunk,
                journal.type.in_(
                    [LoyaltyType.redemption.value, LoyaltyType.referral.value, LoyaltyType.gift_card.value]
                ),
            )
            .group_by(journal.customer_id, journal.type)
        ).all()

        programs: dict[tuple[int, str], dict[str, Any]] = {}
        for cid, program, balance in points:
            programs.setdefault((cid, str(program)), {"points_balance": 0, "tier": None})["points_balance"] = int(
                balance or 0
            )
        for cid, program, tier in tiers:
            programs.setdefault((cid, str(program)), {"points_balance": 0, "tier": None})["tier"] = tier
        values: dict[int, dict[str, Any]] = {
            cid: {"points_balance": 0, "redemption_count": 0, "referral_count": 0, "gift_card_balance_minor": 0}
            for cid in chunk
        }
        for (cid, _program), program_values in programs.items():
            values[cid]["points_balance"] += program_values["points_balance"]
        for cid, kind, count, amount in counts:
            if kind == LoyaltyType.redemption.value:
                values[cid]["redemption_count"] = count
            elif kind == LoyaltyType.referral.value:
                values[cid]["referral_count"] = count
            else:
                values[cid]["gift_card_balance_minor"] = int(amount or 0)
        _update_summaries(session, values)

        session.execute(sa.delete(CustomerProgramSummary).where(InValues(CustomerProgramSummary.customer_id, chunk)))
        insert_rows(
            session.connection(),
            table_of(CustomerProgramSummary),
            [{"customer_id": cid, "program": program, **vals} for (cid, program), vals in programs.items()],
        )


def _update_summaries(session: Session, values: dict[int, dict[str, Any]]) -> None:
    rows = [{"customer_id": cid, **row} for cid, row in values.items()]
    update_rows(session.connection(), table_of(CustomerSummary), "customer_id", rows)
