"""When may a rule's answer for one customer next change by the passage of time alone?

:func:`next_change` returns the earliest instant after ``ctx.as_of`` at which the predicate compiled for that later
instant *may* give another answer for the same snapshot (no new data). Live membership stores it as a wake-up.

Guarantee (safety): the answer is the same at every instant of ``[as_of, T)``. An instant earlier than the true
change is allowed (one extra evaluation); a later one is a bug. ``None``: time alone never changes the answer.

How it is computed
------------------
The rule is walked together with its bound form (:func:`cohorta.rules.plan.bind`); each node yields its current
value and the next instant it may change:

* relative dates (``exactly_days_ago``, ``less_than_days_ago``, ``more_than_days_ago``, ``in_next_days``,
  ``in_calendar``) are true exactly while the local day of ``as_of`` lies in an interval of days derived from the
  value's local day, so the change is the local midnight starting or ending that interval (exact);
* anniversaries (date values) are true on a union of day intervals around each yearly occurrence of the month and
  day (Feb 29 occurs on Feb 28 in other years), again exact;
* an activity's counted rows change when a row arrives (activity after ``as_of`` is ignored until then), enters or
  leaves its window, or when a time-dependent ``where`` condition on the row changes. For windows that slide by plain
  arithmetic (``last_days``, all time, ``between`` two dates) without time-dependent ``where`` conditions, the rows'
  arrival and leaving instants are walked in order over the sorted row index and the measure tested at each, so the
  result is the exact instant the condition flips (a count dropping from 5 to 4 under ``count >= 3`` is skipped;
  a count that leaving rows can only push further from its threshold, ``count >= N`` false or ``count < N`` true,
  stops the walk once no row is left to arrive).
  Otherwise the earliest row change is a candidate. For ``last_days`` (wall-clock arithmetic in the zone) the window
  start moves in step with the clock except at DST-related jumps, which are returned as candidates (safe, early);
* ``and``/``or``/``not`` take the minimum over their children, except that a child that can never change and
  already decides the group (a constant false in an ``and``, a constant true in an ``or``) makes the group constant;
* plain comparisons, ``in_segment`` and ``sample`` never change with time.

Each node also says whether its instant is *exact* (its value does change there): relative dates, anniversaries,
sliding windows and constants are; a group is exact when the first child to change does so exactly and decides
the group (an ``and`` that is true flips at its first child's flip; an ``and`` that is false because of a
single child flips when that child does, if every other child keeps its value until then). An exact root is the
answer. Otherwise the instant is a candidate where some part of the rule *may* change (a count going from 3 to 2 may
not flip ``count >= 1`` under a calendar window), so :func:`next_change` re-evaluates the whole rule there and, if
the answer is unchanged, continues from there (at most :data:`MAX_REFINE_STEPS` times): the result stays safe and is
usually the exact instant of change. Refining binds and compiles the rule at each candidate, which cost most of wake-up
planning before exact instants made it rare (about 1 walk in 200 in the live benchmark's bulk events).
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

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
from .plan import BActivity, BAnd, BField, BNot, BOr, Bound, bind
from .predicate import ACTIVITY_ROWS, CustomerSnapshot, activity_spec, activity_test_at, compile_bound, value_getter
from .requirements import RowEffect, count_effect
from .semantics import Present, coerce_value
from .timeutil import REENTRY_MARGIN, UTC, Context, calendar_period, to_utc_naive

#: How many times :func:`next_change` re-evaluates the rule at a candidate where nothing changed before giving up
#: and returning that (safe, early) candidate.
MAX_REFINE_STEPS = 32
#: How many instants where a sliding window's rows change are tested before a candidate is returned for refinement.
MAX_SLIDING_STEPS = 256
#: How far ahead time-zone transitions are searched for ``last_days`` windows; later candidates are capped here.
TRANSITION_HORIZON = dt.timedelta(days=400)

ONE_DAY = dt.timedelta(days=1)
ONE_MICROSECOND = dt.timedelta(microseconds=1)
_OPPOSITE = {"this": "this", "last": "next", "next": "last"}

Instant = dt.datetime  # naive UTC inside this module


@dataclass
class NextChangeCache:
    """What :func:`next_change` can reuse across customers for one rule and one context (binding and compiling do
    not depend on the customer, and cost more than the walk: 40% of re-evaluating 2,000 customers against 200
    segments). A caller keeps one per rule and context; it grows with the distinct instants looked at."""

    bound: dict[dt.datetime, Bound] = field(default_factory=dict)
    # by id of a kept bound node (the bound trees above keep them alive, so ids are not reused)
    compiled: dict[int, Callable[[CustomerSnapshot], bool]] = field(default_factory=dict)
    getters: dict[int, Callable[[Any], Any]] = field(default_factory=dict)
    # by id of a kept bound activity: its test at a window, its row index spec, what one more counted row does
    activities: dict[int, tuple[Callable[[CustomerSnapshot, Any, Any], bool], RowSpec, RowEffect]] = field(
        default_factory=dict
    )
    # (instant, n days) -> the next jump of a ``last_days n`` window's start (see _Walker.last_days_jump)
    jumps: dict[tuple[Instant, int], Instant | None] = field(default_factory=dict)


def next_change(
    rule: Rule | NodeType, snapshot: CustomerSnapshot, ctx: Context, cache: NextChangeCache | None = None
) -> dt.datetime | None:
    """The earliest instant (aware, UTC) after ``ctx.as_of`` at which the rule's answer for ``snapshot`` may differ
    from its answer at ``ctx.as_of`` when no data changes; None when the clock alone can never change it.

    The answer is guaranteed not to change anywhere in ``[ctx.as_of, T)``. Raises :class:`RuleError` like
    :func:`compile_predicate` when the rule does not fit the catalog.
    """
    root = rule.root if isinstance(rule, Rule) else rule
    cache = cache or NextChangeCache()  # one call alone still reuses within its refinement steps

    def bound_at(at: Context) -> Bound:
        found = cache.bound.get(at.as_of)
        if found is None:
            found = cache.bound[at.as_of] = bind(root, at)
        return found

    value, when, exact = _Walker(snapshot, ctx, cache).visit(root, bound_at(ctx))
    if exact:  # the walk proved the answer flips at ``when``: nothing to refine
        return None if when is None else when.replace(tzinfo=UTC)
    for _ in range(MAX_REFINE_STEPS):
        if when is None:
            return None
        later = ctx.at(when.replace(tzinfo=UTC))
        value_then, after, exact = _Walker(snapshot, later, cache).visit(root, bound_at(later))
        if value_then != value:
            break
        if after is not None and after <= when:  # pragma: no cover - defensive: candidates always move forward
            break
        when = after
        if exact:
            break
    return None if when is None else when.replace(tzinfo=UTC)


# -- small helpers -------------------------------------------------------------------------------------------------


def _min(values: Iterable[Instant | None]) -> Instant | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _add_days(day: dt.date, n: int) -> dt.date | None:
    try:
        return day + dt.timedelta(days=n)
    except OverflowError:
        return None


def _interval_next(now: Instant, enter: Instant | None, leave: Instant | None) -> Instant | None:
    """Next change after ``now`` of "``enter <= t < leave``" (``enter`` None: -inf, ``leave`` None: +inf)."""
    if enter is not None and leave is not None and enter >= leave:
        return None
    if enter is not None and now < enter:
        return enter
    if leave is not None and now < leave:
        return leave
    return None


@lru_cache(maxsize=512)
def _year_transitions(tz: ZoneInfo, year: int) -> tuple[tuple[Instant, dt.timedelta, dt.timedelta], ...]:
    """UTC-offset changes of ``tz`` during the UTC year ``year``: (instant, offset before, offset after)."""
    if not 1 < year < 9999:
        return ()

    def offset(t: Instant) -> dt.timedelta:
        off = t.replace(tzinfo=UTC).astimezone(tz).utcoffset()
        return off if off is not None else dt.timedelta(0)

    out = []
    step = dt.timedelta(hours=6)
    t = dt.datetime(year, 1, 1, tzinfo=UTC).replace(tzinfo=None)
    end = dt.datetime(year + 1, 1, 1, tzinfo=UTC).replace(tzinfo=None)
    prev = offset(t)
    while t < end:
        nxt = t + step
        cur = offset(nxt)
        if cur != prev:
            lo, hi = 0, int(step.total_seconds())  # offset(t + lo) == prev, offset(t + hi) == cur
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset(t + dt.timedelta(seconds=mid)) == prev:
                    lo = mid
                else:
                    hi = mid
            out.append((t + dt.timedelta(seconds=hi), prev, cur))
        t, prev = nxt, cur
    return tuple(out)


def _transitions(tz: ZoneInfo, start: Instant, end: Instant) -> list[tuple[Instant, dt.timedelta, dt.timedelta]]:
    out: list[tuple[Instant, dt.timedelta, dt.timedelta]] = []
    for year in range(start.year, end.year + 1):
        out.extend(x for x in _year_transitions(tz, year) if start <= x[0] <= end)
    return out


def _localize(wall: dt.datetime, tz: ZoneInfo, fold: int) -> Instant | None:
    """A naive local wall time (with ``fold``) as naive UTC; None when out of range."""
    try:
        return wall.replace(tzinfo=tz, fold=fold).astimezone(UTC).replace(tzinfo=None)
    except (OverflowError, ValueError):
        return None


def _safe_instant(f: Callable[[], Instant]) -> Instant | None:
    try:
        return f()
    except (OverflowError, ValueError):
        return None


def _between_end(ctx: Context, w: BetweenDates) -> Instant:
    """The exclusive end of a ``between`` window (as :func:`cohorta.rules.plan.bind` computes it)."""
    last = w.between[1]
    return ctx.instant(last) + ONE_MICROSECOND if isinstance(last, dt.datetime) else ctx.day_start(last + ONE_DAY)


# -- the walk ------------------------------------------------------------------------------------------------------


class _Walker:
    """One walk of a rule at one instant. :meth:`visit` gives each node's value, the next instant it may change and
    whether that instant is *exact* (the node's value does change there); exact answers at the root spare
    :func:`next_change` its refinement steps, which bind and compile the rule again at each candidate."""

    def __init__(self, snapshot: CustomerSnapshot, ctx: Context, cache: NextChangeCache) -> None:
        self.snapshot = snapshot
        self.ctx = ctx
        self.now: Instant = ctx.as_of_utc
        self._cache = cache

    def compiled(self, b: Bound) -> Callable[[CustomerSnapshot], bool]:
        """The node's predicate, compiled once per kept node (ids are stable: the cache holds the bound trees)."""
        found = self._cache.compiled.get(id(b))
        if found is None:
            found = self._cache.compiled[id(b)] = compile_bound(b)
        return found

    def getter(self, b: BField) -> Callable[[Any], Any]:
        found = self._cache.getters.get(id(b))
        if found is None:
            found = self._cache.getters[id(b)] = value_getter(b)
        return found

    # instants of local days ---------------------------------------------------------------------------------------
    def day_start(self, day: dt.date | None) -> Instant | None:
        """First instant of a local day; None when out of range (treated as never)."""
        if day is None:
            return None
        return _safe_instant(lambda: self.ctx.day_start(day))

    def local_day(self, t: Instant) -> dt.date | None:
        """The local day ``d`` with ``day_start(d) <= t < day_start(d + 1)`` (as the bound ranges see it)."""
        try:
            d = t.replace(tzinfo=UTC).astimezone(self.ctx.tz).date()
            for _ in range(3):
                start = self.ctx.day_start(d)
                if start > t:
                    d -= ONE_DAY
                elif self.ctx.day_start(d + ONE_DAY) <= t:
                    d += ONE_DAY
                else:
                    return d
        except (OverflowError, ValueError):
            return None
        return d

    def days_next(self, first: dt.date | None, last: dt.date | None, arrival: Instant | None = None,
                  unbounded_first: bool = False, unbounded_last: bool = False) -> Instant | None:
        """Next change of "today is in [first, last] (and the clock has reached ``arrival``)"."""
        if (first is None and not unbounded_first) or (last is None and not unbounded_last):
            return None  # a bound beyond the calendar: never within reach
        enter = None if first is None else self.day_start(first)
        if first is not None and enter is None:
            return None
        leave = None
        if last is not None:
            after = _add_days(last, 1)
            leave = self.day_start(after) if after is not None else None
        if arrival is not None and arrival > self.now:
            enter = arrival if enter is None else max(enter, arrival)
        return _interval_next(self.now, enter, leave)

    # nodes ------------------------------------------------------------------------------------------------------
    def visit(self, m: NodeType, b: Bound) -> tuple[bool, Instant | None, bool]:
        """(value now, next instant it may change or None, whether it does change then)."""
        # Dispatch on exact types (no subclasses exist): this runs for every node of every (segment, customer) pair
        # a write decides, and chains of isinstance were a fifth of wake-up planning.
        if (type(m) is And or type(m) is Or) and (type(b) is BAnd or type(b) is BOr):
            return self.group(m, b)
        if type(m) is Not and type(b) is BNot:
            v, w, e = self.visit(m.not_, b.item)
            return not v, w, e
        value = self.compiled(b)(self.snapshot)
        if type(m) is Condition:
            if type(b) is BField and m.op in RELATIVE_OPERATORS:
                return value, self.relative(m, b.typ, self.getter(b)(self.snapshot)), True
            return value, None, True
        if type(m) is Activity:
            inner = b.item if type(b) is BNot else b
            if type(inner) is BActivity:  # an empty window may fill as the clock moves: never skipped
                return (value, *self.activity(m, inner, value if inner is b else not value))
        return value, None, True  # in_segment, sample

    def group(self, m: And | Or, b: BAnd | BOr) -> tuple[bool, Instant | None, bool]:
        items = m.and_ if isinstance(m, And) else m.or_
        results = [self.visit(c, cb) for c, cb in zip(items, b.items, strict=True)]
        deciding = type(m) is Or  # the child value that decides the group
        holders = 0  # children holding the deciding value
        when: Instant | None = None
        for v, w, _ in results:
            if v is deciding:
                if w is None:  # it never changes and decides the group: constant
                    return deciding, None, True
                holders += 1
            if w is not None and (when is None or w < when):
                when = w
        value = deciding if holders else not deciding
        if when is None:
            return value, None, True
        if not holders:
            # every child agrees with the group: the first child to flip (if that is exact) flips the group
            return value, when, any(e and w == when for _, w, e in results)
        # decided by the children holding the deciding value: exact only for a single holder that flips (exactly)
        # while every other child keeps its value
        if holders != 1:
            return value, when, False
        held_until, exact = next((w, e) for v, w, e in results if v is deciding)
        others = [w for v, w, _ in results if v is not deciding and w is not None]
        return value, when, exact and held_until is not None and all(o > held_until for o in others)

    # relative date conditions ----------------------------------------------------------------------------------
    def relative(self, m: Condition, typ: str, raw: Any) -> Instant | None:
        """Next change of a relative-date condition on a present value ``raw`` (date or naive UTC datetime)."""
        if raw is None:
            return None  # a missing value stays missing: the condition stays false
        if isinstance(raw, dt.datetime):
            day = self.local_day(to_utc_naive(raw))
        elif isinstance(raw, dt.date):
            day = raw
        else:  # pragma: no cover - not a temporal value
            return None
        if day is None:
            return None
        op = m.op
        value = coerce_value(typ, op, m.value, self.ctx.currency_exponent)
        if op == "in_calendar":
            which, unit = value.split("_", 1)
            first, last = calendar_period(f"{_OPPOSITE[which]}_{unit}", day)
            return self.days_next(first, last)
        if op == "anniversary_this_month":
            return self.anniversary_month(day)
        if op == "anniversary_within_days":
            return self.anniversary_within(day, value)
        n = int(value)
        if op == "exactly_days_ago":  # day == today - n
            return self.days_next(_add_days(day, n), _add_days(day, n))
        if op == "less_than_days_ago":  # today - n < day <= today
            return self.days_next(day, _add_days(day, n - 1))
        if op == "more_than_days_ago":  # day < today - n
            return self.days_next(_add_days(day, n + 1), None, unbounded_last=True)
        if op == "in_next_days":  # today <= day <= today + n
            return self.days_next(_add_days(day, -n), day)
        raise AssertionError(op)  # pragma: no cover

    def anniversary_month(self, day: dt.date) -> Instant | None:
        today = self.ctx.today
        month = day.month
        try:
            if today.month == month:
                start = dt.date(today.year + (month == 12), month % 12 + 1, 1)
            else:
                start = dt.date(today.year + (month < today.month), month, 1)
        except ValueError:
            return None
        return self.day_start(start)

    def anniversary_within(self, day: dt.date, n: int) -> Instant | None:
        """True while some occurrence of the value's month-day lies in [today, today + n]: a union of day intervals
        [occurrence - n, occurrence]; consecutive occurrences are at most 366 days apart."""
        if n >= 365:
            return None  # every month-day is always within reach
        today = self.ctx.today
        occurrences: list[dt.date] = []
        for year in range(today.year - 1, today.year + 4):
            if not 1 <= year <= 9999:
                continue
            leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
            if day.month == 2 and day.day == 29:
                occurrences.append(dt.date(year, 2, 29 if leap else 28))
            else:
                occurrences.append(dt.date(year, day.month, day.day))
        span = dt.timedelta(days=n)
        for i, occ in enumerate(occurrences):
            if occ < today:
                continue
            if occ - span > today:  # false now; becomes true when today reaches occ - n
                return self.day_start(occ - span)
            end = occ  # true now: find the end of the run of overlapping intervals
            for nxt in occurrences[i + 1:]:
                if nxt - span > end + ONE_DAY:
                    break
                end = nxt
            else:
                return None  # pragma: no cover - beyond the years looked at (cannot happen for n < 365)
            return self.day_start(end + ONE_DAY)
        return None  # pragma: no cover - the years looked at always contain a later occurrence

    # activities -------------------------------------------------------------------------------------------------
    def activity(self, m: Activity, b: BActivity, value: bool) -> tuple[Instant | None, bool]:
        """Next change of an activity condition whose value now is ``value``, and whether it is exact."""
        row_relative = self.row_relative(m)
        if not row_relative and not b.empty and (m.window is None or isinstance(m.window, LastDays | BetweenDates)):
            return self.sliding(m, b, value)
        rows = getattr(self.snapshot, ACTIVITY_ROWS[b.activity])
        filters = [self.compiled(f) for f in b.filters]
        member = self.membership(m, b)
        best: Instant | None = None
        for r in rows:
            if b.event is not None and r.get("name") != b.event:
                continue
            t = r.get(b.time_column)
            if t is None:
                continue
            t = to_utc_naive(t)
            filter_change = _min(get(r) for get in row_relative)
            # a row failing its filter stays out at least until the filter changes
            cand = _min((member(t), filter_change)) if all(f(r) for f in filters) else filter_change
            if cand is not None and (best is None or cand < best):
                best = cand
        if best is not None and isinstance(m.window, LastDays):
            best = min(best, self.now + TRANSITION_HORIZON)  # time-zone jumps were only searched this far
        return best, False

    def sliding(self, m: Activity, b: BActivity, value: bool) -> tuple[Instant | None, bool]:
        """Exact next change of an activity whose window moves with the clock by plain arithmetic: ``last_days``
        (until its next time-zone jump), all time, or between two dates (whose end caps the moving "now" edge).

        While the clock advances by ``d``, the window is ``[lo + d, hi + d)`` (``lo`` fixed unless ``last_days``;
        ``hi`` capped by a ``between`` end). Its rows change only where ``hi + d`` passes a later row (it arrives) or
        ``lo + d`` passes a row (it leaves); between those instants the measure is constant. The rows are the
        counted ones, sorted (the index the predicate uses), so the instants come in order from two sorted lists and
        the measure is tested at each until it flips.
        """
        found = self._cache.activities.get(id(b))
        if found is None:
            found = self._cache.activities[id(b)] = (activity_test_at(b), activity_spec(b), count_effect(b))
        test_at, spec, one_more_row = found
        snapshot, now, lo0, hi0, w = self.snapshot, self.now, b.lo, b.hi, m.window
        times = spec.fetch(snapshot).times
        moving_lo = isinstance(w, LastDays)
        cap = _between_end(self.ctx, w) if isinstance(w, BetweenDates) else None
        # arrivals: rows in [hi0, cap); leaves (last_days): rows from lo0 on
        a, a_end = bisect_left(times, hi0), len(times) if cap is None else bisect_left(times, cap)
        if moving_lo:
            assert isinstance(w, LastDays) and lo0 is not None
            l_, l_end = bisect_left(times, lo0), len(times)
            # the start moves with the clock only until the zone's next jump (rows just below it could re-enter)
            jump = self.last_days_jump(w.last_days) if times and times[-1] >= lo0 - REENTRY_MARGIN else None
            limit: Instant | None = _min((jump, now + TRANSITION_HORIZON))
        else:
            l_ = l_end = 0
            jump = limit = None
        # Rows only leaving cannot flip a count that one more row could only raise while it is false (or only lower
        # while it is true): no walk over the leaving rows once no row is left to arrive.
        leaving_keeps = one_more_row is (RowEffect.LOWERS if value else RowEffect.RAISES)
        for _ in range(MAX_SLIDING_STEPS):
            if a < a_end:
                d = times[a] - hi0
                if l_ < l_end:
                    d = min(d, times[l_] - lo0)
            elif l_ < l_end and not leaving_keeps:
                d = times[l_] - lo0
            else:  # no row will ever enter or leave, or none that could flip it (until a jump, where rows just below
                # the start may re-enter)
                return (jump, False) if jump is not None else (None, True)
            while a < a_end and times[a] - hi0 == d:
                a += 1
            while l_ < l_end and times[l_] - lo0 == d:
                l_ += 1
            d += ONE_MICROSECOND  # the first instant the edge has passed the row
            at = now + d
            if limit is not None and at >= limit:
                return limit, False
            lo = lo0 + d if moving_lo else lo0
            hi = hi0 + d if cap is None else min(hi0 + d, cap)
            if test_at(snapshot, lo, hi) != value:
                return at, True
        return now + d, False  # scanned long enough: a safe, early candidate (refined by the caller)

    def row_relative(self, m: Activity) -> list[Callable[[Any], Instant | None]]:
        """For each time-dependent ``where`` condition: row -> next change of that condition on the row."""
        out: list[Callable[[Any], Instant | None]] = []
        for w in m.where:
            if w.op not in RELATIVE_OPERATORS:
                continue
            spec = self.ctx.catalog.activity_field(m.activity, w.field, m.event)
            if spec is None:  # pragma: no cover - bind already failed
                continue
            if m.activity == "events":
                probe = BField("property", spec.path[len("properties."):], spec.type, Present())
            else:
                probe = BField("row", spec.column, spec.type, Present())
            get = value_getter(probe)

            def change(r: Any, _w: Condition = w, _get: Callable[[Any], Any] = get, _typ: str = spec.type) -> \
                    Instant | None:
                return self.relative(_w, _typ, _get(r))
            out.append(change)
        return out

    def membership(self, m: Activity, b: BActivity) -> Callable[[Instant], Instant | None]:
        """Row time -> next instant the row enters or leaves the window (ignoring ``where``)."""
        ctx, now = self.ctx, self.now
        w = m.window
        if w is None:
            return lambda t: t if t > now else None
        if isinstance(w, BetweenDates):
            lo = b.lo
            b_end = _between_end(ctx, w)
            return lambda t: t if t > now and (lo is None or t >= lo) and t < b_end else None
        if isinstance(w, DaysAgo):
            near, far = sorted(w.days_ago)

            def days_ago(t: Instant) -> Instant | None:
                day = self.local_day(t)
                if day is None:
                    return None
                return self.days_next(_add_days(day, near), _add_days(day, far), arrival=t)
            return days_ago
        if isinstance(w, CalendarWindow):
            which, unit = w.calendar.split("_", 1)
            name = f"{_OPPOSITE[which]}_{unit}"

            def calendar(t: Instant) -> Instant | None:
                day = self.local_day(t)
                if day is None:
                    return None
                first, last = calendar_period(name, day)
                return self.days_next(first, last, arrival=t)
            return calendar
        assert isinstance(w, LastDays)
        lo0 = b.lo
        assert lo0 is not None
        n_days = w.last_days

        def last_days(t: Instant) -> Instant | None:
            # Until the next jump, the window start moves with the clock: the row leaves when start > t.
            leave = now + (t - lo0) + ONE_MICROSECOND
            cand = _interval_next(now, t if t > now else None, leave)
            if t >= lo0 - REENTRY_MARGIN:
                cand = _min((cand, self.last_days_jump(n_days)))
            return cand
        return last_days

    def last_days_jump(self, n_days: int) -> Instant | None:
        """The first instant after ``now`` where the start of a ``last_days n`` window (local wall clock of ``as_of``
        minus n days) stops moving in step with the clock: a transition of the zone at ``as_of`` (and the end of a
        repeated hour), or ``as_of`` - n days crossing a transition. Kept in the shared cache per (instant, n)."""
        key = (self.now, n_days)
        if key in self._cache.jumps:
            return self._cache.jumps[key]
        tz, now = self.ctx.tz, self.now
        shift = dt.timedelta(days=n_days)
        points: list[Instant] = []
        for u, before, after in _transitions(tz, now - ONE_DAY, now + TRANSITION_HORIZON):
            points += [u, u + abs(after - before)]
        try:
            x_start = now - shift - REENTRY_MARGIN
        except OverflowError:
            x_start = None
        if x_start is not None:
            for u, before, after in _transitions(tz, x_start, now - shift + TRANSITION_HORIZON + REENTRY_MARGIN):
                for wall in (u + before + shift, u + after + shift):
                    for fold in (0, 1):
                        p = _localize(wall, tz, fold)
                        if p is not None:
                            points.append(p)
        result = _min(p for p in points if p > now)
        self._cache.jumps[key] = result
        return result
