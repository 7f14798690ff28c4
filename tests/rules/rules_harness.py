"""Test helpers: small generated stores, loaded into SQLite (plain sqlite3 + compiled SQL text), DuckDB and Polars,
and the matching customer snapshots."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import ibis
import polars as pl
import pyarrow as pa

from cohorta.rules import Catalog, Context, CustomerSnapshot, compile_batch, compile_predicate
from cohorta.rules.tables import SCHEMAS

CATALOG = Catalog(
    attribute_definitions={"tags": "list", "score": "number", "vip": "boolean", "anniversary": "date",
                           "last_login": "datetime", "nickname": "string"},
    event_definitions={"product_viewed": {"sku": "string", "price": "number", "tags": "list"},
                       "app_opened": {"platform": "string"}},
    programs={"club": ["silver", "gold"], "kids": ["basic"]},
)

Store = dict[str, list[dict[str, Any]]]

_SQLITE_TYPES = {"int64": "INTEGER", "int32": "INTEGER", "string": "TEXT", "float64": "REAL", "boolean": "BOOLEAN",
                 "date": "DATE", "timestamp": "TIMESTAMP"}


def _sqlite_value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, bool):
        return int(v)
    return v


def sqlite_connection(store: Store) -> sqlite3.Connection:
    con = sqlite3.connect(":memory:")
    for name, schema in SCHEMAS.items():
        cols = ", ".join(f'"{c}" {_SQLITE_TYPES[t]}' for c, t in schema.items())
        con.execute(f'CREATE TABLE "{name}" ({cols})')
        rows = store.get(name, [])
        if rows:
            names = list(schema)
            marks = ", ".join("?" for _ in names)
            con.executemany(f'INSERT INTO "{name}" VALUES ({marks})',
                            [tuple(_sqlite_value(r.get(c)) for c in names) for r in rows])
    return con


def arrow_tables(store: Store) -> dict[str, pa.Table]:
    out = {}
    for name, schema in SCHEMAS.items():
        arrow_schema = ibis.schema(schema).to_pyarrow()
        rows = [{c: r.get(c) for c in schema} for r in store.get(name, [])]
        out[name] = pa.Table.from_pylist(rows, schema=arrow_schema)
    return out


class Backends:
    """The same store on SQLite (sqlite3 + SQL text), DuckDB and Polars."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sqlite = sqlite_connection(store)
        tables = arrow_tables(store)
        self.duckdb = ibis.duckdb.connect()
        self.polars = ibis.polars.connect()
        for name, t in tables.items():
            self.duckdb.create_table(name, t)
            self.polars.create_table(name, pl.from_arrow(t))

    def run_all(self, expr: Any) -> dict[str, set[int]]:
        """The ids on each backend; each must list a customer once (the batch promises distinct ids)."""
        sql = ibis.to_sql(expr, dialect="sqlite")
        ibis.to_sql(expr, dialect="postgres")  # must compile
        found = {
            "sqlite": [r[0] for r in self.sqlite.execute(sql)],
            "duckdb": self.duckdb.execute(expr)["customer_id"].tolist(),
            "polars": self.polars.execute(expr)["customer_id"].tolist(),
        }
        for backend, ids in found.items():
            assert len(ids) == len(set(ids)), f"{backend} listed a customer twice: {sorted(ids)}"
        return {backend: set(ids) for backend, ids in found.items()}


def snapshots(store: Store) -> list[CustomerSnapshot]:
    by: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for name in ("orders", "order_items", "events", "loyalty_transactions", "customer_attribute_values",
                 "customer_program_summaries", "segment_members"):
        d: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in store.get(name, []):
            d[r["customer_id"]].append(r)
        by[name] = d
    props: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in store.get("event_property_values", []):
        props[r["event_pk"]].append(r)
    summaries = {r["customer_id"]: r for r in store.get("customer_summaries", [])}
    out = []
    for c in store["customers"]:
        cid = c["id"]
        attrs: dict[str, Any] = {}
        for a in sorted(by["customer_attribute_values"][cid], key=lambda r: r["position"]):
            typ = CATALOG.attribute_definitions[a["name"]]
            v = _eav_value(a, typ)
            if typ == "list":
                attrs.setdefault(a["name"], []).append(v)
            else:
                attrs[a["name"]] = v
        events = []
        for e in by["events"][cid]:
            p: dict[str, Any] = {}
            defs = CATALOG.event_definitions.get(e["name"], {})
            for pv in sorted(props[e["id"]], key=lambda r: r["position"]):
                typ = defs.get(pv["key"], "string")
                v = _eav_value(pv, typ)
                if typ == "list":
                    p.setdefault(pv["key"], []).append(v)
                else:
                    p[pv["key"]] = v
            events.append({**e, "properties": p})
        out.append(CustomerSnapshot(
            customer_id=cid,
            profile=dict(c),
            attributes=attrs,
            summary=dict(summaries.get(cid, {})),
            programs={r["program"]: r for r in by["customer_program_summaries"][cid]},
            segment_ids={r["segment_id"] for r in by["segment_members"][cid]},
            orders=by["orders"][cid],
            order_items=by["order_items"][cid],
            events=events,
            loyalty_transactions=by["loyalty_transactions"][cid],
        ))
    return out


def _eav_value(row: dict[str, Any], typ: str) -> Any:
    col = {"string": "value_string", "list": "value_string", "number": "value_number",
           "boolean": "value_boolean", "date": "value_date", "datetime": "value_datetime"}[typ]
    return row.get(col)


def predicate_ids(rule: Any, ctx: Context, snaps: Iterable[CustomerSnapshot]) -> set[int]:
    pred = compile_predicate(rule, ctx)
    return {s.customer_id for s in snaps if pred(s)}


def check_same(rule: Any, ctx: Context, backends: Backends, snaps: list[CustomerSnapshot]) -> set[int]:
    """Assert predicate == batch on every backend; return the ids."""
    expected = predicate_ids(rule, ctx, snaps)
    got = backends.run_all(compile_batch(rule, ctx))
    for name, ids in got.items():
        assert ids == expected, (name, sorted(ids ^ expected), rule)
    return expected


# -- random stores ---------------------------------------------------------------------------------------------------
import random  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

ANCHOR = dt.datetime(2024, 3, 31, 0, 30, tzinfo=dt.UTC)
WORDS = ["PL", "DE", "pl", "Ab", "aB", "abc", "x_y", "50%", "", "Zed", "gold", "silver"]


def random_instant(rng: random.Random, tz: ZoneInfo, anchor: dt.datetime = ANCHOR) -> dt.datetime:
    """Naive UTC; often exactly on (or a microsecond around) a local midnight near the anchor."""
    day = anchor.astimezone(tz).date() + dt.timedelta(days=rng.randint(-100, 40))
    kind = rng.random()
    if kind < 0.5:
        local = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
        utc = local.astimezone(dt.UTC) + dt.timedelta(microseconds=rng.choice([-1, 0, 0, 1]))
    else:
        utc = dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC) + dt.timedelta(seconds=rng.randint(0, 86399))
    return utc.replace(tzinfo=None)


def make_store(seed: int, n: int = 12, tz: str = "Europe/Warsaw") -> Store:
    rng = random.Random(seed)
    zone = ZoneInfo(tz)

    def maybe(v: Any, p: float = 0.2) -> Any:
        return None if rng.random() < p else v

    def ts() -> dt.datetime:
        return random_instant(rng, zone)

    store: Store = defaultdict(list)
    order_pk = item_pk = event_pk = tx_pk = 0
    for cid in range(1, n + 1):
        bday = dt.date(rng.randint(1960, 2004), rng.randint(1, 12), 1) + dt.timedelta(days=rng.randint(0, 30))
        if rng.random() < 0.1:
            bday = dt.date(2000, 2, 29)
        store["customers"].append({
            "id": cid, "source_id": f"s{cid}", "first_name": maybe(rng.choice(WORDS)), "last_name": None,
            "email": maybe(f"c{cid}@example.com"), "phone": None, "birthdate": maybe(bday),
            "gender": maybe(rng.choice(["f", "m"])), "postal_code": None, "city": maybe(rng.choice(WORDS)),
            "state": None, "country": maybe(rng.choice(["PL", "DE", "pl", "US"])), "created_at": maybe(ts()),
            "source": maybe(rng.choice(["shop", "import"])), "store": None, "company": None,
            "loyalty_member": maybe(rng.random() < 0.5), "member_since": maybe(ts()),
        })
        orders = []
        for _ in range(rng.randint(0, 4)):
            order_pk += 1
            o = {"id": order_pk, "order_id": f"o{order_pk}", "customer_id": cid,
                 "status": rng.choice(["paid", "fulfilled", "cancelled", "pending", "PAID"]),
                 "created_at": maybe(ts(), 0.05),
                 "total_minor": maybe(rng.choice([0, 100, 49999, 50000, 50001, 25000]), 0.1)}
            orders.append(o)
            store["orders"].append(o)
            for _ in range(rng.randint(0, 2)):
                item_pk += 1
                store["order_items"].append({
                    "id": item_pk, "order_pk": order_pk, "customer_id": cid, "ordered_at": o["created_at"],
                    "status": o["status"], "sku": rng.choice(["A1", "B2", "a1"]), "name": maybe("thing"),
                    "category": maybe(rng.choice(["shoes", "hats"])), "brand": maybe(rng.choice(["X", "Y", "x"])),
                    "quantity": rng.randint(1, 3), "unit_price_minor": rng.choice([1000, 25000]),
                    "amount_minor": rng.choice([1000, 25000, 50000]),
                })
        counted = [o for o in orders if o["status"] in ("paid", "fulfilled")]
        times = [o["created_at"] for o in counted if o["created_at"]]
        store["customer_summaries"].append({
            "customer_id": cid, "order_count": len(counted),
            "total_spent_minor": sum(o["total_minor"] or 0 for o in counted),
            "average_order_value_minor": maybe(rng.choice([100, 50000, 33333])),
            "first_order_at": min(times) if times else None, "last_order_at": max(times) if times else None,
            "last_order_amount_minor": maybe(rng.choice([50000, 100])), "points_balance": rng.choice([0, 50, 100]),
            "redemption_count": rng.randint(0, 2), "referral_count": rng.randint(0, 2),
            "gift_card_balance_minor": rng.choice([0, 1000]),
        })
        for program in ("club", "kids"):
            if rng.random() < 0.5:
                store["customer_program_summaries"].append({
                    "customer_id": cid, "program": program, "points_balance": rng.choice([0, 50, 100]),
                    "tier": maybe(rng.choice(["silver", "gold", "basic"]))})
        for _ in range(rng.randint(0, 4)):
            event_pk += 1
            name = rng.choice(["product_viewed", "product_viewed", "app_opened", "other"])
            store["events"].append({"id": event_pk, "event_id": f"e{event_pk}", "customer_id": cid, "name": name,
                                    "occurred_at": ts()})
            if name == "product_viewed":
                if rng.random() < 0.8:
                    store["event_property_values"].append({"event_pk": event_pk, "key": "sku", "position": 0,
                                                           "value_string": rng.choice(["A1", "B2", "a1"])})
                if rng.random() < 0.8:
                    store["event_property_values"].append({"event_pk": event_pk, "key": "price", "position": 0,
                                                           "value_number": rng.choice([1.5, 10.0, 0.25, 3.0])})
                for pos, tag in enumerate(rng.sample(["new", "sale", "Sale"], rng.randint(0, 2))):
                    store["event_property_values"].append({"event_pk": event_pk, "key": "tags", "position": pos,
                                                           "value_string": tag})
            elif name == "app_opened" and rng.random() < 0.8:
                store["event_property_values"].append({"event_pk": event_pk, "key": "platform", "position": 0,
                                                       "value_string": rng.choice(["ios", "IOS", "web"])})
        for _ in range(rng.randint(0, 3)):
            tx_pk += 1
            typ = rng.choice(["points", "points", "redemption", "tier"])
            store["loyalty_transactions"].append({
                "id": tx_pk, "customer_id": cid, "type": typ, "program": rng.choice(["club", "kids"]),
                "entry": rng.choice(["earn", "spend", "expire"]) if typ == "points" else None,
                "points": rng.choice([-50, 10, 100]) if typ == "points" else None,
                "reward": rng.choice(["mug", "bag"]) if typ == "redemption" else None,
                "reason": maybe("purchase"), "occurred_at": ts(),
            })
        # attributes
        if rng.random() < 0.7:
            for pos, tag in enumerate(rng.sample(["vip", "VIP", "new", "churn"], rng.randint(1, 3))):
                store["customer_attribute_values"].append({"customer_id": cid, "name": "tags", "position": pos,
                                                           "value_string": tag})
        if rng.random() < 0.7:
            score = rng.choice([0.1, 0.2, 0.30000000000000004, 5.0])
            store["customer_attribute_values"].append({"customer_id": cid, "name": "score", "position": 0,
                                                       "value_number": score})
        if rng.random() < 0.7:
            store["customer_attribute_values"].append({"customer_id": cid, "name": "vip", "position": 0,
                                                       "value_boolean": rng.random() < 0.5})
        if rng.random() < 0.7:
            store["customer_attribute_values"].append({"customer_id": cid, "name": "anniversary", "position": 0,
                                                       "value_date": bday + dt.timedelta(days=rng.randint(-5, 5))})
        if rng.random() < 0.7:
            store["customer_attribute_values"].append({"customer_id": cid, "name": "last_login", "position": 0,
                                                       "value_datetime": ts()})
        if rng.random() < 0.7:
            store["customer_attribute_values"].append({"customer_id": cid, "name": "nickname", "position": 0,
                                                       "value_string": rng.choice(WORDS)})
        if rng.random() < 0.3:
            store["segment_members"].append({"segment_id": "seg-a", "customer_id": cid})
    return dict(store)
