"""HTTP routes of sources, imports and syncs. Thin: parse, call the service, commit, shape the answer.

Defining a source (it holds credentials and names hosts Cohorta will call) is for admins; testing it, listing its
remote segments, importing and syncing are for editors; reading is for everyone, and never shows credentials.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from cohorta.deps import (
    AdminDep,
    ClockDep,
    EditorDep,
    ReaderDep,
    ReadSessionDep,
    SessionDep,
    SessionFactoryDep,
    SettingsDep,
    in_sight,
)
from cohorta.segments import service as segments
from cohorta.sources import service
from cohorta.sources.schemas import (
    ConnectionTestOut,
    ImportIn,
    RemoteSegmentOut,
    SegmentWithSourceOut,
    SourceIn,
    SourceOut,
    SourcePatch,
    SyncIn,
    SyncReportOut,
)

router = APIRouter(tags=["sources"], dependencies=[Depends(in_sight("segment_id", segments.get_segment))])


@router.get("/sources", response_model=list[SourceOut])
def list_sources(session: SessionDep, settings: SettingsDep, principal: ReaderDep) -> list[SourceOut]:
    return service.list_sources(session, settings)


@router.post("/sources", response_model=SourceOut, status_code=status.HTTP_201_CREATED)
def create_source(
    body: SourceIn, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: AdminDep
) -> SourceOut:
    """Define a source: its kind, settings, the key to match customers by, and credentials (stored encrypted)."""
    out = service.create_source(session, settings, clock.now(), principal, body)
    session.commit()
    return out


@router.get("/sources/{source}", response_model=SourceOut)
def get_source(source: str, session: SessionDep, settings: SettingsDep, principal: ReaderDep) -> SourceOut:
    return service.to_out(session, settings, service.get_source(session, source))


@router.patch("/sources/{source}", response_model=SourceOut)
def update_source(
    source: str, body: SourcePatch, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: AdminDep
) -> SourceOut:
    out = service.update_source(session, settings, clock.now(), principal, source, body)
    session.commit()
    return out


@router.delete("/sources/{source}", status_code=status.HTTP_204_NO_CONTENT)
def delete_source(
    source: str, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: AdminDep
) -> Response:
    """Refused while segments that are not archived import from it."""
    service.delete_source(session, settings, clock.now(), principal, source)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/sources/{source}/test", response_model=ConnectionTestOut)
def test_source(
    source: str, session: ReadSessionDep, settings: SettingsDep, clock: ClockDep, principal: EditorDep
) -> ConnectionTestOut:
    """Reach the remote system with the stored settings; a failure answers 200 with ok false and the reason."""
    return service.test_source(session, settings, clock, source)


@router.get("/sources/{source}/remote-segments", response_model=list[RemoteSegmentOut])
def remote_segments(
    source: str, session: ReadSessionDep, settings: SettingsDep, clock: ClockDep, principal: EditorDep
) -> list[RemoteSegmentOut]:
    """The lists and segments the remote system offers, and which are imported already. 502 when it fails."""
    return service.remote_segments(session, settings, clock, source)


@router.post("/sources/{source}/import", response_model=SegmentWithSourceOut, status_code=status.HTTP_201_CREATED)
def import_segment(
    source: str, body: ImportIn, factory: SessionFactoryDep, settings: SettingsDep, clock: ClockDep,
    principal: EditorDep,
) -> SegmentWithSourceOut:  # fmt: skip
    """Create an external segment mirroring one remote list, synced at once unless ``sync`` is false."""
    segment_id = service.import_segment(factory, settings, clock, source, body, principal)
    with factory() as session:
        return service.segment_view(session, settings, segments.get_segment(session, segment_id))


@router.get("/sources/{source}/segments", response_model=list[SegmentWithSourceOut])
def imported_segments(
    source: str, session: SessionDep, settings: SettingsDep, principal: ReaderDep
) -> list[SegmentWithSourceOut]:
    """The segments imported from the source, each with its sync state and latest report."""
    return service.imported_segments(session, settings, source, principal)


@router.post("/segments/{segment_id}/sync", response_model=SyncReportOut)
def sync(
    segment_id: str, body: SyncIn, factory: SessionFactoryDep, settings: SettingsDep, clock: ClockDep,
    principal: EditorDep,
) -> SyncReportOut:  # fmt: skip
    """Sync an imported segment now; the answer is its report (a failed sync too: ``status`` failed, members kept)."""
    report = service.request_sync(factory, settings, clock, segment_id, principal, force=body.force)
    return SyncReportOut.model_validate(report)


@router.get("/segments/{segment_id}/sync-reports", response_model=list[SyncReportOut])
def sync_reports(
    segment_id: str,
    session: SessionDep,
    principal: ReaderDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[SyncReportOut]:
    """The segment's syncs, newest first."""
    return service.reports(session, segment_id, limit, offset)
