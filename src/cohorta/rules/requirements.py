"""What a rule needs from a customer snapshot, and when its answer may change by the clock alone."""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from enum import Enum
from typing import Any

from .catalog import COUNTED_ORDER_STATUSES
from .model import RELATIVE_OPERATORS, Activity, Condition, LastDays, NodeType, Rule, walk
from .plan import BActivity, BAnd, BField, BList, BNot, BOr, Bound, BSample, BSegment, Requirements, bind
from .predicate import anonymous, compile_row_filter
from .semantics import Compare
from .timeutil import REENTRY_MARGIN, Context

EventRow = dict[str, Any]
#: A new order as its table rows hold it: the order's row and its items' rows.
NewOrder = tuple[dict[str, Any], list[dict[str, Any]]]


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


def _leaves(b: Bound, effect_alone: Callable[[Bound], RowEffect | None], negated: bool = False
            ) -> list[tuple[Bound, RowEffect]]:  # fmt: skip
    """Every leaf of the bound rule that ``effect_alone`` gives an effect (what a new row does to the leaf alone),
    with what it does to the whole rule through it. ``and`` and ``or`` are monotone in their children (conditions
    are two-valued), ``not`` reverses."""
    if isinstance(b, BAnd | BOr):
        return [found for x in b.items for found in _leaves(x, effect_alone, negated)]
    if isinstance(b, BNot):
        return _leaves(b.item, effect_alone, not negated)
    effect = effect_alone(b)
    if effect is None:
        return []
    return [(b, _flipped(effect) if negated else effect)]


def _moving_where(root: NodeType, activities: tuple[str, ...]) -> bool:
    """Whether an activity of these kinds has a ``where`` condition that moves with the clock (a row failing it now
    may count later: a new row's effect cannot be told from the row)."""
    return any(isinstance(n, Activity) and n.activity in activities and any(w.op in RELATIVE_OPERATORS for w in n.where)
               for n in walk(root))  # fmt: skip


def event_row_effect(rule: Rule | NodeType, ctx: Context) -> Callable[[EventRow], RowEffect] | None:
    """What a new event row (as snapshots hold them) can do to the rule's answer, by the activities it can count for
    (their event name and ``where`` conditions). Live membership skips re-evaluating a customer when the rows can do
    nothing, or can only raise an answer that is already true (a member of "viewed at least 3 times in 30 days" who
    views again) or only lower one that is already false. Adding a row to a count compared with ``gte`` raises the
    answer at every instant, so the member's stored wake-up stays safe: it is no later than the new true change.
    None when the row alone cannot tell: a ``where`` condition that moves with the clock (a row failing it now may
    count later)."""
    root = rule.root if isinstance(rule, Rule) else rule
    if _moving_where(root, ("events",)):
        return None
    leaves = _leaves(
        bind(root, ctx), lambda b: count_effect(b) if isinstance(b, BActivity) and b.activity == "events" else None
    )
    activities, counts_key = _counted(leaves)
    key = ("events", *counts_key)

    def make() -> Callable[[EventRow], RowEffect]:
        # By event name: a bulk write tests each of its rows against every events segment's function, and most
        # rows are of a name the function does not count (then the answer is one dictionary miss).
        unfiltered: dict[str | None, RowEffect] = {}
        filtered: dict[str | None, list[tuple[Callable[[EventRow], bool], RowEffect]]] = defaultdict(list)
        for b, effect in activities:
            if b.filters:
                filtered[b.event].append((_remembered(b.filters), effect))
            else:
                unfiltered[b.event] = unfiltered.get(b.event, RowEffect.NONE) | effect

        def effect_of(row: EventRow) -> RowEffect:
            name = row.get("name")
            found = unfiltered.get(name, RowEffect.NONE)
            for passes, effect in filtered.get(name, ()):
                if passes(row):
                    found |= effect
            return found

        return effect_of

    return _shared_effect(key, make)


#: Summary fields an order feeds (from counted orders only), and among them those that only grow with a counted
#: order of a non-negative total.
_ORDER_FED = ("order_count", "total_spent_minor", "average_order_value_minor", "first_order_at", "last_order_at",
              "last_order_amount_minor")  # fmt: skip
_ORDER_GROWS = ("order_count", "total_spent_minor")


def _order_leaf_effect(b: Bound) -> RowEffect | None:
    if isinstance(b, BActivity) and b.activity in ("orders", "order_items"):
        return count_effect(b)
    if isinstance(b, BField) and b.source == "summary" and b.name in _ORDER_FED:
        # A missing summary row fails every test, so only a growing value compared from below is sure to rise.
        grows = b.name in _ORDER_GROWS and isinstance(b.test, Compare) and b.test.op in ("gt", "gte")
        return RowEffect.RAISES if grows else RowEffect.ANY
    return None


def order_effect(rule: Rule | NodeType, ctx: Context) -> Callable[[NewOrder], RowEffect] | None:
    """What one new order (its row and its items' rows, as the tables hold them) can do to the rule's answer, as
    :func:`event_row_effect` tells it for an event: through the order and order-item activities it counts for, and
    through the summary fields it feeds. An order of a status that does not count (``created``, ``cancelled``,
    ``refunded``) feeds no summary field; a counted one raises "order count at least ..." and, unless its total is
    negative, "total spent over ..."; the averages, first and last order and last amount may move either way.
    None when a ``where`` condition on orders or their items moves with the clock."""
    root = rule.root if isinstance(rule, Rule) else rule
    if _moving_where(root, ("orders", "order_items")):
        return None
    leaves = _leaves(bind(root, ctx), _order_leaf_effect)
    counts, counts_key = _counted(leaves)
    summary = [(b.name, effect) for b, effect in leaves if isinstance(b, BField)]
    key = ("orders", tuple(summary), *counts_key)

    def make() -> Callable[[NewOrder], RowEffect]:
        activities = [(b.activity, [compile_row_filter(f) for f in b.filters], effect) for b, effect in counts]

        def effect_of(order: NewOrder) -> RowEffect:
            row, items = order
            found = RowEffect.NONE
            for activity, filters, effect in activities:
                for counted in (row,) if activity == "orders" else items:
                    if all(f(counted) for f in filters):
                        found |= effect
            if summary and row.get("status") in COUNTED_ORDER_STATUSES:
                negative = (row.get("total_minor") or 0) < 0
                for name, effect in summary:
                    found |= RowEffect.ANY if negative and name == "total_spent_minor" else effect
            return found

        return effect_of

    return _shared_effect(key, make)


#: Summary fields a loyalty journal row feeds: the row type that moves each, and whether one such row can only raise
#: it (a count); balances move either way.
_LOYALTY_FED = {"points_balance": ("points", False), "redemption_count": ("redemption", True),
                "referral_count": ("referral", True), "gift_card_balance_minor": ("gift_card", False)}  # fmt: skip
#: Program fields and the row type that moves them (for the row's own program).
_PROGRAM_FED = {"points_balance": "points", "tier": "tier"}


def _loyalty_leaf_effect(b: Bound) -> RowEffect | None:
    if isinstance(b, BActivity) and b.activity in ("points", "redemptions"):
        return count_effect(b)
    if isinstance(b, BField) and b.source == "summary" and b.name in _LOYALTY_FED:
        grows = _LOYALTY_FED[b.name][1] and isinstance(b.test, Compare) and b.test.op in ("gt", "gte")
        return RowEffect.RAISES if grows else RowEffect.ANY
    if isinstance(b, BField) and b.source == "program" and b.name in _PROGRAM_FED:
        return RowEffect.ANY
    return None


def loyalty_effect(rule: Rule | NodeType, ctx: Context) -> Callable[[dict[str, Any]], RowEffect] | None:
    """What one new loyalty journal row (as the table holds it) can do to the rule's answer, as :func:`order_effect`
    tells it for an order: through the points and redemption activities it counts for (their row type, program and
    other ``where`` conditions) and the fields it feeds: a points row moves the points balances (overall and of its
    program), a tier change its program's tier, either way; a redemption or a referral raises its count (so "at
    least 2 redemptions" only rises); a gift-card operation moves the gift-card balance. None when a ``where``
    condition on points or redemptions moves with the clock."""
    root = rule.root if isinstance(rule, Rule) else rule
    if _moving_where(root, ("points", "redemptions")):
        return None
    leaves = _leaves(bind(root, ctx), _loyalty_leaf_effect)
    counts, counts_key = _counted(leaves)
    fields = [(b.source, b.name, b.program, effect) for b, effect in leaves if isinstance(b, BField)]
    key = ("loyalty", tuple(fields), *counts_key)

    def make() -> Callable[[dict[str, Any]], RowEffect]:
        activities = [([compile_row_filter(f) for f in b.filters], effect) for b, effect in counts]
        moved_by = [((_LOYALTY_FED[name][0] if source == "summary" else _PROGRAM_FED[name]), program, effect)
                    for source, name, program, effect in fields]  # fmt: skip

        def effect_of(row: dict[str, Any]) -> RowEffect:
            found = RowEffect.NONE
            for filters, effect in activities:
                if all(f(row) for f in filters):
                    found |= effect
            kind = row.get("type")
            for moving_type, program, effect in moved_by:
                if kind == moving_type and (program is None or row.get("program") == program):
                    found |= effect
            return found

        return effect_of

    return _shared_effect(key, make)


def _remembered(filters: Sequence[Bound]) -> Callable[[EventRow], bool]:
    """Whether an event row passes all of an activity's ``where`` filters, remembered by the values they read: a
    bulk write's rows repeat a few values ("shoes", "bags") and eight variants of "viewed a category" test each row.
    Exact, since a filter that does not move with the clock reads nothing but those values."""
    tests = [compile_row_filter(f) for f in filters]
    reads = [(f.source, f.name) for f in filters if isinstance(f, BField | BList)]
    if len(reads) != len(filters) or any(source not in ("row", "property") for source, _ in reads):
        return lambda row: all(test(row) for test in tests)
    passed: dict[tuple[Any, ...], bool] = {}

    def passes(row: EventRow) -> bool:
        properties = row.get("properties") or {}
        key = tuple(properties.get(name) if source == "property" else row.get(name) for source, name in reads)
        try:
            return passed[key]
        except KeyError:
            pass
        except TypeError:  # a list value: not a key
            return all(test(row) for test in tests)
        if len(passed) >= 4_096:
            passed.clear()
        answer = passed[key] = all(test(row) for test in tests)
        return answer

    return passes


def _counted(leaves: list[tuple[Bound, RowEffect]]) -> tuple[list[tuple[BActivity, RowEffect]], tuple[Any, ...]]:
    """The activity conditions among a rule's leaves with what one counted row does to each, and what an effect
    function over them depends on: their activity, event name, row filters without node ids and effect (not their
    thresholds or windows, so a rule's variants share the function)."""
    counts = [(b, effect) for b, effect in leaves if isinstance(b, BActivity)]
    key = tuple((b.activity, b.event, tuple(anonymous(f) for f in b.filters), effect) for b, effect in counts)
    return counts, key


#: One effect function for rules whose activities and fields test the same rows the same way (the variants of a
#: rule with other thresholds or windows), so a caller can compute a row's effect once for all of them (by
#: identity). Keys start with the kind of write ("events", "orders", "loyalty").
_SHARED_EFFECTS: weakref.WeakValueDictionary[Hashable, Callable[[Any], RowEffect]] = weakref.WeakValueDictionary()


def _shared_effect(key: tuple[Any, ...], make: Callable[[], Callable[[Any], RowEffect]]
                   ) -> Callable[[Any], RowEffect]:  # fmt: skip
    """The effect function kept for ``key`` (what it depends on: the kind of write, event names or activities, row
    filters without their node ids, summary fields, effects), made and kept if there is none; made and not kept when
    a filter value cannot be hashed."""
    try:
        shared = _SHARED_EFFECTS.get(key)
    except TypeError:
        return make()
    if shared is None:
        shared = _SHARED_EFFECTS[key] = make()
    return shared

