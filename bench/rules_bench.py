"""Rule evaluation benchmarks over the demo data set.

a. Preview on the embedded default (a SQLite file): ``segments.service.preview`` per rule, without and with the
   per-node drop-off counts, ``as_of`` fixed. Targets: median under 300 ms for profile/attribute/summary rules,
   under 1 s for any rule.
b. Batch: all member ids per rule via ``evaluation.store.matching_ids`` on SQLite, next to a hand-written Polars
   query over the same data in memory (ids asserted equal), and the unchanged ``rules.compile_batch`` expression
   executed by Ibis on DuckDB and on Polars (ids asserted equal).
c. Real time: one customer snapshot against 1,000 compiled predicates, microseconds per customer.

Usage: python -m bench.rules_bench --customers N [--rebuild] [--build-only] [--runs 7] [--parts preview,batch,realtime]

The demo database is built once per size into ``$COHORTA_BENCH_CACHE`` (default /tmp/cohorta-bench) and reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bench.common import console, print_table
from bench.rules_set import (
    ACTIVITY,
    BRANDS,
    CALENDAR,
    CATEGORIES,
    CITY_PREFIXES,
    COUNTRIES,
    INTERESTS,
    OCCUPATIONS,
    PROFILE,
    RULES,
    TIERS,
    BenchRule,
    pick,
    variants,
)
from cohorta import db, rules
from cohorta.access.service import Principal, Role
from cohorta.clock import FrozenClock
from cohorta.config import Settings
from cohorta.evaluation import store
from cohorta.evaluation.catalog import build_catalog
from cohorta.evaluation.snapshots import load_snapshots
from cohorta.segments.schemas import PreviewIn

try:
    from cohorta.segments.preview import preview
except ImportError:  # before preview moved out of the segments service
    from cohorta.segments.service import preview  # type: ignore[attr-defined,no-redef]

CACHE = Path(os.environ.get("COHORTA_BENCH_CACHE", "/tmp/cohorta-bench"))
#: The demo data ends here and every rule is evaluated as at this instant (fixed: results are reproducible).
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SEED = 7
TARGET_MS = {PROFILE: 300.0, ACTIVITY: 1000.0}
REALTIME_TARGET_US = 250.0


# --------------------------------------------------------------------------------------------------------------------
# The data


#: Previews run as an admin (every team visible), as the API's admin token would.
BENCH_PRINCIPAL = Principal(name="bench", role=Role.admin, teams=None)


def demo_database(customers: int, rebuild: bool = False) -> tuple[Path, float | None]:
    """The cached demo database of that size (built when missing or asked to): (path, build seconds or None)."""
    from cohorta.demo.generator import load_demo

    path = CACHE / f"demo-{customers}.db"
    if path.exists() and not rebuild:
        # A cached database built before a migration gets it (new indexes, say) and fresh planner statistics.
        engine = db.create_db_engine(f"sqlite:///{path}")
        before = db.current_revision(engine)
        db.upgrade(engine)
        if db.current_revision(engine) != before:
            console.log(f"cached demo database upgraded from revision {before}")
            with engine.connect() as connection:
                connection.exec_driver_sql("ANALYZE")
                connection.commit()
        engine.dispose()
        return path, None
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".building.db")
    for p in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        p.unlink(missing_ok=True)
    engine = db.create_db_engine(f"sqlite:///{partial}")
    started = time.perf_counter()
    db.upgrade(engine)

    def report(stage: str, done: int, total: int) -> None:
        console.log(f"build {customers:,}: {stage} {done:,}/{total:,}")

    stats = load_demo(engine, customers=customers, seed=SEED, now=NOW, progress=report)
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        connection.commit()
    engine.dispose()
    seconds = time.perf_counter() - started
    console.log(f"built {customers:,} customers in {seconds:.1f} s: {stats}")
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    partial.rename(path)
    (CACHE / f"demo-{customers}.build.txt").write_text(f"{seconds:.1f} s\n{stats}\n")
    return path, seconds


_POLARS_TYPES: dict[str, Any] = {
    "int64": pl.Int64, "int32": pl.Int32, "string": pl.String, "float64": pl.Float64, "boolean": pl.Boolean,
    "date": pl.Date, "timestamp": pl.Datetime("us"),
}  # fmt: skip


def _typed(column: pl.Series, typ: str) -> pl.Series:
    """A column read from SQLite (text instants and dates, 0/1 booleans) in the type of the storage schema."""
    if typ == "timestamp" and column.dtype == pl.String:
        return column.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us")
    if typ == "date" and column.dtype == pl.String:
        return column.str.to_date("%Y-%m-%d")
    if typ == "boolean":
        return column.cast(pl.Int64).cast(pl.Boolean)
    return column.cast(_POLARS_TYPES[typ])


def needed_tables(rule: Any) -> set[str]:
    """The storage tables a rule (JSON) reads."""
    out = {"customers"}
    if isinstance(rule, list):
        for item in rule:
            out |= needed_tables(item)
    elif isinstance(rule, dict):
        field = rule.get("field")
        activity = rule.get("activity")
        if isinstance(field, str) and "activity" not in rule:
            group, _, rest = field.partition(".")
            out.add({"attributes": "customer_attribute_values", "summary": "customer_summaries",
                     "loyalty": "customer_summaries" if rest == "points_balance" else "customer_program_summaries",
                     }.get(group, "customers"))
        if activity is not None:
            out.add({"points": "loyalty_transactions", "redemptions": "loyalty_transactions"}.get(activity, activity))
            if activity == "events" and (rule.get("where") or rule.get("measure")):
                out.add("event_property_values")
        for key in ("and", "or", "not"):
            if key in rule:
                out |= needed_tables(rule[key])
    return out


def load_frames(path: Path, tables: set[str] | None = None) -> dict[str, pl.DataFrame]:
    """The tables of the rule storage schema (``tables``, default all; the others empty), read once from the SQLite
    file into Polars (ADBC, Arrow)."""
    import adbc_driver_sqlite.dbapi as adbc

    frames: dict[str, pl.DataFrame] = {}
    with adbc.connect(str(path)) as connection:
        for table, schema in rules.tables.SCHEMAS.items():
            if tables is not None and table not in tables:
                frames[table] = pl.DataFrame(schema={c: _POLARS_TYPES[t] for c, t in schema.items()})
                continue
            cursor = connection.cursor()
            # One batch for the whole result: the driver infers a column's type from its first batch, and a
            # column that is NULL there (value_string of the first EAV rows ...) would otherwise become int64.
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(1 << 30)})
            cursor.execute(f"SELECT {', '.join(schema)} FROM {table}")
            raw = pl.from_arrow(cursor.fetch_arrow_table())
            cursor.close()
            assert isinstance(raw, pl.DataFrame)
            if raw.height == 0:  # no rows: no types to infer
                frames[table] = pl.DataFrame(schema={c: _POLARS_TYPES[t] for c, t in schema.items()})
            else:
                frames[table] = pl.DataFrame([_typed(raw[c], t).alias(c) for c, t in schema.items()])
    return frames


# --------------------------------------------------------------------------------------------------------------------
# Hand-written Polars queries: one per benchmark rule and variant k, written from the rule's documented meaning.

AS_OF = NOW.replace(tzinfo=None)  # naive UTC, as stored
TODAY = NOW.date()  # the rules run in UTC
COUNTED = ["paid", "fulfilled"]
Frames = dict[str, pl.LazyFrame]


def day_start(day: date) -> datetime:
    """The first instant of a UTC day, naive (as stored)."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC).replace(tzinfo=None)


def last_days(frame: pl.LazyFrame, column: str, days: int) -> pl.LazyFrame:
    """Rows in the last ``days`` x 24 h up to and including ``as_of``."""
    return frame.filter(pl.col(column) >= AS_OF - timedelta(days=days), pl.col(column) <= AS_OF)


def ids(frame: pl.LazyFrame, column: str = "customer_id") -> pl.LazyFrame:
    return frame.select(pl.col(column).alias("customer_id")).unique()


def customers_where(f: Frames, predicate: pl.Expr) -> pl.LazyFrame:
    return ids(f["customers"].filter(predicate), "id")


def attribute(f: Frames, name: str) -> pl.LazyFrame:
    return f["customer_attribute_values"].filter(pl.col("name") == name)


def without(f: Frames, excluded: pl.LazyFrame) -> pl.LazyFrame:
    """Every customer not in ``excluded``."""
    return ids(f["customers"], "id").join(excluded, on="customer_id", how="anti")


def both(*frames: pl.LazyFrame) -> pl.LazyFrame:
    out = frames[0]
    for other in frames[1:]:
        out = out.join(other, on="customer_id", how="semi")
    return out


def either(*frames: pl.LazyFrame) -> pl.LazyFrame:
    return pl.concat(frames).unique()


def lower(column: str) -> pl.Expr:
    return pl.col(column).str.to_lowercase()


def birthday_keys(days: int) -> list[int]:
    keys = set()
    for i in range(days + 1):
        d = TODAY + timedelta(days=i)
        keys.add(d.month * 100 + d.day)
        if (d.month, d.day) == (2, 28) and not (d.year % 4 == 0 and (d.year % 100 != 0 or d.year % 400 == 0)):
            keys.add(229)
    return sorted(keys)


def bucket(column: pl.Expr, seed: str) -> pl.Expr:
    """The documented sample bucket: three rounds of h = (h * M + h // 2**13 + key) mod P, then mod 10000."""
    prime = 67_108_859
    digest = hashlib.sha256(seed.encode()).digest()
    keys = [int.from_bytes(digest[i * 8 : (i + 1) * 8], "big") % prime for i in range(3)]
    h = column % prime
    for key, multiplier in zip(keys, (40_503_157, 19_260_817, 52_431_289), strict=True):
        h = (h * multiplier + h // 8192 + key) % prime
    return h % 10_000


def period(name: str) -> tuple[datetime, datetime]:
    """A calendar window (``this_year``, ``last_quarter`` ...) as [first instant, end), cut at ``as_of``."""
    which, unit = name.split("_")
    months = {"month": 1, "quarter": 3, "year": 12}[unit]
    first_month = (TODAY.month - 1) // months * months  # months since January, 0-based
    start = TODAY.year * 12 + first_month - (months if which == "last" else 0)
    end = start + months
    as_date = [date(m // 12, m % 12 + 1, 1) for m in (start, end)]
    return day_start(as_date[0]), min(day_start(as_date[1]), AS_OF + timedelta(microseconds=1))


def in_period(frame: pl.LazyFrame, column: str, name: str) -> pl.LazyFrame:
    first, end = period(name)
    return frame.filter(pl.col(column) >= first, pl.col(column) < end)


def orders_last_days(f: Frames, days: int) -> pl.LazyFrame:
    return last_days(f["orders"].filter(pl.col("status").is_in(COUNTED)), "created_at", days)


def event_counts(f: Frames, name: str, days: int, events: pl.LazyFrame | None = None) -> pl.LazyFrame:
    rows = last_days((events if events is not None else f["events"]).filter(pl.col("name") == name), "occurred_at",
                     days)
    return rows.group_by("customer_id").agg(n=pl.len())


def lowered(values: list[str]) -> list[str]:
    return [v.lower() for v in values]


def summaries(f: Frames, predicate: pl.Expr) -> pl.LazyFrame:
    return ids(f["customer_summaries"].filter(predicate))


def club(f: Frames) -> pl.LazyFrame:
    return f["customer_program_summaries"].filter(pl.col("program") == "club")


def attribute_in(f: Frames, name: str, values: list[str]) -> pl.LazyFrame:
    return ids(attribute(f, name).filter(lower("value_string").is_in(lowered(values))))


# Each query takes the variant number k of bench.rules_set (k = 0: the benchmark rule itself) and reads the values
# that variant uses (the same countries, thresholds and windows); the logic is written here, not taken from Cohorta.


def q_country_in(f: Frames, k: int) -> pl.LazyFrame:
    return customers_where(f, lower("country").is_in(lowered(pick(COUNTRIES, k, 3 + k // len(COUNTRIES)))))


def q_city_starts_with(f: Frames, k: int) -> pl.LazyFrame:
    prefix = pick(CITY_PREFIXES, k)[0]
    if k < len(CITY_PREFIXES):  # case-insensitive
        return customers_where(f, lower("city").str.starts_with(prefix.lower()))
    return customers_where(f, pl.col("city").str.starts_with(prefix if k < 30 else prefix.upper()))


def q_birthday_week(f: Frames, k: int) -> pl.LazyFrame:
    key = pl.col("birthdate").dt.month().cast(pl.Int32) * 100 + pl.col("birthdate").dt.day()
    return customers_where(f, key.is_in(birthday_keys(7 + k)))


def q_signed_up(f: Frames, k: int) -> pl.LazyFrame:
    return customers_where(f, pl.col("created_at") < day_start(TODAY - timedelta(days=365 + 5 * k)))


def q_loyalty_member(f: Frames, k: int) -> pl.LazyFrame:
    member = pl.col("loyalty_member") == (k % 2 == 0)
    if k < 2:
        return customers_where(f, member)
    return customers_where(f, member & (lower("country") == pick(COUNTRIES, k)[0].lower()))


def q_married(f: Frames, k: int) -> pl.LazyFrame:
    married = ids(attribute(f, "married").filter(pl.col("value_boolean") == (k % 2 == 0)))
    if k < 2:
        return married
    return both(married, ids(attribute(f, "children").filter(pl.col("value_number") >= k % 19 * 0.25)))


def q_surveyed(f: Frames, k: int) -> pl.LazyFrame:
    return ids(attribute(f, "last_survey_at").filter(
        pl.col("value_datetime") >= day_start(TODAY - timedelta(days=89 + k)),
        pl.col("value_datetime") < day_start(TODAY + timedelta(days=1)),
    ))  # fmt: skip


def q_interests_all(f: Frames, k: int) -> pl.LazyFrame:
    wanted = lowered(pick(INTERESTS, 3 + k, 2 + k // 15))
    interests = attribute(f, "interests").with_columns(v=lower("value_string")).filter(pl.col("v").is_in(wanted))
    return ids(interests.group_by("customer_id").agg(n=pl.col("v").n_unique()).filter(pl.col("n") == len(wanted)))


def q_club_tier(f: Frames, k: int) -> pl.LazyFrame:
    if k < 4:
        return ids(club(f).filter(lower("tier").is_in(pick(TIERS, 2 + k, 2))))
    tier = ids(club(f).filter(lower("tier") == pick(TIERS, k)[0]))
    return both(tier, customers_where(f, lower("country") == pick(COUNTRIES, k)[0].lower()))


def q_brand_spend(f: Frames, k: int) -> pl.LazyFrame:
    brand = pick(BRANDS, k)[0].lower()
    items = f["order_items"].filter(pl.col("status").is_in(COUNTED), lower("brand") == brand)
    spend = last_days(items, "ordered_at", 90 + k // len(BRANDS))
    return ids(spend.group_by("customer_id").agg(pl.col("amount_minor").sum()).filter(pl.col("amount_minor") > 50_000))


def q_shoes_viewed(f: Frames, k: int) -> pl.LazyFrame:
    category = pick(CATEGORIES, k)[0]
    shoes = f["event_property_values"].filter(pl.col("key") == "category", lower("value_string") == category)
    events = f["events"].join(shoes, left_on="id", right_on="event_pk", how="semi")
    return ids(event_counts(f, "product_viewed", 30 + k // len(CATEGORIES), events).filter(pl.col("n") >= 2))


def q_earned_points(f: Frames, k: int) -> pl.LazyFrame:
    points = f["loyalty_transactions"].filter(pl.col("type") == "points", lower("entry") == "earn")
    earned = in_period(points, "occurred_at", pick(CALENDAR, k)[0]).group_by("customer_id").agg(pl.col("points").sum())
    return ids(earned.filter(pl.col("points") > 500 + 10 * (k // len(CALENDAR))))


def q_redeemed(f: Frames, k: int) -> pl.LazyFrame:
    rows = in_period(f["loyalty_transactions"].filter(pl.col("type") == "redemption"), "occurred_at",
                     pick(CALENDAR, 3 + k)[0])  # fmt: skip
    return ids(rows.group_by("customer_id").agg(n=pl.len()).filter(pl.col("n") >= 1 + k // len(CALENDAR)))


def q_nested_profile(f: Frames, k: int) -> pl.LazyFrame:
    tier = club(f).filter(lower("tier").is_in(["gold", "platinum"]))
    spent = f["customer_summaries"].filter(pl.col("total_spent_minor") > (2000 + 10 * k) * 100)
    return both(
        customers_where(f, lower("country").is_in(lowered(pick(COUNTRIES, k % 9, 2)))),
        either(ids(tier), ids(spent)),
        without(f, attribute_in(f, "interests", pick(INTERESTS, 5 + k))),
    )


def q_nested_activity(f: Frames, k: int) -> pl.LazyFrame:
    newsletter = ids(event_counts(f, "newsletter_opened", 30).filter(pl.col("n") >= 2 + k % 3))
    return both(
        customers_where(f, pl.col("loyalty_member")),
        without(f, ids(orders_last_days(f, 60 + k))),
        either(newsletter, attribute_in(f, "club_level", ["vip"])),
    )


def q_holdout(f: Frames, k: int) -> pl.LazyFrame:
    country = lower("country") == pick(COUNTRIES, k)[0].lower()
    return customers_where(f, country & (bucket(pl.col("id"), f"q4-holdout-{k // 50}") < (10 + k % 50) * 100))


POLARS_VARIANTS: dict[str, Callable[[Frames, int], pl.LazyFrame]] = {
    "country_in": q_country_in,
    "city_starts_with": q_city_starts_with,
    "birthday_week": q_birthday_week,
    "signed_up_over_a_year_ago": q_signed_up,
    "loyalty_member": q_loyalty_member,
    "occupation_in": lambda f, k: attribute_in(f, "occupation", pick(OCCUPATIONS, 7 + k, 2 + k // 15)),
    "children_at_least_2": lambda f, k: ids(attribute(f, "children").filter(pl.col("value_number") >= 2 + k * 0.25)),
    "married": q_married,
    "surveyed_last_90_days": q_surveyed,
    "interests_any": lambda f, k: attribute_in(f, "interests", pick(INTERESTS, 1 + k, 2 + k // 15)),
    "interests_all": q_interests_all,
    "total_spent_over_1000": lambda f, k: summaries(f, pl.col("total_spent_minor") > (1000 + 25 * k) * 100),
    "order_count_at_least_10": lambda f, k: summaries(f, pl.col("order_count") >= 10 + k),
    "aov_50_to_100": lambda f, k: summaries(
        f, pl.col("average_order_value_minor").is_between((50 + k) * 100, (100 + k) * 100)
    ),
    "last_order_over_180_days_ago": lambda f, k: summaries(
        f, pl.col("last_order_at") < day_start(TODAY - timedelta(days=180 + 3 * k))
    ),
    "points_balance_over_1000": lambda f, k: summaries(f, pl.col("points_balance") >= 1000 + 20 * k),
    "club_points_below_100": lambda f, k: ids(
        f["customers"].select(customer_id="id").join(club(f), on="customer_id", how="left")
        .filter(pl.col("points_balance").fill_null(0) < 100 + 10 * k)
    ),
    "club_tier_gold_plus": q_club_tier,
    "no_orders_60_days": lambda f, k: without(f, ids(orders_last_days(f, 60 + k))),
    "brand_spend_90_days": q_brand_spend,
    "product_viewed_3x_30_days": lambda f, k: ids(
        event_counts(f, "product_viewed", 30 + k).filter(pl.col("n") >= 3)
    ),
    "shoes_viewed_2x_30_days": q_shoes_viewed,
    "earned_points_this_year": q_earned_points,
    "redeemed_last_quarter": q_redeemed,
    "nested_profile": q_nested_profile,
    "nested_activity": q_nested_activity,
    "holdout_10_percent": q_holdout,
}  # fmt: skip

#: The benchmark rules themselves (k = 0).
POLARS_QUERIES: dict[str, Callable[[Frames], pl.LazyFrame]] = {
    name: functools.partial(query, k=0) for name, query in POLARS_VARIANTS.items()
}


# --------------------------------------------------------------------------------------------------------------------
# Measuring


def timed(fn: Callable[[], Any], runs: int, warmup: int = 1) -> tuple[list[float], Any]:
    """Seconds of each of ``runs`` calls (after ``warmup`` uncounted ones) and the last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return times, result


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}" if seconds >= 0.01 else f"{seconds * 1000:,.1f}"


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Bench:
    def __init__(self, path: Path, runs: int, batch_runs: int, selected: list[BenchRule], warmup: int = 1) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self.engine = db.create_db_engine(self.url)
        db.upgrade(self.engine)  # a cached database built before a newer migration
        self.sessions = sessionmaker(bind=self.engine)
        self.runs = runs
        self.batch_runs = batch_runs
        self.selected = selected
        self.warmup = warmup
        with self.session() as session:
            self.catalog = build_catalog(session)
            self.population = store.population(session)
        self.ctx = rules.Context(as_of=NOW, timezone="UTC", currency_exponent=2, catalog=self.catalog)
        self.settings = Settings(database_url=self.url, timezone="UTC", currency="EUR")
        self.clock = FrozenClock(NOW)
        self.results: dict[str, Any] = {"customers": self.population, "as_of": NOW.isoformat()}
        self.problems: list[str] = []

    def session(self) -> Session:
        return self.sessions()

    def rule(self, r: BenchRule) -> rules.Rule:
        return rules.validate(r.rule, self.catalog, 2)

    # a. preview ------------------------------------------------------------------------------------------------
    def preview(self) -> None:
        rows = []
        out = []
        for r in self.selected:
            cells = [r.name, r.cls]
            entry: dict[str, Any] = {"rule": r.name, "class": r.cls}
            for dropoff in (False, True):
                draft = PreviewIn(rule=r.rule, as_of=NOW, dropoff=dropoff)

                def run(draft: PreviewIn = draft) -> Any:
                    with self.session() as session:
                        return preview(session, self.settings, self.clock, draft, BENCH_PRINCIPAL)

                try:
                    times, result = timed(run, self.runs, self.warmup)
                except Exception as exc:
                    self.problems.append(f"preview {r.name} dropoff={dropoff}: {type(exc).__name__}: {exc}")
                    cells += ["error", "", ""] if dropoff else ["", "error", "", ""]
                    continue
                med, high = statistics.median(times), p90(times)
                ok = med * 1000 < (TARGET_MS[r.cls] if not dropoff else 1000)
                cells += [ms(med), ms(high), "" if ok else "over"]
                entry["full" if dropoff else "count"] = {"median_ms": med * 1000, "p90_ms": high * 1000,
                                                         "count": result.count, "nodes": len(result.nodes)}
                if not dropoff:
                    cells.insert(2, f"{result.count:,}")
            rows.append(cells)
            out.append(entry)
        self.results["preview"] = out
        print_table(
            f"a. Preview on SQLite ({self.population:,} customers), ms over {self.runs} runs after {self.warmup} "
            "warm-up; 'over': median over target (count: 300 ms profile, 1 s activity; full: 1 s)",
            ["rule", "class", "count", "count median", "p90", "", "full (drop-off) median", "p90", ""],
            rows,
        )

    # b. batch --------------------------------------------------------------------------------------------------
    def batch(self) -> None:
        import ibis

        started = time.perf_counter()
        tables: set[str] = set()
        for r in self.selected:
            tables |= needed_tables(r.rule)
        frames = load_frames(self.path, tables if len(self.selected) < len(RULES) else None)
        load_s = time.perf_counter() - started
        lazy = {name: df.lazy() for name, df in frames.items()}
        started = time.perf_counter()
        duck = ibis.duckdb.connect()
        for name, df in frames.items():
            duck.create_table(name, df.to_arrow())
        duck_tables = rules.Tables(**{name: duck.table(name) for name in frames})
        duck_s = time.perf_counter() - started
        polars_backend = ibis.polars.connect(tables=frames)
        polars_tables = rules.Tables(**{name: polars_backend.table(name) for name in frames})
        rows_of = {name: df.height for name, df in frames.items()}
        console.print(
            f"Loaded into Polars in {load_s:.1f} s ({', '.join(f'{k} {v:,}' for k, v in rows_of.items() if v)}); "
            f"copied into DuckDB in {duck_s:.1f} s (not counted below)"
        )
        self.results["load_seconds"] = {"polars": load_s, "duckdb": duck_s, "rows": rows_of}
        rows = []
        out = []
        for r in self.selected:
            rule = self.rule(r)
            entry: dict[str, Any] = {"rule": r.name, "class": r.cls}
            cells = [r.name]

            def sqlite_ids(rule: rules.Rule = rule) -> set[int]:
                with self.session() as session:
                    return store.matching_ids(session, rule, self.ctx)

            def polars_ids(name: str = r.name) -> pl.Series:
                return POLARS_QUERIES[name](lazy).collect()["customer_id"]

            def ibis_ids(backend: Any, tables: rules.Tables, rule: rules.Rule = rule) -> Any:
                return backend.to_pyarrow(rules.compile_batch(rule, self.ctx, tables))["customer_id"]

            engines: list[tuple[str, Callable[[], Any]]] = [
                ("sqlite", sqlite_ids),
                ("polars_hand", polars_ids),
                ("duckdb_ibis", lambda rule=rule: ibis_ids(duck, duck_tables, rule)),
                ("polars_ibis", lambda rule=rule: ibis_ids(polars_backend, polars_tables, rule)),
            ]
            reference: set[int] | None = None
            medians: dict[str, float] = {}
            for engine, fn in engines:
                try:
                    times, result = timed(fn, self.batch_runs, self.warmup)
                except Exception as exc:
                    self.problems.append(f"batch {r.name} on {engine}: {type(exc).__name__}: {str(exc)[:500]}")
                    cells.append("error")
                    continue
                found = result if isinstance(result, set) else set(pl.Series(result).to_list())
                medians[engine] = statistics.median(times)
                if reference is None:
                    reference = found
                    cells.append(f"{len(found):,}")
                same = found == reference
                if not same:
                    self.problems.append(
                        f"batch {r.name}: {engine} gives {len(found):,} ids, SQLite {len(reference):,} "
                        f"(only {engine}: {sorted(found - reference)[:5]}, "
                        f"only SQLite: {sorted(reference - found)[:5]})"
                    )
                cells.append(ms(medians[engine]) + ("" if same else " ≠"))
                entry[engine] = {"median_ms": medians[engine] * 1000, "ids": len(found), "same": same}
            ratio = medians.get("sqlite", 0) / medians["polars_hand"] if medians.get("polars_hand") else None
            cells.insert(3, f"{ratio:,.1f}x" if ratio else "")
            rows.append(cells)
            out.append(entry)
        total = {
            engine: sum(e[engine]["median_ms"] for e in out if engine in e) / 1000
            for engine in ("sqlite", "polars_hand", "duckdb_ibis", "polars_ibis")
        }
        totals = ["total (all rules)", "", ms(total["sqlite"]),
                  f"{total['sqlite'] / total['polars_hand']:,.1f}x" if total["polars_hand"] else "",
                  ms(total["polars_hand"]), ms(total["duckdb_ibis"]), ms(total["polars_ibis"])]
        rows.append(totals)
        self.results["batch"] = out
        print_table(
            f"b. Batch: all member ids, ms (median of {self.batch_runs} after {self.warmup} warm-up), "
            f"{self.population:,} customers;"
            " ≠ marks ids different from SQLite's",
            ["rule", "ids", "SQLite (store)", "SQLite / Polars", "Polars (hand-written)", "DuckDB (Ibis)",
             "Polars (Ibis)"],
            rows,
        )
        duck.disconnect()

    # c. real time ----------------------------------------------------------------------------------------------
    def realtime(self, customers: int, predicates: int) -> None:
        specs = variants(predicates)
        started = time.perf_counter()
        compiled_rules = [rules.validate(r, self.catalog, 2) for _, r in specs]
        predicate_fns = [rules.compile_predicate(r, self.ctx) for r in compiled_rules]
        compile_s = time.perf_counter() - started
        requirements = merge([rules.rule_requirements(r, self.ctx) for r in compiled_rules])
        with self.session() as session:
            try:
                load_snapshots(session, [1], requirements)
            except Exception as exc:  # reported, worked around below
                self.problems.append(
                    f"load_snapshots(session, ids, rule_requirements(rule, ctx)) fails for a rule with an activity "
                    f"window: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                )
        # rule_requirements gives window starts as naive UTC datetimes; load_snapshots used to pass them as they are
        # to a column type that refuses naive datetimes (StatementError, fixed since): make them aware either way.
        requirements.earliest_activity = {
            kind: lo.replace(tzinfo=UTC) if lo is not None and lo.tzinfo is None else lo
            for kind, lo in requirements.earliest_activity.items()
        }
        rng = random.Random(SEED)
        ids_ = sorted(rng.sample(range(1, self.population + 1), min(customers, self.population)))
        with self.session() as session:
            started = time.perf_counter()
            snapshots = load_snapshots(session, ids_, requirements)
            load_s = time.perf_counter() - started
        # Timed twice. First evaluation: each snapshot as loaded, so the activity indexes the predicates keep on it
        # (built on first use, shared by the rules with the same rows) are built inside the timing, as when a
        # customer is evaluated once. Then again over the same snapshots, indexes kept (the code already warm).
        fresh = [dataclasses.replace(s) for s in snapshots.values()]  # copies without indexes: nothing kept yet
        for snapshot in snapshots.values():  # warm-up pass (builds the indexes of the originals)
            for p in predicate_fns:
                p(snapshot)
        first: list[float] = []
        first_matches = 0
        for snapshot in fresh:
            started = time.perf_counter()
            for p in predicate_fns:
                first_matches += p(snapshot)
            first.append(time.perf_counter() - started)
        per_customer: list[float] = []
        matches = 0
        for snapshot in snapshots.values():
            started = time.perf_counter()
            for p in predicate_fns:
                matches += p(snapshot)
            per_customer.append(time.perf_counter() - started)
        if first_matches != matches:
            self.problems.append(f"real time: {first_matches} matches on first evaluation, {matches} again")
        med, high = statistics.median(per_customer) * 1e6, p90(per_customer) * 1e6
        first_med, first_high = statistics.median(first) * 1e6, p90(first) * 1e6
        # Where the time goes: the mean cost of one predicate evaluation, by benchmark rule (all its variants).
        by_rule: dict[str, float] = {}
        for (name, _), fn in zip(specs, predicate_fns, strict=True):
            started = time.perf_counter()
            for snapshot in snapshots.values():
                fn(snapshot)
            by_rule[name] = by_rule.get(name, 0.0) + time.perf_counter() - started
        counts = {name: sum(1 for n, _ in specs if n == name) for name in by_rule}
        per_eval = {name: by_rule[name] / (counts[name] * len(snapshots)) * 1e6 for name in by_rule}
        # Cross-check: the predicate of each benchmark rule agrees with the batch evaluation on SQLite.
        disagreements = 0
        with self.session() as session:
            for r, rule, fn in zip(RULES, compiled_rules, predicate_fns, strict=False):
                members = store.matching_ids(session, rule, self.ctx)
                wrong = [cid for cid, s in snapshots.items() if fn(s) != (cid in members)]
                if wrong:
                    disagreements += 1
                    self.problems.append(f"real time {r.name}: predicate ≠ SQLite for customers {wrong[:5]}")
        print_table(
            "c'. Real time by rule: mean µs per predicate evaluation (over its variants and the customers)",
            ["rule", "class", "variants", "µs / evaluation", "share of the total"],
            [[r.name, r.cls, str(counts[r.name]), f"{per_eval[r.name]:.2f}",
              f"{by_rule[r.name] / sum(by_rule.values()):.0%}"] for r in RULES if r.name in by_rule],
        )
        self.results["realtime_by_rule_us"] = per_eval
        self.results["realtime"] = {"median_us": med, "p90_us": high, "first_median_us": first_med,
                                    "first_p90_us": first_high, "customers": len(snapshots),
                                    "predicates": len(predicate_fns), "compile_s": compile_s, "load_s": load_s,
                                    "matches": matches}
        print_table(
            f"c. Real time: one snapshot against {len(predicate_fns):,} compiled predicates "
            f"({len(snapshots)} customers)",
            ["measure", "value"],
            [
                ["median µs per customer, first evaluation (target < 250)", f"{first_med:,.0f}"],
                ["p90 µs per customer, first evaluation", f"{first_high:,.0f}"],
                ["median µs per customer, again (indexes kept)", f"{med:,.0f}"],
                ["p90 µs per customer, again", f"{high:,.0f}"],
                ["µs per predicate (median / 1000)", f"{med / len(predicate_fns):.2f}"],
                ["compile 1,000 rules (validate + compile_predicate), s", f"{compile_s:.2f}"],
                [f"load_snapshots of {len(snapshots)} customers (union of requirements), s", f"{load_s:.2f}"],
                ["share of (customer, rule) pairs matching", f"{matches / (len(snapshots) * len(predicate_fns)):.1%}"],
                ["base rules where predicate ≠ SQLite on these customers", str(disagreements)],
            ],
        )


def merge(requirements: list[rules.Requirements]) -> rules.Requirements:
    """The union of what several rules need from a snapshot."""
    out = rules.Requirements()
    for req in requirements:
        out.activities |= req.activities
        out.events |= req.events
        out.fields |= req.fields
        out.segments |= req.segments
        out.time_dependent |= req.time_dependent
        out.sample |= req.sample
        for kind, lo in req.earliest_activity.items():
            if kind not in out.earliest_activity:
                out.earliest_activity[kind] = lo
            else:
                prev = out.earliest_activity[kind]
                out.earliest_activity[kind] = None if prev is None or lo is None else min(prev, lo)
    return out


def _tables(connection: sa.Connection) -> Iterator[tuple[str, int]]:
    """Row counts: the highest id where ids are dense (cheap), a count for the property values (no rowid)."""
    for table in ("customers", "orders", "order_items", "events", "event_property_values", "loyalty_transactions"):
        size = "COUNT(*)" if table == "event_property_values" else "MAX(id)"
        yield table, int(connection.exec_driver_sql(f"SELECT {size} FROM {table}").scalar() or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the cached demo database")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--runs", type=int, default=7, help="Timed preview runs per rule (after one warm-up)")
    parser.add_argument("--batch-runs", type=int, default=3, help="Timed batch runs per rule and engine")
    parser.add_argument("--parts", default="preview,batch,realtime")
    parser.add_argument("--realtime-customers", type=int, default=300)
    parser.add_argument("--predicates", type=int, default=1000)
    parser.add_argument("--rules", default="", help="Comma-separated benchmark rule names (default: all)")
    parser.add_argument("--warmup", type=int, default=1, help="Uncounted runs before the timed ones")
    args = parser.parse_args()
    console.width = max(console.width, 170)  # the tables' columns, also when written to a file
    start_load = loadavg()
    path, built = demo_database(args.customers, args.rebuild)
    if args.build_only:
        return
    selected = [r for r in RULES if not args.rules or r.name in args.rules.split(",")]
    bench = Bench(path, args.runs, args.batch_runs, selected, args.warmup)
    with bench.engine.connect() as connection:
        sizes = dict(_tables(connection))
    note = f"built now in {built:.0f} s" if built is not None else "cached"
    build_file = CACHE / f"demo-{args.customers}.build.txt"
    if built is None and build_file.exists():
        note += f", built earlier in {build_file.read_text().splitlines()[0]}"
    console.print(f"[bold]Demo database[/] {path} ({note}); rows: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
    console.print(f"Load average at start: {start_load} ({os.cpu_count()} CPUs, shared machine)")
    parts = set(args.parts.split(","))
    if "preview" in parts:
        bench.preview()
    if "batch" in parts:
        bench.batch()
    if "realtime" in parts:
        bench.realtime(args.realtime_customers, args.predicates)
    end_load = loadavg()
    console.print(f"Load average at end: {end_load}")
    bench.results.update(load_start=start_load, load_end=end_load, sizes=sizes, problems=bench.problems)
    out = CACHE / f"results-{args.customers}.json"
    out.write_text(json.dumps(bench.results, indent=1, default=str))
    if bench.problems:
        console.print("[red]Problems:[/]")
        for problem in bench.problems:
            console.print(f"  - {problem}")
    else:
        console.print("[green]No engine disagreed and no evaluator failed.[/]")
    console.print(f"Results also in {out}")


if __name__ == "__main__":
    main()
