"""Real-time evaluation: a rule compiled once into a Python function over one customer's snapshot.

:func:`compile_predicate` generates the source of one function per rule from the bound tree (field reads, the null
policy and the comparisons written out inline, every value of the rule passed in as a bound constant, never written
into the source) and compiles it once. :func:`compile_bound` compiles a node into closures instead (cheap to make:
``next_change`` and ``explain`` compile single nodes many times). Activity measures of both read the snapshot's
per-(activity, event, filters) indexes (:mod:`cohorta.rules.activity_index`); :func:`measure_rows` and
:func:`measure_value` are the plain row scan they agree with (used by ``explain``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .activity_index import Group, RowSpec, row_spec, window_measure_at
from .model import NodeType, Rule
from .plan import (
    BActivity,
    BAnd,
    BConst,
    BField,
    BList,
    BNot,
    BOr,
    Bound,
    BSample,
    BSegment,
    bind,
    sample_bucket,
)
from .semantics import AvgTest, Compare, InSet, Range, Test
from .timeutil import Context, to_utc_naive

Row = dict[str, Any]


@dataclass
class CustomerSnapshot:
    """Everything a predicate may look at for one customer, in storage units.

    * ``profile``: customers columns (``country``, ``birthdate`` as ``date``, ``created_at`` as datetime ...).
    * ``attributes``: attribute name -> typed value (a list for list attributes).
    * ``summary``: customer_summaries columns (money as minor-unit ints: ``total_spent_minor`` ...).
    * ``programs``: program -> {"points_balance": int, "tier": str | None}.
    * ``segment_ids``: ids of the segments the customer is a member of (for ``in_segment``).
    * activity lists of row dicts with the storage columns: ``orders`` (status, created_at, total_minor),
      ``order_items`` (ordered_at, status, sku, name, category, brand, quantity, unit_price_minor, amount_minor),
      ``events`` (name, occurred_at, properties: dict), ``loyalty_transactions`` (type, program, entry, points,
      reward, reason, occurred_at). A loader may pass only what :func:`rule_requirements` says a rule needs.

    Timestamps are naive UTC as stored (aware ones are converted).
    """

    customer_id: int
    profile: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    programs: dict[str, dict[str, Any]] = field(default_factory=dict)
    segment_ids: frozenset[str] | set[str] = field(default_factory=frozenset)
    orders: list[Row] = field(default_factory=list)
    order_items: list[Row] = field(default_factory=list)
    events: list[Row] = field(default_factory=list)
    loyalty_transactions: list[Row] = field(default_factory=list)
    # activity indexes built by the predicates on first use (RowSpec -> RowIndex); not part of the snapshot's value
    _indexes: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and copied without the indexes (they hold compiled filters, and belong to this object)."""
        state = dict(self.__dict__)
        state.pop("_indexes", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._indexes = {}


ACTIVITY_ROWS = {"orders": "orders", "order_items": "order_items", "events": "events",
                 "points": "loyalty_transactions", "redemptions": "loyalty_transactions"}


def _to_date(v: Any) -> Any:
    return v.date() if isinstance(v, dt.datetime) else v


def _to_instant(v: Any) -> Any:
    return to_utc_naive(v) if isinstance(v, dt.datetime) else v


#: Per catalog type: the normalisation of :func:`value_getter`, and the class (with a condition on ``_v``) for which
#: it returns the value unchanged, tested inline before calling it.
_NORMALISE: dict[str, tuple[Callable[[Any], Any], type, str]] = {
    "datetime": (_to_instant, dt.datetime, " and _v.tzinfo is None"),
    "date": (_to_date, dt.date, ""),
    "number": (float, float, ""),
}


def _normaliser(typ: str) -> Callable[[Any], Any] | None:
    found = _NORMALISE.get(typ)
    return None if found is None else found[0]


def value_getter(b: BField | BList) -> Callable[[Any], Any]:
    """Reads the (normalised) value a bound condition looks at, from a snapshot or an activity row."""
    src, name = b.source, b.name
    get: Callable[[Any], Any]
    if src == "profile":
        def get(s: Any) -> Any:
            return s.profile.get(name)
    elif src == "summary":
        def get(s: Any) -> Any:
            return s.summary.get(name)
    elif src == "attribute":
        def get(s: Any) -> Any:
            return s.attributes.get(name)
    elif src == "program":
        assert isinstance(b, BField)
        program, default = b.program, b.default

        def get(s: Any) -> Any:
            row = s.programs.get(program)
            return default if row is None else row.get(name)
    elif src == "row":
        def get(r: Any) -> Any:
            return r.get(name)
    else:  # property
        def get(r: Any) -> Any:
            props = r.get("properties")
            return None if props is None else props.get(name)
    if isinstance(b, BList):
        def get_list(s: Any, _g: Callable[[Any], Any] = get) -> Any:
            v = _g(s)
            if v is None:
                return None
            items = [x for x in (v if isinstance(v, list | tuple | set | frozenset) else [v]) if x is not None]
            return items or None
        return get_list
    norm = _normaliser(b.typ)
    if norm is None:
        return get

    def get_norm(s: Any, _g: Callable[[Any], Any] = get, _n: Callable[[Any], Any] = norm) -> Any:
        v = _g(s)
        return None if v is None else _n(v)

    return get_norm


def _list_test(b: BList) -> Callable[[list[Any]], bool]:
    vals = frozenset(b.values)
    lower = b.lower
    if b.mode == "present":
        return lambda items: True
    if b.mode == "any":
        if lower:
            return lambda items: any(x.lower() in vals for x in items)
        return lambda items: any(x in vals for x in items)
    if lower:
        return lambda items: vals <= {x.lower() for x in items}
    return lambda items: vals <= set(items)


def measure_rows(b: BActivity) -> Callable[[CustomerSnapshot], list[Row]]:
    """The activity rows of a snapshot that count for ``b`` (window, event name, where, default statuses)."""
    attr = ACTIVITY_ROWS[b.activity]
    tcol = b.time_column
    lo, hi = b.lo, b.hi
    filters = [_compile(f) for f in b.filters]
    event = b.event

    def in_window(r: Row) -> bool:
        t = r.get(tcol)
        if t is None:
            return False
        t = to_utc_naive(t)
        return (lo is None or t >= lo) and t < hi

    def rows(s: CustomerSnapshot) -> list[Row]:
        out = []
        for r in getattr(s, attr):
            if event is not None and r.get("name") != event:
                continue
            if not in_window(r):
                continue
            if all(f(r) for f in filters):
                out.append(r)
        return out

    return rows


def measure_value(b: BActivity) -> Callable[[list[Row]], Any]:
    """The measure over the counted rows: count/sum (0 over none), min/max (None over none), avg as (sum, n)."""
    if b.fn == "count":
        return len
    col = b.column or ""
    prop = b.activity == "events"
    conv = float if b.typ == "number" else (lambda v: v)

    def values(rows: list[Row]) -> list[Any]:
        out = []
        for r in rows:
            v = (r.get("properties") or {}).get(col) if prop else r.get(col)
            if isinstance(v, list):
                v = v[0] if v else None
            if v is not None:
                out.append(conv(v))
        return out

    if b.fn == "sum":
        return lambda rows: sum(values(rows))
    if b.fn == "min":
        return lambda rows: min(values(rows), default=None)
    if b.fn == "max":
        return lambda rows: max(values(rows), default=None)
    if isinstance(b.test, AvgTest) or b.typ != "number":
        def avg_pair(rows: list[Row]) -> Any:
            vs = values(rows)
            return (sum(vs), len(vs)) if vs else None
        return avg_pair

    def avg(rows: list[Row]) -> Any:
        vs = values(rows)
        return sum(vs) / len(vs) if vs else None
    return avg


def anonymous(b: Bound) -> Bound:
    """The node without its ids (and those of its children): equal row filters of different rules compare equal."""
    if isinstance(b, BNot):
        return BNot(anonymous(b.item))
    if isinstance(b, BAnd | BOr):
        return type(b)(tuple(anonymous(x) for x in b.items))
    return dataclasses.replace(b, node_id=None)


def activity_spec(b: BActivity) -> RowSpec:
    """The (shared) spec of the rows ``b`` counts: one index per snapshot serves every rule with the same filters."""
    filters = [(anonymous(f), _compile(f), _group(f)) for f in b.filters]
    return row_spec(ACTIVITY_ROWS[b.activity], b.time_column, b.event, filters)


def _group(f: Bound) -> Group | None:
    """A text row filter ``is``/``in`` as a grouping of the rows by their (lowercased) value; None for others.

    Only for text fields (no normalisation, str values): equal values group together exactly as ``in`` a set finds
    them.
    """
    if not (isinstance(f, BField) and isinstance(f.test, InSet) and f.typ in ("string", "country")):
        return None
    return Group((f.source, f.name, f.test.lower), value_getter(f), f.test.lower, f.test.values)


def activity_measure_at(b: BActivity) -> Callable[[CustomerSnapshot, Any, Any], Any]:
    """(snapshot, lo, hi) -> the measure of ``b`` over the window ``[lo, hi)``, from the indexes (as
    ``measure_value(b)(measure_rows(b)(snapshot))`` when ``lo, hi`` are the bound window)."""
    number = b.typ == "number"
    return window_measure_at(activity_spec(b), b.fn, b.column, b.activity == "events", number,
                             isinstance(b.test, AvgTest) or not number, measure_value(b))


def activity_measure(b: BActivity) -> Callable[[CustomerSnapshot], Any]:
    """snapshot -> the measure of ``b`` over its bound window."""
    measure, lo, hi = activity_measure_at(b), b.lo, b.hi
    return lambda s: measure(s, lo, hi)


def activity_test_at(b: BActivity) -> Callable[[CustomerSnapshot, Any, Any], bool]:
    """(snapshot, lo, hi) -> whether ``b``'s measure over the window ``[lo, hi)`` passes its test: the activity
    condition at any instant whose window that is (a missing measure, min/max/avg over no rows, fails)."""
    measure = activity_measure_at(b)
    if isinstance(b.test, AvgTest):
        avg_test = b.test.py()

        def test_avg(s: CustomerSnapshot, lo: Any, hi: Any) -> bool:
            m = measure(s, lo, hi)
            return m is not None and avg_test(*m)
        return test_avg
    test = b.test.py()

    def run(s: CustomerSnapshot, lo: Any, hi: Any) -> bool:
        m = measure(s, lo, hi)
        return m is not None and test(m)
    return run


def _activity(b: BActivity) -> Callable[[CustomerSnapshot], bool]:
    test, lo, hi = activity_test_at(b), b.lo, b.hi
    return lambda s: test(s, lo, hi)


def _compile(b: Bound) -> Callable[[Any], bool]:
    if isinstance(b, BConst):
        v = b.value
        return lambda s: v
    if isinstance(b, BAnd):
        fs = [_compile(x) for x in b.items]
        if len(fs) == 1:
            return fs[0]
        return lambda s: all(f(s) for f in fs)
    if isinstance(b, BOr):
        fs = [_compile(x) for x in b.items]
        if len(fs) == 1:
            return fs[0]
        return lambda s: any(f(s) for f in fs)
    if isinstance(b, BNot):
        f = _compile(b.item)
        return lambda s: not f(s)
    if isinstance(b, BField):
        get = value_getter(b)
        test = b.test.py()

        def field_test(s: Any) -> bool:
            v = get(s)
            return v is not None and test(v)
        return field_test
    if isinstance(b, BList):
        get = value_getter(b)
        lt = _list_test(b)

        def list_test(s: Any) -> bool:
            v = get(s)
            return v is not None and lt(v)
        return list_test
    if isinstance(b, BSegment):
        sid = b.segment_id
        return lambda s: sid in s.segment_ids
    if isinstance(b, BSample):
        includes = b.includes
        return lambda s: bool(includes(s.customer_id))
    return _activity(b)


def compile_bound(b: Bound) -> Callable[[CustomerSnapshot], bool]:
    return _compile(b)


def compile_row_filter(b: Bound) -> Callable[[Row], bool]:
    """A bound ``where`` condition of an activity as a test of one activity row."""
    return _compile(b)


# -- generated code ----------------------------------------------------------------------------------------------
def _list_items(v: Any) -> list[Any] | None:
    """A list value's present elements (None when there are none), as :func:`value_getter` gives them."""
    items = [x for x in (v if isinstance(v, list | tuple | set | frozenset) else [v]) if x is not None]
    return items or None


def _has_any(v: Any, values: frozenset[str], lower: bool) -> bool:
    """``has_any`` on a present list value, as :func:`_list_test` over :func:`_list_items` (no list built)."""
    for x in v if isinstance(v, list | tuple | set | frozenset) else (v,):
        if x is not None and (x.lower() if lower else x) in values:
            return True
    return False


def _has_all(v: Any, values: frozenset[str], lower: bool) -> bool:
    """``has_all`` on a present list value, as :func:`_list_test` over :func:`_list_items` (no items: false)."""
    items = v if isinstance(v, list | tuple | set | frozenset) else (v,)
    present = {x.lower() if lower else x for x in items if x is not None}
    return bool(present) and values <= present


def _utc_test(b: BField) -> Test | None:
    """For a datetime field with a range or comparison test: the same test with bounds as aware UTC datetimes.

    A value whose tzinfo is ``datetime.UTC`` compares with them exactly as its naive UTC form (what
    :func:`value_getter` gives) compares with the naive bounds: both sides have the same tzinfo, so Python compares
    the fields as they are. Spares converting the value (as stored by SQLAlchemy) on every evaluation.
    """
    test = b.test
    if b.typ != "datetime":
        return None

    def aware(v: Any) -> Any:
        return v.replace(tzinfo=dt.UTC) if isinstance(v, dt.datetime) and v.tzinfo is None else v

    if isinstance(test, Range) and all(x is None or isinstance(x, dt.datetime) for x in (test.lo, test.hi)):
        return dataclasses.replace(test, lo=aware(test.lo), hi=aware(test.hi))
    if isinstance(test, Compare) and isinstance(test.bound, dt.datetime):
        return dataclasses.replace(test, bound=aware(test.bound))
    return None


class _Source:
    """The text of one generated predicate and the values it is given.

    Nothing of the rule goes into the text: field names, values, windows and helpers are each bound to a name
    ``_kN`` by :meth:`const` and passed as arguments of the factory that returns the predicate. The text is then the
    same for rules of the same shape, and its compiled factory is shared (:func:`_factory`).
    Temporaries (``_v`` value, ``_r`` row, ``_m`` measure, ``_t`` times, ``_i`` window start) are assigned and used
    within one condition, so conditions can share them.
    """

    def __init__(self) -> None:
        self.values: list[Any] = []

    def const(self, value: Any) -> str:
        self.values.append(value)
        return f"_k{len(self.values) - 1}"

    def node(self, b: Bound) -> str:
        if isinstance(b, BConst):
            return "True" if b.value else "False"
        if isinstance(b, BAnd | BOr):
            if not b.items:
                return "True" if isinstance(b, BAnd) else "False"
            joined = (" and " if isinstance(b, BAnd) else " or ").join(self.node(x) for x in b.items)
            return f"({joined})"
        if isinstance(b, BNot):
            return f"(not {self.node(b.item)})"
        if isinstance(b, BField):
            test = b.test.source("_v", self.const)
            norm = _NORMALISE.get(b.typ)
            if norm is None:
                return f"((_v := {self.read(b)}) is not None and {test})"
            fn, kept, also = norm
            normalised = f"(_v := _v if _v.__class__ is {self.const(kept)}{also} else {self.const(fn)}(_v)) is not None"
            utc = _utc_test(b)
            if utc is not None:  # an aware UTC value compared with aware bounds: as naive UTC, without converting
                test = f"({utc.source('_v', self.const)} if _v.__class__ is {self.const(dt.datetime)} " \
                       f"and _v.tzinfo is {self.const(dt.UTC)} else ({normalised} and {test}))"
                return f"((_v := {self.read(b)}) is not None and {test})"
            return f"((_v := {self.read(b)}) is not None and {normalised} and {test})"
        if isinstance(b, BList):
            read = self.read(b)
            if b.mode == "present":
                return f"((_v := {read}) is not None and {self.const(_list_items)}(_v) is not None)"
            test = self.const(_has_any if b.mode == "any" else _has_all)
            return f"((_v := {read}) is not None and {test}(_v, {self.const(frozenset(b.values))}, " \
                   f"{self.const(b.lower)}))"
        if isinstance(b, BSegment):
            return f"({self.const(b.segment_id)} in s.segment_ids)"
        if isinstance(b, BSample):
            bucket = f"{self.const(sample_bucket)}(s.customer_id, {self.const(b.keys)})"
            return f"({bucket} < {self.const(b.threshold)})"
        return self.activity(b)

    def read(self, b: BField | BList) -> str:
        """The expression reading the raw value of ``b`` from ``s`` (a snapshot, or a row for row sources)."""
        name = self.const(b.name)
        if b.source == "program":
            assert isinstance(b, BField)
            return f"({self.const(b.default)} if (_r := s.programs.get({self.const(b.program)})) is None " \
                   f"else _r.get({name}))"
        if b.source == "row":
            return f"s.get({name})"
        if b.source == "property":
            return f"(None if (_r := s.get('properties')) is None else _r.get({name}))"
        return f"s.{_SNAPSHOT_MAPS[b.source]}.get({name})"

    def activity(self, b: BActivity) -> str:
        spec = activity_spec(b)
        # the shared index, as RowSpec.fetch gives it (the check that it is still valid written out)
        attr = ACTIVITY_ROWS[b.activity]
        assert attr.isidentifier()
        k = self.const(spec)
        fetch = f"(_x if (_x := s._indexes.get({k})) is not None and _x.src is s.{attr} and " \
                f"_x.n == {self.const(len)}(_x.src) else {k}.fetch(s))"
        search, hi = self.const(bisect_left), self.const(b.hi)
        lo = None if b.lo is None else self.const(b.lo)
        if b.fn == "count":  # two binary searches
            if lo is None:
                measure = f"{search}({fetch}.times, {hi})"
            else:
                measure = f"{search}((_t := {fetch}.times), {hi}, (_i := {search}(_t, {lo}))) - _i"
        elif b.fn == "sum" and b.typ != "number":  # prefix sums when the values are ints, else the plain measure
            column = f"(_x := {fetch}).columns.get({self.const((b.column or '', b.activity == 'events'))}) or " \
                     f"_x.column({self.const(b.column or '')}, {self.const(b.activity == 'events')})"
            end = f"{search}(_c.times, {hi})" if lo is None else \
                f"{search}(_c.times, {hi}, (_i := {search}(_c.times, {lo})))"
            start = "0" if lo is None else "_i"
            measure = f"(_s[{end}] - _s[{start}] if (_s := (_c := {column}).sums) is not None " \
                      f"else {self.const(activity_measure(b))}(s))"
        else:
            measure = f"{self.const(activity_measure(b))}(s)"
        t = b.test
        test = f"{self.const(t.py())}(*_m)" if isinstance(t, AvgTest) else t.source("_m", self.const)
        return f"((_m := {measure}) is not None and {test})"


_SNAPSHOT_MAPS = {"profile": "profile", "summary": "summary", "attribute": "attributes"}


@lru_cache(maxsize=512)
def _factory(body: str, arity: int) -> Callable[..., Callable[[CustomerSnapshot], bool]]:
    """The compiled factory of a generated predicate: takes the bound values, returns the predicate."""
    params = ", ".join(f"_k{i}" for i in range(arity))
    text = f"def factory({params}):\n    def predicate(s):\n        return True if {body} else False\n" \
           f"    return predicate\n"
    namespace: dict[str, Any] = {"__builtins__": {}}
    exec(compile(text, "<cohorta rule predicate>", "exec"), namespace)  # our text: names only, no value of a rule
    factory: Callable[..., Callable[[CustomerSnapshot], bool]] = namespace["factory"]
    return factory


def generate_predicate(b: Bound) -> Callable[[CustomerSnapshot], bool]:
    """The bound tree as one generated Python function (same answers as :func:`compile_bound`, to which it falls
    back if Python refuses the source: nesting far beyond what validated rules reach)."""
    src = _Source()
    body = src.node(b)
    try:
        factory = _factory(body, len(src.values))
    except (SyntaxError, RecursionError, MemoryError):
        return _compile(b)
    return factory(*src.values)


def predicate_source(b: Bound) -> str:
    """The generated expression of a bound tree (for tests and debugging)."""
    return _Source().node(b)


def compile_predicate(rule: Rule | NodeType, ctx: Context) -> Callable[[CustomerSnapshot], bool]:
    """A function answering "does this customer match at ``ctx.as_of``?" for one snapshot.

    Compiled once per (rule, as_of): relative dates are fixed at compile time, so compile again when the clock
    moves (it is cheap).
    """
    return generate_predicate(bind(rule, ctx))
