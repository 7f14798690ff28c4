"""Webhook subscriptions, their transactional outbox and the log of delivery attempts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cohorta.customers.models import BigId
from cohorta.db import Base, UTCDateTime


class EventType(StrEnum):
    entered = "segment.entered"
    exited = "segment.exited"
    status_changed = "segment.status_changed"


class OutboxState(StrEnum):
    pending = "pending"
    delivered = "delivered"
    dead = "dead"  # gave up after the last retry; kept for the log


class Subscription(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    url: Mapped[str] = mapped_column(sa.String(2048), nullable=False)
    secret: Mapped[str] = mapped_column(sa.String(256), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.String(2000))
    event_types: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False)
    segment_ids: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False, default=list)  # empty: every segment
    active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    batch_size: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=100)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    created_by: Mapped[str | None] = mapped_column(sa.String(320))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class OutboxEvent(Base):
    """One notification for one subscription, written in the transaction of the change it reports: a committed change
    always has its row, a rolled-back one never does. The dispatcher sends pending rows in id order, in batches."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (sa.Index("ix_webhook_outbox_pending", "subscription_id", "state", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(
        sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), nullable=False
    )
    event_type: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, default=OutboxState.pending.value)
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveryAttempt(Base):
    """One POST to a subscriber: what was sent, what came back."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (sa.Index("ix_webhook_deliveries_subscription", "subscription_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(
        sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), nullable=False
    )
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    events: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    first_event_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    last_event_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    attempt: Mapped[int] = mapped_column(sa.Integer, nullable=False)  # the events' attempt number
    ok: Mapped[bool] = mapped_column(sa.Boolean, nullable=False)
    status_code: Mapped[int | None] = mapped_column(sa.Integer)
    error: Mapped[str | None] = mapped_column(sa.Text)
    duration_ms: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when it failed and will be retried
