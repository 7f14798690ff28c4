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
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.orm import Session

from cohorta.access.service import Principal
from cohorta.clock import Clock
from cohorta.config import Settings
from cohorta.customers.models import Event, LoyaltyTransaction, Order, OrderItem, ValueType
from cohorta.customers.service import attribute_definitions
from cohorta.db import as_instant
from cohorta.errors import FieldError, InvalidInput
from cohorta.evaluation import store
from cohorta.money import from_minor
from cohorta.segments.models import SegmentMember
from cohorta.segments.service import get_segment, member_table

Format = Literal["csv", "jsonl", "parquet"]
Activity = Literal["orders", "events", "points"]
BATCH_ROWS = 10_000
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe; other values pass unchanged."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value


@dataclass(frozen=True)
class Column:
    name: str
    arrow: pa.DataType
    convert: Callable[[Any], Any] = lambda value: value


@dataclass
class Export:
    """An export ready to stream: its columns, its row count, and a function giving batches of converted rows."""

    columns: list[Column]
    total: int
    batches: Callable[[], Iterator[list[tuple[Any, ...]]]]


def _instant(value: Any) -> dt.datetime | None:
    return as_instant(value) if value is not None else None


def _money(exponent: int) -> Callable[[Any], Decimal | None]:
    return lambda minor: None if minor is None else from_minor(int(minor), exponent)


def _date(value: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


TIMESTAMP = pa.timestamp("us", tz="UTC")


def _member_columns(settings: Settings, attribute_types: dict[str, ValueType]) -> list[Column]:
    money = pa.decimal128(18, settings.currency_exponent)
    columns = [
        Column("source_id", pa.string()), Column("first_name", pa.string()), Column("last_name", pa.string()),
        Column("email", pa.string()), Column("phone", pa.string()), Column("city", pa.string()),
        Column("country", pa.string()), Column("loyalty_member", pa.bool_(), _bool),
        Column("created_at", TIMESTAMP, _instant), Column("order_count", pa.int64()),
        Column("total_spent", money, _money(settings.currency_exponent)),
        Column("average_order_value", money, _money(settings.currency_exponent)),
        Column("last_order_at", TIMESTAMP, _instant), Column("points_balance", pa.int64()),
        Column("member_since", TIMESTAMP, _instant),
    ]  # fmt: skip
    arrow_of = {
        ValueType.string: (pa.string(), lambda v: v), ValueType.string_list: (pa.string(), lambda v: v),
        ValueType.number: (pa.float64(), lambda v: None if v is None else float(v)),
        ValueType.boolean: (pa.bool_(), _bool), ValueType.date: (pa.date32(), _date),
        ValueType.datetime: (TIMESTAMP, _instant),
    }  # fmt: skip
    for name, kind in attribute_types.items():
        arrow, convert = arrow_of[kind]
        columns.append(Column(f"attributes.{name}", arrow, convert))
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
    """The segment's members (or those matching ``filter_text``), ordered by source id, with the chosen attributes.

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
    ordered = expr.select(*selected).order_by("source_id")
    sql = store.to_sql(session, ordered)
    total = int(store.run_sql(session, f"SELECT COUNT(*) FROM ({sql}) AS export_rows").scalar_one())
    columns = _member_columns(settings, chosen)
    bind = session.get_bind()
    return Export(columns=columns, total=total, batches=lambda: _stream_sql(bind, sql, columns))


def _stream_sql(bind: Any, sql: str, columns: list[Column]) -> Iterator[list[tuple[Any, ...]]]:
    """Rows of ``sql`` in batches, through a server-side cursor on PostgreSQL, on a connection of its own."""
    if bind.dialect.name == "postgresql":
        sql = sql.replace("%", "%%")
    converters = [c.convert for c in columns]
    with bind.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=BATCH_ROWS).exec_driver_sql(sql)
        for rows in result.partitions(BATCH_ROWS):
            yield [tuple(convert(v) for convert, v in zip(converters, row, strict=True)) for row in rows]


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
    money = pa.decimal128(18, settings.currency_exponent)
    as_money = _money(settings.currency_exponent)
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
            Column("source_id", pa.string()), Column("order_id", pa.string()),
            Column("created_at", TIMESTAMP, _instant), Column("status", pa.string()),
            Column("order_total", money, as_money), Column("sku", pa.string()), Column("item_name", pa.string()),
            Column("category", pa.string()), Column("brand", pa.string()), Column("quantity", pa.int64()),
            Column("unit_price", money, as_money), Column("amount", money, as_money),
        ]  # fmt: skip
    elif activity == "events":
        query = (
            sa.select(customers.c.source_id, Event.event_id, Event.name, Event.occurred_at, Event.properties)
            .join(customers, customers.c.id == Event.customer_id)
            .where(Event.customer_id.in_(members), Event.occurred_at >= start, Event.occurred_at < end)
            .order_by(Event.occurred_at, Event.id)
        )
        columns = [
            Column("source_id", pa.string()), Column("event_id", pa.string()), Column("name", pa.string()),
            Column("occurred_at", TIMESTAMP, _instant),
            Column("properties", pa.string(), lambda v: json.dumps(v if isinstance(v, dict) else json.loads(v or "{}"),
                                                                   sort_keys=True)),
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
            Column("source_id", pa.string()), Column("transaction_id", pa.string()),
            Column("occurred_at", TIMESTAMP, _instant), Column("program", pa.string()), Column("entry", pa.string()),
            Column("points", pa.int64()), Column("reason", pa.string()),
        ]  # fmt: skip
    bind = session.get_bind()
    total = int(session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())) or 0)
    compiled = str(query.compile(dialect=bind.dialect, compile_kwargs={"literal_binds": True}))
    return Export(columns=columns, total=total, batches=lambda: _stream_sql(bind, compiled, columns))


# --- writers ---------------------------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date | Decimal):
        return str(value)
    return value


class _Sink(io.RawIOBase):
    """A write-only file that hands over what was written since the last ``take`` (Parquet streams through it)."""

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


def encode(export: Export, fmt: Format, progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """The export as chunks of bytes in the format, one chunk per batch; ``progress`` gets the rows written so far."""
    names = [c.name for c in export.columns]
    written = 0
    if fmt == "parquet":
        schema = pa.schema([pa.field(c.name, c.arrow) for c in export.columns])
        sink = _Sink()
        writer = pq.ParquetWriter(sink, schema, compression="zstd")
        for batch in export.batches():
            columns = list(zip(*batch, strict=True)) if batch else [() for _ in names]
            writer.write_table(pa.Table.from_arrays([pa.array(col, type=f.type) for col, f in zip(columns, schema,
                                                                                                    strict=True)],
                                                    schema=schema))  # fmt: skip
            written += len(batch)
            if progress:
                progress(written)
            yield sink.take()
        writer.close()
        yield sink.take()
        return
    if fmt == "csv":
        buffer = io.StringIO()
        writer_csv = csv.writer(buffer)
        writer_csv.writerow(names)
        yield buffer.getvalue().encode()
    for batch in export.batches():
        if fmt == "csv":
            buffer = io.StringIO()
            writer_csv = csv.writer(buffer)
            writer_csv.writerows([csv_safe(v) for v in row] for row in batch)
            chunk = buffer.getvalue()
        else:
            chunk = "".join(
                json.dumps(dict(zip(names, (_json_value(v) for v in row), strict=True)), ensure_ascii=False) + "\n"
                for row in batch
            )
        written += len(batch)
        if progress:
            progress(written)
        yield chunk.encode()
