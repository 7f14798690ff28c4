"""Customer snapshots for the real-time predicate: profile, attributes, summary, programs and only the activity the
rule needs (by :func:`cohorta.rules.rule_requirements`), loaded set-based for many customers at once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
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
from cohorta.db import select_rows, table_of

PROFILE_COLUMNS = tuple(rules.tables.SCHEMAS["customers"])
ALL_ACTIVITY = frozenset({"orders", "order_items", "events", "loyalty_transactions"})


def _rows(
    session: Session,
    table: sa.Table,
    any_of: Mapping[str, Sequence[Any]],
    at_least: Mapping[str, Any] | None = None,
    columns: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The rows (all columns unless told) of ``table`` by :func:`cohorta.db.select_rows`, in the session's
    transaction."""
    return select_rows(session.connection(), table, columns or list(table.c.keys()), any_of, at_least)


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
) -> dict[int, rules.CustomerSnapshot]:
    """Snapshots of the given customers (unknown ids are left out). Without requirements, all activity is loaded.
    ``types``: the declared types when the caller keeps them current (live membership does), else read here."""
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
    read_summary = fields is None or any(f.startswith("summary.") or f == "loyalty.points_balance" for f in fields)
    read_programs = fields is None or any(f.startswith("loyalty.") and f != "loyalty.points_balance" for f in fields)
    for chunk in chunked(sorted(set(customer_ids))):
        for row in _rows(session, table_of(Customer), {"id": chunk}, columns=PROFILE_COLUMNS):
            snapshots[row["id"]] = rules.CustomerSnapshot(
                customer_id=row["id"],
                profile=row,
                segment_ids=set((segment_ids or {}).get(row["id"], set())),
            )
        if read_attributes:
            _attach_attributes(session, chunk, snapshots, definitions, attribute_names)
        if read_summary:
            for row in _rows(session, table_of(CustomerSummary), {"customer_id": chunk}):
                snapshots[row["customer_id"]].summary = row
        if read_programs:
            for row in _rows(session, table_of(CustomerProgramSummary), {"customer_id": chunk}):
                snapshots[row["customer_id"]].programs[row["program"]] = {
                    "points_balance": row["points_balance"],
                    "tier": row["tier"],
                }
        if "orders" in activities:
            _attach(session, snapshots, "orders", table_of(Order), "created_at", chunk, earliest.get("orders"))
        if "order_items" in activities:
            _attach(
                session, snapshots, "order_items", table_of(OrderItem), "ordered_at", chunk, earliest.get("order_items")
            )
        if "loyalty_transactions" in activities:
            _attach(
                session,
                snapshots,
                "loyalty_transactions",
                table_of(LoyaltyTransaction),
                "occurred_at",
                chunk,
                earliest.get("loyalty_transactions"),
            )
        if "events" in activities:
            _attach_events(session, snapshots, chunk, earliest.get("events"), event_names, types.event_properties,
                           property_keys)  # fmt: skip
    return snapshots


def _named(fields: set[str] | None, prefix: str) -> list[str] | None:
    """The names under ``prefix`` among the fields read (None: every field is read)."""
    return None if fields is None else sorted({f.removeprefix(prefix) for f in fields if f.startswith(prefix)})


def _attach_attributes(
    session: Session,
    chunk: Sequence[int],
    snapshots: dict[int, rules.CustomerSnapshot],
    definitions: dict[str, ValueType],
    names: Sequence[str] | None,
) -> None:
    """The customers' values of the attributes ``names`` (None: all)."""
    any_of: dict[str, Sequence[Any]] = {"customer_id": chunk}
    if names is not None:
        any_of["name"] = names
    grouped: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for row in _rows(session, table_of(CustomerAttributeValue), any_of):
        grouped[(row["customer_id"], row["name"])].append(row)
    for (customer_id, name), rows in grouped.items():
        value_type = definitions.get(name)
        if value_type is not None and customer_id in snapshots:
            snapshots[customer_id].attributes[name] = values.from_rows(value_type, rows)


def _attach(
    session: Session,
    snapshots: dict[int, rules.CustomerSnapshot],
    kind: str,
    table: sa.Table,
    time_column: str,
    chunk: Sequence[int],
    since: datetime | None,
) -> None:
    at_least = None if since is None else {time_column: aware_utc(since)}
    for row in _rows(session, table, {"customer_id": chunk}, at_least):
        getattr(snapshots[row["customer_id"]], kind).append(row)


def _attach_events(
    session: Session,
    snapshots: dict[int, rules.CustomerSnapshot],
    chunk: Sequence[int],
    since: datetime | None,
    names: set[str],
    declared: dict[str, dict[str, str]],
    property_keys: Sequence[str] | None,
) -> None:
    any_of: dict[str, Sequence[Any]] = {"customer_id": chunk}
    if names:
        any_of["name"] = sorted(names)
    at_least = None if since is None else {"occurred_at": aware_utc(since)}
    for customer_id, event in _event_rows(session, any_of, at_least, declared, property_keys):
        snapshots[customer_id].events.append(event)


def load_event_rows(session: Session, pks: Iterable[int], types: ValueTypes) -> dict[int, list[dict[str, Any]]]:
    """These events (by database id) as snapshots hold them, per customer: what live membership tests a write's new
    rows with before it loads any snapshot."""
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for chunk in chunked(sorted(pks)):
        for customer_id, event in _event_rows(session, {"id": chunk}, None, types.event_properties):
            found[customer_id].append(event)
    return found


def _event_rows(
    session: Session,
    any_of: Mapping[str, Sequence[Any]],
    at_least: Mapping[str, Any] | None,
    declared: dict[str, dict[str, str]],
    property_keys: Sequence[str] | None = None,
) -> list[tuple[int, dict[str, Any]]]:
    """(customer id, event row) for the events matching the conditions, with their declared properties typed (only
    ``property_keys`` when given)."""
    found: list[tuple[int, dict[str, Any]]] = []
    by_pk: dict[int, dict[str, Any]] = {}
    for row in _rows(session, table_of(Event), any_of, at_least, columns=("id", "customer_id", "name", "occurred_at")):
        event = {"name": row["name"], "occurred_at": row["occurred_at"], "properties": {}, "pk": row["id"]}
        by_pk[row["id"]] = event
        found.append((row["customer_id"], event))
    if not by_pk or (property_keys is not None and not property_keys):
        return found
    grouped: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for pks in chunked(sorted(by_pk)):
        wanted: dict[str, Sequence[Any]] = {"event_pk": pks}
        if property_keys is not None:
            wanted["key"] = property_keys
        for row in _rows(session, table_of(EventPropertyValue), wanted):
            grouped[(row["event_pk"], row["key"])].append(row)
    for (event_pk, key), rows in grouped.items():
        event = by_pk[event_pk]
        value_type = declared.get(event["name"], {}).get(key)
        if value_type is not None:
            event["properties"][key] = values.from_rows(ValueType(value_type), rows)
    return found


def aware_utc(instant: datetime) -> datetime:
    """Window starts come from the rules as naive UTC; the store's columns take aware instants."""
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant

