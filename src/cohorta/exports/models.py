"""Background exports: large exports run as jobs with progress, and their file is downloaded when done."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cohorta.db import Base, UTCDateTime


class ExportJob(Base):
    __tablename__ = "export_jobs"
    __table_args__ = (sa.Index("ix_export_jobs_state", "state", "created_at"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    segment_id: Mapped[str] = mapped_column(sa.ForeignKey("segments.id", ondelete="CASCADE"), nullable=False)
    what: Mapped[str] = mapped_column(sa.String(16), nullable=False)  # members | orders | events | points
    format: Mapped[str] = mapped_column(sa.String(8), nullable=False)
    options: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)  # attributes, filter, from, to
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False)  # queued | running | done | failed
    rows_total: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    rows_written: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    bytes: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    path: Mapped[str | None] = mapped_column(sa.String(2048))
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    created_by: Mapped[str | None] = mapped_column(sa.String(320))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
