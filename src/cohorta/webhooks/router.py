"""HTTP routes of webhook subscriptions (admins). Thin: parse, call the service, commit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from cohorta.deps import AdminDep, ClockDep, SessionDep
from cohorta.webhooks import service
from cohorta.webhooks.schemas import (
    DeliveryAttemptOut,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPatch,
)

router = APIRouter(tags=["webhooks"])


@router.get("/webhooks", response_model=list[SubscriptionOut])
def list_subscriptions(session: SessionDep, principal: AdminDep) -> list[SubscriptionOut]:
    return service.list_subscriptions(session)


@router.post("/webhooks", response_model=SubscriptionCreated, status_code=status.HTTP_201_CREATED)
def create_subscription(
    body: SubscriptionIn, session: SessionDep, clock: ClockDep, principal: AdminDep
) -> SubscriptionCreated:
    """Subscribe a URL to segment.entered, segment.exited and segment.status_changed, for some or all segments.
    Without a secret, one is generated and shown in this answer only."""
    out = service.create_subscription(session, clock.now(), principal, body)
    session.commit()
    return out


@router.get("/webhooks/{subscription_id}", response_model=SubscriptionOut)
def get_subscription(subscription_id: str, session: SessionDep, principal: AdminDep) -> SubscriptionOut:
    return service.to_out(session, service.get_subscription(session, subscription_id))


@router.patch("/webhooks/{subscription_id}", response_model=SubscriptionOut)
def update_subscription(
    subscription_id: str, body: SubscriptionPatch, session: SessionDep, clock: ClockDep, principal: AdminDep
) -> SubscriptionOut:
    out = service.update_subscription(session, clock.now(), principal, subscription_id, body)
    session.commit()
    return out


@router.delete("/webhooks/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_subscription(subscription_id: str, session: SessionDep, clock: ClockDep, principal: AdminDep) -> Response:
    """Delete the subscription with its undelivered events and its delivery log."""
    service.delete_subscription(session, clock.now(), principal, subscription_id)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/webhooks/{subscription_id}/deliveries", response_model=list[DeliveryAttemptOut])
def deliveries(
    subscription_id: str,
    session: SessionDep,
    principal: AdminDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[DeliveryAttemptOut]:
    """Every POST made to the subscriber, newest first: events sent, attempt, status, error, next retry."""
    return service.deliveries(session, subscription_id, limit, offset)
