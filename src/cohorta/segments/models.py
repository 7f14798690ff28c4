"""Segment definitions, their versions, stored membership and its history."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cohorta.customers.models import BigId
from cohorta.db import Base, UTCDateTime


class SegmentType(StrEnum):
    dynamic = "dynamic"  # members are the customers matching the rule, kept current
    static = "static"  # a frozen list, changed only by explicit add and remove
    external = "external"  # members set by another system (API or a source)


class SegmentStatus(StrEnum):
    active = "active"
    inactive = "inactive"
    archived = "archived"


class RefreshState(StrEnum):
    idle = "idle"
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class ChangeCause(StrEnum):
    data = "data"
    time = "time"
    definition = "definition"
    manual = "manual"
    sync = "sync"
    archive = "archive"


class Segment(Base):
    __tablename__ = "segments"
    __table_args__ = (
        # A name is unique among segments that are not archived (an archived one keeps its name for reports).
        sa.Index(
            "uq_segments_live_name",
            "name",
            unique=True,
            sqlite_where=sa.text("status != 'archived'"),
            postgresql_where=sa.text("status != 'archived'"),
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.String(2000))
    type: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    rule: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON(none_as_null=True))
    rule_text: Mapped[str | None] = mapped_column(sa.Text)
    timezone: Mapped[str | None] = mapped_column(sa.String(64))
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    store: Mapped[str | None] = mapped_column(sa.String(255))
    team: Mapped[str | None] = mapped_column(sa.String(64))
    customer_groups: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False, default=list)
    sync_period_seconds: Mapped[int | None] = mapped_column(sa.Integer)
    version: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1)
    member_count: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    created_by: Mapped[str | None] = mapped_column(sa.String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_by: Mapped[str | None] = mapped_column(sa.String(255))
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last recompute (definition change, refresh or safety net).
    refresh_state: Mapped[str] = mapped_column(sa.String(16), nullable=False, default=RefreshState.idle.value)
    refresh_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refresh_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refresh_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refresh_duration_ms: Mapped[int | None] = mapped_column(sa.Integer)
    refresh_entered: Mapped[int | None] = mapped_column(sa.BigInteger)
    refresh_exited: Mapped[int | None] = mapped_column(sa.BigInteger)
    refresh_error: Mapped[str | None] = mapped_column(sa.Text)
    refresh_attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    # Why the last recompute ran: definition (create, edit, activate), refresh (asked for), safety_net (periodic).
    refresh_reason: Mapped[str | None] = mapped_column(sa.String(16))
    # The last safety-net recompute: members it had to add or remove. Non-zero means live updates missed something.
    drift_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    drift_entered: Mapped[int | None] = mapped_column(sa.BigInteger)
    drift_exited: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Statistics of the members, kept with membership: entries and exits adjust the sums at once; a periodic recount
    # (and every recompute) makes them exact again as the members' own figures change. Averages are derived from
    # the sums so that the segment list can filter and sort on them.
    stats_orders: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0, server_default="0")
    stats_spent_minor: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0, server_default="0")
    stats_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    avg_transaction_value_minor: Mapped[int | None] = mapped_column(sa.BigInteger)
    avg_transactions: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    avg_spending_minor: Mapped[int | None] = mapped_column(sa.BigInteger)
    # The members' predicted CLV summed (customer_clv); null while no member has one (no model scored yet).
    stats_clv_minor: Mapped[int | None] = mapped_column(sa.BigInteger)
    avg_clv_minor: Mapped[int | None] = mapped_column(sa.BigInteger)  # predicted 12-month CLV; null until modelled
    # Static segments: SHA-256 of the sorted member ids, to refuse a second static segment with the same members.
    list_digest: Mapped[str | None] = mapped_column(sa.String(64), index=True)


class SegmentVersion(Base):
    """Every change of rule or name makes a version; membership changes name the version that caused them."""

    __tablename__ = "segment_versions"

    segment_id: Mapped[str] = mapped_column(sa.ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    rule: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON(none_as_null=True))
    rule_text: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    created_by: Mapped[str | None] = mapped_column(sa.String(255))
    restored_from: Mapped[int | None] = mapped_column(sa.Integer)


def _membership_keys_sqlite_only() -> tuple[sa.ForeignKeyConstraint, ...]:
    """The foreign keys of the membership tables written in bulk (members, list entries), on SQLite only.

    On PostgreSQL each inserted row's check locks its parent row (``SELECT ... FOR KEY SHARE``): 1.4 of the 2.5 s
    of writing a 171,341-customer list at 1,000,000 customers went to them (migration 0016). Deleting a customer or
    a segment deletes these rows explicitly (``customers.service.delete_customer``, ``segments.service.
    delete_segment``), so nothing depends on the cascade; SQLite checks in process, cheaply, and keeps them."""
    return (
        sa.ForeignKeyConstraint(["segment_id"], ["segments.id"], ondelete="CASCADE").ddl_if(dialect="sqlite"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE").ddl_if(dialect="sqlite"),
    )


class SegmentMember(Base):
    __tablename__ = "segment_members"
    __table_args__ = (
        *_membership_keys_sqlite_only(),
        # a customer's memberships from the index alone (migration 0017)
        sa.Index("ix_segment_members_customer", "customer_id", "segment_id"),
        {"sqlite_with_rowid": False},
    )

    segment_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class SegmentMonth(Base):
    """The sums of the current members' ``customer_months`` for one month: kept with membership so the analytics'
    month-by-month figures read one row per month (``cohorta.membership.monthly``)."""

    __tablename__ = "segment_months"
    __table_args__ = {"sqlite_with_rowid": False}

    segment_id: Mapped[str] = mapped_column(sa.ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True)
    month: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    orders: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    revenue_minor: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    buyers: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, doc="Members with an order in the month")


class SegmentSizeChange(Base):
    """Entries and exits per segment and quarter of an hour (UTC): the size over time without reading every
    membership change (a million-member recompute is a million of them). Every zone's offset is a whole number of
    quarters, so local days are unions of these."""

    __tablename__ = "segment_size_changes"
    __table_args__ = {"sqlite_with_rowid": False}

    segment_id: Mapped[str] = mapped_column(sa.ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True)
    quarter: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, doc="Start of the quarter hour")
    entered: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    exited: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)


class MembershipChange(Base):
    """One entry or exit, with its cause and the definition version in force."""

    __tablename__ = "segment_membership_history"
    # A segment's changes are read newest first (occurred_at, then id). SQLite's index ends with the rowid, which is
    # id; PostgreSQL's needs id spelled out, or it sorts every change of the segment (migration 0015).
    __table_args__ = (
        sa.Index("ix_membership_history_segment_time", "segment_id", "occurred_at").ddl_if(dialect="sqlite"),
        sa.Index(
            "ix_membership_history_segment_time_id", "segment_id", "occurred_at", "id"
        ).ddl_if(dialect="postgresql"),
        sa.Index("ix_membership_history_customer_time", "customer_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    segment_id: Mapped[str] = mapped_column(sa.ForeignKey("segments.id", ondelete="CASCADE"), nullable=False)
    # Not a foreign key: the history of an erased customer's membership is deleted with them explicitly.
    customer_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    entered: Mapped[bool] = mapped_column(sa.Boolean, nullable=False)
    cause: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    version: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class SegmentListEntry(Base):
    """The explicit list of a static or external segment. Effective membership (``segment_members``) is this list
    while the segment is active and inside its start/expiry window, so closing a window never loses the list."""

    __tablename__ = "segment_list_entries"
    __table_args__ = (*_membership_keys_sqlite_only(), sa.Index("ix_segment_list_entries_customer", "customer_id"))

    segment_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class SegmentWakeup(Base):
    """The next instant a customer's answer to a time-dependent rule can change with no new data (a relative date
    passing, activity leaving a window, a calendar boundary). The scheduler re-evaluates them then."""

    __tablename__ = "segment_wakeups"
    __table_args__ = (sa.Index("ix_segment_wakeups_due", "due_at"),)

    segment_id: Mapped[str] = mapped_column(sa.ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
