"""Seeded, vectorised demo data generator.

``load_demo(engine, customers=N, seed=S, now=T)`` writes a realistic data set into an empty, migrated database:
customers, custom attributes, orders and their items, events with typed declared properties, the loyalty journal
of the "club" program, and each customer's summaries (computed from the generated rows by the definitions of
:func:`cohorta.customers.summary.rebuild_summaries`).

Speed: data is drawn with numpy in chunks of ``CHUNK`` customers and every column is built as an Apache Arrow array
without per-row Python work (fixed-width texts such as codes, hashes and instants are assembled as byte matrices;
categorical texts are dictionary arrays over small vocabularies). The tables go to the database through ADBC bulk
ingest: the SQLite driver's prepared-statement loop in C (with ``synchronous=OFF``, in a child process: see
:func:`_write_in_child`) or the PostgreSQL driver's binary ``COPY``. Generation runs in a background thread one
chunk ahead of the writer (ADBC releases the GIL).
Secondary indexes are dropped during the load and re-created afterwards from the exact DDL the database reported;
on PostgreSQL the foreign keys are too (re-adding them validates them). An in-memory SQLite database, which a
second connection cannot reach, is written through the SQLAlchemy connection instead (slowly; tests only).

Column values are exactly what the application stores (:mod:`cohorta.db`): on SQLite instants are UTC text
``YYYY-MM-DD HH:MM:SS`` with ``.ffffff`` only when the fraction is not zero, dates ``YYYY-MM-DD``, booleans 0/1 and
JSON text; on PostgreSQL ``timestamptz``, ``date``, ``boolean`` and ``json`` values of the column's own type.

Determinism: the same ``customers``, ``seed`` and ``now`` give the same rows, bit for bit.

``content_hash`` of demo orders, events and loyalty transactions is NOT a SHA-256 of received content (there was no
received content, and hashing tens of millions of rows would dominate the load time): it is 16 hex digits derived
from ``(table, id)`` with splitmix64, deterministic and unique per row, and never equal to a SHA-256's 64. An API
re-send of a demo item is therefore always treated as an update, never as a duplicate.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.orm import Session

from cohorta.demo import reference as ref
from cohorta.errors import Conflict
from cohorta.membership import monthly

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
    "customer_months",
)

# Every secondary index of the loaded tables is dropped during the load and rebuilt afterwards: measured on SQLite,
# maintaining even the ones whose keys arrive in ascending order costs about twice what building them takes.

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
    # Seconds per phase: "data" (summaries and month figures included), "indexes".
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Rows written into the generated tables (summaries and definitions not included)."""
        return (self.customers + self.attribute_values + self.orders + self.order_items + self.events
                + self.event_property_values + self.loyalty_transactions)


# --------------------------------------------------------------------------------------------------------------------
# Typed columns and their Arrow form


@dataclass
class Instants:
    """Instants as epoch seconds plus optional milliseconds; ``valid`` marks the non-NULL ones (default: all)."""

    secs: np.ndarray
    ms: np.ndarray | None = None
    valid: np.ndarray | None = None


@dataclass
class Dates:
    """Dates as days since the epoch."""

    days: np.ndarray


Column: TypeAlias = "pa.Array | np.ndarray | Instants | Dates"
Emit = Callable[[str, list[str], list[Column]], None]

_ZERO = ord("0")
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _text_matrix(mat: np.ndarray, lengths: np.ndarray | None = None) -> pa.Array:
    """A string array from an (n, w) matrix of ASCII bytes, each row cut to its length (default: w)."""
    n, w = mat.shape
    if lengths is None:
        data = np.ascontiguousarray(mat).ravel()
        offsets = np.arange(0, (n + 1) * w, w, dtype=np.int64)
    else:
        data = mat[np.arange(w) < lengths[:, None]]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
    array = pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return array.cast(pa.string())


_TWO_DIGITS = np.array([[_ZERO + i // 10, _ZERO + i % 10] for i in range(100)], dtype=np.uint8)
# Byte b -> its two hex digits, packed so that a little-endian view yields them in reading order.
_HEX_PAIRS = np.array([int(_HEX[b >> 4]) | int(_HEX[b & 15]) << 8 for b in range(256)], dtype="<u2")


def _put_digits(mat: np.ndarray, at: int, values: np.ndarray, width: int) -> None:
    """Zero-padded decimal digits of ``values`` into columns ``at`` to ``at + width`` of ``mat``, two at a time."""
    end = at + width
    while end - at >= 2:
        mat[:, end - 2 : end] = _TWO_DIGITS[values % 100]
        values = values // 100
        end -= 2
    if end > at:
        mat[:, at] = values % 10 + _ZERO


def _codes(prefix: str, ids: np.ndarray, width: int) -> pa.Array:
    """``f"{prefix}{id:0{width}d}"`` for every id, as Arrow strings (ids must have at most ``width`` digits)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) and int(ids.max()) >= 10**width:
        raise ValueError(f"{prefix} codes wider than {width} digits")
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    mat = np.empty((len(ids), len(head) + width), dtype=np.uint8)
    mat[:, : len(head)] = head
    _put_digits(mat, len(head), ids, width)
    return _text_matrix(mat)


def _civil(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = days.astype("datetime64[D]")
    month_start = d.astype("datetime64[M]")
    year = month_start.astype("datetime64[Y]").astype(np.int64) + 1970
    month = month_start.astype(np.int64) % 12 + 1
    day = (d - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


def _date_rows(days: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD`` of each day as rows of a byte matrix, through a table of the days' range."""
    lo, hi = int(days.min()), int(days.max())
    span = np.arange(lo, hi + 1)
    year, month, day = _civil(span)
    table = np.empty((len(span), 10), dtype=np.uint8)
    _put_digits(table, 0, year, 4)
    table[:, 4] = table[:, 7] = ord("-")
    _put_digits(table, 5, month, 2)
    _put_digits(table, 8, day, 2)
    return table[days - lo]


@functools.cache
def _clock_table() -> np.ndarray:
    """``HH:MM:SS`` of each second of a day."""
    secs = np.arange(86400)
    table = np.empty((86400, 8), dtype=np.uint8)
    table[:, 2] = table[:, 5] = ord(":")
    _put_digits(table, 0, secs // 3600, 2)
    _put_digits(table, 3, secs // 60 % 60, 2)
    _put_digits(table, 6, secs % 60, 2)
    return table


@functools.cache
def _fraction_table() -> np.ndarray:
    """``.ffffff`` of each whole millisecond."""
    table = np.full((1000, 7), _ZERO, dtype=np.uint8)
    table[:, 0] = ord(".")
    _put_digits(table, 1, np.arange(1000), 3)
    return table


def instant_text(secs: np.ndarray, ms: np.ndarray | None = None) -> pa.Array:
    """The SQLite text of instants (:func:`cohorta.db.sqlite_instant_text`): ``.ffffff`` only when not zero."""
    secs = np.asarray(secs, dtype=np.int64)
    if not len(secs):
        return pa.array([], type=pa.string())
    mat = np.empty((len(secs), 26), dtype=np.uint8)
    mat[:, :10] = _date_rows(secs // 86400)
    mat[:, 10] = ord(" ")
    mat[:, 11:19] = _clock_table()[secs % 86400]
    if ms is None:
        return _text_matrix(mat[:, :19])
    mat[:, 19:] = _fraction_table()[ms]
    return _text_matrix(mat, np.where(ms != 0, 26, 19))


def date_text(days: np.ndarray) -> pa.Array:
    days = np.asarray(days, dtype=np.int64)
    if not len(days):
        return pa.array([], type=pa.string())
    return _text_matrix(_date_rows(days))


def _with_nulls(array: pa.Array, valid: np.ndarray | None) -> pa.Array:
    if valid is None or valid.all():
        return array
    return pc.if_else(pa.array(valid), array, pa.scalar(None, array.type))


def _strings(values: Any) -> pa.Array:
    """Python strings (None for NULL) as an Arrow string array."""
    return pa.array(values, type=pa.string())


def _pick(vocabulary: Sequence[str | None], index: np.ndarray) -> pa.Array:
    """``vocabulary[index]`` (None: NULL) as an Arrow dictionary array: no copy of the texts per row."""
    words = list(vocabulary)
    index = np.asarray(index, dtype=np.int32)
    nulls = [i for i, word in enumerate(words) if word is None]
    mask = np.isin(index, nulls) if nulls else None
    return pa.DictionaryArray.from_arrays(pa.array(index, mask=mask),
                                          _strings(["" if word is None else word for word in words]))


def _const(value: Any, n: int, type_: pa.DataType) -> pa.Array:
    return pa.nulls(n, type_) if value is None else pa.repeat(pa.scalar(value, type_), n)


def _stack(pieces: Sequence[tuple[Any, int]], type_: pa.DataType) -> pa.Array:
    """Concatenate (value, size) pieces: an array, a constant for ``size`` rows or None (NULLs)."""
    arrays = []
    for value, size in pieces:
        if isinstance(value, pa.Array):
            arrays.append(value.cast(type_))
        elif isinstance(value, np.ndarray):
            arrays.append(pa.array(value, type=type_))
        else:
            arrays.append(_const(value, size, type_))
    return pa.concat_arrays(arrays)


class _Arrow:
    """Typed columns -> an Arrow table holding exactly the stored values of one dialect's columns."""

    def __init__(self, dialect: str, column_types: dict[tuple[str, str], str]) -> None:
        self.dialect = dialect
        self.column_types = column_types  # PostgreSQL: (table, column) -> data type

    def table(self, name: str, columns: list[str], data: list[Column]) -> pa.Table:
        arrays = [self.array(name, column, value) for column, value in zip(columns, data, strict=True)]
        return pa.Table.from_arrays(arrays, names=columns)

    def array(self, table: str, column: str, value: Column) -> pa.Array:
        if self.dialect == "sqlite":
            return self._sqlite(value)
        target = _PG_TYPES.get(self.column_types.get((table, column), ""))
        if isinstance(value, Instants):
            micros = value.secs.astype(np.int64) * 1_000_000
            if value.ms is not None:
                micros = micros + value.ms.astype(np.int64) * 1000
            array: pa.Array = pa.array(micros, type=pa.timestamp("us", tz="UTC"),
                                       mask=None if value.valid is None else ~value.valid)
        elif isinstance(value, Dates):
            array = pa.array(value.days.astype(np.int32), type=pa.date32())
        elif isinstance(value, np.ndarray):
            array = pa.array(value)
        else:
            array = value
        if target is not None and array.type != target:
            array = array.cast(target)
        return array

    @staticmethod
    def _sqlite(value: Column) -> pa.Array:
        if isinstance(value, Instants):
            return _with_nulls(instant_text(value.secs, value.ms), value.valid)
        if isinstance(value, Dates):
            return date_text(value.days)
        if isinstance(value, np.ndarray):
            value = pa.array(value)
        if pa.types.is_boolean(value.type) or pa.types.is_integer(value.type):
            return value.cast(pa.int64())  # SQLite booleans are 0/1 integers
        if pa.types.is_date(value.type) or pa.types.is_null(value.type):
            return value.cast(pa.string())  # (only ever NULLs here)
        return value


_PG_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int32(), "bigint": pa.int64(), "smallint": pa.int16(), "boolean": pa.bool_(),
    "double precision": pa.float64(), "real": pa.float32(), "date": pa.date32(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"), "character varying": pa.string(),
    "text": pa.string(), "json": pa.string(),
}


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def demo_content_hash(table_tag: int, ids: np.ndarray) -> pa.Array:
    """16 hex digits per id, unique per (table, id): splitmix64 is a bijection of 64-bit words (see the module
    docstring: not a SHA-256 of content; 64 digits, as a SHA-256 has, made the database 18% bigger and its writes 10%
    slower)."""
    words = _splitmix64(ids.astype(np.uint64) * np.uint64(4) + np.uint64(table_tag) * np.uint64(1 << 60))
    as_bytes = words.astype(">u8").view(np.uint8).reshape(len(ids), 8)
    return _text_matrix(_HEX_PAIRS[as_bytes].view(np.uint8))


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
# Generation

# Event kinds whose single declared property takes a value from a vocabulary: name -> (key, vocabulary).
_VOCAB_EVENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "page_viewed": ("path", ref.PAGES), "newsletter_opened": ("campaign", ref.CAMPAIGNS),
    "newsletter_clicked": ("campaign", ref.CAMPAIGNS), "app_opened": ("platform", ref.PLATFORMS),
    "search": ("query", tuple(x for v in ref.CATEGORIES.values() for x in v[1])),
    "coupon_redeemed": ("code", ref.COUPONS),
}
_PRODUCT_EVENTS = ("product_viewed", "added_to_cart", "wishlist_added", "review_written")


@dataclass
class _World:
    """Everything shared by all chunks."""

    seed: int
    total: int
    now_s: int
    catalogue: ref.Catalogue
    country_p: np.ndarray
    city_country: np.ndarray  # per city: country index
    city_name: np.ndarray
    city_state: np.ndarray
    city_prefix: list[str]
    city_offsets: np.ndarray  # first city index per country
    city_cdfs: list[np.ndarray]
    slugs: dict[str, str]
    id_width: int
    # The ``properties`` JSON texts that do not depend on a drawn number, and where each event kind's start.
    props_text: pa.Array
    props_at: dict[str, int]
    # The texts of typed string properties, and where each kind of value starts.
    values_text: pa.Array
    values_at: dict[str, int]
    next_order: int = 1
    next_item: int = 1
    next_event: int = 1
    next_loyalty: int = 1
    next_gift_card: int = 1
    # With month figures (``load_demo``'s ``month_zone``): the UTC starts of the calendar months orders can fall in,
    # then the end of the last, as epoch seconds; and each month's first day, as days since the epoch.
    month_edges: np.ndarray | None = None
    month_days: np.ndarray | None = None


def _make_world(customers: int, seed: int, now_s: int, month_zone: str | None = None) -> _World:
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
    catalogue = ref.build_catalogue(rng)
    price_text = [repr(p / 100) for p in catalogue.price_minor.tolist()]
    cat_json = [json.dumps(x) for x in catalogue.category.tolist()]
    sku_json = [json.dumps(x) for x in catalogue.sku.tolist()]
    products = range(len(catalogue.sku))
    texts: list[str] = []
    props_at: dict[str, int] = {}

    def kind(name: str, values: list[str]) -> None:
        props_at[name] = len(texts)
        texts.extend(values)

    kind("product_viewed", [f'{{"category": {cat_json[x]}, "price": {price_text[x]}, "sku": {sku_json[x]}}}'
                            for x in products])
    kind("added_to_cart", [f'{{"sku": {sku_json[x]}, "price": {price_text[x]}, "quantity": 1}}' for x in products])
    kind("wishlist_added", [f'{{"category": {cat_json[x]}, "sku": {sku_json[x]}}}' for x in products])
    kind("review_written", [f'{{"rating": {v}, "sku": {sku_json[x]}}}' for v in range(1, 6) for x in products])
    for name, (key, vocab) in _VOCAB_EVENTS.items():
        kind(name, [f'{{"{key}": {json.dumps(v)}}}' for v in vocab])
    kind("store_visit", [f'{{"store": {json.dumps("Store " + c)}}}' for c in city_name])
    values: list[str] = []
    values_at: dict[str, int] = {}
    for name, words in (("category", catalogue.category.tolist()), ("sku", catalogue.sku.tolist()),
                        ("store", ["Store " + c for c in city_name]),
                        *((name, list(vocab)) for name, (_key, vocab) in _VOCAB_EVENTS.items())):
        values_at[name] = len(values)
        values.extend(words)
    month_edges, month_days = _month_calendar(now_s, month_zone)
    return _World(
        seed=seed, total=customers, now_s=now_s, catalogue=catalogue,
        country_p=weights / weights.sum(), city_country=np.array(city_country), city_name=np.array(city_name, object),
        city_state=np.array(city_state, object), city_prefix=city_prefix, city_offsets=np.array(offsets),
        city_cdfs=cdfs, slugs=slugs, id_width=max(7, len(str(customers))),
        props_text=_strings(texts), props_at=props_at, values_text=_strings(values), values_at=values_at,
        month_edges=month_edges, month_days=month_days,
    )


def _month_calendar(now_s: int, month_zone: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The world's ``month_edges`` and ``month_days`` for month figures in the zone (nothing without a zone): every
    month from the earliest a customer can have been created in to now's, bounded as ``monthly.month_bounds`` does."""
    if month_zone is None:
        return None, None
    zone = ZoneInfo(month_zone)
    first = datetime.fromtimestamp(now_s - SPAN_SECONDS - 86400, UTC)
    last = datetime.fromtimestamp(now_s, UTC)
    months = monthly.months_between(monthly.month_of(first, zone), monthly.month_of(last, zone))
    bounds = [monthly.month_bounds(month, zone) for month in months]
    edges = [int(start.timestamp()) for start, _ in bounds] + [int(bounds[-1][1].timestamp())]
    return np.array(edges, dtype=np.int64), np.array([(m - date(1970, 1, 1)).days for m in months], dtype=np.int64)


@dataclass
class _Customers:
    ids: np.ndarray
    created: np.ndarray  # epoch seconds
    member: np.ndarray  # bool
    member_since: np.ndarray  # epoch seconds (meaningless where not member)
    activity: np.ndarray  # mean-1 purchase propensity
    city: np.ndarray


def _gen_customers(w: _World, rng: np.random.Generator, first_id: int, n: int, emit: Emit) -> _Customers:
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
    age_days = (np.clip(rng.normal(41, 14, n), 18.05, 80.9) * 365.25).astype(np.int64)
    birth_day = now // 86400 - age_days
    created = now - (SPAN_SECONDS * rng.random(n) ** 1.3).astype(np.int64) - 1  # growing: more recent sign-ups
    source_i = rng.choice(len(ref.SOURCES), size=n, p=ref.SOURCE_WEIGHTS)
    metadata = _nones(n)
    shop = np.flatnonzero(source_i == 0)
    metadata[shop] = [f'{{"shopify_customer_id": {7_000_000_000 + i}}}' for i in ids[shop].tolist()]
    mc = np.flatnonzero(source_i == 1)
    metadata[mc] = '{"list": "newsletter", "double_opt_in": true}'
    stores = ["Store " + name for name in w.city_name.tolist()]
    store_i = np.full(n, -1, dtype=np.int64)  # index into stores; len(stores): "Webshop"; -1: none
    in_store = (source_i == 3) | (rng.random(n) < 0.25)
    store_i[in_store] = city[in_store]
    web = ~in_store & (rng.random(n) < 0.5)
    store_i[web] = len(stores)
    member = rng.random(n) < 0.7
    at_signup = rng.random(n) < 0.5
    member_since = np.where(at_signup, created, created + ((now - created) * rng.random(n)).astype(np.int64))
    updated = np.maximum(created, np.where(member, member_since, created))
    updated = updated + ((now - updated) * rng.random(n) ** 3).astype(np.int64)
    country_codes = [c.code for c in ref.COUNTRIES]
    emit("customers",
         ["id", "source_id", "first_name", "last_name", "email", "phone", "birthdate", "gender", "postal_code",
          "city", "state", "country", "created_at", "source", "source_metadata", "store", "company",
          "loyalty_member", "member_since", "updated_at"],
         [ids, _codes("C", ids, w.id_width), _strings(first), _strings(last), _strings(email), _strings(phone),
          Dates(birth_day), _pick(["female", "male", "other", None], g), _strings(postal),
          _pick(w.city_name.tolist(), city), _pick(w.city_state.tolist(), city), _pick(country_codes, country),
          Instants(created), _pick(ref.SOURCES, source_i), _strings(metadata),
          _pick([*stores, "Webshop", None], np.where(store_i < 0, len(stores) + 1, store_i)), _strings(company),
          member, Instants(member_since, valid=member), Instants(updated)])
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
_ATTR_NAMES = sorted(a[0] for a in ATTRIBUTE_DEFINITIONS)
_ATTR_CODE = {name: i for i, name in enumerate(_ATTR_NAMES)}
_VALUE_COLUMNS = ["value_string", "value_number", "value_boolean", "value_date", "value_datetime"]
_VALUE_TYPES = {"value_string": pa.string(), "value_number": pa.float64(), "value_boolean": pa.bool_(),
                "value_date": pa.date32(), "value_datetime": pa.int64()}


def _gen_attributes(w: _World, rng: np.random.Generator, c: _Customers, emit: Emit) -> int:
    n = len(c.ids)
    parts: list[tuple[np.ndarray, str, np.ndarray, dict[str, Any]]] = []

    def add(mask: np.ndarray, name: str, position: np.ndarray | None = None, **values: Any) -> None:
        cid = c.ids[mask]  # a boolean mask or customer positions
        pos = np.zeros(len(cid), dtype=np.int64) if position is None else position
        parts.append((cid, name, pos, values))

    has = rng.random(n) < 0.85
    add(has, "occupation", value_string=_pick(ref.OCCUPATIONS, rng.integers(0, 15, n)[has]))
    has = rng.random(n) < 0.7
    add(has, "married", value_boolean=(rng.random(n) < 0.55)[has])
    has = c.member & (rng.random(n) < 0.6)
    add(has, "club_level", value_string=_pick(ref.CLUB_LEVELS, rng.choice(3, n, p=[0.7, 0.22, 0.08])[has]))
    has = rng.random(n) < 0.6
    add(has, "children", value_number=rng.choice(5, n, p=[0.4, 0.22, 0.25, 0.09, 0.04]).astype(float)[has])
    k = np.where(rng.random(n) < 0.75, rng.integers(1, 5, n), 0)
    order = np.argsort(rng.random((n, len(ref.INTERESTS))), axis=1)
    who = np.repeat(np.arange(n), k)
    pos = _group_rank(who)
    add(who, "interests", position=pos, value_string=_pick(ref.INTERESTS, order[who, pos]))
    has = rng.random(n) < 0.3
    survey = c.created + ((w.now_s - c.created) * rng.random(n)).astype(np.int64)
    survey_ms = rng.integers(0, 1000, n)[has]
    add(has, "last_survey_at", value_datetime=survey[has] * 1000 + survey_ms)

    cid = np.concatenate([p[0] for p in parts])
    code = np.concatenate([np.full(len(p[0]), _ATTR_CODE[p[1]]) for p in parts])
    pos = np.concatenate([p[2] for p in parts])
    s = np.lexsort((pos, code, cid))  # primary key order
    values: list[Column] = []
    for col in _VALUE_COLUMNS:
        stacked = _stack([(p[3].get(col), len(p[0])) for p in parts], _VALUE_TYPES[col]).take(pa.array(s))
        if col == "value_datetime":
            millis = stacked.fill_null(0).to_numpy()
            valid = stacked.is_valid().to_numpy(zero_copy_only=False)
            values.append(Instants(millis // 1000, millis % 1000, valid=valid))
        else:
            values.append(stacked)
    emit("customer_attribute_values", ["customer_id", "name", "position", *_VALUE_COLUMNS],
         [cid[s], _pick(_ATTR_NAMES, code[s]), pos[s], *values])
    return len(cid)


@dataclass
class _Orders:
    ids: np.ndarray
    customer: np.ndarray  # customer position in the chunk
    created: np.ndarray
    status: np.ndarray
    total: np.ndarray

    def counted(self) -> np.ndarray:
        """Which orders count (``COUNTED_ORDER_STATUSES``: paid and fulfilled), as a mask."""
        return (self.status == _STATUSES.index("paid")) | (self.status == _STATUSES.index("fulfilled"))


_STATUSES = ("created", "paid", "fulfilled", "cancelled", "refunded")


def _gen_orders(w: _World, rng: np.random.Generator, c: _Customers, emit: Emit) -> tuple[_Orders, int]:
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
    customer = c.ids[cust_idx]
    emit("orders", ["id", "order_id", "customer_id", "status", "created_at", "total_minor", "content_hash"],
         [ids, _codes("O", ids, 10), customer, _pick(_STATUSES, status_i), Instants(created), total,
          demo_content_hash(1, ids)])
    item_ids = np.arange(w.next_item, w.next_item + q, dtype=np.int64)
    w.next_item += q
    emit("order_items",
         ["id", "order_pk", "customer_id", "ordered_at", "status", "sku", "name", "category", "brand", "quantity",
          "unit_price_minor", "amount_minor"],
         [item_ids, ids[order_of_item], customer[order_of_item], Instants(created[order_of_item]),
          _pick(_STATUSES, status_i[order_of_item]), _pick(cat.sku.tolist(), product),
          _pick(cat.name.tolist(), product), _pick(cat.category.tolist(), product),
          _pick(cat.brand.tolist(), product), qty, unit, amount])
    return _Orders(ids=ids, customer=cust_idx, created=created, status=status_i, total=total), q


_EVENT_NAMES = [e[0] for e in ref.EVENT_KINDS]
_EVENT_P = np.array([e[1] for e in ref.EVENT_KINDS]) / sum(e[1] for e in ref.EVENT_KINDS)
_PROPERTY_KEYS = sorted({key for e in ref.EVENT_KINDS for key in e[3]})
_KEY_CODE = {key: i for i, key in enumerate(_PROPERTY_KEYS)}


def _gen_events(w: _World, rng: np.random.Generator, c: _Customers, emit: Emit) -> tuple[int, int]:
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
    # properties: an index into w.props_text, or past its end into this chunk's own texts (cart values).
    props = np.empty(m, dtype=np.int64)
    extra: list[str] = []
    # Typed declared properties: (event positions, key, string values as indexes into w.values_text, numbers)
    epv: list[tuple[np.ndarray, str, np.ndarray | None, np.ndarray | None]] = []
    vat = w.values_at
    for ki, (name, _w, _label, _declared) in enumerate(ref.EVENT_KINDS):
        idx = np.flatnonzero(kind == ki)
        r = len(idx)
        if not r:
            continue
        at0 = w.props_at.get(name, 0)
        if name in _PRODUCT_EVENTS:
            p = rng.choice(len(cat.sku), r, p=cat.popularity)
            price = cat.price_minor[p] / 100
            if name == "product_viewed":
                props[idx] = at0 + p
                epv += [(idx, "category", vat["category"] + p, None), (idx, "price", None, price)]
            elif name == "added_to_cart":
                props[idx] = at0 + p
                epv += [(idx, "sku", vat["sku"] + p, None), (idx, "price", None, price)]
            elif name == "wishlist_added":
                props[idx] = at0 + p
                epv.append((idx, "category", vat["category"] + p, None))
            else:
                rating = rng.choice(5, r, p=[0.05, 0.05, 0.12, 0.33, 0.45]) + 1
                props[idx] = at0 + (rating - 1) * len(cat.sku) + p
                epv.append((idx, "rating", None, rating.astype(float)))
        elif name == "checkout_started":
            value = np.round(rng.lognormal(4.3, 0.6, r), 2)
            props[idx] = len(w.props_text) + len(extra) + np.arange(r)
            extra.extend(f'{{"cart_value": {v!r}}}' for v in value.tolist())
            epv.append((idx, "cart_value", None, value))
        elif name == "store_visit":  # the store of the customer's city
            city = c.city[cust_idx[idx]]
            props[idx] = at0 + city
            epv.append((idx, "store", vat["store"] + city, None))
        else:
            key, vocab = _VOCAB_EVENTS[name]
            vi = rng.integers(0, len(vocab), r)
            props[idx] = at0 + vi
            epv.append((idx, key, vat[name] + vi, None))
    texts = pa.concat_arrays([w.props_text, _strings(extra)]) if extra else w.props_text
    emit("events", ["id", "event_id", "customer_id", "name", "occurred_at", "properties", "content_hash"],
         [ids, _codes("E", ids, 11), c.ids[cust_idx], _pick(_EVENT_NAMES, kind), Instants(at, ms),
          pa.DictionaryArray.from_arrays(props.astype(np.int32), texts), demo_content_hash(2, ids)])
    if not epv:
        return m, 0
    ev = np.concatenate([e[0] for e in epv])
    keys = np.concatenate([np.full(len(e[0]), _KEY_CODE[e[1]]) for e in epv])
    s = np.lexsort((keys, ev))
    take = pa.array(s)
    vi = np.concatenate([e[2] if e[2] is not None else np.full(len(e[0]), -1) for e in epv])[s]
    vs = pa.DictionaryArray.from_arrays(pa.array(vi.astype(np.int32), mask=vi < 0), w.values_text)
    vn = _stack([(e[3], len(e[0])) for e in epv], pa.float64()).take(take)
    q = len(ev)
    emit("event_property_values",
         ["event_pk", "key", "position", "value_string", "value_number"],
         [ids[ev[s]], _pick(_PROPERTY_KEYS, keys[s]), np.zeros(q, dtype=np.int64), vs, vn])
    return m, q


_LOYALTY_STRINGS = ["type", "program", "entry", "tier", "reward", "referred", "gift_card", "operation", "reason"]
_LOYALTY_INTEGERS = ["points", "amount_minor"]
_LOYALTY_COLUMNS = ["customer_id", "type", "program", "entry", "points", "tier", "reward", "referred", "gift_card",
                    "operation", "amount_minor", "reason", "occurred_at"]


@dataclass
class _Journal:
    """The chunk's loyalty rows in id order, as the summaries need them."""

    customer: np.ndarray  # customer position in the chunk
    kind: np.ndarray  # index into _LOYALTY_KINDS
    points: np.ndarray  # 0 where the row has none
    amount: np.ndarray  # minor units, 0 where the row has none
    tier: np.ndarray  # index into TIERS, -1 where the row has none
    in_program: np.ndarray  # the row names a program


_LOYALTY_KINDS = ("points", "tier", "redemption", "referral", "gift_card")
_TIER_NAMES = [t for t, _ in TIERS]


def _gen_loyalty(w: _World, rng: np.random.Generator, c: _Customers, o: _Orders,
                 emit: Emit) -> tuple[int, _Journal]:
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
    earn = np.flatnonzero(o.counted() & member[o.customer] & (o.created >= c.member_since[o.customer]))
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
    reward = _pick(ref.REWARDS, rng.integers(0, len(ref.REWARDS), len(red_cust)))
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
    part(ref_cust, ref_at, type="referral", program=PROGRAM, referred=_codes("C", referred, w.id_width))
    # Gift cards: issued, then partly redeemed.
    gc = np.flatnonzero(rng.random(n) < 0.04)
    g = len(gc)
    codes = _codes(f"GC-{w.seed % 100:02d}", np.arange(w.next_gift_card, w.next_gift_card + g), 8)
    w.next_gift_card += g
    value = rng.choice([2500, 5000, 10000, 20000], g)
    issued = c.created[gc] + ((now - c.created[gc]) * rng.random(g)).astype(np.int64)
    part(gc, issued, type="gift_card", gift_card=codes, operation="issue", amount_minor=value, reason="purchased")
    r1 = rng.random(g) < 0.6
    first_use = (value * rng.uniform(0.3, 1.0, g)).astype(np.int64)
    at1 = issued + ((now - issued) * rng.random(g) * 0.5).astype(np.int64) + 60
    part(gc[r1], at1[r1], type="gift_card", gift_card=codes.filter(pa.array(r1)), operation="redeem",
         amount_minor=-first_use[r1], reason="in-store purchase")
    r2 = r1 & (rng.random(g) < 0.3) & (first_use < value)
    at2 = at1 + ((now - at1) * rng.random(g)).astype(np.int64) + 60
    part(gc[r2], np.minimum(at2[r2], now), type="gift_card", gift_card=codes.filter(pa.array(r2)),
         operation="redeem", amount_minor=-(value - first_use)[r2], reason="online purchase")

    cust = np.concatenate([p["customer"] for p in parts])
    at = np.concatenate([p["at"] for p in parts])
    seq = np.arange(len(cust))
    s = np.lexsort((seq, at, cust))
    take = pa.array(s)
    m = len(cust)
    ids = np.arange(w.next_loyalty, w.next_loyalty + m, dtype=np.int64)
    w.next_loyalty += m
    data: list[Column] = [ids, _codes("L", ids, 11)]
    for col in _LOYALTY_COLUMNS:
        if col == "customer_id":
            data.append(c.ids[cust[s]])
        elif col == "occurred_at":
            data.append(Instants(at[s]))
        else:
            type_ = pa.string() if col in _LOYALTY_STRINGS else pa.int64()
            data.append(_stack([(p.get(col), len(p["customer"])) for p in parts], type_).take(take))
    data.append(demo_content_hash(3, ids))
    emit("loyalty_transactions", ["id", "transaction_id", *_LOYALTY_COLUMNS, "content_hash"], data)

    def per_row(value: Any, size: int, missing: int) -> np.ndarray:
        return np.asarray(value, dtype=np.int64) if isinstance(value, np.ndarray) else np.full(
            size, missing if value is None else value, dtype=np.int64)

    def column(value_of: Callable[[dict[str, Any], int], np.ndarray]) -> np.ndarray:
        return np.concatenate([value_of(p, len(p["customer"])) for p in parts])[s]

    journal = _Journal(
        customer=cust[s],
        kind=column(lambda p, k: np.full(k, _LOYALTY_KINDS.index(p["type"]))),
        points=column(lambda p, k: per_row(p.get("points"), k, 0)),
        amount=column(lambda p, k: per_row(p.get("amount_minor"), k, 0)),
        tier=column(lambda p, k: per_row(_TIER_NAMES.index(p["tier"]) if "tier" in p else None, k, -1)),
        in_program=column(lambda p, k: np.full(k, p.get("program") is not None)),
    )
    return m, journal


def _gen_months(w: _World, c: _Customers, o: _Orders, emit: Emit) -> None:
    """The chunk's ``customer_months``, from the generated orders: per customer and calendar month with a counted
    order, how many and their revenue; what :func:`cohorta.membership.monthly.rebuild` computes (tests/demo compares
    the two), which took 22-30 s after a 1,000,000-customer load. Rows in key order: (customer, month)."""
    assert w.month_edges is not None and w.month_days is not None
    counted = o.counted()
    created = o.created[counted]
    month = np.searchsorted(w.month_edges, created, side="right") - 1
    assert len(month) == 0 or (month.min() >= 0 and month.max() < len(w.month_days)), "an order outside the months"
    key = o.customer[counted].astype(np.int64) * len(w.month_days) + month
    keys, row = np.unique(key, return_inverse=True)
    revenue = np.zeros(len(keys), dtype=np.int64)
    np.add.at(revenue, row, o.total[counted])
    emit("customer_months", ["customer_id", "month", "orders", "revenue_minor"],
         [c.ids[keys // len(w.month_days)], Dates(w.month_days[keys % len(w.month_days)]),
          np.bincount(row, minlength=len(keys)).astype(np.int64), revenue])


def _gen_summaries(c: _Customers, o: _Orders, j: _Journal, emit: Emit) -> None:
    """The chunk's ``customer_summaries`` and ``customer_program_summaries``, from the generated rows.

    The definitions are :func:`cohorta.customers.summary.rebuild_summaries`'s (tests/demo compares the two on a
    load): rebuilding them in SQL after the load took 42.5 s of a 1,000,000-customer load on SQLite (125 s under
    load); here they cost the writer two more small tables per chunk. Rows arrive sorted by customer and time, and
    ids follow that order, so "latest, ties by the highest id" is the customer's last row.
    """
    n = len(c.ids)

    def total(at: np.ndarray, values: np.ndarray) -> np.ndarray:
        sums = np.zeros(n, dtype=np.int64)
        np.add.at(sums, at, values)
        return sums

    counted = np.flatnonzero(o.counted())
    who = o.customer[counted]
    order_count = np.bincount(who, minlength=n)
    spent = total(who, o.total[counted])
    buyers = order_count > 0
    first_row = np.full(n, -1, dtype=np.int64)
    last_row = np.full(n, -1, dtype=np.int64)
    first_row[who[::-1]] = counted[::-1]  # the last assignment wins: each customer's first counted order
    last_row[who] = counted
    average = np.where(buyers, (2 * spent + order_count) // np.maximum(2 * order_count, 1), 0)

    def of_order(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """values[rows], 0 where a customer has no counted order (row -1; the chunk may have no order at all)."""
        return values[np.maximum(rows, 0)] if len(values) else np.zeros(n, dtype=np.int64)

    kind = j.kind
    points_rows = kind == _LOYALTY_KINDS.index("points")
    gift_card_rows = kind == _LOYALTY_KINDS.index("gift_card")
    emit("customer_summaries",
         ["customer_id", "order_count", "total_spent_minor", "average_order_value_minor", "first_order_at",
          "last_order_at", "last_order_amount_minor", "points_balance", "redemption_count", "referral_count",
          "gift_card_balance_minor"],
         [c.ids, order_count.astype(np.int64), spent, pa.array(average, mask=~buyers),
          Instants(of_order(o.created, first_row), valid=buyers), Instants(of_order(o.created, last_row), valid=buyers),
          pa.array(of_order(o.total, last_row), mask=~buyers),
          total(j.customer[points_rows], j.points[points_rows]),
          np.bincount(j.customer[kind == _LOYALTY_KINDS.index("redemption")], minlength=n).astype(np.int64),
          np.bincount(j.customer[kind == _LOYALTY_KINDS.index("referral")], minlength=n).astype(np.int64),
          total(j.customer[gift_card_rows], j.amount[gift_card_rows])])  # fmt: skip
    # One program in the demo: a row for each customer with a points entry or a tier change in it.
    tier_changes = kind == _LOYALTY_KINDS.index("tier")
    program_rows = j.in_program & (points_rows | tier_changes)
    in_program = np.zeros(n, dtype=bool)
    in_program[j.customer[program_rows]] = True
    tier_rows = np.flatnonzero(tier_changes)
    tier = np.full(n, -1, dtype=np.int64)
    tier[j.customer[tier_rows]] = j.tier[tier_rows]  # the last assignment wins: each customer's latest change
    program_points = program_rows & points_rows
    points = total(j.customer[program_points], j.points[program_points])
    members = np.flatnonzero(in_program)
    emit("customer_program_summaries", ["customer_id", "program", "points_balance", "tier"],
         [c.ids[members], _pick([PROGRAM], np.zeros(len(members))), points[members],
          _pick([*_TIER_NAMES, None], np.where(tier[members] < 0, len(_TIER_NAMES), tier[members]))])


# --------------------------------------------------------------------------------------------------------------------
# Writers


class _AdbcSink:
    """ADBC bulk ingest into existing tables, one transaction per chunk."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.cursor = connection.cursor()

    def write(self, table: str, data: pa.Table) -> None:
        if data.num_rows:
            self.cursor.adbc_ingest(table, data, mode="append")

    def commit(self) -> None:
        self.connection.commit()

    def close(self) -> None:
        try:
            self.connection.rollback()
        finally:
            self.cursor.close()
            self.connection.close()


class _ConnectionSink:
    """Plain executemany through the SQLAlchemy connection (an in-memory SQLite database: no second connection)."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection

    def write(self, table: str, data: pa.Table) -> None:
        if not data.num_rows:
            return
        quote = self.connection.dialect.identifier_preparer.quote
        columns = ", ".join(quote(name) for name in data.column_names)
        rows = list(zip(*(column.to_pylist() for column in data.columns), strict=True))
        self.connection.exec_driver_sql(
            f"INSERT INTO {quote(table)} ({columns}) VALUES ({', '.join('?' * data.num_columns)})", rows
        )

    def commit(self) -> None:
        self.connection.commit()

    def close(self) -> None:
        self.connection.rollback()


def _sqlite_file(engine: sa.Engine) -> str | None:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:") or engine.url.query.get("mode"):
        return None
    return os.path.abspath(database)


def _open_sqlite_adbc(path: str) -> _AdbcSink:
    """The ADBC SQLite writer. Only ever opened in a child process (see :func:`_write_in_child`)."""
    import adbc_driver_sqlite.dbapi

    adbc = adbc_driver_sqlite.dbapi.connect(path)
    # Pragmas cannot change inside the transaction the driver keeps open while autocommit is off.
    adbc.adbc_connection.set_autocommit(True)
    with adbc.cursor() as cursor:
        for pragma in ("synchronous=OFF", "foreign_keys=OFF", "cache_size=-262144", "busy_timeout=10000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone() == (0,), "the writer connection did not take synchronous=OFF"
    adbc.adbc_connection.set_autocommit(False)
    return _AdbcSink(adbc)


def _open_sink(engine: sa.Engine, conn: sa.Connection) -> _AdbcSink | _ConnectionSink:
    if conn.dialect.name == "sqlite":
        return _ConnectionSink(conn)
    import adbc_driver_postgresql.dbapi

    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    adbc = adbc_driver_postgresql.dbapi.connect(url)
    with adbc.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")
    adbc.commit()
    return _AdbcSink(adbc)


# --------------------------------------------------------------------------------------------------------------------
# Schema management


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


def _foreign_keys(connection: sa.Connection) -> list[tuple[str, str, str]]:
    """PostgreSQL: (table, constraint, definition) of the loaded tables' foreign keys, as the database has them."""
    rows = connection.exec_driver_sql(
        "SELECT t.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k "
        "JOIN pg_class t ON t.oid = k.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE k.contype = 'f' AND n.nspname = current_schema() AND t.relname = ANY(%(tables)s) "
        "ORDER BY t.relname, k.conname",
        {"tables": list(TABLES)},
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def _column_types(connection: sa.Connection) -> dict[tuple[str, str], str]:
    if connection.dialect.name != "postgresql":
        return {}
    rows = connection.exec_driver_sql(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ANY(%(tables)s)", {"tables": list(TABLES)}
    ).all()
    return {(r[0], r[1]): r[2] for r in rows}


def _leave_wal(connection: sa.Connection) -> list[str]:
    """SQLite: switch a WAL database to a rollback journal for the load; the statements that switch it back.

    Pages appended past the file's end are not journaled, where the WAL writes every page twice (the data phase
    went 22.1 -> 17.8 s at 100,000 customers); a crash still rolls the open chunk back. Leaving WAL needs the only
    open connection to the file: when another one is open (a running server, say), the load keeps the WAL.
    """
    if connection.exec_driver_sql("PRAGMA journal_mode").scalar() != "wal":
        return []
    timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    connection.exec_driver_sql("PRAGMA busy_timeout=0")
    try:
        mode = connection.exec_driver_sql("PRAGMA journal_mode=DELETE").scalar()
    except sa.exc.OperationalError:  # "database is locked": another connection has the file open
        mode = "wal"
    finally:
        connection.exec_driver_sql(f"PRAGMA busy_timeout={timeout}")
    connection.commit()
    return [] if mode == "wal" else ["PRAGMA journal_mode=WAL"]


def _quote(connection: sa.Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


# --------------------------------------------------------------------------------------------------------------------
# Entry point


@dataclass
class _Chunk:
    customers: int
    tables: list[tuple[str, pa.Table]]
    stats: DemoStats


def _chunks(world: _World, seed: int, customers: int, arrow: _Arrow) -> Iterator[_Chunk]:
    for start in range(0, customers, CHUNK):
        n = min(CHUNK, customers - start)
        rng = np.random.default_rng([seed, start])
        tables: list[tuple[str, pa.Table]] = []

        def emit(table: str, columns: list[str], data: list[Column]) -> None:
            tables.append((table, arrow.table(table, columns, data)))  # noqa: B023 (used before the next chunk)

        stats = DemoStats(customers=n)
        c = _gen_customers(world, rng, start + 1, n, emit)
        stats.attribute_values = _gen_attributes(world, rng, c, emit)
        orders, stats.order_items = _gen_orders(world, rng, c, emit)
        stats.orders = len(orders.ids)
        stats.events, stats.event_property_values = _gen_events(world, rng, c, emit)
        stats.loyalty_transactions, journal = _gen_loyalty(world, rng, c, orders, emit)
        _gen_summaries(c, orders, journal, emit)
        if world.month_edges is not None:
            _gen_months(world, c, orders, emit)
        yield _Chunk(n, tables, stats)


def _ahead(chunks: Iterator[_Chunk], stop: threading.Event) -> Generator[_Chunk, None, None]:
    """The chunks, generated in a background thread one chunk ahead of the consumer."""
    box: queue.Queue[_Chunk | BaseException | None] = queue.Queue(maxsize=1)

    def put(item: _Chunk | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(None)
        except BaseException as exc:  # handed to the consumer
            put(exc)

    thread = threading.Thread(target=produce, name="demo-generator", daemon=True)
    thread.start()
    try:
        while (item := box.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()

_STAT_FIELDS = ("customers", "attribute_values", "orders", "order_items", "events", "event_property_values",
                "loyalty_transactions")


def _write_data(sink: _AdbcSink | _ConnectionSink, world: _World, seed: int, customers: int, arrow: _Arrow,
                stats: DemoStats, report: Progress) -> None:
    """The definitions, then every chunk of generated rows (one transaction each), adding up ``stats``."""
    now_s = world.now_s
    sink.write("attribute_definitions", arrow.table(
        "attribute_definitions", ["name", "type", "label", "description", "created_at", "updated_at"],
        [_strings([a[i] for a in ATTRIBUTE_DEFINITIONS]) for i in range(4)]
        + [Instants(np.full(len(ATTRIBUTE_DEFINITIONS), now_s))] * 2))
    sink.write("event_definitions", arrow.table(
        "event_definitions", ["name", "label", "description", "properties", "created_at", "updated_at"],
        [_strings([e[0] for e in ref.EVENT_KINDS]), _strings([e[2] for e in ref.EVENT_KINDS]),
         _strings([f"Demo event: {e[2].lower()}." for e in ref.EVENT_KINDS]),
         _strings([json.dumps(e[3]) for e in ref.EVENT_KINDS])]
        + [Instants(np.full(len(ref.EVENT_KINDS), now_s))] * 2))
    sink.commit()
    report("data", 0, customers)
    with contextlib.closing(_ahead(_chunks(world, seed, customers, arrow), threading.Event())) as chunks:
        for chunk in chunks:
            for table, data in chunk.tables:
                sink.write(table, data)
            sink.commit()
            for name in _STAT_FIELDS:
                setattr(stats, name, getattr(stats, name) + getattr(chunk.stats, name))
            report("data", stats.customers, customers)


def _child_writer(path: str, customers: int, seed: int, now_s: int, month_zone: str | None, out: Any) -> None:
    """Child process: generate and write through ADBC, reporting each chunk's stats (or the error) on ``out``."""
    try:
        sink = _open_sqlite_adbc(path)
        try:
            stats = DemoStats()
            world = _make_world(customers, seed, now_s, month_zone)
            _write_data(sink, world, seed, customers, _Arrow("sqlite", {}), stats,
                        lambda stage, done, total: out.put(("progress", done)))
        finally:
            sink.close()
        out.put(("done", stats))
    except BaseException as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def _write_in_child(path: str, customers: int, seed: int, now_s: int, month_zone: str | None, stats: DemoStats,
                   report: Progress) -> None:
    """Run the ADBC SQLite writer in a child process.

    The ADBC driver carries its own copy of the SQLite library. Two copies in one process do not share SQLite's
    per-process table of POSIX locks, so closing the ADBC connection would drop the locks held by the application's
    sqlite3 connections to the same file (and later connections fail with "disk I/O error"). A separate process keeps
    the locking sound.
    """
    import multiprocessing

    # fork where there is one: spawn would re-run the caller's __main__ module, which plain scripts do not guard.
    methods = multiprocessing.get_all_start_methods()
    context: Any = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    out = context.Queue()
    child = context.Process(
        target=_child_writer, args=(path, customers, seed, now_s, month_zone, out), name="demo-writer"
    )
    child.start()
    try:
        while True:
            try:
                kind, value = out.get(timeout=1.0)
            except queue.Empty:
                if not child.is_alive():
                    raise RuntimeError(f"the demo writer process died (exit code {child.exitcode})") from None
                continue
            if kind == "progress":
                report("data", value, customers)
            elif kind == "done":
                for name in _STAT_FIELDS:
                    setattr(stats, name, getattr(value, name))
                break
            else:
                raise RuntimeError(f"the demo writer process failed: {value}")
        child.join()
    finally:
        if child.is_alive():
            child.terminate()
            child.join()


def load_demo(
    engine: sa.Engine,
    *,
    customers: int = 10_000,
    seed: int = 7,
    now: datetime | None = None,
    progress: Progress | None = None,
    month_zone: str | None = None,
) -> DemoStats:
    """Generate the demo data set and write it into an empty, migrated database.

    ``now`` (timezone-aware; default: the current time) is the end of the three years of history.
    ``progress(stage, done, total)`` is called with stage "data" (done = customers written) and "indexes".
    With ``month_zone``, the analytics' month figures (``cohorta.membership.monthly``) are written too, in that zone,
    so the database needs no rebuild of them.
    Raises Conflict when the database already has customers. Each chunk of ``CHUNK`` customers is
    committed on its own: a failed load leaves a partial data set (secondary indexes and, on PostgreSQL, foreign
    keys are restored regardless).
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
    now_s = int(now.timestamp())
    world = _make_world(customers, seed, now_s, month_zone)

    with engine.connect() as conn:
        if conn.exec_driver_sql("SELECT 1 FROM customers LIMIT 1").first() is not None:
            raise Conflict("The database already has customers: the demo data set loads into an empty database.")
        sqlite = conn.dialect.name == "sqlite"
        arrow = _Arrow(conn.dialect.name, _column_types(conn))
        indexes = _secondary_indexes(conn)
        foreign_keys = [] if sqlite else _foreign_keys(conn)
        conn.rollback()
        restore: list[str] = []
        if sqlite:
            # For the index builds on this connection; the writer connection sets its own. Reading the tables
            # through a memory map made the index builds ~20% faster here. At 1,000,000 customers the big sorts
            # spill past the cache into temporary files (the connection's temp_store, see cohorta.db), with two
            # sorter worker threads (all indexes: 194 s instead of 229 s; at 100,000 customers, all in memory, they
            # are about 10% slower).
            for pragma, value in (("synchronous", "OFF"), ("cache_size", "-524288"), ("mmap_size", str(1 << 34)),
                                  ("threads", "2")):
                old = conn.exec_driver_sql(f"PRAGMA {pragma}").scalar()
                restore.append(f"PRAGMA {pragma}={old}")
                conn.exec_driver_sql(f"PRAGMA {pragma}={value}")
            conn.commit()
            restore += _leave_wal(conn)
        else:
            # Session settings for the index builds and the foreign key validations (reset below).
            restore = ["RESET maintenance_work_mem", "RESET work_mem"]
            conn.exec_driver_sql("SET maintenance_work_mem = '512MB'")
            conn.exec_driver_sql("SET work_mem = '256MB'")
            conn.commit()
        path = _sqlite_file(engine) if sqlite else None
        sink = None if path is not None else _open_sink(engine, conn)
        try:
            for table, name, _definition in foreign_keys:
                conn.exec_driver_sql(f"ALTER TABLE {_quote(conn, table)} DROP CONSTRAINT {_quote(conn, name)}")
            for name, _sql in indexes:
                conn.exec_driver_sql(f"DROP INDEX {_quote(conn, name)}")
            conn.commit()
            t0 = time.perf_counter()
            if sink is None:
                assert path is not None
                _write_in_child(path, customers, seed, now_s, month_zone, stats, report)
            else:
                _write_data(sink, world, seed, customers, arrow, stats, report)
            stats.timings["data"] = time.perf_counter() - t0
        finally:
            if sink is not None:
                sink.close()
            conn.rollback()
            t0 = time.perf_counter()
            steps = len(indexes) + len(foreign_keys)
            report("indexes", 0, steps)
            for i, (_name, sql) in enumerate(indexes, 1):
                conn.exec_driver_sql(sql)
                conn.commit()
                report("indexes", i, steps)
            for i, (table, name, definition) in enumerate(foreign_keys, len(indexes) + 1):
                conn.exec_driver_sql(
                    f"ALTER TABLE {_quote(conn, table)} ADD CONSTRAINT {_quote(conn, name)} {definition}"
                )
                conn.commit()
                report("indexes", i, steps)
            stats.timings["indexes"] = time.perf_counter() - t0
        if not sqlite:
            for table in ("customers", "orders", "order_items", "events", "loyalty_transactions"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
                )
        conn.commit()
        if month_zone is not None:
            with Session(bind=conn) as session:
                monthly.record_zone(session, month_zone)
                session.commit()
        if not sqlite:
            conn.exec_driver_sql("ANALYZE")
        for statement in restore:
            conn.exec_driver_sql(statement)
        conn.commit()
    stats.seconds = time.perf_counter() - started
    return stats

