"""Background export jobs: queued by the API, written by the scheduler's delivery thread with progress, downloaded."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker

from cohorta.access.service import Principal, system_principal, visible_to
from cohorta.audit import service as audit
from cohorta.clock import Clock
from cohorta.config import Settings
from cohorta.db import new_id
from cohorta.errors import FieldError, InvalidInput, NotFound
from cohorta.exports import service
from cohorta.exports.models import ExportJob
from cohorta.segments.models import Segment

log = logging.getLogger("cohorta.exports")
PROGRESS_EVERY_SECONDS = 1.0


class ExportJobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: service.Format = "csv"
    activity: service.Activity | None = Field(default=None, description="Export this activity instead of members")
    attributes: list[str] = Field(default_factory=list, max_length=50)
    filter: str | None = Field(default=None, max_length=20_000, description="Members matching this rule (text)")
    start: AwareDatetime | None = Field(default=None, alias="from", description="Activity from (default: a year ago)")
    end: AwareDatetime | None = Field(default=None, alias="to", description="Activity up to, excluded (default: now)")


class ExportJobOut(BaseModel):
    id: str
    segment_id: str
    what: str
    format: str
    options: dict[str, Any]
    state: str
    rows_total: int
    rows_written: int
    progress: float = Field(description="0 to 1")
    bytes: int
    error: str | None
    created_at: dt.datetime
    created_by: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    download: str | None = Field(description="Where to fetch the file once done")


def to_out(job: ExportJob) -> ExportJobOut:
    return ExportJobOut(
        id=job.id, segment_id=job.segment_id, what=job.what, format=job.format, options=job.options, state=job.state,
        rows_total=job.rows_total, rows_written=job.rows_written,
        progress=1.0 if job.state == "done" else (job.rows_written / job.rows_total if job.rows_total else 0.0),
        bytes=job.bytes, error=job.error, created_at=job.created_at, created_by=job.created_by,
        started_at=job.started_at, finished_at=job.finished_at,
        download=f"/api/v1/exports/{job.id}/download" if job.state == "done" else None,
    )  # fmt: skip


def _build(
    session: Session, settings: Settings, clock: Clock, principal: Principal, segment_id: str, what: str,
    options: dict[str, Any],
) -> service.Export:  # fmt: skip
    if what == "members":
        attributes, filter_text = options.get("attributes", []), options.get("filter")
        return service.members_export(
            session, settings, clock, principal, segment_id, attributes=attributes, filter_text=filter_text
        )
    end = dt.datetime.fromisoformat(options["to"])
    start = dt.datetime.fromisoformat(options["from"])
    return service.activity_export(session, settings, principal, segment_id, what, start, end)  # type: ignore[arg-type]


def queue(
    session: Session, settings: Settings, clock: Clock, principal: Principal, segment_id: str, body: ExportJobIn
) -> ExportJob:
    """Validate the export now (a bad request is refused here, not found failed later) and queue it."""
    now = clock.now()
    what = body.activity or "members"
    options: dict[str, Any] = {"attributes": body.attributes, "filter": body.filter}
    if body.activity:
        if body.attributes or body.filter:
            raise InvalidInput([FieldError(("activity",), "an activity export takes no attributes or filter")])
        end = (body.end or now).astimezone(dt.UTC)
        options = {"from": (body.start or end - dt.timedelta(days=365)).astimezone(dt.UTC).isoformat(),
                   "to": end.isoformat()}  # fmt: skip
    export = _build(session, settings, clock, principal, segment_id, what, options)
    job = ExportJob(
        id=new_id("exp"), segment_id=segment_id, what=what,
        format=body.format, options=options, state="queued", rows_total=export.total, rows_written=0, bytes=0,
        created_at=now, created_by=principal.name,
    )  # fmt: skip
    session.add(job)
    session.flush()
    audit.record(session, now, principal.name, "export.create", "segment", segment_id,
                 after={"export": job.id, "what": what, "format": body.format, "rows": export.total})  # fmt: skip
    return job


def get_job(session: Session, job_id: str, principal: Principal) -> ExportJob:
    """The job, if its segment is in the caller's sight."""
    row = session.execute(
        sa.select(ExportJob, Segment.team)
        .join(Segment, Segment.id == ExportJob.segment_id)
        .where(ExportJob.id == job_id)
    ).one_or_none()
    if row is None or not principal.sees(row[1]):
        raise NotFound(f"no export {job_id!r}")
    job: ExportJob = row[0]
    return job


def list_jobs(session: Session, principal: Principal, limit: int, offset: int) -> list[ExportJob]:
    query = (
        sa.select(ExportJob)
        .join(Segment, Segment.id == ExportJob.segment_id)
        .where(visible_to(Segment.team, principal))
        .order_by(ExportJob.created_at.desc(), ExportJob.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(query))


def run_pending_exports(factory: sessionmaker[Session], clock: Clock, settings: Settings) -> int:
    """Write every queued export; returns how many ran. Each is claimed first (queued -> running), so with several
    schedulers exactly one writes it."""
    done = 0
    while True:
        with factory.begin() as session:
            job_id = session.scalar(
                sa.select(ExportJob.id).where(ExportJob.state == "queued").order_by(ExportJob.created_at).limit(1)
            )
            if job_id is None:
                return done
            claimed = session.execute(
                sa.update(ExportJob)
                .where(ExportJob.id == job_id, ExportJob.state == "queued")
                .values(state="running", started_at=clock.now())
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue
        _write(factory, clock, settings, job_id)
        done += 1


def _write(factory: sessionmaker[Session], clock: Clock, settings: Settings, job_id: str) -> None:
    folder = Path(settings.export_dir) / "exports"
    last_report = time.monotonic()

    def report(rows: int) -> None:
        nonlocal last_report
        if time.monotonic() - last_report >= PROGRESS_EVERY_SECONDS:
            last_report = time.monotonic()
            with factory.begin() as progress:
                progress.execute(sa.update(ExportJob).where(ExportJob.id == job_id).values(rows_written=rows))

    try:
        with factory() as session:
            job = session.get(ExportJob, job_id)
            assert job is not None
            export = _build(session, settings, clock, system_principal("export"), job.segment_id, job.what,
                            job.options)  # fmt: skip
            fmt = job.format
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{job_id}.{fmt}"
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as handle:
            for chunk in service.encode(export, fmt, report):  # type: ignore[arg-type]
                handle.write(chunk)
        os.replace(partial, path)
        with factory.begin() as session:
            session.execute(
                sa.update(ExportJob)
                .where(ExportJob.id == job_id)
                .values(
                    state="done",
                    rows_written=export.total,
                    rows_total=export.total,
                    bytes=path.stat().st_size,
                    path=str(path),
                    finished_at=clock.now(),
                )
            )
    except Exception as exc:  # a failed export is reported on the job, never lost
        log.exception("export %s failed", job_id)
        with factory.begin() as session:
            session.execute(
                sa.update(ExportJob)
                .where(ExportJob.id == job_id)
                .values(state="failed", error=f"{type(exc).__name__}: {exc}", finished_at=clock.now())
            )
