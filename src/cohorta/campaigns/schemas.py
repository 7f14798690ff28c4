"""API shapes of campaigns (loyalty mechanisms), eligibility answers and delivery reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from cohorta.campaigns.models import CampaignKind, CampaignStatus

Name = Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True)]
SegmentRef = Annotated[str, StringConstraints(min_length=1, max_length=32)]
Group = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=255)]
MAX_TARGETS = 100
MAX_CHECK_CUSTOMERS = 1000
MAX_CHECK_CAMPAIGNS = 100


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DistributionIn(Strict):
    """Where a distribution campaign delivers its audience (customer source ids)."""

    target: Literal["webhook", "file"]
    url: Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2048)] | None = Field(
        default=None, description="webhook: the receiver (POST, JSON batches, HMAC-SHA256 signed)"
    )
    secret: Annotated[str, StringConstraints(min_length=16, max_length=256)] | None = Field(
        default=None,
        description="webhook: the signing secret; required the first time, kept when left out later. Write-only.",
    )
    format: Literal["csv", "jsonl"] = Field(default="csv", description="file: the file format")
    batch_size: int = Field(default=1000, ge=1, le=10_000, description="webhook: customers per request")
    period_seconds: int | None = Field(default=None, ge=60, description="Deliver on this schedule; null: on demand")

    @model_validator(mode="after")
    def _target_fields(self) -> DistributionIn:
        if self.target == "webhook" and self.url is None:
            raise ValueError("a webhook distribution needs a url")
        if self.target == "file" and self.url is not None:
            raise ValueError("a file distribution has no url")
        return self


class CampaignFields(Strict):
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    team: Annotated[str, StringConstraints(max_length=64)] | None = None
    included_segments: list[SegmentRef] | None = Field(default=None, max_length=MAX_TARGETS)
    excluded_segments: list[SegmentRef] | None = Field(default=None, max_length=MAX_TARGETS)
    included_groups: list[Group] | None = Field(default=None, max_length=MAX_TARGETS)
    excluded_groups: list[Group] | None = Field(default=None, max_length=MAX_TARGETS)
    distribution: DistributionIn | None = None


class CampaignIn(CampaignFields):
    name: Name
    kind: CampaignKind
    status: Literal["draft", "active"] = "draft"


class CampaignPatch(CampaignFields):
    name: Name | None = None


class TargetSegment(BaseModel):
    id: str
    name: str
    status: str


class DistributionOut(BaseModel):
    target: str
    url: str | None
    has_secret: bool
    format: str
    batch_size: int
    period_seconds: int | None
    next_at: datetime | None


class CampaignOut(BaseModel):
    id: str
    name: str
    description: str | None
    kind: CampaignKind
    status: CampaignStatus
    team: str | None
    included_segments: list[TargetSegment]
    excluded_segments: list[TargetSegment]
    included_groups: list[str]
    excluded_groups: list[str]
    distribution: DistributionOut | None
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    updated_by: str | None


class CampaignPage(BaseModel):
    items: list[CampaignOut]
    total: int


class Decider(BaseModel):
    type: Literal["segment", "group", "campaign", "everyone"]
    id: str | None = None
    name: str | None = None
    role: Literal["include", "exclude"] | None = None


class EligibilityOut(BaseModel):
    campaign_id: str
    source_id: str
    eligible: bool
    reason: str
    decided_by: list[Decider]
    error: str | None = Field(default=None, description="Batch answers: why this pair could not be checked")


class EligibilityCheckIn(Strict):
    customers: list[Identifier] = Field(min_length=1, max_length=MAX_CHECK_CUSTOMERS)
    campaigns: list[SegmentRef] = Field(min_length=1, max_length=MAX_CHECK_CAMPAIGNS)


class EligibilityCheckOut(BaseModel):
    results: list[EligibilityOut]


class DeliveryOut(BaseModel):
    id: int
    campaign_id: str
    trigger: str
    target: str
    destination: str
    status: str
    recipients: int
    batches: int
    attempts: int
    bytes: int
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    actor: str | None
