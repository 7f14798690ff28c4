"""Customer snapshots for the real-time predicate: profile, attributes, summary, programs and only the activity the
rule needs (by :func:`cohorta.rules.rule_requirements`), loaded set-based for many customers at once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cohorta import rules
from cohorta.customers import values
from cohorta.customers.models import (
    Customer,
    CustomerAttributeValue,
    CustomerProgramSummary,
    CustomerSummary,
    Event,
    EventPropertyValue,
    LoyaltyTransaction,
    Order,
    OrderItem,
    ValueType,
)
from cohorta.customers.service import attribute_definitions
from cohorta.customers.summary import chunked
from cohorta.db import SentRows, pipelined, reading_ahead, send_rows, table_of

PROFILE_COLUMNS = tuple(rules.tables.SCHEMAS["customers"])
ALL_ACTIVITY = frozenset({"orders", "order_items", "events", "loyalty_transactions"})


@dataclass(frozen=True)
class ValueTypes:
    """The declared types snapshots read values by: custom attributes, and the properties of declared events."""

    attributes: dict[str, ValueType]
    event_properties: dict[str, dict[str, str]]


def value_types(session: Session) -> ValueTypes:
    from cohorta.customers.service import event_definitions

    return ValueTypes(
        {name: ValueType(d.type) for name, d in attribute_definitions(session).items()},
        {name: dict(d.properties) for name, d in event_definitions(session).items()},
    )


def load_snapshots(
    session: Session,
    customer_ids: Sequence[int],
    requirements: rules.Requirements | None = None,
    *,
    segment_ids: Mapping[int, set[str]] | None = None,
    types: ValueTypes | None = None,
    known: bool = False,
) -> dict[int, rules.CustomerSnapshot]:
    """Snapshots of the given customers (unknown ids are left out). Without requirements, all activity is loaded.
    ``types``: the declared types when the caller keeps them current (live membership does), else read here.
    ``known``: every id is a customer (live membership: the customers of the write, in its own transaction), so the
    profile table is not read when the rules read no column of it."""
    activities = set(requirements.activities) if requirements is not None else set(ALL_ACTIVITY)
    earliest = requirements.earliest_activity if requirements is not None else {}
    event_names = requirements.events if requirements is not None else set()
    snapshots: dict[int, rules.CustomerSnapshot] = {}
    types = types or value_types(session)
    definitions = types.attributes
    # The parts of a customer the rules read (all without requirements): a query each, so skipped when unread.
    fields = requirements.fields if requirements is not None else None
    # Only the custom attributes the rules name: a customer holds many, a rule reads one or two (loading all of them
    # was 40% of loading the snapshots of a bulk events write).
    attribute_names = _named(fields, "attributes.")
    read_attributes = attribute_names is None or bool(attribute_names)
    # Likewise the event properties the rules test or measure: most count events by name alone.
    property_keys = _named(fields, "properties.")
    # Likewise the profile's columns: a row of about twenty typed values per customer, of which rules read one or two
    # (the id alone tells which customers exist).
    profile_names = _named(fields, "profile.")
    profile_columns = PROFILE_COLUMNS if profile_names is None else (
        "id", *(name for name in profile_names if name in PROFILE_COLUMNS and name != "id")
    )
    read_summary = fields is None or any(f.startswith("summary.") or f == "loyalty.points_balance" for f in fields)
    read_programs = fields is None or any(f.startswith("loyalty.") and f != "loyalty.points_balance" for f in fields)
    connection = session.connection()
    for chunk in chunked(sorted(set(customer_ids))):
        # Every part's select is sent before any answer is read: one round trip on PostgreSQL instead of one each.
        attach: list[Callable[[], None]] = []
        with pipelined(connection):
            # A bulk events write decides most of its customers for event counts alone: their profile rows would be
            # read (a page of a wide table each, at 1,000,000 customers mostly not cached) only to learn they exist.
            profiles = None if known and profile_columns == ("id",) else send_rows(
                connection, table_of(Customer), profile_columns, {"id": chunk}
            )
            if read_attributes:
                attach.append(_attach_attributes(connection, chunk, snapshots, definitions, attribute_names))
            if read_summary:
                attach.append(_attach_rows(connection, snapshots, table_of(CustomerSummary), chunk, _put_summary))
            if read_programs:
                attach.append(_attach_rows(connection, snapshots, table_of(CustomerProgramSummary), chunk,
                                           _put_program))  # fmt: skip
            for kind in ("orders", "order_items", "loyalty_transactions"):
                if kind in activities:
                    attach.append(_attach(connection, snapshots, kind, chunk, earliest.get(kind)))
            if "events" in activities:
                attach.append(_attach_events(connection, snapshots, chunk, earliest.get("events"), event_names,
                                             types.event_properties, property_keys))  # fmt: skip
            for row in [{"id": cid} for cid in chunk] if profiles is None else profiles.rows():
                snapshots[row["id"]] = rules.CustomerSnapshot(
                    customer_id=row["id"],
                    profile=row,
                    segment_ids=set((segment_ids or {}).get(row["id"], set())),
                )
            for attach_part in attach:
                attach_part()
    return snapshots


def _named(fields: set[str] | None, prefix: str) -> list[str] | None:
    """The names under ``prefix`` among the fields read (None: every field is read)."""
    return None if fields is None else sorted({f.removeprefix(prefix) for f in fields if f.startswith(prefix)})


def _send(connection: sa.Connection, table: sa.Table, any_of: Mapping[str, Sequence[Any]],
          at_least: Mapping[str, Any] | None = None, columns: Sequence[str] | None = None) -> SentRows:  # fmt: skip
    """The rows (all columns unless told) of ``table`` by :func:`cohorta.db.send_rows`."""
    return send_rows(connection, table, columns or list(table.c.keys()), any_of, at_least)


def _attach_attributes(
    connection: sa.Connection,
    chunk: Sequence[int],
    snapshots: dict[int, rules.CustomerSnapshot],
    definitions: dict[str, ValueType],
    names: Sequence[str] | None,
) -> Callable[[], None]:
    """Send the read of the customers' values of the attributes ``names`` (None: all); the function returned
    attaches them."""
    any_of: dict[str, Sequence[Any]] = {"customer_id": chunk}
    if names is not None:
        any_of["name"] = names
    sent = _send(connection, table_of(CustomerAttributeValue), any_of)

    def attach() -> None:
        grouped: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
        for row in sent.rows():
            grouped[(row["customer_id"], row["name"])].append(row)
        for (customer_id, name), rows in grouped.items():
            value_type = definitions.get(name)
            if value_type is not None and customer_id in snapshots:
                snapshots[customer_id].attributes[name] = values.from_rows(value_type, rows)

    return attach


def _attach_rows(
    connection: sa.Connection,
    snapshots: dict[int, rules.CustomerSnapshot],
    table: sa.Table,
    chunk: Sequence[int],
    put: Callable[[rules.CustomerSnapshot, dict[str, Any]], None],
    at_least: Mapping[str, Any] | None = None,
) -> Callable[[], None]:
    """Send the read of the chunk's rows of ``table``; the function returned hands each to ``put`` with its
    customer's snapshot."""
    sent = _send(connection, table, {"customer_id": chunk}, at_least)

    def attach() -> None:
        for row in sent.rows():
            put(snapshots[row["customer_id"]], row)

    return attach


def _put_summary(snapshot: rules.CustomerSnapshot, row: dict[str, Any]) -> None:
    snapshot.summary = row


def _put_program(snapshot: rules.CustomerSnapshot, row: dict[str, Any]) -> None:
    snapshot.programs[row["program"]] = {"points_balance": row["points_balance"], "tier": row["tier"]}


_ACTIVITY_TABLES: dict[str, tuple[type[Any], str]] = {
    "orders": (Order, "created_at"),
    "order_items": (OrderItem, "ordered_at"),
    "loyalty_transactions": (LoyaltyTransaction, "occurred_at"),
}


def _attach(
    connection: sa.Connection,
    snapshots: dict[int, rules.CustomerSnapshot],
    kind: str,
    chunk: Sequence[int],
    since: datetime | None,
) -> Callable[[], None]:
    """The chunk's activity rows of ``kind`` since ``since`` (None: all), appended to the snapshots' list."""
    model, time_column = _ACTIVITY_TABLES[kind]
    at_least = None if since is None else {time_column: aware_utc(since)}
    return _attach_rows(connection, snapshots, table_of(model), chunk,
                        lambda snapshot, row: getattr(snapshot, kind).append(row), at_least)  # fmt: skip


def _attach_events(
    connection: sa.Connection,
    snapshots: dict[int, rules.CustomerSnapshot],
    chunk: Sequence[int],
    since: datetime | None,
    names: set[str],
    declared: dict[str, dict[str, str]],
    property_keys: Sequence[str] | None,
) -> Callable[[], None]:
    sent = _send_events(connection, *_events_read(chunk, since, names))

    def attach() -> None:
        for customer_id, event in _event_rows(connection, sent, declared, property_keys):
            snapshots[customer_id].events.append(event)

    return attach


def _events_read(
    chunk: Sequence[int], since: datetime | None, names: set[str]
) -> tuple[dict[str, Sequence[Any]], dict[str, Any] | None]:
    """The keys and lower bound of the read of a chunk's events since ``since`` named ``names`` (all if empty)."""
    any_of: dict[str, Sequence[Any]] = {"customer_id": chunk}
    if names:
        any_of["name"] = sorted(names)
    return any_of, None if since is None else {"occurred_at": aware_utc(since)}


def read_event_properties_ahead(
    connection: sa.Connection, customer_ids: Sequence[int], requirements: rules.Requirements
) -> None:
    """Read the event properties :func:`load_snapshots` reads for these customers, keeping nothing: for a read ahead
    (``cohorta.db.ReadAhead``), inside which :func:`load_snapshots` reads no event rows and so no properties. The
    events' ids are read (the properties are read by them), then their properties counted."""
    keys = _named(requirements.fields, "properties.")
    if "events" not in requirements.activities or keys == []:
        return
    since = requirements.earliest_activity.get("events")
    for chunk in chunked(sorted(set(customer_ids))):
        sent = _send(connection, table_of(Event), *_events_read(chunk, since, requirements.events), columns=("id",))
        pks = sorted(row["id"] for row in sent.rows())
        with reading_ahead():
            for part in chunked(pks):
                wanted: dict[str, Sequence[Any]] = {"event_pk": part}
                if keys is not None:
                    wanted["key"] = keys
                _send(connection, table_of(EventPropertyValue), wanted).rows()


def written_event_rows(
    inserted: Iterable[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]], types: ValueTypes
) -> dict[int, list[dict[str, Any]]]:
    """The events a write inserted (rows as written, each with its property rows) as snapshots hold them, per
    customer: what live membership tests a write's new rows with, without reading back what it just wrote."""
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row, property_rows in inserted:
        event = {"name": row["name"], "occurred_at": row["occurred_at"].astimezone(UTC), "properties": {}}
        grouped: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for property_row in property_rows:
            grouped[property_row["key"]].append(property_row)
        for key, rows in grouped.items():
            _put_property(event, key, rows, types.event_properties)
        found[row["customer_id"]].append(event)
    return found


def _send_events(
    connection: sa.Connection, any_of: Mapping[str, Sequence[Any]], at_least: Mapping[str, Any] | None
) -> SentRows:
    return _send(connection, table_of(Event), any_of, at_least, columns=("id", "customer_id", "name", "occurred_at"))


def _event_rows(
    connection: sa.Connection,
    sent: SentRows,
    declared: dict[str, dict[str, str]],
    property_keys: Sequence[str] | None = None,
) -> list[tuple[int, dict[str, Any]]]:
    """(customer id, event row) for the events ``sent`` selects, with their declared properties typed (only
    ``property_keys`` when given)."""
    found: list[tuple[int, dict[str, Any]]] = []
    by_pk: dict[int, dict[str, Any]] = {}
    for row in sent.rows():
        event = {"name": row["name"], "occurred_at": row["occurred_at"], "properties": {}}
        by_pk[row["id"]] = event
        found.append((row["customer_id"], event))
    if not by_pk or (property_keys is not None and not property_keys):
        return found
    grouped: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    properties: list[SentRows] = []
    for pks in chunked(sorted(by_pk)):  # every chunk sent before any is read (one round trip in a pipeline)
        wanted: dict[str, Sequence[Any]] = {"event_pk": pks}
        if property_keys is not None:
            wanted["key"] = property_keys
        properties.append(_send(connection, table_of(EventPropertyValue), wanted))
    for part in properties:
        for row in part.rows():
            grouped[(row["event_pk"], row["key"])].append(row)
    for (event_pk, key), rows in grouped.items():
        _put_property(by_pk[event_pk], key, rows, declared)
    return found


def _put_property(event: dict[str, Any], key: str, rows: Sequence[Mapping[str, Any]],
                  declared: dict[str, dict[str, str]]) -> None:  # fmt: skip
    """Type a property's stored rows by the event's declaration (undeclared properties are not kept)."""
    value_type = declared.get(event["name"], {}).get(key)
    if value_type is not None:
        event["properties"][key] = values.from_rows(ValueType(value_type), rows)


def aware_utc(instant: datetime) -> datetime:
    """Window starts come from the rules as naive UTC; the store's columns take aware instants."""
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant

