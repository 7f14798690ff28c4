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
def test_predicate_equals_batch_everywhere(rule: dict, seed: int, tz: str, shift: dt.timedelta) -> None:
    backends, snaps = _world(seed, tz)
    parsed = validate(rule, CATALOG, 2)
    ctx = Context(ANCHOR + shift, tz, 2, CATALOG)
    check_same(parsed, ctx, backends, snaps)
