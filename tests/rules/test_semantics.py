"""Operator semantics by example: nulls, time zones and DST, money thresholds, samples, explain, speed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from rules_harness import CATALOG, Backends, check_same

from cohorta.rules import Context, CustomerSnapshot, compile_predicate, explain, rule_requirements, validate

UTC = dt.UTC
WARSAW = ZoneInfo("Europe/Warsaw")
LA = ZoneInfo("America/Los_Angeles")


def matches(rule: Any, snap: CustomerSnapshot, as_of: dt.datetime, tz: str = "UTC") -> bool:
    ctx = Context(as_of, tz, 2, CATALOG)
    return compile_predicate(validate(rule, CATALOG, 2), ctx)(snap)


NOW = dt.datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
NOBODY = CustomerSnapshot(customer_id=1)


@pytest.mark.parametrize(("rule", "expected"), [
    ({"field": "country", "op": "is", "value": "PL"}, False),
    ({"field": "country", "op": "is_not", "value": "PL"}, True),
    ({"field": "country", "op": "in", "value": ["PL"]}, False),
    ({"field": "country", "op": "not_in", "value": ["PL"]}, True),
    ({"field": "country", "op": "contains", "value": "P"}, False),
    ({"field": "country", "op": "not_contains", "value": "P"}, True),
    ({"field": "country", "op": "is_unknown"}, True),
    ({"field": "country", "op": "has_value"}, False),
    ({"not": {"field": "country", "op": "is", "value": "PL"}}, True),
    ({"field": "attributes.tags", "op": "has_none", "value": ["vip"]}, True),
    ({"field": "attributes.tags", "op": "has_any", "value": ["vip"]}, False),
    ({"field": "summary.average_order_value", "op": "lt", "value": 10}, False),
    ({"field": "loyalty.club.points_balance", "op": "lt", "value": 10}, True),  # no program row: balance 0
    ({"field": "loyalty.club.tier", "op": "is_unknown"}, True),
    ({"activity": "orders", "op": "is", "value": 0}, True),
    ({"activity": "orders", "measure": {"fn": "sum", "field": "total"}, "op": "lte", "value": 0}, True),
    ({"activity": "orders", "measure": {"fn": "avg", "field": "total"}, "op": "gt", "value": -1}, False),
    ({"activity": "orders", "measure": {"fn": "avg", "field": "total"}, "op": "is_unknown"}, True),
])
def test_null_semantics(rule: Any, expected: bool) -> None:
    assert matches(rule, NOBODY, NOW) is expected


def test_text_case_and_wildcards() -> None:
    snap = CustomerSnapshot(1, profile={"country": "pl", "city": "50%_off"})
    assert matches({"field": "country", "op": "is", "value": "PL"}, snap, NOW)
    assert not matches({"field": "country", "op": "is", "value": "PL", "case_sensitive": True}, snap, NOW)
    assert matches({"field": "city", "op": "starts_with", "value": "50%"}, snap, NOW)
    assert not matches({"field": "city", "op": "starts_with", "value": "5_"}, snap, NOW)


def _local(tz: ZoneInfo, *args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


@pytest.mark.parametrize(("tz", "as_of_local", "value_local", "op", "n", "expected"), [
    # Warsaw springs forward on 2024-03-31: the local day 2024-03-30 starts at 23:00 UTC on 03-29
    ("Europe/Warsaw", (2024, 3, 31, 0, 30), (2024, 3, 30, 0, 0), "exactly_days_ago", 1, True),
    ("Europe/Warsaw", (2024, 3, 31, 0, 30), (2024, 3, 29, 23, 59), "exactly_days_ago", 1, False),
    ("Europe/Warsaw", (2024, 3, 31, 23, 59), (2024, 3, 1, 0, 0), "exactly_days_ago", 30, True),
    ("Europe/Warsaw", (2024, 3, 31, 23, 59), (2024, 3, 1, 0, 0), "less_than_days_ago", 30, False),
    ("Europe/Warsaw", (2024, 3, 31, 23, 59), (2024, 3, 1, 0, 0), "less_than_days_ago", 31, True),
    ("Europe/Warsaw", (2024, 3, 31, 23, 59), (2024, 2, 29, 23, 59), "more_than_days_ago", 30, True),
    # Los Angeles falls back on 2024-11-03 (a 25 hour day)
    ("America/Los_Angeles", (2024, 11, 4, 0, 0), (2024, 11, 3, 0, 0), "exactly_days_ago", 1, True),
    ("America/Los_Angeles", (2024, 11, 4, 0, 0), (2024, 11, 3, 23, 59), "exactly_days_ago", 1, True),
    ("America/Los_Angeles", (2024, 11, 3, 23, 30), (2024, 11, 3, 0, 0), "less_than_days_ago", 1, True),
    ("America/Los_Angeles", (2024, 3, 10, 12, 0), (2024, 3, 9, 23, 59), "exactly_days_ago", 1, True),
])
def test_relative_days_in_local_time(tz: str, as_of_local: tuple[int, ...], value_local: tuple[int, ...], op: str,
                                     n: int, expected: bool) -> None:
    zone = ZoneInfo(tz)
    as_of = dt.datetime(*as_of_local, tzinfo=zone)
    snap = CustomerSnapshot(1, summary={"last_order_at": _local(zone, *value_local)})
    assert matches({"field": "summary.last_order_at", "op": op, "value": n}, snap, as_of, tz) is expected


def test_calendar_and_birthday() -> None:
    as_of = dt.datetime(2024, 3, 31, 23, 30, tzinfo=WARSAW)  # still March locally, April in UTC... no: 21:30 UTC
    snap = CustomerSnapshot(1, profile={"birthdate": dt.date(1990, 4, 1),
                                        "created_at": _local(WARSAW, 2024, 3, 1, 0, 0)})
    assert matches({"field": "profile.created_at", "op": "in_calendar", "value": "this_month"}, snap, as_of,
                   "Europe/Warsaw")
    assert matches({"field": "profile.birthdate", "op": "anniversary_within_days", "value": 1}, snap, as_of,
                   "Europe/Warsaw")
    assert not matches({"field": "profile.birthdate", "op": "anniversary_within_days", "value": 0}, snap, as_of,
                       "Europe/Warsaw")
    leap = CustomerSnapshot(1, profile={"birthdate": dt.date(2000, 2, 29)})
    feb28 = dt.datetime(2023, 2, 28, 12, tzinfo=UTC)
    assert matches({"field": "profile.birthdate", "op": "anniversary_within_days", "value": 0}, leap, feb28)


def test_window_excludes_activity_after_as_of_and_respects_last_days() -> None:
    as_of = dt.datetime(2024, 3, 31, 12, 0, tzinfo=WARSAW)
    rows = [{"status": "paid", "created_at": _local(WARSAW, 2024, 3, 1, 12, 0), "total_minor": 100},
            {"status": "paid", "created_at": _local(WARSAW, 2024, 3, 31, 12, 0, ) + dt.timedelta(microseconds=1),
             "total_minor": 100},
            {"status": "cancelled", "created_at": _local(WARSAW, 2024, 3, 20, 12, 0), "total_minor": 100}]
    snap = CustomerSnapshot(1, orders=rows)
    rule = {"activity": "orders", "window": {"last_days": 30}, "op": "is", "value": 1}
    assert matches(rule, snap, as_of, "Europe/Warsaw")  # 30 local days back, across the DST change
    assert not matches({**rule, "window": {"last_days": 29}}, snap, as_of, "Europe/Warsaw")
    assert matches({**rule, "where": [{"field": "status", "op": "is", "value": "cancelled"}]}, snap, as_of,
                   "Europe/Warsaw")


def test_money_exact_thresholds_everywhere() -> None:
    store: dict[str, list[dict[str, Any]]] = {"customers": [], "orders": [], "customer_summaries": []}
    for cid, totals in enumerate([[50000], [25000, 25000], [49999, 1], [10, 20, 20, 49950], [50001], [16667] * 3],
                                 start=1):
        store["customers"].append({"id": cid})
        for i, t in enumerate(totals):
            store["orders"].append({"id": cid * 10 + i, "customer_id": cid, "status": "paid", "total_minor": t,
                                    "created_at": dt.datetime(2024, 6, 1, tzinfo=UTC).replace(tzinfo=None)})
        store["customer_summaries"].append({"customer_id": cid, "total_spent_minor": sum(totals)})
    from rules_harness import snapshots

    backends, snaps = Backends(store), snapshots(store)
    ctx = Context(NOW, "UTC", 2, CATALOG)
    gt = check_same(validate({"field": "summary.total_spent", "op": "gt", "value": 500}, CATALOG, 2), ctx, backends,
                    snaps)
    assert gt == {5, 6}
    gte = check_same(validate({"activity": "orders", "measure": {"fn": "sum", "field": "total"}, "op": "gte",
                               "value": Decimal("500.00")}, CATALOG, 2), ctx, backends, snaps)
    assert gte == {1, 2, 3, 4, 5, 6}
    avg = check_same(validate({"activity": "orders", "measure": {"fn": "avg", "field": "total"}, "op": "gt",
                               "value": 166.67}, CATALOG, 2), ctx, backends, snaps)
    assert avg == {1, 2, 3, 5}  # customer 6: 16667 * 3 / 3 is exactly 166.67, not more


def test_sample_is_stable_and_roughly_sized() -> None:
    ctx = Context(NOW, "UTC", 2, CATALOG)
    rule = validate({"sample": {"percent": 10, "seed": "spring-holdout"}}, CATALOG)
    pred = compile_predicate(rule, ctx)
    picked = [i for i in range(1, 20001) if pred(CustomerSnapshot(i))]
    assert 1700 < len(picked) < 2300
    other = compile_predicate(validate({"sample": {"percent": 10, "seed": "other"}}, CATALOG), ctx)
    assert picked != [i for i in range(1, 20001) if other(CustomerSnapshot(i))]


def test_explain_and_requirements() -> None:
    rule = validate({"and": [{"field": "country", "op": "is_not", "value": "PL"},
                             {"activity": "events", "event": "product_viewed", "window": {"last_days": 30},
                              "op": "gte", "value": 1}]}, CATALOG)
    seen = dt.datetime(2024, 6, 10, tzinfo=UTC).replace(tzinfo=None)
    snap = CustomerSnapshot(1, profile={"country": "DE"},
                            events=[{"name": "product_viewed", "occurred_at": seen, "properties": {}}])
    ctx = Context(NOW, "UTC", 2, CATALOG)
    tree = explain(rule, snap, ctx)
    assert tree["result"] is True
    assert [c["observed"] for c in tree["children"]] == ["DE", 1]
    assert tree["children"][1]["changes_by"].startswith("2024-07-10")
    req = rule_requirements(rule, ctx)
    assert req.activities == {"events"} and req.events == {"product_viewed"} and req.time_dependent
    # the window's start, less the margin within which rows re-enter it when clocks fall back
    assert req.earliest_activity["events"] == dt.datetime(2024, 5, 13, 12, 0, tzinfo=UTC).replace(tzinfo=None)


def test_thousand_compiled_rules_answer_correctly() -> None:
    """1,000 compiled rules against one customer give the right answers (their speed is measured in bench/)."""
    ctx = Context(NOW, "UTC", 2, CATALOG)
    preds = [compile_predicate(validate({"and": [{"field": "country", "op": "in", "value": ["PL", f"X{i}"]},
                                                 {"field": "summary.total_spent", "op": "gt", "value": i}]},
                                        CATALOG), ctx) for i in range(1000)]
    snap = CustomerSnapshot(1, profile={"country": "PL"}, summary={"total_spent_minor": 50000})
    assert [i for i, p in enumerate(preds) if p(snap)] == list(range(500))
