"""External segment sources: their definitions, importing a remote list as an external segment, and syncs. No HTTP in
(outbound calls go through the connectors).

A sync, like a recompute job, runs in its own transactions so that none waits on the remote system:

1. **claim** the imported segment: a compare-and-set on its link row (``claimed_until``, ``version``), so that two
   processes never sync it at once;
2. **fetch** the remote keys page by page, matching each page to customers in a read-only session (memory holds one
   page of keys and the matched customer ids);
3. **apply** in one write transaction, the segment's row locked: the list is replaced and membership recomputed
   (cause ``sync``), so history, webhooks and statistics follow, and the report is written.

A failure in any step, or a result the small-result guard refuses, changes no member: the error is kept on the
segment's link, the source and the report, and the sync is retried with exponential backoff.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cohorta.access.service import Principal
from cohorta.audit import service as audit
from cohorta.clock import Clock
from cohorta.config import Settings
from cohorta.customers.models import Customer
from cohorta.customers.summary import chunked
from cohorta.db import InValues, new_id, table_of, unit_of_work
from cohorta.errors import CohortaError, Conflict, FieldError, InvalidInput, NotFound, validated
from cohorta.membership.service import list_ids
from cohorta.segments import service as segments
from cohorta.segments.models import Segment, SegmentStatus
from cohorta.segments.schemas import SegmentIn
from cohorta.sources.connectors import (
    CONFIGS,
    CREDENTIALS,
    Connector,
    Context,
    RemoteSegment,
    SourceError,
    build,
    required,
)
from cohorta.sources.connectors.base import redacted_url
from cohorta.sources.crypto import Vault
from cohorta.sources.models import KeyField, Source, SourceKind, SourceSegment, SyncReport, SyncStatus
from cohorta.sources.schemas import (
    ConnectionTestOut,
    ImportIn,
    RemoteSegmentOut,
    SegmentSourceOut,
    SegmentWithSourceOut,
    SourceIn,
    SourceOut,
    SourcePatch,
    SyncReportOut,
)

log = logging.getLogger("cohorta.sources")
MAX_EXAMPLES = 20  # unmatched and skipped keys named in a report
LEASE_MARGIN = timedelta(seconds=60)


class RemoteFailed(CohortaError):
    """The remote system failed a request made on the caller's behalf (listing its segments, importing)."""

    status = 502
    title = "The source failed"


# --- sources -------------------------------------------------------------------------------------------------------


def get_source(session: Session, source_id: str) -> Source:
    row = session.get(Source, source_id)
    if row is None:
        raise NotFound(f"no source {source_id!r}")
    return row


def _period(settings: Settings, source: Source, segment_period: int | None = None) -> int:
    return segment_period or source.sync_period_seconds or settings.source_sync_period_seconds


def to_out(session: Session, settings: Settings, row: Source) -> SourceOut:
    count = session.scalar(sa.select(sa.func.count()).where(SourceSegment.source_id == row.id)) or 0
    return SourceOut(
        id=row.id, name=row.name, description=row.description, kind=row.kind, key_field=row.key_field,
        config=_shown_config(row.config), has_credentials=row.credentials is not None,
        credential_fields=list(row.credential_fields or []),
        content_bytes=None if row.content is None else len(row.content.encode()), active=row.active,
        sync_period_seconds=_period(settings, row), guard_min_members=row.guard_min_members,
        guard_min_percent=row.guard_min_percent, allow_empty=row.allow_empty, segments=count,
        last_error=row.last_error, last_error_at=row.last_error_at, created_at=row.created_at,
        created_by=row.created_by, updated_at=row.updated_at, updated_by=row.updated_by,
    )  # fmt: skip


def _shown_config(config: dict[str, Any]) -> dict[str, Any]:
    """Settings as readers see them: a URL's secret-looking query values (a presigned download's signature) hidden."""
    return {key: redacted_url(value) if key.endswith("url") and isinstance(value, str) else value
            for key, value in config.items()}  # fmt: skip


def list_sources(session: Session, settings: Settings) -> list[SourceOut]:
    rows = session.scalars(sa.select(Source).order_by(sa.func.lower(Source.name), Source.id))
    return [to_out(session, settings, row) for row in rows]


def _audit_view(out: SourceOut) -> dict[str, Any]:
    """What the audit trail keeps: the definition, which credentials exist (never their values)."""
    return out.model_dump(mode="json", exclude={"segments", "last_error", "last_error_at"})


def _check_name_free(session: Session, name: str, source_id: str | None) -> None:
    taken = session.scalar(sa.select(Source.id).where(Source.name == name, Source.id != (source_id or "")))
    if taken:
        raise Conflict(f"the name {name!r} is already used by source {taken}")


def _apply_definition(
    settings: Settings, row: Source, config: dict[str, Any], credentials: dict[str, str] | None, replace: bool
) -> None:
    """Validate and set the config, and (when ``replace``) the credentials, encrypted. Checks the whole is usable."""
    model = validated(CONFIGS[row.kind], config, "config")
    row.config = model.model_dump(mode="json")
    if replace:
        values = validated(CREDENTIALS[row.kind], credentials or {}, "credentials").model_dump(exclude_none=True)
        row.credentials = Vault(settings.secret_key).encrypt(values) if values else None
        row.credential_fields = sorted(values)
    missing = [name for name in required(row.kind, model) if name not in (row.credential_fields or [])]
    if missing:
        raise InvalidInput([FieldError(("credentials", name), "required by this configuration") for name in missing])
    if row.kind == SourceKind.csv.value and row.config.get("url") is None and row.content is None:
        raise InvalidInput([FieldError(("content",), "upload the file as content, or set config.url")])
    if row.kind != SourceKind.csv.value and row.content is not None:
        raise InvalidInput([FieldError(("content",), "only a csv source takes an uploaded file")])


def create_source(
    session: Session, settings: Settings, now: datetime, principal: Principal, body: SourceIn
) -> SourceOut:
    _check_name_free(session, body.name, None)
    row = Source(
        id=new_id("src"), name=body.name, description=body.description, kind=body.kind,
        key_field=body.key_field, content=body.content, active=body.active,
        sync_period_seconds=body.sync_period_seconds, guard_min_members=body.guard_min_members,
        guard_min_percent=body.guard_min_percent, allow_empty=body.allow_empty, credential_fields=[],
        created_at=now, created_by=principal.name, updated_at=now, updated_by=principal.name,
    )  # fmt: skip
    _apply_definition(settings, row, body.config, body.credentials, replace=True)
    session.add(row)
    session.flush()
    out = to_out(session, settings, row)
    audit.record(session, now, principal.name, "source.create", "source", row.id, after=_audit_view(out))
    return out


def update_source(
    session: Session, settings: Settings, now: datetime, principal: Principal, source_id: str, body: SourcePatch
) -> SourceOut:
    row = get_source(session, source_id)
    before = _audit_view(to_out(session, settings, row))
    sent = body.model_fields_set
    if body.name is not None and body.name != row.name:
        _check_name_free(session, body.name, row.id)
        row.name = body.name
    for name in ("description", "content", "sync_period_seconds"):
        if name in sent:
            setattr(row, name, getattr(body, name))
    for name in ("key_field", "active", "guard_min_members", "guard_min_percent", "allow_empty"):
        if getattr(body, name) is not None:
            setattr(row, name, getattr(body, name))
    config = {**row.config, **(body.config or {})}
    _apply_definition(settings, row, config, body.credentials, replace="credentials" in sent)
    row.updated_at, row.updated_by = now, principal.name
    session.flush()
    out = to_out(session, settings, row)
    audit.record(session, now, principal.name, "source.update", "source", row.id, before=before, after=_audit_view(out))
    return out


def delete_source(session: Session, settings: Settings, now: datetime, principal: Principal, source_id: str) -> None:
    """Refused while a segment that is not archived imports from it; archived ones lose their link."""
    row = get_source(session, source_id)
    users = session.execute(
        sa.select(Segment.id, Segment.name)
        .join(SourceSegment, SourceSegment.segment_id == Segment.id)
        .where(SourceSegment.source_id == row.id, Segment.status != SegmentStatus.archived.value)
        .order_by(Segment.name)
    ).all()
    if users:
        named = ", ".join(f"{name} ({segment_id})" for segment_id, name in users)
        raise Conflict(f"cannot delete source {row.id}: segments import from it: {named}; archive or delete them first")
    before = _audit_view(to_out(session, settings, row))
    session.execute(sa.delete(SyncReport).where(SyncReport.source_id == row.id))
    session.execute(sa.delete(SourceSegment).where(SourceSegment.source_id == row.id))
    session.delete(row)
    audit.record(session, now, principal.name, "source.delete", "source", source_id, before=before)


# --- talking to the remote system -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    """What a connector needs of a source, read in one transaction and used after it."""

    id: str
    name: str
    kind: str
    config: dict[str, Any]
    credentials: str | None
    content: str | None

    @classmethod
    def of(cls, row: Source) -> Definition:
        return cls(row.id, row.name, row.kind, dict(row.config), row.credentials, row.content)


@contextmanager
def connected(
    definition: Definition, settings: Settings, clock: Clock, http: httpx.Client | None = None
) -> Iterator[Connector]:
    """A connector for the source, with its credentials decrypted, and an HTTP client (``http``, or one of its own
    with the configured timeout, closed afterwards). Never follows redirects: credentials stay with the host named."""
    client = http or httpx.Client(timeout=settings.source_timeout_seconds, follow_redirects=False)
    try:
        credentials = Vault(settings.secret_key).decrypt(definition.credentials) if definition.credentials else {}
        yield build(definition.kind, definition.config, Context(client, clock, credentials, definition.content))
    finally:
        if http is None:
            client.close()


def test_source(
    session: Session, settings: Settings, clock: Clock, source_id: str, http: httpx.Client | None = None
) -> ConnectionTestOut:
    """Reach the remote system; a failure is an answer (``ok`` false, with what went wrong), not an error."""
    definition = Definition.of(get_source(session, source_id))
    started = time.perf_counter()
    try:
        with connected(definition, settings, clock, http) as connector:
            ok, detail = True, connector.test()
    except (SourceError, ValueError) as exc:
        ok, detail = False, str(exc)
    return ConnectionTestOut(ok=ok, detail=detail, duration_ms=int((time.perf_counter() - started) * 1000))


def remote_segments(
    session: Session, settings: Settings, clock: Clock, source_id: str, http: httpx.Client | None = None
) -> list[RemoteSegmentOut]:
    definition = Definition.of(get_source(session, source_id))
    imported = dict(
        session.execute(
            sa.select(SourceSegment.remote_id, SourceSegment.segment_id)
            .join(Segment, Segment.id == SourceSegment.segment_id)
            .where(SourceSegment.source_id == source_id, Segment.status != SegmentStatus.archived.value)
        ).all()
    )
    found = remote_segments_of(definition, settings, clock, http)
    return [RemoteSegmentOut(id=r.id, name=r.name, kind=r.kind, size=r.size, imported_as=imported.get(r.id))
            for r in found]  # fmt: skip


# --- importing ----------------------------------------------------------------------------------------------------


def _importing(session: Session, source_id: str, remote_id: str) -> str | None:
    """The segment (not archived) that already imports this remote list."""
    return session.scalar(
        sa.select(SourceSegment.segment_id)
        .join(Segment, Segment.id == SourceSegment.segment_id)
        .where(
            SourceSegment.source_id == source_id,
            SourceSegment.remote_id == remote_id,
            Segment.status != SegmentStatus.archived.value,
        )
    )


def import_segment(
    factory: sessionmaker[Session],
    settings: Settings,
    clock: Clock,
    source_id: str,
    body: ImportIn,
    principal: Principal,
    http: httpx.Client | None = None,
) -> str:
    """Create an external segment that mirrors one remote list, labelled with its source; sync it at once when asked.
    Like a job, it runs its own transactions: the remote is asked which lists exist with no transaction open."""
    with factory() as session:
        definition = Definition.of(get_source(session, source_id))
    found = remote_segments_of(definition, settings, clock, http)
    remote = next((r for r in found if r.id == body.remote_id), None)
    if remote is None:
        message = f"source {definition.name} has no list {body.remote_id!r}; GET .../remote-segments lists them"
        raise InvalidInput([FieldError(("remote_id",), message, "unknown_remote")])
    with unit_of_work(factory, write_lock=True) as session:
        get_source(session, source_id)  # still there
        if taken := _importing(session, source_id, body.remote_id):
            raise Conflict(f"list {body.remote_id!r} of source {definition.name} is already imported as {taken}")
        draft = {
            "name": body.name or remote.name, "type": "external", "status": body.status, "team": body.team,
            "description": body.description or f"Imported from {definition.name} ({definition.kind}): {remote.name}",
            "customer_groups": body.customer_groups, "sync_period_seconds": body.sync_period_seconds,
        }  # fmt: skip
        segment_in = validated(SegmentIn, draft, "segment")
        assert isinstance(segment_in, SegmentIn)
        segment = segments.create_segment(session, settings, clock, segment_in, principal)
        now = clock.now()
        session.add(SourceSegment(segment_id=segment.id, source_id=source_id, remote_id=remote.id,
                                  remote_name=remote.name[:255], created_at=now, attempts=0, version=0))  # fmt: skip
        audit.record(session, now, principal.name, "source.import", "segment", segment.id,
                     after={"source": source_id, "remote_id": remote.id, "remote_name": remote.name})  # fmt: skip
        segment_id = segment.id
    if body.sync and body.status == SegmentStatus.active.value:
        sync_segment(factory, settings, clock, segment_id, trigger="import", actor=principal.name, http=http)
    return segment_id


def remote_segments_of(
    definition: Definition, settings: Settings, clock: Clock, http: httpx.Client | None
) -> list[RemoteSegment]:
    try:
        with connected(definition, settings, clock, http) as connector:
            return connector.remote_segments()
    except (SourceError, ValueError) as exc:
        raise RemoteFailed(f"source {definition.name} ({definition.id}): {exc}") from None


# --- syncing ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    segment_id: str
    token: str
    remote_id: str
    attempts: int
    source: Definition
    key_field: str
    guard_min_members: int
    guard_min_percent: int
    allow_empty: bool


@dataclass
class Tally:
    """The remote keys matched to customers, page by page."""

    received: int = 0
    unmatched: int = 0
    unmatched_examples: list[str] = field(default_factory=list)
    matched: set[int] = field(default_factory=set)  # loyalty members: the new list
    skipped: set[int] = field(default_factory=set)  # matching customers who are not loyalty members
    skipped_examples: list[str] = field(default_factory=list)

    def add(self, session: Session, key_field: str, keys: Sequence[str]) -> None:
        self.received += len(keys)
        customers = table_of(Customer)
        column: Any = {
            KeyField.source_id.value: customers.c.source_id,
            KeyField.email.value: sa.func.lower(customers.c.email, type_=sa.String),
            KeyField.phone.value: customers.c.phone,
        }[key_field]
        wanted = [k.lower() if key_field == KeyField.email.value else k for k in keys]
        found: set[str] = set()
        distinct = sorted({k for k in wanted if k})
        for chunk in chunked(distinct):
            query = sa.select(column, customers.c.id, customers.c.loyalty_member, customers.c.source_id)
            for key, customer_id, member, source_id in session.execute(query.where(InValues(column, chunk))):
                found.add(key)
                if member:
                    self.matched.add(customer_id)
                elif customer_id not in self.skipped:
                    self.skipped.add(customer_id)
                    if len(self.skipped_examples) < MAX_EXAMPLES:
                        self.skipped_examples.append(source_id)
        for key in wanted:
            if key not in found:
                self.unmatched += 1
                if len(self.unmatched_examples) < MAX_EXAMPLES and key not in self.unmatched_examples:
                    self.unmatched_examples.append(key)


def _claim(factory: sessionmaker[Session], settings: Settings, now: datetime, segment_id: str,
           version: int | None) -> Claim | None:  # fmt: skip
    """Take the segment's sync for this process, if nobody holds it (and, for the scheduler, if it is still the
    version it saw due): one UPDATE whose WHERE is the compare."""
    token = secrets.token_hex(16)
    with unit_of_work(factory) as session:
        conditions = [
            SourceSegment.segment_id == segment_id,
            sa.or_(SourceSegment.claimed_until.is_(None), SourceSegment.claimed_until < now),
        ]
        if version is not None:
            conditions.append(SourceSegment.version == version)
        lease = now + timedelta(seconds=settings.source_max_sync_seconds) + LEASE_MARGIN
        taken = session.execute(
            sa.update(SourceSegment).where(*conditions).values(claim_token=token, claimed_until=lease)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return None
        link = session.get(SourceSegment, segment_id)
        assert link is not None
        source = get_source(session, link.source_id)
        return Claim(segment_id, token, link.remote_id, link.attempts, Definition.of(source), source.key_field,
                     source.guard_min_members, source.guard_min_percent, source.allow_empty)  # fmt: skip


def sync_segment(
    factory: sessionmaker[Session],
    settings: Settings,
    clock: Clock,
    segment_id: str,
    *,
    trigger: str,
    actor: str,
    force: bool = False,
    version: int | None = None,
    http: httpx.Client | None = None,
) -> SyncReport | None:
    """Sync one imported segment; its report, or None when another process holds it (or, with ``version``, synced it
    since)."""
    claim = _claim(factory, settings, clock.now(), segment_id, version)
    if claim is None:
        return None
    started_at, started = clock.now(), time.perf_counter()
    tally, error = Tally(), None
    try:
        with connected(claim.source, settings, clock, http) as connector, factory() as reading:
            for page in connector.fetch(claim.remote_id):
                tally.add(reading, claim.key_field, page)
                if tally.received > settings.source_max_keys:
                    raise SourceError(f"more than {settings.source_max_keys} keys (COHORTA_SOURCE_MAX_KEYS)")
                if time.perf_counter() - started > settings.source_max_sync_seconds:
                    raise SourceError(f"took longer than {settings.source_max_sync_seconds} s")
    except (SourceError, ValueError) as exc:
        error = str(exc)
    except Exception as exc:  # a bug must not leave the claim held or the members half-changed
        log.exception("sync of segment %s failed unexpectedly", segment_id)
        error = f"unexpected error: {type(exc).__name__}"
    return _finish(factory, settings, clock, claim, tally, error, started_at, started, trigger, actor, force)


def _guard(claim: Claim, matched: int, current: int) -> str | None:
    """Why a result is too suspicious to apply, or None."""
    if current == 0:
        return None
    advice = "members kept; sync with force to accept it"
    if matched == 0 and not claim.allow_empty:
        return f"suspiciously small result: no members where there are {current}; {advice}"
    if current >= claim.guard_min_members and matched * 100 < current * claim.guard_min_percent:
        return (f"suspiciously small result: {matched} members, under {claim.guard_min_percent}% of the current "
                f"{current}; {advice}")  # fmt: skip
    return None


def backoff(settings: Settings, failures: int, period: int) -> timedelta:
    """After the n-th failure in a row: base x 2^(n-1), never longer than the segment's sync period."""
    return timedelta(seconds=min(settings.source_retry_base_seconds * 2 ** min(failures - 1, 30), period))


def _finish(factory: sessionmaker[Session], settings: Settings, clock: Clock, claim: Claim, tally: Tally,
            error: str | None, started_at: datetime, started: float, trigger: str, actor: str,
            force: bool) -> SyncReport | None:  # fmt: skip
    with unit_of_work(factory, write_lock=True) as session:
        # The segment's row lock serialises this with recomputes and live updates of the same segment.
        segment = session.get(Segment, claim.segment_id, with_for_update=True)
        link = session.get(SourceSegment, claim.segment_id)
        if segment is None or link is None or link.claim_token != claim.token:
            log.warning("sync of segment %s lost its claim; nothing applied", claim.segment_id)
            return None
        source = get_source(session, link.source_id)
        now = clock.now()
        current = list_ids(session, segment.id)
        if error is None and segment.status != SegmentStatus.active.value:
            error = f"the segment is {segment.status}: only an active segment syncs"
        if error is None and not force:
            error = _guard(claim, len(tally.matched), len(current))
        report = SyncReport(
            segment_id=segment.id, source_id=source.id, trigger=trigger, actor=actor, started_at=started_at,
            received=tally.received, unmatched=tally.unmatched, unmatched_examples=tally.unmatched_examples,
            skipped=len(tally.skipped), skipped_examples=tally.skipped_examples,
            added=0, removed=0, unchanged=0, attempt=claim.attempts + 1,
        )  # fmt: skip
        if error is None:
            added, removed = segments.replace_external_list(session, settings, segment, tally.matched, now)
            report.status, report.added, report.removed = SyncStatus.ok.value, added, removed
            report.unchanged = len(tally.matched & current)
            link.attempts, link.next_attempt_at, link.last_error, link.last_success_at = 0, None, None, now
            source.last_error = source.last_error_at = None
        else:
            report.status, report.error = SyncStatus.failed.value, error
            link.attempts = claim.attempts + 1
            link.next_attempt_at = now + backoff(
                settings, link.attempts, _period(settings, source, segment.sync_period_seconds)
            )
            link.last_error, source.last_error, source.last_error_at = error, error, now
            report.next_attempt_at = link.next_attempt_at
            log.warning("sync of segment %s from source %s failed (attempt %d, retry at %s): %s", segment.id,
                        source.id, link.attempts, link.next_attempt_at.isoformat(), error)  # fmt: skip
        report.finished_at = now
        report.duration_ms = int((time.perf_counter() - started) * 1000)
        link.last_sync_at, link.claim_token, link.claimed_until, link.version = now, None, None, link.version + 1
        session.add(report)
        session.flush()
        audit.record(session, now, actor, "source.sync", "segment", segment.id, after=_report_view(report))
        return report


def _report_view(report: SyncReport) -> dict[str, Any]:
    return SyncReportOut.model_validate(report).model_dump(
        mode="json", exclude={"unmatched_examples", "skipped_examples"}
    )


def next_sync_at(link: SourceSegment, period: int) -> datetime:
    """When the segment is due: its retry after a failure, else a period after its last sync (at once if never)."""
    if link.attempts and link.next_attempt_at is not None:
        return link.next_attempt_at
    last = link.last_success_at or link.last_sync_at
    return link.created_at if last is None else last + timedelta(seconds=period)


def due_syncs(session: Session, settings: Settings, now: datetime) -> list[tuple[str, int]]:
    """(segment id, link version) of every active imported segment of an active source that is due, oldest first.
    Imported segments are few (one per remote list), so the schedule is worked out here rather than in SQL."""
    rows = session.execute(
        sa.select(SourceSegment, Segment.sync_period_seconds, Source)
        .join(Segment, Segment.id == SourceSegment.segment_id)
        .join(Source, Source.id == SourceSegment.source_id)
        .where(
            Segment.status == SegmentStatus.active.value,
            Source.active,
            sa.or_(SourceSegment.claimed_until.is_(None), SourceSegment.claimed_until < now),
        )
    ).all()
    due = [(next_sync_at(link, _period(settings, source, period)), link.segment_id, link.version)
           for link, period, source in rows]  # fmt: skip
    return [(segment_id, version) for at, segment_id, version in sorted(due) if at <= now]


def run_due_syncs(
    factory: sessionmaker[Session], clock: Clock, settings: Settings, *, limit: int = 1,
    http: httpx.Client | None = None,
) -> list[str]:  # fmt: skip
    """Sync up to ``limit`` due segments (the scheduler's delivery thread calls this every pass, one at a time, so
    webhooks never wait long behind a sync); returns the segments synced."""
    with factory() as session:
        due = due_syncs(session, settings, clock.now())
    synced = []
    for segment_id, version in due[:limit]:
        report = sync_segment(
            factory, settings, clock, segment_id, trigger="schedule", actor="scheduler", version=version, http=http
        )
        if report is not None:
            synced.append(segment_id)
    return synced


def request_sync(
    factory: sessionmaker[Session],
    settings: Settings,
    clock: Clock,
    segment_id: str,
    principal: Principal,
    *,
    force: bool = False,
    http: httpx.Client | None = None,
) -> SyncReport:
    """Sync now, on demand."""
    with factory() as session:
        segment = segments.get_segment(session, segment_id, principal)
        if session.get(SourceSegment, segment_id) is None:
            raise Conflict(f"segment {segment_id} is not imported from a source: nothing to sync")
        if segment.status != SegmentStatus.active.value:
            raise Conflict(f"only an active segment syncs; this one is {segment.status}")
    report = sync_segment(factory, settings, clock, segment_id, trigger="manual", actor=principal.name, force=force,
                          http=http)  # fmt: skip
    if report is None:
        raise Conflict(f"segment {segment_id} is being synced already; its report will follow")
    return report


# --- reads --------------------------------------------------------------------------------------------------------


def reports(session: Session, segment_id: str, limit: int, offset: int) -> list[SyncReportOut]:
    rows = session.scalars(
        sa.select(SyncReport)
        .where(SyncReport.segment_id == segment_id)
        .order_by(SyncReport.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [SyncReportOut.model_validate(row) for row in rows]


def segment_source(session: Session, settings: Settings, segment: Segment) -> SegmentSourceOut | None:
    """Where an imported segment's members come from, its sync state and latest report; None for other segments."""
    link = session.get(SourceSegment, segment.id)
    if link is None:
        return None
    source = get_source(session, link.source_id)
    period = _period(settings, source, segment.sync_period_seconds)
    latest = reports(session, segment.id, 1, 0)
    return SegmentSourceOut(
        source_id=source.id, source_name=source.name, kind=source.kind, remote_id=link.remote_id,
        remote_name=link.remote_name, key_field=source.key_field, sync_period_seconds=period,
        last_sync_at=link.last_sync_at, last_success_at=link.last_success_at,
        next_sync_at=next_sync_at(link, period) if source.active else None, failures=link.attempts,
        error=link.last_error, syncing=link.claim_token is not None, last_report=latest[0] if latest else None,
    )  # fmt: skip


def segment_view(session: Session, settings: Settings, segment: Segment) -> SegmentWithSourceOut:
    out = segments.to_out(segment, settings.currency_exponent)
    return SegmentWithSourceOut(**out.model_dump(), source=segment_source(session, settings, segment))


def imported_segments(
    session: Session, settings: Settings, source_id: str, principal: Principal
) -> list[SegmentWithSourceOut]:
    """The segments imported from a source that the caller may see, each with its sync state (for lists in a UI)."""
    get_source(session, source_id)
    rows = session.scalars(
        sa.select(Segment)
        .join(SourceSegment, SourceSegment.segment_id == Segment.id)
        .where(SourceSegment.source_id == source_id)
        .order_by(Segment.name)
    )
    return [segment_view(session, settings, s) for s in rows if principal.sees(s.team)]
