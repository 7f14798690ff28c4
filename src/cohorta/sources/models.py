"""External segment sources, the segments imported from them, and the report of every sync."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cohorta.customers.models import BigId
from cohorta.db import Base, UTCDateTime


class SourceKind(StrEnum):
    csv = "csv"
    emarsys = "emarsys"
    json = "json"


class KeyField(StrEnum):
    """The customer field a remote key is matched against."""

    source_id = "source_id"
    email = "email"
    phone = "phone"


class SyncStatus(StrEnum):
    ok = "ok"
    failed = "failed"


class Source(Base):
    """A configured connection to another system. ``credentials`` is a Fernet token (never plain text)."""

    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(sa.String(2000))
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    key_field: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    config: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    credentials: Mapped[str | None] = mapped_column(sa.Text)
    credential_fields: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False, default=list)
    content: Mapped[str | None] = mapped_column(sa.Text)  # an uploaded CSV file
    active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    sync_period_seconds: Mapped[int | None] = mapped_column(sa.Integer)
    # The small-result guard: a result below guard_min_percent of the current members, when there are at least
    # guard_min_members, fails the sync; so does an empty result unless allow_empty.
    guard_min_members: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    guard_min_percent: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    allow_empty: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    created_by: Mapped[str | None] = mapped_column(sa.String(320))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_by: Mapped[str | None] = mapped_column(sa.String(320))


class SourceSegment(Base):
    """An external segment imported from a source: which remote list it mirrors, and its sync state. A sync claims the
    row (compare-and-set on ``version`` and ``claimed_until``) so two processes never sync it at once."""

    __tablename__ = "source_segments"

    segment_id: Mapped[str] = mapped_column(sa.ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True)
    source_id: Mapped[str] = mapped_column(sa.ForeignKey("sources.id"), nullable=False, index=True)
    remote_id: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    remote_name: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the last attempt's end
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)  # failures in a row
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the retry after a failure
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    claim_token: Mapped[str | None] = mapped_column(sa.String(32))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)


class SyncReport(Base):
    """One sync of one imported segment: what came, what changed, what failed."""

    __tablename__ = "source_sync_reports"
    __table_args__ = (sa.Index("ix_source_sync_reports_segment", "segment_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    segment_id: Mapped[str] = mapped_column(sa.ForeignKey("segments.id", ondelete="CASCADE"), nullable=False)
    source_id: Mapped[str] = mapped_column(sa.ForeignKey("sources.id", ondelete="CASCADE"), nullable=False)
    trigger: Mapped[str] = mapped_column(sa.String(16), nullable=False)  # schedule, manual, import
    actor: Mapped[str | None] = mapped_column(sa.String(320))
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    duration_ms: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    received: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    added: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    removed: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    unchanged: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    unmatched: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    skipped: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    unmatched_examples: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False, default=list)
    skipped_examples: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False, default=list)
    error: Mapped[str | None] = mapped_column(sa.Text)
    attempt: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
