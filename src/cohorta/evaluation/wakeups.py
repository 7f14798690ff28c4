"""Wake-ups planned set-based: for every customer of a time-dependent segment, an instant no later than the first one
at which the rule's answer may change by the clock alone, from one grouped statement per activity the rule reads
(and one per activity condition whose truth matters), instead of loading and walking every customer's snapshot.

The instants come from :func:`cohorta.rules.time_leaves` (see there for why they are safe). They may be early: the
wake-up then re-evaluates the customer and plans the exact instant (:func:`cohorta.rules.next_change`), so a customer
is walked once, when one of their rows actually moves, instead of all customers when the segment is created.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cohorta import rules
from cohorta.customers.models import Customer, CustomerSummary, Event, LoyaltyTransaction, Order, OrderItem
from cohorta.customers.summary import chunked
from cohorta.db import table_of
from cohorta.evaluation import store
from cohorta.evaluation.idsets import IdSet
from cohorta.evaluation.snapshots import ValueTypes, aware_utc, load_snapshots
from cohorta.rules.timeutil import to_utc_naive

_ACTIVITY_TABLES: dict[str, Any] = {"orders": Order, "order_items": OrderItem, "events": Event,
                                    "points": LoyaltyTransaction, "redemptions": LoyaltyTransaction}  # fmt: skip
UTC = dt.UTC


def wakeup_candidates(
    session: Session, rule: rules.Rule, ctx: rules.Context, types: ValueTypes
) -> dict[int, dt.datetime] | None:
    """Customer id -> the instant (aware UTC) to wake them in a segment with this rule; customers left out cannot
    change by the clock alone. None when some part of the rule has no set-based bound (walk every customer)."""
    leaves = rules.time_leaves(rule, ctx)
    if leaves is None:
        return None
    found: dict[int, dt.datetime] = {}
    gate_sets: dict[int, IdSet] = {}  # by id of the gate's node: a gate shared by several leaves is read once
    # Sets are only tested for membership and combined, so a complement stays one (no read of every customer id).
    matches = store.NodeMatches(session, ctx)

    def gate_set(gate: rules.Gate) -> IdSet:
        node, wanted = gate
        matching = gate_sets.get(id(node))
        if matching is None:
            matching = gate_sets[id(node)] = matches.of(node)
        return matching if wanted else ~matching

    for leaf in leaves:
        allowed = None
        for gate in leaf.gates:
            allowed = gate_set(gate) if allowed is None else allowed & gate_set(gate)

        def keep(customer_id: int, instant: dt.datetime | None, _allowed: IdSet | None = allowed) -> None:
            if instant is not None and (_allowed is None or customer_id in _allowed):
                earlier = found.get(customer_id)
                if earlier is None or instant < earlier:
                    found[customer_id] = instant

        if isinstance(leaf, rules.ActivityLeaf):
            _activity_candidates(session, leaf, ctx, matches, keep)
        else:
            _field_candidates(session, leaf, ctx, types, keep)
    return {cid: instant.replace(tzinfo=UTC) for cid, instant in found.items()}


def _activity_candidates(
    session: Session,
    leaf: rules.ActivityLeaf,
    ctx: rules.Context,
    matches: store.NodeMatches,
    keep: Callable[[int, dt.datetime | None], None],
) -> None:
    table = table_of(_ACTIVITY_TABLES[leaf.bound.activity])
    at = table.c[leaf.bound.time_column]
    inside = sa.func.min(sa.case((at >= aware_utc(leaf.lo), at))) if leaf.lo is not None else sa.null()
    arriving = sa.func.min(sa.case((at >= aware_utc(leaf.arrives), at)))
    query = sa.select(table.c.customer_id, sa.func.min(at), inside, arriving).group_by(table.c.customer_id)
    if leaf.since is not None:
        query = query.where(at >= aware_utc(leaf.since))
    if leaf.until is not None:
        query = query.where(at < aware_utc(leaf.until))
    if leaf.bound.event is not None:
        query = query.where(table.c.name == leaf.bound.event)
    truth = _Truth(matches, leaf, ctx) if leaf.reads_truth else None
    now = ctx.as_of_utc
    for customer_id, first, first_inside, first_arriving in session.execute(query):
        states = truth.of(customer_id) if truth is not None else {}
        found = leaf.candidate(now, to_utc_naive(first), _naive(first_inside), _naive(first_arriving), **states)
        keep(customer_id, found)


class _Truth:
    """Whether the activity condition alone is true now, at the next period start and over no rows, per customer."""

    def __init__(self, matches: store.NodeMatches, leaf: rules.ActivityLeaf, ctx: rules.Context) -> None:
        self.now = matches.of(leaf.node)
        following = leaf.next_period_node()
        self.next_period = matches.of(following) if following is not None else None
        self.empty = rules.compile_predicate(leaf.node, ctx)(rules.CustomerSnapshot(customer_id=0, profile={}))

    def of(self, customer_id: int) -> dict[str, bool]:
        now = customer_id in self.now
        following = self.empty if self.next_period is None else customer_id in self.next_period
        return {"true_now": now, "true_next_period": following, "true_empty": self.empty}


def _field_candidates(
    session: Session,
    leaf: rules.FieldLeaf,
    ctx: rules.Context,
    types: ValueTypes,
    keep: Callable[[int, dt.datetime | None], None],
) -> None:
    """Relative dates and anniversaries: each customer's own instant from a snapshot holding only that field (a
    profile or summary column is read alone, with no row for customers without a value)."""
    plan = leaf.planner(ctx)
    column = _FIELD_COLUMNS.get(leaf.bound.source)
    if column is not None and plan(rules.CustomerSnapshot(customer_id=0, profile={})) is None:
        table, key, part = column
        values = table.c[leaf.bound.name]
        for customer_id, value in session.execute(sa.select(table.c[key], values).where(values.is_not(None))):
            snapshot = rules.CustomerSnapshot(customer_id=customer_id, profile={})
            getattr(snapshot, part)[leaf.bound.name] = value
            keep(customer_id, _naive(plan(snapshot)))
        return
    needs = rules.Requirements()
    needs.fields.add(leaf.node.field)
    for chunk in chunked(store.customer_ids(session).tolist(), 5_000):
        for customer_id, snapshot in load_snapshots(session, chunk, needs, types=types).items():
            keep(customer_id, _naive(plan(snapshot)))


#: Where a profile or summary field's value is read alone: table, its customer id column, the snapshot part.
_FIELD_COLUMNS: dict[str, tuple[sa.Table, str, str]] = {
    "profile": (table_of(Customer), "id", "profile"),
    "summary": (table_of(CustomerSummary), "customer_id", "summary"),
}


def _naive(instant: dt.datetime | None) -> dt.datetime | None:
    return None if instant is None else to_utc_naive(instant)
