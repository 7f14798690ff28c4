"""Customer data logic: schemas, upserts, activity ingestion, reads and erasure. No HTTP; never commits.

Every write validates the whole request before writing anything, so a refused item leaves no partial write.
Each write returns the internal ids of the customers it changed, for the caller to re-evaluate their segments in the
same transaction.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.orm import Session

from cohorta.audit import service as audit
from cohorta.clock import Clock
from cohorta.clv.models import CustomerClv
from cohorta.customers import summary, values
from cohorta.customers.models import (
    AttributeDefinition,
    Customer,
    CustomerAttributeValue,
    CustomerProgramSummary,
    CustomerSummary,
    Event,
    EventDefinition,
    EventPropertyValue,
    GiftCardOperation,
    LoyaltyTransaction,
    LoyaltyType,
    Order,
    OrderItem,
    PointsEntry,
    ValueType,
)
from cohorta.customers.schemas import (
    AttributeDefinitionIn,
    BulkResult,
    CustomerBulkItem,
    CustomerIn,
    CustomerOut,
    EventDefinitionIn,
    EventIn,
    EventOut,
    GiftCardOut,
    GiftCardTransactionIn,
    LedgerEntryOut,
    LoyaltyTransactionIn,
    OrderIn,
    OrderItemOut,
    OrderOut,
    PointsAdjusted,
    PointsAdjustmentIn,
    PointsTransactionIn,
    ProgramSummaryOut,
    SummaryOut,
    WriteResult,
)
from cohorta.db import InValues, insert_rows, table_of, update_rows
from cohorta.errors import Conflict, FieldError, InvalidInput, NotFound
from cohorta.membership import monthly
from cohorta.money import from_minor, to_minor
from cohorta.project_settings import get_setting, put_setting

PROFILE_FIELDS: tuple[str, ...] = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "birthdate",
    "gender",
    "postal_code",
    "city",
    "state",
    "country",
    "created_at",
    "source",
    "source_metadata",
    "store",
    "company",
    "loyalty_member",
    "member_since",
)
_PROFILE_FIELD_SET = frozenset(PROFILE_FIELDS)
ATTRIBUTES_OPEN_KEY = "customer_attributes_open"
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"

Loc = tuple[str | int, ...]


@dataclass
class Ingested:
    """What a write did, for the API (``result``) and for segment re-evaluation (``customer_ids``)."""

    result: BulkResult
    customer_ids: set[int] = field(default_factory=set)
    # The written items' times, before (updates) and after the write: which months of the customers it touched.
    times: list[datetime] = field(default_factory=list)
    # The customers one of whose rows this write rewrote, and the rows it inserted as written, each with its children
    # (an order's items, an event's property rows): live membership re-evaluates a segment for a customer only if a
    # new row can count for it, or a row was rewritten.
    rewritten: set[int] = field(default_factory=set)
    inserted: list[tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=list)
    # The customers this write created (a profile write): decided against every segment, not only profile ones.
    created: set[int] = field(default_factory=set)


# ---------------------------------------------------------------------------------------------- schemas


def attributes_open(session: Session) -> bool:
    return bool(get_setting(session, ATTRIBUTES_OPEN_KEY))


def set_attributes_open(session: Session, is_open: bool) -> None:
    put_setting(session, ATTRIBUTES_OPEN_KEY, is_open)


def attribute_definitions(session: Session) -> dict[str, AttributeDefinition]:
    return {d.name: d for d in session.scalars(sa.select(AttributeDefinition).order_by(AttributeDefinition.name))}


def put_attribute(session: Session, clock: Clock, name: str, body: AttributeDefinitionIn) -> AttributeDefinition:
    _check_name(name, ("name",))
    now = clock.now()
    definition = session.get(AttributeDefinition, name)
    if definition is None:
        definition = AttributeDefinition(name=name, type=body.type.value, created_at=now)
        session.add(definition)
    elif definition.type != body.type.value:
        in_use = session.scalar(
            sa.select(sa.func.count()).select_from(CustomerAttributeValue).where(CustomerAttributeValue.name == name)
        )
        if in_use:
            raise Conflict(
                f"attribute {name!r} is {definition.type} and {in_use} values are stored; "
                f"its type cannot change to {body.type.value} while values exist"
            )
        definition.type = body.type.value
    definition.label = body.label
    definition.description = body.description
    definition.updated_at = now
    session.flush()
    return definition


def event_definitions(session: Session) -> dict[str, EventDefinition]:
    return {d.name: d for d in session.scalars(sa.select(EventDefinition).order_by(EventDefinition.name))}


def put_event_definition(session: Session, clock: Clock, name: str, body: EventDefinitionIn) -> EventDefinition:
    now = clock.now()
    definition = session.get(EventDefinition, name)
    new_properties = {key: value_type.value for key, value_type in body.properties.items()}
    if definition is None:
        definition = EventDefinition(name=name, created_at=now, properties=new_properties)
        session.add(definition)
    else:
        changed = [k for k, t in definition.properties.items() if k in new_properties and new_properties[k] != t]
        stored = _stored_event_property_keys(session, name, changed)
        if stored:
            raise Conflict(
                f"event {name!r} has stored values for {', '.join(sorted(stored))}; "
                "the type of a property with stored values cannot change"
            )
        definition.properties = new_properties
    definition.label = body.label
    definition.description = body.description
    definition.updated_at = now
    session.flush()
    return definition


def _stored_event_property_keys(session: Session, event_name: str, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    rows = session.execute(
        sa.select(EventPropertyValue.key)
        .join(Event, Event.id == EventPropertyValue.event_pk)
        .where(Event.name == event_name, EventPropertyValue.key.in_(keys))
        .distinct()
    ).scalars()
    return set(rows)


def _check_name(name: str, loc: Loc) -> None:
    import re

    if not re.match(NAME_PATTERN, name):
        raise InvalidInput(
            [FieldError(loc, "must start with a lowercase letter and contain only a-z, 0-9 and _ (at most 64)")]
        )


# ---------------------------------------------------------------------------------------------- customers


def upsert_customer(session: Session, clock: Clock, source_id: str, body: CustomerIn) -> Ingested:
    item = CustomerBulkItem.model_validate({"source_id": source_id, **body.model_dump(exclude_unset=True)})
    return upsert_customers(session, clock, [item], loc_prefix=lambda _index: ())


def upsert_customers(
    session: Session,
    clock: Clock,
    items: Sequence[CustomerBulkItem],
    *,
    loc_prefix: Any = None,
) -> Ingested:
    """Create or update customers. Fields left out are kept; fields sent as null are cleared."""
    loc_of = loc_prefix or (lambda index: ("items", index))
    now = clock.now()
    errors: list[FieldError] = []

    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.source_id in first_seen:
            errors.append(
                FieldError((*loc_of(index), "source_id"), f"repeats item {first_seen[item.source_id]} of this request")
            )
        first_seen.setdefault(item.source_id, index)

    definitions = {name: ValueType(d.type) for name, d in attribute_definitions(session).items()}
    schema_open = attributes_open(session)
    declared_now: dict[str, ValueType] = {}
    attribute_changes: list[dict[str, Any]] = []  # per item: name -> coerced value, or None to remove
    for index, item in enumerate(items):
        changes: dict[str, Any] = {}
        for name, raw in (item.attributes or {}).items():
            loc = (*loc_of(index), "attributes", name)
            value_type = definitions.get(name) or declared_now.get(name)
            if value_type is None:
                if not schema_open:
                    errors.append(
                        FieldError(
                            loc,
                            f"unknown attribute {name!r}: declare it with PUT /api/v1/attributes/{name} "
                            "or open the attribute schema",
                            "unknown_attribute",
                        )
                    )
                    continue
                try:
                    _check_name(name, loc)
                    if raw is None:
                        continue
                    value_type = values.infer_type(raw)
                except InvalidInput as exc:
                    errors.extend(exc.errors)
                    continue
                except ValueError as exc:
                    errors.append(FieldError(loc, str(exc)))
                    continue
                declared_now[name] = value_type
            if raw is None:
                changes[name] = None
                continue
            try:
                changes[name] = values.coerce(value_type, raw)
            except ValueError as exc:
                errors.append(FieldError(loc, f"{exc} (attribute {name!r} is {value_type.value})"))
        attribute_changes.append(changes)
    if errors:
        raise InvalidInput(errors)

    for name, value_type in declared_now.items():
        session.add(AttributeDefinition(name=name, type=value_type.value, created_at=now, updated_at=now))
    definitions.update(declared_now)

    existing = _customers_by_source_id(session, [item.source_id for item in items])
    existing_attributes = _attribute_rows(
        session, [existing[item.source_id]["id"] for item in items if item.source_id in existing]
    )

    result = BulkResult()
    new_rows: list[dict[str, Any]] = []
    updated_rows: list[dict[str, Any]] = []
    for item, changes in zip(items, attribute_changes, strict=True):
        # The profile fields the client sent (model_dump(exclude_unset=True) without its per-item serialisation: the
        # fields are plain values, and a JSON object goes into its column as it is).
        fields = item.__dict__
        sent = {name: fields[name] for name in item.model_fields_set if name in _PROFILE_FIELD_SET}
        current = existing.get(item.source_id)
        if current is None:
            row = dict.fromkeys(PROFILE_FIELDS)
            row.update(sent)
            row["created_at"] = row["created_at"] or now
            row["loyalty_member"] = bool(row["loyalty_member"])
            row.update(source_id=item.source_id, updated_at=now)
            new_rows.append(row)
            result.items.append(WriteResult(id=item.source_id, result="created"))
            result.created += 1
            continue
        merged = {key: current[key] for key in PROFILE_FIELDS}
        merged.update(sent)
        if merged["created_at"] is None:
            merged["created_at"] = current["created_at"]
        merged["loyalty_member"] = bool(merged["loyalty_member"])
        stored = existing_attributes.get(current["id"], {})
        attributes_differ = any(stored.get(name) != value for name, value in changes.items())
        if merged == {key: current[key] for key in PROFILE_FIELDS} and not attributes_differ:
            result.items.append(WriteResult(id=item.source_id, result="unchanged"))
            result.unchanged += 1
            continue
        updated_rows.append({"id": current["id"], **merged, "updated_at": now})
        result.items.append(WriteResult(id=item.source_id, result="updated"))
        result.updated += 1

    if new_rows:
        insert_rows(session.connection(), table_of(Customer), new_rows)
    if updated_rows:
        update_rows(session.connection(), table_of(Customer), "id", updated_rows)
    ids = {source_id: row["id"] for source_id, row in existing.items()}
    created: set[int] = set()
    if new_rows:
        created_ids = _customer_ids(session, [row["source_id"] for row in new_rows])
        ids.update(created_ids)
        created = set(created_ids.values())
        summary.ensure_summary_rows(session, sorted(created))

    _write_attribute_changes(session, definitions, items, attribute_changes, ids, existing_attributes)
    changed_ids = {ids[r.id] for r in result.items if r.result != "unchanged"}
    session.flush()
    return Ingested(result=result, customer_ids=changed_ids, created=created)


def _write_attribute_changes(
    session: Session,
    definitions: dict[str, ValueType],
    items: Sequence[CustomerBulkItem],
    attribute_changes: list[dict[str, Any]],
    ids: dict[str, int],
    stored: dict[int, dict[str, Any]],
) -> None:
    """Store the attribute values sent. A value equal to the one stored (``stored``: by customer id) is left as it
    is; another replaces the stored rows; None removes them."""
    replaced: dict[str, list[int]] = defaultdict(list)  # attribute name -> customers whose old value goes
    # Rows by the value column they fill: one INSERT each, the other value columns left out (NULL).
    inserts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item, changes in zip(items, attribute_changes, strict=True):
        customer_id = ids[item.source_id]
        current = stored.get(customer_id)
        for name, value in changes.items():
            if current is not None:
                if values.same(current.get(name), value):
                    continue
                replaced[name].append(customer_id)
            if value is not None:
                value_type = definitions[name]
                column = values.column_for(value_type)
                rows = inserts[column]
                for position, element in values.positioned(value_type, value):
                    rows.append({"customer_id": customer_id, "name": name, "position": position, column: element})
    table = table_of(CustomerAttributeValue)
    for name, customer_ids in replaced.items():
        for chunk in summary.chunked(customer_ids):
            session.execute(sa.delete(table).where(table.c.name == name, InValues(table.c.customer_id, chunk)))
    for rows in inserts.values():
        insert_rows(session.connection(), table, rows)


def _customers_by_source_id(session: Session, source_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    table = table_of(Customer)
    found: dict[str, dict[str, Any]] = {}
    for chunk in summary.chunked(sorted(set(source_ids))):
        result = session.connection().execute(sa.select(table).where(InValues(table.c.source_id, chunk)))
        keys = list(result.keys())
        for row in result:
            record = dict(zip(keys, row, strict=True))
            found[record["source_id"]] = record
    return found


def _customer_ids(session: Session, source_ids: Sequence[str]) -> dict[str, int]:
    table = table_of(Customer)
    connection = session.connection()
    found: dict[str, int] = {}
    for chunk in summary.chunked(sorted(set(source_ids))):
        query = sa.select(table.c.source_id, table.c.id).where(InValues(table.c.source_id, chunk))
        found.update(connection.execute(query).all())
    return found


def _attribute_rows(session: Session, customer_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Stored attribute values per customer, as Python values."""
    definitions = {name: ValueType(d.type) for name, d in attribute_definitions(session).items()}
    rows_by_key: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    table = table_of(CustomerAttributeValue)
    for chunk in summary.chunked(sorted(set(customer_ids))):
        result = session.connection().execute(sa.select(table).where(InValues(table.c.customer_id, chunk)))
        keys = list(result.keys())
        for row in result:
            record = dict(zip(keys, row, strict=True))
            rows_by_key[(record["customer_id"], record["name"])].append(record)
    by_customer: dict[int, dict[str, Any]] = defaultdict(dict)
    for (customer_id, name), rows in rows_by_key.items():
        by_customer[customer_id][name] = values.from_rows(definitions.get(name, ValueType.string), rows)
    return by_customer


def customer_id_for(session: Session, source_id: str) -> int:
    customer_id = session.scalar(sa.select(Customer.id).where(Customer.source_id == source_id))
    if customer_id is None:
        raise NotFound(f"no customer with source_id {source_id!r}")
    return customer_id


def get_customer(session: Session, source_id: str, exponent: int) -> CustomerOut:
    customer = session.scalar(sa.select(Customer).where(Customer.source_id == source_id))
    if customer is None:
        raise NotFound(f"no customer with source_id {source_id!r}")
    attributes = _attribute_rows(session, [customer.id]).get(customer.id, {})
    stored = session.get(CustomerSummary, customer.id)
    programs = session.scalars(
        sa.select(CustomerProgramSummary)
        .where(CustomerProgramSummary.customer_id == customer.id)
        .order_by(CustomerProgramSummary.program)
    ).all()
    cards = session.execute(
        sa.select(LoyaltyTransaction.gift_card, sa.func.sum(LoyaltyTransaction.amount_minor))
        .where(LoyaltyTransaction.customer_id == customer.id, LoyaltyTransaction.type == LoyaltyType.gift_card.value)
        .group_by(LoyaltyTransaction.gift_card)
        .order_by(LoyaltyTransaction.gift_card)
    ).all()
    s = stored or CustomerSummary(customer_id=customer.id, **summary.EMPTY_SUMMARY)

    def money(minor: int | None) -> Decimal | None:
        return from_minor(minor, exponent)

    return CustomerOut(
        source_id=customer.source_id,
        **{name: getattr(customer, name) for name in PROFILE_FIELDS},
        updated_at=customer.updated_at,
        attributes={name: values.to_json(value) for name, value in sorted(attributes.items())},
        summary=SummaryOut(
            order_count=s.order_count,
            total_spent=from_minor(s.total_spent_minor, exponent) or Decimal(0),
            average_order_value=money(s.average_order_value_minor),
            first_order_at=s.first_order_at,
            last_order_at=s.last_order_at,
            last_order_amount=money(s.last_order_amount_minor),
            points_balance=s.points_balance,
            redemption_count=s.redemption_count,
            referral_count=s.referral_count,
            gift_card_balance=from_minor(s.gift_card_balance_minor, exponent) or Decimal(0),
            programs=[
                ProgramSummaryOut(program=p.program, points_balance=p.points_balance, tier=p.tier) for p in programs
            ],
            gift_cards=[
                GiftCardOut(code=code, balance=from_minor(int(total or 0), exponent) or Decimal(0))
                for code, total in cards
            ],
            predicted_clv=money(session.scalar(
                sa.select(CustomerClv.predicted_minor).where(CustomerClv.customer_id == customer.id)
            )),
        ),
    )


def find_customers(session: Session, text: str, limit: int = 50) -> list[Customer]:
    """Customers whose source_id (as typed, upper- or lower-cased) or email (lower-cased) starts with ``text``; an
    exact id first. Each part is a range on an indexed column, so a search costs the same at 1,000,000 customers as at
    1,000."""
    needle = text.strip()
    if not needle:
        return []
    found: dict[int, Customer] = {}
    ids = dict.fromkeys((needle, needle.upper(), needle.lower()))
    for column, prefix in [*((Customer.source_id, p) for p in ids), (Customer.email, needle.lower())]:
        # The range lets the index find the rows; LIKE keeps only true prefixes whatever the collation.
        in_range = sa.and_(column >= prefix, column < prefix + "\U0010ffff", column.startswith(prefix, autoescape=True))
        for customer in session.scalars(sa.select(Customer).where(in_range).order_by(column).limit(limit)):
            found.setdefault(customer.id, customer)
    ordered = sorted(found.values(), key=lambda c: (c.source_id.lower() != needle.lower(), c.source_id))
    return ordered[:limit]


def delete_customer(session: Session, source_id: str) -> int:
    """Erase a customer and everything about them: activity, summaries, memberships and their history.

    Every table with a ``customer_id`` column is found from the metadata, so tables added later are erased too.
    Children go first, so erasure does not depend on the database enforcing ON DELETE CASCADE.
    """
    from cohorta.db import Base

    customer_id = customer_id_for(session, source_id)
    event_ids = sa.select(Event.id).where(Event.customer_id == customer_id)
    session.execute(sa.delete(EventPropertyValue).where(EventPropertyValue.event_pk.in_(event_ids)))
    for table in reversed(Base.metadata.sorted_tables):
        if "customer_id" in table.c:
            session.execute(sa.delete(table).where(table.c.customer_id == customer_id))
    session.execute(sa.delete(Customer).where(Customer.id == customer_id))
    session.flush()
    return customer_id


# ---------------------------------------------------------------------------------------------- activity


def content_hash(item: BaseModel) -> str:
    """Identity of an item as received: same id and same hash is a duplicate; same id, other hash, an update.

    pydantic's JSON encoding is deterministic for a model (fields in declaration order, fields the client left out
    omitted), so the same request body always hashes the same.
    """
    return hashlib.sha256(item.model_dump_json(exclude_unset=True).encode()).hexdigest()


@dataclass
class _Prepared:
    """An activity item checked and turned into rows, waiting to be written."""

    index: int
    client_id: str
    customer_id: int
    digest: str
    row: dict[str, Any]
    children: list[dict[str, Any]] = field(default_factory=list)
    explicit_time: bool = True


def _resolve_customers(session: Session, items: Sequence[Any], loc_of: Any, errors: list[FieldError]) -> dict[str, int]:
    ids = _customer_ids(session, [item.customer for item in items])
    for index, item in enumerate(items):
        if item.customer not in ids:
            errors.append(
                FieldError(
                    (*loc_of(index), "customer"),
                    f"unknown customer {item.customer!r}: create it first with PUT /api/v1/customers/{item.customer}",
                    "unknown_customer",
                )
            )
    return ids


def _repeated_ids(items: Sequence[Any], loc_of: Any, errors: list[FieldError]) -> None:
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.id in first_seen:
            errors.append(FieldError((*loc_of(index), "id"), f"repeats item {first_seen[item.id]} of this request"))
        first_seen.setdefault(item.id, index)


#: Each kind of activity write's table and the column of its items' own ids (the idempotency key).
ITEM_KEYS: dict[str, tuple[type[Any], str]] = {
    "orders": (Order, "order_id"),
    "events": (Event, "event_id"),
    "loyalty": (LoyaltyTransaction, "transaction_id"),
}


def _apply(
    session: Session,
    model: type[Any],
    id_column: str,
    prepared: list[_Prepared],
    *,
    child_table: sa.Table | None,
    child_key: str,
    child_time_column: str | None = None,
    time_column: str,
    loc_of: Any,
) -> Ingested:
    """Insert new items, update changed ones, skip duplicates; children are replaced on update."""
    table = table_of(model)
    client_ids = [p.client_id for p in prepared]
    existing: dict[str, Any] = {}
    for chunk in summary.chunked(client_ids):
        for row in session.execute(
            sa.select(
                table.c.id, table.c[id_column], table.c.customer_id, table.c.content_hash, table.c[time_column]
            ).where(InValues(table.c[id_column], chunk))
        ):
            existing[row[1]] = row
    errors = [
        FieldError((*loc_of(p.index), "customer"), f"{p.client_id!r} was recorded for another customer")
        for p in prepared
        if p.client_id in existing and existing[p.client_id].customer_id != p.customer_id
    ]
    if errors:
        raise InvalidInput(errors)

    result = BulkResult()
    inserts: list[_Prepared] = []
    updates: list[_Prepared] = []
    for p in prepared:
        current = existing.get(p.client_id)
        if current is None:
            inserts.append(p)
            result.created += 1
            result.items.append(WriteResult(id=p.client_id, result="created"))
        elif current.content_hash == p.digest:
            result.duplicates += 1
            result.items.append(WriteResult(id=p.client_id, result="duplicate"))
        else:
            if not p.explicit_time:  # a resend without a time keeps the time first recorded
                p.row[time_column] = current[4]
                if child_time_column:
                    for child in p.children:
                        child[child_time_column] = current[4]
            updates.append(p)
            result.updated += 1
            result.items.append(WriteResult(id=p.client_id, result="updated"))

    new_ids: dict[str, int] = {}
    if inserts:
        insert_rows(session.connection(), table, [p.row for p in inserts])
        for chunk in summary.chunked([p.client_id for p in inserts]):
            query = sa.select(table.c[id_column], table.c.id).where(InValues(table.c[id_column], chunk))
            new_ids.update(session.connection().execute(query).all())
        for p in inserts:
            for child in p.children:
                child[child_key] = new_ids[p.client_id]
    if updates:
        update_rows(session.connection(), table, id_column, [p.row for p in updates])
        if child_table is not None:
            update_pks = [existing[p.client_id].id for p in updates]
            for chunk in summary.chunked(update_pks):
                session.execute(sa.delete(child_table).where(InValues(child_table.c[child_key], chunk)))
            for p in updates:
                for child in p.children:
                    child[child_key] = existing[p.client_id].id
    if child_table is not None:
        children = [child for p in (*inserts, *updates) for child in p.children]
        if children:
            insert_rows(session.connection(), child_table, children)
    session.flush()
    times = [p.row[time_column] for p in (*inserts, *updates)]
    times += [existing[p.client_id][4] for p in updates]
    return Ingested(
        result=result,
        customer_ids={p.customer_id for p in (*inserts, *updates)},
        times=times,
        rewritten={p.customer_id for p in updates},
        inserted=[(p.row, p.children) for p in inserts],
    )


def record_orders(
    session: Session,
    clock: Clock,
    exponent: int,
    orders: Sequence[OrderIn],
    *,
    timezone: str,
    loc_prefix: Any = None,
) -> Ingested:
    """Record new and changed orders, then bring the customers' summaries and month-by-month figures up to date.
    ``timezone``: the project's, for the month figures of a database that keeps none yet."""
    loc_of = loc_prefix or (lambda index: ("items", index))
    errors: list[FieldError] = []
    _repeated_ids(orders, loc_of, errors)
    ids = _resolve_customers(session, orders, loc_of, errors)
    now = clock.now()
    prepared: list[_Prepared] = []
    for index, order in enumerate(orders):
        loc = loc_of(index)
        total = _minor(order.total, exponent, (*loc, "total"), errors)
        created_at = order.created_at or now
        items = []
        for item_index, item in enumerate(order.items):
            unit = _minor(item.unit_price, exponent, (*loc, "items", item_index, "unit_price"), errors)
            items.append(
                {
                    "customer_id": ids.get(order.customer),
                    "ordered_at": created_at,
                    "status": order.status.value,
                    "sku": item.sku,
                    "name": item.name,
                    "category": item.category,
                    "brand": item.brand,
                    "quantity": item.quantity,
                    "unit_price_minor": unit,
                    "amount_minor": unit * item.quantity,
                }
            )
        if order.customer in ids:
            digest = content_hash(order)
            prepared.append(
                _Prepared(
                    index=index,
                    client_id=order.id,
                    customer_id=ids[order.customer],
                    digest=digest,
                    row={
                        "order_id": order.id,
                        "customer_id": ids[order.customer],
                        "status": order.status.value,
                        "created_at": created_at,
                        "total_minor": total,
                        "content_hash": digest,
                    },
                    children=items,
                    explicit_time=order.created_at is not None,
                )
            )
    if errors:
        raise InvalidInput(errors)
    zone = monthly.kept_zone(session, claim=timezone)  # before the first order is written: nothing to build yet
    ingested = _apply(
        session,
        *ITEM_KEYS["orders"],
        prepared,
        child_table=table_of(OrderItem),
        child_key="order_pk",
        child_time_column="ordered_at",
        time_column="created_at",
        loc_of=loc_of,
    )
    summary.refresh_summaries(session, sorted(ingested.customer_ids))
    monthly.refresh_customers(session, zone, ingested.customer_ids, ingested.times)
    return ingested


def record_events(session: Session, clock: Clock, events: Sequence[EventIn], *, loc_prefix: Any = None) -> Ingested:
    loc_of = loc_prefix or (lambda index: ("items", index))
    errors: list[FieldError] = []
    _repeated_ids(events, loc_of, errors)
    ids = _resolve_customers(session, events, loc_of, errors)
    declared = event_definitions(session)
    now = clock.now()
    prepared: list[_Prepared] = []
    for index, event in enumerate(events):
        loc = loc_of(index)
        definition = declared.get(event.name)
        typed_rows: list[dict[str, Any]] = []
        for key, value_type_name in (definition.properties if definition else {}).items():
            if key not in event.properties or event.properties[key] is None:
                continue
            value_type = ValueType(value_type_name)
            try:
                coerced = values.coerce(value_type, event.properties[key])
            except ValueError as exc:
                errors.append(
                    FieldError((*loc, "properties", key), f"{exc} (declared {value_type.value} for {event.name!r})")
                )
                continue
            typed_rows.extend({"key": key, **row} for row in values.to_rows(value_type, coerced))
        if event.customer in ids:
            digest = content_hash(event)
            prepared.append(
                _Prepared(
                    index=index,
                    client_id=event.id,
                    customer_id=ids[event.customer],
                    digest=digest,
                    row={
                        "event_id": event.id,
                        "customer_id": ids[event.customer],
                        "name": event.name,
                        "occurred_at": event.timestamp or now,
                        "properties": event.properties,
                        "content_hash": digest,
                    },
                    children=typed_rows,
                    explicit_time=event.timestamp is not None,
                )
            )
    if errors:
        raise InvalidInput(errors)
    return _apply(
        session,
        *ITEM_KEYS["events"],
        prepared,
        child_table=table_of(EventPropertyValue),
        child_key="event_pk",
        time_column="occurred_at",
        loc_of=loc_of,
    )


def record_loyalty(
    session: Session,
    clock: Clock,
    exponent: int,
    transactions: Sequence[LoyaltyTransactionIn],
    *,
    loc_prefix: Any = None,
) -> Ingested:
    loc_of = loc_prefix or (lambda index: ("items", index))
    errors: list[FieldError] = []
    _repeated_ids(transactions, loc_of, errors)
    ids = _resolve_customers(session, transactions, loc_of, errors)
    now = clock.now()
    prepared: list[_Prepared] = []
    for index, txn in enumerate(transactions):
        loc = loc_of(index)
        row: dict[str, Any] = {
            column: None
            for column in (
                "program",
                "entry",
                "points",
                "tier",
                "reward",
                "referred",
                "gift_card",
                "operation",
                "amount_minor",
            )
        }
        row.update(
            transaction_id=txn.id,
            customer_id=ids.get(txn.customer),
            type=txn.type,
            reason=txn.reason,
            occurred_at=txn.timestamp or now,
            content_hash=content_hash(txn),
        )
        if isinstance(txn, PointsTransactionIn):
            if txn.entry is not PointsEntry.adjust and txn.points < 0:
                errors.append(
                    FieldError((*loc, "points"), f"must be positive for {txn.entry.value} (the entry gives the sign)")
                )
            sign = -1 if txn.entry in (PointsEntry.spend, PointsEntry.expire) else 1
            row.update(program=txn.program, entry=txn.entry.value, points=sign * txn.points)
        elif isinstance(txn, GiftCardTransactionIn):
            minor = _minor(txn.amount, exponent, (*loc, "amount"), errors)
            if txn.operation is not GiftCardOperation.adjust and minor <= 0:
                errors.append(FieldError((*loc, "amount"), f"must be positive for {txn.operation.value}"))
            if minor == 0:
                errors.append(FieldError((*loc, "amount"), "must not be zero"))
            sign = -1 if txn.operation is GiftCardOperation.redeem else 1
            row.update(gift_card=txn.gift_card, operation=txn.operation.value, amount_minor=sign * minor)
        else:
            row.update(
                {key: value for key, value in txn.model_dump(include={"program", "tier", "reward", "referred"}).items()}
            )
        if txn.customer in ids:
            prepared.append(
                _Prepared(
                    index=index,
                    client_id=txn.id,
                    customer_id=ids[txn.customer],
                    digest=row["content_hash"],
                    row=row,
                    explicit_time=txn.timestamp is not None,
                )
            )
    if errors:
        raise InvalidInput(errors)
    ingested = _apply(
        session,
        *ITEM_KEYS["loyalty"],
        prepared,
        child_table=None,
        child_key="",
        time_column="occurred_at",
        loc_of=loc_of,
    )
    summary.refresh_summaries(session, sorted(ingested.customer_ids))
    return ingested


@dataclass
class PointsAdjustment:
    customer_id: int
    transaction_id: str
    program: str
    points: int
    balance: int
    reason: str
    ingested: Ingested  # the ledger write, for live membership

    def out(self, changes: dict[str, tuple[int, int]]) -> PointsAdjusted:
        """The answer, with the segments this customer entered and left (from the re-evaluation's counts)."""
        return PointsAdjusted(
            transaction_id=self.transaction_id, program=self.program, points=self.points, balance=self.balance,
            reason=self.reason, entered=sorted(s for s, (e, _) in changes.items() if e),
            exited=sorted(s for s, (_, x) in changes.items() if x),
        )  # fmt: skip


def points_balance(session: Session, customer_id: int, program: str) -> int:
    balance = session.scalar(
        sa.select(CustomerProgramSummary.points_balance).where(
            CustomerProgramSummary.customer_id == customer_id, CustomerProgramSummary.program == program
        )
    )
    return int(balance or 0)


def adjust_points(
    session: Session, clock: Clock, exponent: int, source_id: str, body: PointsAdjustmentIn, actor: str
) -> PointsAdjustment:
    """A manual ``adjust`` entry in the ledger. Removing more points than the balance holds is refused."""
    customer_id = customer_id_for(session, source_id)
    before = points_balance(session, customer_id, body.program)
    if before + body.points < 0:
        raise Conflict(f"cannot remove {-body.points} points of {body.program!r}: the balance is {before}")
    transaction_id = f"adj_{uuid.uuid4().hex}"
    entry = PointsTransactionIn(
        id=transaction_id, customer=source_id, type="points", program=body.program, entry=PointsEntry.adjust,
        points=body.points, reason=body.reason,
    )  # fmt: skip
    ingested = record_loyalty(session, clock, exponent, [entry], loc_prefix=lambda _i: ())
    balance = points_balance(session, customer_id, body.program)
    audit.record(
        session, clock.now(), actor, "points.adjust", "customer", source_id,
        before={"program": body.program, "balance": before},
        after={"program": body.program, "balance": balance, "points": body.points, "reason": body.reason,
               "transaction_id": transaction_id},
    )  # fmt: skip
    return PointsAdjustment(customer_id, transaction_id, body.program, body.points, balance, body.reason, ingested)


def _minor(amount: Decimal, exponent: int, loc: Loc, errors: list[FieldError]) -> int:
    try:
        return to_minor(amount, exponent)
    except ValueError as exc:
        errors.append(FieldError(loc, f"{exc} (amounts are in the project's currency)"))
        return 0


# --- a member's activity (the member view) --------------------------------------------------------------------------


def _page(session: Session, query: sa.Select[Any], limit: int, offset: int) -> tuple[list[Any], int]:
    total = int(session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())) or 0)
    return list(session.scalars(query.limit(limit).offset(offset))), total


def customer_orders(
    session: Session, source_id: str, exponent: int, limit: int, offset: int
) -> tuple[list[OrderOut], int]:
    customer_id = customer_id_for(session, source_id)
    orders, total = _page(
        session,
        sa.select(Order).where(Order.customer_id == customer_id).order_by(Order.created_at.desc(), Order.id.desc()),
        limit,
        offset,
    )
    items: dict[int, list[OrderItemOut]] = defaultdict(list)
    if orders:
        rows = session.scalars(
            sa.select(OrderItem).where(OrderItem.order_pk.in_([o.id for o in orders])).order_by(OrderItem.id)
        )
        for item in rows:
            items[item.order_pk].append(
                OrderItemOut(
                    sku=item.sku, name=item.name, category=item.category, brand=item.brand, quantity=item.quantity,
                    unit_price=from_minor(item.unit_price_minor, exponent),
                    amount=from_minor(item.amount_minor, exponent),
                )
            )
    return [
        OrderOut(id=o.order_id, status=o.status, created_at=o.created_at, total=from_minor(o.total_minor, exponent),
                 items=items[o.id])
        for o in orders
    ], total


def customer_events(
    session: Session, source_id: str, name: str | None, limit: int, offset: int
) -> tuple[list[EventOut], int]:
    customer_id = customer_id_for(session, source_id)
    query = sa.select(Event).where(Event.customer_id == customer_id)
    if name:
        query = query.where(Event.name == name)
    events, total = _page(session, query.order_by(Event.occurred_at.desc(), Event.id.desc()), limit, offset)
    return [EventOut(id=e.event_id, name=e.name, occurred_at=e.occurred_at, properties=e.properties or {})
            for e in events], total  # fmt: skip


def customer_ledger(
    session: Session, source_id: str, exponent: int, program: str | None, limit: int, offset: int
) -> tuple[list[LedgerEntryOut], int]:
    """The loyalty journal: points, tiers, redemptions, referrals, gift cards."""
    customer_id = customer_id_for(session, source_id)
    query = sa.select(LoyaltyTransaction).where(LoyaltyTransaction.customer_id == customer_id)
    if program:
        query = query.where(LoyaltyTransaction.program == program)
    order = (LoyaltyTransaction.occurred_at.desc(), LoyaltyTransaction.id.desc())
    entries, total = _page(session, query.order_by(*order), limit, offset)
    return [
        LedgerEntryOut(
            id=t.transaction_id, type=t.type, occurred_at=t.occurred_at, program=t.program, entry=t.entry,
            points=t.points, tier=t.tier, reward=t.reward, referred=t.referred, gift_card=t.gift_card,
            operation=t.operation, amount=None if t.amount_minor is None else from_minor(t.amount_minor, exponent),
            reason=t.reason,
        )
        for t in entries
    ], total
