"""The audit trail over HTTP (admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel

from cohorta.audit import service
from cohorta.deps import MAX_OFFSET, AdminDep, SessionDep

router = APIRouter(tags=["audit"])


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    total: int


@router.get("/audit", response_model=AuditPage)
def audit_log(
    session: SessionDep,
    principal: AdminDep,
    actor: Annotated[str | None, Query(max_length=320, description="Email, token:<name> or admin-token")] = None,
    object_type: Annotated[str | None, Query(max_length=32, description="segment, campaign, user, team, ...")] = None,
    object_id: Annotated[str | None, Query(max_length=255)] = None,
    action: Annotated[str | None, Query(max_length=64, description="e.g. segment.update")] = None,
    since: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    until: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> AuditPage:
    """Who changed what and when, newest first, with the object before and after."""
    rows, total = service.query(
        session, actor=actor, object_type=object_type, object_id=object_id, action=action, since=since, until=until,
        limit=limit, offset=offset,
    )  # fmt: skip
    return AuditPage(items=[AuditEntryOut.model_validate(r, from_attributes=True) for r in rows], total=total)
