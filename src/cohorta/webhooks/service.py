"""Webhook subscriptions: their definitions, the outbox written with each change, and the dispatcher. No HTTP in.

A membership change and its notification are written in one transaction (the outbox), so a committed change always
produces its notification and a rolled-back one never does. The dispatcher, in the scheduler's delivery thread, sends
each subscription's pending events oldest first in signed batches; a failed batch is retried with exponential backoff
and holds back the newer events of that subscription, so a receiver sees events in order.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cohorta.access.service import Principal
from cohorta.audit import service as audit
from cohorta.clock import Clock
from cohorta.config import Settings
from cohorta.customers.models import Customer
from cohorta.customers.summary import chunked
from cohorta.db import InValues, insert_rows, new_id, send_rows, table_of
from cohorta.errors import FieldError, NotFound, UnknownReference
from cohorta.outbound import post_signed
from cohorta.segments.models import Segment
from cohorta.webhooks.models import DeliveryAttempt, EventType, OutboxEvent, OutboxState, Subscription
from cohorta.webhooks.schemas import (
    DeliveryAttemptOut,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPatch,
)

log = logging.getLogger("cohorta.webhooks")
LEASE = timedelta(seconds=60)  # how long a dispatcher owns a batch it claimed; after that another may retry it
MAX_BACKOFF = timedelta(hours=1)


# --- subscriptions -------------------------------------------------------------------------------------------------


def to_out(session: Session, row: Subscription) -> SubscriptionOut:
    counts = dict(
        session.execute(
            sa.select(OutboxEvent.state, sa.func.count())
            .where(OutboxEvent.subscription_id == row.id, OutboxEvent.state != OutboxState.delivered.value)
            .group_by(OutboxEvent.state)
        ).all()
    )
    return SubscriptionOut(
        id=row.id, url=row.url, event_types=[EventType(t) for t in row.event_types], segments=list(row.segment_ids),
        description=row.description, active=row.active, batch_size=row.batch_size,
        pending=int(counts.get(OutboxState.pending.value, 0)), dead=int(counts.get(OutboxState.dead.value, 0)),
        created_at=row.created_at, created_by=row.created_by, updated_at=row.updated_at,
    )  # fmt: skip


def get_subscription(session: Session, subscription_id: str) -> Subscription:
    row = session.get(Subscription, subscription_id)
    if row is None:
        raise NotFound(f"no webhook subscription {subscription_id!r}")
    return row


def list_subscriptions(session: Session) -> list[SubscriptionOut]:
    rows = session.scalars(sa.select(Subscription).order_by(Subscription.created_at, Subscription.id))
    return [to_out(session, row) for row in rows]


def _check_segments(session: Session, segment_ids: Sequence[str]) -> list[str]:
    known = set(session.scalars(sa.select(Segment.id).where(Segment.id.in_(list(segment_ids)))))
    missing = [FieldError(("segments", i), f"unknown segment {s!r}", "unknown_segment")
               for i, s in enumerate(segment_ids) if s not in known]  # fmt: skip
    if missing:
        raise UnknownReference(missing)
    return list(dict.fromkeys(segment_ids))


def _audit_view(out: SubscriptionOut) -> dict[str, Any]:
    return out.model_dump(mode="json", exclude={"pending", "dead"})


def create_subscription(
    session: Session, now: datetime, principal: Principal, body: SubscriptionIn
) -> SubscriptionCreated:
    generated = None if body.secret else "whsec_" + secrets.token_urlsafe(32)
    row = Subscription(
        id=new_id("whk"), url=body.url,
        secret=body.secret or generated, description=body.description,
        event_types=sorted({t.value for t in body.event_types}), segment_ids=_check_segments(session, body.segments),
        active=body.active, batch_size=body.batch_size, created_at=now, created_by=principal.name, updated_at=now,
    )  # fmt: skip
    session.add(row)
    session.flush()
    out = to_out(session, row)
    audit.record(session, now, principal.name, "webhook.create", "webhook", row.id, after=_audit_view(out))
    return SubscriptionCreated(**out.model_dump(), secret=generated)


def update_subscription(
    session: Session, now: datetime, principal: Principal, subscription_id: str, body: SubscriptionPatch
) -> SubscriptionOut:
    row = get_subscription(session, subscription_id)
    before = _audit_view(to_out(session, row))
    sent = body.model_fields_set
    if body.url is not None:
        row.url = body.url
    if body.event_types is not None:
        row.event_types = sorted({t.value for t in body.event_types})
    if body.segments is not None:
        row.segment_ids = _check_segments(session, body.segments)
    if body.secret is not None:
        row.secret = body.secret
    if "description" in sent:
        row.description = body.description
    if body.active is not None:
        row.active = body.active
    if body.batch_size is not None:
        row.batch_size = body.batch_size
    row.updated_at = now
    session.flush()
    out = to_out(session, row)
    audit.record(session, now, principal.name, "webhook.update", "webhook", row.id, before=before,
                 after=_audit_view(out))  # fmt: skip
    return out


def delete_subscription(session: Session, now: datetime, principal: Principal, subscription_id: str) -> None:
    row = get_subscription(session, subscription_id)
    before = _audit_view(to_out(session, row))
    session.execute(sa.delete(OutboxEvent).where(OutboxEvent.subscription_id == row.id))
    session.execute(sa.delete(DeliveryAttempt).where(DeliveryAttempt.subscription_id == row.id))
    session.delete(row)
    audit.record(session, now, principal.name, "webhook.delete", "webhook", subscription_id, before=before)


def subscriptions_naming(session: Session, segment_id: str) -> list[Subscription]:
    """Subscriptions whose segment filter names this segment (for "where used" and the delete guard)."""
    rows = session.scalars(sa.select(Subscription).order_by(Subscription.created_at))
    return [row for row in rows if segment_id in (row.segment_ids or [])]


def deliveries(session: Session, subscription_id: str, limit: int, offset: int) -> list[DeliveryAttemptOut]:
    get_subscription(session, subscription_id)
    rows = session.scalars(
        sa.select(DeliveryAttempt)
        .where(DeliveryAttempt.subscription_id == subscription_id)
        .order_by(DeliveryAttempt.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [DeliveryAttemptOut.model_validate(row, from_attributes=True) for row in rows]


# --- the outbox ------------------------------------------------------------------------------------------------------


#: Active subscriptions: (id, event types, segment ids or None for every segment).
Subscriptions = list[tuple[str, list[str], list[str] | None]]


def _listening(session: Session, segment_id: str) -> dict[EventType, list[str]]:
    """The active subscriptions that hear about this segment, by event type (one query for all types)."""
    return _hearing(_subscriptions(session), segment_id)


def _subscriptions(session: Session) -> Subscriptions:
    """Every active subscription: (id, event types, segment ids or none for all)."""
    return send_subscriptions(session.connection())()


def send_subscriptions(connection: sa.Connection) -> Callable[[], Subscriptions]:
    """The active subscriptions (:func:`_subscriptions`), sent now with other reads; the function returned reads
    them."""
    sent = send_rows(connection, table_of(Subscription), ("id", "event_types", "segment_ids"), {"active": [True]})
    return lambda: [(row["id"], row["event_types"], row["segment_ids"]) for row in sent.rows()]


def _hearing(subscriptions: Subscriptions, segment_id: str) -> dict[EventType, list[str]]:
    heard = [(sid, types) for sid, types, segments in subscriptions if not segments or segment_id in segments]
    return {kind: [sid for sid, types in heard if kind.value in types] for kind in EventType}


def hears_entries(session: Session, segment_id: str) -> bool:
    """Whether an active subscription hears about customers entering this segment."""
    return bool(_listening(session, segment_id)[EventType.entered])


class NamedSegment(Protocol):
    """What a membership notification says of its segment: a :class:`Segment` row or the figures a live write reads
    instead (:class:`cohorta.membership.service.SegmentFigures`)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...


def enqueue_memberships(
    session: Session,
    diffs: Sequence[tuple[NamedSegment, Sequence[int], Sequence[int]]],
    cause: str,
    now: datetime,
    subscriptions: Subscriptions | None = None,
) -> int:
    """Outbox rows for these segments' entries and exits, for every active subscription listening (one insert for
    all of them); returns how many. ``subscriptions``: the active ones when the caller read them already."""
    if not any(entered or exited for _, entered, exited in diffs):
        return 0
    if subscriptions is None:
        subscriptions = _subscriptions(session)
    if not subscriptions:
        return 0
    planned: list[tuple[NamedSegment, EventType, str, Sequence[int]]] = []
    for segment, entered, exited in diffs:
        listening = _hearing(subscriptions, segment.id)
        for event_type, customer_ids in ((EventType.entered, entered), (EventType.exited, exited)):
            if customer_ids:
                planned.extend((segment, event_type, sid, customer_ids) for sid in listening[event_type])
    if not planned:
        return 0
    source_ids: dict[int, str] = {}
    customers = table_of(Customer)
    for chunk in chunked(sorted({cid for *_, customer_ids in planned for cid in customer_ids})):
        query = sa.select(customers.c.id, customers.c.source_id).where(InValues(customers.c.id, chunk))
        source_ids.update({customer_id: source_id for customer_id, source_id in session.execute(query)})
    rows: list[dict[str, Any]] = []
    for segment, event_type, subscription_id, customer_ids in planned:
        segment_view = {"id": segment.id, "name": segment.name, "version": segment.version}
        rows.extend(
            {
                "subscription_id": subscription_id,
                "event_type": event_type.value,
                "payload": {
                    "type": event_type.value,
                    "occurred_at": now.isoformat(),
                    "segment": segment_view,
                    "customer": source_ids[cid],
                    "cause": cause,
                },
                "occurred_at": now,
                "state": OutboxState.pending.value,
                "attempts": 0,
                "next_attempt_at": now,
            }
            for cid in customer_ids
            if cid in source_ids
        )
    insert_rows(session.connection(), table_of(OutboxEvent), rows)
    return len(rows)


def enqueue_status(session: Session, segment: Segment, before: str, actor: str, now: datetime) -> None:
    payload = {
        "type": EventType.status_changed.value, "occurred_at": now.isoformat(),
        "segment": {"id": segment.id, "name": segment.name, "version": segment.version},
        "from": before, "to": segment.status, "actor": actor,
    }  # fmt: skip
    for subscription_id in _listening(session, segment.id)[EventType.status_changed]:
        session.add(
            OutboxEvent(
                subscription_id=subscription_id,
                event_type=EventType.status_changed.value,
                payload=payload,
                occurred_at=now,
                state=OutboxState.pending.value,
                attempts=0,
                next_attempt_at=now,
            )
        )


# --- the dispatcher ---------------------------------------------------------------------------------------------------


def backoff(settings: Settings, attempts: int) -> timedelta:
    """After the n-th failed attempt: base x 2^(n-1), at most an hour."""
    return min(timedelta(seconds=settings.webhook_retry_base_seconds * 2 ** (attempts - 1)), MAX_BACKOFF)


def dispatch(
    factory: sessionmaker[Session], clock: Clock, settings: Settings, client: httpx.Client | None = None
) -> int:
    """Send every subscription's due batch once; returns how many events were delivered."""
    now = clock.now()
    with factory() as session:
        due = list(
            session.scalars(
                sa.select(OutboxEvent.subscription_id)
                .where(OutboxEvent.state == OutboxState.pending.value, OutboxEvent.next_attempt_at <= now)
                .distinct()
            )
        )
    if not due:
        return 0
    http = client or httpx.Client(timeout=settings.webhook_timeout_seconds)
    try:
        return sum(_send_head(factory, clock, settings, subscription_id, http) for subscription_id in due)
    finally:
        if client is None:
            http.close()


def _send_head(
    factory: sessionmaker[Session], clock: Clock, settings: Settings, subscription_id: str, client: httpx.Client
) -> int:
    """Claim and send the subscription's oldest pending events (one batch), then record the outcome."""
    now = clock.now()
    with factory.begin() as session:
        subscription = session.get(Subscription, subscription_id)
        if subscription is None or not subscription.active:
            return 0
        batch = session.scalars(
            sa.select(OutboxEvent)
            .where(OutboxEvent.subscription_id == subscription_id, OutboxEvent.state == OutboxState.pending.value)
            .order_by(OutboxEvent.id)
            .limit(subscription.batch_size)
        ).all()
        if not batch or batch[0].next_attempt_at > now:  # the head is waiting for its retry: keep the order
            return 0
        # A retry resends exactly the batch that failed (same events, same delivery key); newer events follow it.
        batch = [event for event in batch if event.attempts == batch[0].attempts]
        ids = [event.id for event in batch]
        claimed = session.execute(
            sa.update(OutboxEvent)
            .where(
                OutboxEvent.id.in_(ids),
                OutboxEvent.state == OutboxState.pending.value,
                OutboxEvent.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + LEASE)
        )
        if claimed.rowcount != len(ids):  # type: ignore[attr-defined]  # another dispatcher has some of them
            session.rollback()
            return 0
        attempt_number = max(event.attempts for event in batch) + 1
        url, secret = subscription.url, subscription.secret
        body = json.dumps(
            {"subscription": subscription_id, "events": [{"id": e.id, **e.payload} for e in batch]},
            separators=(",", ":"),
        ).encode()
    key = f"{subscription_id}-{ids[0]}-{ids[-1]}"  # the same on every retry: receivers can drop repeats
    attempt = post_signed(client, url, secret, body, delivery_key=key, timestamp=int(clock.now().timestamp()))
    finished = clock.now()
    retry_at: datetime | None = None
    with factory.begin() as session:
        if attempt.ok:
            session.execute(
                sa.update(OutboxEvent)
                .where(OutboxEvent.id.in_(ids))
                .values(state=OutboxState.delivered.value, delivered_at=finished, attempts=attempt_number)
            )
        else:
            give_up = attempt_number >= settings.webhook_max_retries or not attempt.retryable
            retry_at = None if give_up else finished + backoff(settings, attempt_number)
            session.execute(
                sa.update(OutboxEvent)
                .where(OutboxEvent.id.in_(ids))
                .values(
                    state=OutboxState.dead.value if give_up else OutboxState.pending.value,
                    attempts=attempt_number,
                    next_attempt_at=retry_at or finished,
                )
            )
            log.warning("webhook %s: %s (attempt %d)", subscription_id, attempt.error, attempt_number)
        session.add(
            DeliveryAttempt(
                subscription_id=subscription_id,
                attempted_at=now,
                events=len(ids),
                first_event_id=ids[0],
                last_event_id=ids[-1],
                attempt=attempt_number,
                ok=attempt.ok,
                status_code=attempt.status_code,
                error=attempt.error,
                duration_ms=attempt.duration_ms,
                next_attempt_at=retry_at,
            )
        )
    return len(ids) if attempt.ok else 0
