"""Loyalty mechanisms that consume segments: earning rules, rewards, promotions, validation rules, distributions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cohorta.customers.models import BigId
from cohorta.db import Base, UTCDateTime


class CampaignKind(StrEnum):
    earning_rule = "earning_rule"
    reward = "reward"
    promotion = "promotion"
    validation_rule = "validation_rule"
    distribution = "distribution"


class CampaignStatus(StrEnum):
    draft = "draft"
    active = "active"
    paused = "paused"
    ended = "ended"


class TargetRole(StrEnum):
    include = "include"
    exclude = "exclude"


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.String(2000))
    kind: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    team: Mapped[str | None] = mapped_column(sa.String(64))
    included_groups: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False, default=list)
    excluded_groups: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False, default=list)
    # Distribution campaigns: where the audience goes ({"target": "webhook", "url": ...} or {"target": "file", ...}),
    # and how often (seconds; None = on demand only). The webhook secret is kept here and never returned.
    distribution: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON(none_as_null=True))
    distribution_period_seconds: Mapped[int | None] = mapped_column(sa.Integer)
    next_distribution_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    created_by: Mapped[str | None] = mapped_column(sa.String(320))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_by: Mapped[str | None] = mapped_column(sa.String(320))


class CampaignSegment(Base):
    """A segment a campaign targets (include) or leaves out (exclude). Indexed by segment for "where used"."""

    __tablename__ = "campaign_segments"
    __table_args__ = (sa.Index("ix_campaign_segments_segment", "segment_id"),)

    campaign_id: Mapped[str] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    segment_id: Mapped[str] = mapped_column(sa.ForeignKey("segments.id"), primary_key=True)
    role: Mapped[str] = mapped_column(sa.String(8), nullable=False)
    position: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)


class Delivery(Base):
    """One delivery of a distribution campaign's audience: its report."""

    __tablename__ = "campaign_deliveries"
    __table_args__ = (sa.Index("ix_campaign_deliveries_campaign", "campaign_id", "started_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False)
    trigger: Mapped[str] = mapped_column(sa.String(16), nullable=False)  # manual | schedule
    target: Mapped[str] = mapped_column(sa.String(16), nullable=False)  # webhook | file
    destination: Mapped[str] = mapped_column(sa.String(2048), nullable=False)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False)  # succeeded | failed
    recipients: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    batches: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    bytes: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int | None] = mapped_column(sa.Integer)
    actor: Mapped[str | None] = mapped_column(sa.String(320))
