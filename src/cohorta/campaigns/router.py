"""HTTP routes of campaigns, eligibility and distribution deliveries. Thin: parse, call the services, commit."""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response, status

from cohorta.access.service import Principal
from cohorta.campaigns import distribution, service
from cohorta.campaigns.schemas import (
    CampaignIn,
    CampaignOut,
    CampaignPage,
    CampaignPatch,
    DeliveryOut,
    EligibilityCheckIn,
    EligibilityCheckOut,
    EligibilityOut,
)
from cohorta.deps import ClockDep, EditorDep, ReaderDep, ReadSessionDep, SessionDep, SettingsDep, in_sight

# A hidden campaign does not exist: every /campaigns/{campaign_id}/... answers 404 for it, first.
router = APIRouter(tags=["campaigns"], dependencies=[Depends(in_sight("campaign_id", service.get_campaign))])
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


@router.get("/campaigns", response_model=CampaignPage)
def list_campaigns(
    session: SessionDep,
    principal: ReaderDep,
    limit: Limit = 50,
    offset: Offset = 0,
    q: Annotated[str | None, Query(max_length=255, description="Name contains (case-insensitive)")] = None,
    status_: Annotated[Literal["draft", "active", "paused", "ended"] | None, Query(alias="status")] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    segment: Annotated[str | None, Query(max_length=32, description="Campaigns that include or exclude it")] = None,
) -> CampaignPage:
    rows, total = service.list_campaigns(
        session, principal, status=status_, kind=kind, q=q, segment=segment, limit=limit, offset=offset
    )
    return CampaignPage(items=[service.to_out(session, c, principal) for c in rows], total=total)


@router.post("/campaigns", response_model=CampaignOut, status_code=status.HTTP_201_CREATED)
def create_campaign(body: CampaignIn, session: SessionDep, clock: ClockDep, principal: EditorDep) -> CampaignOut:
    """Only active segments the caller can see may be selected (an inactive or archived one: 409)."""
    campaign = service.create_campaign(session, clock.now(), principal, body)
    session.commit()
    return service.to_out(session, campaign, principal)


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut)
def get_campaign(campaign_id: str, session: SessionDep, principal: ReaderDep) -> CampaignOut:
    return service.to_out(session, service.get_campaign(session, campaign_id, principal), principal)


@router.patch("/campaigns/{campaign_id}", response_model=CampaignOut)
def update_campaign(
    campaign_id: str, body: CampaignPatch, session: SessionDep, clock: ClockDep, principal: EditorDep
) -> CampaignOut:
    campaign = service.update_campaign(session, clock.now(), principal, campaign_id, body)
    session.commit()
    return service.to_out(session, campaign, principal)


@router.delete("/campaigns/{campaign_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_campaign(campaign_id: str, session: SessionDep, clock: ClockDep, principal: EditorDep) -> Response:
    """A draft, paused or ended campaign; an active one must be paused or ended first."""
    service.delete_campaign(session, clock.now(), principal, campaign_id)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _change_status(
    session: SessionDep, clock: ClockDep, principal: Principal, campaign_id: str, to: str
) -> CampaignOut:
    campaign = service.change_status(session, clock.now(), principal, campaign_id, to)
    session.commit()
    return service.to_out(session, campaign, principal)


@router.post("/campaigns/{campaign_id}/activate", response_model=CampaignOut)
def activate(campaign_id: str, session: SessionDep, clock: ClockDep, principal: EditorDep) -> CampaignOut:
    """Start targeting (every selected segment must be active)."""
    return _change_status(session, clock, principal, campaign_id, "active")


@router.post("/campaigns/{campaign_id}/pause", response_model=CampaignOut)
def pause(campaign_id: str, session: SessionDep, clock: ClockDep, principal: EditorDep) -> CampaignOut:
    """Stop targeting for now; eligibility answers 'the campaign is paused'."""
    return _change_status(session, clock, principal, campaign_id, "paused")


@router.post("/campaigns/{campaign_id}/end", response_model=CampaignOut)
def end(campaign_id: str, session: SessionDep, clock: ClockDep, principal: EditorDep) -> CampaignOut:
    """Final: the campaign and its targeting stay for reporting."""
    return _change_status(session, clock, principal, campaign_id, "ended")


# Eligibility is asked at every transaction of a loyalty engine: its routes skip the thread pool (async, with the
# sub-millisecond read done inline) and the campaign-in-sight check (the service answers 404 for a hidden campaign
# itself), on a router of their own.
eligibility_router = APIRouter(tags=["campaigns"])


@eligibility_router.get("/campaigns/{campaign_id}/eligibility/{source_id:path}", response_model=EligibilityOut)
async def eligibility(campaign_id: str, source_id: str, request: Request, principal: ReaderDep) -> EligibilityOut:
    """Whether the customer is eligible, and which segment or group decided."""
    with request.app.state.engine.connect() as connection:  # one read: no ORM session needed
        return service.eligibility(connection, principal, campaign_id, source_id)


@eligibility_router.post("/eligibility/check", response_model=EligibilityCheckOut)
def check_eligibility(body: EligibilityCheckIn, session: ReadSessionDep, principal: ReaderDep) -> EligibilityCheckOut:
    """Many customers x campaigns at once (at most 1,000 x 100); unknown ones are answered with an error."""
    return EligibilityCheckOut(results=service.check_many(session, principal, body.customers, body.campaigns))


@router.post("/campaigns/{campaign_id}/deliveries", response_model=DeliveryOut, status_code=status.HTTP_201_CREATED)
async def deliver(
    campaign_id: str, request: Request, settings: SettingsDep, clock: ClockDep, principal: EditorDep
) -> DeliveryOut:
    """Deliver a distribution campaign's audience now (draft or active); answers with the delivery report."""
    factory = request.app.state.session_factory
    return await anyio.to_thread.run_sync(
        lambda: distribution.deliver(factory, settings, clock, campaign_id, trigger="manual", principal=principal)
    )


@router.get("/campaigns/{campaign_id}/deliveries", response_model=list[DeliveryOut])
def deliveries(
    campaign_id: str, session: SessionDep, principal: ReaderDep, limit: Limit = 50, offset: Offset = 0
) -> list[DeliveryOut]:
    return distribution.deliveries(session, campaign_id, limit, offset)
