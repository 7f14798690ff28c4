"""Unbound Ibis tables of the storage schema the batch compiler targets (column names are the store's)."""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

SCHEMAS: dict[str, dict[str, str]] = {
    "customers": {
        "id": "int64", "source_id": "string", "first_name": "string", "last_name": "string", "email": "string",
        "phone": "string", "birthdate": "date", "gender": "string", "postal_code": "string", "city": "string",
        "state": "string", "country": "string", "created_at": "timestamp", "source": "string", "store": "string",
        "company": "string", "loyalty_member": "boolean", "member_since": "timestamp",
    },
    "customer_attribute_values": {
        "customer_id": "int64", "name": "string", "position": "int32", "value_string": "string",
        "value_number": "float64", "value_boolean": "boolean", "value_date": "date", "value_datetime": "timestamp",
    },
    "customer_summaries": {
        "customer_id": "int64", "order_count": "int64", "total_spent_minor": "int64",
        "average_order_value_minor": "int64", "first_order_at": "timestamp", "last_order_at": "timestamp",
        "last_order_amount_minor": "int64", "points_balance": "int64", "redemption_count": "int64",
        "referral_count": "int64", "gift_card_balance_minor": "int64",
    },
    "customer_program_summaries": {
        "customer_id": "int64", "program": "string", "points_balance": "int64", "tier": "string",
    },
    "orders": {
        "id": "int64", "order_id": "string", "customer_id": "int64", "status": "string", "created_at": "timestamp",
        "total_minor": "int64",
    },
    "order_items": {
        "id": "int64", "order_pk": "int64", "customer_id": "int64", "ordered_at": "timestamp", "status": "string",
        "sku": "string", "name": "string", "category": "string", "brand": "string", "quantity": "int64",
        "unit_price_minor": "int64", "amount_minor": "int64",
    },
    "events": {
        "id": "int64", "event_id": "string", "customer_id": "int64", "name": "string", "occurred_at": "timestamp",
    },
    "event_property_values": {
        "event_pk": "int64", "key": "string", "position": "int32", "value_string": "string",
        "value_number": "float64", "value_boolean": "boolean", "value_date": "date", "value_datetime": "timestamp",
    },
    "loyalty_transactions": {
        "id": "int64", "customer_id": "int64", "type": "string", "program": "string", "entry": "string",
        "points": "int64", "tier": "string", "reward": "string", "referred": "string", "gift_card": "string",
        "operation": "string", "amount_minor": "int64", "reason": "string", "occurred_at": "timestamp",
    },
    "segment_members": {"segment_id": "string", "customer_id": "int64", "since": "timestamp"},
}  # fmt: skip

#: Column of an EAV row (attribute or event property) holding a value of each catalog type.
VALUE_COLUMN = {"string": "value_string", "country": "value_string", "list": "value_string",
                "number": "value_number", "integer": "value_number", "money": "value_number",
                "boolean": "value_boolean", "date": "value_date", "datetime": "value_datetime"}


@dataclass(frozen=True)
class Tables:
    """The tables a batch expression reads; by default unbound tables named as in the store."""

    customers: ir.Table
    customer_attribute_values: ir.Table
    customer_summaries: ir.Table
    customer_program_summaries: ir.Table
    orders: ir.Table
    order_items: ir.Table
    events: ir.Table
    event_property_values: ir.Table
    loyalty_transactions: ir.Table
    segment_members: ir.Table

    @classmethod
    def unbound(cls) -> Tables:
        return cls(**{name: ibis.table(schema, name=name) for name, schema in SCHEMAS.items()})


TABLES = Tables.unbound()
