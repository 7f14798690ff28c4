"""HTTP routes of exports: a segment's members or their activity, streamed as CSV, JSON Lines or Parquet."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import AwareDatetime

from cohorta.deps import MAX_OFFSET, ClockDep, ReaderDep, ReadSessionDep, SessionDep, SettingsDep, in_sight
from cohorta.errors import Conflict
from cohorta.exports import jobs, service
from cohorta.segments import service as segments

router = APIRouter(tags=["exports"], dependencies=[Depends(in_sight("segment_id", segments.get_segment))])
Limit = Annotated[int, Query(ge=1, le=1000)]
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


@router.post("/segments/{segment_id}/exports", response_model=jobs.ExportJobOut, status_code=status.HTTP_202_ACCEPTED)
def queue_export(
    segment_id: str,
    body: jobs.ExportJobIn,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: ReaderDep,
) -> jobs.ExportJobOut:
    """Export in the background (for large segments): the answer has the job; follow ``GET /exports/{id}`` for its
    progress and fetch ``download`` when it is done. Checked now: a bad request is refused here."""
    job = jobs.queue(session, settings, clock, principal, segment_id, body)
    session.commit()
    return jobs.to_out(job)


@router.get("/exports", response_model=list[jobs.ExportJobOut])
def list_exports(
    session: SessionDep, principal: ReaderDep, limit: Limit = 50, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0
) -> list[jobs.ExportJobOut]:
    """Background exports of the segments the caller sees, newest first."""
    return [jobs.to_out(job) for job in jobs.list_jobs(session, principal, limit, offset)]


@router.get("/exports/{export_id}", response_model=jobs.ExportJobOut)
def get_export(export_id: str, session: SessionDep, principal: ReaderDep) -> jobs.ExportJobOut:
    return jobs.to_out(jobs.get_job(session, export_id, principal))


@router.get("/exports/{export_id}/download", response_class=FileResponse)
def download_export(export_id: str, session: SessionDep, principal: ReaderDep) -> FileResponse:
    job = jobs.get_job(session, export_id, principal)
    if job.state != "done" or job.path is None or not Path(job.path).exists():
        raise Conflict(f"export {export_id} is {job.state}: nothing to download yet")
    return FileResponse(
        job.path, media_type=service.MEDIA_TYPES[job.format], filename=f"{job.segment_id}-{job.what}.{job.format}"
    )
