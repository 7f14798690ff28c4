"""HTTP routes of exports: a segment's members or their activity, streamed as CSV, JSON Lines or Parquet."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime

from cohorta.deps import ClockDep, ReaderDep, ReadSessionDep, SettingsDep, in_sight
from cohorta.exports import service
from cohorta.segments import service as segments

router = APIRouter(tags=["exports"], dependencies=[Depends(in_sight("segment_id", segments.get_segment))])
FormatQuery = Annotated[service.Format, Query(alias="format", description="csv, jsonl or parquet")]


def _streamed(export: service.Export, fmt: service.Format, filename: str) -> StreamingResponse:
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}.{fmt}"',
        "X-Total-Rows": str(export.total),
    }
    return StreamingResponse(service.encode(export, fmt), media_type=service.MEDIA_TYPES[fmt], headers=headers)


@router.get("/segments/{segment_id}/export", response_class=StreamingResponse)
def export_members(
    segment_id: str,
    session: ReadSessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: ReaderDep,
    fmt: FormatQuery = "csv",
    attributes: Annotated[list[str], Query(max_length=50, description="Custom attributes to add")] = [],  # noqa: B006
    filter_: Annotated[str | None, Query(alias="filter", max_length=20_000, description="A rule in text form")] = None,
) -> StreamingResponse:
    """The members (all, or those matching ``filter``) with profile, summary and the chosen attributes, streamed in
    bounded memory. ``X-Total-Rows`` says how many rows follow. CSV cells that a spreadsheet would run are
    neutralised."""
    export = service.members_export(
        session, settings, clock, principal, segment_id, attributes=attributes, filter_text=filter_
    )
    return _streamed(export, fmt, f"{segment_id}-members")


@router.get("/segments/{segment_id}/export/{activity}", response_class=StreamingResponse)
def export_activity(
    segment_id: str,
    activity: service.Activity,
    session: ReadSessionDep,
    settings: SettingsDep,
    principal: ReaderDep,
    start: Annotated[AwareDatetime, Query(alias="from", description="First instant (inclusive)")],
    end: Annotated[AwareDatetime, Query(alias="to", description="Last instant (exclusive)")],
    fmt: FormatQuery = "csv",
) -> StreamingResponse:
    """The members' ``orders`` (one row per item), ``events`` or ``points`` ledger in [from, to)."""
    export = service.activity_export(
        session, settings, principal, segment_id, activity, start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    )
    return _streamed(export, fmt, f"{segment_id}-{activity}")
