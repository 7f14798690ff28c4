"""Exports of a segment's members and their activity, streamed in bounded memory as CSV, JSON Lines or Parquet.

Rows come from the database in batches through a streaming cursor and are written batch by batch; nothing holds the
whole export. A CSV cell a spreadsheet would execute (starting with = + - @, tab or carriage return) is neutralised
with a leading apostrophe.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.orm import Session

from cohorta.access.service import Principal
from cohorta.clock import Clock
from cohorta.config import Settings
from cohorta.customers.models import Event, LoyaltyTransaction, Order, OrderItem, ValueType
from cohorta.customers.service import attribute_definitions
from cohorta.db import SQLITE_CACHE_SIZE
from cohorta.errors import FieldError, InvalidInput
from cohorta.evaluation import store
from cohorta.money import from_minor
from cohorta.segments.models import SegmentMember
from cohorta.segments.service import get_segment, member_table

Format = Literal["csv", "jsonl", "parquet"]
Activity = Literal["orders", "events", "points"]
BATCH_ROWS = 10_000
EXPORT_CACHE_KIB = 8192
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe; other values pass unchanged."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value


Kind = Literal["text", "int", "float", "bool", "instant", "date", "money", "json"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind


@dataclass
class Export:
    """An export ready to stream: its columns, its row count, and a function giving Arrow record batches."""

    columns: list[Column]
    total: int
    batches: Callable[[], Iterator[pa.RecordBatch]]
    exponent: int

    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, _arrow_type(c.kind, self.exponent)) for c in self.columns])


TIMESTAMP = pa.timestamp("us", tz="UTC")


def _arrow_type(kind: Kind, exponent: int) -> pa.DataType:
    return {
        "text": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "instant": TIMESTAMP,
        "date": pa.date32(), "money": pa.decimal128(18, exponent), "json": pa.string(),
    }[kind]  # fmt: skip


def _column_array(kind: Kind, values: Sequence[Any], exponent: int) -> pa.Array:
    """One column of a batch, from the driver's raw values, converted in bulk by Arrow where it can be: SQLite gives
    instants as UTC text and booleans as 0/1, PostgreSQL gives datetimes and booleans."""
    sample = next((v for v in values if v is not None), None)
    if kind == "instant":
        if isinstance(sample, str):
            return pc.assume_timezone(pa.array(values, pa.string()).cast(pa.timestamp("us")), "UTC")
        return pa.array(values, TIMESTAMP)
    if kind == "date":
        if isinstance(sample, str):
            return pa.array(values, pa.string()).cast(pa.date32())
        return pa.array(values, pa.date32())
    if kind == "bool":
        return pa.array(values).cast(pa.bool_()) if sample is not None else pa.nulls(len(values), pa.bool_())
    if kind == "money":  # integer minor units, exactly: Decimal, never float
        return pa.array([from_minor(v, exponent) for v in values], pa.decimal128(18, exponent))
    if kind == "json":
        return pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v, sort_keys=True)
                         for v in values], pa.string())  # fmt: skip
    if kind == "float":
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array(values, _arrow_type(kind, exponent))


def _member_columns(attribute_types: dict[str, ValueType]) -> list[Column]:
    columns = [
        Column("source_id", "text"), Column("first_name", "text"), Column("last_name", "text"),
        Column("email", "text"), Column("phone", "text"), Column("city", "text"), Column("country", "text"),
        Column("loyalty_member", "bool"), Column("created_at", "instant"), Column("order_count", "int"),
        Column("total_spent", "money"), Column("average_order_value", "money"), Column("last_order_at", "instant"),
        Column("points_balance", "int"), Column("member_since", "instant"),
    ]  # fmt: skip
    kind_of: dict[ValueType, Kind] = {
        ValueType.string: "text", ValueType.string_list: "text", ValueType.number: "float",
        ValueType.boolean: "bool", ValueType.date: "date", ValueType.datetime: "instant",
    }  # fmt: skip
    columns += [Column(f"attributes.{name}", kind_of[kind]) for name, kind in attribute_types.items()]
    return columns


def members_export(
    session: Session,
    settings: Settings,
    clock: Clock,
    principal: Principal,
    segment_id: str,
    *,
    attributes: Sequence[str] = (),
    filter_text: str | None = None,
) -> Export:
    """The segment's members (or those matching ``filter_text``), in customer order, with the chosen attributes.

    Validates everything (segment in sight, attributes, filter) before any row is produced, so a streamed answer
    never fails half-way for a bad request."""
    if len(attributes) > 50:
        raise InvalidInput([FieldError(("attributes",), "at most 50 attributes per export")])
    expr = member_table(session, settings, clock, segment_id, principal, filter_text=filter_text, attributes=attributes)
    definitions = attribute_definitions(session)
    chosen = {name: ValueType(definitions[name].type) for name in dict.fromkeys(attributes)}
    selected = [
        "source_id", "first_name", "last_name", "email", "phone", "city", "country", "loyalty_member", "created_at",
        "order_count", "total_spent_minor", "average_order_value_minor", "last_order_at", "points_balance", "since",
        *(f"attr_{name}" for name in chosen),
    ]  # fmt: skip
    # In the membership index's order (segment, customer): no sort of the whole result before the first row.
    ordered = expr.order_by("customer_id").select(*selected)
    sql = store.to_sql(session, ordered)
    if filter_text is None:  # every member: the stored count is exact, no second pass over the join
        total = get_segment(session, segment_id, principal).member_count
    else:
        total = int(store.run_sql(session, f"SELECT COUNT(*) FROM ({sql}) AS export_rows").scalar_one())
    columns = _member_columns(chosen)
    bind, exponent = session.get_bind(), settings.currency_exponent
    return Export(columns, total, lambda: _stream_sql(bind, sql, columns, exponent), exponent)


def _stream_sql(bind: Any, sql: str, columns: list[Column], exponent: int) -> Iterator[pa.RecordBatch]:
    """Rows of ``sql`` as Arrow record batches, through a server-side cursor on PostgreSQL, on a connection of its
    own. Values are converted column by column, not cell by cell."""
    schema = pa.schema([pa.field(c.name, _arrow_type(c.kind, exponent)) for c in columns])
    with bind.connect() as connection:
        sqlite = bind.dialect.name == "sqlite"
        driver = connection.connection.driver_connection
        if sqlite:  # a long scan read once: a small page cache, and sorts spilled to disk, keep memory bounded
            connection.exec_driver_sql(f"PRAGMA cache_size=-{EXPORT_CACHE_KIB}")
            connection.exec_driver_sql("PRAGMA temp_store=FILE")
            cursor = driver.cursor()
        else:  # a named (server-side) cursor: PostgreSQL sends the rows as they are fetched
            cursor = driver.cursor(name="cohorta_export")
        try:
            # The driver's own cursor: plain tuples, no per-row result objects, for millions of rows.
            cursor.execute(sql.replace("%%", "%") if not sqlite else sql)
            while rows := cursor.fetchmany(BATCH_ROWS):
                values = list(zip(*rows, strict=True))
                arrays = [_column_array(c.kind, values[i], exponent) for i, c in enumerate(columns)]
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
        finally:
            cursor.close()
            if sqlite:
                connection.exec_driver_sql(f"PRAGMA cache_size={SQLITE_CACHE_SIZE}")
                connection.exec_driver_sql("PRAGMA temp_store=MEMORY")


def activity_export(
    session: Session,
    settings: Settings,
    principal: Principal,
    segment_id: str,
    activity: Activity,
    start: dt.datetime,
    end: dt.datetime,
) -> Export:
    """The members' orders (one row per item), events or points ledger entries in [start, end)."""
    get_segment(session, segment_id, principal)
    if end <= start:
        raise InvalidInput([FieldError(("to",), "must be after 'from'")])
    members = sa.select(SegmentMember.customer_id).where(SegmentMember.segment_id == segment_id)
    customers = sa.table("customers", sa.column("id"), sa.column("source_id"))
    query: sa.Select[Any]
    if activity == "orders":
        query = (
            sa.select(
                customers.c.source_id, Order.order_id, Order.created_at, Order.status, Order.total_minor, OrderItem.sku,
                OrderItem.name, OrderItem.category, OrderItem.brand, OrderItem.quantity, OrderItem.unit_price_minor,
                OrderItem.amount_minor,
            )
            .join(customers, customers.c.id == Order.customer_id)
            .outerjoin(OrderItem, OrderItem.order_pk == Order.id)
            .where(Order.customer_id.in_(members), Order.created_at >= start, Order.created_at < end)
            .order_by(Order.created_at, Order.id, OrderItem.id)
        )  # fmt: skip
        columns = [
            Column("source_id", "text"), Column("order_id", "text"), Column("created_at", "instant"),
            Column("status", "text"), Column("order_total", "money"), Column("sku", "text"),
            Column("item_name", "text"), Column("category", "text"), Column("brand", "text"),
            Column("quantity", "int"), Column("unit_price", "money"), Column("amount", "money"),
        ]  # fmt: skip
    elif activity == "events":
        query = (
            sa.select(customers.c.source_id, Event.event_id, Event.name, Event.occurred_at, Event.properties)
            .join(customers, customers.c.id == Event.customer_id)
            .where(Event.customer_id.in_(members), Event.occurred_at >= start, Event.occurred_at < end)
            .order_by(Event.occurred_at, Event.id)
        )
        columns = [
            Column("source_id", "text"), Column("event_id", "text"), Column("name", "text"),
            Column("occurred_at", "instant"), Column("properties", "json"),
        ]  # fmt: skip
    else:
        ledger = LoyaltyTransaction
        query = (
            sa.select(
                customers.c.source_id, ledger.transaction_id, ledger.occurred_at, ledger.program, ledger.entry,
                ledger.points, ledger.reason,
            )
            .join(customers, customers.c.id == ledger.customer_id)
            .where(ledger.customer_id.in_(members), ledger.type == "points", ledger.occurred_at >= start,
                   ledger.occurred_at < end)
            .order_by(ledger.occurred_at, ledger.id)
        )  # fmt: skip
        columns = [
            Column("source_id", "text"), Column("transaction_id", "text"), Column("occurred_at", "instant"),
            Column("program", "text"), Column("entry", "text"), Column("points", "int"), Column("reason", "text"),
        ]  # fmt: skip
    bind = session.get_bind()
    total = int(session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())) or 0)
    compiled = str(query.compile(dialect=bind.dialect, compile_kwargs={"literal_binds": True}))
    exponent = settings.currency_exponent
    return Export(columns, total, lambda: _stream_sql(bind, compiled, columns, exponent), exponent)


# --- writers ---------------------------------------------------------------------------------------------------


class _Sink(io.RawIOBase):
    """A write-only file that hands over what was written since the last ``take`` (writers stream through it)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


_FORMULA = r"^[=+\-@\t\r]"


def _for_text(batch: pa.RecordBatch, *, neutralise: bool) -> pa.RecordBatch:
    """Text formats: instants as ISO 8601 strings in UTC (``...Z``), amounts as decimal strings, and (CSV) text
    cells a spreadsheet would run as formulas prefixed with an apostrophe. All in Arrow compute, column at once."""
    arrays = []
    for column, field in zip(batch.columns, batch.schema, strict=True):
        if pa.types.is_timestamp(field.type):  # Arrow writes "2026-03-01 10:00:00.000000Z": make it ISO 8601
            column = pc.replace_substring(column.cast(pa.string()), " ", "T", max_replacements=1)
        elif pa.types.is_decimal(field.type) or pa.types.is_date(field.type):
            column = column.cast(pa.string())
        elif neutralise and pa.types.is_string(field.type):
            risky = pc.match_substring_regex(column, _FORMULA)
            column = pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def encode(export: Export, fmt: Format, progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """The export as chunks of bytes in the format, one chunk per batch; ``progress`` gets the rows written so far."""
    sink = _Sink()
    written = 0
    writer: Any
    if fmt == "parquet":
        writer = pq.ParquetWriter(sink, export.schema(), compression="zstd")
    elif fmt == "csv":
        writer = None
        header = io.StringIO()
        csv.writer(header).writerow([c.name for c in export.columns])
        sink.write(header.getvalue().encode())
    for batch in export.batches():
        if fmt == "parquet":
            writer.write_batch(batch)
        elif fmt == "csv":
            text = _for_text(batch, neutralise=True)
            options = pcsv.WriteOptions(include_header=False, quoting_style="needed")
            pcsv.write_csv(text, sink, options)
        else:
            names = batch.schema.names
            text = _for_text(batch, neutralise=False)
            lines = (json.dumps(dict(zip(names, row, strict=True)), ensure_ascii=False)
                     for row in zip(*(column.to_pylist() for column in text.columns), strict=True))  # fmt: skip
            sink.write(("\n".join(lines) + "\n").encode() if batch.num_rows else b"")
        written += batch.num_rows
        if progress:
            progress(written)
        yield sink.take()
    if fmt == "parquet":
        writer.close()
    yield sink.take()
