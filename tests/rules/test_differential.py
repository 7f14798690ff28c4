"""Differential property test: predicate == batch on SQLite (SQL text on sqlite3), DuckDB and Polars."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rule_strategies import RULES
from rules_harness import ANCHOR, CATALOG, Backends, check_same, make_store, snapshots

from cohorta.rules import Context, validate

ZONES = ["Europe/Warsaw", "America/Los_Angeles", "UTC"]


@lru_cache(maxsize=8)
def _world(seed: int, tz: str) -> tuple[Backends, list]:
    store = make_store(seed, 14, tz)
    return Backends(store), snapshots(store)


AS_OF_SHIFTS = st.one_of(
    st.integers(-40 * 24, 10 * 24).map(lambda h: dt.timedelta(hours=h)),
    st.sampled_from([dt.timedelta(0), dt.timedelta(hours=22), dt.timedelta(hours=23, minutes=59, seconds=59),
                     dt.timedelta(days=-21, hours=8), dt.timedelta(days=-21, hours=9, microseconds=1)]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=RULES, seed=st.integers(0, 5), tz=st.sampled_from(ZONES), shift=AS_OF_SHIFTS)
# Polars returns Int8 months: month * 100 overflowed for April onwards until the key was computed in int64.
@example(rule={"field": "attributes.anniversary", "op": "anniversary_within_days", "value": 12}, seed=0,
         tz="Europe/Warsaw", shift=dt.timedelta(0))
# Found by this test: "has all" of three event tags and a second property condition, negated twice, nested its semi
# joins past SQLite's parser stack ("parser stack overflow").
@example(rule={"not": {"not": {"activity": "events", "event": "product_viewed", "op": "has_value", "where": [
    {"field": "properties.tags", "op": "has_all", "value": ["PL", "A1", "DE"]},
    {"field": "properties.sku", "op": "contains", "value": "PL"}]}}}, seed=0, tz="Europe/Warsaw",
    shift=dt.timedelta(0))  # fmt: skip
def test_predicate_equals_batch_everywhere(rule: dict, seed: int, tz: str, shift: dt.timedelta) -> None:
    backends, snaps = _world(seed, tz)
    parsed = validate(rule, CATALOG, 2)
    ctx = Context(ANCHOR + shift, tz, 2, CATALOG)
    check_same(parsed, ctx, backends, snaps)


def test_rules_decided_by_one_table_list_each_customer_once() -> None:
    """A rule made only of conditions on other tables reads its ids from them, not from ``customers``; a customer
    with several matching list elements (or rows) is still listed once, and an AND keeps only those all hold for."""
    backends, snaps = _world(0, "UTC")
    ctx = Context(ANCHOR, "UTC", 2, CATALOG)
    tags = sorted({row["value_string"] for row in backends.store["customer_attribute_values"]
                   if row["name"] == "tags" and row["value_string"] is not None})
    several = [r["customer_id"] for r in backends.store["customer_attribute_values"] if r["name"] == "tags"]
    assert len(several) > len(set(several))  # some customer has several tags: a plain read would repeat them
    any_tag = {"field": "attributes.tags", "op": "has_any", "value": tags}
    spent = {"field": "summary.total_spent", "op": "gte", "value": 250}
    rules = [any_tag, {"field": "attributes.tags", "op": "has_all", "value": tags[:2]},
             {"field": "attributes.tags", "op": "has_value"}, spent, {"and": [any_tag, spent]},
             {"and": [spent, any_tag]}, {"activity": "orders", "op": "gte", "value": 2}]
    found = [check_same(validate(rule, CATALOG, 2), ctx, backends, snaps) for rule in rules]
    assert found[0] and found[3] and found[4] == found[0] & found[3] == found[5]


def test_counts_at_the_edges_and_event_property_conditions_agree_everywhere() -> None:
    """Counts at their edges ("at least 1", "is 0", "less than 1", negated) and event property conditions, which
    become semi joins (nested when there are several): every engine gives the predicate's answer."""
    backends, snaps = _world(1, "UTC")
    ctx = Context(ANCHOR, "UTC", 2, CATALOG)
    viewed = {"activity": "events", "event": "product_viewed", "window": {"last_days": 60}}
    cheap = {"field": "properties.price", "op": "lt", "value": 5}
    a1 = {"field": "properties.sku", "op": "is", "value": "a1"}
    rules = [
        *({**viewed, "op": op, "value": value} for op, value in
          (("gte", 1), ("gt", 0), ("is", 0), ("lt", 1), ("lte", 0), ("gte", 2), ("is", 1), ("lt", 2))),
        {"not": {**viewed, "op": "is", "value": 0}},
        {**viewed, "where": [a1], "op": "gte", "value": 1},
        {**viewed, "where": [a1, cheap], "op": "gte", "value": 1},
        {**viewed, "where": [a1, cheap, {"field": "properties.tags", "op": "has_any", "value": ["sale"]}],
         "op": "gte", "value": 1},
        {"not": {**viewed, "where": [a1, cheap], "op": "gte", "value": 2}},
        {**viewed, "where": [cheap], "op": "is", "value": 0},
    ]  # fmt: skip
    found = [check_same(validate(rule, CATALOG, 2), ctx, backends, snaps) for rule in rules]
    everyone = {s.customer_id for s in snaps}
    at_least_1, more_than_0, none, below_1, at_most_0, at_least_2, exactly_1, below_2, not_none = found[:9]
    assert at_least_1 == more_than_0 == not_none and none == below_1 == at_most_0
    assert at_least_1 and none and at_least_1 | none == everyone and not at_least_1 & none
    assert at_least_2 | exactly_1 == at_least_1 and at_least_2 and exactly_1 and below_2 == none | exactly_1
    one_a1, a1_cheap, a1_cheap_sale, not_two_a1_cheap, no_cheap = found[9:]
    assert a1_cheap_sale <= a1_cheap <= one_a1 <= at_least_1 and a1_cheap and one_a1 - a1_cheap
    assert not_two_a1_cheap and no_cheap and everyone - not_two_a1_cheap <= a1_cheap
