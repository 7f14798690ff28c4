"""next_change: the answer never changes before the returned instant (property), and it is exact where cheap."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from rule_strategies import FIELDS, RULES, activity, condition
from rules_harness import ANCHOR, CATALOG, make_store, snapshots

from cohorta.rules import (
    Catalog,
    Context,
    CustomerSnapshot,
    RowEffect,
    Rule,
    compile_predicate,
    event_row_effect,
    kept_answer,
    loyalty_effect,
    next_change,
    order_effect,
    validate,
)
from cohorta.rules.next_change import NextChangeCache, _Walker
from cohorta.rules.plan import bind

UTC = dt.UTC
ZONES = ["Europe/Warsaw", "America/Los_Angeles", "UTC"]
US = dt.timedelta(microseconds=1)

# Eras: (the instant the generated data is centred on, shift of the data from the harness ANCHOR 2024-03-31).
# 2024-03-31 and 2026-03-29 are Warsaw's spring-forward days (LA springs forward 21 days earlier: 2024-03-10,
# 2026-03-08); 2025-10-26 is Warsaw's fall-back day (LA: 2025-11-02).
ERAS = {
    "2024": ANCHOR,
    "2026": dt.datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
    "fall": dt.datetime(2025, 10, 26, 0, 30, tzinfo=UTC),
}
AS_OF_SHIFTS = st.one_of(
    st.integers(-40 * 24, 10 * 24).map(lambda h: dt.timedelta(hours=h)),
    st.integers(-40 * 24 * 60, 10 * 24 * 60).map(lambda m: dt.timedelta(minutes=m, seconds=17)),
    st.sampled_from([
        dt.timedelta(0), dt.timedelta(minutes=29, seconds=59, microseconds=999_999), dt.timedelta(minutes=30),
        dt.timedelta(hours=22), dt.timedelta(hours=23, minutes=59, seconds=59, microseconds=999_999),
        dt.timedelta(days=-21, hours=8), dt.timedelta(days=-21, hours=9, minutes=29, seconds=59),
        dt.timedelta(days=-21, hours=9, minutes=30), dt.timedelta(days=7, hours=8),
        dt.timedelta(days=7, hours=8, minutes=29, seconds=59, microseconds=999_999),
        dt.timedelta(days=7, hours=8, minutes=30), dt.timedelta(days=7, hours=9, minutes=30),
        dt.timedelta(minutes=-30, microseconds=-1), dt.timedelta(minutes=-90),
    ]),
)


TEMPORAL_FIELDS = {f: t for f, t in FIELDS.items() if t in ("date", "datetime")}
#: Rules where time matters: relative dates and windowed activities, mixed with a few plain conditions.
TIME_RULES = st.recursive(
    st.one_of(condition(TEMPORAL_FIELDS), condition(TEMPORAL_FIELDS), activity(), activity(), condition()),
    lambda kids: st.one_of(
        st.builds(lambda xs: {"and": xs}, st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda xs: {"or": xs}, st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, kids),
    ),
    max_leaves=4,
)


def _shift(value: Any, delta: dt.timedelta) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value + delta
    if isinstance(value, dict):
        return {k: _shift(v, delta) for k, v in value.items()}
    if isinstance(value, list):
        return [_shift(v, delta) for v in value]
    return value


def _shift_snapshot(s: CustomerSnapshot, delta: dt.timedelta) -> CustomerSnapshot:
    if not delta:
        return s
    return replace(s, profile=_shift(s.profile, delta), attributes=_shift(s.attributes, delta),
                   summary=_shift(s.summary, delta), programs=_shift(s.programs, delta),
                   orders=_shift(s.orders, delta), order_items=_shift(s.order_items, delta),
                   events=_shift(s.events, delta), loyalty_transactions=_shift(s.loyalty_transactions, delta))


@lru_cache(maxsize=64)
def _world(seed: int, tz: str, era: str) -> list[CustomerSnapshot]:
    delta = ERAS[era] - ANCHOR
    return [_shift_snapshot(s, delta) for s in snapshots(make_store(seed, 8, tz))]


def _rule_days(node: Any) -> set[int]:
    """Every whole number of days named by a rule (window lengths, relative days) - to aim samples at."""
    out: set[int] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("last_days", "value") and isinstance(v, int) and not isinstance(v, bool):
                out.add(v)
            elif k == "days_ago":
                out.update(v)
            else:
                out |= _rule_days(v)
    elif isinstance(node, list):
        for v in node:
            out |= _rule_days(v)
    return out


def _times(s: CustomerSnapshot) -> Iterator[dt.datetime]:
    """Every instant stored in a snapshot (aware UTC)."""
    def walk(v: Any) -> Iterator[dt.datetime]:
        if isinstance(v, dt.datetime):
            yield v if v.tzinfo else v.replace(tzinfo=UTC)
        elif isinstance(v, dt.date):
            yield dt.datetime.combine(v, dt.time(0), tzinfo=UTC)
        elif isinstance(v, dict):
            for x in v.values():
                yield from walk(x)
        elif isinstance(v, list):
            for x in v:
                yield from walk(x)
    for part in (s.profile, s.attributes, s.summary, s.orders, s.order_items, s.events, s.loyalty_transactions):
        yield from walk(part)


def _midnights(tz: ZoneInfo, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    out: list[dt.datetime] = []
    day = start.astimezone(tz).date()
    while True:
        day += dt.timedelta(days=1)
        m = dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(UTC)
        if m >= end:
            return out
        out.append(m)


@lru_cache(maxsize=8)
def _zone_transitions(tz: ZoneInfo) -> tuple[dt.datetime, ...]:
    """Offset changes of ``tz`` from 2023 to 2028 (hour precision is enough: they happen on the hour)."""
    out = []
    t = dt.datetime(2023, 1, 1, tzinfo=UTC)
    off = t.astimezone(tz).utcoffset()
    while t.year < 2029:
        t += dt.timedelta(hours=1)
        new = t.astimezone(tz).utcoffset()
        if new != off:
            out.append(t)
        off = new
    return tuple(out)


def _transitions(tz: ZoneInfo, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    return [t for t in _zone_transitions(tz) if start <= t < end]


def _samples(rng: random.Random, snap: CustomerSnapshot, rule: Any, ctx: Context, until: dt.datetime | None,
             ) -> list[dt.datetime]:
    """Instants in [as_of, until) (until None: as_of + 400 days) to compare with the answer at as_of."""
    a = ctx.as_of
    end = until or a + dt.timedelta(days=400)
    pts = [a, a + US, a + dt.timedelta(seconds=1), end - US, end - dt.timedelta(seconds=1), a + (end - a) / 2]
    mids = _midnights(ctx.tz, a, end)
    if len(mids) > 16:
        mids = mids[:6] + mids[-4:] + rng.sample(mids[6:-4], 6)
    for m in mids:
        pts += [m, m - US]
    jumps = _transitions(ctx.tz, a, min(end, a + dt.timedelta(days=120)))
    for j in jumps:
        pts += [j, j - US, j + dt.timedelta(hours=1), j + dt.timedelta(hours=1) - US]
    days = sorted(_rule_days(rule))
    for t in _times(snap):
        shifted = [t] + [t + dt.timedelta(days=n) for n in days] + [t + dt.timedelta(days=n, hours=h)
                                                                    for n in days for h in (-1, 1)]
        for x in shifted:
            pts += [x, x + US, x - US]
    pts += [a + (end - a) * rng.random() for _ in range(6)]
    return sorted({p for p in pts if a <= p < end})


def _instant_near(rng: random.Random, ctx: Context, days: list[int]) -> dt.datetime:
    """A naive UTC instant near ``as_of``: often on a boundary (a local midnight, N days from as_of, a DST change)."""
    a = ctx.as_of
    kind = rng.random()
    if kind < 0.25:
        t = a + dt.timedelta(hours=rng.uniform(-100 * 24, 40 * 24))
    elif kind < 0.55:  # a local midnight (or a microsecond around it) some days away
        n = rng.choice(days) if days and rng.random() < 0.7 else rng.randint(0, 60)
        day = ctx.today + dt.timedelta(days=rng.choice([-n, -n - 1, -n + 1, n, n + 1]))
        t = dt.datetime.combine(day, dt.time(0), tzinfo=ctx.tz).astimezone(UTC)
        t += rng.choice([dt.timedelta(0), US, -US, dt.timedelta(hours=rng.randint(1, 23))])
    elif kind < 0.8:  # N x 24 h (or N days of wall clock) before or after as_of, give or take a little
        n = rng.choice(days) if days and rng.random() < 0.7 else rng.randint(0, 60)
        base = rng.choice([a - dt.timedelta(days=n), a + dt.timedelta(days=n),
                           (a.astimezone(ctx.tz) - dt.timedelta(days=n)).astimezone(UTC)])
        t = base + rng.choice([dt.timedelta(0), US, -US, dt.timedelta(minutes=rng.randint(-90, 90))])
    else:  # close to as_of
        t = a + rng.choice([US, -US, dt.timedelta(seconds=rng.randint(-3600, 3600)),
                            dt.timedelta(hours=rng.randint(-30, 30))])
    return t.astimezone(UTC).replace(tzinfo=None)


def _dense_snapshot(rng: random.Random, cid: int, ctx: Context, days: list[int]) -> CustomerSnapshot:
    """A customer whose data sits on the boundaries around ``as_of`` (the harness stores are sparse there)."""
    def at() -> dt.datetime:
        return _instant_near(rng, ctx, days)

    def day() -> dt.date:
        d = at().date()
        if rng.random() < 0.1:
            return dt.date(2000, 2, 29)
        return d.replace(year=rng.choice([1990, 2000, d.year])) if not (d.month == 2 and d.day == 29) else d

    orders: list[dict[str, Any]] = [
        {"status": rng.choice(["paid", "paid", "fulfilled", "cancelled"]), "created_at": at(),
         "total_minor": rng.choice([100, 25000, 50000])} for _ in range(rng.randint(0, 5))]
    items = [{"status": o["status"], "ordered_at": o["created_at"], "sku": rng.choice(["A1", "B2"]),
              "brand": rng.choice(["X", "Y"]), "category": "shoes", "quantity": rng.randint(1, 3),
              "unit_price_minor": 1000, "amount_minor": rng.choice([1000, 50000])} for o in orders]
    events = [{"name": rng.choice(["product_viewed", "app_opened"]), "occurred_at": at(),
               "properties": {"sku": rng.choice(["A1", "B2"]), "price": rng.choice([1.5, 3.0]),
                              "tags": ["sale"], "platform": rng.choice(["ios", "web"])}}
              for _ in range(rng.randint(0, 5))]
    loyalty = [{"type": rng.choice(["points", "redemption"]), "program": rng.choice(["club", "kids"]),
                "entry": "earn", "points": rng.choice([10, 100]), "reward": "mug", "reason": "purchase",
                "occurred_at": at()} for _ in range(rng.randint(0, 4))]
    counted: list[dt.datetime] = [o["created_at"] for o in orders if o["status"] != "cancelled"]
    return CustomerSnapshot(
        customer_id=cid,
        profile={"country": "PL", "birthdate": day(), "created_at": at(), "member_since": at()},
        attributes={"anniversary": day(), "last_login": at(), "tags": ["vip"], "score": 0.3, "vip": True},
        summary={"order_count": len(counted), "total_spent_minor": 50000, "last_order_at": max(counted, default=None),
                 "first_order_at": min(counted, default=None), "last_order_amount_minor": 100},
        programs={"club": {"points_balance": 100, "tier": "gold"}},
        orders=orders, order_items=items, events=events, loyalty_transactions=loyalty,
    )


def _predicates_at(parsed: Rule, ctx: Context) -> Callable[[dt.datetime], Callable[[CustomerSnapshot], bool]]:
    """The rule's predicate compiled at an instant, once per instant."""
    compiled: dict[dt.datetime, Callable[[CustomerSnapshot], bool]] = {}

    def pred(t: dt.datetime) -> Callable[[CustomerSnapshot], bool]:
        if t not in compiled:
            compiled[t] = compile_predicate(parsed, ctx.at(t))
        return compiled[t]

    return pred


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=st.one_of(RULES, TIME_RULES, TIME_RULES), seed=st.integers(0, 5), tz=st.sampled_from(ZONES),
       era=st.sampled_from(sorted(ERAS)),
       shift=AS_OF_SHIFTS, sample_seed=st.integers(0, 2**32))
@example(rule={"activity": "orders", "window": {"last_days": 30}, "op": "gte", "value": 1}, seed=0,
         tz="Europe/Warsaw", era="2026", shift=dt.timedelta(0), sample_seed=0)
@example(rule={"activity": "events", "event": "app_opened", "window": {"last_days": 7}, "op": "gte", "value": 1},
         seed=1, tz="America/Los_Angeles", era="fall", shift=dt.timedelta(days=7, hours=8), sample_seed=0)
@example(rule={"field": "profile.birthdate", "op": "anniversary_within_days", "value": 3}, seed=2,
         tz="Europe/Warsaw", era="2024", shift=dt.timedelta(0), sample_seed=0)
def test_answer_never_changes_before_next_change(rule: dict, seed: int, tz: str, era: str, shift: dt.timedelta,
                                                 sample_seed: int) -> None:
    rnd = random.Random(sample_seed)
    parsed = validate(rule, CATALOG, 2)
    ctx = Context(ERAS[era] + shift, tz, 2, CATALOG)
    pred = _predicates_at(parsed, ctx)

    days = sorted(_rule_days(rule))
    dense = [_dense_snapshot(rnd, 100 + i, ctx, days) for i in range(4)]
    for snap in _world(seed, tz, era)[:4] + dense:
        at = next_change(parsed, snap, ctx)
        assert at is None or (at.utcoffset() == dt.timedelta(0) and at > ctx.as_of), (at, ctx.as_of)
        before = pred(ctx.as_of)(snap)
        for t in _samples(rnd, snap, rule, ctx, at):
            assert pred(t)(snap) == before, (rule, ctx.as_of, at, t, snap)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=st.one_of(RULES, TIME_RULES, TIME_RULES), seed=st.integers(0, 5), tz=st.sampled_from(ZONES),
       era=st.sampled_from(sorted(ERAS)), shift=AS_OF_SHIFTS, sample_seed=st.integers(0, 2**32))
@example(rule={"and": [{"activity": "orders", "window": {"last_days": 30}, "op": "gte", "value": 2},
                       {"field": "profile.country", "op": "is", "value": "PL"}]},
         seed=0, tz="UTC", era="2024", shift=dt.timedelta(0), sample_seed=0)
def test_walk_claims_exact_only_where_the_answer_flips(rule: dict, seed: int, tz: str, era: str,
                                                       shift: dt.timedelta, sample_seed: int) -> None:
    """Where one walk of the rule says its instant is exact (so next_change skips refining it), the answer is the
    same a microsecond before and different at that instant."""
    rnd = random.Random(sample_seed)
    parsed = validate(rule, CATALOG, 2)
    ctx = Context(ERAS[era] + shift, tz, 2, CATALOG)
    bound = bind(parsed, ctx)
    cache = NextChangeCache()
    days = sorted(_rule_days(rule))
    for snap in _world(seed, tz, era)[:4] + [_dense_snapshot(rnd, 100 + i, ctx, days) for i in range(4)]:
        value, when, exact = _Walker(snap, ctx, cache).visit(parsed.root, bound)
        assert value == compile_predicate(parsed, ctx)(snap)
        if exact and when is not None:
            at = when.replace(tzinfo=UTC)
            assert compile_predicate(parsed, ctx.at(at - US))(snap) == value, (rule, ctx.as_of, at, snap)
            assert compile_predicate(parsed, ctx.at(at))(snap) != value, (rule, ctx.as_of, at, snap)


@st.composite
def _count(draw: st.DrawFn) -> dict[str, Any]:
    """A count compared with a threshold (the rules whose answers :func:`kept_answer` keeps), over any window."""
    rule = draw(activity())
    rule.pop("measure", None)
    rule["op"] = draw(st.sampled_from(["gte", "gt", "lt", "lte", "is"]))
    rule["value"] = draw(st.integers(0, 3))
    rule["window"] = draw(st.sampled_from([{"last_days": 3}, {"last_days": 30}, {"calendar": "this_month"},
                                           {"calendar": "this_week"}, {"calendar": "last_month"}, None,
                                           {"days_ago": [2, 9]}]))
    if rule["window"] is None:
        del rule["window"]
    return rule


COUNT_RULES = st.recursive(
    st.one_of(_count(), _count(), condition(), condition(TEMPORAL_FIELDS)),
    lambda kids: st.one_of(
        st.builds(lambda xs: {"and": xs}, st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda xs: {"or": xs}, st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, kids),
    ),
    max_leaves=4,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=st.one_of(COUNT_RULES, COUNT_RULES, TIME_RULES, RULES), seed=st.integers(0, 5),
       tz=st.sampled_from(ZONES), era=st.sampled_from(sorted(ERAS)), shift=AS_OF_SHIFTS,
       sample_seed=st.integers(0, 2**32))
@example(rule={"activity": "events", "event": "app_opened", "window": {"last_days": 3}, "op": "gte", "value": 2},
         seed=1, tz="Europe/Warsaw", era="fall", shift=dt.timedelta(hours=-30), sample_seed=0)
def test_a_kept_answer_stays_until_a_row_arrives(rule: dict, seed: int, tz: str, era: str, shift: dt.timedelta,
                                                 sample_seed: int) -> None:
    """Where kept_answer says a customer's answer stays (no row of theirs arrives or re-enters a window), it is the
    same at every instant sampled over the next 400 days, and the walk agrees that it never changes."""
    rnd = random.Random(sample_seed)
    parsed = validate(rule, CATALOG, 2)
    ctx = Context(ERAS[era] + shift, tz, 2, CATALOG)
    kept = kept_answer(parsed, ctx)
    if kept is None:
        return
    pred = _predicates_at(parsed, ctx)
    days = sorted(_rule_days(rule))
    for snap in _world(seed, tz, era)[:4] + [_dense_snapshot(rnd, 100 + i, ctx, days) for i in range(6)]:
        answer = pred(ctx.as_of)(snap)
        if not kept.keeps(snap, answer):
            continue
        event(f"kept {answer}")
        assert next_change(parsed, snap, ctx) is None, (rule, ctx.as_of, snap)
        for t in _samples(rnd, snap, rule, ctx, None):
            assert pred(t)(snap) == answer, (rule, ctx.as_of, t, snap)


def _views(*times: dt.datetime) -> CustomerSnapshot:
    return CustomerSnapshot(customer_id=1, profile={"country": "PL"}, events=[
        {"name": "product_viewed", "occurred_at": t.astimezone(UTC).replace(tzinfo=None), "properties": {}}
        for t in times])  # fmt: skip


VIEWED_3_TIMES = {"activity": "events", "event": "product_viewed", "window": {"last_days": 30}, "op": "gte",
                  "value": 3}


ORDERED_IN_90_DAYS = {"activity": "orders", "window": {"last_days": 90}, "op": "gte", "value": 1}


@pytest.mark.parametrize(("rule", "answers", "deciding"), [
    (VIEWED_3_TIMES, {False}, None),
    ({"not": VIEWED_3_TIMES}, {True}, None),
    ({**VIEWED_3_TIMES, "op": "lt"}, {True}, None),
    ({**VIEWED_3_TIMES, "window": {"calendar": "this_month"}}, {False}, None),
    ({**VIEWED_3_TIMES, "window": {"between": ["2026-01-01", "2026-12-31"]}}, {False, True}, None),
    ({"and": [VIEWED_3_TIMES, {"field": "profile.country", "op": "is", "value": "PL"}, {"in_segment": "seg-a"}]},
     {False}, False),
    ({"or": [VIEWED_3_TIMES, ORDERED_IN_90_DAYS]}, {False}, None),
    # moves both ways, but a false "viewed" keeps the and false
    ({"and": [VIEWED_3_TIMES, {"not": ORDERED_IN_90_DAYS}]}, set(), False),
    ({"not": {"and": [VIEWED_3_TIMES, {"not": ORDERED_IN_90_DAYS}]}}, set(), True),
    ({"or": [VIEWED_3_TIMES, {"field": "profile.birthdate", "op": "anniversary_within_days", "value": 7}]}, None,
     None),
    # rows only enter and leave from the window's start on: a customer with none since then keeps either answer
    ({**VIEWED_3_TIMES, "window": {"days_ago": [7, 14]}}, {False, True}, None),
    ({"and": [VIEWED_3_TIMES, {**VIEWED_3_TIMES, "window": {"days_ago": [7, 14]}}]}, {False}, False),
    ({**VIEWED_3_TIMES, "window": {"calendar": "last_month"}}, None, None),
    ({**VIEWED_3_TIMES, "op": "between", "value": [1, 3]}, None, None),
    ({"activity": "events", "event": "product_viewed", "window": {"last_days": 30},
      "where": [{"field": "properties.seen_at", "op": "less_than_days_ago", "value": 3}], "op": "gte", "value": 1},
     None, None),
])  # fmt: skip
def test_kept_answers_by_rule_shape(rule: dict, answers: set[bool] | None, deciding: bool | None) -> None:
    catalog = Catalog(event_definitions={"product_viewed": {"seen_at": "datetime"}})
    kept = kept_answer(validate(rule, catalog, 2), Context(_at(2026, 6, 15), "UTC", 2, catalog))
    assert (None if kept is None else set(kept.answers)) == answers
    assert (None if kept is None else kept.deciding) == deciding


def test_an_and_moving_both_ways_stays_false_while_a_member_stays_false() -> None:
    """"Loyalty member, no order in 60 days, and 2 newsletters opened in 30 days or VIP" (the benchmark's nested
    rule) rises when an order leaves its window and falls when an open does. Kept out: a customer who is not a
    loyalty member, or who opened too few newsletters (none to arrive). Walked: one kept out only by a recent order."""
    rule = validate({"and": [
        {"field": "attributes.vip", "op": "is", "value": True},
        {"not": ORDERED_IN_90_DAYS},
        {"or": [{"activity": "events", "event": "app_opened", "window": {"last_days": 30}, "op": "gte", "value": 2},
                {"field": "profile.country", "op": "is", "value": "DE"}]},
    ]}, CATALOG, 2)  # fmt: skip
    as_of = _at(2026, 6, 15)
    ctx = Context(as_of, "UTC", 2, CATALOG)
    kept = kept_answer(rule, ctx)
    assert kept is not None and not kept.answers
    predicate = compile_predicate(rule, ctx)

    def customer(vip: bool, opens: int, order_days_ago: int | None) -> CustomerSnapshot:
        orders = [] if order_days_ago is None else [
            {"status": "paid", "created_at": (as_of - dt.timedelta(days=order_days_ago)).replace(tzinfo=None),
             "total_minor": 100}]  # fmt: skip
        return CustomerSnapshot(customer_id=1, profile={"country": "PL"}, attributes={"vip": vip}, orders=orders,
                                events=[{"name": "app_opened", "properties": {},
                                         "occurred_at": (as_of - dt.timedelta(days=d + 1)).replace(tzinfo=None)}
                                        for d in range(opens)])  # fmt: skip

    for snap, keeps in [
        (customer(vip=False, opens=5, order_days_ago=None), True),
        (customer(vip=True, opens=1, order_days_ago=None), True),
        (customer(vip=True, opens=1, order_days_ago=10), True),
        (customer(vip=True, opens=5, order_days_ago=85), False),  # in once the order leaves its window
    ]:
        assert predicate(snap) is False
        assert kept.keeps(snap, False) is keeps
        assert (next_change(rule, snap, ctx) is None) is keeps
    assert not kept.keeps(customer(vip=True, opens=5, order_days_ago=None), True)


def test_a_customer_keeps_an_answer_only_without_rows_to_arrive_or_re_enter() -> None:
    """Viewed twice in 30 days in Warsaw, days before the clocks fall back (2025-10-26): "at least 3 times" stays
    false, unless a view lies after as_of (it arrives) or just below the window's start (it re-enters when the
    window's start jumps back an hour)."""
    as_of = _at(2025, 10, 20, 12)
    ctx = Context(as_of, "Europe/Warsaw", 2, CATALOG)
    rule = validate(VIEWED_3_TIMES, CATALOG, 2)
    kept = kept_answer(rule, ctx)
    assert kept is not None
    inside = [as_of - dt.timedelta(days=d) for d in (1, 5)]
    assert kept.keeps(_views(*inside), False) and next_change(rule, _views(*inside), ctx) is None
    assert not kept.keeps(_views(*inside), True)  # a member is planned as before
    arriving = _views(*inside, as_of + dt.timedelta(days=2))
    assert not kept.keeps(arriving, False) and next_change(rule, arriving, ctx) is not None
    below = _views(*inside, as_of - dt.timedelta(days=30, hours=1))
    assert compile_predicate(rule, ctx)(below) is False
    assert not kept.keeps(below, False)
    utc = Context(as_of, "UTC", 2, CATALOG)  # no jump in UTC: a row below the start has left for good
    kept_utc = kept_answer(rule, utc)
    assert kept_utc is not None and kept_utc.keeps(below, False) and next_change(rule, below, utc) is None


# -- exact instants ---------------------------------------------------------------------------------------------------


def _at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def _local_midnight(day: dt.date, tz: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def _exact(rule: dict, snap: CustomerSnapshot, as_of: dt.datetime, tz: str, expected: dt.datetime | None) -> None:
    parsed: Rule = validate(rule, CATALOG, 2)
    ctx = Context(as_of, tz, 2, CATALOG)
    got = next_change(parsed, snap, ctx)
    assert got == expected
    if expected is not None:
        now = compile_predicate(parsed, ctx)(snap)
        assert compile_predicate(parsed, ctx.at(expected - US))(snap) == now
        assert compile_predicate(parsed, ctx.at(expected))(snap) != now


D = dt.date
LAST_ORDER = CustomerSnapshot(1, summary={"last_order_at": _at(2026, 2, 10, 22, 30)})  # 23:30 in Warsaw
BIRTHDAY = CustomerSnapshot(2, profile={"birthdate": D(1990, 3, 5)})
LEAPLING = CustomerSnapshot(3, profile={"birthdate": D(2000, 2, 29)})


@pytest.mark.parametrize(("rule", "snap", "as_of", "tz", "expected"), [
    # the local midnight starting day 31 after the last order's local day (Feb 10 in Warsaw)
    ({"field": "summary.last_order_at", "op": "more_than_days_ago", "value": 30}, LAST_ORDER, _at(2026, 2, 20, 12),
     "Europe/Warsaw", _local_midnight(D(2026, 3, 13), "Europe/Warsaw")),
    # in Los Angeles the same instant is Feb 10, 14:30 local
    ({"field": "summary.last_order_at", "op": "more_than_days_ago", "value": 30}, LAST_ORDER, _at(2026, 2, 20, 12),
     "America/Los_Angeles", _local_midnight(D(2026, 3, 13), "America/Los_Angeles")),
    # in UTC it is Feb 10 as well
    ({"field": "summary.last_order_at", "op": "more_than_days_ago", "value": 30}, LAST_ORDER, _at(2026, 2, 20, 12),
     "UTC", _at(2026, 3, 13)),
    ({"field": "summary.last_order_at", "op": "less_than_days_ago", "value": 7}, LAST_ORDER, _at(2026, 2, 12),
     "Europe/Warsaw", _local_midnight(D(2026, 2, 17), "Europe/Warsaw")),
    ({"field": "summary.last_order_at", "op": "exactly_days_ago", "value": 3}, LAST_ORDER, _at(2026, 2, 11),
     "UTC", _at(2026, 2, 13)),
    ({"field": "summary.last_order_at", "op": "exactly_days_ago", "value": 3}, LAST_ORDER, _at(2026, 2, 13, 5),
     "UTC", _at(2026, 2, 14)),
    ({"field": "summary.last_order_at", "op": "in_next_days", "value": 5}, LAST_ORDER, _at(2026, 2, 1),
     "UTC", _at(2026, 2, 5)),
    ({"field": "summary.last_order_at", "op": "in_next_days", "value": 5}, LAST_ORDER, _at(2026, 2, 6),
     "UTC", _at(2026, 2, 11)),
    ({"field": "summary.last_order_at", "op": "in_calendar", "value": "last_month"}, LAST_ORDER, _at(2026, 2, 20),
     "UTC", _at(2026, 3, 1)),
    ({"field": "summary.last_order_at", "op": "in_calendar", "value": "last_month"}, LAST_ORDER, _at(2026, 3, 20),
     "UTC", _at(2026, 4, 1)),
    ({"field": "summary.last_order_at", "op": "in_calendar", "value": "next_week"}, LAST_ORDER, _at(2026, 1, 20),
     "UTC", _at(2026, 2, 2)),  # Feb 10 2026 is in the week of Feb 9: it is "next week" from Feb 2 to Feb 8
    ({"field": "profile.birthdate", "op": "anniversary_within_days", "value": 7}, BIRTHDAY, _at(2026, 2, 20),
     "UTC", _at(2026, 2, 26)),
    ({"field": "profile.birthdate", "op": "anniversary_within_days", "value": 7}, BIRTHDAY, _at(2026, 3, 1),
     "Europe/Warsaw", _local_midnight(D(2026, 3, 6), "Europe/Warsaw")),
    ({"field": "profile.birthdate", "op": "anniversary_this_month"}, BIRTHDAY, _at(2026, 1, 31, 23, 30),
     "Europe/Warsaw", _local_midnight(D(2026, 3, 1), "Europe/Warsaw")),  # already February in Warsaw
    ({"field": "profile.birthdate", "op": "anniversary_this_month"}, BIRTHDAY, _at(2026, 2, 28, 23, 30),
     "Europe/Warsaw", _local_midnight(D(2026, 4, 1), "Europe/Warsaw")),  # already March in Warsaw
    ({"field": "profile.birthdate", "op": "anniversary_this_month"}, BIRTHDAY, _at(2026, 5, 2),
     "UTC", _at(2027, 3, 1)),
    # Feb 29 counts on Feb 28 in other years
    ({"field": "profile.birthdate", "op": "anniversary_within_days", "value": 0}, LEAPLING, _at(2026, 2, 20),
     "UTC", _at(2026, 2, 28)),
    ({"field": "profile.birthdate", "op": "anniversary_within_days", "value": 0}, LEAPLING, _at(2026, 2, 28, 12),
     "UTC", _at(2026, 3, 1)),
    ({"field": "profile.birthdate", "op": "anniversary_within_days", "value": 1}, LEAPLING, _at(2028, 2, 28, 12),
     "UTC", _at(2028, 3, 1)),
    # not time-dependent, or nothing to change
    ({"field": "country", "op": "is", "value": "PL"}, LAST_ORDER, _at(2026, 2, 20), "UTC", None),
    ({"field": "profile.birthdate", "op": "more_than_days_ago", "value": 3}, LAST_ORDER, _at(2026, 2, 20), "UTC",
     None),
    ({"field": "summary.last_order_at", "op": "more_than_days_ago", "value": 3}, LAST_ORDER, _at(2026, 2, 20),
     "UTC", None),  # already true, stays true
    ({"field": "profile.birthdate", "op": "anniversary_within_days", "value": 400}, BIRTHDAY, _at(2026, 2, 20),
     "UTC", None),
    # a constant false child decides an "and"
    ({"and": [{"field": "country", "op": "is", "value": "PL"},
              {"field": "summary.last_order_at", "op": "more_than_days_ago", "value": 30}]},
     LAST_ORDER, _at(2026, 2, 20), "UTC", None),
    ({"or": [{"field": "country", "op": "is", "value": "PL"},
             {"not": {"field": "summary.last_order_at", "op": "more_than_days_ago", "value": 30}}]},
     LAST_ORDER, _at(2026, 2, 20), "UTC", _at(2026, 3, 13)),
])
def test_relative_dates_exact(rule: dict, snap: CustomerSnapshot, as_of: dt.datetime, tz: str,
                              expected: dt.datetime | None) -> None:
    _exact(rule, snap, as_of, tz, expected)


def _orders(*times: dt.datetime, status: str = "paid") -> CustomerSnapshot:
    return CustomerSnapshot(9, orders=[{"status": status, "created_at": t.replace(tzinfo=None), "total_minor": 100}
                                       for t in times])


ANY_ORDER = {"activity": "orders", "op": "gte", "value": 1}


@pytest.mark.parametrize(("window", "snap", "as_of", "tz", "expected"), [
    # last_days: the row leaves when the window start (wall clock minus N days) passes it
    ({"last_days": 30}, _orders(_at(2026, 1, 15, 10)), _at(2026, 2, 1), "UTC",
     _at(2026, 2, 14, 10) + US),
    ({"last_days": 30}, _orders(_at(2026, 2, 25, 12)), _at(2026, 3, 20, 12), "Europe/Warsaw",
     _at(2026, 3, 27, 12) + US),
    # ... across the spring-forward day: 13:00 CET on Mar 5 leaves at 13:00 CEST on Apr 4 (11:00 UTC)
    ({"last_days": 30}, _orders(_at(2026, 3, 5, 12)), _at(2026, 3, 25, 12), "Europe/Warsaw",
     _at(2026, 4, 4, 11) + US),
    ({"last_days": 30}, _orders(_at(2026, 2, 20, 20)), _at(2026, 3, 1), "America/Los_Angeles",
     _at(2026, 3, 22, 19) + US),
    # an order dated after as_of arrives at its instant
    ({"last_days": 30}, _orders(_at(2026, 2, 5, 7, 30)), _at(2026, 2, 1), "UTC", _at(2026, 2, 5, 7, 30)),
    (None, _orders(_at(2026, 2, 5, 7, 30)), _at(2026, 2, 1), "UTC", _at(2026, 2, 5, 7, 30)),
    (None, _orders(_at(2026, 1, 5, 7, 30)), _at(2026, 2, 1), "UTC", None),
    (None, _orders(_at(2026, 2, 5, 7, 30), status="cancelled"), _at(2026, 2, 1), "UTC", None),
    ({"calendar": "this_month"}, _orders(_at(2026, 2, 10)), _at(2026, 2, 20), "Europe/Warsaw",
     _local_midnight(D(2026, 3, 1), "Europe/Warsaw")),
    ({"calendar": "last_month"}, _orders(_at(2026, 2, 10)), _at(2026, 2, 20), "UTC", _at(2026, 3, 1)),
    ({"calendar": "last_month"}, _orders(_at(2026, 2, 10)), _at(2026, 3, 20), "UTC", _at(2026, 4, 1)),
    ({"calendar": "this_week"}, _orders(_at(2026, 2, 21, 9)), _at(2026, 2, 20), "UTC", _at(2026, 2, 21, 9)),
    ({"days_ago": [2, 5]}, _orders(_at(2026, 2, 10, 13)), _at(2026, 2, 10, 20), "UTC", _at(2026, 2, 12)),
    ({"days_ago": [2, 5]}, _orders(_at(2026, 2, 10, 13)), _at(2026, 2, 13, 20), "UTC", _at(2026, 2, 16)),
    ({"days_ago": [0, 5]}, _orders(_at(2026, 2, 10, 13)), _at(2026, 2, 10, 12), "UTC", _at(2026, 2, 10, 13)),
    ({"between": ["2026-02-01", "2026-02-28"]}, _orders(_at(2026, 2, 22, 10)), _at(2026, 2, 20), "UTC",
     _at(2026, 2, 22, 10)),
    ({"between": ["2026-02-01", "2026-02-21"]}, _orders(_at(2026, 2, 22, 10)), _at(2026, 2, 20), "UTC", None),
])
def test_activity_windows_exact(window: dict | None, snap: CustomerSnapshot, as_of: dt.datetime, tz: str,
                                expected: dt.datetime | None) -> None:
    rule = dict(ANY_ORDER, **({"window": window} if window else {}))
    _exact(rule, snap, as_of, tz, expected)


def test_where_relative_date_on_rows() -> None:
    """A time-dependent ``where`` condition on the rows changes the count at its own midnight."""
    rule = {"activity": "orders", "where": [{"field": "created_at", "op": "less_than_days_ago", "value": 3}],
            "op": "gte", "value": 1}
    _exact(rule, _orders(_at(2026, 2, 10, 13)), _at(2026, 2, 11), "UTC", _at(2026, 2, 13))
    _exact(rule, _orders(_at(2026, 2, 10, 13)), _at(2026, 2, 9), "UTC", _at(2026, 2, 10, 13))


def test_count_that_does_not_flip_is_skipped() -> None:
    """Rows leaving the window one by one only matter once the count drops below the threshold."""
    snap = _orders(_at(2026, 1, 20), _at(2026, 1, 25), _at(2026, 1, 28))
    rule = {"activity": "orders", "window": {"last_days": 10}, "op": "gte", "value": 1}
    _exact(rule, snap, _at(2026, 2, 1), "UTC", _at(2026, 2, 7) + US)


def test_rows_only_leaving_cannot_flip_a_count_they_could_only_lower() -> None:
    """9,000 orders in the window, none to arrive: "at least 10,000" is false and rows leaving only lower the count, so
    it never changes. Exact without walking the leaving rows (a walk of more than MAX_SLIDING_STEPS rows gave up with
    an early candidate, an extra wake-up for every such customer)."""
    as_of = _at(2026, 2, 1)
    snap = _orders(*(as_of - dt.timedelta(seconds=97 * i + 1) for i in range(9_000)))
    _exact({"activity": "orders", "window": {"last_days": 30}, "op": "gte", "value": 10_000}, snap, as_of, "UTC", None)


def test_group_waiting_on_two_children_is_refined() -> None:
    """An "and" that is false because of two children is not exact at the first child's change: next_change refines
    it to the instant the second one changes too."""
    order = {"status": "paid", "created_at": _at(2026, 2, 5).replace(tzinfo=None), "total_minor": 100}
    event = {"name": "app_opened", "occurred_at": _at(2026, 2, 9).replace(tzinfo=None), "properties": {}}
    snap = CustomerSnapshot(9, orders=[order], events=[event])
    rule = {"and": [{"activity": "orders", "window": {"last_days": 30}, "op": "gte", "value": 1},
                    {"activity": "events", "event": "app_opened", "op": "gte", "value": 1}]}
    parsed = validate(rule, CATALOG, 2)
    ctx = Context(_at(2026, 2, 1), "UTC", 2, CATALOG)
    value, when, exact = _Walker(snap, ctx, NextChangeCache()).visit(parsed.root, bind(parsed, ctx))
    assert (value, when, exact) == (False, _at(2026, 2, 5).replace(tzinfo=None), False)
    _exact(rule, snap, _at(2026, 2, 1), "UTC", _at(2026, 2, 9))


# -- what a new event can do (live membership skips re-evaluating by it) ----------------------------------------------

#: Rules with event activities (counts and other measures, under and/or/not), mixed with other conditions.
EVENT_RULES = st.recursive(
    st.one_of(activity().filter(lambda a: a["activity"] == "events"),
              activity().filter(lambda a: a["activity"] == "events"), condition(TEMPORAL_FIELDS), activity()),
    lambda kids: st.one_of(
        st.builds(lambda xs: {"and": xs}, st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda xs: {"or": xs}, st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, kids),
    ),
    max_leaves=4,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(rule=EVENT_RULES, seed=st.integers(0, 5), tz=st.sampled_from(ZONES), era=st.sampled_from(sorted(ERAS)),
       shift=AS_OF_SHIFTS, sample_seed=st.integers(0, 2**32))
@example(rule={"activity": "events", "event": "app_opened", "window": {"last_days": 7}, "op": "gte", "value": 2},
         seed=0, tz="Europe/Warsaw", era="2026", shift=dt.timedelta(0), sample_seed=1)
@example(rule={"not": {"activity": "events", "event": "product_viewed", "window": {"days_ago": [3, 10]},
                       "op": "gt", "value": 0}}, seed=1, tz="UTC", era="fall", shift=dt.timedelta(0), sample_seed=2)
def test_a_new_event_moves_the_answer_only_as_its_effect_says(rule: dict, seed: int, tz: str, era: str,
                                                               shift: dt.timedelta, sample_seed: int) -> None:
    """At every instant from ``as_of`` on, adding an event whose effect is NONE leaves the answer as it is; RAISES
    never turns it false, LOWERS never true: what lets live membership keep such a customer's answer and wake-up."""
    rnd, ctx, days, effect_of, pred, customers = _effect_case(rule, seed, tz, era, shift, sample_seed,
                                                              event_row_effect)  # fmt: skip
    for snap in customers:
        row = {"name": rnd.choice(["product_viewed", "app_opened"]), "occurred_at": _instant_near(rnd, ctx, days),
               "properties": {"sku": rnd.choice(["A1", "B2"]), "price": rnd.choice([1.5, 3.0]), "tags": ["sale"],
                              "platform": rnd.choice(["ios", "web"])}}
        effect = RowEffect.ANY if effect_of is None else effect_of(row)
        _moves_as_said(effect, snap, replace(snap, events=[*snap.events, row]), pred, rnd, rule, ctx, row)


def _effect_case(rule: dict, seed: int, tz: str, era: str, shift: dt.timedelta, sample_seed: int,
                 effect: Callable[[Rule, Context], Any]) -> tuple[random.Random, Context, list[int], Any, Callable[
                 [dt.datetime], Callable[[CustomerSnapshot], bool]], list[CustomerSnapshot]]:  # fmt: skip
    """A property case of a row's effect: the random source, context, the rule's days, its effect function (None:
    cannot tell), its predicates by instant, and six customers (three of the world, three dense near ``as_of``)."""
    rnd = random.Random(sample_seed)
    parsed = validate(rule, CATALOG, 2)
    ctx = Context(ERAS[era] + shift, tz, 2, CATALOG)
    days = sorted(_rule_days(rule))
    customers = _world(seed, tz, era)[:3] + [_dense_snapshot(rnd, 100 + i, ctx, days) for i in range(3)]
    return rnd, ctx, days, effect(parsed, ctx), _predicates_at(parsed, ctx), customers


def _moves_as_said(effect: RowEffect, before: CustomerSnapshot, after: CustomerSnapshot,
                   pred: Callable[[dt.datetime], Callable[[CustomerSnapshot], bool]], rnd: random.Random, rule: dict,
                   ctx: Context, added: object) -> None:  # fmt: skip
    """At instants from ``as_of`` on: NONE leaves the answer, RAISES never turns it false, LOWERS never true."""
    if effect is RowEffect.ANY:
        return
    instants = _samples(rnd, after, rule, ctx, None)
    for t in rnd.sample(instants, min(len(instants), 60)):
        old, new = pred(t)(before), pred(t)(after)
        if effect is RowEffect.NONE:
            assert new == old, (rule, added, t)
        elif effect is RowEffect.RAISES:
            assert new or not old, (rule, added, t)
        else:
            assert old or not new, (rule, added, t)


@pytest.mark.parametrize(("rule", "row", "expected"), [
    ({"activity": "events", "event": "app_opened", "op": "gte", "value": 3}, "app_opened", RowEffect.RAISES),
    ({"activity": "events", "event": "app_opened", "op": "gt", "value": 0}, "product_viewed", RowEffect.NONE),
    ({"activity": "events", "event": "app_opened", "op": "lt", "value": 1}, "app_opened", RowEffect.LOWERS),
    ({"not": {"activity": "events", "event": "app_opened", "op": "gte", "value": 3}}, "app_opened", RowEffect.LOWERS),
    ({"activity": "events", "event": "app_opened", "op": "is", "value": 3}, "app_opened", RowEffect.ANY),
    ({"activity": "events", "event": "product_viewed", "measure": {"fn": "sum", "field": "properties.price"},
      "op": "gte", "value": 3}, "product_viewed", RowEffect.ANY),
    ({"and": [{"activity": "events", "event": "app_opened", "op": "gte", "value": 3},
              {"not": {"activity": "events", "event": "app_opened", "window": {"last_days": 7}, "op": "gte",
                       "value": 1}}]}, "app_opened", RowEffect.ANY),
    ({"or": [{"activity": "events", "event": "app_opened", "op": "gte", "value": 3},
             {"activity": "events", "event": "product_viewed", "op": "lt", "value": 2}]}, "app_opened",
     RowEffect.RAISES),
    ({"activity": "events", "event": "app_opened", "op": "gte", "value": 1,
      "where": [{"field": "properties.platform", "op": "is", "value": "ios"}]}, "app_opened", RowEffect.NONE),
])  # fmt: skip
def test_event_row_effect(rule: dict, row: str, expected: RowEffect) -> None:
    ctx = Context(ANCHOR, "UTC", 2, CATALOG)
    effect_of = event_row_effect(validate(rule, CATALOG, 2), ctx)
    assert effect_of is not None
    event = {"name": row, "occurred_at": ANCHOR.replace(tzinfo=None), "properties": {"platform": "web"}}
    assert effect_of(event) is expected


def test_event_row_effect_cannot_tell_under_a_where_that_moves_with_the_clock() -> None:
    catalog = Catalog(event_definitions={"product_viewed": {"release": "date"}})
    rule = {"activity": "events", "event": "product_viewed", "op": "gte", "value": 1,
            "where": [{"field": "properties.release", "op": "in_next_days", "value": 10}]}
    assert event_row_effect(validate(rule, catalog, 2), Context(ANCHOR, "UTC", 2, catalog)) is None


def test_rules_that_test_event_rows_alike_share_one_effect_function() -> None:
    """Variants of a rule (other thresholds or windows) get the same effect function, so live membership works out
    a new row's effect once for all of them; rules whose rows count otherwise get their own."""
    catalog = Catalog(event_definitions={"product_viewed": {"category": "string"}})
    ctx = Context(ANCHOR, "UTC", 2, catalog)

    def effect(value: int, window: int, category: str = "shoes", op: str = "gte") -> object:
        rule = {"id": f"n{value}{window}", "activity": "events", "event": "product_viewed", "op": op, "value": value,
                "window": {"last_days": window},
                "where": [{"id": f"w{window}", "field": "properties.category", "op": "is", "value": category}]}
        return event_row_effect(validate(rule, catalog, 2), ctx)

    shoes = effect(2, 30)
    assert effect(3, 30) is shoes and effect(2, 60) is shoes
    assert effect(2, 30, category="bags") is not shoes
    assert effect(2, 30, op="lt") is not shoes  # lowers instead of raising
    row = {"name": "product_viewed", "occurred_at": ANCHOR.replace(tzinfo=None), "properties": {"category": "bags"}}
    assert shoes(row) is RowEffect.NONE  # type: ignore[operator]
    assert effect(2, 30, category="bags")(row) is RowEffect.RAISES  # type: ignore[operator]


def test_an_event_effect_tells_each_row_by_its_own_values() -> None:
    """An effect function remembers its filters' answer by the values they read (a bulk write's rows repeat a
    few): every row still gets the answer its own values give, in any order, list values (not remembered) too."""
    catalog = Catalog(event_definitions={"product_viewed": {"category": "string", "price": "number",
                                                            "tags": "list"}})  # fmt: skip
    ctx = Context(ANCHOR, "UTC", 2, catalog)
    scalar = {"activity": "events", "event": "product_viewed", "op": "gte", "value": 2, "where": [
        {"field": "properties.category", "op": "is", "value": "shoes"},
        {"field": "properties.price", "op": "gt", "value": 10}]}  # fmt: skip
    listed = {"activity": "events", "event": "product_viewed", "op": "gte", "value": 2,
              "where": [{"field": "properties.tags", "op": "has_any", "value": ["sale"]}]}  # fmt: skip
    by_scalars, by_list = (event_row_effect(validate(rule, catalog, 2), ctx) for rule in (scalar, listed))
    assert by_scalars is not None and by_list is not None

    def row(**properties: object) -> dict:
        return {"name": "product_viewed", "occurred_at": ANCHOR.replace(tzinfo=None), "properties": properties}

    cases = [(by_scalars, row(category="shoes", price=20.0), RowEffect.RAISES),
             (by_scalars, row(category="bags", price=20.0), RowEffect.NONE),
             (by_scalars, row(category="shoes", price=5.0), RowEffect.NONE),
             (by_scalars, row(price=20.0), RowEffect.NONE),
             (by_list, row(tags=["new", "sale"]), RowEffect.RAISES),
             (by_list, row(tags=["new"]), RowEffect.NONE),
             (by_list, row(), RowEffect.NONE)]  # fmt: skip
    for order in (cases, cases[::-1], cases):
        assert [effect_of(event) for effect_of, event, _ in order] == [expected for _, _, expected in order]


# -- what a new order can do ------------------------------------------------------------------------------------------

SUMMARY_FIELDS = {path: typ for path, typ in FIELDS.items() if path.startswith("summary.")}


def _rules_of(activities: tuple[str, ...], fields: dict[str, str]) -> st.SearchStrategy[dict]:
    """Rules with these activities and conditions on these fields (under and/or/not), mixed with other conditions."""
    return st.recursive(
        st.one_of(activity().filter(lambda a: a["activity"] in activities), condition(fields), condition(fields),
                  condition(TEMPORAL_FIELDS), activity()),
        lambda kids: st.one_of(
            st.builds(lambda xs: {"and": xs}, st.lists(kids, min_size=1, max_size=3)),
            st.builds(lambda xs: {"or": xs}, st.lists(kids, min_size=1, max_size=3)),
            st.builds(lambda x: {"not": x}, kids),
        ),
        max_leaves=4,
    )


ORDER_RULES = _rules_of(("orders", "order_items"), SUMMARY_FIELDS)


def _with_order(snap: CustomerSnapshot, order: dict[str, Any], items: list[dict[str, Any]]) -> CustomerSnapshot:
    """The snapshot after this order is written, its summary rebuilt as the database rebuilds it (from orders of a
    counted status: count, spending, half-up average, first and last order and the last one's amount)."""
    summary = dict(snap.summary or {})
    if order["status"] in ("paid", "fulfilled"):
        count = (summary.get("order_count") or 0) + 1
        spent = (summary.get("total_spent_minor") or 0) + (order["total_minor"] or 0)
        first, last = summary.get("first_order_at"), summary.get("last_order_at")
        later = last is None or order["created_at"] >= last  # ties: the new order has the highest id
        summary.update(order_count=count, total_spent_minor=spent, average_order_value_minor=(2 * spent + count) //
                       (2 * count), first_order_at=order["created_at"] if first is None else min(first, order[
                       "created_at"]), last_order_at=order["created_at"] if later else last)  # fmt: skip
        if later:
            summary["last_order_amount_minor"] = order["total_minor"]
    return replace(snap, summary=summary, orders=[*snap.orders, order], order_items=[*snap.order_items, *items])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(rule=ORDER_RULES, seed=st.integers(0, 5), tz=st.sampled_from(ZONES), era=st.sampled_from(sorted(ERAS)),
       shift=AS_OF_SHIFTS, sample_seed=st.integers(0, 2**32))
@example(rule={"field": "summary.order_count", "op": "gte", "value": 3}, seed=0, tz="UTC", era="2026",
         shift=dt.timedelta(0), sample_seed=1)
@example(rule={"not": {"activity": "orders", "window": {"last_days": 60}, "op": "gte", "value": 1}}, seed=1,
         tz="Europe/Warsaw", era="fall", shift=dt.timedelta(0), sample_seed=2)
def test_a_new_order_moves_the_answer_only_as_its_effect_says(rule: dict, seed: int, tz: str, era: str,
                                                               shift: dt.timedelta, sample_seed: int) -> None:
    """As for events: at every instant from ``as_of`` on, an order whose effect is NONE leaves the answer as it is,
    RAISES never turns it false and LOWERS never true, the customer's summary rebuilt with it."""
    rnd, ctx, days, effect_of, pred, customers = _effect_case(rule, seed, tz, era, shift, sample_seed, order_effect)
    for snap in customers:
        at = _instant_near(rnd, ctx, days)
        status = rnd.choice(["paid", "fulfilled", "cancelled", "created"])
        order = {"id": 10**6, "order_id": "new", "customer_id": snap.customer_id, "status": status, "created_at": at,
                 "total_minor": rnd.choice([0, 100, 49999, 50000, 50001, -2500, None])}
        items = [{"id": 10**6 + i, "order_pk": 10**6, "customer_id": snap.customer_id, "ordered_at": at,
                  "status": status, "sku": rnd.choice(["A1", "B2"]), "name": None, "category": rnd.choice(["shoes",
                  "hats"]), "brand": rnd.choice(["X", "Y"]), "quantity": 1, "unit_price_minor": 1000,
                  "amount_minor": rnd.choice([1000, 50000])} for i in range(rnd.randint(0, 2))]  # fmt: skip
        effect = RowEffect.ANY if effect_of is None else effect_of((order, items))
        _moves_as_said(effect, snap, _with_order(snap, order, items), pred, rnd, rule, ctx, (order, items))


def _order(status: str = "paid", total: int | None = 4200, brands: tuple[str, ...] = ()) -> tuple[dict, list[dict]]:
    at = ANCHOR.replace(tzinfo=None)
    return ({"status": status, "created_at": at, "total_minor": total},
            [{"status": status, "ordered_at": at, "brand": brand, "amount_minor": 1000} for brand in brands])


@pytest.mark.parametrize(("rule", "order", "expected"), [
    ({"field": "summary.order_count", "op": "gte", "value": 10}, _order(), RowEffect.RAISES),
    ({"field": "summary.order_count", "op": "gte", "value": 10}, _order("cancelled"), RowEffect.NONE),
    ({"field": "summary.order_count", "op": "lt", "value": 10}, _order(), RowEffect.ANY),  # no summary row: false
    ({"field": "summary.total_spent", "op": "gt", "value": 500}, _order(), RowEffect.RAISES),
    ({"field": "summary.total_spent", "op": "gt", "value": 500}, _order(total=-100), RowEffect.ANY),
    ({"not": {"field": "summary.total_spent", "op": "gt", "value": 500}}, _order(), RowEffect.LOWERS),
    ({"field": "summary.average_order_value", "op": "gt", "value": 50}, _order(), RowEffect.ANY),
    ({"field": "summary.last_order_at", "op": "more_than_days_ago", "value": 180}, _order(), RowEffect.ANY),
    ({"field": "loyalty.points_balance", "op": "gt", "value": 5}, _order(), RowEffect.NONE),
    ({"field": "country", "op": "is", "value": "PL"}, _order(), RowEffect.NONE),
    ({"activity": "orders", "window": {"last_days": 60}, "op": "is", "value": 0}, _order(), RowEffect.ANY),
    ({"not": {"activity": "orders", "window": {"last_days": 60}, "op": "gte", "value": 1}}, _order(),
     RowEffect.LOWERS),
    ({"activity": "orders", "op": "gte", "value": 1, "where": [{"field": "status", "op": "is", "value": "paid"}]},
     _order("cancelled"), RowEffect.NONE),
    ({"activity": "order_items", "where": [{"field": "brand", "op": "is", "value": "X"}], "op": "gte", "value": 1},
     _order(brands=("Y",)), RowEffect.NONE),
    ({"activity": "order_items", "where": [{"field": "brand", "op": "is", "value": "X"}], "op": "gte", "value": 1},
     _order(brands=("Y", "X")), RowEffect.RAISES),
    ({"activity": "order_items", "where": [{"field": "brand", "op": "is", "value": "X"}],
      "measure": {"fn": "sum", "field": "amount"}, "op": "gt", "value": 500}, _order(), RowEffect.NONE),
    ({"and": [{"field": "summary.order_count", "op": "gte", "value": 10},
              {"not": {"activity": "orders", "window": {"last_days": 60}, "op": "gte", "value": 1}}]}, _order(),
     RowEffect.ANY),
])  # fmt: skip
def test_order_effect(rule: dict, order: tuple[dict, list[dict]], expected: RowEffect) -> None:
    effect_of = order_effect(validate(rule, CATALOG, 2), Context(ANCHOR, "UTC", 2, CATALOG))
    assert effect_of is not None
    assert effect_of(order) is expected


def test_order_effect_cannot_tell_under_a_where_that_moves_with_the_clock() -> None:
    rule = {"activity": "orders", "op": "gte", "value": 1,
            "where": [{"field": "created_at", "op": "less_than_days_ago", "value": 10}]}
    assert order_effect(validate(rule, CATALOG, 2), Context(ANCHOR, "UTC", 2, CATALOG)) is None


def test_variants_share_one_order_effect_function() -> None:
    ctx = Context(ANCHOR, "UTC", 2, CATALOG)

    def effect(value: int, field: str = "summary.total_spent") -> object:
        return order_effect(validate({"field": field, "op": "gt", "value": value}, CATALOG, 2), ctx)

    assert effect(500) is effect(1000)
    assert effect(500, "summary.order_count") is not effect(500)


@pytest.mark.parametrize("field", ["summary.order_count", "summary.total_spent", "summary.average_order_value",
                                   "summary.last_order_amount"])
def test_order_effect_on_summary_fields_holds_at_every_small_threshold(field: str) -> None:
    """Every comparison of a summary field with small thresholds, for orders of every status and of negative, zero
    and positive totals, on customers with and without orders: the answer moves only as the effect says (random
    rules reach these boundaries too rarely)."""
    ctx = Context(ANCHOR, "UTC", 2, CATALOG)
    customers = [*_world(0, "UTC", "2026")[:4], CustomerSnapshot(7, summary={"order_count": 0,
                 "total_spent_minor": 0})]  # fmt: skip
    values = [0, 1, 2, 3] if field == "summary.order_count" else [Decimal("0"), Decimal("1"), Decimal("500")]
    for parsed in _comparisons(field, values):
        effect_of, pred = order_effect(parsed, ctx), compile_predicate(parsed, ctx)
        assert effect_of is not None
        for status in ("paid", "cancelled"):
            for total in (-50000, 0, 50000, None):
                order = {"id": 10**6, "status": status, "created_at": ANCHOR.replace(tzinfo=None), "total_minor": total}
                effect = effect_of((order, []))
                for snap in customers:
                    old, new = pred(snap), pred(_with_order(snap, order, []))
                    assert _as_said(effect, old, new), (parsed, order, snap.summary)


def _comparisons(field: str, values: list[Any]) -> Iterator[Rule]:
    """Every comparison of ``field`` with these values, and its negation."""
    for op in ("lt", "lte", "gt", "gte", "is", "is_not", "has_value", "is_unknown"):
        for value in values:
            rule = {"field": field, "op": op} | ({} if op in ("has_value", "is_unknown") else {"value": value})
            for negate in (False, True):
                yield validate({"not": rule} if negate else rule, CATALOG, 2)


def _as_said(effect: RowEffect, old: bool, new: bool) -> bool:
    """Whether an answer that went from ``old`` to ``new`` moved as ``effect`` allows."""
    return {RowEffect.NONE: new == old, RowEffect.RAISES: new or not old, RowEffect.LOWERS: old or not new,
            RowEffect.ANY: True}[effect]  # fmt: skip


#: Fields a loyalty row feeds (summary counts and balances, points and tiers per program) and some it does not.
LOYALTY_FIELDS = {"loyalty.points_balance": "integer", "loyalty.club.points_balance": "integer",
                  "loyalty.club.tier": "string", "loyalty.kids.tier": "string", "summary.redemption_count": "integer",
                  "summary.referral_count": "integer", "summary.gift_card_balance": "money",
                  "summary.order_count": "integer"}  # fmt: skip
LOYALTY_RULES = _rules_of(("points", "redemptions"), LOYALTY_FIELDS)
#: The summary columns a loyalty row feeds, as every customer's summary row holds them from creation on.
_LOYALTY_SUMMARY_ZEROS = {"points_balance": 0, "redemption_count": 0, "referral_count": 0, "gift_card_balance_minor": 0}


def _loyalty_row(rnd: random.Random, customer_id: int, at: dt.datetime) -> dict[str, Any]:
    kind = rnd.choice(["points", "points", "tier", "redemption", "referral", "gift_card"])
    row: dict[str, Any] = {"id": 10**6, "customer_id": customer_id, "type": kind, "occurred_at": at, "program": None,
                           "entry": None, "points": None, "tier": None, "reward": None, "referred": None,
                           "gift_card": None, "operation": None, "amount_minor": None}  # fmt: skip
    if kind == "points":
        entry = rnd.choice(["earn", "spend", "adjust", "expire"])
        sign = -1 if entry in ("spend", "expire") else rnd.choice([1, -1]) if entry == "adjust" else 1
        row.update(program=rnd.choice(["club", "kids"]), entry=entry, points=sign * rnd.choice([1, 10, 100, 1000]))
    elif kind == "tier":
        row.update(program=rnd.choice(["club", "kids"]), tier=rnd.choice(["silver", "gold", "basic"]))
    elif kind == "redemption":
        row.update(program=rnd.choice(["club", "kids", None]), reward=rnd.choice(["mug", "cap"]))
    elif kind == "referral":
        row.update(program=rnd.choice(["club", None]), referred="friend")
    else:
        row.update(gift_card="GC1", operation="load", amount_minor=rnd.choice([500, -500, 5000]))
    return row


def _with_loyalty(snap: CustomerSnapshot, row: dict[str, Any]) -> tuple[CustomerSnapshot, CustomerSnapshot]:
    """The snapshot before (its summary holding the loyalty columns, zero when it had none, as the database's rows
    do) and after this journal row is written, its summary and program rows rebuilt as the database rebuilds them:
    points summed overall and per program, redemptions and referrals counted, gift-card amounts summed, a program's
    tier that of its latest tier change (ties: the highest id, the new row's)."""
    before = replace(snap, summary={**_LOYALTY_SUMMARY_ZEROS, **(snap.summary or {})})
    summary, programs = dict(before.summary or {}), {p: dict(v) for p, v in before.programs.items()}
    kind, program = row["type"], row["program"]
    if kind == "points":
        summary["points_balance"] = (summary.get("points_balance") or 0) + row["points"]
        kept = programs.setdefault(program, {"points_balance": 0, "tier": None})
        kept["points_balance"] = (kept.get("points_balance") or 0) + row["points"]
    elif kind == "tier":
        changes = [t["occurred_at"] for t in snap.loyalty_transactions
                   if t.get("type") == "tier" and t.get("program") == program]  # fmt: skip
        kept = programs.setdefault(program, {"points_balance": 0, "tier": None})
        if not changes or row["occurred_at"] >= max(changes):
            kept["tier"] = row["tier"]
    elif kind == "redemption":
        summary["redemption_count"] = (summary.get("redemption_count") or 0) + 1
    elif kind == "referral":
        summary["referral_count"] = (summary.get("referral_count") or 0) + 1
    else:
        summary["gift_card_balance_minor"] = (summary.get("gift_card_balance_minor") or 0) + row["amount_minor"]
    return before, replace(before, summary=summary, programs=programs,
                           loyalty_transactions=[*before.loyalty_transactions, row])  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(rule=LOYALTY_RULES, seed=st.integers(0, 5), tz=st.sampled_from(ZONES), era=st.sampled_from(sorted(ERAS)),
       shift=AS_OF_SHIFTS, sample_seed=st.integers(0, 2**32))
@example(rule={"field": "summary.redemption_count", "op": "gte", "value": 2}, seed=0, tz="UTC", era="2026",
         shift=dt.timedelta(0), sample_seed=1)
@example(rule={"not": {"activity": "points", "window": {"last_days": 30}, "op": "gte", "value": 1,
                       "where": [{"field": "program", "op": "is", "value": "club"}]}},
         seed=1, tz="Europe/Warsaw", era="fall", shift=dt.timedelta(0), sample_seed=2)  # fmt: skip
def test_a_new_loyalty_row_moves_the_answer_only_as_its_effect_says(rule: dict, seed: int, tz: str, era: str,
                                                                    shift: dt.timedelta, sample_seed: int) -> None:
    """As for orders: at every instant from ``as_of`` on, a journal row whose effect is NONE leaves the answer as it
    is, RAISES never turns it false and LOWERS never true, the customer's summary and programs rebuilt with it."""
    rnd, ctx, days, effect_of, pred, customers = _effect_case(rule, seed, tz, era, shift, sample_seed, loyalty_effect)
    for snap in customers:
        row = _loyalty_row(rnd, snap.customer_id, _instant_near(rnd, ctx, days))
        effect = RowEffect.ANY if effect_of is None else effect_of(row)
        before, after = _with_loyalty(snap, row)
        _moves_as_said(effect, before, after, pred, rnd, rule, ctx, row)


def _journal(kind: str, program: str | None = "club", points: int | None = None, **more: Any) -> dict[str, Any]:
    return {"type": kind, "program": program, "points": points, "occurred_at": ANCHOR.replace(tzinfo=None),
            "entry": "earn" if kind == "points" else None, **more}  # fmt: skip


@pytest.mark.parametrize(("rule", "row", "expected"), [
    ({"field": "summary.redemption_count", "op": "gte", "value": 2}, _journal("redemption"), RowEffect.RAISES),
    ({"field": "summary.redemption_count", "op": "lt", "value": 2}, _journal("redemption"), RowEffect.ANY),
    ({"not": {"field": "summary.referral_count", "op": "gt", "value": 0}}, _journal("referral"), RowEffect.LOWERS),
    ({"field": "summary.redemption_count", "op": "gte", "value": 2}, _journal("points", points=10), RowEffect.NONE),
    ({"field": "loyalty.points_balance", "op": "gte", "value": 100}, _journal("points", points=10), RowEffect.ANY),
    ({"field": "loyalty.points_balance", "op": "gte", "value": 100}, _journal("tier", tier="gold"), RowEffect.NONE),
    ({"field": "loyalty.club.points_balance", "op": "gte", "value": 100}, _journal("points", "kids", 10),
     RowEffect.NONE),
    ({"field": "loyalty.club.tier", "op": "is", "value": "gold"}, _journal("tier", tier="gold"), RowEffect.ANY),
    ({"field": "loyalty.club.tier", "op": "is", "value": "gold"}, _journal("tier", "kids", tier="basic"),
     RowEffect.NONE),
    ({"field": "summary.gift_card_balance", "op": "gt", "value": 10}, _journal("gift_card", None, amount_minor=500),
     RowEffect.ANY),
    ({"field": "summary.total_spent", "op": "gt", "value": 500}, _journal("points", points=10), RowEffect.NONE),
    ({"activity": "redemptions", "op": "gte", "value": 1}, _journal("redemption"), RowEffect.RAISES),
    ({"activity": "redemptions", "op": "gte", "value": 1}, _journal("points", points=10), RowEffect.NONE),
    ({"activity": "points", "where": [{"field": "program", "op": "is", "value": "kids"}], "op": "gte", "value": 1},
     _journal("points", points=10), RowEffect.NONE),
    ({"activity": "points", "measure": {"fn": "sum", "field": "points"}, "op": "gte", "value": 100},
     _journal("points", points=10), RowEffect.ANY),
    ({"not": {"activity": "points", "window": {"last_days": 30}, "op": "gte", "value": 1}},
     _journal("points", points=10), RowEffect.LOWERS),
])  # fmt: skip
def test_loyalty_effect(rule: dict, row: dict, expected: RowEffect) -> None:
    effect_of = loyalty_effect(validate(rule, CATALOG, 2), Context(ANCHOR, "UTC", 2, CATALOG))
    assert effect_of is not None
    assert effect_of(row) is expected


@pytest.mark.parametrize("field", ["summary.redemption_count", "summary.referral_count", "loyalty.points_balance",
                                   "loyalty.club.points_balance", "summary.gift_card_balance"])
def test_loyalty_effect_on_fed_fields_holds_at_every_small_threshold(field: str) -> None:
    """Every comparison of a field a journal row feeds with small thresholds, for rows of every kind, on customers
    with and without loyalty activity: the answer moves only as the effect says."""
    ctx = Context(ANCHOR, "UTC", 2, CATALOG)
    rnd = random.Random(7)
    customers = [*_world(0, "UTC", "2026")[:4], CustomerSnapshot(7, summary={"redemption_count": 1,
                 "referral_count": 2, "points_balance": 99, "gift_card_balance_minor": 100},
                 programs={"club": {"points_balance": 100, "tier": "gold"}})]  # fmt: skip
    values = [Decimal("0"), Decimal("1"), Decimal("100")] if field == "summary.gift_card_balance" else [0, 1, 2, 99,
                                                                                                       100]
    rows = [_loyalty_row(rnd, 7, ANCHOR.replace(tzinfo=None)) for _ in range(40)]
    for parsed in _comparisons(field, values):
        effect_of, pred = loyalty_effect(parsed, ctx), compile_predicate(parsed, ctx)
        assert effect_of is not None
        for row in rows:
            effect = effect_of(row)
            for snap in customers:
                before, after = _with_loyalty(snap, row)
                assert _as_said(effect, pred(before), pred(after)), (parsed, row)
