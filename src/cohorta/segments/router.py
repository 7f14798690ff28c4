"""HTTP routes of segments. Thin: parse, call the services, commit, shape the answer."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, File, Form, Query, Response, UploadFile, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cohorta.access.service import Principal
from cohorta.clock import Clock
from cohorta.config import Settings
from cohorta.deps import (
    MAX_OFFSET,
    ClockDep,
    EditorDep,
    ReaderDep,
    ReadSessionDep,
    RowId,
    SessionDep,
    SettingsDep,
    in_sight,
)
from cohorta.errors import FieldError, InvalidInput
from cohorta.membership.service import size_over_time
from cohorta.segments import preview, service
from cohorta.segments.schemas import (
    CsvImportOut,
    CustomerSegmentOut,
    ExplainIn,
    ExplainOut,
    ListChange,
    ListChangeOut,
    MemberPage,
    MembershipChangeOut,
    PreviewIn,
    PreviewOut,
    SegmentFilters,
    SegmentIn,
    SegmentOut,
    SegmentPage,
    SegmentPatch,
    SizePoint,
    UsageOut,
    VersionOut,
)
from cohorta.sources import service as sources
from cohorta.sources.schemas import SegmentWithSourceOut

# A hidden segment does not exist: every /segments/{segment_id}/... answers 404 for it, first.
router = APIRouter(tags=["segments"], dependencies=[Depends(in_sight("segment_id", service.get_segment))])
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]


@router.post("/segments/preview", response_model=PreviewOut)
def preview_rule(
    body: PreviewIn, session: ReadSessionDep, settings: SettingsDep, clock: ClockDep, principal: ReaderDep
) -> PreviewOut:
    """Evaluate a draft rule without saving anything: count, share, sample, drop-off per node, warnings."""
    return preview.preview(session, settings, clock, body, principal)


@router.post("/segments/explain", response_model=ExplainOut)
def explain_draft(
    body: ExplainIn, session: ReadSessionDep, settings: SettingsDep, clock: ClockDep, principal: ReaderDep
) -> ExplainOut:
    """Why a customer is in or out of a draft rule, node by node, with the values observed."""
    return preview.explain_draft(session, settings, clock, body, principal)


@router.get("/segments", response_model=SegmentPage)
def list_segments(
    session: SessionDep,
    settings: SettingsDep,
    principal: ReaderDep,
    filters: Annotated[SegmentFilters, Query()],
    limit: Limit = 50,
    offset: Offset = 0,
) -> SegmentPage:
    """Search as you type (``q``), several filters at once, sorted; each row carries the members' figures."""
    items, total = service.list_segments(session, settings, principal, filters, limit=limit, offset=offset)
    return SegmentPage(items=[service.to_out(s, settings.currency_exponent) for s in items], total=total)


@router.post("/segments", response_model=SegmentOut, status_code=status.HTTP_201_CREATED)
def create_segment(
    body: SegmentIn, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: EditorDep
) -> SegmentOut:
    segment = service.create_segment(session, settings, clock, body, principal)
    session.commit()
    return service.to_out(segment, settings.currency_exponent)


@router.post("/segments/upload", response_model=CsvImportOut, status_code=status.HTTP_201_CREATED)
async def upload_static_segment(
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: EditorDep,
    name: Annotated[str, Form(min_length=1, max_length=255)],
    file: Annotated[UploadFile, File(description="CSV: a source_id column, or ids in the first column")],
    description: Annotated[str | None, Form(max_length=2000)] = None,
    team: Annotated[str | None, Form(max_length=64)] = None,
) -> CsvImportOut:
    """Create a static segment from an uploaded CSV file. Unknown ids are not added; the answer lists them with
    their line numbers, with blank lines and duplicates."""
    content = await file.read()
    return await run_in_threadpool(
        _create_from_csv, session, settings, clock, name.strip(), content, principal, description, team or None
    )


def _create_from_csv(
    session: Session, settings: Settings, clock: Clock, name: str, content: bytes, principal: Principal,
    description: str | None, team: str | None,
) -> CsvImportOut:  # fmt: skip
    report = service.create_static_from_csv(
        session, settings, clock, name, content, principal, description=description, team=team
    )
    session.commit()
    return report


@router.get("/segments/{segment_id}", response_model=SegmentWithSourceOut)
def get_segment(
    segment_id: str, session: SessionDep, settings: SettingsDep, principal: ReaderDep
) -> SegmentWithSourceOut:
    """The segment; an imported one also shows its source, sync state and latest sync report."""
    return sources.segment_view(session, settings, service.get_segment(session, segment_id, principal))


@router.get("/segments/{segment_id}/usage", response_model=UsageOut)
def usage(segment_id: str, session: SessionDep, principal: ReaderDep) -> UsageOut:
    """Where the segment is used: campaigns, other segments' rules, webhooks, scheduled exports, sources."""
    return service.usage(session, segment_id, principal)


@router.patch("/segments/{segment_id}", response_model=SegmentOut)
def update_segment(
    segment_id: str,
    body: SegmentPatch,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: EditorDep,
) -> SegmentOut:
    segment = service.update_segment(session, settings, clock, segment_id, body, principal)
    session.commit()
    return service.to_out(segment, settings.currency_exponent)


@router.delete("/segments/{segment_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_segment(segment_id: str, session: SessionDep, clock: ClockDep, principal: EditorDep) -> Response:
    """Delete an inactive or archived segment and its history. Refused while another segment's rule or any campaign
    uses it."""
    service.delete_segment(session, clock, segment_id, principal)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/segments/{segment_id}/activate", response_model=SegmentOut)
def activate(
    segment_id: str, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: EditorDep
) -> SegmentOut:
    segment = service.activate(session, settings, clock, segment_id, principal)
    session.commit()
    return service.to_out(segment, settings.currency_exponent)


@router.post("/segments/{segment_id}/deactivate", response_model=SegmentOut)
def deactivate(
    segment_id: str, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: EditorDep
) -> SegmentOut:
    segment = service.deactivate(session, clock, segment_id, principal)
    session.commit()
    return service.to_out(segment, settings.currency_exponent)


@router.post("/segments/{segment_id}/archive", response_model=SegmentOut)
def archive(
    segment_id: str, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: EditorDep
) -> SegmentOut:
    """Irreversible: removes every member; the definition and history stay."""
    segment = service.archive(session, clock, segment_id, principal)
    session.commit()
    return service.to_out(segment, settings.currency_exponent)


@router.post("/segments/{segment_id}/refresh", response_model=SegmentOut, status_code=status.HTTP_202_ACCEPTED)
def refresh(
    segment_id: str, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: EditorDep
) -> SegmentOut:
    """Queue a full recompute; its state, counts and error show on the segment."""
    segment = service.request_refresh(session, clock, segment_id, principal)
    session.commit()
    return service.to_out(segment, settings.currency_exponent)


@router.get("/segments/{segment_id}/versions", response_model=list[VersionOut])
def versions(segment_id: str, session: SessionDep) -> list[VersionOut]:
    """Every version, newest first, each with the conditions added and removed since the one before."""
    return service.versions(session, segment_id)


@router.post("/segments/{segment_id}/versions/{version}/restore", response_model=SegmentOut)
def restore(
    segment_id: str, version: RowId, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: EditorDep
) -> SegmentOut:
    """Make the given version's name and rule current again, as a new version."""
    segment = service.restore_version(session, settings, clock, segment_id, version, principal)
    session.commit()
    return service.to_out(segment, settings.currency_exponent)


@router.get("/segments/{segment_id}/members", response_model=MemberPage)
def members(
    segment_id: str,
    session: SessionDep,
    principal: ReaderDep,
    settings: SettingsDep,
    clock: ClockDep,
    limit: Limit = 50,
    offset: Offset = 0,
    sort: Annotated[
        str, Query(description="Field, '-' prefix for descending: " + ", ".join(service.MEMBER_SORTS))
    ] = "source_id",
    filter_: Annotated[str | None, Query(alias="filter", max_length=20_000, description="A rule in text form")] = None,
    attributes: Annotated[list[str], Query(max_length=50, description="Custom attributes to show")] = [],  # noqa: B006
) -> MemberPage:
    """Members with profile and summary fields, and the chosen custom attributes; filtered by a rule, sorted."""
    return service.members_page(
        session, settings, clock, segment_id, limit=limit, offset=offset, sort=sort, filter_text=filter_,
        principal=principal, attributes=attributes,
    )


def _list_change(
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    segment_id: str,
    body: ListChange,
    mode: str,
    principal: Principal,
) -> ListChangeOut:
    result = service.change_list(session, settings, clock, segment_id, body.customers, mode, principal)
    session.commit()
    return result


@router.post("/segments/{segment_id}/members/add", response_model=ListChangeOut)
def add_members(
    segment_id: str,
    body: ListChange,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: EditorDep,
) -> ListChangeOut:
    """Static and external segments: add customers (unknown ids are listed, not added)."""
    return _list_change(session, settings, clock, segment_id, body, "add", principal)


@router.post("/segments/{segment_id}/members/remove", response_model=ListChangeOut)
def remove_members(
    segment_id: str,
    body: ListChange,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: EditorDep,
) -> ListChangeOut:
    return _list_change(session, settings, clock, segment_id, body, "remove", principal)


@router.put("/segments/{segment_id}/members", response_model=ListChangeOut)
def replace_members(
    segment_id: str,
    body: ListChange,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: EditorDep,
) -> ListChangeOut:
    """External segments: replace the whole member list."""
    return _list_change(session, settings, clock, segment_id, body, "replace", principal)


@router.get("/segments/{segment_id}/history", response_model=list[MembershipChangeOut])
def history(
    segment_id: str, session: SessionDep, principal: ReaderDep, limit: Limit = 100, offset: Offset = 0
) -> list[MembershipChangeOut]:
    return service.segment_history(session, segment_id, limit, offset, principal)


@router.get("/segments/{segment_id}/size", response_model=list[SizePoint])
def size(
    segment_id: str, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: ReaderDep,
    start: Annotated[date | None, Query(alias="from", description="First local day (default: 30 days ago)")] = None,
    end: Annotated[date | None, Query(alias="to", description="Last local day (default: today)")] = None,
) -> list[SizePoint]:  # fmt: skip
    """Members at the end of each day, with the day's entries and exits, from the membership history."""
    zone = ZoneInfo(settings.timezone)
    today = clock.now().astimezone(zone).date()
    last = end or today
    first = start or last - timedelta(days=30)
    if first > last or (last - first).days > 3660:
        raise InvalidInput([FieldError(("from",), "must be on or before 'to', at most ten years apart")])
    segment = service.get_segment(session, segment_id, principal)
    return [SizePoint(day=d.isoformat(), members=m, entered=e, exited=x)
            for d, m, e, x in size_over_time(session, segment, first, last, zone)]  # fmt: skip


@router.get("/segments/{segment_id}/explain/{source_id:path}", response_model=ExplainOut)
def explain_saved(
    segment_id: str,
    source_id: str,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: ReaderDep,
    as_of: Annotated[str | None, Query(description="ISO 8601 instant; default now")] = None,
) -> ExplainOut:
    """Why a customer is in or out of a saved dynamic segment, node by node."""
    return service.explain_saved(session, settings, clock, segment_id, source_id, principal, as_of)


@router.get("/customers/{source_id:path}/segments", response_model=list[CustomerSegmentOut], tags=["customers"])
def customer_segments(source_id: str, session: SessionDep, principal: ReaderDep) -> list[CustomerSegmentOut]:
    return service.customer_segments(session, source_id, principal)


@router.get("/customers/{source_id:path}/segment-history", response_model=list[MembershipChangeOut], tags=["customers"])
def customer_history(
    source_id: str, session: SessionDep, principal: ReaderDep, limit: Limit = 100, offset: Offset = 0
) -> list[MembershipChangeOut]:
    return service.customer_history(session, source_id, limit, offset, principal)
