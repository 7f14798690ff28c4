"""API shapes of sources, imports and sync reports. Credentials go in, never out: answers say which are stored."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cohorta.segments import schemas as segment_schemas
from cohorta.segments.schemas import GroupName, SegmentOut
from cohorta.sources.connectors.csv_file import MAX_CONTENT_BYTES

Name = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Description = Annotated[str, StringConstraints(max_length=2000)]
Kind = Literal["csv", "emarsys", "json"]
KeyFieldName = Literal["source_id", "email", "phone"]
Period = Annotated[int, Field(ge=300, le=31 * 86_400)]
Credential = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Content = Annotated[str, StringConstraints(max_length=MAX_CONTENT_BYTES)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceIn(Strict):
    name: Name
    description: Description | None = None
    kind: Kind
    key_field: KeyFieldName = Field(default="email", description="The customer field remote keys are matched to")
    config: dict[str, Any] = Field(default_factory=dict, description="The connector's settings (docs/sources.md)")
    credentials: dict[str, Credential] | None = Field(
        default=None, description="Secrets, stored encrypted (needs COHORTA_SECRET_KEY); never shown again"
    )
    content: Content | None = Field(default=None, description="csv: the uploaded file's text")
    active: bool = Field(default=True, description="Inactive: no scheduled syncs")
    sync_period_seconds: Period | None = Field(default=None, description="Default COHORTA_SOURCE_SYNC_PERIOD_SECONDS")
    guard_min_members: int = Field(default=100, ge=0, description="The small-result guard applies from this size")
    guard_min_percent: int = Field(
        default=50, ge=0, le=100, description="A result below this share of the members fails"
    )
    allow_empty: bool = Field(default=False, description="Accept an empty result for a segment that has members")


class SourcePatch(Strict):
    name: Name | None = None
    description: Description | None = None
    key_field: KeyFieldName | None = None
    config: dict[str, Any] | None = Field(default=None, description="Merged into the stored settings")
    credentials: dict[str, Credential] | None = Field(default=None, description="Replace them all; null: remove")
    content: Content | None = None
    active: bool | None = None
    sync_period_seconds: Period | None = None
    guard_min_members: int | None = Field(default=None, ge=0)
    guard_min_percent: int | None = Field(default=None, ge=0, le=100)
    allow_empty: bool | None = None


class SourceOut(BaseModel):
    id: str
    name: str
    description: str | None
    kind: Kind
    key_field: KeyFieldName
    config: dict[str, Any]
    has_credentials: bool
    credential_fields: list[str] = Field(description="Which credentials are stored (never their values)")
    content_bytes: int | None = Field(description="csv: the size of the uploaded file")
    active: bool
    sync_period_seconds: int = Field(description="Effective default period of its segments' syncs")
    guard_min_members: int
    guard_min_percent: int
    allow_empty: bool
    segments: int = Field(description="Segments imported from it")
    last_error: str | None
    last_error_at: datetime | None
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    updated_by: str | None


class ConnectionTestOut(BaseModel):
    ok: bool
    detail: str
    duration_ms: int


class RemoteSegmentOut(BaseModel):
    id: str
    name: str
    kind: str = Field(description="list or segment")
    size: int | None
    imported_as: str | None = Field(description="The segment already importing it, if any")


class ImportIn(Strict):
    remote_id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    name: Name | None = Field(default=None, description="Default: the remote name")
    description: Description | None = None
    team: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    status: Literal["active", "inactive"] = "active"
    customer_groups: list[GroupName] = Field(default_factory=list, max_length=50)
    sync_period_seconds: Period | None = Field(default=None, description="This segment's period; default the source's")
    sync: bool = Field(default=True, description="Sync at once, in this request (else the scheduler does, soon)")


class SyncIn(Strict):
    force: bool = Field(default=False, description="Apply a result the small-result guard would refuse")


class SyncReportOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    segment_id: str
    source_id: str
    trigger: str = Field(description="schedule, manual or import")
    actor: str | None
    status: Literal["ok", "failed"]
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    received: int = Field(description="Keys the source sent")
    added: int
    removed: int
    unchanged: int
    unmatched: int = Field(description="Keys that match no customer (or were empty)")
    unmatched_examples: list[str]
    skipped: int = Field(description="Matching customers who are not loyalty members: never added")
    skipped_examples: list[str]
    error: str | None
    attempt: int = Field(description="1, or the retry number after failures in a row")
    next_attempt_at: datetime | None = Field(description="When a failed sync is retried")


class SegmentSourceOut(BaseModel):
    """On an imported segment: where its members come from and how its syncs go."""

    source_id: str
    source_name: str
    kind: str
    remote_id: str
    remote_name: str
    key_field: str
    sync_period_seconds: int
    last_sync_at: datetime | None
    last_success_at: datetime | None
    next_sync_at: datetime | None
    failures: int = Field(description="Failed syncs in a row")
    error: str | None = Field(description="The last sync's error; null once a sync succeeds")
    syncing: bool
    last_report: SyncReportOut | None


class SegmentWithSourceOut(SegmentOut):
    source: SegmentSourceOut | None = Field(
        default=None, description="Imported segments: the source, the sync state and the latest sync report"
    )


# SegmentOut names models defined after it in its own module: resolve them there.
SegmentWithSourceOut.model_rebuild(_types_namespace={**vars(segment_schemas), **globals()})
