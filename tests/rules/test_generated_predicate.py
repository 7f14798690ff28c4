"""The generated predicate and the per-snapshot activity indexes give the answers of the closures and the row scan."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import pickle
from fractions import Fraction
from functools import lru_cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rule_strategies import RULES
from rules_harness import ANCHOR, CATALOG, make_store, snapshots

from cohorta.rules import Context, CustomerSnapshot, compile_predicate, validate
from cohorta.rules.plan import BActivity, BConst, BField, BNot, bind
from cohorta.rules.predicate import (
    activity_measure,
    activity_spec,
    compile_bound,
    generate_predicate,
    measure_rows,
    measure_value,
    predicate_source,
)
from cohorta.rules.semantics import AvgTest, Compare, InSet, MonthDay, Present, Range, Test, Text

UTC = dt.UTC
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))
BASE = dt.datetime(2024, 3, 1, 12, tzinfo=UTC).replace(tzinfo=None)  # naive UTC, as snapshots hold

# -- the activity index against the plain row scan -------------------------------------------------------------------
# Times from a few instants (ties and window edges are common), as naive UTC, aware UTC or aware +02:00; some NULL.
HOURS = st.integers(0, 6)
TIMES = st.one_of(
    st.none(),
    HOURS.map(lambda h: BASE + dt.timedelta(hours=h)),
    HOURS.map(lambda h: (BASE + dt.timedelta(hours=h)).replace(tzinfo=UTC)),
    HOURS.map(lambda h: (BASE + dt.timedelta(hours=h)).replace(tzinfo=UTC).astimezone(PLUS_TWO)),
)
INT_VALUES = st.one_of(st.none(), st.integers(-5, 5), st.lists(st.integers(-3, 3), max_size=2))
ANY_VALUES = st.one_of(INT_VALUES, st.sampled_from([0.1, 0.2, 0.3, -0.0, 1e16, 2.5]), st.booleans())
BOUNDS = st.one_of(
    HOURS.map(lambda h: BASE + dt.timedelta(hours=h)),
    st.tuples(HOURS, st.sampled_from([-1, 1])).map(lambda p: BASE + dt.timedelta(hours=p[0], microseconds=p[1])),
)


@st.composite
def points_rows(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> list[dict[str, Any]]:
    return draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["points", "redemption"]),
                    "entry": st.sampled_from(["earn", "EARN", "spend", None]),
                    "points": values,
                    "occurred_at": TIMES,
                }
            ),
            max_size=12,
        )
    )


@st.composite
def event_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    props = st.fixed_dictionaries({}, optional={"price": ANY_VALUES, "sku": st.sampled_from(["a", "B", "b"])})
    return draw(
        st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["product_viewed", "app_opened"]), "occurred_at": TIMES},
                optional={"properties": st.one_of(st.none(), props)},
            ),
            max_size=12,
        )
    )


EARN = BField("row", "entry", "string", InSet(("earn",), True))
POINTS = BField("row", "type", "string", InSet(("points",)))
SKU_B = BField("property", "sku", "string", InSet(("b",), True))


def points_activity(fn: str, typ: str, lo: dt.datetime | None, hi: dt.datetime, where: tuple[Any, ...]) -> BActivity:
    return BActivity(
        "points",
        None,
        (POINTS, *where),
        lo,
        hi,
        fn,
        None if fn == "count" else "points",
        typ,
        Present(),
        0 if fn in ("count", "sum") else None,
    )


def same(got: Any, want: Any) -> None:
    assert repr(got) == repr(want)  # the same value and type (int or float, -0.0, a (sum, n) pair)


FNS = st.sampled_from(["count", "sum", "avg", "min", "max"])
WINDOWS = st.tuples(st.one_of(st.none(), BOUNDS), BOUNDS)


@st.composite
def activity_cases(draw: st.DrawFn) -> tuple[BActivity, CustomerSnapshot]:
    """Loyalty rows measured by ``points`` (where: entry), or events measured by the property ``price``."""
    fn, (lo, hi) = draw(FNS), draw(WINDOWS)
    typ = draw(st.sampled_from(["integer", "money", "number"]))
    if draw(st.booleans()):
        where = draw(st.sampled_from([(), (EARN,), (BNot(EARN),)]))
        return points_activity(fn, typ, lo, hi, where), CustomerSnapshot(
            1, loyalty_transactions=draw(points_rows(ANY_VALUES))
        )
    where = draw(st.sampled_from([(), (SKU_B,), (BNot(SKU_B),)]))
    column = None if fn == "count" else "price"
    b = BActivity(
        "events", "product_viewed", where, lo, hi, fn, column, typ, Present(), 0 if fn in ("count", "sum") else None
    )
    return b, CustomerSnapshot(1, events=draw(event_rows()))


@settings(max_examples=400, deadline=None)
@given(case=activity_cases())
def test_index_measure_equals_row_scan(case: tuple[BActivity, CustomerSnapshot]) -> None:
    b, snap = case
    same(activity_measure(b)(snap), measure_value(b)(measure_rows(b)(snap)))


@settings(max_examples=200, deadline=None)
@given(rows=points_rows(INT_VALUES), window=WINDOWS, where=st.sampled_from([(), (EARN,)]), threshold=st.integers(-3, 6))
def test_int_sums_and_counts_over_many_windows_share_one_index(
    rows: list[dict[str, Any]], window: tuple[Any, Any], where: tuple[Any, ...], threshold: int
) -> None:
    """Prefix sums (int values) and counts, through the generated code, for every window over one snapshot."""
    snap = CustomerSnapshot(1, loyalty_transactions=rows)
    avg_test = AvgTest("gte", (Fraction(threshold, 2),))
    for fn, test in (("count", Compare("gte", threshold)), ("sum", Compare("gte", threshold)), ("avg", avg_test)):
        b = dataclasses.replace(points_activity(fn, "integer", *window, where), test=test)
        m = measure_value(b)(measure_rows(b)(snap))
        want = m is not None and (avg_test.py()(*m) if fn == "avg" else m >= threshold)
        assert generate_predicate(b)(snap) is want
        assert bool(compile_bound(b)(snap)) is want
    assert len(snap._indexes) == 2 + len(where)  # the rows, then each filter (type, entry): shared by the windows


def test_window_edges_null_times_and_empty_activity() -> None:
    t0 = BASE
    rows = [
        {"type": "points", "points": 5, "occurred_at": t0},  # on lo: counts
        {"type": "points", "points": 7, "occurred_at": t0 + dt.timedelta(hours=1)},  # on hi: does not
        {"type": "points", "points": None, "occurred_at": t0 + dt.timedelta(minutes=1)},  # a row, no value
        {"type": "points", "points": 100, "occurred_at": None},  # never counts
        {"type": "points", "points": [3, 9], "occurred_at": (t0 + dt.timedelta(minutes=2)).replace(tzinfo=UTC)},
    ]
    snap = CustomerSnapshot(1, loyalty_transactions=rows)
    hi = t0 + dt.timedelta(hours=1)

    def measure(fn: str, lo: Any = t0, end: Any = hi, s: CustomerSnapshot = snap) -> Any:
        return activity_measure(points_activity(fn, "integer", lo, end, ()))(s)

    assert measure("count") == 3
    assert measure("sum") == 8  # 5 + 3 (first element of the list); the NULL value is skipped
    assert measure("avg") == (8, 2)
    assert (measure("min"), measure("max")) == (3, 5)
    assert measure("count", None, hi + dt.timedelta(microseconds=1)) == 4
    assert measure("count", hi, t0) == 0  # a reversed window is empty
    assert (measure("sum", hi, t0), measure("avg", hi, t0), measure("min", hi, t0)) == (0, None, None)
    nobody = CustomerSnapshot(2)
    assert (measure("count", s=nobody), measure("sum", s=nobody), measure("max", s=nobody)) == (0, 0, None)


def test_float_sums_add_in_the_snapshot_order() -> None:
    """Float addition depends on the order: the rows of a window are summed in list order, as by the row scan."""
    rows = [
        {"type": "points", "points": v, "occurred_at": BASE - dt.timedelta(hours=h)}
        for h, v in enumerate([0.1, 0.2, 0.3])
    ]  # list order is latest first
    b = points_activity("sum", "number", None, BASE + dt.timedelta(hours=1), ())
    snap = CustomerSnapshot(1, loyalty_transactions=rows)
    assert activity_measure(b)(snap) == 0.1 + 0.2 + 0.3 != 0.3 + 0.2 + 0.1


def test_rows_added_or_replaced_after_an_evaluation_are_seen() -> None:
    b = points_activity("sum", "integer", None, BASE + dt.timedelta(days=1), ())
    snap = CustomerSnapshot(1, loyalty_transactions=[{"type": "points", "points": 2, "occurred_at": BASE}])
    fn = generate_predicate(dataclasses.replace(b, test=Compare("gte", 5)))
    assert not fn(snap) and activity_measure(b)(snap) == 2
    snap.loyalty_transactions.append({"type": "points", "points": 4, "occurred_at": BASE})
    assert fn(snap) and activity_measure(b)(snap) == 6  # the generated code first: its own check of the index
    snap.loyalty_transactions = [{"type": "points", "points": 1, "occurred_at": BASE}]
    assert not fn(snap) and activity_measure(b)(snap) == 1


def test_rules_with_the_same_filters_share_one_spec() -> None:
    a = dataclasses.replace(points_activity("count", "integer", None, BASE, (EARN,)), node_id="a")
    b = dataclasses.replace(points_activity("sum", "integer", BASE, BASE, (dataclasses.replace(EARN, node_id="x"),)))
    assert activity_spec(a) is activity_spec(b)
    assert activity_spec(a) is not activity_spec(points_activity("count", "integer", None, BASE, (BNot(EARN),)))


def test_snapshot_copies_and_pickles_leave_the_indexes_behind() -> None:
    snap = CustomerSnapshot(1, loyalty_transactions=[{"type": "points", "points": 2, "occurred_at": BASE}])
    activity_measure(points_activity("count", "integer", None, BASE + dt.timedelta(1), ()))(snap)
    assert snap._indexes
    for other in (pickle.loads(pickle.dumps(snap)), copy.copy(snap), dataclasses.replace(snap)):
        assert other == snap and other._indexes == {}


# -- value tests: the generated source against py() ------------------------------------------------------------------
SCALARS = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([0.5, -0.0, float("nan"), float("inf")]),
    st.sampled_from(["", "ab", "AB", "b", "Ba"]),
    HOURS.map(lambda h: BASE + dt.timedelta(hours=h)),
)
TESTS = st.one_of(
    st.just(Present()),
    st.builds(InSet, st.lists(SCALARS, min_size=1, max_size=3).map(tuple), st.just(False)),
    st.builds(InSet, st.lists(st.sampled_from(["ab", "b"]), min_size=1, max_size=2).map(tuple), st.just(True)),
    st.builds(Compare, st.sampled_from(["lt", "lte", "gt", "gte", "is"]), SCALARS),
    st.builds(Range, st.one_of(st.none(), SCALARS), st.one_of(st.none(), SCALARS), st.booleans(), st.booleans()),
    st.builds(
        Text, st.sampled_from(["contains", "starts_with", "ends_with"]), st.sampled_from(["a", "B", "b"]), st.booleans()
    ),
    st.builds(MonthDay, st.just(frozenset({301, 1231}))),
)


def _outcome(f: Any, v: Any) -> Any:
    try:
        return bool(f(v))
    except Exception as exc:  # the same failure is part of the same answer
        return type(exc)


@settings(max_examples=400, deadline=None)
@given(test=TESTS, value=SCALARS)
def test_test_source_answers_as_py(test: Test, value: Any) -> None:
    names: dict[str, Any] = {}

    def const(v: Any) -> str:
        names[f"_k{len(names)}"] = v
        return f"_k{len(names) - 1}"

    source = test.source("_v", const)
    generated = eval(f"lambda _v: {source}", {"__builtins__": {}, **names})  # our own generated text
    assert _outcome(generated, value) == _outcome(test.py(), value)


# -- whole rules: generated code against the closures, naive and aware timestamps ----------------------------------
def _aware(v: Any) -> Any:
    if isinstance(v, dt.datetime) and v.tzinfo is None:
        return v.replace(tzinfo=UTC)
    if isinstance(v, dict):
        return {k: _aware(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_aware(x) for x in v]
    return v


@lru_cache(maxsize=4)
def _snapshots(seed: int) -> tuple[list[CustomerSnapshot], list[CustomerSnapshot]]:
    snaps = snapshots(make_store(seed, 14, "Europe/Warsaw"))
    aware = [
        CustomerSnapshot(**{f.name: _aware(getattr(s, f.name)) for f in dataclasses.fields(s) if f.init}) for s in snaps
    ]
    return snaps, aware


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=RULES, seed=st.integers(0, 2), hours=st.integers(-40 * 24, 10 * 24))
def test_generated_predicate_equals_closures(rule: dict[str, Any], seed: int, hours: int) -> None:
    """As SQL stores them (aware UTC, as SQLAlchemy returns them) or naive: the same answers as the closures."""
    ctx = Context(ANCHOR + dt.timedelta(hours=hours), "Europe/Warsaw", 2, CATALOG)
    b = bind(validate(rule, CATALOG, 2), ctx)
    generated, closures = generate_predicate(b), compile_bound(b)
    naive, aware = _snapshots(seed)
    want = [bool(closures(s)) for s in naive]
    assert [generated(s) for s in naive] == want
    assert [generated(s) for s in aware] == want
    assert [bool(closures(s)) for s in aware] == want


def test_rule_values_are_never_written_into_the_source() -> None:
    evil = "x') or __import__('os').system('echo pwned') or ('"
    ctx = Context(ANCHOR, "UTC", 2, CATALOG)
    rule = validate(
        {
            "or": [
                {"field": "attributes.nickname", "op": "is", "value": evil},
                {"field": "attributes.tags", "op": "has_any", "value": [evil]},
                {
                    "activity": "order_items",
                    "where": [{"field": "brand", "op": "is", "value": evil}],
                    "op": "gte",
                    "value": 1,
                },
                {"in_segment": evil},
            ]
        },
        CATALOG,
        2,
    )
    source = predicate_source(bind(rule, ctx))
    assert "pwned" not in source and "import" not in source and "'x" not in source
    fn = compile_predicate(rule, ctx)
    assert not fn(CustomerSnapshot(1, attributes={"nickname": "x"}))
    assert fn(CustomerSnapshot(1, attributes={"nickname": evil.upper()}))
    assert fn(CustomerSnapshot(1, attributes={"tags": ["a", evil]}))
    assert fn(CustomerSnapshot(1, segment_ids={evil}))
    item = {"brand": evil, "status": "paid", "ordered_at": ANCHOR.replace(tzinfo=None) - dt.timedelta(days=1)}
    assert fn(CustomerSnapshot(1, order_items=[item]))


@pytest.mark.parametrize("depth", [1, 2, 400])
def test_nesting_python_refuses_falls_back_to_closures(depth: int) -> None:
    b: Any = BConst(True)
    for _ in range(depth):
        b = BNot(b)
    assert generate_predicate(b)(CustomerSnapshot(1)) is (depth % 2 == 0)
