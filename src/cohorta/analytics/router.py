"""HTTP routes of analytics: per segment, overlaps of segments, and saving a combination as a static segment."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, Field

from cohorta.analytics import service
from cohorta.deps import ClockDep, EditorDep, ReaderDep, ReadSessionDep, SessionDep, SettingsDep, in_sight
from cohorta.segments import service as segments
from cohorta.segments.schemas import SegmentIn, SegmentOut

router = APIRouter(tags=["analytics"], dependencies=[Depends(in_sight("segment_id", segments.get_segment))])
SegmentIds = Annotated[list[Annotated[str, Field(min_length=1, max_length=32)]], Field(min_length=2, max_length=20)]


@router.get("/segments/{segment_id}/analytics", response_model=service.Analytics)
def segment_analytics(
    segment_id: str,
    session: ReadSessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: ReaderDep,
    start: Annotated[dt.date | None, Query(alias="from", description="First day (default: a year before 'to')")] = None,
    end: Annotated[dt.date | None, Query(alias="to", description="Last day (default: today)")] = None,
) -> service.Analytics:
    """Members now and over time, order value and purchase frequency month by month, and the members' averages
    beside all customers'."""
    last = end or clock.now().astimezone(settings.tz).date()
    first = start or (last - dt.timedelta(days=365)).replace(day=1)
    return service.analytics(session, settings, principal, segment_id, first, last)


class OverlapIn(BaseModel):
    segments: SegmentIds


@router.post("/segments/overlap", response_model=service.Overlap)
def overlap(body: OverlapIn, session: ReadSessionDep, principal: ReaderDep) -> service.Overlap:
    """Sizes of every intersection of 2 to 5 segments, and the Jaccard index of each pair."""
    return service.overlap(session, principal, body.segments)


class CombineIn(BaseModel):
    operation: Literal["intersection", "union", "difference"]
    segments: SegmentIds = Field(description="For a difference: the first minus all the others")
    name: Annotated[str, Field(min_length=1, max_length=255)]
    description: Annotated[str, Field(max_length=2000)] | None = None
    team: Annotated[str, Field(max_length=64)] | None = None


@router.post("/segments/combine", response_model=SegmentOut, status_code=status.HTTP_201_CREATED)
def combine(
    body: CombineIn, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: EditorDep
) -> SegmentOut:
    """Save the intersection, union or difference of segments, as they are now, as a new static segment."""
    members = service.combination(session, principal, body.operation, body.segments)
    definition = SegmentIn(name=body.name, description=body.description, team=body.team, type="static")
    segment = segments.create_segment(session, settings, clock, definition, principal, member_query=members)
    session.commit()
    return segments.to_out(segment, settings.currency_exponent)
