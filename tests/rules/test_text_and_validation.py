"""Model, validation, limits, text round trip, fuzzing, ids and cycles."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from rule_strategies import RULES
from rules_harness import CATALOG

from cohorta.rules import (
    RuleError,
    assign_ids,
    find_cycle,
    json_schema,
    parse_text,
    segment_references,
    strip_ids,
    to_text,
    validate,
)
from cohorta.rules.limits import MAX_DEPTH, MAX_LIST_LENGTH, MAX_NODES
from cohorta.rules.model import Rule, walk


def problems(rule: Any, **kw: Any) -> list[tuple[str, str]]:
    with pytest.raises(RuleError) as exc:
        validate(rule, CATALOG, **kw)
    return [(p.path, p.message) for p in exc.value.problems]


def test_validation_reports_paths_and_messages() -> None:
    got = problems({"and": [
        {"field": "country", "op": "in", "value": ["PL"]},
        {"field": "profile.nope", "op": "is", "value": 1},
        {"field": "country", "op": "gt", "value": 3},
        {"field": "summary.total_spent", "op": "gt", "value": "lots"},
        {"activity": "orders", "window": {"last_days": 0}, "op": "gte", "value": 1},
        {"activity": "events", "event": "nope", "op": "gte", "value": 1},
    ]})
    paths = [p for p, _ in got]
    assert "$.and[1].field" in paths
    assert "$.and[2].op" in paths
    assert "$.and[3].value" in paths
    assert "$.and[4].window.last_days" in paths
    assert all(m for _, m in got)


def test_money_decimals_refused_with_currency() -> None:
    rule = {"field": "summary.total_spent", "op": "gt", "value": Decimal("500.001")}
    validate(rule, CATALOG)  # no currency given: shape and type only
    assert problems(rule, currency_exponent=2) == [("$.value", "amount has more than 2 decimal places")]


@pytest.mark.parametrize("bad", [
    "{", "[]", "null", "3", {}, {"and": 3}, {"field": 1, "op": "is"}, {"field": "country"},
    {"field": "country", "op": "is", "value": {"a": 1}}, {"and": [], "extra": 1},
    {"sample": {"percent": 101, "seed": "x"}}, {"sample": {"percent": 1.234, "seed": "x"}},
    {"in_segment": ""}, {"activity": "x", "op": "gte", "value": 1},
    {"activity": "orders", "measure": {"fn": "sum"}, "op": "gt", "value": 1},
    {"activity": "orders", "measure": {"fn": "sum", "field": "status"}, "op": "gt", "value": 1},
    {"activity": "orders", "window": {"calendar": "next_month"}, "op": "gt", "value": 1},
    {"field": "profile.birthdate", "op": "on", "value": "2024-13-01"},
    {"field": "country", "op": "in", "value": []},
    {"field": "country", "op": "contains", "value": ""},
    {"field": "country", "op": "has_value", "value": "x"},
    {"and": [{"field": "country", "op": "is", "value": "a", "id": "x"},
             {"field": "country", "op": "is", "value": "b", "id": "x"}]},
])
def test_malformed_rules_raise_rule_error(bad: Any) -> None:
    with pytest.raises(RuleError) as exc:
        validate(bad, CATALOG)
    assert exc.value.problems


def test_limits() -> None:
    deep: dict[str, Any] = {"field": "country", "op": "has_value"}
    for _ in range(MAX_DEPTH):
        deep = {"not": deep}
    assert any("deeper" in m for _, m in problems(deep))
    wide = {"or": [{"field": "country", "op": "has_value"}] * (MAX_NODES + 1)}
    assert any("more than" in m for _, m in problems(wide))
    long_list = {"field": "country", "op": "in", "value": ["x"] * (MAX_LIST_LENGTH + 1)}
    assert problems(long_list)
    assert problems({"field": "country", "op": "is", "value": "x" * 2000})


def test_json_schema_and_catalog_are_json() -> None:
    schema = json_schema()
    json.dumps(schema)
    assert schema["title"] == "Cohorta segment rule"
    cat = CATALOG.as_json()
    json.dumps(cat)
    paths = {f["path"] for f in cat["fields"]}
    assert {"profile.country", "summary.total_spent", "loyalty.club.tier", "attributes.tags"} <= paths


def test_assign_ids_is_deterministic_and_keeps_existing() -> None:
    rule = validate({"and": [{"field": "country", "op": "has_value", "id": "n2"},
                             {"not": {"in_segment": "a"}},
                             {"activity": "orders", "where": [{"field": "status", "op": "is", "value": "paid"}],
                              "op": "gte", "value": 1}]}, CATALOG)
    a = assign_ids(rule)
    ids = [n.id for n in walk(a.root)]
    assert ids == ["n1", "n2", "n3", "n4", "n5", "n6"]
    assert assign_ids(a) == a
    assert strip_ids(a) == strip_ids(rule)


def test_segment_references_and_cycles() -> None:
    rule = validate({"or": [{"in_segment": "a"}, {"not": {"in_segment": "b"}}]}, CATALOG)
    assert segment_references(rule) == {"a", "b"}
    assert find_cycle({"x": {"a"}, "a": {"b"}, "b": set()}) is None
    cycle = find_cycle({"x": {"a"}, "a": {"b"}, "b": {"x"}})
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"x", "a", "b"}
    assert find_cycle({"s": {"s"}}) == ["s", "s"]


EXAMPLES = [
    'country in ("PL", "DE") and summary.total_spent > 500 and summary.last_order_at more_than_days_ago 30',
    'count(events["product_viewed"] during last 30 days) >= 3',
    'sum(order_items.amount where brand is "X" during last 90 days) > 500',
    'count(orders during last 60 days) is 0',
    'not in_segment "vip" or (sample 10% seed "spring-holdout" and profile.birthdate anniversary_within_days 7)',
    'avg(orders.total during this_month) between 10 and 20.5',
    'count(points where entry is "earn" during 0 to 7 days ago) >= 1',
    'count(redemptions during from 2024-01-01 to 2024-02-01T10:00:00+01:00) = 0',
    'attributes.tags has_all ("vip", "new") case_sensitive or any() or all(country has_value)',
]


@pytest.mark.parametrize("text", EXAMPLES)
def test_text_examples_validate_and_round_trip(text: str) -> None:
    rule = validate(parse_text(text), CATALOG, 2)
    assert parse_text(to_text(rule)) == rule
    assert validate(json.dumps(rule.to_json(), default=str), CATALOG) == rule


def test_text_syntax_error_has_position() -> None:
    with pytest.raises(RuleError, match="column 9"):
        parse_text("country ist 3")


@settings(max_examples=300, deadline=None)
@given(RULES)
def test_text_round_trip(rule_json: dict[str, Any]) -> None:
    rule = validate(rule_json, CATALOG, 2)
    text = to_text(rule)
    assert strip_ids(parse_text(text)) == strip_ids(rule), text
    assert validate(rule.to_json(), CATALOG, 2) == rule


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["and", "or", "not", "field", "op", "value", "activity", "window", "country", "is", "in"]),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["and", "or", "not", "field", "op", "value", "activity", "event", "where", "window",
                         "measure", "fn", "last_days", "between", "sample", "percent", "seed", "in_segment", "id",
                         "case_sensitive", "calendar", "days_ago"]) | st.text(max_size=4), kids, max_size=5),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(JSON_VALUES)
@example({"and": None, "\u00b2": None})  # found by this test: "2" as a superscript is a digit but not a number
def test_fuzz_validate_only_raises_rule_error(value: Any) -> None:
    with contextlib.suppress(RuleError):
        validate(value, CATALOG, 2)


TOKENS = st.sampled_from(["country", "is", "in", "(", ")", '"PL"', "and", "or", "not", "3", "-1.5", "count",
                          "orders", "during", "last", "days", "sample", "%", "seed", "in_segment", ",", "between",
                          "2024-01-01", "where", "events", "[", "]", ".", "total", "sum", ">", "all", "any", "=",
                          "case_sensitive", "from", "to", "ago", "this_month", '"x"'])


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(TOKENS, max_size=20).map(" ".join)))
def test_fuzz_parse_text_only_raises_rule_error(text: str) -> None:
    try:
        rule = parse_text(text)
    except RuleError:
        return
    assert isinstance(rule, Rule)
    with contextlib.suppress(RuleError):
        validate(rule, CATALOG, 2)


def test_deep_parentheses_are_a_rule_error() -> None:
    with pytest.raises(RuleError):
        parse_text("(" * 5000 + "country has_value" + ")" * 5000)
    with pytest.raises(RuleError):
        parse_text("not " * 5000 + "country has_value")
