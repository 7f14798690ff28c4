"""Explain shows money as decimal strings in the project currency; other observed values are left as they are."""

from __future__ import annotations

import datetime as dt
import json
from fractions import Fraction
from typing import Any

import pytest
from rules_harness import CATALOG

from cohorta.rules import Context, CustomerSnapshot, compile_predicate, explain, validate
from cohorta.rules.explain import money_display

UTC = dt.UTC
NOW = dt.datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
DAY = dt.datetime(2024, 6, 10, 9, 0, tzinfo=UTC).replace(tzinfo=None)  # naive UTC, as stored


def _explain(rule: Any, snap: CustomerSnapshot, exponent: int = 2) -> dict[str, Any]:
    validated = validate(rule, CATALOG, exponent)
    ctx = Context(NOW, "UTC", exponent, CATALOG)
    tree = explain(validated, snap, ctx)
    assert tree["result"] is compile_predicate(validated, ctx)(snap)  # display never changes the answer
    json.dumps(tree)  # and stays plain JSON
    return tree


SPENDER = CustomerSnapshot(
    1,
    profile={"country": "PL"},
    summary={
        "total_spent_minor": 20000,
        "order_count": 3,
        "average_order_value_minor": 6667,
        "last_order_amount_minor": 5,
        "gift_card_balance_minor": 0,
        "points_balance": 120,
    },
    orders=[
        {"status": "paid", "created_at": DAY, "total_minor": 10000},
        {"status": "fulfilled", "created_at": DAY, "total_minor": 9950},
        {"status": "cancelled", "created_at": DAY, "total_minor": 70000},
        {"status": "paid", "created_at": DAY, "total_minor": 51},
    ],
)


@pytest.mark.parametrize(
    ("field", "observed"),
    [
        ("summary.total_spent", "200.00"),
        ("summary.average_order_value", "66.67"),
        ("summary.last_order_amount", "0.05"),
        ("summary.gift_card_balance", "0.00"),
    ],
)
def test_money_fields_are_decimal_strings(field: str, observed: str) -> None:
    tree = _explain(
        {"field": field, "op": "gte", "value": 0.01 if field != "summary.gift_card_balance" else 0}, SPENDER
    )
    assert tree["observed"] == observed


def test_money_threshold_reads_like_the_rule() -> None:
    tree = _explain(
        {
            "and": [
                {"field": "summary.total_spent", "op": "gt", "value": 200},
                {"field": "summary.total_spent", "op": "is_not", "value": 200.0},
            ]
        },
        SPENDER,
    )
    first, second = tree["children"]
    assert (first["observed"], first["result"]) == ("200.00", False)  # 200.00 is not more than 200
    assert (second["observed"], second["result"]) == ("200.00", False)  # negations show the value too


def test_missing_money_stays_missing() -> None:
    tree = _explain({"field": "summary.average_order_value", "op": "is_unknown"}, CustomerSnapshot(2))
    assert tree["observed"] is None and tree["result"] is True


@pytest.mark.parametrize(
    ("rule", "observed"),
    [
        ({"field": "summary.order_count", "op": "gte", "value": 3}, 3),
        ({"field": "loyalty.points_balance", "op": "gt", "value": 100}, 120),
        ({"field": "profile.country", "op": "in", "value": ["PL"]}, "PL"),
        ({"activity": "orders", "op": "gte", "value": 3}, 3),  # a count is a count, even of orders
    ],
)
def test_non_money_values_unchanged(rule: Any, observed: Any) -> None:
    assert _explain(rule, SPENDER)["observed"] == observed


def test_activity_sum_of_money() -> None:
    rule = {
        "activity": "orders",
        "measure": {"fn": "sum", "field": "total"},
        "window": {"last_days": 30},
        "op": "gt",
        "value": 200,
    }
    tree = _explain(rule, SPENDER)
    # paid and fulfilled orders only: 100.00 + 99.50 + 0.51
    assert (tree["observed"], tree["rows"], tree["result"]) == ("200.01", 3, True)
    nothing = _explain({**rule, "window": {"last_days": 1}}, SPENDER)
    assert (nothing["observed"], nothing["rows"], nothing["result"]) == ("0.00", 0, False)


def test_activity_min_max_avg_of_money() -> None:
    base = {"activity": "orders", "window": {"last_days": 30}, "op": "has_value"}
    observed = {
        fn: _explain({**base, "measure": {"fn": fn, "field": "total"}}, SPENDER)["observed"]
        for fn in ("min", "max", "avg")
    }
    # avg of 10000, 9950 and 51 minor units is 6667 exactly
    assert observed == {"min": "0.51", "max": "100.00", "avg": "66.67"}
    empty = _explain({**base, "window": {"last_days": 1}, "measure": {"fn": "max", "field": "total"}}, SPENDER)
    assert empty["observed"] is None


def test_order_item_money_and_quantity() -> None:
    snap = CustomerSnapshot(
        3,
        order_items=[
            {
                "ordered_at": DAY,
                "status": "paid",
                "brand": "Leaf",
                "quantity": 2,
                "unit_price_minor": 2995,
                "amount_minor": 5990,
            },
            {
                "ordered_at": DAY,
                "status": "paid",
                "brand": "Leaf",
                "quantity": 1,
                "unit_price_minor": 1000,
                "amount_minor": 1000,
            },
        ],
    )
    base = {
        "activity": "order_items",
        "where": [{"field": "brand", "op": "is", "value": "leaf"}],
        "op": "gt",
        "value": 0,
    }
    assert _explain({**base, "measure": {"fn": "sum", "field": "amount"}}, snap)["observed"] == "69.90"
    # an average that is not a whole number of minor units keeps its extra digits: (2995 + 1000) / 2 = 1997.5
    assert _explain({**base, "measure": {"fn": "avg", "field": "unit_price"}}, snap)["observed"] == "19.975"
    assert _explain({**base, "measure": {"fn": "sum", "field": "quantity"}}, snap)["observed"] == 3


def test_avg_of_points_is_still_a_number() -> None:
    snap = CustomerSnapshot(
        4,
        loyalty_transactions=[
            {"type": "points", "program": "club", "entry": "earn", "points": p, "occurred_at": DAY} for p in (10, 15)
        ],
    )
    tree = _explain({"activity": "points", "measure": {"fn": "avg", "field": "points"}, "op": "gt", "value": 12}, snap)
    assert tree["observed"] == 12.5 and tree["result"] is True


@pytest.mark.parametrize(
    ("minor", "exponent", "shown"),
    [
        (20000, 2, "200.00"),
        (-150, 2, "-1.50"),
        (0, 2, "0.00"),
        (500, 0, "500"),
        (1234, 3, "1.234"),
        (Fraction(10, 3), 2, "0.033333"),
        (Fraction(201, 2), 2, "1.005"),
        (Fraction(6, 2), 2, "0.03"),
        (Fraction(3, 2), 0, "1.5"),
        (None, 2, None),
        (20000, None, 20000),
    ],
)
def test_money_display(minor: Any, exponent: int | None, shown: Any) -> None:
    assert money_display(minor, exponent) == shown


def test_other_currency_exponents() -> None:
    snap = CustomerSnapshot(5, summary={"total_spent_minor": 1500})
    assert _explain({"field": "summary.total_spent", "op": "gt", "value": 1000}, snap, 0)["observed"] == "1500"
    assert _explain({"field": "summary.total_spent", "op": "gt", "value": 1}, snap, 3)["observed"] == "1.500"


def test_explain_change_instants_are_exact_not_late() -> None:
    """``changes_by`` once said the next midnight for a calendar window, later than an order arriving that day."""
    import datetime as dt

    from cohorta.rules import Catalog, Context, CustomerSnapshot, explain, validate

    catalog = Catalog()
    rule = validate({"activity": "orders", "window": {"calendar": "this_month"}, "op": "gte", "value": 1}, catalog, 2)
    order = {"status": "paid", "created_at": dt.datetime(2026, 2, 20, 10, tzinfo=dt.UTC), "total_minor": 100}
    snapshot = CustomerSnapshot(1, orders=[order])
    tree = explain(rule, snapshot, Context(dt.datetime(2026, 2, 20, tzinfo=dt.UTC), "UTC", 2, catalog))
    assert tree["changes_by"] == "2026-02-20T10:00:00"

    window = validate({"activity": "orders", "window": {"last_days": 30}, "op": "gte", "value": 1}, catalog, 2)
    old_order = {**order, "created_at": dt.datetime(2026, 2, 27, 12, tzinfo=dt.UTC)}
    tree = explain(
        window,
        CustomerSnapshot(1, orders=[old_order]),
        Context(dt.datetime(2026, 3, 20, 12, tzinfo=dt.UTC), "Europe/Warsaw", 2, catalog),
    )
    # The order leaves the window an hour before noon UTC on 29 March: that day is 23 hours long in Warsaw.
    assert tree["changes_by"] == "2026-03-29T11:00:00.000001"
