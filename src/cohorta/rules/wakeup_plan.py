"""Wake-ups for a whole segment at once: which parts of a rule move with the clock, and from a customer's earliest
rows in each activity, the earliest instant at which that part may change.

:func:`next_change` walks one customer's snapshot; planning a new time-dependent segment that way loads and walks
every customer (54-247 s a segment at 1,000,000 customers). Here the rule is split into its time-dependent leaves:

* an **activity** leaf's counted rows change only when a row arrives (its time passes ``as_of``), leaves a
  ``last_days`` window (its time plus the window), or when a calendar window moves to the next period; so a few
  minima per customer over the activity's rows (read set-based by the store, ``where`` conditions ignored: more rows
  only make the instant earlier) give an instant no later than the leaf's first change. Whether the leaf is true now
  (read set-based too) tells whether leaving rows can flip it at all (a false "viewed at least 3 times" stays false as
  rows leave) and whether a calendar period's end changes it;
* a **field** leaf (relative dates, anniversaries) is walked per customer over a snapshot holding that field only.

The rule's answer can only change when one of its leaves does, so the minimum over the leaves is a safe wake-up
(possibly early: at that instant the customer is re-evaluated and planned exactly by :func:`next_change`). A leaf is
bounded only for the customers whose groups can follow it (its :data:`Gate` s: the members of an ``and`` or ``or``
above it that never move with the clock, which decide the group for good when false, resp. true). Leaves this
module cannot bound (``days_ago`` windows, ``where`` conditions that move with the clock, windows empty now) make
:func:`time_leaves` return None and the caller walks every customer as before.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .activity_index import RowSpec
from .model import (
    RELATIVE_OPERATORS,
    Activity,
    And,
    BetweenDates,
    CalendarWindow,
    Condition,
    DaysAgo,
    LastDays,
    NodeType,
    Not,
    Or,
    Rule,
)
from .next_change import ONE_MICROSECOND, TRANSITION_HORIZON, NextChangeCache, _between_end, _Walker, next_change
from .plan import BActivity, BAnd, BField, BNot, BOr, Bound, bind
from .predicate import CustomerSnapshot, activity_spec, value_getter
from .requirements import RowEffect, count_effect
from .timeutil import REENTRY_MARGIN, Context, calendar_period

#: (a part of the rule that never changes with the clock, the value it must have): the leaf can change the rule's
#: answer only for customers where every gate holds. An ``and`` with a member false for good is false for good, an
#: ``or`` with a member true for good is true for good, whatever its other members do.
Gate = tuple[NodeType, bool]


@dataclass(frozen=True)
class FieldLeaf:
    """A relative-date or anniversary condition: walked per customer (:func:`next_change` of the leaf alone)."""

    node: Condition
    bound: BField
    gates: tuple[Gate, ...] = ()

    def planner(self, ctx: Context) -> Callable[[CustomerSnapshot], dt.datetime | None]:
        """Snapshot -> the leaf's next change (aware UTC) or None. The leaf reads one value, so the instant is
        worked out once per distinct value: birthdays and sign-up days repeat across a million customers."""
        get, cache = value_getter(self.bound), NextChangeCache()
        known: dict[Any, dt.datetime | None] = {}

        def plan(snapshot: CustomerSnapshot) -> dt.datetime | None:
            value = get(snapshot)
            try:
                return known[value]
            except KeyError:
                found = known[value] = next_change(self.node, snapshot, ctx, cache)
                return found
            except TypeError:  # pragma: no cover - relative operators read dates and instants, never lists
                return next_change(self.node, snapshot, ctx, cache)

        return plan


@dataclass(frozen=True)
class ActivityLeaf:
    """An activity whose counted rows move with the clock. The store reads, per customer with a row of this activity
    (and event) at or after ``since`` and before ``until``: the earliest row time (``first``), the earliest at or
    after ``lo`` (``first_inside``: rows that can leave the window) and the earliest at or after ``arrives``
    (``first_arriving``: rows after ``as_of``, counted once the clock passes them). All instants are naive UTC."""

    node: Activity
    bound: BActivity
    since: dt.datetime | None
    until: dt.datetime | None
    lo: dt.datetime | None
    arrives: dt.datetime
    #: last_days: the first instant the window start stops moving with the clock (None: no jump within reach)
    jump: dt.datetime | None
    #: calendar windows: the start of the next period, where the window moves
    period_end: dt.datetime | None
    #: what one more counted row does to the bound activity (count >= n only raises it)
    effect: RowEffect
    gates: tuple[Gate, ...] = ()

    @property
    def reads_truth(self) -> bool:
        """Whether :meth:`candidate` needs to know if the leaf is true now (and, for calendar windows, at the next
        period start and over no rows)."""
        return isinstance(self.node.window, CalendarWindow) or (
            isinstance(self.node.window, LastDays) and self.effect is not RowEffect.ANY
        )

    def next_period_node(self) -> Activity | None:
        """For ``last_*`` calendar windows: the leaf as it reads at the next period start, where last period becomes
        the current one (``this_*`` now)."""
        w = self.node.window
        if isinstance(w, CalendarWindow) and w.calendar.startswith("last_"):
            return self.node.model_copy(update={"window": CalendarWindow(calendar="this_" + w.calendar[5:])})
        return None

    def candidate(
        self,
        now: dt.datetime,
        first: dt.datetime,
        first_inside: dt.datetime | None,
        first_arriving: dt.datetime | None,
        *,
        true_now: bool = False,
        true_next_period: bool = False,
        true_empty: bool = False,
    ) -> dt.datetime | None:
        """The earliest instant this leaf may change for a customer with rows at or after ``since`` (naive UTC), or
        None. ``true_*``: the leaf's (the node's) value now, at the next period start (calendar windows) and over no
        rows."""
        found = first_arriving  # a row after as_of arrives at its own time
        w = self.node.window
        if isinstance(w, LastDays):
            assert self.lo is not None
            can_leave = self.effect is RowEffect.ANY or (self.effect is RowEffect.RAISES) == true_now
            # Where the zone's offset changes the start jumps: rows leave at once (which matters only where leaving
            # can flip the leaf) or rows just below it re-enter (only customers with such rows).
            if self.jump is not None and (can_leave or first < self.lo):
                found = _min(found, self.jump)
            if can_leave and first_inside is not None:
                # the start moves with the clock: the earliest row leaves once it is passed (the walk caps its
                # search at the horizon, where it is planned again)
                found = _min(found, now + (first_inside - self.lo), now + TRANSITION_HORIZON)
        elif isinstance(w, CalendarWindow):
            assert self.period_end is not None
            # At the next period start the window reads what the leaf reads then (the current period, or no rows);
            # one period later, no rows at all (rows arriving meanwhile are candidates of their own).
            if w.calendar.startswith("this_"):
                changes = true_now != true_empty
            else:
                changes = true_now != true_next_period or true_next_period != true_empty
            if changes:
                found = _min(found, self.period_end)
        return found


def time_leaves(rule: Rule | NodeType, ctx: Context) -> list[FieldLeaf | ActivityLeaf] | None:
    """The rule's leaves that move with the clock, or None when one of them has no set-based bound."""
    root = rule.root if isinstance(rule, Rule) else rule
    found: list[FieldLeaf | ActivityLeaf] = []
    walker = _Walker(CustomerSnapshot(customer_id=0, profile={}), ctx, NextChangeCache())
    return found if _collect(root, bind(root, ctx), ctx, walker, found) else None


def _collect(m: NodeType, b: Bound, ctx: Context, walker: _Walker, out: list[FieldLeaf | ActivityLeaf]) -> bool:
    """Mirrors :meth:`_Walker.visit`: a node whose bound form is not what it reads is a constant there."""
    if (type(m) is And or type(m) is Or) and (type(b) is BAnd or type(b) is BOr):
        items = m.and_ if isinstance(m, And) else m.or_
        moving: list[FieldLeaf | ActivityLeaf] = []
        gates: list[Gate] = []
        for c, cb in zip(items, b.items, strict=True):
            found: list[FieldLeaf | ActivityLeaf] = []
            if not _collect(c, cb, ctx, walker, found):
                return False
            if found:
                moving += found
            else:  # never changes with the clock: the others matter only while it does not decide the group
                gates.append((c, type(m) is And))
        out += [replace(leaf, gates=(*gates, *leaf.gates)) for leaf in moving] if gates else moving
        return True
    if type(m) is Not and type(b) is BNot:
        return _collect(m.not_, b.item, ctx, walker, out)
    if type(m) is Condition:
        if type(b) is BField and m.op in RELATIVE_OPERATORS:
            out.append(FieldLeaf(m, b))
        return True
    if type(m) is Activity:
        inner = b.item if type(b) is BNot else b
        if type(inner) is BActivity:
            leaf = _activity_leaf(m, inner, ctx, walker, negated=inner is not b)
            if leaf is None:
                return False
            out.append(leaf)
    return True


def _activity_leaf(m: Activity, b: BActivity, ctx: Context, walker: _Walker, negated: bool) -> ActivityLeaf | None:
    if b.empty or any(w.op in RELATIVE_OPERATORS for w in m.where):
        return None
    w, now = m.window, ctx.as_of_utc
    effect = count_effect(b)
    if negated and effect is not RowEffect.ANY:
        # the node's truth would be the opposite of the counted activity's; only ``is_not`` and ``not_in`` bind
        # negated, and their effect is ANY, so this never happens today: walk rather than plan on a flipped truth
        return None
    if w is None:
        return ActivityLeaf(m, b, b.hi, None, None, b.hi, None, None, effect)
    if isinstance(w, BetweenDates):
        start = b.hi if b.lo is None else max(b.lo, b.hi)
        return ActivityLeaf(m, b, start, _between_end(ctx, w), None, b.hi, None, None, effect)
    if isinstance(w, LastDays):
        assert b.lo is not None
        return ActivityLeaf(m, b, b.lo - REENTRY_MARGIN, None, b.lo, b.hi, walker.last_days_jump(w.last_days), None,
                            effect)  # fmt: skip
    if isinstance(w, CalendarWindow) and b.lo is not None:
        today = walker.local_day(now)
        if today is None:
            return None
        _, last = calendar_period("this_" + w.calendar.split("_", 1)[1], today)
        period_end = walker.day_start(last + dt.timedelta(days=1))
        if period_end is None:
            return None
        # rows after as_of arrive once the clock passes them (for last_* windows later: early is safe)
        return ActivityLeaf(m, b, b.lo, None, b.lo, now + ONE_MICROSECOND, None, period_end, effect)
    return None  # days_ago: rows enter and leave by local days (walked per customer)


def _min(*values: dt.datetime | None) -> dt.datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


# -- answers the clock cannot change -----------------------------------------------------------------------------

#: An activity whose counted rows move with the clock: its rows, the instant from which a row arrives (counted once
#: the clock passes it), and for a ``last_days`` window whose start jumps within reach, that start (rows just below
#: it re-enter when the zone's clocks fall back).
Watch = tuple[RowSpec, dt.datetime, dt.datetime | None]


@dataclass(frozen=True)
class KeptAnswer:
    """What the clock alone cannot change in a rule's answer without one of the customer's rows arriving or
    re-entering a window (see :func:`kept_answer`): a customer holding such an answer has no wake-up to plan."""

    #: answers kept by the whole rule as long as no row of ``watches`` arrives or re-enters
    answers: frozenset[bool]
    watches: tuple[Watch, ...]
    #: the answer an ``and`` (False) or ``or`` (True) gets from one member holding it, and those members that can
    #: keep it: (the member's predicate, what it keeps, that value). "Loyalty member and no order in 60 days and
    #: (opened 2 newsletters in 30 days or VIP)" moves both ways, but a customer with too few opens stays out.
    deciding: bool | None = None
    deciders: tuple[Decider, ...] = ()

    def can_keep(self, answer: bool) -> bool:
        return answer in self.answers or (answer is self.deciding and bool(self.deciders))

    def keeps(self, snapshot: CustomerSnapshot, answer: bool) -> bool:
        """Whether ``answer`` (the rule's answer for ``snapshot`` now) stays until the customer's data changes. Reads
        the row indexes the predicate built (two binary searches per activity)."""
        if answer in self.answers and self._quiet(snapshot):
            return True
        if answer is self.deciding:
            return any(test(snapshot) is value and kept.keeps(snapshot, value) for test, kept, value in self.deciders)
        return False

    def _quiet(self, snapshot: CustomerSnapshot) -> bool:
        for spec, arrives, start in self.watches:
            times = spec.fetch(snapshot).times
            if times and times[-1] >= arrives:
                return False
            if start is not None and bisect_left(times, start - REENTRY_MARGIN) != bisect_left(times, start):
                return False
        return True


#: A member of an ``and``/``or``: its predicate, what it keeps, and the value by which it decides the group.
Decider = tuple[Callable[[CustomerSnapshot], bool], KeptAnswer, bool]

#: How the clock alone moves a part of a rule, given no row arrives or re-enters a window: not at all, only from
#: true to false, only from false to true (None: either way, or this module cannot tell).
_STILL, _FALLS, _RISES = "still", "falls", "rises"
_OPPOSITE_DIRECTION = {_STILL: _STILL, _FALLS: _RISES, _RISES: _FALLS}
_KEPT_BY_DIRECTION = {_STILL: frozenset((False, True)), _FALLS: frozenset((False,)), _RISES: frozenset((True,))}


def kept_answer(rule: Rule | NodeType, ctx: Context, cache: NextChangeCache | None = None) -> KeptAnswer | None:
    """What the clock alone cannot change without a row arriving, or None when it may move every answer.

    A count compared with ``gte`` over a ``last_days`` or ``this_*`` window only loses rows as the clock moves, so
    it can only turn false: a customer it is false for stays out until a row arrives ("viewed at least 3 times in
    30 days", the bulk of the pairs a bulk events write decides). ``lt``/``lte`` counts are the mirror image; counts
    over all time or between two dates change only with arrivals; ``and``/``or`` keep their members' direction and
    ``not`` reverses it; an ``and`` stays false while a member stays false (an ``or`` true while one stays true).
    A ``days_ago`` window moves either way, but only over rows from its start on: a customer with none keeps either
    answer. Relative dates, ``last_*`` windows (rows enter them), other measures and ``where`` conditions that move
    with the clock may go either way. Mirrors :meth:`_Walker.visit`."""
    root = rule.root if isinstance(rule, Rule) else rule
    cache = cache or NextChangeCache()
    # the bound tree and compiled members are the walk's own (next_change binds at as_of into the same cache)
    bound = cache.bound.get(ctx.as_of)
    if bound is None:
        bound = cache.bound[ctx.as_of] = bind(root, ctx)
    return _kept(root, bound, _Walker(CustomerSnapshot(customer_id=0, profile={}), ctx, cache))[1]


def _kept(m: NodeType, b: Bound, walker: _Walker) -> tuple[str | None, KeptAnswer | None]:
    """The node's direction, and what it keeps (None: nothing)."""
    if (type(m) is And or type(m) is Or) and (type(b) is BAnd or type(b) is BOr):
        items = m.and_ if isinstance(m, And) else m.or_
        found = [_kept(c, cb, walker) for c, cb in zip(items, b.items, strict=True)]
        moving = {d for d, _ in found if d != _STILL}
        direction = None if None in moving else _STILL if not moving else moving.pop() if len(moving) == 1 else None
        deciding = type(m) is Or  # an or is decided by a true member, an and by a false one
        deciders = tuple((walker.compiled(cb), kept, deciding) for (_, kept), cb in zip(found, b.items, strict=True)
                         if kept is not None and kept.can_keep(deciding))  # fmt: skip
        watches = tuple(w for _, kept in found if kept is not None for w in kept.watches) if direction else ()
        return direction, _answer(direction, watches, deciding, deciders)
    if type(m) is Not and type(b) is BNot:
        direction, inner = _kept(m.not_, b.item, walker)
        if inner is None:
            return direction, None
        flipped = None if inner.deciding is None else not inner.deciding
        return (None if direction is None else _OPPOSITE_DIRECTION[direction],
                KeptAnswer(frozenset(not a for a in inner.answers), inner.watches, flipped, inner.deciders))
    if type(m) is Condition:
        if type(b) is BField and m.op in RELATIVE_OPERATORS:
            return None, None
    elif type(m) is Activity:
        if type(b) is BNot and type(b.item) is BActivity:
            return None, None  # is_not / not_in over a measure: either way
        if type(b) is BActivity:
            direction, watch = _activity_direction(m, b, walker)
            return direction, _answer(direction, () if watch is None else (watch,), None, ())
    return _STILL, _answer(_STILL, (), None, ())  # in_segment and sample (they change elsewhere); constant parts


def _answer(direction: str | None, watches: tuple[Watch, ...], deciding: bool | None,
            deciders: tuple[Decider, ...]) -> KeptAnswer | None:  # fmt: skip
    answers = frozenset() if direction is None else _KEPT_BY_DIRECTION[direction]
    if not answers and not deciders:
        return None
    return KeptAnswer(answers, watches, deciding if deciders else None, deciders)


def _activity_direction(m: Activity, b: BActivity, walker: _Walker) -> tuple[str | None, Watch | None]:
    """From the activity's leaf (:func:`_activity_leaf`: None for empty windows, moving ``where`` conditions and
    ``days_ago`` windows): rows arrive in every window, leave ``last_days`` and ``this_*`` ones, and enter
    ``last_*`` ones at the period's end (either way). A ``days_ago`` window takes rows in and lets them out as local
    days pass, but only rows from its start on (which only moves forward): a customer with none stays as they are."""
    w = m.window
    if isinstance(w, DaysAgo):
        if b.empty or b.lo is None or any(c.op in RELATIVE_OPERATORS for c in m.where):
            return None, None
        return _STILL, (activity_spec(b), b.lo - REENTRY_MARGIN, None)
    leaf = _activity_leaf(m, b, walker.ctx, walker, negated=False)
    if leaf is None or (isinstance(w, CalendarWindow) and not w.calendar.startswith("this_")):
        return None, None
    if w is None or isinstance(w, BetweenDates):
        return _STILL, (activity_spec(b), b.hi, None)
    if leaf.effect is RowEffect.ANY:
        return None, None
    start = leaf.lo if leaf.jump is not None else None  # rows just below it re-enter at a jump (last_days)
    return (_FALLS if leaf.effect is RowEffect.RAISES else _RISES), (activity_spec(b), b.hi, start)
