"""Delivering a distribution campaign's audience to a webhook or a file, on demand and on a schedule.

A delivery reads the audience in a read-only session, sends it with no database transaction open for writing, then
records its report in a short transaction of its own: a slow receiver never holds SQLite's write lock.

Webhook requests are JSON batches, signed as ``cohorta.outbound`` describes.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cohorta.access.service import Principal, system_principal
from cohorta.audit import service as audit
from cohorta.campaigns.models import Campaign, CampaignKind, CampaignStatus, Delivery
from cohorta.campaigns.schemas import DeliveryOut
from cohorta.campaigns.service import audience_query, get_campaign
from cohorta.clock import Clock
from cohorta.config import Settings
from cohorta.errors import Conflict
from cohorta.exports.service import csv_safe
from cohorta.outbound import Attempt, post_signed

log = logging.getLogger("cohorta.distribution")


class DeliveryFailed(Exception):
    pass


def _batches(session: Session, campaign: Campaign, size: int) -> Iterator[list[str]]:
    result = session.execute(audience_query(session, campaign).execution_options(yield_per=size))
    for partition in result.scalars().partitions(size):
        yield list(partition)


def _count(session: Session, campaign: Campaign) -> int:
    query = audience_query(session, campaign).order_by(None).subquery()
    return int(session.scalar(sa.select(sa.func.count()).select_from(query)) or 0)


class _Report:
    def __init__(self) -> None:
        self.recipients = self.batches = self.attempts = self.bytes = 0
        self.destination = ""


def _send_webhook(
    session: Session, campaign: Campaign, config: dict[str, Any], settings: Settings, clock: Clock,
    delivery_key: str, report: _Report, client: httpx.Client,
) -> None:  # fmt: skip
    size = int(config.get("batch_size", 1000))
    total = _count(session, campaign)
    batches = max(1, -(-total // size))
    report.destination = config["url"]
    chunks = _batches(session, campaign, size) if total else iter([[]])
    for number, chunk in enumerate(chunks, start=1):
        payload = {
            "delivery": delivery_key, "campaign": {"id": campaign.id, "name": campaign.name},
            "batch": number, "batches": batches, "total": total, "customers": chunk,
        }  # fmt: skip
        body = json.dumps(payload, separators=(",", ":")).encode()
        _post_with_retries(config, settings, clock, delivery_key, body, report, client)
        report.batches += 1
        report.recipients += len(chunk)
        report.bytes += len(body)


def _post_with_retries(
    config: dict[str, Any], settings: Settings, clock: Clock, delivery_key: str, body: bytes, report: _Report,
    client: httpx.Client,
) -> None:  # fmt: skip
    attempt: Attempt | None = None
    for number in range(settings.webhook_max_attempts):
        if number:
            time.sleep(settings.webhook_backoff_seconds * 2 ** (number - 1))
        report.attempts += 1
        attempt = post_signed(client, config["url"], config["secret"], body, delivery_key=delivery_key,
                              timestamp=int(clock.now().timestamp()))  # fmt: skip
        if attempt.ok:
            return
        if not attempt.retryable:
            break
    error = attempt.error if attempt else "no attempt made"
    raise DeliveryFailed(f"{error} (after {report.attempts} attempts in all)")


def _write_file(session: Session, campaign: Campaign, config: dict[str, Any], settings: Settings, now: datetime,
                report: _Report) -> None:  # fmt: skip
    folder = Path(settings.export_dir) / "distributions" / campaign.id
    folder.mkdir(parents=True, exist_ok=True)
    extension = config.get("format", "csv")
    path = folder / f"{now.strftime('%Y%m%dT%H%M%S%fZ')}.{extension}"
    partial = path.with_suffix(path.suffix + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as handle:
        if extension == "csv":
            handle.write("source_id\r\n")
        for chunk in _batches(session, campaign, 10_000):
            if extension == "csv":
                buffer = io.StringIO()
                writer = csv.writer(buffer)
                writer.writerows([csv_safe(source_id)] for source_id in chunk)
                handle.write(buffer.getvalue())
            else:
                handle.writelines(json.dumps({"source_id": source_id}) + "\n" for source_id in chunk)
            report.recipients += len(chunk)
            report.batches += 1
    os.replace(partial, path)  # readers never see a half-written file
    report.attempts = 1
    report.bytes = path.stat().st_size
    report.destination = str(path)


def deliver(
    factory: sessionmaker[Session],
    settings: Settings,
    clock: Clock,
    campaign_id: str,
    *,
    trigger: str,
    principal: Principal,
    client: httpx.Client | None = None,
) -> DeliveryOut:
    """Deliver the audience now and record the report. Raises Conflict for a campaign that may not deliver."""
    started_at = clock.now()
    started = time.perf_counter()
    report = _Report()
    error: str | None = None
    with factory() as session:
        campaign = get_campaign(session, campaign_id, principal)
        if campaign.kind != CampaignKind.distribution.value or not campaign.distribution:
            raise Conflict(f"campaign {campaign_id} is a {campaign.kind}: only distribution campaigns deliver")
        allowed = {CampaignStatus.active.value} | ({CampaignStatus.draft.value} if trigger == "manual" else set())
        if campaign.status not in allowed:
            raise Conflict(f"the campaign is {campaign.status}: it does not deliver")
        config = dict(campaign.distribution)
        delivery_key = f"{campaign.id}-{started_at.strftime('%Y%m%dT%H%M%S%f')}"
        own_client = client is None
        http = client or httpx.Client(timeout=settings.webhook_timeout_seconds)
        try:
            if config["target"] == "webhook":
                _send_webhook(session, campaign, config, settings, clock, delivery_key, report, http)
            else:
                _write_file(session, campaign, config, settings, started_at, report)
        except (DeliveryFailed, OSError) as exc:
            error = str(exc)
            report.destination = report.destination or config.get("url") or settings.export_dir
            log.warning("delivery of campaign %s failed: %s", campaign.id, error)
        finally:
            if own_client:
                http.close()
    finished_at = clock.now()
    with factory.begin() as session:
        row = Delivery(
            campaign_id=campaign_id, trigger=trigger, target=config["target"], destination=report.destination,
            status="failed" if error else "succeeded", recipients=report.recipients, batches=report.batches,
            attempts=report.attempts, bytes=report.bytes, error=error, started_at=started_at, finished_at=finished_at,
            duration_ms=int((time.perf_counter() - started) * 1000), actor=principal.name,
        )  # fmt: skip
        session.add(row)
        session.flush()
        out = DeliveryOut.model_validate(row, from_attributes=True)
        audit.record(session, finished_at, principal.name, "campaign.deliver", "campaign", campaign_id,
                     after=out.model_dump(mode="json"))  # fmt: skip
    return out


def deliveries(session: Session, campaign_id: str, limit: int, offset: int) -> list[DeliveryOut]:
    rows = session.scalars(
        sa.select(Delivery)
        .where(Delivery.campaign_id == campaign_id)
        .order_by(Delivery.started_at.desc(), Delivery.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [DeliveryOut.model_validate(row, from_attributes=True) for row in rows]


def run_due_distributions(factory: sessionmaker[Session], clock: Clock, settings: Settings) -> int:
    """Deliver every active distribution campaign whose scheduled time has come; returns how many ran.

    Each is claimed first by moving its next time one period on, with a compare-and-set on the old value: with
    several workers, exactly one of them delivers it.
    """
    now = clock.now()
    with factory() as session:
        due = session.execute(
            sa.select(Campaign.id, Campaign.next_distribution_at, Campaign.distribution_period_seconds).where(
                Campaign.kind == CampaignKind.distribution.value,
                Campaign.status == CampaignStatus.active.value,
                Campaign.next_distribution_at.is_not(None),
                Campaign.next_distribution_at <= now,
            )
        ).all()
    claimed: list[str] = []
    for campaign_id, due_at, period in due:
        with factory.begin() as session:
            won = session.execute(
                sa.update(Campaign)
                .where(Campaign.id == campaign_id, Campaign.next_distribution_at == due_at)
                .values(next_distribution_at=now + timedelta(seconds=period or 86_400))
            )
            if won.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(campaign_id)
    for campaign_id in claimed:
        try:
            deliver(factory, settings, clock, campaign_id, trigger="schedule", principal=system_principal("scheduler"))
        except Conflict as exc:  # changed since it was listed
            log.info("scheduled delivery of %s skipped: %s", campaign_id, exc)
    return len(claimed)
