"""Segment definitions: create, edit, versions, lifecycle, explicit member lists, member tables. No HTTP."""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from typing import Any

import ibis
import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from cohorta import rules
from cohorta.access.service import Principal, check_team, visible_to
from cohorta.audit import service as audit
from cohorta.campaigns.models import Campaign, CampaignSegment, CampaignStatus
from cohorta.clock import Clock
from cohorta.config import Settings
from cohorta.customers.models import Customer, ValueType
from cohorta.customers.service import attribute_definitions, customer_id_for
from cohorta.customers.summary import chunked
from cohorta.customers.values import column_for
from cohorta.db import (
    InValues,
    UTCDateTime,
    as_instant,
    delete_rows,
    insert_rows,
    new_id,
    select_rows,
    table_of,
)
from cohorta.errors import Conflict, FieldError, InvalidInput, NotFound
from cohorta.evaluation import store
from cohorta.evaluation.catalog import build_catalog
from cohorta.membership import jobs
from cohorta.membership.service import (
    apply_diff,
    customer_segment_rows,
    enter_list,
    is_live,
    list_ids,
    member_ids,
    recompute,
)
from cohorta.money import from_minor
from cohorta.rules.model import walk
from cohorta.segments.models import (
    ChangeCause,
    MembershipChange,
    RefreshState,
    Segment,
    SegmentListEntry,
    SegmentMember,
    SegmentStatus,
    SegmentType,
    SegmentVersion,
    SegmentWakeup,
)
from cohorta.segments.preview import checked_rule, explain_rule, live_segment_ids
from cohorta.segments.preview import context as preview_context
from cohorta.segments.schemas import (
    MAX_STATIC_IDS,
    SEGMENT_SORTS,
    CsvImportOut,
    CsvRow,
    CustomerSegmentOut,
    DraftRule,
    DriftOut,
    ExplainIn,
    ExplainOut,
    ListChangeOut,
    MemberOut,
    MemberPage,
    MembershipChangeOut,
    RefreshOut,
    SegmentFilters,
    SegmentIn,
    SegmentOut,
    SegmentPatch,
    StatisticsOut,
    UsageOut,
    UsedBy,
    VersionOut,
)
from cohorta.sources.models import Source, SourceSegment, SyncReport
from cohorta.webhooks.service import enqueue_status, subscriptions_naming

LEAF_KINDS = (rules.Condition, rules.Activity, rules.InSegment, rules.Sample)
MEMBER_SORTS = {
    "source_id": "source_id",
    "last_name": "last_name",
    "created_at": "created_at",
    "since": "since",
    "total_spent": "total_spent_minor",
    "order_count": "order_count",
    "last_order_at": "last_order_at",
    "points_balance": "points_balance",
}


def new_segment_id() -> str:
    return new_id("seg")


def get_segment(session: Session, segment_id: str, principal: Principal | None = None) -> Segment:
    """The segment; NotFound also when ``principal`` may not see its team (a hidden segment does not exist)."""
    segment = session.get(Segment, segment_id)
    if segment is None or (principal is not None and not principal.sees(segment.team)):
        raise NotFound(f"no segment {segment_id!r}")
    return segment


def reference_graph(session: Session) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    query = sa.select(Segment.id, Segment.rule).where(
        Segment.type == SegmentType.dynamic.value, Segment.status != SegmentStatus.archived.value
    )
    for segment_id, rule in session.execute(query).all():
        if rule:
            graph[segment_id] = rules.segment_references(rules.Rule.model_validate(rule))
    return graph


def _checked_definition(
    session: Session,
    settings: Settings,
    principal: Principal,
    segment_id: str,
    rule_json: dict[str, Any] | None,
    text: str | None,
) -> rules.Rule:
    draft = DraftRule(rule=rule_json, text=text)
    known = live_segment_ids(session, principal) | {segment_id}  # a reference to itself is a cycle, reported below
    rule = checked_rule(draft, settings, build_catalog(session), known)
    graph = reference_graph(session)
    graph[segment_id] = rules.segment_references(rule)
    cycle = rules.find_cycle(graph)
    if cycle:
        names = " -> ".join(cycle)
        raise InvalidInput([FieldError(("rule",), f"segment references form a cycle: {names}", "cycle")])
    return rule


def _check_window(starts_at: datetime | None, expires_at: datetime | None) -> None:
    if starts_at and expires_at and expires_at <= starts_at:
        raise InvalidInput([FieldError(("expires_at",), "must be after starts_at")])


def _check_timezone(zone: str | None) -> None:
    if zone is None:
        return
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput([FieldError(("timezone",), f"unknown time zone {zone!r}")]) from None


def _check_name_free(session: Session, name: str, segment_id: str | None) -> None:
    query = sa.select(Segment.id).where(Segment.name == name, Segment.status != SegmentStatus.archived.value)
    if segment_id is not None:
        query = query.where(Segment.id != segment_id)
    taken = session.scalar(query)
    if taken:
        raise Conflict(f"the name {name!r} is already used by segment {taken}")


#: A new static segment's list of at most this many customers enters membership within the request that saves it;
#: a longer one is saved (and checked for a twin) in the request, and its members enter in a background job. Entry
#: writes members, history, month figures and statistics: 1.5 s in process for 171,341 members at 1,000,000 customers
#: on SQLite, 2.2-4.9 s by the job on SQLite and PostgreSQL (docs/benchmarks.md); at this size, about 0.2 s.
LIST_ENTRY_IN_REQUEST = 20_000


def create_segment(
    session: Session,
    settings: Settings,
    clock: Clock,
    body: SegmentIn,
    principal: Principal,
    member_ids: set[int] | None = None,
    member_query: sa.Select[Any] | None = None,
) -> Segment:
    """Create a segment. A static one takes its members from its rule (a snapshot), ``customers`` or, from other
    services, ``member_ids`` (a CSV upload) or ``member_query``, a query of distinct customer ids that the database
    writes into the list itself (a saved combination of segments)."""
    now, actor = clock.now(), principal.name
    check_team(session, principal, body.team)
    _check_name_free(session, body.name, None)
    _check_window(body.starts_at, body.expires_at)
    _check_timezone(body.timezone)
    segment = Segment(
        id=new_segment_id(),
        name=body.name,
        description=body.description,
        type=body.type,
        status=body.status,
        timezone=body.timezone,
        starts_at=body.starts_at,
        expires_at=body.expires_at,
        store=body.store,
        team=body.team,
        customer_groups=body.customer_groups or [],
        sync_period_seconds=body.sync_period_seconds,
        version=1,
        member_count=0,
        created_at=now,
        created_by=actor,
        updated_at=now,
        updated_by=actor,
        refresh_state=RefreshState.idle.value,
        refresh_attempts=0,
    )
    has_rule = body.rule is not None or body.text is not None
    if body.type == SegmentType.external.value and body.customers is not None:
        raise InvalidInput([FieldError(("customers",), "set an external segment's members with PUT .../members")])
    rule = _checked_definition(session, settings, principal, segment.id, body.rule, body.text) if has_rule else None
    if rule is not None and body.type == SegmentType.dynamic.value:
        segment.rule, segment.rule_text = rules.node_to_json(rule), rules.to_text(rule)
    session.add(segment)
    session.add(
        SegmentVersion(
            segment_id=segment.id,
            version=1,
            name=segment.name,
            rule=segment.rule,
            rule_text=segment.rule_text,
            created_at=now,
            created_by=actor,
        )
    )
    session.flush()
    if body.type == SegmentType.static.value:
        if rule is not None:
            ctx = rules.Context(
                as_of=now,
                timezone=body.timezone or settings.timezone,
                currency_exponent=settings.currency_exponent,
                catalog=build_catalog(session),
            )
            ids = store.matching_ids(session, rule, ctx)
            segment.rule_text = rules.to_text(rule)  # kept to say where the snapshot came from
            listed = _set_static_list(session, segment, ids, now)
        elif member_query is not None:
            listed = _set_static_list_from(session, segment, member_query, now)
        else:
            ids = member_ids if member_ids is not None else _resolve_all(session, body.customers or [], ("customers",))
            listed = _set_static_list(session, segment, ids, now)
        if listed <= LIST_ENTRY_IN_REQUEST:
            enter_list(session, segment, now, ChangeCause.manual)
        else:  # the list is saved (the snapshot, twin-checked); its members enter in the background, within seconds
            jobs.queue(segment, now, jobs.LIST_ENTRY)
    elif body.type == SegmentType.dynamic.value and body.status == SegmentStatus.active.value:
        jobs.queue(segment, now)
    session.flush()
    audit.record(session, now, actor, "segment.create", "segment", segment.id, after=audit_view(segment))
    return segment


CSV_REPORT_ROWS = 1_000


def read_customer_csv(content: bytes) -> tuple[list[tuple[int, str]], list[int]]:
    """The (line, source_id) rows of an uploaded file and the lines without a value. The ids come from a column
    named ``source_id`` when the first line names one, otherwise from the first column of every line."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput([FieldError(("file",), f"the file is not UTF-8 text (byte {exc.start})")]) from exc
    try:
        lines = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise InvalidInput([FieldError(("file",), f"not a CSV file: {exc}")]) from exc
    column, first = 0, 0
    if lines:
        header = [cell.strip().lower() for cell in lines[0]]
        if "source_id" in header:
            column, first = header.index("source_id"), 1
    rows: list[tuple[int, str]] = []
    blank: list[int] = []
    for number, cells in enumerate(lines[first:], start=first + 1):
        value = cells[column].strip() if column < len(cells) else ""
        if not value:
            if any(cell.strip() for cell in cells) or column >= len(cells):
                blank.append(number)
            continue
        if len(value) > 255:
            raise InvalidInput([FieldError(("file", number), "a source_id is at most 255 characters")])
        rows.append((number, value))
    if len(rows) > MAX_STATIC_IDS:
        raise InvalidInput([FieldError(("file",), f"at most {MAX_STATIC_IDS:,} rows")])
    return rows, blank


def create_static_from_csv(
    session: Session, settings: Settings, clock: Clock, name: str, content: bytes, principal: Principal,
    *, description: str | None = None, team: str | None = None,
) -> CsvImportOut:  # fmt: skip
    """A static segment of the customers listed in a CSV file; unknown ids are reported row by row, not added."""
    rows, blank = read_customer_csv(content)
    ids, unknown = _resolve(session, [source_id for _, source_id in rows])
    if not ids:
        detail = "the file names no known customer" if rows else "the file has no source_id values"
        raise InvalidInput([FieldError(("file",), detail)])
    missing = set(unknown)
    unknown_rows = [CsvRow(row=line, source_id=sid) for line, sid in rows if sid in missing]
    body = SegmentIn(name=name, description=description, team=team, type="static")
    segment = create_segment(session, settings, clock, body, principal, member_ids=ids)
    return CsvImportOut(
        segment=to_out(segment, settings.currency_exponent), rows=len(rows), members=len(ids),
        unknown=unknown_rows[:CSV_REPORT_ROWS], unknown_count=len(unknown_rows),
        duplicates=len(rows) - len({sid for _, sid in rows}), blank_rows=blank[:CSV_REPORT_ROWS],
    )  # fmt: skip


def audit_view(segment: Segment) -> dict[str, Any]:
    """What the audit trail keeps of a segment: its definition, not its ever-changing refresh state."""
    out = to_out(segment).model_dump(mode="json", exclude={"refresh", "drift", "members"})
    return out


def _resolve_all(session: Session, source_ids: Sequence[str], loc: tuple[str | int, ...]) -> set[int]:
    found, unknown = _resolve(session, source_ids)
    if unknown:
        shown = ", ".join(repr(s) for s in unknown[:20])
        more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        raise InvalidInput([FieldError(loc, f"unknown customers: {shown}{more}", "unknown_customer")])
    return found


def _resolve(session: Session, source_ids: Sequence[str]) -> tuple[set[int], list[str]]:
    customers = table_of(Customer)
    known: dict[str, int] = {}
    for chunk in chunked(sorted(set(source_ids))):
        query = sa.select(customers.c.source_id, customers.c.id).where(InValues(customers.c.source_id, chunk))
        known.update(session.connection().execute(query).all())
    unknown = sorted({s for s in source_ids if s not in known})
    return set(known.values()), unknown


def _digest(ids: set[int]) -> str:
    return hashlib.sha256(",".join(map(str, sorted(ids))).encode()).hexdigest()


def _refuse_twin(session: Session, segment: Segment, digest: str, size: int) -> None:
    """Conflict when another static segment (not archived) has exactly this list; else the digest is the segment's."""
    twin = session.scalar(
        sa.select(Segment.id).where(
            Segment.type == SegmentType.static.value,
            Segment.status != SegmentStatus.archived.value,
            Segment.list_digest == digest,
            Segment.id != segment.id,
        )
    )
    if twin:
        raise Conflict(f"static segment {twin} already has exactly these {size} members")
    segment.list_digest = digest


def _set_static_list(session: Session, segment: Segment, ids: set[int], now: datetime) -> int:
    """A static segment's list (twin-checked): how many customers it holds."""
    _refuse_twin(session, segment, _digest(ids), len(ids))
    _replace_list(session, segment, ids, now)
    return len(ids)


def _set_static_list_from(session: Session, segment: Segment, member_query: sa.Select[Any], now: datetime) -> int:
    """A new static segment's list from a query of distinct customer ids, written by the database (INSERT ...
    SELECT); the ids come back to Python only as one text value, the sorted list the twin check's digest is made
    of. Returns how many customers the list holds."""
    entries = table_of(SegmentListEntry)
    found = member_query.subquery("found")
    connection = session.connection()
    connection.execute(
        sa.insert(entries).from_select(
            ["segment_id", "customer_id", "added_at"],
            sa.select(sa.literal(segment.id, sa.String), found.c.customer_id, sa.literal(now, UTCDateTime())),
        )
    )
    count, digest = _list_digest(session, segment.id)
    _refuse_twin(session, segment, digest, count)
    return count


def _list_digest(session: Session, segment_id: str) -> tuple[int, str]:
    """(size, digest) of the segment's list as stored: :func:`_digest` of its ids, which come back to Python only as
    one text value (a million ids: one string, not a million rows)."""
    entries = table_of(SegmentListEntry)
    listed = sa.func.aggregate_strings(sa.cast(entries.c.customer_id, sa.String), ",")
    count, text = session.connection().execute(
        sa.select(sa.func.count(), listed).where(entries.c.segment_id == segment_id)
    ).one()
    ids = np.fromstring(text or "", dtype=np.int64, sep=",")
    if ids.size != count:
        raise RuntimeError(f"segment {segment_id}: read {ids.size} list ids of {count}")
    if not (ids[1:] > ids[:-1]).all():  # in the primary key's order already, as a rule
        text = ",".join(map(str, np.sort(ids).tolist()))
    return int(count), hashlib.sha256((text or "").encode()).hexdigest()  # as _digest(): sorted, comma-separated


def _replace_list(session: Session, segment: Segment, ids: set[int], now: datetime) -> tuple[int, int]:
    entries = table_of(SegmentListEntry)
    current = list_ids(session, segment.id)
    added, removed = ids - current, current - ids
    for chunk in chunked(sorted(removed)):
        session.connection().execute(
            sa.delete(entries).where(entries.c.segment_id == segment.id, InValues(entries.c.customer_id, chunk))
        )
    insert_rows(
        session.connection(),
        entries,
        [{"segment_id": segment.id, "customer_id": cid, "added_at": now} for cid in sorted(added)],
    )
    return len(added), len(removed)


def update_segment(
    session: Session, settings: Settings, clock: Clock, segment_id: str, body: SegmentPatch, principal: Principal
) -> Segment:
    segment = get_segment(session, segment_id, principal)
    if segment.status == SegmentStatus.archived.value:
        raise Conflict("an archived segment cannot be edited")
    now, actor = clock.now(), principal.name
    before = audit_view(segment)
    if "team" in body.model_fields_set:
        check_team(session, principal, body.team)
    sent = body.model_fields_set
    new_version = False
    if "name" in sent and body.name is not None and body.name != segment.name:
        _check_name_free(session, body.name, segment.id)
        segment.name = body.name
        new_version = True
    if body.rule is not None or body.text is not None:
        if segment.type != SegmentType.dynamic.value:
            raise InvalidInput([FieldError(("rule",), f"a {segment.type} segment has no rule")])
        rule = _checked_definition(session, settings, principal, segment.id, body.rule, body.text)
        rule_json = rules.node_to_json(rule)
        if rule_json != segment.rule:
            segment.rule, segment.rule_text = rule_json, rules.to_text(rule)
            new_version = True
    for field in ("description", "timezone", "starts_at", "expires_at", "store", "team", "sync_period_seconds"):
        if field in sent:
            setattr(segment, field, getattr(body, field))
    if "customer_groups" in sent:
        segment.customer_groups = body.customer_groups or []
    _check_window(segment.starts_at, segment.expires_at)
    _check_timezone(segment.timezone)
    if new_version:
        segment.version += 1
        session.add(
            SegmentVersion(
                segment_id=segment.id,
                version=segment.version,
                name=segment.name,
                rule=segment.rule,
                rule_text=segment.rule_text,
                created_at=now,
                created_by=actor,
            )
        )
    segment.updated_at, segment.updated_by = now, actor
    _after_definition_change(session, settings, segment, now)
    session.flush()
    audit.record(session, now, actor, "segment.update", "segment", segment.id, before=before, after=audit_view(segment))
    return segment


def _after_definition_change(session: Session, settings: Settings, segment: Segment, now: datetime) -> None:
    """A change that can alter who belongs: dynamic segments are recomputed by a job; lists at once."""
    if segment.status != SegmentStatus.active.value:
        return
    if segment.type == SegmentType.dynamic.value:
        jobs.queue(segment, now)
    else:
        _follow_list(session, settings, segment, now, ChangeCause.manual)


def restore_version(
    session: Session, settings: Settings, clock: Clock, segment_id: str, version: int, principal: Principal
) -> Segment:
    segment = get_segment(session, segment_id, principal)
    old = session.get(SegmentVersion, (segment_id, version))
    if old is None:
        raise NotFound(f"segment {segment_id} has no version {version}")
    patch = SegmentPatch(name=old.name, rule=old.rule) if old.rule is not None else SegmentPatch(name=old.name)
    updated = update_segment(session, settings, clock, segment_id, patch, principal)
    latest = session.get(SegmentVersion, (segment_id, updated.version))
    if latest is not None and updated.version != version:
        latest.restored_from = version
    return segment


def versions(session: Session, segment_id: str) -> list[VersionOut]:
    get_segment(session, segment_id)
    rows = session.scalars(
        sa.select(SegmentVersion).where(SegmentVersion.segment_id == segment_id).order_by(SegmentVersion.version)
    ).all()
    out: list[VersionOut] = []
    previous: list[str] = []
    for row in rows:
        lines = condition_lines(row.rule)
        diff = [line for line in difflib.ndiff(previous, lines) if line[:1] in "+-"]
        out.append(
            VersionOut(
                version=row.version,
                name=row.name,
                text=row.rule_text,
                rule=row.rule,
                created_at=row.created_at,
                created_by=row.created_by,
                restored_from=row.restored_from,
                diff=[f"{line[0]} {line[2:]}" for line in diff],
            )
        )
        previous = lines
    return list(reversed(out))


def condition_lines(rule_json: dict[str, Any] | None) -> list[str]:
    """The rule's leaf conditions as text, one per line, in order (for readable version diffs)."""
    if not rule_json:
        return []
    rule = rules.Rule.model_validate(rule_json)
    return [
        rules.to_text(node)
        for node in walk(rule.root)
        if isinstance(node, LEAF_KINDS) and not _inside_where(rule, node)
    ]


def _inside_where(rule: rules.Rule, node: Any) -> bool:
    return any(node in (a.where or []) for a in walk(rule.root) if isinstance(a, rules.Activity))


def conditions_count(rule_json: dict[str, Any] | None) -> int:
    return len(condition_lines(rule_json))


# --- lifecycle -----------------------------------------------------------------------------------------------


def _refuse_if_used(session: Session, segment: Segment, action: str, principal: Principal) -> None:
    """Deactivating, archiving or deleting a segment that an active campaign or an active segment's rule uses would
    silently change who those target: refused, naming them. Deleting is also refused while any campaign names it
    (its targeting is kept for reporting): archive it instead."""
    reasons: list[str] = []

    def named(items: Sequence[Any], describe: Any) -> str:
        """The consumers the caller may see, by name; the others only counted (a hidden object is never named)."""
        seen = [describe(item) for item in items if principal.sees(item.team)]
        hidden = len(items) - len(seen)
        return ", ".join(seen + ([f"{hidden} in teams you cannot see"] if hidden else []))

    users = jobs.dependents(session, segment.id)
    if action == "delete":  # any segment whose rule names it, active or not
        users = _referencing(session, segment.id)
    if users:
        kind = "segments" if action == "delete" else "active segments"
        reasons.append(f"the rules of {kind} use it: " + named(users, lambda s: f"{s.name} ({s.id})"))
    campaigns = _campaigns_using(session, segment.id)
    blocking = [c for c in campaigns if action == "delete" or c.status == CampaignStatus.active.value]
    if blocking:
        kind = "campaigns" if action == "delete" else "active campaigns"
        reasons.append(f"{kind} target it: " + named(blocking, lambda c: f"{c.name} ({c.id}, {c.status})"))
    if action == "delete" and (hooks := subscriptions_naming(session, segment.id)):
        reasons.append("webhook subscriptions name it: " + ", ".join(h.id for h in hooks))
    if reasons:
        raise Conflict(f"cannot {action} segment {segment.id}: " + "; ".join(reasons))


def _referencing(session: Session, segment_id: str) -> list[Segment]:
    """Segments (not archived) whose rule names this one in ``in_segment``."""
    ids = [sid for sid, refs in reference_graph(session).items() if segment_id in refs and sid != segment_id]
    return list(session.scalars(sa.select(Segment).where(Segment.id.in_(ids)).order_by(Segment.name)))


def _campaigns_using(session: Session, segment_id: str) -> list[Any]:
    query = (
        sa.select(Campaign.id, Campaign.name, Campaign.status, Campaign.kind, Campaign.team, CampaignSegment.role)
        .join(CampaignSegment, CampaignSegment.campaign_id == Campaign.id)
        .where(CampaignSegment.segment_id == segment_id)
        .order_by(Campaign.name, Campaign.id)
    )
    return list(session.execute(query).all())


def usage(session: Session, segment_id: str, principal: Principal) -> UsageOut:
    """Every consumer of the segment that the caller may see, and how many they may not."""
    segment = get_segment(session, segment_id, principal)
    campaigns = _campaigns_using(session, segment.id)
    segments = _referencing(session, segment.id)
    hidden = sum(not principal.sees(c.team) for c in campaigns) + sum(not principal.sees(s.team) for s in segments)
    return UsageOut(
        campaigns=[
            UsedBy(type="campaign", id=c.id, name=c.name, status=c.status, detail=f"{c.kind}, {c.role}")
            for c in campaigns
            if principal.sees(c.team)
        ],
        segments=[
            UsedBy(type="segment", id=s.id, name=s.name, status=s.status, detail="in_segment in its rule")
            for s in segments
            if principal.sees(s.team)
        ],
        webhooks=[
            UsedBy(type="webhook", id=h.id, name=h.url, status="active" if h.active else "inactive",
                   detail=", ".join(h.event_types))
            for h in subscriptions_naming(session, segment.id)
        ],
        exports=[],
        sources=[
            UsedBy(type="source", id=source.id, name=source.name, status="active" if source.active else "inactive",
                   detail=f"{source.kind}: its members are imported from this source")
            for source in [imported_from(session, segment.id)] if source is not None
        ],
        hidden=hidden,
    )


def _status_audit(session: Session, now: datetime, principal: Principal, segment: Segment, before: str) -> None:
    """Audit a status change and notify the webhook subscribers (both in the change's transaction)."""
    enqueue_status(session, segment, before, principal.name, now)
    audit.record(
        session, now, principal.name, f"segment.{_STATUS_ACTIONS[segment.status]}", "segment", segment.id,
        before={"status": before}, after={"status": segment.status},
    )  # fmt: skip


_STATUS_ACTIONS = {"active": "activate", "inactive": "deactivate", "archived": "archive"}


def activate(session: Session, settings: Settings, clock: Clock, segment_id: str, principal: Principal) -> Segment:
    segment = get_segment(session, segment_id, principal)
    if segment.status == SegmentStatus.archived.value:
        raise Conflict("an archived segment cannot be reactivated: archiving is irreversible")
    if segment.status == SegmentStatus.active.value:
        return segment
    before = segment.status
    segment.status = SegmentStatus.active.value
    segment.updated_at, segment.updated_by = clock.now(), principal.name
    _after_definition_change(session, settings, segment, clock.now())
    _status_audit(session, clock.now(), principal, segment, before)
    return segment


def deactivate(session: Session, clock: Clock, segment_id: str, principal: Principal) -> Segment:
    """Inactive: not maintained and not selectable by loyalty mechanisms; members stay as they were."""
    segment = get_segment(session, segment_id, principal)
    if segment.status == SegmentStatus.archived.value:
        raise Conflict("an archived segment cannot change status")
    if segment.status == SegmentStatus.inactive.value:
        return segment
    _refuse_if_used(session, segment, "deactivate", principal)
    session.execute(sa.delete(SegmentWakeup).where(SegmentWakeup.segment_id == segment.id))
    segment.status = SegmentStatus.inactive.value
    if segment.refresh_state == RefreshState.queued.value:
        segment.refresh_state = RefreshState.idle.value
    segment.updated_at, segment.updated_by = clock.now(), principal.name
    _status_audit(session, clock.now(), principal, segment, SegmentStatus.active.value)
    return segment


def archive(session: Session, clock: Clock, segment_id: str, principal: Principal) -> Segment:
    """Irreversible: every member is removed; definition and history stay for reporting."""
    segment = get_segment(session, segment_id, principal)
    if segment.status == SegmentStatus.archived.value:
        return segment
    if segment.status != SegmentStatus.inactive.value:
        raise Conflict("only an inactive segment can be archived: deactivate it first")
    _refuse_if_used(session, segment, "archive", principal)
    now = clock.now()
    current = member_ids(session, segment.id)
    apply_diff(session, segment, (), current, cause=ChangeCause.archive, now=now)
    segment.member_count = 0
    segment.status = SegmentStatus.archived.value
    segment.archived_at = now
    segment.refresh_state = RefreshState.idle.value
    segment.updated_at, segment.updated_by = now, principal.name
    _status_audit(session, now, principal, segment, SegmentStatus.inactive.value)
    return segment


def request_refresh(session: Session, clock: Clock, segment_id: str, principal: Principal) -> Segment:
    segment = get_segment(session, segment_id, principal)
    if segment.status != SegmentStatus.active.value:
        raise Conflict(f"only an active segment can be refreshed; this one is {segment.status}")
    jobs.queue(segment, clock.now(), "refresh")
    return segment


def delete_segment(session: Session, clock: Clock, segment_id: str, principal: Principal) -> None:
    segment = get_segment(session, segment_id, principal)
    before = audit_view(segment)
    if segment.status == SegmentStatus.active.value:
        raise Conflict("an active segment cannot be deleted: deactivate it first")
    _refuse_if_used(session, segment, "delete", principal)
    for model in (MembershipChange, SegmentMember, SegmentListEntry, SegmentVersion, SegmentWakeup, SyncReport,
                  SourceSegment):  # fmt: skip
        session.execute(sa.delete(model).where(model.segment_id == segment_id))
    session.delete(segment)
    session.flush()
    audit.record(session, clock.now(), principal.name, "segment.delete", "segment", segment_id, before=before)


# --- explicit lists ------------------------------------------------------------------------------------------


def change_list(
    session: Session,
    settings: Settings,
    clock: Clock,
    segment_id: str,
    source_ids: Sequence[str],
    mode: str,
    principal: Principal,
) -> ListChangeOut:
    """``add``, ``remove`` or ``replace`` the explicit members of a static or external segment."""
    segment = get_segment(session, segment_id, principal)
    if segment.type == SegmentType.dynamic.value:
        raise Conflict("a dynamic segment's members follow its rule; they cannot be set by hand")
    if segment.status == SegmentStatus.archived.value:
        raise Conflict("an archived segment never gains members")
    if segment.type == SegmentType.static.value and mode == "replace":
        raise Conflict("a static segment changes only by explicit add and remove")
    if source := imported_from(session, segment.id):
        raise Conflict(
            f"segment {segment.id} is imported from source {source.name} ({source.id}): its members change only by "
            "sync (POST /segments/{id}/sync)"
        )
    now = clock.now()
    ids, unknown = _resolve(session, source_ids)
    if mode == "replace":  # external only (refused above for static)
        added, removed = replace_external_list(session, settings, segment, ids, now)
    else:
        cause = ChangeCause.sync if segment.type == SegmentType.external.value else ChangeCause.manual
        added, removed = _edit_list(session, segment, ids, mode, now, cause)
    if segment.type == SegmentType.static.value:
        segment.list_digest = _list_digest(session, segment.id)[1]
    segment.updated_at = now
    unchanged = len(ids) - added if mode != "remove" else len(ids) - removed
    result = ListChangeOut(
        added=added, removed=removed, unchanged=max(unchanged, 0), unknown=unknown, members=segment.member_count
    )
    audit.record(
        session, now, principal.name, f"segment.members.{mode}", "segment", segment.id,
        after={"added": added, "removed": removed, "unknown": len(unknown), "members": segment.member_count},
    )  # fmt: skip
    return result


def _edit_list(
    session: Session, segment: Segment, ids: set[int], mode: str, now: datetime, cause: ChangeCause
) -> tuple[int, int]:
    """Add or remove these customers: only their list rows and, in a live segment, their membership change (no read
    of the whole list: adding ten customers to a million-customer list touches ten); segments using it are queued
    when membership moved. Returns (added, removed)."""
    entries, members = table_of(SegmentListEntry), table_of(SegmentMember)
    connection = session.connection()

    def among(table: sa.Table, wanted: set[int]) -> set[int]:
        found: set[int] = set()
        for chunk in chunked(sorted(wanted)):
            rows = select_rows(connection, table, ("customer_id",), {"segment_id": [segment.id], "customer_id": chunk})
            found.update(row["customer_id"] for row in rows)
        return found

    listed = among(entries, ids)
    changed = sorted(ids - listed) if mode == "add" else sorted(ids & listed)
    if mode == "add":
        rows = [{"segment_id": segment.id, "customer_id": c, "added_at": now} for c in changed]
        insert_rows(connection, entries, rows)
    else:
        for chunk in chunked(changed):
            delete_rows(connection, entries, {"segment_id": [segment.id], "customer_id": chunk})
    entering: list[int] = []
    exiting: list[int] = []
    # Membership follows a live segment's list; an inactive one is not maintained (its members stay as they were until
    # it is activated again, which recomputes it), and one outside its window has none.
    if changed and is_live(segment, now):
        current = among(members, set(changed))
        if mode == "add":
            entering = [c for c in changed if c not in current]
        else:
            exiting = [c for c in changed if c in current]
    if entering or exiting:
        apply_diff(session, segment, entering, exiting, cause=cause, now=now)
        jobs.queue_dependents(session, segment.id, now)
    return (len(changed), 0) if mode == "add" else (0, len(changed))


def imported_from(session: Session, segment_id: str) -> Source | None:
    """The source an external segment was imported from."""
    return session.scalar(
        sa.select(Source).join(SourceSegment, SourceSegment.source_id == Source.id)
        .where(SourceSegment.segment_id == segment_id)
    )  # fmt: skip


def replace_external_list(
    session: Session, settings: Settings, segment: Segment, ids: set[int], now: datetime
) -> tuple[int, int]:
    """A sync's result: the external segment's list becomes ``ids`` and membership follows (cause ``sync``), with
    history, webhooks and statistics as for any change. Returns the list's (added, removed)."""
    counts = _replace_list(session, segment, ids, now)
    _follow_list(session, settings, segment, now, ChangeCause.sync)
    segment.updated_at = now
    return counts


def _follow_list(session: Session, settings: Settings, segment: Segment, now: datetime, cause: ChangeCause) -> None:
    """A static or external segment's membership follows its whole list (none outside its window) when the segment
    is active, and the segments using it are queued if it moved; an inactive one is not maintained, so its members
    stay as they were until it is activated again, which recomputes it (as for :func:`_edit_list`)."""
    if segment.status != SegmentStatus.active.value:
        return
    entered, exited = recompute(session, segment, now, settings, cause)
    if entered or exited:
        jobs.queue_dependents(session, segment.id, now)


# --- reads ---------------------------------------------------------------------------------------------------


def to_out(segment: Segment, exponent: int | None = None) -> SegmentOut:
    """The API view; with the currency's ``exponent``, also the members' statistics (money needs it)."""
    statistics = None
    if exponent is not None:

        def money(minor: int | None) -> Decimal | None:
            return None if minor is None else from_minor(minor, exponent)

        statistics = StatisticsOut(
            avg_transaction_value=money(segment.avg_transaction_value_minor),
            avg_transactions=segment.avg_transactions,
            avg_spending=money(segment.avg_spending_minor),
            avg_clv=money(segment.avg_clv_minor),
            as_of=segment.stats_at,
        )
    return SegmentOut(
        statistics=statistics,
        id=segment.id,
        name=segment.name,
        description=segment.description,
        type=segment.type,
        status=segment.status,
        rule=segment.rule,
        text=segment.rule_text,
        conditions=conditions_count(segment.rule),
        timezone=segment.timezone,
        starts_at=segment.starts_at,
        expires_at=segment.expires_at,
        store=segment.store,
        team=segment.team,
        customer_groups=list(segment.customer_groups or []),
        sync_period_seconds=segment.sync_period_seconds,
        version=segment.version,
        members=segment.member_count,
        created_at=segment.created_at,
        created_by=segment.created_by,
        updated_at=segment.updated_at,
        updated_by=segment.updated_by,
        archived_at=segment.archived_at,
        drift=DriftOut(checked_at=segment.drift_checked_at, entered=segment.drift_entered, exited=segment.drift_exited),
        refresh=RefreshOut(
            state=segment.refresh_state,
            reason=segment.refresh_reason,
            requested_at=segment.refresh_requested_at,
            started_at=segment.refresh_started_at,
            finished_at=segment.refresh_finished_at,
            duration_ms=segment.refresh_duration_ms,
            entered=segment.refresh_entered,
            exited=segment.refresh_exited,
            error=segment.refresh_error,
            attempts=segment.refresh_attempts,
        ),
    )


def list_segments(
    session: Session, settings: Settings, principal: Principal, filters: SegmentFilters, *, limit: int, offset: int
) -> tuple[list[Segment], int]:
    """One query on the segments table: the figures are kept on it, so filters and sorts cost no aggregation."""
    query = sa.select(Segment).where(visible_to(Segment.team, principal))
    f = filters
    if f.q:
        query = query.where(sa.func.lower(Segment.name).contains(f.q.lower(), autoescape=True))
    if f.description:
        query = query.where(sa.func.lower(Segment.description).contains(f.description.lower(), autoescape=True))
    for column, value in ((Segment.status, f.status), (Segment.type, f.type), (Segment.team, f.team),
                          (Segment.store, f.store)):  # fmt: skip
        if value is not None:
            query = query.where(column == value)
    zone = settings.tz
    if f.created_from is not None:
        query = query.where(Segment.created_at >= _local_midnight(f.created_from, zone))
    if f.created_to is not None:
        query = query.where(Segment.created_at < _local_midnight(f.created_to + timedelta(days=1), zone))
    exponent = settings.currency_exponent
    ranges: list[tuple[Any, Any, Any]] = [
        (Segment.member_count, f.members_min, f.members_max),
        (Segment.avg_transactions, f.avg_transactions_min, f.avg_transactions_max),
        (Segment.avg_transaction_value_minor, _minor(f.avg_transaction_value_min, exponent),
         _minor(f.avg_transaction_value_max, exponent)),
        (Segment.avg_spending_minor, _minor(f.avg_spending_min, exponent), _minor(f.avg_spending_max, exponent)),
        (Segment.avg_clv_minor, _minor(f.avg_clv_min, exponent), _minor(f.avg_clv_max, exponent)),
    ]  # fmt: skip
    for column, low, high in ranges:
        if low is not None:
            query = query.where(column >= low)
        if high is not None:
            query = query.where(column <= high)
    key = f.sort.removeprefix("-")
    if key not in SEGMENT_SORTS:
        raise InvalidInput([FieldError(("sort",), f"unknown sort {key!r}; one of {', '.join(SEGMENT_SORTS)}")])
    sort_column: Any = {
        "name": sa.func.lower(Segment.name), "members": Segment.member_count,
        "avg_transaction_value": Segment.avg_transaction_value_minor, "avg_transactions": Segment.avg_transactions,
        "avg_spending": Segment.avg_spending_minor, "avg_clv": Segment.avg_clv_minor, "created_at": Segment.created_at,
    }[key]  # fmt: skip
    # Segments without a figure (no members, no CLV yet) go last either way.
    direction = sort_column.desc() if f.sort.startswith("-") else sort_column.asc()
    order: list[Any] = [sort_column.is_(None), direction, Segment.id]
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    items = session.scalars(query.order_by(*order).limit(limit).offset(offset)).all()
    return list(items), total


def _minor(amount: Decimal | None, exponent: int) -> int | None:
    """A filter bound in minor units (rounded towards the inside of the range does not matter at this scale)."""
    return None if amount is None else int((amount * (10**exponent)).to_integral_value())


def _local_midnight(day: date, zone: Any) -> datetime:
    return datetime.combine(day, dt_time(0), tzinfo=zone)


MEMBER_COLUMNS = (
    "source_id", "first_name", "last_name", "email", "phone", "city", "country", "loyalty_member", "created_at",
    "order_count", "total_spent_minor", "average_order_value_minor", "last_order_at", "points_balance",
)  # fmt: skip
MAX_EXPORT_ATTRIBUTES = 50


def member_table(
    session: Session,
    settings: Settings,
    clock: Clock,
    segment_id: str,
    principal: Principal,
    *,
    filter_text: str | None = None,
    attributes: Sequence[str] = (),
) -> Any:
    """The members of a segment as an Ibis table: profile, summary, ``since``, and the chosen custom attributes (a
    list attribute joined with ``|``); filtered by a rule in text form over member fields. Pages and exports share it.
    """
    get_segment(session, segment_id, principal)
    definitions = attribute_definitions(session)
    unknown = [FieldError(("attributes", i), f"unknown attribute {a!r}") for i, a in enumerate(attributes)
               if a not in definitions]  # fmt: skip
    if unknown:
        raise InvalidInput(unknown)
    t = rules.TABLES
    members = t.segment_members.filter(t.segment_members.segment_id == segment_id)
    joined = members.join(t.customers, members.customer_id == t.customers.id).join(
        t.customer_summaries, t.customers.id == t.customer_summaries.customer_id
    )
    values = t.customer_attribute_values
    # Every attribute joins the one chain of joins (customers, summaries, attributes): joined onto a selection
    # instead, each would nest the query one level deeper, and SQLite's parser overflows at about five.
    chain = joined
    picked: dict[str, Any] = {}
    for name in dict.fromkeys(attributes):
        kind = ValueType(definitions[name].type)
        own = values.filter(values.name == name)
        if kind == ValueType.string_list:
            # Aggregated before the join: only the members' lists, not every customer's.
            own = own.filter(own.customer_id.isin(members.customer_id))
            column = own.group_by("customer_id").aggregate(value=own.value_string.group_concat("|"))
        else:
            # One row per member, looked up by its key (customer, name, position) as the join reaches it; a filter
            # on membership here built a list of every member per attribute.
            column = own.filter(own.position == 0).select("customer_id", value=own[column_for(kind)])
        column = column.rename(**{f"attr_{name}": "value", f"attr_{name}_of": "customer_id"})
        chain = chain.left_join(column, t.customers.id == column[f"attr_{name}_of"])
        picked[f"attr_{name}"] = column[f"attr_{name}"]
    # The id as the membership's column, not the customer's (equal through the join): in the order of the membership
    # key, so an export ordered by it streams without sorting every member first (the planner cannot tell that
    # customers.id follows the driving table's order).
    expr = chain.select(*MEMBER_COLUMNS, customer_id=members.customer_id, since=members.since, **picked)
    if filter_text:
        catalog = build_catalog(session)
        rule = checked_rule(DraftRule(text=filter_text), settings, catalog, live_segment_ids(session, principal))
        ctx = rules.Context(
            as_of=clock.now(), timezone=settings.timezone, currency_exponent=settings.currency_exponent, catalog=catalog
        )
        expr = expr.filter(expr.customer_id.isin(rules.compile_batch(rule, ctx).customer_id))
    return expr


def members_page(
    session: Session,
    settings: Settings,
    clock: Clock,
    segment_id: str,
    *,
    limit: int,
    offset: int,
    sort: str,
    filter_text: str | None,
    principal: Principal,
    attributes: Sequence[str] = (),
) -> MemberPage:
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in MEMBER_SORTS:
        raise InvalidInput([FieldError(("sort",), f"unknown sort {key!r}; one of {', '.join(MEMBER_SORTS)}")])
    expr = member_table(session, settings, clock, segment_id, principal, filter_text=filter_text, attributes=attributes)
    definitions = attribute_definitions(session)
    kinds = {name: ValueType(definitions[name].type) for name in dict.fromkeys(attributes)}
    # Without a filter the count kept with membership is exact (every member has a customer and a summary row),
    # and counting 700,000 joined rows again for each page cost about 0.4 s at 1,000,000 customers.
    kept = None if filter_text else get_segment(session, segment_id, principal).member_count
    total = kept if kept is not None else int(_scalar(session, expr.count()))
    column = ibis._[MEMBER_SORTS[key]]
    keys_order = [column.desc() if descending else column.asc()]
    if key != "source_id":  # a unique tie-breaker keeps pages stable
        keys_order.append(ibis._.source_id.asc())
    window = (limit, offset)
    if kept is not None and key == "source_id":
        page_ids = _dense_page_by_source_id(session, segment_id, kept, limit, offset, descending)
        if page_ids is not None:
            expr, window = expr.filter(expr.customer_id.isin(page_ids)), (limit, 0)
    ordered = expr.order_by(keys_order)
    result = store.run_sql(session, store.to_sql(session, ordered.limit(window[0], offset=window[1])))
    keys = list(result.keys())
    items = []
    fields = set(MemberOut.model_fields)
    for row in result:
        record = dict(zip(keys, row, strict=True))
        record["total_spent"] = str(from_minor(record.pop("total_spent_minor"), settings.currency_exponent))
        record["last_order_at"], record["since"] = as_instant(record["last_order_at"]), as_instant(record["since"])
        record["attributes"] = {name: _attribute_value(record[f"attr_{name}"], kind) for name, kind in kinds.items()}
        items.append(MemberOut(**{k: v for k, v in record.items() if k in fields}))
    return MemberPage(items=items, total=total, limit=limit, offset=offset)


DENSE_SCAN_ROWS = 200_000


def _dense_page_by_source_id(
    session: Session, segment_id: str, members: int, limit: int, offset: int, descending: bool
) -> list[int] | None:
    """The ids of one page of members in source_id order, found by walking the customers' source_id index and
    keeping members (EXISTS), when that walk is short: about (offset + limit) x customers / members rows. For a big
    segment that is a few dozen rows instead of sorting all its members (0.2-0.5 s at 700,000 members); for a small
    or sparse one (None) sorting its members is cheaper and the caller does that."""
    customers_total = session.scalar(sa.select(sa.func.max(Customer.id))) or 0
    if members == 0 or (offset + limit) * customers_total / members > DENSE_SCAN_ROWS:
        return None
    membership = table_of(SegmentMember)
    is_member = sa.exists().where(membership.c.segment_id == segment_id, membership.c.customer_id == Customer.id)
    order = Customer.source_id.desc() if descending else Customer.source_id.asc()
    query = sa.select(Customer.id).where(is_member).order_by(order).limit(limit).offset(offset)
    return list(session.scalars(query))


def _attribute_value(raw: Any, kind: ValueType) -> Any:
    """An attribute as the member table shows it, from what the query gives (a list joined with |, SQLite's text
    instants and 0/1 booleans)."""
    if kind == ValueType.string_list:
        return [] if raw is None else raw.split("|")
    if raw is None:
        return None
    if kind == ValueType.datetime:
        return as_instant(raw)
    if kind == ValueType.boolean:
        return bool(raw)
    if kind == ValueType.date:
        return str(raw)[:10]
    return raw


def _scalar(session: Session, expr: Any) -> Any:
    return store.run_sql(session, store.to_sql(session, expr)).scalar_one()


def customer_segments(session: Session, source_id: str, principal: Principal) -> list[CustomerSegmentOut]:
    customer_id = customer_id_for(session, source_id)
    return [
        CustomerSegmentOut(**{k: v for k, v in row.items() if k != "team"})
        for row in customer_segment_rows(session, customer_id)
        if principal.sees(row["team"])
    ]


def explain_saved(
    session: Session, settings: Settings, clock: Clock, segment_id: str, source_id: str, principal: Principal,
    as_of: str | None = None,
) -> ExplainOut:  # fmt: skip
    """Why a customer is in or out of a saved dynamic segment, node by node."""
    segment = get_segment(session, segment_id, principal)
    if segment.type != SegmentType.dynamic.value or segment.rule is None:
        raise Conflict(f"segment {segment_id} is {segment.type}: membership comes from its list, not a rule")
    draft = ExplainIn(rule=segment.rule, source_id=source_id, timezone=segment.timezone, as_of=as_of)
    catalog = build_catalog(session)
    rule = rules.validate(segment.rule, catalog, settings.currency_exponent)
    return explain_rule(session, rule, preview_context(draft, settings, clock, catalog), source_id)


def segment_history(
    session: Session, segment_id: str, limit: int, offset: int, principal: Principal
) -> list[MembershipChangeOut]:
    get_segment(session, segment_id, principal)
    return [_change_out(row._mapping) for row in session.execute(history_page_query(segment_id, limit, offset))]


def history_page_query(segment_id: str, limit: int, offset: int) -> sa.Select[Any]:
    """A page of the segment's membership changes, newest first: read in the order of an index (migration 0015)."""
    history, customers = table_of(MembershipChange), table_of(Customer)
    return (
        sa.select(history, customers.c.source_id)
        .outerjoin(customers, customers.c.id == history.c.customer_id)
        .where(history.c.segment_id == segment_id)
        .order_by(history.c.occurred_at.desc(), history.c.id.desc())
        .limit(limit)
        .offset(offset)
    )


def customer_history(
    session: Session, source_id: str, limit: int, offset: int, principal: Principal
) -> list[MembershipChangeOut]:
    customer_id = customer_id_for(session, source_id)
    history = table_of(MembershipChange)
    seen = sa.select(Segment.id).where(visible_to(Segment.team, principal))
    query = (
        sa.select(history)
        .where(history.c.customer_id == customer_id, history.c.segment_id.in_(seen))
        .order_by(history.c.occurred_at.desc(), history.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [_change_out({**row._mapping, "source_id": source_id}) for row in session.execute(query)]


def _change_out(row: Any) -> MembershipChangeOut:
    return MembershipChangeOut(
        segment_id=row["segment_id"],
        source_id=row["source_id"],
        change="entered" if row["entered"] else "exited",
        cause=row["cause"],
        version=row["version"],
        at=row["occurred_at"],
    )
