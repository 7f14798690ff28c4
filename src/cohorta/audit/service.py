"""Recording and querying the audit trail. Callers pass JSON-ready snapshots of the object before and after."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.orm import Session

from cohorta.audit.models import AuditEntry


def snapshot(model: BaseModel | None) -> dict[str, Any] | None:
    return None if model is None else model.model_dump(mode="json")


def record(
    session: Session,
    at: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | int,
    *,
    before: dict[str, Any] | BaseModel | None = None,
    after: dict[str, Any] | BaseModel | None = None,
) -> None:
    """Add an entry to the session; it commits (or rolls back) with the change it describes."""
    session.add(
        AuditEntry(
            at=at,
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            before=snapshot(before) if isinstance(before, BaseModel) else before,
            after=snapshot(after) if isinstance(after, BaseModel) else after,
        )
    )


def query(
    session: Session,
    *,
    actor: str | None,
    object_type: str | None,
    object_id: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[AuditEntry], int]:
    statement = sa.select(AuditEntry)
    for column, value in (
        (AuditEntry.actor, actor),
        (AuditEntry.object_type, object_type),
        (AuditEntry.object_id, object_id),
        (AuditEntry.action, action),
    ):
        if value is not None:
            statement = statement.where(column == value)
    if since is not None:
        statement = statement.where(AuditEntry.at >= since)
    if until is not None:
        statement = statement.where(AuditEntry.at < until)
    total = session.scalar(sa.select(sa.func.count()).select_from(statement.subquery())) or 0
    rows = session.scalars(statement.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit).offset(offset))
    return rows.all(), total
