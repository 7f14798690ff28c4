"""Tables of the customer data store.

Money columns end in ``_minor`` and hold integer minor units of the project's currency. Instants are UTCDateTime.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cohorta.db import Base, UTCDateTime

# SQLite only aliases the rowid for a column declared exactly INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class ValueType(StrEnum):
    """Types of custom attributes and declared event properties."""

    string = "string"
    number = "number"
    boolean = "boolean"
    date = "date"
    datetime = "datetime"
    string_list = "list"


class OrderStatus(StrEnum):
    created = "created"
    paid = "paid"
    fulfilled = "fulfilled"
    cancelled = "cancelled"
    refunded = "refunded"


# Orders in these statuses count as purchases: in the summary and, by default, in order activity conditions.
COUNTED_ORDER_STATUSES: tuple[str, ...] = (OrderStatus.paid.value, OrderStatus.fulfilled.value)


class LoyaltyType(StrEnum):
    points = "points"
    tier = "tier"
    redemption = "redemption"
    referral = "referral"
    gift_card = "gift_card"


class PointsEntry(StrEnum):
    earn = "earn"
    spend = "spend"
    adjust = "adjust"
    expire = "expire"


class GiftCardOperation(StrEnum):
    issue = "issue"
    load = "load"
    redeem = "redeem"
    adjust = "adjust"


class ProjectSetting(Base):
    """Small project-wide settings changed at run time (not deployment configuration)."""

    __tablename__ = "project_settings"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(sa.JSON, nullable=False)


class Customer(Base):
    __tablename__ = "customers"
    # Anniversary rules ("birthday within 7 days") compare the birthdate's month and day (``MonthDay`` in
    # cohorta.rules.semantics): this index on that expression lets SQLite seek them instead of computing it for every
    # customer (732 -> 52 ms at 1,000,000). PostgreSQL cannot index TO_CHAR (not immutable): it scans. Partial: a
    # full index was the narrowest over every customer, and SQLite then walked it, in month-day order, for scans of
    # all customer ids (an anti join: 548 -> 908 ms).
    __table_args__ = (
        sa.Index(
            "ix_customers_birth_month_day", sa.text("strftime('%m%d', birthdate)"),
            sqlite_where=sa.text("birthdate IS NOT NULL"),
        ).ddl_if(dialect="sqlite"),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[str] = mapped_column(sa.String(255), unique=True, nullable=False)
    first_name: Mapped[str | None] = mapped_column(sa.String(255))
    last_name: Mapped[str | None] = mapped_column(sa.String(255))
    email: Mapped[str | None] = mapped_column(sa.String(320), index=True)
    phone: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    birthdate: Mapped[date | None] = mapped_column(sa.Date)
    gender: Mapped[str | None] = mapped_column(sa.String(32))
    postal_code: Mapped[str | None] = mapped_column(sa.String(32))
    city: Mapped[str | None] = mapped_column(sa.String(255))
    state: Mapped[str | None] = mapped_column(sa.String(255))
    country: Mapped[str | None] = mapped_column(sa.String(2), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    source: Mapped[str | None] = mapped_column(sa.String(64))
    source_metadata: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON(none_as_null=True))
    store: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    company: Mapped[str | None] = mapped_column(sa.String(255))
    loyalty_member: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    member_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class TypedValueColumns:
    """One typed value per row; lists are one row per element (``position`` 0, 1, ...).

    A typed table rather than JSON, so every engine Ibis targets (SQLite, PostgreSQL, DuckDB, Polars, Spark) can
    filter on it with the same expression.
    """

    position: Mapped[int] = mapped_column(sa.Integer, primary_key=True, default=0)
    value_string: Mapped[str | None] = mapped_column(sa.String(1024))
    # Number attributes are IEEE doubles in every engine (money never is: it has its own integer columns).
    value_number: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    value_boolean: Mapped[bool | None] = mapped_column(sa.Boolean)
    value_date: Mapped[date | None] = mapped_column(sa.Date)
    value_datetime: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AttributeDefinition(Base):
    __tablename__ = "attribute_definitions"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    label: Mapped[str | None] = mapped_column(sa.String(255))
    description: Mapped[str | None] = mapped_column(sa.String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class CustomerAttributeValue(TypedValueColumns, Base):
    __tablename__ = "customer_attribute_values"
    # Partial indexes: a row holds one typed value, so it enters only the index of its own type. Each ends with
    # customer_id so a rule's "which customers have this attribute value" reads the index alone. Strings are
    # indexed lowercased: rules compare text case-insensitively unless told otherwise (LOWER(value) IN (...)).
    # Without rowid on SQLite (as every table keyed by its composite primary key): one b-tree, not table + key index.
    __table_args__ = (*(
        sa.Index(
            f"ix_customer_attribute_values_name_{name}",
            "name",
            value,
            "customer_id",
            sqlite_where=sa.text(f"{column} IS NOT NULL"),
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
        )
        for name, column, value in (
            ("lower_string", "value_string", sa.text("lower(value_string)")),
            *((column.removeprefix("value_"), column, column)
              for column in ("value_number", "value_boolean", "value_date", "value_datetime")),
        )
    ), {"sqlite_with_rowid": False})

    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)


class EventDefinition(Base):
    __tablename__ = "event_definitions"

    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    label: Mapped[str | None] = mapped_column(sa.String(255))
    description: Mapped[str | None] = mapped_column(sa.String(2000))
    # {"property name": "<ValueType>"}
    properties: Mapped[dict[str, str]] = mapped_column(sa.JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        sa.Index("ix_orders_customer_created", "customer_id", "created_at"),
        # Covers a rule's "orders in a window" (count, sum, average of totals) without reading the table.
        sa.Index("ix_orders_created_covering", "created_at", "customer_id", "status", "total_minor"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(sa.String(255), unique=True, nullable=False)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    total_minor: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    # SHA-256 of the order as received: the same id with the same content is a duplicate, other content an update.
    content_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)


class CustomerMonth(Base):
    """A customer's counted orders and their revenue in one calendar month (local, in the zone the month figures
    were built in: ``cohorta.membership.monthly``). A row exists only for a month with at least one order."""

    __tablename__ = "customer_months"
    __table_args__ = {"sqlite_with_rowid": False}

    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    month: Mapped[date] = mapped_column(sa.Date, primary_key=True, doc="The first day of the month")
    orders: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    revenue_minor: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)


class OrderItem(Base):
    """An order line. Customer, time and status are copied from the order so item rules need no join."""

    __tablename__ = "order_items"
    __table_args__ = (
        sa.Index("ix_order_items_customer_ordered", "customer_id", "ordered_at"),
        # Covers a rule's "items in a window" filtered by status, brand or category, measured by quantity or amount.
        sa.Index(
            "ix_order_items_ordered_covering",
            "ordered_at", "customer_id", "status", "brand", "category", "quantity", "amount_minor",
        ),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_pk: Mapped[int] = mapped_column(sa.ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False)
    ordered_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    sku: Mapped[str] = mapped_column(sa.String(255), nullable=False, index=True)
    name: Mapped[str | None] = mapped_column(sa.String(512))
    category: Mapped[str | None] = mapped_column(sa.String(255))
    brand: Mapped[str | None] = mapped_column(sa.String(255))
    quantity: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    unit_price_minor: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    amount_minor: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        sa.Index("ix_events_customer_name_occurred", "customer_id", "name", "occurred_at"),
        # Covers a rule's "events of this name in a window", counted per customer, without reading the table.
        sa.Index("ix_events_name_occurred_customer", "name", "occurred_at", "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(sa.String(255), unique=True, nullable=False)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    properties: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False, default=dict)
    content_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)


class EventPropertyValue(TypedValueColumns, Base):
    """Declared event properties, typed, so rules can filter events by them on every engine."""

    __tablename__ = "event_property_values"
    __table_args__ = {"sqlite_with_rowid": False}

    event_pk: Mapped[int] = mapped_column(sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)


class LoyaltyTransaction(Base):
    """The loyalty journal: points entries, tier changes, redemptions, referrals and gift-card operations.

    One table so that the client's transaction ``id`` is unique across every kind. ``points`` is signed (spend
    and expire are stored negative); ``amount_minor`` is signed money for gift cards (redeem negative).
    """

    __tablename__ = "loyalty_transactions"
    # Cover a rule's points and redemptions (by type, window, program and entry, summing points): one customer's
    # rows (live re-evaluation), and every customer's rows of one type in customer order (a segment's recompute
    # groups them by customer without sorting; migration 0018).
    __table_args__ = (
        sa.Index(
            "ix_loyalty_transactions_customer_type_occurred_covering",
            "customer_id", "type", "occurred_at", "program", "entry", "points",
        ),
        sa.Index(
            "ix_loyalty_transactions_type_customer_covering",
            "type", "customer_id", "occurred_at", "program", "entry", "points",
        ),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(sa.String(255), unique=True, nullable=False)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False)
    type: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    program: Mapped[str | None] = mapped_column(sa.String(64))
    entry: Mapped[str | None] = mapped_column(sa.String(16))
    points: Mapped[int | None] = mapped_column(sa.BigInteger)
    tier: Mapped[str | None] = mapped_column(sa.String(64))
    reward: Mapped[str | None] = mapped_column(sa.String(255))
    referred: Mapped[str | None] = mapped_column(sa.String(255))
    gift_card: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    operation: Mapped[str | None] = mapped_column(sa.String(16))
    amount_minor: Mapped[int | None] = mapped_column(sa.BigInteger)
    reason: Mapped[str | None] = mapped_column(sa.String(512))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    content_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)


class CustomerSummary(Base):
    """Aggregates kept current in the same transaction as every write that changes them.

    Rules and analytics read these instead of re-aggregating raw rows.
    """

    __tablename__ = "customer_summaries"
    __table_args__ = (
        sa.Index("ix_customer_summaries_total_spent", "total_spent_minor"),
        sa.Index("ix_customer_summaries_last_order_at", "last_order_at"),
    )

    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    order_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    total_spent_minor: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    # Rounded half-up to the minor unit; NULL when there is no order.
    average_order_value_minor: Mapped[int | None] = mapped_column(sa.BigInteger)
    first_order_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_order_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_order_amount_minor: Mapped[int | None] = mapped_column(sa.BigInteger)
    points_balance: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    redemption_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    referral_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    gift_card_balance_minor: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)


class CustomerProgramSummary(Base):
    """Points balance and current tier per loyalty program."""

    __tablename__ = "customer_program_summaries"
    __table_args__ = (sa.Index("ix_customer_program_summaries_program_tier", "program", "tier"),)

    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    program: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    points_balance: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    tier: Mapped[str | None] = mapped_column(sa.String(64))


class CustomerGroupAssignment(Base):
    """A customer group assigned by hand. Groups inherited from segments are not stored: they follow membership."""

    __tablename__ = "customer_group_assignments"

    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    group: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
