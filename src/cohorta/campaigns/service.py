"""Campaigns: targeting by segments and customer groups, status, eligibility. No HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cohorta.access.service import Principal, check_team, visible_to
from cohorta.audit import service as audit
from cohorta.campaigns.models import Campaign, CampaignKind, CampaignSegment, CampaignStatus, TargetRole
from cohorta.campaigns.schemas import (
    CampaignFields,
    CampaignIn,
    CampaignOut,
    CampaignPatch,
    Decider,
    DistributionOut,
    EligibilityOut,
    TargetSegment,
)
from cohorta.customers.models import Customer, CustomerGroupAssignment
from cohorta.db import new_id
from cohorta.errors import Conflict, FieldError, InvalidInput, NotFound, UnknownReference
from cohorta.segments.models import Segment, SegmentMember, SegmentStatus

# Allowed status changes: (from, to). "ended" is final.
TRANSITIONS = {
    ("draft", "active"),
    ("active", "paused"),
    ("paused", "active"),
    ("draft", "ended"),
    ("active", "ended"),
    ("paused", "ended"),
}
HIDDEN = "another team's segment"


def new_campaign_id() -> str:
    return new_id("cmp")


def get_campaign(session: Session, campaign_id: str, principal: Principal | None) -> Campaign:
    """The campaign; NotFound also when the principal may not see its team."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or (principal is not None and not principal.sees(campaign.team)):
        raise NotFound(f"no campaign {campaign_id!r}")
    return campaign


def targets(session: Session, campaign_id: str) -> dict[str, list[str]]:
    rows = session.execute(
        sa.select(CampaignSegment.role, CampaignSegment.segment_id)
        .where(CampaignSegment.campaign_id == campaign_id)
        .order_by(CampaignSegment.position)
    ).all()
    out: dict[str, list[str]] = {TargetRole.include.value: [], TargetRole.exclude.value: []}
    for role, segment_id in rows:
        out[role].append(segment_id)
    return out


def to_out(session: Session, campaign: Campaign, principal: Principal | None = None) -> CampaignOut:
    chosen = targets(session, campaign.id)
    ids = chosen["include"] + chosen["exclude"]
    segments = {s.id: s for s in session.scalars(sa.select(Segment).where(Segment.id.in_(ids)))} if ids else {}

    def described(segment_id: str) -> TargetSegment:
        segment = segments[segment_id]
        if principal is not None and not principal.sees(segment.team):
            return TargetSegment(id=segment_id, name=HIDDEN, status=segment.status)
        return TargetSegment(id=segment_id, name=segment.name, status=segment.status)

    distribution = None
    if campaign.distribution:
        d = campaign.distribution
        distribution = DistributionOut(
            target=d["target"], url=d.get("url"), has_secret=bool(d.get("secret")), format=d.get("format", "csv"),
            batch_size=d.get("batch_size", 1000), period_seconds=campaign.distribution_period_seconds,
            next_at=campaign.next_distribution_at,
        )  # fmt: skip
    return CampaignOut(
        id=campaign.id, name=campaign.name, description=campaign.description, kind=CampaignKind(campaign.kind),
        status=CampaignStatus(campaign.status), team=campaign.team,
        included_segments=[described(s) for s in chosen["include"]],
        excluded_segments=[described(s) for s in chosen["exclude"]],
        included_groups=list(campaign.included_groups or []), excluded_groups=list(campaign.excluded_groups or []),
        distribution=distribution, created_at=campaign.created_at, created_by=campaign.created_by,
        updated_at=campaign.updated_at, updated_by=campaign.updated_by,
    )  # fmt: skip


def list_campaigns(
    session: Session,
    principal: Principal,
    *,
    status: str | None,
    kind: str | None,
    q: str | None,
    segment: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Campaign], int]:
    query = sa.select(Campaign).where(visible_to(Campaign.team, principal))
    if status:
        query = query.where(Campaign.status == status)
    if kind:
        query = query.where(Campaign.kind == kind)
    if q:
        query = query.where(sa.func.lower(Campaign.name).contains(q.lower(), autoescape=True))
    if segment:
        query = query.where(
            Campaign.id.in_(sa.select(CampaignSegment.campaign_id).where(CampaignSegment.segment_id == segment))
        )
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Campaign.name, Campaign.id).limit(limit).offset(offset)).all()
    return list(rows), total


# --- writing ------------------------------------------------------------------------------------------------


def _check_selection(session: Session, principal: Principal, included: Sequence[str], excluded: Sequence[str]) -> None:
    """Only active segments the caller sees may be chosen: others are 404 (as if absent), an inactive or archived
    one 409. Checked again when a campaign is activated: its segments may have changed while it was a draft."""
    chosen = [("included_segments", i, s) for i, s in enumerate(included)]
    chosen += [("excluded_segments", i, s) for i, s in enumerate(excluded)]
    ids = [s for _, _, s in chosen]
    both = sorted(set(included) & set(excluded))
    if both:
        raise InvalidInput([FieldError(("excluded_segments",), f"segment {both[0]!r} is also included")])
    rows = {s.id: s for s in session.scalars(sa.select(Segment).where(Segment.id.in_(ids)))} if ids else {}
    missing = [FieldError((name, i), f"unknown segment {sid!r}", "unknown_segment")
               for name, i, sid in chosen if sid not in rows or not principal.sees(rows[sid].team)]  # fmt: skip
    if missing:
        raise UnknownReference(missing)
    for _, _, sid in chosen:
        segment = rows[sid]
        if segment.status != SegmentStatus.active.value:
            raise Conflict(f"segment {segment.name} ({sid}) is {segment.status}: only active segments can be selected")


def _set_targets(session: Session, campaign: Campaign, included: Sequence[str], excluded: Sequence[str]) -> None:
    session.execute(sa.delete(CampaignSegment).where(CampaignSegment.campaign_id == campaign.id))
    rows = [(TargetRole.include, s) for s in dict.fromkeys(included)]
    rows += [(TargetRole.exclude, s) for s in dict.fromkeys(excluded)]
    session.add_all(
        CampaignSegment(campaign_id=campaign.id, segment_id=s, role=role.value, position=i)
        for i, (role, s) in enumerate(rows)
    )


def _set_distribution(campaign: Campaign, body: CampaignFields, now: datetime) -> None:
    is_distribution = campaign.kind == CampaignKind.distribution.value
    if body.distribution is None:
        if is_distribution:
            raise InvalidInput([FieldError(("distribution",), "a distribution campaign needs a target")])
        return
    if not is_distribution:
        raise InvalidInput([FieldError(("distribution",), "only a distribution campaign delivers its audience")])
    config = body.distribution.model_dump(exclude={"period_seconds"})
    if config["target"] == "webhook" and config.get("secret") is None:
        config["secret"] = (campaign.distribution or {}).get("secret")  # the secret is write-only: kept unless sent
        if config["secret"] is None:
            raise InvalidInput([FieldError(("distribution", "secret"), "a webhook distribution needs a secret")])
    campaign.distribution = config
    period = body.distribution.period_seconds
    campaign.distribution_period_seconds = period
    campaign.next_distribution_at = now + timedelta(seconds=period) if period else None


def create_campaign(session: Session, now: datetime, principal: Principal, body: CampaignIn) -> Campaign:
    check_team(session, principal, body.team)
    included, excluded = body.included_segments or [], body.excluded_segments or []
    _check_selection(session, principal, included, excluded)
    campaign = Campaign(
        id=new_campaign_id(), name=body.name, description=body.description, kind=body.kind.value, status=body.status,
        team=body.team, included_groups=sorted(set(body.included_groups or [])),
        excluded_groups=sorted(set(body.excluded_groups or [])), created_at=now, created_by=principal.name,
        updated_at=now, updated_by=principal.name,
    )  # fmt: skip
    _set_distribution(campaign, body, now)
    session.add(campaign)
    session.flush()
    _set_targets(session, campaign, included, excluded)
    session.flush()
    audit.record(session, now, principal.name, "campaign.create", "campaign", campaign.id,
                 after=to_out(session, campaign))  # fmt: skip
    return campaign


def update_campaign(
    session: Session, now: datetime, principal: Principal, campaign_id: str, body: CampaignPatch
) -> Campaign:
    campaign = get_campaign(session, campaign_id, principal)
    if campaign.status == CampaignStatus.ended.value:
        raise Conflict("an ended campaign cannot be edited")
    before = to_out(session, campaign)
    sent = body.model_fields_set
    if "team" in sent:
        check_team(session, principal, body.team)
        campaign.team = body.team
    if body.name is not None:
        campaign.name = body.name
    if "description" in sent:
        campaign.description = body.description
    chosen = targets(session, campaign.id)
    included = body.included_segments if "included_segments" in sent else chosen["include"]
    excluded = body.excluded_segments if "excluded_segments" in sent else chosen["exclude"]
    if "included_segments" in sent or "excluded_segments" in sent:
        _check_selection(session, principal, included or [], excluded or [])
        _set_targets(session, campaign, included or [], excluded or [])
    if "included_groups" in sent:
        campaign.included_groups = sorted(set(body.included_groups or []))
    if "excluded_groups" in sent:
        campaign.excluded_groups = sorted(set(body.excluded_groups or []))
    if "distribution" in sent:
        _set_distribution(campaign, body, now)
    campaign.updated_at, campaign.updated_by = now, principal.name
    session.flush()
    audit.record(session, now, principal.name, "campaign.update", "campaign", campaign.id, before=before,
                 after=to_out(session, campaign))  # fmt: skip
    return campaign


def change_status(session: Session, now: datetime, principal: Principal, campaign_id: str, to: str) -> Campaign:
    campaign = get_campaign(session, campaign_id, principal)
    if campaign.status == to:
        return campaign
    if (campaign.status, to) not in TRANSITIONS:
        raise Conflict(f"the campaign is {campaign.status}: it cannot become {to}")
    if to == CampaignStatus.active.value:
        chosen = targets(session, campaign.id)
        _check_selection(session, principal, chosen["include"], chosen["exclude"])
    before = campaign.status
    campaign.status = to
    campaign.updated_at, campaign.updated_by = now, principal.name
    audit.record(session, now, principal.name, f"campaign.{to}", "campaign", campaign.id,
                 before={"status": before}, after={"status": to})  # fmt: skip
    return campaign


def delete_campaign(session: Session, now: datetime, principal: Principal, campaign_id: str) -> None:
    campaign = get_campaign(session, campaign_id, principal)
    if campaign.status == CampaignStatus.active.value:
        raise Conflict("an active campaign cannot be deleted: pause or end it first")
    before = to_out(session, campaign)
    session.execute(sa.delete(CampaignSegment).where(CampaignSegment.campaign_id == campaign.id))
    session.delete(campaign)
    session.flush()
    audit.record(session, now, principal.name, "campaign.delete", "campaign", campaign_id, before=before)


# --- eligibility ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Targeting:
    """What eligibility needs of a campaign, loaded once per request."""

    id: str
    status: str
    included: tuple[str, ...]
    excluded: tuple[str, ...]
    included_groups: frozenset[str]
    excluded_groups: frozenset[str]


@dataclass
class Standing:
    """A customer's memberships and groups, loaded once per customer."""

    source_id: str
    segments: set[str] = field(default_factory=set)
    groups: dict[str, str] = field(default_factory=dict)  # group -> first origin (segment id or "manual")


def load_targeting(session: Session, principal: Principal, campaign_ids: Iterable[str]) -> dict[str, Targeting]:
    """Campaigns the principal sees, by id; the others are absent."""
    ids = list(dict.fromkeys(campaign_ids))
    rows = session.execute(
        sa.select(
            Campaign.id, Campaign.status, Campaign.team, Campaign.included_groups, Campaign.excluded_groups
        ).where(Campaign.id.in_(ids))
    ).all()
    chosen: dict[str, dict[str, list[str]]] = {r.id: {"include": [], "exclude": []} for r in rows}
    for campaign_id, role, segment_id in session.execute(
        sa.select(CampaignSegment.campaign_id, CampaignSegment.role, CampaignSegment.segment_id)
        .where(CampaignSegment.campaign_id.in_(ids))
        .order_by(CampaignSegment.position)
    ):
        chosen[campaign_id][role].append(segment_id)
    return {
        r.id: Targeting(
            id=r.id,
            status=r.status,
            included=tuple(chosen[r.id]["include"]),
            excluded=tuple(chosen[r.id]["exclude"]),
            included_groups=frozenset(r.included_groups or ()),
            excluded_groups=frozenset(r.excluded_groups or ()),
        )
        for r in rows
        if principal.sees(r.team)
    }


def load_standings(session: Session, source_ids: Iterable[str]) -> dict[str, Standing]:
    """Known customers' segments and groups (manual, and given by the segments they are in), by source id."""
    wanted = list(dict.fromkeys(source_ids))
    rows = session.execute(sa.select(Customer.source_id, Customer.id).where(Customer.source_id.in_(wanted)))
    ids = {source_id: customer_id for source_id, customer_id in rows}
    by_id = {cid: Standing(source_id=sid) for sid, cid in ids.items()}
    if not by_id:
        return {}
    member_rows = session.execute(
        sa.select(SegmentMember.customer_id, SegmentMember.segment_id, Segment.customer_groups)
        .join(Segment, Segment.id == SegmentMember.segment_id)
        .where(SegmentMember.customer_id.in_(list(by_id)))
    )
    for customer_id, segment_id, groups in member_rows:
        standing = by_id[customer_id]
        standing.segments.add(segment_id)
        for group in groups or ():
            standing.groups.setdefault(group, segment_id)
    manual = session.execute(
        sa.select(CustomerGroupAssignment.customer_id, CustomerGroupAssignment.group).where(
            CustomerGroupAssignment.customer_id.in_(list(by_id))
        )
    )
    for customer_id, group in manual:
        by_id[customer_id].groups[group] = "manual"
    return {standing.source_id: standing for standing in by_id.values()}


def segment_names(session: Session, principal: Principal, targeting: Iterable[Targeting]) -> dict[str, str]:
    ids = {s for t in targeting for s in (*t.included, *t.excluded)}
    if not ids:
        return {}
    rows = session.execute(sa.select(Segment.id, Segment.name, Segment.team).where(Segment.id.in_(sorted(ids))))
    return {sid: name if principal.sees(team) else HIDDEN for sid, name, team in rows}


def _hits(
    segments: Sequence[str],
    groups: frozenset[str],
    standing: Standing,
    names: dict[str, str],
    role: Literal["include", "exclude"],
) -> tuple[list[Decider], str]:
    """The given segments and groups the customer is in, as deciders, and the first of them in words."""
    in_segments = [s for s in segments if s in standing.segments]
    in_groups = sorted(g for g in groups if g in standing.groups)
    deciders = [Decider(type="segment", id=s, name=names.get(s), role=role) for s in in_segments]
    deciders += [Decider(type="group", id=g, name=g, role=role) for g in in_groups]
    first = f"segment {names.get(in_segments[0])}" if in_segments else f"group {in_groups[0]}" if in_groups else ""
    return deciders, first


def decide(target: Targeting, standing: Standing, names: dict[str, str]) -> EligibilityOut:
    """Eligible when the campaign is active, the customer is in no excluded segment or group, and in an included
    segment or group (a campaign that includes nothing targets everyone). Says which segment or group decided."""

    def answer(eligible: bool, reason: str, deciders: list[Decider]) -> EligibilityOut:
        return EligibilityOut(
            campaign_id=target.id, source_id=standing.source_id, eligible=eligible, reason=reason, decided_by=deciders
        )

    if target.status != CampaignStatus.active.value:
        return answer(False, f"the campaign is {target.status}", [Decider(type="campaign", id=target.id)])
    excluded, what = _hits(target.excluded, target.excluded_groups, standing, names, "exclude")
    if excluded:
        return answer(False, f"excluded: member of {what}", excluded)
    if not target.included and not target.included_groups:
        return answer(True, "the campaign targets every customer", [Decider(type="everyone")])
    included, what = _hits(target.included, target.included_groups, standing, names, "include")
    if included:
        return answer(True, f"member of {what}", included)
    return answer(False, "not in any included segment or group", [])


# Everything one eligibility answer needs, in one statement: the campaign, its segments (with names and teams), the
# customer's memberships (with the groups those segments give) and hand-assigned groups. One round trip and one
# cached text statement instead of six ORM queries: the answer must come in well under a millisecond.
_ONE_PAIR = sa.text(
    """
    SELECT 'campaign' AS kind, c.id AS ref, c.status AS status, c.team AS team,
           CAST(c.included_groups AS TEXT) AS info, CAST(c.excluded_groups AS TEXT) AS extra
      FROM campaigns c WHERE c.id = :campaign
    UNION ALL
    SELECT 'target', cs.segment_id, cs.role, s.team, s.name, CAST(cs.position AS TEXT)
      FROM campaign_segments cs JOIN segments s ON s.id = cs.segment_id WHERE cs.campaign_id = :campaign
    UNION ALL
    SELECT 'member', sm.segment_id, NULL, NULL, CAST(s.customer_groups AS TEXT), NULL
      FROM customers cu JOIN segment_members sm ON sm.customer_id = cu.id JOIN segments s ON s.id = sm.segment_id
     WHERE cu.source_id = :source
    UNION ALL
    SELECT 'group', g."group", NULL, NULL, NULL, NULL
      FROM customers cu JOIN customer_group_assignments g ON g.customer_id = cu.id WHERE cu.source_id = :source
    UNION ALL
    SELECT 'customer', NULL, NULL, NULL, NULL, NULL FROM customers cu WHERE cu.source_id = :source
    """
)


def eligibility(
    session: Session | sa.Connection, principal: Principal, campaign_id: str, source_id: str
) -> EligibilityOut:
    """One customer x one campaign (the same decision as ``check_many``, loaded in one statement)."""
    rows = session.execute(_ONE_PAIR, {"campaign": campaign_id, "source": source_id}).all()
    campaign = next((r for r in rows if r.kind == "campaign"), None)
    if campaign is None or not principal.sees(campaign.team):
        raise NotFound(f"no campaign {campaign_id!r}")
    if not any(r.kind == "customer" for r in rows):
        raise NotFound(f"no customer with source_id {source_id!r}")
    chosen = sorted((r for r in rows if r.kind == "target"), key=lambda r: int(r.extra))
    target = Targeting(
        id=campaign.ref,
        status=campaign.status,
        included=tuple(r.ref for r in chosen if r.status == TargetRole.include.value),
        excluded=tuple(r.ref for r in chosen if r.status == TargetRole.exclude.value),
        included_groups=frozenset(json.loads(campaign.info or "[]")),
        excluded_groups=frozenset(json.loads(campaign.extra or "[]")),
    )
    standing = Standing(source_id=source_id)
    for row in rows:
        if row.kind == "member":
            standing.segments.add(row.ref)
            for group in json.loads(row.info or "[]"):
                standing.groups.setdefault(group, row.ref)
        elif row.kind == "group":
            standing.groups[row.ref] = "manual"
    names = {r.ref: r.info if principal.sees(r.team) else HIDDEN for r in chosen}
    return decide(target, standing, names)


def check_many(
    session: Session, principal: Principal, source_ids: Sequence[str], campaign_ids: Sequence[str]
) -> list[EligibilityOut]:
    """Every customer x campaign pair, in request order; an unknown customer or campaign is an answer with an error,
    not a failure of the whole batch."""
    targeting = load_targeting(session, principal, campaign_ids)
    standings = load_standings(session, source_ids)
    names = segment_names(session, principal, targeting.values())
    results: list[EligibilityOut] = []
    for source_id in source_ids:
        for campaign_id in campaign_ids:
            target, standing = targeting.get(campaign_id), standings.get(source_id)
            if target is None or standing is None:
                error = f"no campaign {campaign_id!r}" if target is None else f"no customer {source_id!r}"
                results.append(EligibilityOut(campaign_id=campaign_id, source_id=source_id, eligible=False,
                                              reason=error, decided_by=[], error=error))  # fmt: skip
                continue
            results.append(decide(target, standing, names))
    return results


# --- audience (distribution) --------------------------------------------------------------------------------------


def audience_query(session: Session, campaign: Campaign) -> sa.Select[Any]:
    """The source ids of the customers a campaign targets, in order: the members of its included segments and the
    customers in its included groups (everyone when it includes nothing), minus the excluded ones."""
    chosen = targets(session, campaign.id)

    def members_of(segment_ids: Sequence[str], groups: Sequence[str]) -> sa.Select[Any] | None:
        giving = [s.id for s in session.scalars(sa.select(Segment)) if set(s.customer_groups or ()) & set(groups)]
        segment_ids = sorted(set(segment_ids) | set(giving))
        parts: list[sa.Select[Any]] = []
        if segment_ids:
            parts.append(sa.select(SegmentMember.customer_id).where(SegmentMember.segment_id.in_(segment_ids)))
        if groups:
            parts.append(
                sa.select(CustomerGroupAssignment.customer_id).where(CustomerGroupAssignment.group.in_(list(groups)))
            )
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else sa.select(sa.union(*parts).subquery().c.customer_id)

    included = members_of(chosen["include"], campaign.included_groups or [])
    excluded = members_of(chosen["exclude"], campaign.excluded_groups or [])
    query = sa.select(Customer.source_id)
    if included is not None:
        query = query.where(Customer.id.in_(included))
    if excluded is not None:
        query = query.where(Customer.id.not_in(excluded))
    return query.order_by(Customer.source_id)
