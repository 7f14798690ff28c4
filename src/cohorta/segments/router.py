"""HTTP routes of segments: preview and explain of draft rules."""

from __future__ import annotations

from fastapi import APIRouter

from cohorta.deps import ClockDep, SessionDep, SettingsDep
from cohorta.segments import service
from cohorta.segments.schemas import ExplainIn, ExplainOut, PreviewIn, PreviewOut

router = APIRouter(tags=["segments"])


@router.post("/segments/preview", response_model=PreviewOut)
def preview(body: PreviewIn, session: SessionDep, settings: SettingsDep, clock: ClockDep) -> PreviewOut:
    """Evaluate a draft rule without saving anything: count, share, sample, drop-off per node, warnings."""
    return service.preview(session, settings, clock, body)


@router.post("/segments/explain", response_model=ExplainOut)
def explain(body: ExplainIn, session: SessionDep, settings: SettingsDep, clock: ClockDep) -> ExplainOut:
    """Why a customer is in or out of a draft rule, node by node, with the values observed."""
    return service.explain_draft(session, settings, clock, body)
