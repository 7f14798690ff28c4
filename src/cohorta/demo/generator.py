"""Seeded, vectorised demo data generator.

``load_demo(engine, customers=N, seed=S, now=T)`` writes a realistic data set into an empty, migrated database:
customers, custom attributes, orders and their items, events with typed declared properties, the loyalty journal
of the "club" program, then the summaries (set-based SQL, :func:`insert_summaries`).

Speed: data is drawn with numpy in chunks of ``CHUNK`` customers; SQLite gets multi-row ``INSERT ... VALUES``
statements through the raw DBAPI cursor (per-statement overhead, not SQL, is what costs in CPython's sqlite3),
with ``synchronous=OFF`` and ``foreign_keys=OFF`` while loading; PostgreSQL gets ``COPY FROM STDIN``. Secondary
indexes are dropped during the load and re-created afterwards from the exact DDL the database reported.

Determinism: the same ``customers``, ``seed`` and ``now`` give the same rows, bit for bit.

``content_hash`` of demo orders, events and loyalty transactions is NOT a SHA-256 of received content (there was no
received content, and hashing tens of millions of rows in Python would dominate the load time): it is 64 hex digits
derived from ``(table, id)`` with splitmix64, deterministic and unique per row. An API re-send of a demo item is
therefore always treated as an update, never as a duplicate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import numpy as np
import sqlalchemy as sa

from cohorta.customers.models import COUNTED_ORDER_STATUSES
from cohorta.demo import reference as ref
from cohorta.errors import Conflict

CHUNK = 50_000
SPAN_SECONDS = 3 * 365 * 86400  # data covers the last three years
ORDERS_PER_CUSTOMER = 10.0
EVENTS_PER_CUSTOMER = 20.0
PROGRAM = "club"
# Lifetime points earned from purchases -> tier.
TIERS: tuple[tuple[str, int], ...] = (("bronze", 0), ("silver", 500), ("gold", 2000), ("platinum", 5000))
REDEMPTION_COST = 500
WELCOME_POINTS = 100

# Tables written by the loader, in dependency order.
TABLES = (
    "attribute_definitions", "event_definitions", "customers", "customer_attribute_values", "orders", "order_items",
    "events", "event_property_values", "loyalty_transactions", "customer_summaries", "customer_program_summaries",
)

# Secondary indexes kept during the load: their keys arrive in (nearly) ascending order, because rows are written
# customer by customer with ascending ids, so maintaining them is cheap. Every other one is dropped and rebuilt.
APPEND_FRIENDLY_INDEXES = frozenset({
    "ix_orders_customer_created", "ix_order_items_customer_ordered", "ix_order_items_order_pk",
    "ix_order_items_sku", "ix_events_customer_name_occurred", "ix_loyalty_transactions_customer_type_occurred",
    "ix_loyalty_transactions_gift_card",
})

Progress = Callable[[str, int, int], None]


@dataclass
class DemoStats:
    customers: int = 0
    attribute_values: int = 0
    orders: int = 0
    order_items: int = 0
    events: int = 0
    event_property_values: int = 0
    loyalty_transactions: int = 0
    seconds: float = 0.0
    # Seconds per phase: "data", "indexes", "summaries".
    timings: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------------
# Text forms


class _Text:
    """Fast text forms of instants and dates by table look-up (numpy object arrays, no per-row strftime).

    Instants come out exactly as :func:`cohorta.db.sqlite_instant_text` writes them: ``YYYY-MM-DD HH:MM:SS``, plus
    ``.ffffff`` only when the fraction is not zero. PostgreSQL reads the same text (the loader sets its session time
    zone to UTC).
    """

    def __init__(self, now_s: int) -> None:
        self.first_day = now_s // 86400 - 90 * 366
        days = np.arange(self.first_day, now_s // 86400 + 2).astype("datetime64[D]")
        self.day_text = np.array(np.datetime_as_string(days).tolist(), dtype=object)
        self.day_space = self.day_text + " "
        secs = np.arange(86400)
        self.time_text = np.array(
            [f"{h:02d}:{m:02d}:{s:02d}" for h, m, s in zip(secs // 3600, secs // 60 % 60, secs % 60, strict=True)],
            dtype=object,
        )
        self.ms_text = np.array([""] + [f".{ms:03d}000" for ms in range(1, 1000)], dtype=object)

    def instants(self, secs: np.ndarray, ms: np.ndarray | None = None) -> np.ndarray:
        text = self.day_space[secs // 86400 - self.first_day] + self.time_text[secs % 86400]
        if ms is not None:
            text = text + self.ms_text[ms]
        return text

    def dates(self, days: np.ndarray) -> np.ndarray:
        return self.day_text[days - self.first_day]


_HEX = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def demo_content_hash(table_tag: int, ids: np.ndarray) -> np.ndarray:
    """64 hex digits per id, deterministic (see the module docstring: not a SHA-256 of content)."""
    base = ids.astype(np.uint64) * np.uint64(4) + np.uint64(table_tag) * np.uint64(1 << 60)
    words = np.stack([_splitmix64(base ^ np.uint64((k * 0x632BE59BD9B4E019) % (1 << 64))) for k in range(4)], axis=1)
    as_bytes = words.astype(">u8").view(np.uint8).reshape(len(ids), 32)
    hexed = _HEX[as_bytes].view("S64").ravel()
    return np.array(hexed.astype("U64").tolist(), dtype=object)


def _codes(prefix: str, ids: np.ndarray, width: int) -> list[str]:
    return [f"{prefix}{i:0{width}d}" for i in ids.tolist()]


def _segment_starts(counts: np.ndarray) -> np.ndarray:
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return starts


def _group_rank(group: np.ndarray) -> np.ndarray:
    """0, 1, 2... within runs of equal values of a sorted ``group`` array."""
    n = len(group)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.ones(n, dtype=bool)
    new[1:] = group[1:] != group[:-1]
    starts = np.flatnonzero(new)
    run = np.cumsum(new) - 1
    return np.arange(n) - starts[run]


def _nones(n: int) -> np.ndarray:
    return np.full(n, None, dtype=object)


# --------------------------------------------------------------------------------------------------------------------
# Sinks


class _SqliteSink:
    """Multi-row VALUES statements on the raw sqlite3 cursor.

    Two costs of CPython's sqlite3 dominate: the per-statement overhead (hence many rows per statement) and binding
    ``None``, which goes through the adaptation protocol and an internal exception (~1 µs each). Rows are therefore
    grouped by their pattern of NULL columns and each group is inserted without those columns.
    """

    def __init__(self, dbapi_connection: Any) -> None:
        self.cursor = dbapi_connection.cursor()

    def write(self, table: str, columns: Sequence[str], data: Sequence[np.ndarray]) -> None:
        n = len(data[0])
        if n == 0:
            return
        pattern = np.zeros(n, dtype=np.int64)
        nullable = []
        for j, col in enumerate(data):
            if col.dtype == object:
                mask = col == None  # noqa: E711 (elementwise)
                if mask.any():
                    nullable.append(j)
                    pattern |= mask.astype(np.int64) << len(nullable) - 1
        if not nullable:
            self._insert(table, columns, [col.tolist() for col in data])
            return
        codes = np.unique(pattern)
        for code in codes.tolist():
            rows = np.flatnonzero(pattern == code) if len(codes) > 1 else None
            null_cols = {j for b, j in enumerate(nullable) if code >> b & 1}
            keep = [j for j in range(len(columns)) if j not in null_cols]
            self._insert(table, [columns[j] for j in keep],
                         [(data[j] if rows is None else data[j][rows]).tolist() for j in keep])

    def _insert(self, table: str, columns: Sequence[str], data: Sequence[list[Any]]) -> None:
        n = len(data[0])
        k = len(columns)
        per = max(1, min(400, 30000 // k))
        row_sql = "(" + ",".join("?" * k) + ")"
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        rows = list(zip(*data, strict=True))
        full = n - n % per
        if full:
            self.cursor.executemany(
                head + ",".join([row_sql] * per),
                (list(chain.from_iterable(rows[i : i + per])) for i in range(0, full, per)),
            )
        if n % per:
            self.cursor.execute(head + ",".join([row_sql] * (n % per)), list(chain.from_iterable(rows[full:])))


class _PostgresSink:
    def __init__(self, dbapi_connection: Any) -> None:
        self.cursor = dbapi_connection.cursor()

    def write(self, table: str, columns: Sequence[str], data: Sequence[np.ndarray]) -> None:
        if len(data[0]) == 0:
            return
        with self.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in zip(*(col.tolist() for col in data), strict=True):
                copy.write_row(row)


def _column(values: Any) -> np.ndarray:
    """A column as a numpy array; booleans become 0/1 (SQLite stores them so, PostgreSQL parses '1'/'0')."""
    if isinstance(values, np.ndarray):
        return values.astype(np.int64) if values.dtype == bool else values
    if values and isinstance(values[0], str):
        return np.array(values, dtype=object)
    return np.asarray(values)


# --------------------------------------------------------------------------------------------------------------------
# Generation


@dataclass
class _World:
    """Everything shared by all chunks."""

    seed: int
    total: int
    now_s: int
    text: _Text
    catalogue: ref.Catalogue
    country_p: np.ndarray
    city_country: np.ndarray  # per city: country index
    city_name: np.ndarray
    city_state: np.ndarray
    city_prefix: list[str]
    city_offsets: np.ndarray  # first city index per country
    city_cdfs: list[np.ndarray]
    slugs: dict[str, str]
    json_text: dict[str, str]
    id_width: int
    next_order: int = 1
    next_item: int = 1
    next_event: int = 1
    next_loyalty: int = 1
    next_gift_card: int = 1


def _make_world(customers: int, seed: int, now_s: int) -> _World:
    rng = np.random.default_rng([seed, 0xCA7A])
    weights = np.array([c.weight for c in ref.COUNTRIES])
    city_country: list[int] = []
    city_name: list[str] = []
    city_state: list[str | None] = []
    city_prefix: list[str] = []
    offsets: list[int] = []
    cdfs: list[np.ndarray] = []
    for ci, country in enumerate(ref.COUNTRIES):
        offsets.append(len(city_name))
        w = 1.0 / np.arange(1, len(country.cities) + 1) ** 0.8  # capital-heavy
        cdfs.append(np.cumsum(w / w.sum()))
        for city, state, prefix in country.cities:
            city_country.append(ci)
            city_name.append(city)
            city_state.append(state)
            city_prefix.append(prefix)
    slugs: dict[str, str] = {}
    for country in ref.COUNTRIES:
        for name in (*country.female, *country.male, *country.last):
            slugs[name] = ref.ascii_slug(name)
    vocab = [*ref.PAGES, *ref.CAMPAIGNS, *ref.PLATFORMS, *ref.COUPONS, *ref.CATEGORIES, *city_name,
             *(f"Store {c}" for c in city_name)]
    for nouns in ref.CATEGORIES.values():
        vocab.extend(nouns[1])
    return _World(
        seed=seed, total=customers, now_s=now_s, text=_Text(now_s), catalogue=ref.build_catalogue(rng),
        country_p=weights / weights.sum(), city_country=np.array(city_country), city_name=np.array(city_name, object),
        city_state=np.array(city_state, object), city_prefix=city_prefix, city_offsets=np.array(offsets),
        city_cdfs=cdfs, slugs=slugs, json_text={v: json.dumps(v) for v in vocab},
        id_width=max(7, len(str(customers))),
    )


@dataclass
class _Customers:
    ids: np.ndarray
    created: np.ndarray  # epoch seconds
    member: np.ndarray  # bool
    member_since: np.ndarray  # epoch seconds (meaningless where not member)
    activity: np.ndarray  # mean-1 purchase propensity
    city: np.ndarray


def _gen_customers(w: _World, rng: np.random.Generator, first_id: int, n: int,
                   emit: Callable[[str, list[str], list[Any]], None]) -> _Customers:
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    now = w.now_s
    country = rng.choice(len(ref.COUNTRIES), size=n, p=w.country_p)
    city = np.empty(n, dtype=np.int64)
    u = rng.random(n)
    for ci in range(len(ref.COUNTRIES)):
        mask = country == ci
        city[mask] = w.city_offsets[ci] + np.minimum(
            np.searchsorted(w.city_cdfs[ci], u[mask]), len(w.city_cdfs[ci]) - 1
        )
    g = rng.choice(4, size=n, p=[0.51, 0.47, 0.01, 0.01])  # female, male, other, unknown
    gender = np.array(["female", "male", "other", None], dtype=object)[g]
    r_first, r_last, r_dom, r_phone = (rng.integers(0, 1 << 40, n) for _ in range(4))
    first = np.empty(n, dtype=object)
    last = np.empty(n, dtype=object)
    email = _nones(n)
    phone = _nones(n)
    company = _nones(n)
    postal = np.empty(n, dtype=object)
    has_email = rng.random(n) < 0.95
    has_phone = rng.random(n) < 0.7
    has_company = rng.random(n) < 0.08
    r_postal = rng.integers(0, 1 << 30, n)
    r_company = rng.integers(0, len(ref.COMPANY_WORDS), n)
    for ci, c in enumerate(ref.COUNTRIES):
        idx = np.flatnonzero(country == ci)
        if not len(idx):
            continue
        female = np.array(c.female, dtype=object)
        male = np.array(c.male, dtype=object)
        fem = (g[idx] == 0) | ((g[idx] >= 2) & (r_first[idx] % 2 == 0))
        first[idx] = np.where(fem, female[r_first[idx] % len(female)], male[r_first[idx] % len(male)])
        last[idx] = np.array(c.last, dtype=object)[r_last[idx] % len(c.last)]
        domains = np.array(c.domains, dtype=object)[r_dom[idx] % len(c.domains)]
        slug = w.slugs
        for j, i in enumerate(idx.tolist()):
            if has_email[i]:
                email[i] = f"{slug[first[i]]}.{slug[last[i]]}{i + first_id}@{domains[j]}"
            if has_phone[i]:
                prefix = c.mobile_prefixes[r_phone[i] % len(c.mobile_prefixes)]
                digits = c.national_digits - len(prefix)
                phone[i] = f"+{c.calling_code}{prefix}{r_phone[i] // 7 % 10**digits:0{digits}d}"
            postal[i] = ref.postal_code(c.code, w.city_prefix[city[i]], int(r_postal[i]))
            if has_company[i]:
                company[i] = f"{ref.COMPANY_WORDS[r_company[i]]} {ref.COMPANY_SUFFIX[c.code]}"
    country_code = np.array([c.code for c in ref.COUNTRIES], dtype=object)[country]
    age_days = (np.clip(rng.normal(41, 14, n), 18.05, 80.9) * 365.25).astype(np.int64)
    birth_day = now // 86400 - age_days
    created = now - (SPAN_SECONDS * rng.random(n) ** 1.3).astype(np.int64) - 1  # growing: more recent sign-ups
    source_i = rng.choice(len(ref.SOURCES), size=n, p=ref.SOURCE_WEIGHTS)
    source = np.array(ref.SOURCES, dtype=object)[source_i]
    metadata = _nones(n)
    shop = np.flatnonzero(source_i == 0)
    metadata[shop] = [f'{{"shopify_customer_id": {7_000_000_000 + i}}}' for i in ids[shop].tolist()]
    mc = np.flatnonzero(source_i == 1)
    metadata[mc] = '{"list": "newsletter", "double_opt_in": true}'
    store = _nones(n)
    in_store = (source_i == 3) | (rng.random(n) < 0.25)
    store[in_store] = "Store " + w.city_name[city[in_store]]
    web = ~in_store & (rng.random(n) < 0.5)
    store[web] = "Webshop"
    member = rng.random(n) < 0.7
    at_signup = rng.random(n) < 0.5
    member_since = np.where(at_signup, created, created + ((now - created) * rng.random(n)).astype(np.int64))
    updated = np.maximum(created, np.where(member, member_since, created))
    updated = updated + ((now - updated) * rng.random(n) ** 3).astype(np.int64)
    t = w.text
    ms = np.where(member, member_since, 0)
    emit("customers",
         ["id", "source_id", "first_name", "last_name", "email", "phone", "birthdate", "gender", "postal_code",
          "city", "state", "country", "created_at", "source", "source_metadata", "store", "company",
          "loyalty_member", "member_since", "updated_at"],
         [ids, _codes("C", ids, w.id_width), first, last, email, phone, t.dates(birth_day), gender, postal,
          w.city_name[city], w.city_state[city], country_code, t.instants(created), source, metadata, store, company,
          member, np.where(member, t.instants(ms), _nones(n)), t.instants(updated)])
    sigma = 1.15
    activity = rng.lognormal(-sigma * sigma / 2, sigma, n)
    return _Customers(ids=ids, created=created, member=member, member_since=member_since, activity=activity,
                      city=city)


ATTRIBUTE_DEFINITIONS: tuple[tuple[str, str, str, str], ...] = (
    ("occupation", "string", "Occupation", "Declared occupation (profile form)."),
    ("married", "boolean", "Married", "Marital status (profile form)."),
    ("club_level", "string", "Club level", "Membership package bought in the club: standard, plus or vip."),
    ("children", "number", "Children", "Number of children (profile form)."),
    ("interests", "list", "Interests", "Interests chosen in the preference centre."),
    ("last_survey_at", "datetime", "Last survey", "When the customer last answered a satisfaction survey."),
)
_ATTR_CODE = {name: i for i, name in enumerate(sorted(a[0] for a in ATTRIBUTE_DEFINITIONS))}


def _gen_attributes(w: _World, rng: np.random.Generator, c: _Customers,
                    emit: Callable[[str, list[str], list[Any]], None]) -> int:
    n = len(c.ids)
    parts: list[tuple[np.ndarray, str, np.ndarray, dict[str, Any]]] = []

    def add(mask: np.ndarray, name: str, position: np.ndarray | None = None, **values: Any) -> None:
        cid = c.ids[mask]  # a boolean mask or customer positions
        pos = np.zeros(len(cid), dtype=np.int64) if position is None else position
        parts.append((cid, name, pos, values))

    has = rng.random(n) < 0.85
    add(has, "occupation", value_string=np.array(ref.OCCUPATIONS, object)[rng.integers(0, 15, n)][has])
    has = rng.random(n) < 0.7
    add(has, "married", value_boolean=(rng.random(n) < 0.55)[has].astype(np.int64))
    has = c.member & (rng.random(n) < 0.6)
    add(has, "club_level", value_string=np.array(ref.CLUB_LEVELS, object)[rng.choice(3, n, p=[0.7, 0.22, 0.08])][has])
    has = rng.random(n) < 0.6
    add(has, "children", value_number=rng.choice(5, n, p=[0.4, 0.22, 0.25, 0.09, 0.04]).astype(float)[has])
    k = np.where(rng.random(n) < 0.75, rng.integers(1, 5, n), 0)
    order = np.argsort(rng.random((n, len(ref.INTERESTS))), axis=1)
    who = np.repeat(np.arange(n), k)
    pos = _group_rank(who)
    add(who, "interests", position=pos, value_string=np.array(ref.INTERESTS, object)[order[who, pos]])
    has = rng.random(n) < 0.3
    survey = c.created + ((w.now_s - c.created) * rng.random(n)).astype(np.int64)
    add(has, "last_survey_at", value_datetime=w.text.instants(survey[has], rng.integers(0, 1000, n)[has]))

    cols = ["value_string", "value_number", "value_boolean", "value_date", "value_datetime"]
    cid = np.concatenate([p[0] for p in parts])
    code = np.concatenate([np.full(len(p[0]), _ATTR_CODE[p[1]]) for p in parts])
    pos = np.concatenate([p[2] for p in parts])
    names = np.concatenate([np.full(len(p[0]), p[1], dtype=object) for p in parts])
    values = {}
    for col in cols:
        values[col] = np.concatenate([
            np.asarray(p[3][col], dtype=object) if col in p[3] else _nones(len(p[0])) for p in parts
        ])
    s = np.lexsort((pos, code, cid))  # primary key order
    emit("customer_attribute_values", ["customer_id", "name", "position", *cols],
         [cid[s], names[s], pos[s], *(values[col][s] for col in cols)])
    return len(cid)


@dataclass
class _Orders:
    ids: np.ndarray
    customer: np.ndarray  # customer id
    created: np.ndarray
    status: np.ndarray
    total: np.ndarray


_STATUSES = np.array(["created", "paid", "fulfilled", "cancelled", "refunded"], dtype=object)


def _gen_orders(w: _World, rng: np.random.Generator, c: _Customers,
                emit: Callable[[str, list[str], list[Any]], None]) -> tuple[_Orders, int]:
    n = len(c.ids)
    now = w.now_s
    age = (now - c.created) / SPAN_SECONDS
    buyer = rng.random(n) < 0.88  # the rest only ever subscribed
    # E[age] = 1/2.3 for the sign-up distribution above.
    lam = ORDERS_PER_CUSTOMER / 0.88 * 2.3 * age * c.activity * buyer
    count = rng.poisson(lam)
    cust_idx = np.repeat(np.arange(n), count)
    m = len(cust_idx)
    created = c.created[cust_idx] + 60 + ((now - 60 - c.created[cust_idx]) * rng.random(m)).astype(np.int64)
    s = np.lexsort((created, cust_idx))
    cust_idx, created = cust_idx[s], created[s]
    ids = np.arange(w.next_order, w.next_order + m, dtype=np.int64)
    w.next_order += m
    recent = created > now - 2 * 86400
    status_i = np.where(recent, rng.choice(2, m, p=[0.3, 0.7]),
                        rng.choice(5, m, p=[0.0, 0.07, 0.82, 0.06, 0.05]))
    status = _STATUSES[status_i]
    # Items.
    k = rng.choice(4, m, p=[0.45, 0.3, 0.15, 0.1]) + 1
    order_of_item = np.repeat(np.arange(m), k)
    q = len(order_of_item)
    cat = w.catalogue
    product = rng.choice(len(cat.sku), q, p=cat.popularity)
    qty = rng.choice(3, q, p=[0.86, 0.11, 0.03]) + 1
    unit = cat.price_minor[product]
    discounted = rng.random(q) < 0.15
    unit = np.where(discounted, (unit * rng.uniform(0.7, 0.9, q)).astype(np.int64), unit)
    amount = qty * unit
    total = np.bincount(order_of_item, weights=amount, minlength=m).astype(np.int64)
    created_text = w.text.instants(created)
    customer = c.ids[cust_idx]
    emit("orders", ["id", "order_id", "customer_id", "status", "created_at", "total_minor", "content_hash"],
         [ids, _codes("O", ids, 10), customer, status, created_text, total, demo_content_hash(1, ids)])
    item_ids = np.arange(w.next_item, w.next_item + q, dtype=np.int64)
    w.next_item += q
    emit("order_items",
         ["id", "order_pk", "customer_id", "ordered_at", "status", "sku", "name", "category", "brand", "quantity",
          "unit_price_minor", "amount_minor"],
         [item_ids, ids[order_of_item], customer[order_of_item], created_text[order_of_item], status[order_of_item],
          cat.sku[product], cat.name[product], cat.category[product], cat.brand[product], qty, unit, amount])
    return _Orders(ids=ids, customer=cust_idx, created=created, status=status_i, total=total), q


_EVENT_NAMES = np.array([e[0] for e in ref.EVENT_KINDS], dtype=object)
_EVENT_P = np.array([e[1] for e in ref.EVENT_KINDS]) / sum(e[1] for e in ref.EVENT_KINDS)


def _gen_events(w: _World, rng: np.random.Generator, c: _Customers,
                emit: Callable[[str, list[str], list[Any]], None]) -> tuple[int, int]:
    n = len(c.ids)
    now = w.now_s
    age = (now - c.created) / SPAN_SECONDS
    lam = EVENTS_PER_CUSTOMER * 2.3 * age * (0.4 + 0.6 * c.activity)
    count = rng.poisson(lam)
    cust_idx = np.repeat(np.arange(n), count)
    m = len(cust_idx)
    at = c.created[cust_idx] + ((now - c.created[cust_idx]) * rng.random(m)).astype(np.int64)
    s = np.lexsort((at, cust_idx))
    cust_idx, at = cust_idx[s], at[s]
    ms = rng.integers(0, 1000, m)
    kind = rng.choice(len(_EVENT_NAMES), m, p=_EVENT_P)
    ids = np.arange(w.next_event, w.next_event + m, dtype=np.int64)
    w.next_event += m
    cat = w.catalogue
    js = w.json_text
    props = np.empty(m, dtype=object)
    # Typed declared properties: (event index, key, string value, number value)
    epv: list[tuple[np.ndarray, str, np.ndarray | None, np.ndarray | None]] = []
    price_text = [repr(p / 100) for p in cat.price_minor.tolist()]
    cat_json = [js[x] for x in cat.category.tolist()]
    sku_json = [json.dumps(x) for x in cat.sku.tolist()]
    for ki, (name, _w, _label, _declared) in enumerate(ref.EVENT_KINDS):
        idx = np.flatnonzero(kind == ki)
        r = len(idx)
        if not r:
            continue
        if name in ("product_viewed", "added_to_cart", "wishlist_added", "review_written"):
            p = rng.choice(len(cat.sku), r, p=cat.popularity)
            pl = p.tolist()
            if name == "product_viewed":
                props[idx] = [f'{{"category": {cat_json[x]}, "price": {price_text[x]}, "sku": {sku_json[x]}}}'
                              for x in pl]
                epv += [(idx, "category", cat.category[p], None), (idx, "price", None, cat.price_minor[p] / 100)]
            elif name == "added_to_cart":
                props[idx] = [f'{{"sku": {sku_json[x]}, "price": {price_text[x]}, "quantity": 1}}' for x in pl]
                epv += [(idx, "sku", cat.sku[p], None), (idx, "price", None, cat.price_minor[p] / 100)]
            elif name == "wishlist_added":
                props[idx] = [f'{{"category": {cat_json[x]}, "sku": {sku_json[x]}}}' for x in pl]
                epv.append((idx, "category", cat.category[p], None))
            else:
                rating = rng.choice(5, r, p=[0.05, 0.05, 0.12, 0.33, 0.45]) + 1
                props[idx] = [f'{{"rating": {v}, "sku": {sku_json[x]}}}' for v, x in zip(rating.tolist(), pl,
                                                                                           strict=True)]
                epv.append((idx, "rating", None, rating.astype(float)))
        elif name == "checkout_started":
            value = np.round(rng.lognormal(4.3, 0.6, r), 2)
            props[idx] = [f'{{"cart_value": {v!r}}}' for v in value.tolist()]
            epv.append((idx, "cart_value", None, value))
        else:
            key, vocab = {
                "page_viewed": ("path", ref.PAGES), "newsletter_opened": ("campaign", ref.CAMPAIGNS),
                "newsletter_clicked": ("campaign", ref.CAMPAIGNS), "app_opened": ("platform", ref.PLATFORMS),
                "search": ("query", tuple(x for v in ref.CATEGORIES.values() for x in v[1])),
                "coupon_redeemed": ("code", ref.COUPONS), "store_visit": ("store", None),
            }[name]
            if vocab is None:  # the store of the customer's city
                values = "Store " + w.city_name[c.city[cust_idx[idx]]]
            else:
                values = np.array(vocab, dtype=object)[rng.integers(0, len(vocab), r)]
            head = f'{{"{key}": '
            props[idx] = [head + js[v] + "}" for v in values.tolist()]
            epv.append((idx, key, values, None))
    emit("events", ["id", "event_id", "customer_id", "name", "occurred_at", "properties", "content_hash"],
         [ids, _codes("E", ids, 11), c.ids[cust_idx], _EVENT_NAMES[kind], w.text.instants(at, ms), props,
          demo_content_hash(2, ids)])
    if not epv:
        return m, 0
    ev = np.concatenate([e[0] for e in epv])
    keys = np.concatenate([np.full(len(e[0]), e[1], dtype=object) for e in epv])
    vs = np.concatenate([e[2] if e[2] is not None else _nones(len(e[0])) for e in epv])
    vn = np.concatenate([np.asarray(e[3], dtype=object) if e[3] is not None else _nones(len(e[0])) for e in epv])
    s = np.lexsort((keys.astype(str), ev))
    q = len(ev)
    zeros = np.zeros(q, dtype=np.int64)
    emit("event_property_values",
         ["event_pk", "key", "position", "value_string", "value_number", "value_boolean", "value_date",
          "value_datetime"],
         [ids[ev[s]], keys[s], zeros, vs[s], vn[s], _nones(q), _nones(q), _nones(q)])
    return m, q


_LOYALTY_COLUMNS = ["customer_id", "type", "program", "entry", "points", "tier", "reward", "referred", "gift_card",
                    "operation", "amount_minor", "reason", "occurred_at"]


def _gen_loyalty(w: _World, rng: np.random.Generator, c: _Customers, o: _Orders,
                 emit: Callable[[str, list[str], list[Any]], None]) -> int:
    n = len(c.ids)
    now = w.now_s
    parts: list[dict[str, Any]] = []

    def part(cust: np.ndarray, at: np.ndarray, **cols: Any) -> None:
        parts.append({"customer": cust, "at": at, **cols})

    member = c.member
    # Welcome bonus and the starting tier.
    mem = np.flatnonzero(member)
    part(mem, c.member_since[mem], type="points", program=PROGRAM, entry="adjust", points=WELCOME_POINTS,
         reason="welcome bonus")
    part(mem, c.member_since[mem], type="tier", program=PROGRAM, tier=TIERS[0][0], reason="joined the club")
    # Earn one point per whole currency unit on every counted order placed as a member.
    counted = (o.status == 1) | (o.status == 2)
    earn = np.flatnonzero(counted & member[o.customer] & (o.created >= c.member_since[o.customer]))
    ecust, eat, epts = o.customer[earn], o.created[earn] + 60, o.total[earn] // 100
    part(ecust, eat, type="points", program=PROGRAM, entry="earn", points=epts, reason="purchase")
    # Tier upgrades when lifetime earned points cross a threshold (earn rows are in time order per customer).
    cum = np.cumsum(epts)
    first_of = np.searchsorted(ecust, ecust)  # ecust is sorted: index of each customer's first earn row
    lifetime = cum - (cum[first_of] - epts[first_of])
    before = lifetime - epts
    for tier, threshold in TIERS[1:]:
        up = np.flatnonzero((lifetime >= threshold) & (before < threshold))
        part(ecust[up], eat[up] + 1, type="tier", program=PROGRAM, tier=tier, reason="upgrade")
    earned = np.bincount(ecust, weights=epts, minlength=n).astype(np.int64)
    last_earn = np.full(n, -1, dtype=np.int64)
    last_earn[ecust] = eat  # later rows win: the latest earn per customer
    balance = np.where(member, earned + WELCOME_POINTS, 0)
    # Redemptions: each costs REDEMPTION_COST points, spent after the customer's first earn.
    can = balance // REDEMPTION_COST
    red_count = np.minimum(rng.poisson(0.5 * can), can)
    red_cust = np.repeat(np.arange(n), red_count)
    start = np.where(last_earn[red_cust] >= 0, c.member_since[red_cust], now)
    red_at = start + ((now - start) * rng.random(len(red_cust))).astype(np.int64) + 120
    red_at = np.minimum(red_at, now)
    reward = np.array(ref.REWARDS, dtype=object)[rng.integers(0, len(ref.REWARDS), len(red_cust))]
    part(red_cust, red_at, type="redemption", program=PROGRAM, reward=reward)
    part(red_cust, red_at, type="points", program=PROGRAM, entry="spend", points=-REDEMPTION_COST,
         reason="redemption")
    balance -= red_count * REDEMPTION_COST
    # Expiries of part of the balance for some members, within the last year.
    exp = np.flatnonzero(member & (balance > 0) & (rng.random(n) < 0.08))
    amount = np.maximum(1, (balance[exp] * rng.uniform(0.2, 1.0, len(exp))).astype(np.int64))
    exp_at = np.maximum(c.member_since[exp], now - 365 * 86400) + (rng.random(len(exp)) * 200 * 86400).astype(np.int64)
    part(exp, np.minimum(exp_at, now), type="points", program=PROGRAM, entry="expire", points=-amount,
         reason="points expired")
    balance[exp] -= amount
    # Manual adjustments by customer service, both ways (never below zero).
    adj = np.flatnonzero(member & (rng.random(n) < 0.03))
    delta = rng.choice([-50, 50, 100, 200], len(adj))
    delta = np.where(delta < 0, -np.minimum(balance[adj], 50), delta)
    adj_at = c.member_since[adj] + ((now - c.member_since[adj]) * rng.random(len(adj))).astype(np.int64)
    part(adj, adj_at, type="points", program=PROGRAM, entry="adjust", points=delta, reason="customer service")
    # Referrals.
    ref_count = np.where(member & (rng.random(n) < 0.06), rng.integers(1, 4, n), 0)
    ref_cust = np.repeat(np.arange(n), ref_count)
    referred = rng.integers(1, w.total + 1, len(ref_cust))
    ref_at = c.member_since[ref_cust] + ((now - c.member_since[ref_cust]) * rng.random(len(ref_cust))).astype(
        np.int64)
    part(ref_cust, ref_at, type="referral", program=PROGRAM,
         referred=np.array(_codes("C", referred, w.id_width), dtype=object))
    # Gift cards: issued, then partly redeemed.
    gc = np.flatnonzero(rng.random(n) < 0.04)
    g = len(gc)
    codes = np.array([f"GC-{w.seed % 100:02d}{i:08d}" for i in range(w.next_gift_card, w.next_gift_card + g)],
                     dtype=object)
    w.next_gift_card += g
    value = rng.choice([2500, 5000, 10000, 20000], g)
    issued = c.created[gc] + ((now - c.created[gc]) * rng.random(g)).astype(np.int64)
    part(gc, issued, type="gift_card", gift_card=codes, operation="issue", amount_minor=value, reason="purchased")
    r1 = rng.random(g) < 0.6
    first_use = (value * rng.uniform(0.3, 1.0, g)).astype(np.int64)
    at1 = issued + ((now - issued) * rng.random(g) * 0.5).astype(np.int64) + 60
    part(gc[r1], at1[r1], type="gift_card", gift_card=codes[r1], operation="redeem", amount_minor=-first_use[r1],
         reason="in-store purchase")
    r2 = r1 & (rng.random(g) < 0.3) & (first_use < value)
    at2 = at1 + ((now - at1) * rng.random(g)).astype(np.int64) + 60
    part(gc[r2], np.minimum(at2[r2], now), type="gift_card", gift_card=codes[r2], operation="redeem",
         amount_minor=-(value - first_use)[r2], reason="online purchase")

    cust = np.concatenate([p["customer"] for p in parts])
    at = np.concatenate([p["at"] for p in parts])
    seq = np.arange(len(cust))
    s = np.lexsort((seq, at, cust))
    m = len(cust)
    ids = np.arange(w.next_loyalty, w.next_loyalty + m, dtype=np.int64)
    w.next_loyalty += m
    data: list[Any] = [ids, _codes("L", ids, 11)]
    for col in _LOYALTY_COLUMNS:
        if col == "customer_id":
            data.append(c.ids[cust[s]])
        elif col == "occurred_at":
            data.append(w.text.instants(at[s]))
        else:
            chunks = []
            for p in parts:
                v = p.get(col)
                size = len(p["customer"])
                if v is None:
                    chunks.append(_nones(size))
                elif isinstance(v, np.ndarray):
                    chunks.append(v.astype(object))
                else:
                    chunks.append(np.full(size, v, dtype=object))
            data.append(np.concatenate(chunks)[s])
    data.append(demo_content_hash(3, ids))
    emit("loyalty_transactions", ["id", "transaction_id", *_LOYALTY_COLUMNS, "content_hash"], data)
    return m


# --------------------------------------------------------------------------------------------------------------------
# Summaries


def insert_summaries(connection: sa.Connection) -> None:
    """Fill ``customer_summaries`` and ``customer_program_summaries`` from the raw rows, set-based.

    Assumes both tables are empty. One row per customer (zeros and NULLs when there is nothing), one row per
    (customer, program) with a points entry or a tier change. Orders count when their status is in
    COUNTED_ORDER_STATUSES; the average is rounded half up; the last order is the latest by ``created_at``, ties
    broken by the highest id; the program tier is that of the latest tier change. To be merged with
    ``cohorta.customers.summary`` so that one piece of logic defines the summaries.
    """
    counted = ", ".join(f"'{s}'" for s in COUNTED_ORDER_STATUSES)
    connection.exec_driver_sql(f"""
        INSERT INTO customer_summaries (customer_id, order_count, total_spent_minor, average_order_value_minor,
            first_order_at, last_order_at, last_order_amount_minor, points_balance, redemption_count,
            referral_count, gift_card_balance_minor)
        SELECT c.id, COALESCE(o.order_count, 0), COALESCE(o.total, 0),
               (2 * o.total + o.order_count) / (2 * o.order_count),
               o.first_at, o.last_at, lo.total_minor,
               COALESCE(l.points, 0), COALESCE(l.redemptions, 0), COALESCE(l.referrals, 0), COALESCE(l.gift, 0)
        FROM customers c
        LEFT JOIN (
            SELECT customer_id, COUNT(*) AS order_count, CAST(SUM(total_minor) AS BIGINT) AS total,
                   MIN(created_at) AS first_at, MAX(created_at) AS last_at
            FROM orders WHERE status IN ({counted}) GROUP BY customer_id
        ) o ON o.customer_id = c.id
        LEFT JOIN (
            SELECT customer_id, total_minor FROM (
                SELECT customer_id, total_minor,
                       ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY created_at DESC, id DESC) AS rn
                FROM orders WHERE status IN ({counted})
            ) ranked WHERE rn = 1
        ) lo ON lo.customer_id = c.id
        LEFT JOIN (
            SELECT customer_id,
                   CAST(SUM(CASE WHEN type = 'points' THEN points ELSE 0 END) AS BIGINT) AS points,
                   SUM(CASE WHEN type = 'redemption' THEN 1 ELSE 0 END) AS redemptions,
                   SUM(CASE WHEN type = 'referral' THEN 1 ELSE 0 END) AS referrals,
                   CAST(SUM(CASE WHEN type = 'gift_card' THEN amount_minor ELSE 0 END) AS BIGINT) AS gift
            FROM loyalty_transactions GROUP BY customer_id
        ) l ON l.customer_id = c.id
    """)
    connection.exec_driver_sql("""
        INSERT INTO customer_program_summaries (customer_id, program, points_balance, tier)
        SELECT p.customer_id, p.program, p.points, t.tier
        FROM (
            SELECT customer_id, program,
                   CAST(SUM(CASE WHEN type = 'points' THEN points ELSE 0 END) AS BIGINT) AS points
            FROM loyalty_transactions
            WHERE program IS NOT NULL AND type IN ('points', 'tier')
            GROUP BY customer_id, program
        ) p
        LEFT JOIN (
            SELECT customer_id, program, tier FROM (
                SELECT customer_id, program, tier,
                       ROW_NUMBER() OVER (PARTITION BY customer_id, program ORDER BY occurred_at DESC, id DESC) AS rn
                FROM loyalty_transactions WHERE type = 'tier' AND program IS NOT NULL
            ) ranked WHERE rn = 1
        ) t ON t.customer_id = p.customer_id AND t.program = p.program
    """)


# --------------------------------------------------------------------------------------------------------------------
# Index management


def _secondary_indexes(connection: sa.Connection) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of the non-constraint indexes of the loaded tables, as the database has them."""
    if connection.dialect.name == "sqlite":
        placeholders = ", ".join("?" * len(TABLES))
        rows = connection.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            f"AND tbl_name IN ({placeholders}) ORDER BY name", TABLES
        ).all()
    else:
        rows = connection.exec_driver_sql(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE n.nspname = current_schema() AND t.relname = ANY(%(tables)s) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid) ORDER BY i.relname",
            {"tables": list(TABLES)},
        ).all()
    return [(r[0], r[1]) for r in rows]


def _quote(connection: sa.Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


# --------------------------------------------------------------------------------------------------------------------
# Entry point


def load_demo(
    engine: sa.Engine,
    *,
    customers: int = 10_000,
    seed: int = 7,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> DemoStats:
    """Generate the demo data set and write it into an empty, migrated database.

    ``now`` (timezone-aware; default: the current time) is the end of the three years of history.
    ``progress(stage, done, total)`` is called with stage "data" (done = customers written), "indexes" and
    "summaries". Raises Conflict when the database already has customers. Each chunk of ``CHUNK`` customers is
    committed on its own: a failed load leaves a partial data set (secondary indexes are restored regardless).
    """
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if now is None:
        now = datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    started = time.perf_counter()
    report = progress or (lambda stage, done, total: None)
    stats = DemoStats()
    world = _make_world(customers, seed, int(now.timestamp()))
    now_text = world.text.instants(np.array([world.now_s]))[0]

    with engine.connect() as conn:
        if conn.exec_driver_sql("SELECT 1 FROM customers LIMIT 1").first() is not None:
            raise Conflict("The database already has customers: the demo data set loads into an empty database.")
        conn.rollback()
        sqlite = conn.dialect.name == "sqlite"
        restore: list[str] = []
        if sqlite:
            for pragma, value in (("synchronous", "OFF"), ("foreign_keys", "OFF"), ("cache_size", "-524288")):
                old = conn.exec_driver_sql(f"PRAGMA {pragma}").scalar()
                restore.append(f"PRAGMA {pragma}={old}")
                conn.exec_driver_sql(f"PRAGMA {pragma}={value}")
            conn.commit()
        dbapi = conn.connection.driver_connection
        sink: _SqliteSink | _PostgresSink = _SqliteSink(dbapi) if sqlite else _PostgresSink(dbapi)

        def begin() -> None:
            if not sqlite:
                conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")

        def emit(table: str, columns: list[str], data: list[Any]) -> None:
            sink.write(table, columns, [_column(col) for col in data])

        indexes = [ix for ix in _secondary_indexes(conn) if ix[0] not in APPEND_FRIENDLY_INDEXES]
        try:
            begin()
            for name, _sql in indexes:
                conn.exec_driver_sql(f"DROP INDEX {_quote(conn, name)}")
            now_param = now_text
            emit("attribute_definitions", ["name", "type", "label", "description", "created_at", "updated_at"],
                 [[a[i] for a in ATTRIBUTE_DEFINITIONS] for i in range(4)]
                 + [[now_param] * len(ATTRIBUTE_DEFINITIONS)] * 2)
            emit("event_definitions", ["name", "label", "description", "properties", "created_at", "updated_at"],
                 [[e[0] for e in ref.EVENT_KINDS], [e[2] for e in ref.EVENT_KINDS],
                  [f"Demo event: {e[2].lower()}." for e in ref.EVENT_KINDS],
                  [json.dumps(e[3]) for e in ref.EVENT_KINDS]] + [[now_param] * len(ref.EVENT_KINDS)] * 2)
            conn.commit()
            t0 = time.perf_counter()
            report("data", 0, customers)
            for start in range(0, customers, CHUNK):
                n = min(CHUNK, customers - start)
                begin()
                rng = np.random.default_rng([seed, start])
                c = _gen_customers(world, rng, start + 1, n, emit)
                stats.customers += n
                stats.attribute_values += _gen_attributes(world, rng, c, emit)
                orders, items = _gen_orders(world, rng, c, emit)
                stats.orders += len(orders.ids)
                stats.order_items += items
                events, props = _gen_events(world, rng, c, emit)
                stats.events += events
                stats.event_property_values += props
                stats.loyalty_transactions += _gen_loyalty(world, rng, c, orders, emit)
                conn.commit()
                report("data", start + n, customers)
            stats.timings["data"] = time.perf_counter() - t0
        finally:
            conn.rollback()
            t0 = time.perf_counter()
            begin()
            report("indexes", 0, len(indexes))
            for i, (_name, sql) in enumerate(indexes, 1):
                conn.exec_driver_sql(sql)
                conn.commit()
                begin()
                report("indexes", i, len(indexes))
            stats.timings["indexes"] = time.perf_counter() - t0
            conn.commit()
        t0 = time.perf_counter()
        report("summaries", 0, 1)
        begin()
        insert_summaries(conn)
        if not sqlite:
            for table in ("customers", "orders", "order_items", "events", "loyalty_transactions"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
                )
        conn.commit()
        report("summaries", 1, 1)
        stats.timings["summaries"] = time.perf_counter() - t0
        if sqlite:
            for statement in restore:
                conn.exec_driver_sql(statement)
            conn.commit()
        else:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    stats.seconds = time.perf_counter() - started
    return stats


def iter_stages() -> Iterator[str]:
    """The progress stages, in order (for progress bars)."""
    yield from ("data", "indexes", "summaries")
