"""What a rule needs from a customer snapshot, and when its answer may change by the clock alone."""

from __future__ import annotations

from .model import Condition, NodeType, Rule, walk
from .plan import BActivity, BAnd, BNot, BOr, Bound, BSample, BSegment, Requirements, bind
from .timeutil import Context

RELATIVE_OPERATORS = ("exactly_days_ago", "less_than_days_ago", "more_than_days_ago", "in_next_days", "in_calendar",
                      "anniversary_within_days", "anniversary_this_month")

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
