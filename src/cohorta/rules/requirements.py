"""What a rule needs from a customer snapshot, and when its answer may change by the clock alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .model import RELATIVE_OPERATORS, Activity, Condition, NodeType, Rule, walk
from .plan import BActivity, BAnd, BNot, BOr, Bound, BSample, BSegment, Requirements, bind
from .predicate import compile_row_filter
from .timeutil import Context

EventRow = dict[str, Any]


_ACTIVITY_LIST = {"orders": "orders", "order_items": "order_items", "events": "events",
                  "points": "loyalty_transactions", "redemptions": "loyalty_transactions"}


def _bound_nodes(b: Bound) -> list[Bound]:
    out: list[Bound] = [b]
    if isinstance(b, BAnd | BOr):
        for x in b.items:
            out.extend(_bound_nodes(x))
    elif isinstance(b, BNot):
        out.extend(_bound_nodes(b.item))
    elif isinstance(b, BActivity):
        for f in b.filters:
            out.extend(_bound_nodes(f))
    return out


def rule_requirements(rule: Rule | NodeType, ctx: Context) -> Requirements:
    """Which activity lists (``orders``, ``order_items``, ``events``, ``loyalty_transactions``), event names,
    fields and segments a rule reads, the earliest activity instant per list (None: all history), and whether
    the answer depends on the clock (relative dates, windows, anniversaries)."""
    req = Requirements()
    root = rule.root if isinstance(rule, Rule) else rule
    for n in walk(root):
        if isinstance(n, Condition):
            req.fields.add(n.field)
            if n.op in RELATIVE_OPERATORS:
                req.time_dependent = True
    for b in _bound_nodes(bind(root, ctx)):
        if isinstance(b, BActivity):
            kind = _ACTIVITY_LIST[b.activity]
            req.activities.add(kind)
            if b.event is not None:
                req.events.add(b.event)
            if kind not in req.earliest_activity:
                req.earliest_activity[kind] = b.lo
            else:
                prev = req.earliest_activity[kind]
                req.earliest_activity[kind] = None if prev is None or b.lo is None else min(prev, b.lo)
            req.time_dependent = True  # activity ages out of windows / as_of moves
        elif isinstance(b, BSegment):
            req.segments.add(b.segment_id)
        elif isinstance(b, BSample):
            req.sample = True
    return req


def event_row_test(rule: Rule | NodeType, ctx: Context) -> Callable[[EventRow], bool] | None:
    """Whether an event row (as snapshots hold them) can count for some ``events`` activity of the rule: its name and
    ``where`` conditions. A new event that fails it changes neither the rule's answer nor when it next changes, so
    live membership need not re-evaluate the rule for that write. None when the row alone cannot tell: a ``where``
    condition that moves with the clock (a row failing it now may count later)."""
    root = rule.root if isinstance(rule, Rule) else rule
    for n in walk(root):
        if isinstance(n, Activity) and n.activity == "events" and any(w.op in RELATIVE_OPERATORS for w in n.where):
            return None
    tests = [
        (b.event, [compile_row_filter(f) for f in b.filters])
        for b in _bound_nodes(bind(root, ctx))
        if isinstance(b, BActivity) and b.activity == "events"
    ]

    def counts(row: EventRow) -> bool:
        name = row.get("name")
        return any(name == event and all(f(row) for f in filters) for event, filters in tests)

    return counts
