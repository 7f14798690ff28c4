"""API shapes of webhook subscriptions and their delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cohorta.webhooks.models import EventType

Url = Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2048)]
Secret = Annotated[str, StringConstraints(min_length=16, max_length=256)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubscriptionIn(Strict):
    url: Url
    event_types: list[EventType] = Field(min_length=1, max_length=3)
    segments: list[Annotated[str, StringConstraints(min_length=1, max_length=32)]] = Field(
        default_factory=list, max_length=100, description="Only these segments; empty: every segment"
    )
    secret: Secret | None = Field(default=None, description="Signing secret; generated (and shown once) when left out")
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    active: bool = True
    batch_size: int = Field(default=100, ge=1, le=1000, description="Events per request at most")


class SubscriptionPatch(Strict):
    url: Url | None = None
    event_types: list[EventType] | None = Field(default=None, min_length=1, max_length=3)
    segments: list[Annotated[str, StringConstraints(min_length=1, max_length=32)]] | None = Field(
        default=None, max_length=100
    )
    secret: Secret | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    active: bool | None = None
    batch_size: int | None = Field(default=None, ge=1, le=1000)


class SubscriptionOut(BaseModel):
    id: str
    url: str
    event_types: list[EventType]
    segments: list[str]
    description: str | None
    active: bool
    batch_size: int
    pending: int = Field(description="Events waiting to be delivered")
    dead: int = Field(description="Events given up on after the last retry")
    created_at: datetime
    created_by: str | None
    updated_at: datetime


class SubscriptionCreated(SubscriptionOut):
    secret: str | None = Field(description="The generated secret, shown once; null when you sent your own")


class DeliveryAttemptOut(BaseModel):
    id: int
    attempted_at: datetime
    events: int
    first_event_id: int
    last_event_id: int
    attempt: int
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    next_attempt_at: datetime | None
