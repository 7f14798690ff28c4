"""Differential tests of rule evaluation on the real stores.

For random rules over random customers (written through the real ingestion services, so the summary tables are the
real ones), at moving ``as_of`` instants and in several time zones, six answers must be the same set of customers:

* the batch compiler run on SQLite (``cohorta.evaluation.store.matching_sql``),
* the batch compiler run on PostgreSQL,
* ``cohorta.evaluation.store.matching_ids`` (each condition read from its smaller side, groups combined in
  memory: what segment recomputes read) on each store,
* the real-time predicate (``rules.compile_predicate``) over snapshots loaded from SQLite
  (``cohorta.evaluation.snapshots.load_snapshots`` with ``rules.rule_requirements``),
* the same predicate over snapshots loaded from PostgreSQL.

The property test needs both stores: it skips without PostgreSQL outside CI and fails under ``CI=true`` (the
``postgres_database`` fixture's policy). Example tests pin edge cases (nulls, empty activity, window and time-zone
boundaries, money at exact thresholds) to their expected answers on both stores.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from cohorta import db, rules
from cohorta.clock import FrozenClock
from cohorta.customers import service
from cohorta.customers.schemas import (
    AttributeDefinitionIn,
    CustomerBulkItem,
    EventDefinitionIn,
    EventIn,
    GiftCardTransactionIn,
    OrderIn,
    OrderItemIn,
    PointsTransactionIn,
    RedemptionTransactionIn,
    ReferralTransactionIn,
    TierTransactionIn,
)
from cohorta.evaluation import store as batch
from cohorta.evaluation.catalog import build_catalog
from cohorta.evaluation.snapshots import load_snapshots, value_types
from cohorta.evaluation.store import NodeMatches
from cohorta.evaluation.wakeups import wakeup_candidates
from cohorta.rules.catalog import ACTIVITY_FIELDS, OPERATORS_BY_TYPE
from cohorta.rules.limits import MAX_LIST_LENGTH
from cohorta.rules.model import CALENDAR_PERIODS, MEASURE_FUNCTIONS, WINDOW_CALENDAR_PERIODS, walk
from cohorta.segments.preview import node_counts

UTC = dt.UTC
EXPONENT = 2
ZONES = ("UTC", "Europe/Warsaw", "America/Los_Angeles")

#: Examples of the property test; each checks RULES_PER_EXAMPLE x WORLDS_PER_EXAMPLE rule/data pairs.
MAX_EXAMPLES = int(os.environ.get("COHORTA_DIFFERENTIAL_EXAMPLES", "30"))
RULES_PER_EXAMPLE = 12
WORLDS_PER_EXAMPLE = 3
MIN_PAIRS = 1000

ATTRIBUTES = {"nickname": "string", "score": "number", "vip": "boolean", "anniversary": "date",
              "last_login": "datetime", "tags": "list"}
EVENTS = {
    "product_viewed": {"sku": "string", "price": "number", "tags": "list", "gift": "boolean", "release": "date",
                       "seen_at": "datetime"},
    "app_opened": {"platform": "string"},
    "cart_abandoned": {},
}
#: ``ghost`` never has any activity: its balance is 0 and its tier missing for everybody.
PROGRAMS = {"club": ["gold", "silver"], "kids": ["basic"], "ghost": []}
CATALOG = rules.Catalog(attribute_definitions=ATTRIBUTES, event_definitions=EVENTS, programs=PROGRAMS)


# -- the two stores --------------------------------------------------------------------------------------------------


@dataclass
class Store:
    name: str
    engine: sa.Engine
    factory: sessionmaker[Session]

    def reset(self) -> None:
        """Empty every table and restart the id sequences (ids must be the same in both stores)."""
        tables = [t for t in reversed(db.Base.metadata.sorted_tables)]
        with self.engine.begin() as connection:
            for table in tables:  # DELETE: on these tiny tables much faster than TRUNCATE (~0.5 s on PostgreSQL)
                connection.execute(table.delete())
            if self.engine.dialect.name == "postgresql":
                for table in tables:
                    for column in table.primary_key.columns:
                        if column.autoincrement is True:
                            connection.execute(sa.text(
                                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), 1, false)"))
            # SQLite: no AUTOINCREMENT, so an emptied table numbers its rows from 1 again


@dataclass
class World:
    """A data set, as the requests that write it, and the instants and zones to evaluate rules at."""

    customers: list[CustomerBulkItem]
    orders: list[OrderIn] = field(default_factory=list)
    events: list[EventIn] = field(default_factory=list)
    loyalty: list[Any] = field(default_factory=list)
    evaluations: list[tuple[dt.datetime, str]] = field(default_factory=list)
    clock: dt.datetime = dt.datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


def write_world(store: Store, world: World) -> dict[str, int]:
    """Write through the real services in one transaction; return source id -> internal id."""
    clock = FrozenClock(world.clock)
    with db.unit_of_work(store.factory) as session:
        for name, typ in ATTRIBUTES.items():
            service.put_attribute(session, clock, name, AttributeDefinitionIn.model_validate({"type": typ}))
        for name, props in EVENTS.items():
            service.put_event_definition(session, clock, name, EventDefinitionIn.model_validate({"properties": props}))
        if world.customers:
            service.upsert_customers(session, clock, world.customers)
        if world.orders:
            service.record_orders(session, clock, EXPONENT, world.orders, timezone="UTC")
        if world.events:
            service.record_events(session, clock, world.events)
        if world.loyalty:
            service.record_loyalty(session, clock, EXPONENT, world.loyalty)
    with store.factory() as session:
        return {source_id: cid for source_id, cid in session.execute(sa.text("SELECT source_id, id FROM customers"))}


@pytest.fixture(scope="module")
def stores(
    sqlite_template: Path, postgres_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Store]]:
    """A private copy of the migrated SQLite template and the run's PostgreSQL database (emptied before and after)."""
    path = tmp_path_factory.mktemp("differential") / "cohorta.db"
    shutil.copy(sqlite_template, path)
    out = []
    for name, url in (("sqlite", f"sqlite:///{path}"), ("postgresql", postgres_database)):
        engine = db.create_db_engine(url)
        out.append(Store(name, engine, db.make_session_factory(engine)))
    for s in out:
        s.reset()
    yield out
    for s in out:
        s.reset()
        s.engine.dispose()


def load(stores: Sequence[Store], world: World) -> dict[str, int]:
    """Both stores emptied and loaded with ``world``; the internal ids, identical in both."""
    ids: list[dict[str, int]] = []
    for s in stores:
        s.reset()
        ids.append(write_world(s, world))
    assert ids[0] == ids[1], "internal customer ids differ between the stores"
    return ids[0]


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"


def compiled_sql(session: Session, rule: rules.Rule, ctx: rules.Context) -> str | Exception:
    """The batch SQL for the session's dialect (``matching_ids`` is ``run_sql(matching_sql(...))``; compiling once
    per rule and instant lets one compiled rule run against several data sets)."""
    try:
        return batch.matching_sql(session, rule, ctx)
    except Exception as exc:  # a compiler crash is an answer too: reported as a disagreement
        return exc


def answers(sessions: dict[str, Session], sqls: dict[str, str | Exception], customer_ids: list[int],
            rule: rules.Rule, ctx: rules.Context) -> dict[str, set[int] | str]:
    """The six answers; an evaluator that raises answers with the error text."""
    out: dict[str, set[int] | str] = {}
    predicate = rules.compile_predicate(rule, ctx)
    requirements = rules.rule_requirements(rule, ctx)
    for name, session in sessions.items():
        sql = sqls[name]
        try:
            if isinstance(sql, Exception):
                raise sql
            out[f"batch/{name}"] = {row[0] for row in batch.run_sql(session, sql)}
        except Exception as exc:
            session.rollback()
            out[f"batch/{name}"] = _error(exc)
        try:  # what segment recomputes read: each condition from its smaller side, combined in memory
            out[f"ids/{name}"] = batch.matching_ids(session, rule, ctx)
        except Exception as exc:
            session.rollback()
            out[f"ids/{name}"] = _error(exc)
        try:
            snapshots = load_snapshots(session, customer_ids, requirements)
            out[f"predicate/{name}"] = {cid for cid, snap in snapshots.items() if predicate(snap)}
        except Exception as exc:
            session.rollback()
            out[f"predicate/{name}"] = _error(exc)
    return out


def disagreement(got: dict[str, set[int] | str], by_id: dict[int, str]) -> str | None:
    """None when all answers are the same set; otherwise a readable diff (source ids)."""
    values = list(got.values())
    if all(v == values[0] for v in values) and not isinstance(values[0], str):
        return None
    lines = []
    for name, v in got.items():
        lines.append(f"  {name}: {v if isinstance(v, str) else sorted(by_id[i] for i in v)}")
    return "\n".join(lines)


def evaluate(stores: Sequence[Store], world: World, rule_json: dict[str, Any], as_of: dt.datetime,
             timezone: str = "UTC") -> set[str]:
    """Load ``world`` into both stores, check that the six answers agree, return the matching source ids."""
    ids = load(stores, world)
    by_id = {v: k for k, v in ids.items()}
    rule = rules.validate(rule_json, CATALOG, EXPONENT)
    ctx = rules.Context(as_of=as_of, timezone=timezone, currency_exponent=EXPONENT, catalog=CATALOG)
    sessions = {s.name: s.factory() for s in stores}
    try:
        sqls = {name: compiled_sql(session, rule, ctx) for name, session in sessions.items()}
        got = answers(sessions, sqls, sorted(by_id), rule, ctx)
    finally:
        for session in sessions.values():
            session.close()
    problem = disagreement(got, by_id)
    assert problem is None, f"evaluators disagree on {json.dumps(rule_json, default=str)} at {as_of} {timezone}:\n" \
                            f"{problem}"
    first = got["batch/sqlite"]
    assert not isinstance(first, str)
    return {by_id[i] for i in first}


# -- random data -----------------------------------------------------------------------------------------------------

#: Instants where local days, weeks, months, quarters and years start, and where the zones change their offset.
ANCHORS = (
    dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # Europe/Warsaw moves to summer time
    dt.datetime(2026, 3, 28, 23, 0, tzinfo=UTC),  # Warsaw midnight: the 23-hour day 2026-03-29 begins
    dt.datetime(2026, 3, 29, 22, 0, tzinfo=UTC),  # Warsaw midnight after the change (a Monday)
    dt.datetime(2026, 3, 8, 10, 0, tzinfo=UTC),  # America/Los_Angeles moves to summer time
    dt.datetime(2026, 3, 8, 8, 0, tzinfo=UTC),  # Los Angeles midnight: the 23-hour day 2026-03-08 begins
    dt.datetime(2026, 3, 9, 7, 0, tzinfo=UTC),  # Los Angeles midnight after the change (a Monday)
    dt.datetime(2026, 1, 1, 0, 0, tzinfo=UTC),  # a new year in UTC
    dt.datetime(2025, 12, 31, 23, 0, tzinfo=UTC),  # a new year in Warsaw
    dt.datetime(2026, 1, 1, 8, 0, tzinfo=UTC),  # a new year in Los Angeles
    dt.datetime(2026, 4, 1, 7, 0, tzinfo=UTC),  # a new quarter in Los Angeles
    dt.datetime(2026, 3, 31, 22, 0, tzinfo=UTC),  # a new quarter in Warsaw
    dt.datetime(2026, 10, 25, 1, 0, tzinfo=UTC),  # Warsaw back to winter time
    dt.datetime(2026, 11, 1, 9, 0, tzinfo=UTC),  # Los Angeles back to winter time
    dt.datetime(2026, 3, 14, 12, 0, tzinfo=UTC),  # an ordinary Saturday noon
    dt.datetime(2024, 2, 29, 12, 0, tzinfo=UTC),  # a leap day
)
SECOND = dt.timedelta(seconds=1)
MICRO = dt.timedelta(microseconds=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
JITTER = ([dt.timedelta(0)] * 4 + [SECOND, -SECOND, MICRO, -MICRO, HOUR, -HOUR, 12 * HOUR])
SMALL_JITTER = ([dt.timedelta(0)] * 3 + [MICRO, -MICRO, SECOND, -SECOND])
DAYS_BACK = ([0, 0, 1, 2, 3, 6, 7, 8, 13, 14, 28, 29, 30, 31, 59, 60, 61, 89, 90, 91, 92, 180, 364,
                             365, 366, 400, 800])
#: How the second evaluation instant differs from the first.
AS_OF_SHIFTS = ([MICRO, SECOND, HOUR, -HOUR, DAY, -DAY, 23 * HOUR, 25 * HOUR, 7 * DAY, 31 * DAY])


def local_midnight(instant: dt.datetime, zone: str, days_back: int) -> dt.datetime:
    day = instant.astimezone(ZoneInfo(zone)).date() - dt.timedelta(days=days_back)
    return dt.datetime.combine(day, dt.time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


# Data and rule values come from the same generators, driven by a seeded ``random.Random`` for data (fast) and by
# hypothesis's own ``st.randoms()`` for rule values (shrinkable), so rule boundaries often coincide with data.


def instant(rng: random.Random, ref: dt.datetime) -> dt.datetime:
    """An aware UTC instant near ``ref``, often exactly on a boundary: ``ref`` minus whole days, a local midnight,
    ``ref`` itself, or shortly after it (activity after as_of never counts)."""
    kind = rng.choice(["relative"] * 4 + ["midnight"] * 3 + ["as_of", "future"])
    if kind == "relative":
        return ref - rng.choice(DAYS_BACK) * DAY + rng.choice(JITTER)
    if kind == "midnight":
        return local_midnight(ref, rng.choice(ZONES), rng.choice(DAYS_BACK)) + rng.choice(SMALL_JITTER)
    if kind == "as_of":
        return ref
    return ref + rng.choice([MICRO, SECOND, HOUR, DAY, 40 * DAY])


def iso_instant(rng: random.Random, ref: dt.datetime, style: str | None = None) -> str:
    """An instant near ``ref`` as ISO text: ``utc``, ``zone`` (another zone's offset) or ``naive`` (local wall time)."""
    t = instant(rng, ref)
    style = style or rng.choice(["utc", "zone", "naive"])
    if style == "utc":
        return t.isoformat()
    local = t.astimezone(ZoneInfo(rng.choice(ZONES)))
    return local.replace(tzinfo=None).isoformat() if style == "naive" else local.isoformat()


def _replace_year(day: dt.date, year: int) -> dt.date:
    try:
        return day.replace(year=year)
    except ValueError:  # Feb 29
        return dt.date(year, 2, 28)


def date(rng: random.Random, ref: dt.datetime) -> dt.date:
    """A date near ``ref``'s local day, or a birthday-like date in an earlier year (anniversaries), or Feb 29."""
    local = ref.astimezone(ZoneInfo(rng.choice(ZONES))).date()
    kind = rng.choice(["near", "near", "birthday", "fixed"])
    if kind == "fixed":
        return rng.choice([dt.date(2000, 2, 29), dt.date(1996, 2, 29), dt.date(1990, 2, 28), dt.date(1990, 3, 1),
                           dt.date(1990, 12, 31), dt.date(1991, 1, 1)])
    day = local - dt.timedelta(days=rng.choice([-7, -2, -1, 0, 0, 1, 2, 6, 7, 8, 30, 31, 90, 365]))
    if kind == "birthday":
        return _replace_year(day, rng.choice([1960, 1990, 2000, 2004]))
    return day


def dates(ref: dt.datetime) -> st.SearchStrategy[str]:
    return st.randoms(use_true_random=False).map(lambda rng: date(rng, ref).isoformat())


def iso_instants(ref: dt.datetime, style: str | None = None) -> st.SearchStrategy[str]:
    return st.randoms(use_true_random=False).map(lambda rng: iso_instant(rng, ref, style))


def maybe(rng: random.Random, value: Any, none: float = 0.25) -> Any:
    return None if rng.random() < none else value


def subset(rng: random.Random, pool: list[str]) -> list[str]:
    return rng.sample(pool, rng.randint(0, 3))  # [] is stored as no value


TEXT = ["Ala", "ala", "ALA", "Bob", "", "O'Brien", "x_y", "xAy", "50%", "5a0", "C:\\dir", "żółw", "Zed"]
PROFILE_TEXT = {
    "first_name": TEXT,
    "last_name": ["Nowak", "nowak", "Smith", "a%b", "C:\\dir", ""],
    "email": ["ala@example.com", "ALA@Example.com", "bob@shop.pl", "x_y@50%.pl"],
    "phone": ["+48 600 100 200", "555-0100", "(0) 12/34"],
    "gender": ["f", "m", "F", "x"],
    "postal_code": ["00-950", "90210", "00950"],
    "city": ["Kraków", "kraków", "Berlin", "Los Angeles", "los angeles"],
    "state": ["CA", "ca", "Mazowieckie"],
    "source": ["shop", "import", "SHOP", "pos"],
    "store": ["Main", "main", "Outlet", "x_y"],
    "company": ["ACME", "acme", "Acme Inc.", ""],
}
COUNTRIES = ["PL", "DE", "US", "pl"]
MONEY = [Decimal(x) for x in ("0", "0.01", "10", "99.99", "100", "100.01", "250", "250.00", "499.99", "500",
                              "500.00", "500.01", "1000")]
NUMBERS = [0.1, 0.2, 0.3, 0.30000000000000004, 1.5, 5, -2.5, 0, 10]
PRICES = [0.1, 0.2, 0.3, 0.25, 1.5, 3, 10]
TAGS = ["vip", "VIP", "new", "churn", "x_y"]
SKUS = ["A1", "a1", "B2", "x_y", "50%"]
ITEM_NAMES = ["Tea", "tea", "Cup 'n' saucer"]
CATEGORIES = ["tea", "Tea", "cups"]
BRANDS = ["Acme", "acme", "Zed"]
STATUSES = ["created", "paid", "paid", "fulfilled", "cancelled", "refunded"]
PLATFORMS = ["ios", "IOS", "web", ""]
TIERS = ["gold", "silver", "basic", "Gold"]
REWARDS = ["mug", "Mug", "bag"]
REASONS = ["purchase", "Purchase", "bonus", "x_y"]


def _some_of(rng: random.Random, generators: dict[str, Any]) -> dict[str, Any]:
    """Each key: a value (1/2), left out (1/4) or sent as null (1/4)."""
    out: dict[str, Any] = {}
    for key, make in generators.items():
        state = rng.choice(["value", "value", "absent", "null"])
        if state == "value":
            out[key] = make()
        elif state == "null":
            out[key] = None
    return out


def customer(rng: random.Random, index: int, ref: dt.datetime) -> CustomerBulkItem:
    profile: dict[str, Any] = {"source_id": f"c{index:02d}"}
    for name, pool in PROFILE_TEXT.items():
        profile[name] = maybe(rng, rng.choice(pool))
    profile["country"] = maybe(rng, rng.choice(COUNTRIES))
    profile["birthdate"] = maybe(rng, date(rng, ref))
    profile["created_at"] = maybe(rng, instant(rng, ref), 0.2)  # missing: the clock's now
    profile["member_since"] = maybe(rng, instant(rng, ref))
    profile["loyalty_member"] = rng.choice([True, False, None])
    profile["attributes"] = _some_of(rng, {
        "nickname": lambda: rng.choice(TEXT),
        "score": lambda: rng.choice(NUMBERS),
        "vip": lambda: rng.random() < 0.5,
        "anniversary": lambda: date(rng, ref).isoformat(),
        "last_login": lambda: iso_instant(rng, ref, rng.choice(["utc", "zone"])),
        "tags": lambda: subset(rng, TAGS),
    })
    return CustomerBulkItem.model_validate(profile)


def order(rng: random.Random, customer: str, number: int, ref: dt.datetime) -> OrderIn:
    items = [OrderItemIn(sku=rng.choice(SKUS), name=maybe(rng, rng.choice(ITEM_NAMES)),
                         category=maybe(rng, rng.choice(CATEGORIES)), brand=maybe(rng, rng.choice(BRANDS)),
                         quantity=rng.randint(1, 3), unit_price=rng.choice(MONEY))
             for _ in range(rng.randint(0, 2))]
    return OrderIn(id=f"o{number}", customer=customer, status=rng.choice(STATUSES), created_at=instant(rng, ref),
                   total=rng.choice(MONEY), items=items)


def event(rng: random.Random, customer: str, number: int, ref: dt.datetime) -> EventIn:
    name = rng.choice(["product_viewed", "product_viewed", "app_opened", "cart_abandoned", "other"])
    generators: dict[str, Any] = {}
    if name == "product_viewed":
        generators = {"sku": lambda: rng.choice(SKUS), "price": lambda: rng.choice(PRICES),
                      "tags": lambda: subset(rng, TAGS), "gift": lambda: rng.random() < 0.5,
                      "release": lambda: date(rng, ref).isoformat(),
                      "seen_at": lambda: iso_instant(rng, ref, rng.choice(["utc", "zone"])),
                      "extra": lambda: "undeclared"}
    elif name == "app_opened":
        generators = {"platform": lambda: rng.choice(PLATFORMS)}
    elif name == "other":  # not declared: rules cannot name it, its rows must not leak into other events
        generators = {"platform": lambda: "ios", "price": lambda: 1.5}
    return EventIn(id=f"e{number}", customer=customer, name=name, timestamp=instant(rng, ref),
                   properties=_some_of(rng, generators))


def loyalty_transaction(rng: random.Random, customer: str, number: int, ref: dt.datetime) -> Any:
    kind = rng.choice(["points", "points", "points", "tier", "redemption", "redemption", "referral", "gift_card"])
    base: dict[str, Any] = {"id": f"l{number}", "customer": customer, "timestamp": instant(rng, ref),
                            "reason": maybe(rng, rng.choice(REASONS))}
    if kind == "points":
        entry = rng.choice(["earn", "earn", "spend", "expire", "adjust"])
        points = rng.choice([-30, 5, 100] if entry == "adjust" else [1, 10, 50, 100])
        return PointsTransactionIn(type="points", program=rng.choice(["club", "kids"]), entry=entry, points=points,
                                   **base)
    if kind == "tier":
        return TierTransactionIn(type="tier", program=rng.choice(["club", "kids"]), tier=rng.choice(TIERS), **base)
    if kind == "redemption":
        return RedemptionTransactionIn(type="redemption", program=maybe(rng, rng.choice(["club", "kids"])),
                                       reward=rng.choice(REWARDS), **base)
    if kind == "referral":
        return ReferralTransactionIn(type="referral", referred="friend", **base)
    operation = rng.choice(["issue", "load", "redeem", "adjust"])
    amount = rng.choice([Decimal("-5"), Decimal("25.50")] if operation == "adjust" else [Decimal("10"),
                                                                                          Decimal("25.50")])
    return GiftCardTransactionIn(type="gift_card", gift_card=rng.choice(["g1", "g2"]), operation=operation,
                                 amount=amount, **base)


def make_world(seed: int, evaluations: list[tuple[dt.datetime, str]], n_customers: int) -> World:
    """A data set around the first evaluation instant: customers with profile fields (often null), attributes of
    every type, orders with items in every status, events with declared and undeclared properties, loyalty."""
    rng = random.Random(seed)
    ref = evaluations[0][0]
    world = World(customers=[customer(rng, i, ref) for i in range(n_customers)], evaluations=evaluations,
                  clock=ref - rng.choice([dt.timedelta(0), DAY, -DAY]))
    for c in world.customers:
        for _ in range(rng.randint(0, 3)):
            world.orders.append(order(rng, c.source_id, len(world.orders) + 1, ref))
        for _ in range(rng.randint(0, 3)):
            world.events.append(event(rng, c.source_id, len(world.events) + 1, ref))
        for _ in range(rng.randint(0, 3)):
            world.loyalty.append(loyalty_transaction(rng, c.source_id, len(world.loyalty) + 1, ref))
    return world


@st.composite
def evaluation_points(draw: st.DrawFn) -> list[tuple[dt.datetime, str]]:
    """One or two (as_of, time zone) pairs: a boundary anchor, then maybe a moved instant."""
    as_of = draw(st.sampled_from(ANCHORS)) + draw(st.sampled_from(JITTER))
    out = [(as_of, draw(st.sampled_from(ZONES)))]
    if draw(st.booleans()):
        out.append((as_of + draw(st.sampled_from(AS_OF_SHIFTS)), draw(st.sampled_from(ZONES))))
    return out


# -- random rules ----------------------------------------------------------------------------------------------------

NUMERIC = ("integer", "money", "number")
RULE_TEXT_EXTRA = ["a", "A", "%", "_", "'", "\\", "ó", "x", "ala"]
INTEGERS = [-30, 0, 1, 2, 3, 10, 50, 100, 150]
RELATIVE_DAYS = [0, 1, 2, 6, 7, 8, 29, 30, 31, 90, 365, 400]
ACTIVITY_VALUES: dict[str, list[Any]] = {
    "status": ["paid", "fulfilled", "cancelled", "refunded", "created", "PAID", "pending"],
    "sku": [*SKUS, "a", "_"], "name": [*ITEM_NAMES, "tea", "'"], "category": CATEGORIES, "brand": [*BRANDS, "ACME"],
    "quantity": [0, 1, 2, 3, 4], "program": ["club", "kids", "CLUB", "ghost"],
    "entry": ["earn", "spend", "adjust", "expire", "EARN"], "points": [-50, -30, -10, 1, 5, 10, 50, 100],
    "reason": REASONS, "reward": [*REWARDS, "MUG"],
    "properties.sku": SKUS, "properties.tags": [*TAGS, "Sale"], "properties.platform": [*PLATFORMS, "Ios"],
}


def scalar_pool(path: str, typ: str) -> list[Any]:
    """Rule values for a field: the data's own values (boundaries included), case variants and near misses."""
    name = path.rsplit(".", 1)[-1]
    if path in ACTIVITY_VALUES:
        return ACTIVITY_VALUES[path]
    if typ == "country":
        return ["PL", "pl", "DE", "de", "US", "FR"]
    if typ == "string":
        if name == "tier":
            return [*TIERS, "GOLD", "platinum"]
        if name in ACTIVITY_VALUES:
            return ACTIVITY_VALUES[name]
        return PROFILE_TEXT.get(name, TEXT) + RULE_TEXT_EXTRA
    if typ == "list":
        return [*TAGS, "Vip", "Sale"]
    if typ == "money":
        return [*MONEY, Decimal("-5"), Decimal("25.5"), Decimal("100.5")]
    if typ == "number":
        return [*NUMBERS, 0.25, 0.6, 3, 100]
    if typ == "integer":
        return ACTIVITY_VALUES.get(name, INTEGERS) if path in ACTIVITY_VALUES else INTEGERS
    return [True, False]


def _ordered(pair: list[str]) -> list[str]:
    def key(text: str) -> dt.datetime:
        t = dt.datetime.fromisoformat(text)
        return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t

    return sorted(pair, key=key)


def temporal_op_values(typ: str, ref: dt.datetime) -> st.SearchStrategy[tuple[str, Any]]:
    day_text = dates(ref)
    # two date-times of the same kind (both naive or both with an offset: mixing them is a validation crash, see
    # test_bug_validate_between_naive_and_aware_datetimes), in order
    same_kind_pair = st.one_of(
        st.lists(day_text, min_size=2, max_size=2).map(sorted),
        st.sampled_from(["naive", "zone"]).flatmap(lambda style: st.lists(iso_instants(ref, style), min_size=2,
                                                                          max_size=2)).map(_ordered),
    )
    # a date and a date-time in either order: validation does not order them, an inverted pair is simply empty
    mixed_pair = st.tuples(day_text, iso_instants(ref)).flatmap(lambda p: st.sampled_from([list(p), list(p[::-1])]))
    moment = st.one_of(day_text, iso_instants(ref)) if typ == "datetime" else day_text
    return st.one_of(
        st.sampled_from([("has_value", None), ("is_unknown", None), ("anniversary_this_month", None)]),
        st.tuples(st.just("on"), day_text),
        st.tuples(st.sampled_from(["before", "after"]), moment),
        st.tuples(st.just("between"), st.one_of(same_kind_pair, mixed_pair) if typ == "datetime"
                  else st.lists(day_text, min_size=2, max_size=2).map(sorted)),
        st.tuples(st.sampled_from(["exactly_days_ago", "less_than_days_ago", "more_than_days_ago", "in_next_days",
                                   "anniversary_within_days"]), st.sampled_from(RELATIVE_DAYS)),
        st.tuples(st.just("in_calendar"), st.sampled_from(CALENDAR_PERIODS)),
    )


def op_values(path: str, typ: str, ref: dt.datetime) -> st.SearchStrategy[tuple[str, Any]]:
    """Every operator that fits the type (as the catalog says), with a value."""
    allowed = OPERATORS_BY_TYPE[typ]
    return _op_values(path, typ, ref).filter(lambda op_value: op_value[0] in allowed)


def _op_values(path: str, typ: str, ref: dt.datetime) -> st.SearchStrategy[tuple[str, Any]]:
    if typ in ("date", "datetime"):
        return temporal_op_values(typ, ref)
    pool = st.sampled_from(scalar_pool(path, typ))
    lists = st.lists(pool, min_size=1, max_size=3)
    presence = st.sampled_from([("has_value", None), ("is_unknown", None)])
    if typ in ("string", "country"):
        return st.one_of(
            presence,
            st.tuples(st.sampled_from(["is", "is_not"]), pool),
            st.tuples(st.sampled_from(["in", "not_in"]), lists),
            st.tuples(st.sampled_from(["contains", "not_contains", "starts_with", "ends_with"]),
                      pool.filter(lambda s: s != "")),
        )
    if typ in NUMERIC:
        return st.one_of(
            presence,
            st.tuples(st.sampled_from(["is", "is_not", "lt", "lte", "gt", "gte"]), pool),
            st.tuples(st.sampled_from(["in", "not_in"]), lists),
            st.tuples(st.just("between"), st.lists(pool, min_size=2, max_size=2).map(sorted)),
        )
    if typ == "boolean":
        return st.one_of(presence, st.tuples(st.sampled_from(["is", "is_not"]), st.booleans()))
    assert typ == "list"
    return st.one_of(presence, st.tuples(st.sampled_from(["has_any", "has_all", "has_none"]), lists))


FIELD_TYPES: dict[str, str] = {path: spec.type for path, spec in CATALOG.fields.items()}
FIELD_TYPES.update({"country": "country", "city": "string"})  # bare names are profile fields


@st.composite
def conditions(draw: st.DrawFn, ref: dt.datetime, fields: dict[str, str] = FIELD_TYPES) -> dict[str, Any]:
    path = draw(st.sampled_from(sorted(fields)))
    typ = fields[path]
    op, value = draw(op_values(path, typ, ref))
    out: dict[str, Any] = {"field": path, "op": op}
    if value is not None:
        out["value"] = value
    if typ in ("string", "country", "list") and op not in ("has_value", "is_unknown") and draw(st.booleans()):
        out["case_sensitive"] = True
    return out


def windows(ref: dt.datetime) -> st.SearchStrategy[dict[str, Any] | None]:
    moment = st.one_of(dates(ref), iso_instants(ref))
    return st.one_of(
        st.none(),
        st.builds(lambda n: {"last_days": n}, st.sampled_from([1, 2, 7, 14, 30, 31, 90, 365])),
        st.builds(lambda a, b: {"days_ago": [a, b]}, st.sampled_from([0, 1, 2, 7, 30]), st.sampled_from([0, 1, 7, 31])),
        st.builds(lambda c: {"calendar": c}, st.sampled_from(WINDOW_CALENDAR_PERIODS)),
        st.builds(lambda a, b: {"between": [a, b]}, moment, moment),
    )


def activity_fields(activity: str, event: str | None) -> dict[str, str]:
    if activity == "events":
        return {f"properties.{k}": t for k, t in EVENTS[event or ""].items()}
    return {name: typ for name, (typ, _column) in ACTIVITY_FIELDS[activity].items()}


@st.composite
def activities(draw: st.DrawFn, ref: dt.datetime) -> dict[str, Any]:
    activity = draw(st.sampled_from(["orders", "orders", "order_items", "events", "events", "points", "redemptions"]))
    out: dict[str, Any] = {"activity": activity}
    event = None
    if activity == "events":
        event = draw(st.sampled_from(["product_viewed", "product_viewed", "app_opened", "cart_abandoned"]))
        out["event"] = event
    fields = activity_fields(activity, event)
    if fields:
        where = draw(st.lists(conditions(ref, fields), max_size=2))
        if where:
            out["where"] = where
    window = draw(windows(ref))
    if window is not None:
        out["window"] = window
    numeric = sorted(f for f, t in fields.items() if t in NUMERIC)
    fn = draw(st.sampled_from(MEASURE_FUNCTIONS)) if numeric else "count"
    measure_type, pool_path = "integer", "count"
    if fn != "count":
        measured = draw(st.sampled_from(numeric))
        out["measure"] = {"fn": fn, "field": measured}
        measure_type, pool_path = fields[measured], measured
        if fn == "avg" and measure_type == "integer":
            measure_type = "number"  # an average of whole numbers may be a fraction
    elif draw(st.booleans()):
        out["measure"] = {"fn": "count"}
    if pool_path == "count":
        op, value = draw(st.one_of(
            st.sampled_from([("has_value", None), ("is_unknown", None)]),
            st.tuples(st.sampled_from(["is", "is_not", "lt", "lte", "gt", "gte"]), st.integers(0, 3)),
            st.tuples(st.sampled_from(["in", "not_in"]), st.lists(st.integers(0, 3), min_size=1, max_size=2)),
            st.tuples(st.just("between"), st.lists(st.integers(0, 3), min_size=2, max_size=2).map(sorted)),
        ))
    else:
        op, value = draw(op_values(f"measure.{pool_path}", measure_type, ref))
    out["op"] = op
    if value is not None:
        out["value"] = value
    return out


def samples() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda p, s: {"sample": {"percent": p, "seed": s}},
                     st.sampled_from([0, 1, 10, Decimal("33.33"), 50, Decimal("99.99"), 100]),
                     st.sampled_from(["a", "spring-holdout"]))


def rule_trees(ref: dt.datetime) -> st.SearchStrategy[dict[str, Any]]:
    leaves = st.one_of(conditions(ref), conditions(ref), activities(ref), activities(ref), samples())
    return st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.builds(lambda xs: {"and": xs}, st.lists(kids, max_size=3)),
            st.builds(lambda xs: {"or": xs}, st.lists(kids, max_size=3)),
            st.builds(lambda x: {"not": x}, kids),
        ),
        max_leaves=5,
    )


# -- the property ----------------------------------------------------------------------------------------------------


def test_batch_and_predicate_agree_on_both_stores(stores: list[Store]) -> None:
    """>= 1,000 rule/data pairs (each at one or two instants): the six answers never disagree.

    Each example draws one or two (as_of, zone) points, RULES_PER_EXAMPLE rules and WORLDS_PER_EXAMPLE data sets; every
    rule is compiled once per point and store, then run against every data set (written fresh into both stores).
    """
    counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()

    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(points=evaluation_points(), data=st.data())
    def check(points: list[tuple[dt.datetime, str]], data: st.DataObject) -> None:
        ref = points[0][0]
        rule_jsons = data.draw(st.lists(rule_trees(ref), min_size=RULES_PER_EXAMPLE, max_size=RULES_PER_EXAMPLE),
                               label="rules")
        seeds = data.draw(st.lists(st.integers(0, 2**32 - 1), min_size=WORLDS_PER_EXAMPLE,
                                   max_size=WORLDS_PER_EXAMPLE), label="world seeds")
        sizes = data.draw(st.lists(st.integers(10, 22), min_size=WORLDS_PER_EXAMPLE, max_size=WORLDS_PER_EXAMPLE),
                          label="customers per world")
        parsed = [rules.validate(r, CATALOG, EXPONENT) for r in rule_jsons]  # the strategies only make valid rules
        contexts = [rules.Context(as_of=t, timezone=zone, currency_exponent=EXPONENT, catalog=CATALOG)
                    for t, zone in points]
        sqls: dict[tuple[int, int], dict[str, str | Exception]] = {}
        for s in stores:
            with s.factory() as session:
                for i, rule in enumerate(parsed):
                    for j, ctx in enumerate(contexts):
                        sqls.setdefault((i, j), {})[s.name] = compiled_sql(session, rule, ctx)
        for seed, size in zip(seeds, sizes, strict=True):
            world = make_world(seed, points, size)
            ids = load(stores, world)
            by_id = {v: k for k, v in ids.items()}
            sessions = {s.name: s.factory() for s in stores}
            try:
                if not counts:
                    catalog = build_catalog(sessions["postgresql"])
                    assert catalog.attribute_definitions == CATALOG.attribute_definitions
                    assert catalog.event_definitions == CATALOG.event_definitions
                for i, rule in enumerate(parsed):
                    for j, ctx in enumerate(contexts):
                        got = answers(sessions, sqls[(i, j)], sorted(by_id), rule, ctx)
                        problem = disagreement(got, by_id)
                        if problem is not None:
                            note(f"world seed {seed}, {size} customers: {world}")
                            raise AssertionError(
                                f"evaluators disagree at as_of={ctx.as_of.isoformat()} timezone={points[j][1]} "
                                f"(world seed {seed}, {size} customers) on rule\n"
                                f"{json.dumps(rule_jsons[i], default=str)}\n{problem}"
                            )
                        counts["evaluations"] += 1
                        matched = got["batch/sqlite"]
                        assert not isinstance(matched, str)
                        kinds["none" if not matched else "all" if len(matched) == len(by_id) else "some"] += 1
                    counts["pairs"] += 1
            finally:
                for session in sessions.values():
                    session.close()

    check()
    print(f"\nstore differential: {counts['pairs']} rule/data pairs, {counts['evaluations']} evaluations, "
          f"answers {dict(kinds)}")
    assert counts["pairs"] >= MIN_PAIRS, f"only {counts['pairs']} rule/data pairs were checked"
    # not vacuous: most rules split the customers rather than matching nobody or everybody
    assert kinds["some"] >= counts["evaluations"] // 4, dict(kinds)


def test_dropoff_counts_are_those_of_each_node_evaluated_alone(stores: list[Store]) -> None:
    """The preview reads each condition once and combines the matches (``evaluation.store.NodeMatches``);
    every count must be what evaluating that node (or that AND prefix) on its own in the store gives, on both
    stores."""
    checked = on_random_worlds(stores, max(MAX_EXAMPLES // 3, 5), 4,
                               lambda rule_json, ctx: check_node_counts(stores, rule_json, ctx))
    assert checked["cumulative"] >= 20, dict(checked)  # not vacuous: ANDs were drawn and their prefixes counted


def on_random_worlds(stores: Sequence[Store], examples: int, rules_per_world: int,
                     check_rule: Callable[[dict[str, Any], rules.Context], Counter[str]]) -> Counter[str]:
    """``check_rule`` on random rules over random data (written into both stores) at a random instant and zone; the
    counts it returned, added up."""
    checked: Counter[str] = Counter()

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None, print_blob=False,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(points=evaluation_points(), data=st.data())
    def check(points: list[tuple[dt.datetime, str]], data: st.DataObject) -> None:
        as_of, zone = points[0]
        rule_jsons = data.draw(st.lists(rule_trees(as_of), min_size=rules_per_world, max_size=rules_per_world),
                               label="rules")
        world = make_world(data.draw(st.integers(0, 2**32 - 1), label="world seed"), points,
                           data.draw(st.integers(10, 22), label="customers"))
        load(stores, world)
        ctx = rules.Context(as_of=as_of, timezone=zone, currency_exponent=EXPONENT, catalog=CATALOG)
        for rule_json in rule_jsons:
            checked.update(check_rule(rule_json, ctx))

    check()
    return checked


def check_node_counts(stores: Sequence[Store], rule_json: dict[str, Any], ctx: rules.Context) -> Counter[str]:
    """Asserts the preview's counts of every node and AND prefix, its count and its sample on each store; returns
    how many nodes and prefixes were checked."""
    checked: Counter[str] = Counter()
    rule = rules.assign_ids(rules.validate(rule_json, CATALOG, EXPONENT))
    for s in stores:
        with s.factory() as session:
            population = batch.population(session)
            matches = NodeMatches(session, ctx, population)
            matching = matches.of(rule.root)
            nodes = node_counts(matches, rule)
            got = {node.id: (node.passing, node.cumulative) for node in nodes}
            want = {node_id: (batch.count_matching(session, node, ctx), prefix)
                    for node_id, node, prefix in _nodes_and_prefixes(session, rule, ctx)}
            assert got == want, f"{s.name}: {json.dumps(rule_json, default=str)}"
            expected = {row[0] for row in batch.run_sql(session, batch.matching_sql(session, rule, ctx))}
            assert matching.count(population) == len(expected)
            assert matches.lowest(matching, 5) == sorted(expected)[:5]
            checked["nodes"] += len(nodes)
            checked["cumulative"] += sum(node.cumulative is not None for node in nodes)
    return checked


ORDERS_30_DAYS = {"activity": "orders", "window": {"last_days": 30}}


@pytest.mark.parametrize("rule", [
    # conditions read as "everyone except": what a negation negates, a default that passes, a count of no rows
    {"and": [{"field": "profile.country", "op": "is_not", "value": "PL"}, {**ORDERS_30_DAYS, "op": "is", "value": 0}]},
    {"or": [{**ORDERS_30_DAYS, "op": "lt", "value": 1},
            {"field": "loyalty.club.points_balance", "op": "lt", "value": 50}]},
    {"and": [{"not": {**ORDERS_30_DAYS, "op": "gte", "value": 1}}, {**ORDERS_30_DAYS, "op": "in", "value": [0]}]},
    # a count that only asks for a row, and ones that need counting
    {"and": [{**ORDERS_30_DAYS, "op": "gt", "value": 0}, {**ORDERS_30_DAYS, "op": "lte", "value": 1},
             {**ORDERS_30_DAYS, "op": "between", "value": [1, 2]}]},
    {"or": [{"activity": "events", "event": "product_viewed", "op": "gte", "value": 1},
            {"not": {"activity": "points", "op": "is", "value": 0}}]},
    # samples beside conditions and under a negation
    {"and": [{"sample": {"percent": 50, "seed": "a"}}, {"not": {"sample": {"percent": 10, "seed": "b"}}},
             {"field": "profile.country", "op": "in", "value": ["PL", "DE"]}]},
])
def test_dropoff_counts_in_every_form_a_condition_is_read(stores: list[Store], rule: dict[str, Any]) -> None:
    """Pinned rules for each way ``NodeMatches`` reads a condition (its matches, or every customer but those), on
    one data set with orders inside and outside the window, balances on both sides of the threshold and no data."""
    world = make_world(20261124, [(AS_OF, "Europe/Warsaw")], 22)
    load(stores, world)
    ctx = rules.Context(as_of=AS_OF, timezone="Europe/Warsaw", currency_exponent=EXPONENT, catalog=CATALOG)
    assert check_node_counts(stores, rule, ctx)["nodes"] >= 3


def _nodes_and_prefixes(session: Session, rule: rules.Rule,
                        ctx: rules.Context) -> Iterator[tuple[str, Any, int | None]]:
    """Every node the drop-off counts, with the count of its AND prefix (itself and every earlier member) evaluated
    alone in the store, or None outside an AND."""
    prefixes: dict[int, int] = {}
    for node in walk(rule.root):
        if isinstance(node, rules.And):
            for index, member in enumerate(node.and_):
                prefix = rules.And.model_validate({"and": [rules.node_to_json(n) for n in node.and_[: index + 1]]})
                prefixes[id(member)] = batch.count_matching(session, prefix, ctx)
    where = {id(c) for node in walk(rule.root) if isinstance(node, rules.Activity) for c in node.where}
    for node in walk(rule.root):
        if id(node) not in where:
            yield node.id, node, prefixes.get(id(node))


# -- edge cases, on both stores ----------------------------------------------------------------------------------------

AS_OF = dt.datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


def person(source_id: str, **fields: Any) -> CustomerBulkItem:
    return CustomerBulkItem.model_validate({"source_id": source_id, **fields})


def paid(order_id: str, customer: str, at: dt.datetime, total: str, status: str = "paid") -> OrderIn:
    return OrderIn.model_validate({"id": order_id, "customer": customer, "status": status,
                                   "created_at": at.isoformat(), "total": total})


@pytest.mark.parametrize(("rule", "expected"), [
    ({"field": "profile.country", "op": "is", "value": "PL"}, {"pl"}),
    ({"field": "profile.country", "op": "is_not", "value": "pl"}, {"de", "none"}),
    ({"field": "profile.country", "op": "not_in", "value": ["PL", "DE"]}, {"none"}),
    ({"field": "profile.country", "op": "is_unknown"}, {"none"}),
    ({"not": {"field": "profile.country", "op": "is", "value": "PL"}}, {"de", "none"}),
    ({"field": "attributes.nickname", "op": "is_not", "value": "Ala"}, {"de", "none"}),
    ({"field": "attributes.nickname", "op": "has_value"}, {"pl", "de"}),
    ({"field": "attributes.tags", "op": "has_none", "value": ["vip"]}, {"de", "none"}),  # [] is no value
    ({"field": "attributes.tags", "op": "is_unknown"}, {"de", "none"}),
    ({"field": "loyalty.ghost.points_balance", "op": "is", "value": 0}, {"pl", "de", "none"}),
    ({"field": "loyalty.club.tier", "op": "is_not", "value": "gold"}, {"pl", "de", "none"}),
])
def test_nulls(stores: list[Store], rule: dict[str, Any], expected: set[str]) -> None:
    world = World(customers=[
        person("pl", country="PL", attributes={"nickname": "Ala", "tags": ["VIP"]}),
        person("de", country="DE", attributes={"nickname": "Bob", "tags": []}),
        person("none", country=None),
    ])
    assert evaluate(stores, world, rule, AS_OF) == expected


MANY_TAGS = [f"t{i}" for i in range(MAX_LIST_LENGTH - 2)]
VIEWED = {"activity": "events", "event": "product_viewed", "op": "is", "value": 1}  # counted: the deepest form


def _tags_viewed(tags: list[str]) -> dict[str, Any]:
    return {**VIEWED, "where": [{"field": "properties.tags", "op": "has_all", "value": tags}]}


@pytest.mark.parametrize(("rule", "expected"), [
    # One semi join per value nested (events) or ANDed (attributes) overflowed SQLite's parser at five values and
    # its expression depth at 999: the statements stay within them up to the longest list a rule may hold.
    (_tags_viewed(["a", "b", "c", "d", "e"]), {"all"}),
    ({"not": {"not": _tags_viewed(["a", "b", "c", "d", "e"])}}, {"all"}),
    (_tags_viewed(["a", "b", "c", "d", "e", "f"]), set()),
    ({**VIEWED, "where": [{"field": "properties.tags", "op": "has_all", "value": ["a", "b"]},
                          *({"field": "properties.sku", "op": "contains", "value": c} for c in "sku-1")]}, {"all"}),
    (_tags_viewed([*MANY_TAGS[:40], "a"]), set()),
    ({"field": "attributes.tags", "op": "has_all", "value": [*MANY_TAGS, "a", "b"]}, set()),  # over 100 stored
    ({"field": "attributes.tags", "op": "has_all", "value": [*MANY_TAGS[:95], "a", "b"]}, {"many"}),
    ({"field": "attributes.tags", "op": "has_all", "value": ["a", "b", "c", "d", "e"]}, {"many", "all"}),
    ({"not": {"field": "attributes.tags", "op": "has_all", "value": [*MANY_TAGS, "a"]}}, {"many", "all", "some"}),
])
def test_long_lists_within_sqlite_limits(stores: list[Store], rule: dict[str, Any], expected: set[str]) -> None:
    tags = ["a", "b", "c", "d", "e"]
    world = World(
        customers=[person("many", attributes={"tags": [*MANY_TAGS[:95], "a", "b", "c", "d", "e"]}),  # 100: the most
                   person("all", attributes={"tags": tags}), person("some", attributes={"tags": ["a"]})],
        events=[EventIn(id="e1", customer="all", name="product_viewed", timestamp=AS_OF - DAY,
                        properties={"tags": tags, "sku": "sku-1"}),
                EventIn(id="e2", customer="some", name="product_viewed", timestamp=AS_OF - DAY,
                        properties={"tags": ["a", "b"], "sku": "sku-2"})],
    )
    assert evaluate(stores, world, rule, AS_OF) == expected


@pytest.mark.parametrize(("rule", "expected"), [
    ({"activity": "orders", "measure": {"fn": "sum", "field": "total"}, "op": "is", "value": 0}, {"idle", "free"}),
    ({"activity": "orders", "measure": {"fn": "sum", "field": "total"}, "op": "lt", "value": 1}, {"idle", "free"}),
    ({"activity": "orders", "measure": {"fn": "avg", "field": "total"}, "op": "has_value"}, {"free", "buyer"}),
    ({"activity": "orders", "measure": {"fn": "avg", "field": "total"}, "op": "is_unknown"}, {"idle"}),
    ({"activity": "orders", "measure": {"fn": "min", "field": "total"}, "op": "lt", "value": 1000}, {"free", "buyer"}),
    ({"activity": "orders", "op": "is", "value": 0}, {"idle"}),
    ({"activity": "points", "measure": {"fn": "sum", "field": "points"}, "op": "lte", "value": 0}, {"idle", "free",
                                                                                                    "buyer"}),
    ({"field": "summary.average_order_value", "op": "is_unknown"}, {"idle"}),
    ({"field": "summary.total_spent", "op": "is", "value": 0}, {"idle", "free"}),
])
def test_empty_activity(stores: list[Store], rule: dict[str, Any], expected: set[str]) -> None:
    world = World(customers=[person("idle"), person("free"), person("buyer")],
                  orders=[paid("o1", "free", AS_OF - DAY, "0"), paid("o2", "buyer", AS_OF - DAY, "20.00"),
                          paid("o3", "idle", AS_OF - DAY, "30.00", status="cancelled")])
    assert evaluate(stores, world, rule, AS_OF) == expected


def test_window_boundaries(stores: list[Store]) -> None:
    start = AS_OF - 7 * DAY
    world = World(
        customers=[person("at_start"), person("before_start"), person("at_as_of"), person("after_as_of")],
        orders=[paid("o1", "at_start", start, "10"), paid("o2", "before_start", start - MICRO, "10"),
                paid("o3", "at_as_of", AS_OF, "10"), paid("o4", "after_as_of", AS_OF + MICRO, "10")],
        events=[EventIn(id=f"e{n}", customer=c, name="app_opened", timestamp=t, properties={"platform": "ios"})
                for n, (c, t) in enumerate([("at_as_of", AS_OF), ("after_as_of", AS_OF + MICRO),
                                            ("at_start", start)])],
    )
    last_week = {"activity": "orders", "window": {"last_days": 7}, "op": "gte", "value": 1}
    assert evaluate(stores, world, last_week, AS_OF) == {"at_start", "at_as_of"}
    assert evaluate(stores, world, {**last_week, "window": {"between": [start.isoformat(), AS_OF.isoformat()]}},
                    AS_OF) == {"at_start", "at_as_of"}
    ever = {"activity": "events", "event": "app_opened", "op": "gte", "value": 1}
    assert evaluate(stores, world, ever, AS_OF) == {"at_as_of", "at_start"}  # after as_of never counts
    assert evaluate(stores, world, {**ever, "window": {"days_ago": [0, 0]}}, AS_OF) == {"at_as_of"}
    assert evaluate(stores, world, {"field": "summary.last_order_at", "op": "after",
                                    "value": AS_OF.isoformat()}, AS_OF) == {"after_as_of"}


WARSAW, LOS_ANGELES = "Europe/Warsaw", "America/Los_Angeles"


@pytest.mark.parametrize(("day", "zone", "expected"), [
    # 2026-03-29 in Warsaw is 23 hours: 2026-03-28T23:00Z .. 2026-03-29T22:00Z
    ("2026-03-29", WARSAW, {"w_start", "w_end_minus"}),
    ("2026-03-28", WARSAW, {"w_before"}),
    ("2026-03-28", LOS_ANGELES, {"w_before", "w_start"}),
    # 2026-03-08 in Los Angeles is 23 hours: 2026-03-08T08:00Z .. 2026-03-09T07:00Z
    ("2026-03-08", LOS_ANGELES, {"la_start", "la_end_minus"}),
    ("2026-03-09", LOS_ANGELES, {"la_next"}),
    ("2026-03-09", WARSAW, {"la_end_minus", "la_next"}),
])
def test_time_zone_days_across_dst(stores: list[Store], day: str, zone: str, expected: set[str]) -> None:
    times = {
        "w_before": dt.datetime(2026, 3, 28, 22, 59, 59, tzinfo=UTC),
        "w_start": dt.datetime(2026, 3, 28, 23, 0, tzinfo=UTC),
        "w_end_minus": dt.datetime(2026, 3, 29, 21, 59, 59, 999999, tzinfo=UTC),
        "la_start": dt.datetime(2026, 3, 8, 8, 0, tzinfo=UTC),
        "la_end_minus": dt.datetime(2026, 3, 9, 6, 59, 59, tzinfo=UTC),
        "la_next": dt.datetime(2026, 3, 9, 7, 0, tzinfo=UTC),
    }
    world = World(customers=[person(c, created_at=t.isoformat()) for c, t in times.items()],
                  orders=[paid(f"o-{c}", c, t, "10") for c, t in times.items()])
    as_of = dt.datetime(2026, 4, 2, 12, 0, tzinfo=UTC)
    on_day = {"activity": "orders", "window": {"between": [day, day]}, "op": "gte", "value": 1}
    assert evaluate(stores, world, on_day, as_of, zone) == expected
    assert evaluate(stores, world, {"field": "profile.created_at", "op": "on", "value": day}, as_of, zone) == expected


def test_last_days_across_dst_is_wall_clock(stores: list[Store]) -> None:
    """as_of 2026-03-29 12:00Z: one wall-clock day back in Warsaw is 2026-03-28 13:00Z (23 hours), in UTC 12:00Z."""
    world = World(customers=[person("a"), person("b")],
                  orders=[paid("o1", "a", dt.datetime(2026, 3, 28, 12, 30, tzinfo=UTC), "10"),
                          paid("o2", "b", dt.datetime(2026, 3, 28, 13, 0, tzinfo=UTC), "10")])
    rule = {"activity": "orders", "window": {"last_days": 1}, "op": "gte", "value": 1}
    as_of = dt.datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
    assert evaluate(stores, world, rule, as_of, "UTC") == {"a", "b"}
    assert evaluate(stores, world, rule, as_of, WARSAW) == {"b"}


@pytest.mark.parametrize(("as_of", "zone", "expected"), [
    (dt.datetime(2026, 3, 8, 7, 59, 59, tzinfo=UTC), LOS_ANGELES, set()),  # still 2026-03-07 in Los Angeles
    (dt.datetime(2026, 3, 8, 8, 0, tzinfo=UTC), LOS_ANGELES, {"x"}),
    (dt.datetime(2026, 3, 7, 22, 59, 59, tzinfo=UTC), WARSAW, set()),
    (dt.datetime(2026, 3, 7, 23, 0, tzinfo=UTC), WARSAW, {"x"}),
])
def test_today_near_midnight(stores: list[Store], as_of: dt.datetime, zone: str, expected: set[str]) -> None:
    world = World(customers=[person("x", birthdate="1990-03-08", attributes={"anniversary": "2020-03-08"})])
    assert evaluate(stores, world, {"field": "profile.birthdate", "op": "anniversary_within_days", "value": 0},
                    as_of, zone) == expected
    assert evaluate(stores, world, {"field": "attributes.anniversary", "op": "anniversary_within_days", "value": 0},
                    as_of, zone) == expected


@pytest.mark.parametrize(("op", "value", "matches"), [
    ("gt", "500", False), ("gte", "500", True), ("gte", "500.00", True), ("is", "500", True), ("lt", "500", False),
    ("gt", "499.99", True), ("lt", "500.01", True), ("between", ["500", "500"], True),
])
def test_money_at_exact_thresholds(stores: list[Store], op: str, value: Any, matches: bool) -> None:
    world = World(customers=[person("exact"), person("under"), person("over")],
                  orders=[paid("o1", "exact", AS_OF - DAY, "250.00"), paid("o2", "exact", AS_OF - 2 * DAY, "250"),
                          paid("o3", "under", AS_OF - DAY, "499.99"), paid("o4", "over", AS_OF - DAY, "500.01")])
    v = [Decimal(x) for x in value] if isinstance(value, list) else Decimal(value)
    got = evaluate(stores, world, {"field": "summary.total_spent", "op": op, "value": v}, AS_OF)
    assert ("exact" in got) is matches
    got = evaluate(stores, world, {"activity": "orders", "measure": {"fn": "sum", "field": "total"}, "op": op,
                                   "value": v}, AS_OF)
    assert ("exact" in got) is matches


def test_average_money_is_exact(stores: list[Store]) -> None:
    """avg(100.00, 100.01) = 100.005: above 100, below 100.01 (the summary rounds it half up to 100.01)."""
    world = World(customers=[person("a")], orders=[paid("o1", "a", AS_OF - DAY, "100.00"),
                                                   paid("o2", "a", AS_OF - DAY, "100.01")])
    avg = {"activity": "orders", "measure": {"fn": "avg", "field": "total"}}
    assert evaluate(stores, world, {**avg, "op": "gt", "value": 100}, AS_OF) == {"a"}
    assert evaluate(stores, world, {**avg, "op": "lt", "value": Decimal("100.01")}, AS_OF) == {"a"}
    assert evaluate(stores, world, {"field": "summary.average_order_value", "op": "is", "value": Decimal("100.01")},
                    AS_OF) == {"a"}


# -- bugs found by the property test (each fails until its bug is fixed) -----------------------------------------------


def test_between_mixing_naive_and_aware_datetimes_is_a_rule_error() -> None:
    """Was a TypeError (a 500 at the API): one bound local time, the other with an offset."""
    rule = {"field": "profile.created_at", "op": "between", "value": ["2026-03-01T00:00:00", "2026-03-02T00:00:00Z"]}
    with pytest.raises(rules.RuleError, match="both bounds"):
        rules.validate(rule, CATALOG, EXPONENT)


@pytest.mark.parametrize(("rule", "expected"), [
    # a default that passes ("no failing row"), a negated list, a negated activity beside another condition
    ({"field": "loyalty.club.points_balance", "op": "lt", "value": 110}, {"de", "none"}),
    ({"not": {"field": "attributes.tags", "op": "has_any", "value": ["vip"]}}, {"de", "none"}),
    ({"and": [{"field": "profile.country", "op": "in", "value": ["PL", "DE"]},
              {"not": {"activity": "orders", "window": {"last_days": 60}, "op": "gte", "value": 1}}]}, {"de"}),
])  # fmt: skip
def test_negations_are_anti_joins_on_postgresql(stores: list[Store], rule: dict[str, Any], expected: set[str]) -> None:
    """PostgreSQL runs ``NOT IN (subquery)`` as a test of each row against the whole list once the list outgrows
    ``work_mem`` (47 minutes at 1,000,000 customers); the store sends it ``NOT EXISTS``, planned as an anti join,
    and every evaluator on both stores still agrees."""
    earned = PointsTransactionIn(type="points", program="club", entry="earn", points=150, id="l1", customer="pl",
                                 timestamp=AS_OF - DAY)
    world = World(customers=[person("pl", country="PL", attributes={"tags": ["VIP"]}), person("de", country="DE"),
                             person("none", country=None)],
                  orders=[paid("o1", "pl", AS_OF - DAY, "10.00")], loyalty=[earned])  # fmt: skip
    assert evaluate(stores, world, rule, AS_OF) == expected  # evaluate checks that every evaluator agrees
    postgres = next(s for s in stores if s.name == "postgresql")
    with postgres.factory() as session:
        ctx = rules.Context(AS_OF, "UTC", EXPONENT, CATALOG)
        sql = batch.matching_sql(session, rules.validate(rule, CATALOG, EXPONENT), ctx)
        plan = "\n".join(row[0] for row in session.execute(sa.text(f"EXPLAIN {sql}")))
    assert "NOT EXISTS" in sql
    assert "Anti Join" in plan and "SubPlan" not in plan, plan


# -- wake-ups planned set-based ----------------------------------------------------------------------------------------


def test_wakeups_planned_set_based_are_never_late(stores: list[Store]) -> None:
    """``evaluation.wakeups.wakeup_candidates`` (a time-dependent segment's wake-ups from grouped statements) on
    random rules and data in both stores: for every customer, the rule's answer does not change anywhere before the
    planned instant (followed change by change with ``rules.next_change`` and the predicate), and a customer left
    without a wake-up never changes by the clock alone."""
    checked = on_random_worlds(stores, max(MAX_EXAMPLES // 2, 5), 6, lambda rule_json, ctx: check_wakeups(
        stores, rules.validate(rule_json, CATALOG, EXPONENT), ctx))
    # not vacuous: most random rules move with the clock and are planned set-based, and some customers were woken
    assert checked["set-based"] >= 30 and checked["woken"] >= 50, dict(checked)


@pytest.mark.parametrize("rule", [
    {**ORDERS_30_DAYS, "op": "gte", "value": 2},  # leaving rows can flip it only while it is true
    {"not": {**ORDERS_30_DAYS, "op": "gte", "value": 1}},  # "no order in 30 days"
    {**ORDERS_30_DAYS, "measure": {"fn": "sum", "field": "total"}, "op": "gt", "value": 100},  # either way
    {"activity": "points", "window": {"calendar": "this_month"}, "measure": {"fn": "sum", "field": "points"},
     "op": "gt", "value": 10},
    {"activity": "orders", "window": {"calendar": "last_quarter"}, "op": "gte", "value": 1},
    {"activity": "events", "event": "product_viewed", "window": {"between": ["2026-03-01", "2026-03-20"]},
     "op": "gte", "value": 1},
    {"and": [{"field": "profile.birthdate", "op": "anniversary_within_days", "value": 7},
             {"activity": "orders", "op": "gte", "value": 1}]},
])
def test_wakeups_planned_set_based_for_each_window(stores: list[Store], rule: dict[str, Any]) -> None:
    """Pinned rules for each kind of leaf the set-based plan bounds, on one data set across a time-zone change."""
    world = make_world(20261124, [(AS_OF, "Europe/Warsaw")], 22)
    load(stores, world)
    ctx = rules.Context(as_of=AS_OF, timezone="Europe/Warsaw", currency_exponent=EXPONENT, catalog=CATALOG)
    checked = check_wakeups(stores, rules.validate(rule, CATALOG, EXPONENT), ctx)
    assert checked["set-based"] == len(stores) and checked["customers"] >= 20


def test_days_ago_windows_are_walked_per_customer() -> None:
    rule = rules.validate({"activity": "orders", "window": {"days_ago": [7, 14]}, "op": "gte", "value": 1}, CATALOG)
    ctx = rules.Context(as_of=AS_OF, timezone="UTC", catalog=CATALOG)
    assert rules.time_leaves(rule, ctx) is None


def check_wakeups(stores: Sequence[Store], rule: rules.Rule, ctx: rules.Context) -> Counter[str]:
    checked: Counter[str] = Counter()
    requirements = rules.rule_requirements(rule, ctx)
    for s in stores:
        with s.factory() as session:
            planned = wakeup_candidates(session, rule, ctx, value_types(session))
            if planned is None:
                checked["walked"] += 1
                continue
            checked["set-based"] += 1
            ids = [int(i) for i in batch.customer_ids(session)]
            for customer_id, snapshot in load_snapshots(session, ids, requirements).items():
                checked["customers"] += 1
                checked["woken"] += customer_id in planned
                late = first_change_before(rule, snapshot, ctx, planned.get(customer_id))
                assert late is None, (
                    f"{s.name}: {rules.to_text(rule)} at {ctx.as_of} {ctx.timezone}: customer {customer_id} planned "
                    f"for {planned.get(customer_id)} but the answer changes at {late}"
                )
    return checked


def first_change_before(rule: rules.Rule, snapshot: rules.CustomerSnapshot, ctx: rules.Context,
                        planned: dt.datetime | None) -> dt.datetime | None:
    """The first instant before ``planned`` (None: ever) where the rule's answer differs from its answer now,
    following ``next_change`` from instant to instant (it may stop early where nothing changes), or None."""
    answer = rules.compile_predicate(rule, ctx)(snapshot)
    at = ctx
    for _ in range(40):
        following = rules.next_change(rule, snapshot, at)
        if following is None or (planned is not None and following >= planned):
            return None
        at = at.at(following)
        if rules.compile_predicate(rule, at)(snapshot) != answer:
            return following
    return None  # pragma: no cover - forty instants without a change



def test_a_row_just_below_a_window_start_wakes_its_customer_when_the_clock_falls_back(stores: list[Store]) -> None:
    """Warsaw falls back at 2025-10-26 01:00 UTC: "the last 7 days" then starts an hour earlier (local wall clock),
    and an order that had just left the window counts again. No order is inside the window now, so no row can leave:
    only the row below the start makes this customer's answer change, at the transition."""
    as_of = dt.datetime(2025, 10, 26, 0, 30, tzinfo=UTC)
    world = World(
        customers=[CustomerBulkItem.model_validate({"source_id": "c01"}),
                   CustomerBulkItem.model_validate({"source_id": "c02"})],
        orders=[OrderIn(id="o1", customer="c01", status="paid", created_at=dt.datetime(2025, 10, 19, 0, 15, tzinfo=UTC),
                        total=Decimal("10"), items=[]),
                OrderIn(id="o2", customer="c02", status="paid", created_at=dt.datetime(2025, 10, 10, 0, 0, tzinfo=UTC),
                        total=Decimal("10"), items=[])],
        clock=as_of,
    )
    ids = load(stores, world)
    ctx = rules.Context(as_of=as_of, timezone="Europe/Warsaw", currency_exponent=EXPONENT, catalog=CATALOG)
    rule = rules.validate({"activity": "orders", "window": {"last_days": 7}, "op": "gte", "value": 1}, CATALOG,
                          EXPONENT)
    for s in stores:
        with s.factory() as session:
            planned = wakeup_candidates(session, rule, ctx, value_types(session))
        assert planned == {ids["c01"]: dt.datetime(2025, 10, 26, 1, 0, tzinfo=UTC)}, s.name
    assert check_wakeups(stores, rule, ctx)["set-based"] == len(stores)
