"""The bound tree: a rule resolved against a :class:`Context` (as_of, zone, currency) into plain tests.

Null policy (the one place it is decided, shared by both compilers):

* A condition on a missing value is false, except the negative operators ``is_not``, ``not_in``, ``not_contains``,
  ``has_none`` and ``is_unknown``, which are the plain negation of ``is``, ``in``, ``contains``, ``has_any`` and
  ``has_value`` and so are true for a missing value.
* ``not`` is boolean negation of its child; logic is two-valued everywhere (no SQL NULL leaks).
* A list attribute with no elements is missing. An empty string is a value.
* Activity measures: count and sum over no rows are 0; avg/min/max over no rows are missing. A program's points
  balance is 0 for a customer without activity in that program; its tier is then missing.
* Empty ``and`` is true, empty ``or`` is false.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from .catalog import ACTIVITY_TIME_COLUMN, COUNTED_ORDER_STATUSES, Catalog, FieldSpec
from .errors import Problem, RuleError
from .model import (
    NEGATIONS,
    Activity,
    And,
    BetweenDates,
    CalendarWindow,
    Condition,
    DaysAgo,
    InSegment,
    LastDays,
    NodeType,
    Not,
    Or,
    Rule,
    Sample,
)
from .semantics import (
    AvgTest,
    BadValue,
    Compare,
    InSet,
    MonthDay,
    Present,
    Range,
    Test,
    Text,
    coerce_value,
)
from .timeutil import Context, anniversary_keys, calendar_period

# -- bound nodes --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BConst:
    value: bool
    node_id: str | None = None


@dataclass(frozen=True)
class BAnd:
    items: tuple[Bound, ...]
    node_id: str | None = None


@dataclass(frozen=True)
class BOr:
    items: tuple[Bound, ...]
    node_id: str | None = None


@dataclass(frozen=True)
class BNot:
    item: Bound
    node_id: str | None = None


@dataclass(frozen=True)
class BField:
    """A test on one scalar value.

    ``source``: ``profile`` (customers column), ``summary`` (customer_summaries column), ``program`` (a
    customer_program_summaries column of ``program``), ``attribute`` (EAV row ``name``), ``row`` (an activity row
    column), ``property`` (an event property). ``typ`` is the catalog type. ``default`` is the value assumed when the
    row is missing (None: missing).
    """

    source: str
    name: str
    typ: str
    test: Test
    program: str | None = None
    default: Any = None
    node_id: str | None = None


@dataclass(frozen=True)
class BList:
    """A list value (attribute or event property): ``mode`` any (an element is in values), all, or present."""

    source: str
    name: str
    mode: str
    values: tuple[str, ...] = ()
    lower: bool = False
    node_id: str | None = None


@dataclass(frozen=True)
class BSegment:
    segment_id: str
    node_id: str | None = None


@dataclass(frozen=True)
class BSample:
    threshold: int  # bucket < threshold (buckets 0..9999)
    keys: tuple[int, int, int]
    node_id: str | None = None

    def includes(self, customer_id: Any) -> Any:
        """In the sample: on a Python int, an Ibis integer column or a NumPy array of ids alike."""
        return sample_bucket(customer_id, self.keys) < self.threshold


@dataclass(frozen=True)
class BActivity:
    activity: str
    event: str | None
    filters: tuple[Bound, ...]  # row conditions (BField/BList with source row/property, BNot)
    lo: dt.datetime | None  # naive UTC, inclusive
    hi: dt.datetime  # naive UTC, exclusive (never after as_of + 1 microsecond)
    fn: str  # count sum avg min max
    column: str | None  # measured column (row) or property key (events)
    typ: str  # type of the measure value
    test: Test | AvgTest
    default: Any  # measure over no rows (0 or None)
    empty: bool = False  # the window is empty
    node_id: str | None = None

    @property
    def time_column(self) -> str:
        return ACTIVITY_TIME_COLUMN[self.activity]


Bound = BConst | BAnd | BOr | BNot | BField | BList | BSegment | BSample | BActivity


# -- sample hash ---------------------------------------------------------------------------------------------------
#: Prime modulus of the sample hash; every intermediate product stays below 2**53, so floating-point division in
#: SQLite and PostgreSQL (Ibis's floor division) is still exact.
HASH_PRIME = 67_108_859  # largest prime below 2**26
SAMPLE_BUCKETS = 10_000
_MULTIPLIERS = (40_503_157, 19_260_817, 52_431_289)


def sample_keys(seed: str) -> tuple[int, int, int]:
    digest = hashlib.sha256(seed.encode()).digest()
    return tuple(int.from_bytes(digest[i * 8:(i + 1) * 8], "big") % HASH_PRIME for i in range(3))  # type: ignore[return-value]


def sample_bucket(customer_id: Any, keys: tuple[int, int, int]) -> Any:
    """Bucket 0..9999 of a customer: works on a Python int, an Ibis integer column and a NumPy int64 array alike
    (every intermediate value stays below 2**53).

    Three rounds of ``h = (h * K + h // 2**13 + key) mod P``; the floor division makes the map non-affine.
    Customer ids are assumed non-negative.
    """
    h = customer_id % HASH_PRIME
    for k, m in zip(keys, _MULTIPLIERS, strict=True):
        h = (h * m + h // 8192 + k) % HASH_PRIME
    return h % SAMPLE_BUCKETS


# -- binding -------------------------------------------------------------------------------------------------------


class _Binder:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.catalog: Catalog = ctx.catalog
        self.problems: list[Problem] = []

    def fail(self, path: str, message: str) -> BConst:
        self.problems.append(Problem(path, message))
        return BConst(False)

    def node(self, n: NodeType, path: str) -> Bound:
        if isinstance(n, And):
            return BAnd(tuple(self.node(c, f"{path}.and[{i}]") for i, c in enumerate(n.and_)), n.id)
        if isinstance(n, Or):
            return BOr(tuple(self.node(c, f"{path}.or[{i}]") for i, c in enumerate(n.or_)), n.id)
        if isinstance(n, Not):
            return BNot(self.node(n.not_, f"{path}.not"), n.id)
        if isinstance(n, InSegment):
            return BSegment(n.in_segment, n.id)
        if isinstance(n, Sample):
            pct = n.sample.percent
            return BSample(int(pct * 100), sample_keys(n.sample.seed), n.id)
        if isinstance(n, Condition):
            spec = self.catalog.field(n.field)
            if spec is None:
                return self.fail(f"{path}.field", f"unknown field {n.field!r}")
            return self.condition(n, spec, path)
        return self.activity(n, path)

    # conditions -------------------------------------------------------------------------------------------------
    def condition(self, n: Condition, spec: FieldSpec, path: str, row_source: str | None = None) -> Bound:
        op = n.op
        if op not in spec.operators:
            return self.fail(f"{path}.op", f"operator {op!r} does not apply to {spec.type} field {spec.path}")
        positive = NEGATIONS.get(op)
        if positive is not None:
            inner = self.condition(n.model_copy(update={"op": positive, "id": None}), spec, path, row_source)
            return BNot(inner, n.id)
        try:
            value = coerce_value(spec.type, op, n.value, self.ctx.currency_exponent)
        except BadValue as exc:
            return self.fail(f"{path}.value", str(exc))
        source, name, program, default = self.locate(spec, row_source)
        lower = not n.case_sensitive
        if spec.type == "list":
            if op == "has_value":
                return BList(source, name, "present", node_id=n.id)
            vals = tuple(sorted({v.lower() if lower else v for v in value}))
            return BList(source, name, "any" if op == "has_any" else "all", vals, lower, n.id)
        test = self.test(spec.type, op, value, lower)
        if isinstance(test, BConst):
            return BConst(test.value, n.id)
        return BField(source, name, spec.type, test, program, default, n.id)

    def locate(self, spec: FieldSpec, row_source: str | None) -> tuple[str, str, str | None, Any]:
        if row_source is not None:
            if row_source == "property":
                return "property", spec.path[len("properties."):], None, None
            return "row", spec.column, None, None
        group, _, rest = spec.path.partition(".")
        if group == "profile":
            return "profile", spec.column, None, None
        if group == "attributes":
            return "attribute", rest, None, None
        if group == "summary":
            return "summary", spec.column, None, None
        # loyalty
        if rest == "points_balance":
            return "summary", "points_balance", None, None
        program, _, col = rest.rpartition(".")
        return "program", col, program, (0 if col == "points_balance" else None)

    def test(self, typ: str, op: str, value: Any, lower: bool) -> Test | BConst:
        ctx = self.ctx
        text = typ in ("string", "country")
        if op == "has_value":
            return Present()
        if op == "is":
            return InSet((value.lower() if text and lower else value,), text and lower)
        if op == "in":
            vals = {v.lower() if text and lower else v for v in value}
            return InSet(tuple(sorted(vals)), text and lower)
        if op in ("contains", "starts_with", "ends_with"):
            return Text(op, value.lower() if lower else value, lower)
        if op in ("lt", "lte", "gt", "gte"):
            return Compare(op, value)
        temporal = typ in ("date", "datetime")
        if op == "between" and not temporal:
            return Range(value[0], value[1], True, True)
        is_dt = typ == "datetime"
        today = ctx.today
        day = dt.timedelta(days=1)

        def days(first: dt.date | None, last: dt.date | None) -> Test | BConst:
            """Local days first..last (inclusive) as a date range or an instant range."""
            if first is not None and last is not None and first > last:
                return BConst(False)
            if not is_dt:
                return Range(first, last, True, True)
            return Range(ctx.day_start(first) if first else None, ctx.day_start(last + day) if last else None,
                         True, False)

        if op == "on":
            return days(value, value)
        if op == "between":
            lo, hi = value
            if not is_dt:
                return days(lo, hi)
            lo_i = ctx.instant(lo) if isinstance(lo, dt.datetime) else ctx.day_start(lo)
            if isinstance(hi, dt.datetime):
                return Range(lo_i, ctx.instant(hi), True, True)
            return Range(lo_i, ctx.day_start(hi + day), True, False)
        if op == "before":
            if isinstance(value, dt.datetime):
                return Range(None, ctx.instant(value), True, False)
            return days(None, value - day)
        if op == "after":
            if isinstance(value, dt.datetime):
                return Range(ctx.instant(value), None, False, False)
            return days(value + day, None)
        if op == "exactly_days_ago":
            return days(today - dt.timedelta(days=value), today - dt.timedelta(days=value))
        if op == "less_than_days_ago":
            return days(today - dt.timedelta(days=value) + day, today)
        if op == "more_than_days_ago":
            return days(None, today - dt.timedelta(days=value) - day)
        if op == "in_next_days":
            return days(today, today + dt.timedelta(days=value))
        if op == "in_calendar":
            first, last = calendar_period(value, today)
            return days(first, last)
        offset = ctx.utc_offset_seconds() if is_dt else None
        if op == "anniversary_within_days":
            return MonthDay(anniversary_keys(today, today + dt.timedelta(days=value)), offset)
        if op == "anniversary_this_month":
            return MonthDay(frozenset(today.month * 100 + d for d in range(1, 32)), offset)
        raise AssertionError(op)  # pragma: no cover

    # activities -------------------------------------------------------------------------------------------------
    def activity(self, n: Activity, path: str) -> Bound:
        cat = self.catalog
        event = n.event
        if n.activity == "events":
            if event is None:
                return self.fail(path, "an events condition needs the name of the event")
            if event not in cat.event_definitions:
                return self.fail(f"{path}.event", f"unknown event {event!r}")
        elif event is not None:
            return self.fail(f"{path}.event", "only an events condition names an event")
        filters: list[Bound] = []
        names_status = False
        for i, w in enumerate(n.where):
            spec = cat.activity_field(n.activity, w.field, event)
            if spec is None:
                self.fail(f"{path}.where[{i}].field", f"unknown field {w.field!r} of {n.activity}")
                continue
            names_status = names_status or w.field == "status"
            filters.append(self.condition(w, spec, f"{path}.where[{i}]",
                                          "property" if n.activity == "events" else "row"))
        if n.activity in ("orders", "order_items") and not names_status:
            filters.insert(0, BField("row", "status", "string", InSet(COUNTED_ORDER_STATUSES)))
        if n.activity == "points":
            filters.insert(0, BField("row", "type", "string", InSet(("points",))))
        elif n.activity == "redemptions":
            filters.insert(0, BField("row", "type", "string", InSet(("redemption",))))
        lo, hi, empty = self.window(n, path)
        measure = n.measure
        fn = measure.fn if measure else "count"
        column: str | None = None
        mtyp = "integer"
        if fn == "count":
            if measure is not None and measure.field is not None:
                return self.fail(f"{path}.measure.field", "count counts rows and takes no field")
        else:
            assert measure is not None
            if measure.field is None:
                return self.fail(f"{path}.measure.field", f"{fn} needs a numeric field to measure")
            spec = cat.activity_field(n.activity, measure.field, event)
            if spec is None:
                return self.fail(f"{path}.measure.field", f"unknown field {measure.field!r} of {n.activity}")
            if spec.type not in ("number", "integer", "money"):
                return self.fail(f"{path}.measure.field", f"{measure.field} is not numeric ({spec.type})")
            mtyp = spec.type
            column = spec.path[len("properties."):] if n.activity == "events" else spec.column
        op = n.op
        from .catalog import MEASURE_OPERATORS

        if op not in MEASURE_OPERATORS:
            return self.fail(f"{path}.op", f"operator {op!r} does not apply to an activity measure")
        positive = NEGATIONS.get(op)
        wrap_not = positive is not None
        if positive is not None:
            op = positive
        default: Any = 0 if fn in ("count", "sum") else None
        try:
            if fn == "avg" and mtyp in ("integer", "money"):
                value = coerce_value("number" if mtyp == "integer" else "money", op, n.value,
                                     self.ctx.currency_exponent)
                test: Test | AvgTest = Present() if op == "has_value" else self.avg_test(op, value, mtyp)
            else:
                value = coerce_value(mtyp, op, n.value, self.ctx.currency_exponent)
                t = self.test(mtyp, op, value, False)
                if isinstance(t, BConst):  # pragma: no cover - numeric tests are never constant
                    return t
                test = t
        except BadValue as exc:
            return self.fail(f"{path}.value", str(exc))
        bound: Bound = BActivity(n.activity, event, tuple(filters), lo, hi, fn, column, mtyp, test, default, empty,
                                 None if wrap_not else n.id)
        if wrap_not:
            bound = BNot(bound, n.id)
        return bound

    def avg_test(self, op: str, value: Any, mtyp: str) -> AvgTest:
        def frac(v: Any) -> Fraction:
            if isinstance(v, float):  # integer field: coerced as number; use the exact decimal of the rule text
                return Fraction(Decimal(repr(v)))
            return Fraction(v)

        if op == "between":
            return AvgTest("between", (frac(value[0]), frac(value[1])))
        if op == "in":
            return AvgTest("in", tuple(frac(v) for v in value))
        return AvgTest(op, (frac(value),))

    def window(self, n: Activity, path: str) -> tuple[dt.datetime | None, dt.datetime, bool]:
        ctx = self.ctx
        end = ctx.end_exclusive
        w = n.window
        lo: dt.datetime | None = None
        hi = end
        today = ctx.today
        day = dt.timedelta(days=1)
        if isinstance(w, LastDays):
            start_local = ctx.local_now - dt.timedelta(days=w.last_days)  # wall-clock arithmetic in the zone
            lo = ctx.instant(start_local.replace(tzinfo=None))
        elif isinstance(w, DaysAgo):
            near, far = sorted(w.days_ago)
            lo = ctx.day_start(today - dt.timedelta(days=far))
            hi = min(end, ctx.day_start(today - dt.timedelta(days=near) + day))
        elif isinstance(w, CalendarWindow):
            first, last = calendar_period(w.calendar, today)
            lo, hi = ctx.day_start(first), min(end, ctx.day_start(last + day))
        elif isinstance(w, BetweenDates):
            a, b_ = w.between
            lo = ctx.instant(a) if isinstance(a, dt.datetime) else ctx.day_start(a)
            b_end = ctx.instant(b_) + dt.timedelta(microseconds=1) if isinstance(b_, dt.datetime) \
                else ctx.day_start(b_ + day)
            hi = min(end, b_end)
        empty = lo is not None and lo >= hi
        return lo, hi, empty


def bind(rule: Rule | NodeType, ctx: Context) -> Bound:
    """Resolve a (validated) rule against ``ctx``; raises :class:`RuleError` if it does not fit the catalog."""
    root = rule.root if isinstance(rule, Rule) else rule
    binder = _Binder(ctx)
    out = binder.node(root, "$")
    if binder.problems:
        raise RuleError(binder.problems)
    return out


@dataclass
class Requirements:
    """What evaluating a rule needs from a customer snapshot."""

    activities: set[str] = field(default_factory=set)  # orders, order_items, events, loyalty_transactions
    events: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)  # catalog paths of attribute conditions
    segments: set[str] = field(default_factory=set)
    earliest_activity: dict[str, dt.datetime | None] = field(default_factory=dict)  # per activity kind: window start
    time_dependent: bool = False
    sample: bool = False
