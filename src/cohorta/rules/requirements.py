"""What a rule needs from a customer snapshot, and when its answer may change by the clock alone."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from enum import Enum
from typing import Any

from .model import RELATIVE_OPERATORS, Activity, Condition, LastDays, NodeType, Rule, walk
from .plan import BActivity, BAnd, BNot, BOr, Bound, BSample, BSegment, Requirements, bind
from .predicate import anonymous, compile_row_filter
from .semantics import Compare
from .timeutil import REENTRY_MARGIN, Context

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
    fields (catalog paths, the row fields of ``where`` conditions, and measured event properties as
    ``properties.<key>``) and segments a rule reads, the earliest activity instant per list (None: all history;
    ``last_days`` windows from a little below their start), and whether the answer depends on the clock (relative
    dates, windows, anniversaries)."""
    req = Requirements()
    root = rule.root if isinstance(rule, Rule) else rule
    sliding: set[str] = set()  # activity lists read by a last_days window
    for n in walk(root):
        if isinstance(n, Condition):
            req.fields.add(n.field)
            if n.op in RELATIVE_OPERATORS:
                req.time_dependent = True
        elif isinstance(n, Activity):
            if n.activity == "events" and n.measure is not None and n.measure.field:
                req.fields.add(n.measure.field)  # a measured event property is read like one in ``where``
            if isinstance(n.window, LastDays):
                sliding.add(_ACTIVITY_LIST[n.activity])
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
    # Rows just below a ``last_days`` start re-enter the window when the zone's clocks fall back: the wake-up walk
    # and kept answers must see them (a customer two views short, with a third just below the start, enters then).
    for kind in sliding:
        since = req.earliest_activity.get(kind)
        if since is not None:
            req.earliest_activity[kind] = since - REENTRY_MARGIN
    return req


class RowEffect(Enum):
    """What adding one activity row can do to a rule's answer, at every instant (see :func:`event_row_effect`)."""

    NONE = 0  # the row counts for no activity of the rule: the answer and when it next changes stay as they are
    RAISES = 1  # the answer can only turn true, never false, at any instant
    LOWERS = 2  # the answer can only turn false, never true, at any instant
    ANY = 3  # either

    def __or__(self, other: RowEffect) -> RowEffect:
        """The effect of adding both rows."""
        if self is other or other is RowEffect.NONE:
            return self
        return other if self is RowEffect.NONE else RowEffect.ANY


def count_effect(b: BActivity) -> RowEffect:
    """What one more counted row does to this activity condition alone: a count compared with ``gt``/``gte`` can only
    turn true, with ``lt``/``lte`` only false. Other measures and comparisons (sums of signed values, averages,
    ``is``, ``between``) may do either."""
    if b.fn == "count" and isinstance(b.test, Compare):
        return _COUNT_EFFECT.get(b.test.op, RowEffect.ANY)
    return RowEffect.ANY


_COUNT_EFFECT = {"gt": RowEffect.RAISES, "gte": RowEffect.RAISES, "lt": RowEffect.LOWERS, "lte": RowEffect.LOWERS}


def _flipped(effect: RowEffect) -> RowEffect:
    return {RowEffect.RAISES: RowEffect.LOWERS, RowEffect.LOWERS: RowEffect.RAISES}.get(effect, effect)


def _event_activities(b: Bound, negated: bool = False) -> list[tuple[BActivity, RowEffect]]:
    """Every ``events`` activity of the bound rule with what one more counted row does to the whole rule through it.
    ``and`` and ``or`` are monotone in their children (conditions are two-valued), ``not`` reverses."""
    if isinstance(b, BAnd | BOr):
        return [found for x in b.items for found in _event_activities(x, negated)]
    if isinstance(b, BNot):
        return _event_activities(b.item, not negated)
    if isinstance(b, BActivity) and b.activity == "events":
        effect = count_effect(b)
        return [(b, _flipped(effect) if negated else effect)]
    return []


def event_row_effect(rule: Rule | NodeType, ctx: Context) -> Callable[[EventRow], RowEffect] | None:
    """What a new event row (as snapshots hold them) can do to the rule's answer, by the activities it can count for
    (their event name and ``where`` conditions). Live membership skips re-evaluating a customer when the rows can do
    nothing, or can only raise an answer that is already true (a member of "viewed at least 3 times in 30 days" who
    views again) or only lower one that is already false. Adding a row to a count compared with ``gte`` raises the
    answer at every instant, so the member's stored wake-up stays safe: it is no later than the new true change.
    None when the row alone cannot tell: a ``where`` condition that moves with the clock (a row failing it now may
    count later)."""
    root = rule.root if isinstance(rule, Rule) else rule
    for n in walk(root):
        if isinstance(n, Activity) and n.activity == "events" and any(w.op in RELATIVE_OPERATORS for w in n.where):
            return None
    activities = _event_activities(bind(root, ctx))
    key = _effect_key(activities)
    shared = None if key is None else _SHARED_EFFECTS.get(key)
    if shared is not None:
        return shared
    tests = [(b.event, [compile_row_filter(f) for f in b.filters], effect) for b, effect in activities]

    def effect_of(row: EventRow) -> RowEffect:
        name = row.get("name")
        found = RowEffect.NONE
        for event, filters, effect in tests:
            if name == event and all(f(row) for f in filters):
                found |= effect
        return found

    if key is not None:
        _SHARED_EFFECTS[key] = effect_of
    return effect_of


#: One effect function for rules whose event activities test the same rows the same way (the variants of a rule
#: with other thresholds or windows), so a caller can compute a row's effect once for all of them (by identity).
_SHARED_EFFECTS: weakref.WeakValueDictionary[Hashable, Callable[[EventRow], RowEffect]] = (
    weakref.WeakValueDictionary()
)


def _effect_key(found: list[tuple[BActivity, RowEffect]]) -> Hashable | None:
    """What the effect function of these activities depends on (event names, row filters without their node ids,
    effects), or None when a filter value cannot be hashed (then the function is not shared)."""
    key = tuple((b.event, tuple(anonymous(f) for f in b.filters), effect) for b, effect in found)
    try:
        hash(key)
    except TypeError:
        return None
    return key

