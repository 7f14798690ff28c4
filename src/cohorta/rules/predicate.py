"""Real-time evaluation: a rule compiled once into closures over one customer's snapshot."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
from .semantics import AvgTest
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


ACTIVITY_ROWS = {"orders": "orders", "order_items": "order_items", "events": "events",
                 "points": "loyalty_transactions", "redemptions": "loyalty_transactions"}


def _normaliser(typ: str) -> Callable[[Any], Any] | None:
    if typ == "datetime":
        return lambda v: to_utc_naive(v) if isinstance(v, dt.datetime) else v
    if typ == "date":
        return lambda v: v.date() if isinstance(v, dt.datetime) else v
    if typ == "number":
        return float
    return None


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


def _activity(b: BActivity) -> Callable[[CustomerSnapshot], bool]:
    rows = measure_rows(b)
    measure = measure_value(b)
    if isinstance(b.test, AvgTest):
        avg_test = b.test.py()

        def test_avg(s: CustomerSnapshot) -> bool:
            m = measure(rows(s))
            return m is not None and avg_test(*m)
        return test_avg
    test = b.test.py()

    def run(s: CustomerSnapshot) -> bool:
        m = measure(rows(s))
        return m is not None and test(m)
    return run


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
        keys, threshold = b.keys, b.threshold
        return lambda s: bool(sample_bucket(s.customer_id, keys) < threshold)
    return _activity(b)


def compile_bound(b: Bound) -> Callable[[CustomerSnapshot], bool]:
    return _compile(b)


def compile_predicate(rule: Rule | NodeType, ctx: Context) -> Callable[[CustomerSnapshot], bool]:
    """A function answering "does this customer match at ``ctx.as_of``?" for one snapshot.

    Compiled once per (rule, as_of): relative dates are fixed at compile time, so compile again when the clock
    moves (it is cheap).
    """
    return _compile(bind(rule, ctx))
