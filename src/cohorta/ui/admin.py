"""HTML routes of the administration pages: campaigns, teams, users, tokens, webhooks, settings.

Thin like the API's routes: read the form, call the services, commit, redirect (303) or render. A form whose input
the services refuse (InvalidInput, Conflict) is shown again with the messages next to the fields they name.
Rights are checked by the page_writer and page_admin dependencies before a form is read, as the API does,
whatever the page shows; a campaign of another team is a 404 first (page_in_sight).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from cohorta.access import service as access
from cohorta.access.models import Role
from cohorta.access.schemas import TeamIn, TeamPatch, TokenIn, UserIn, UserPatch
from cohorta.access.service import Principal
from cohorta.audit import service as audit
from cohorta.audit.router import AuditEntryOut
from cohorta.campaigns import distribution
from cohorta.campaigns import service as campaigns
from cohorta.campaigns.models import Campaign, CampaignKind, CampaignStatus
from cohorta.campaigns.schemas import CampaignIn, CampaignOut, CampaignPatch
from cohorta.config import Settings
from cohorta.customers import service as customers
from cohorta.customers.models import ValueType
from cohorta.customers.schemas import (
    AttributeDefinitionIn,
    AttributeDefinitionOut,
    EventDefinitionIn,
    EventDefinitionOut,
)
from cohorta.deps import MAX_OFFSET, ClockDep, RowId, SessionDep, SettingsDep
from cohorta.errors import CohortaError, FieldError, InvalidInput, validated
from cohorta.segments import service as segments
from cohorta.segments.models import Segment
from cohorta.segments.schemas import SegmentFilters
from cohorta.ui.auth import PageAdmin, PageUser, PageWriter, page_router
from cohorta.ui.render import page
from cohorta.webhooks import service as webhooks
from cohorta.webhooks.models import EventType
from cohorta.webhooks.schemas import SubscriptionIn

# A campaign of another team does not exist (404), whatever the caller's rights: decided before them.
router = page_router(campaign_id=campaigns.get_campaign)
PAGE_SIZE = 50
SEGMENT_CHOICES = 1000  # segments offered in a multi-select
EVENT_NAME = r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$"  # as PUT /api/v1/event-definitions/{name}


async def _form(request: Request) -> FormData:
    return await request.form()  # already parsed (and cached) by the CSRF check of page_principal


FormDep = Annotated[FormData, Depends(_form)]


# --- helpers: forms in, messages out ------------------------------------------------------------------------------


def _field_key(loc: tuple[str | int, ...], fields: set[str]) -> tuple[str | None, str]:
    """The longest start of ``loc`` that names a form field ("distribution.secret", "teams"), and what follows it as
    a prefix of the message ("item 3: "); None when no field is named."""
    parts = [str(p) for p in loc]
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in fields:
            rest = [f"item {p + 1}" if isinstance(p, int) else str(p) for p in loc[n:]]
            return key, (" ".join(rest) + ": ") if rest else ""
    return None, ""


def form_errors(exc: CohortaError, fields: set[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Messages by the form field they name; the others (and non-field errors) for the top of the form."""
    by_field: dict[str, list[str]] = {}
    general: list[str] = []
    if isinstance(exc, InvalidInput) and exc.errors:
        for error in exc.errors:
            key, prefix = _field_key(error.loc, fields)
            if key is not None:
                by_field.setdefault(key, []).append(prefix + error.message)
            else:
                general.append(f"{'.'.join(str(p) for p in error.loc) or 'input'}: {error.message}")
    else:
        general.append(exc.detail)
    return by_field, general


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _optional(form: FormData, name: str) -> str | None:
    return _text(form, name).strip() or None


def _list(form: FormData, name: str) -> list[str]:
    return [v for v in form.getlist(name) if isinstance(v, str) and v != ""]


def _words(value: str) -> list[str]:
    """Groups typed as "vip, gold silver" -> ["vip", "gold", "silver"]."""
    return [w for w in re.split(r"[\s,]+", value) if w]


def _redirect(request: Request, url: str) -> Response:
    """After a write: a plain form is redirected (303); an htmx request (confirmed buttons) loads the page."""
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _visible_segments(session: Session, settings: Settings, principal: Principal, status: str | None) -> list[Segment]:
    filters = SegmentFilters.model_validate({"status": status})
    items, _ = segments.list_segments(session, settings, principal, filters, limit=SEGMENT_CHOICES, offset=0)
    return items


# --- campaigns ----------------------------------------------------------------------------------------------------

CAMPAIGN_FIELDS = {
    "name", "description", "kind", "status", "team", "included_segments", "excluded_segments", "included_groups",
    "excluded_groups", "distribution", "distribution.target", "distribution.url", "distribution.secret",
    "distribution.format", "distribution.batch_size", "distribution.period_seconds",
}  # fmt: skip
STATUS_ACTIONS = {  # to -> (button, what happens)
    "active": ("Activate", "starts targeting: eligibility answers yes for its audience"),
    "paused": ("Pause", "stops targeting for now; it can be resumed"),
    "ended": ("End", "is final: the campaign can never be active again"),
}


def _campaign_values(form: FormData) -> dict[str, Any]:
    """What the form sent, to show it again."""
    return {
        "name": _text(form, "name"), "description": _text(form, "description"), "kind": _text(form, "kind"),
        "status": _text(form, "status") or "draft", "team": _text(form, "team"),
        "included_segments": _list(form, "included_segments"), "excluded_segments": _list(form, "excluded_segments"),
        "included_groups": _text(form, "included_groups"), "excluded_groups": _text(form, "excluded_groups"),
        "target": _text(form, "distribution_target"), "url": _text(form, "distribution_url"),
        "format": _text(form, "distribution_format") or "csv",
        "batch_size": _text(form, "distribution_batch_size") or "1000",
        "period_seconds": _text(form, "distribution_period_seconds"), "has_secret": False,
    }  # fmt: skip


def _out_values(out: CampaignOut) -> dict[str, Any]:
    d = out.distribution
    return {
        "name": out.name, "description": out.description or "", "kind": out.kind.value, "status": out.status.value,
        "team": out.team or "", "included_segments": [s.id for s in out.included_segments],
        "excluded_segments": [s.id for s in out.excluded_segments],
        "included_groups": ", ".join(out.included_groups), "excluded_groups": ", ".join(out.excluded_groups),
        "target": d.target if d else "", "url": (d.url or "") if d else "", "format": d.format if d else "csv",
        "batch_size": str(d.batch_size) if d else "1000",
        "period_seconds": str(d.period_seconds) if d and d.period_seconds else "",
        "has_secret": bool(d and d.has_secret),
    }  # fmt: skip


def _campaign_body(form: FormData, *, create: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": _text(form, "name"), "description": _optional(form, "description"), "team": _optional(form, "team"),
        "included_segments": _list(form, "included_segments"), "excluded_segments": _list(form, "excluded_segments"),
        "included_groups": _words(_text(form, "included_groups")),
        "excluded_groups": _words(_text(form, "excluded_groups")),
    }  # fmt: skip
    if create:
        body["kind"] = _text(form, "kind")
        body["status"] = _text(form, "status") or "draft"
    target = _optional(form, "distribution_target")
    if target is not None:
        body["distribution"] = {
            "target": target, "url": _optional(form, "distribution_url"),
            "secret": _optional(form, "distribution_secret"), "format": _text(form, "distribution_format") or "csv",
            "batch_size": _optional(form, "distribution_batch_size") or 1000,
            "period_seconds": _optional(form, "distribution_period_seconds"),
        }  # fmt: skip
    elif not create:
        body["distribution"] = None
    return body


def _campaign_form(
    request: Request,
    session: Session,
    settings: Settings,
    principal: Principal,
    campaign: CampaignOut | None,
    values: dict[str, Any],
    error: CohortaError | None = None,
) -> HTMLResponse:
    choices = {s.id: f"{s.name}" for s in _visible_segments(session, settings, principal, "active")}
    if campaign is not None:  # what the campaign targets stays listed, even if no longer active
        for s in campaign.included_segments + campaign.excluded_segments:
            choices.setdefault(s.id, f"{s.name} ({s.status})")
    by_field, general = form_errors(error, CAMPAIGN_FIELDS) if error else ({}, [])
    return page(
        request, "admin/campaign_form.html", principal, status_code=error.status if error else 200,
        campaign=campaign, values=values, errors=by_field, messages=general, segment_choices=choices,
        teams=access.list_teams(session, principal), kinds=[k.value for k in CampaignKind],
    )  # fmt: skip


@router.get("/campaigns", response_class=HTMLResponse)
def campaign_list(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    q: Annotated[str, Query(max_length=255)] = "",
    status: str = "",
    kind: str = "",
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> HTMLResponse:
    rows, total = campaigns.list_campaigns(
        session, principal, status=status or None, kind=kind or None, q=q or None, segment=None, limit=PAGE_SIZE,
        offset=offset,
    )  # fmt: skip
    return page(
        request, "admin/campaigns.html", principal, items=[campaigns.to_out(session, c, principal) for c in rows],
        total=total, offset=offset, page_size=PAGE_SIZE, given={"q": q, "status": status, "kind": kind},
        statuses=[s.value for s in CampaignStatus], kinds=[k.value for k in CampaignKind],
    )  # fmt: skip


@router.get("/campaigns/new", response_class=HTMLResponse)
def campaign_new(request: Request, session: SessionDep, settings: SettingsDep, principal: PageWriter) -> HTMLResponse:
    values = {"kind": "promotion", "status": "draft", "format": "csv", "batch_size": "1000"}
    return _campaign_form(request, session, settings, principal, None, values)


@router.post("/campaigns")
def campaign_create(
    request: Request, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: PageWriter, form: FormDep
) -> Response:
    try:
        body = validated(CampaignIn, _campaign_body(form, create=True))
        campaign = campaigns.create_campaign(session, clock.now(), principal, body)
    except CohortaError as exc:
        session.rollback()
        return _campaign_form(request, session, settings, principal, None, _campaign_values(form), exc)
    session.commit()
    return RedirectResponse(f"/ui/campaigns/{campaign.id}", status_code=303)


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_detail(request: Request, campaign_id: str, session: SessionDep, principal: PageUser) -> HTMLResponse:
    campaign = campaigns.get_campaign(session, campaign_id, principal)
    out = campaigns.to_out(session, campaign, principal)
    moves = [
        {"to": to, "label": "Resume" if (out.status, to) == ("paused", "active") else label,
         "confirm": f"“{out.name}” {effect}."}
        for to, (label, effect) in STATUS_ACTIONS.items() if (out.status.value, to) in campaigns.TRANSITIONS
    ]  # fmt: skip
    is_distribution = out.kind == CampaignKind.distribution
    return page(
        request, "admin/campaign.html", principal, campaign=out, moves=moves, is_distribution=is_distribution,
        deliveries=distribution.deliveries(session, campaign_id, 20, 0) if is_distribution else [],
        can_deliver=is_distribution and out.distribution is not None and out.status.value in ("draft", "active"),
    )  # fmt: skip


@router.get("/campaigns/{campaign_id}/edit", response_class=HTMLResponse)
def campaign_edit(
    request: Request, campaign_id: str, session: SessionDep, settings: SettingsDep, principal: PageWriter
) -> HTMLResponse:
    campaign = campaigns.get_campaign(session, campaign_id, principal)
    out = campaigns.to_out(session, campaign, principal)
    return _campaign_form(request, session, settings, principal, out, _out_values(out))


@router.post("/campaigns/{campaign_id}")
def campaign_update(
    request: Request, campaign_id: str, session: SessionDep, settings: SettingsDep, clock: ClockDep,
    principal: PageWriter, form: FormDep,
) -> Response:  # fmt: skip
    campaign = campaigns.get_campaign(session, campaign_id, principal)
    try:
        body = validated(CampaignPatch, _campaign_body(form, create=False))
        campaigns.update_campaign(session, clock.now(), principal, campaign_id, body)
    except CohortaError as exc:
        session.rollback()
        out = campaigns.to_out(session, campaigns.get_campaign(session, campaign.id, principal), principal)
        values = {**_campaign_values(form), "kind": out.kind.value, "has_secret": _out_values(out)["has_secret"]}
        return _campaign_form(request, session, settings, principal, out, values, exc)
    session.commit()
    return RedirectResponse(f"/ui/campaigns/{campaign_id}", status_code=303)


@router.post("/campaigns/{campaign_id}/status")
def campaign_status(
    request: Request, campaign_id: str, session: SessionDep, clock: ClockDep, principal: PageWriter, form: FormDep
) -> Response:
    campaigns.get_campaign(session, campaign_id, principal)
    campaigns.change_status(session, clock.now(), principal, campaign_id, _text(form, "to"))
    session.commit()
    return _redirect(request, f"/ui/campaigns/{campaign_id}")


@router.post("/campaigns/{campaign_id}/delete")
def campaign_delete(
    request: Request, campaign_id: str, session: SessionDep, clock: ClockDep, principal: PageWriter
) -> Response:
    campaigns.get_campaign(session, campaign_id, principal)
    campaigns.delete_campaign(session, clock.now(), principal, campaign_id)
    session.commit()
    return _redirect(request, "/ui/campaigns")


@router.post("/campaigns/{campaign_id}/deliveries")
def campaign_deliver(
    request: Request, campaign_id: str, settings: SettingsDep, clock: ClockDep, principal: PageWriter
) -> Response:
    # No request session: the delivery opens its own, and on SQLite a writing request session would hold the lock.
    factory = request.app.state.session_factory
    distribution.deliver(factory, settings, clock, campaign_id, trigger="manual", principal=principal)
    return _redirect(request, f"/ui/campaigns/{campaign_id}#deliveries")


# --- administration: users, teams, tokens -----------------------------------------------------------------------

DONE = {
    "user-created": "User created.", "user-updated": "User saved.", "password-reset": "Password changed.",
    "user-deleted": "User deleted.", "team-created": "Team created.", "team-renamed": "Team saved.",
    "team-deleted": "Team deleted.", "token-revoked": "Token revoked.", "webhook-deleted": "Subscription deleted.",
    "attribute-saved": "Attribute definition saved.", "event-saved": "Event definition saved.",
}  # fmt: skip
ADMIN_FIELDS = {"email", "name", "password", "role", "teams", "is_active", "id", "description", "team", "expires_at"}


def _admin_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    form_name: str = "",
    values: dict[str, Any] | None = None,
    error: CohortaError | None = None,
    flash: list[str] | None = None,
    created_token: str | None = None,
) -> HTMLResponse:
    by_field, general = form_errors(error, ADMIN_FIELDS) if error else ({}, [])
    done = DONE.get(request.query_params.get("done", ""))
    return page(
        request, "admin/admin.html", principal, status_code=error.status if error else 200,
        users=access.list_users(session), teams=access.list_teams(session, principal),
        tokens=access.list_tokens(session), roles=[r.value for r in Role], form_name=form_name,
        values=values or {}, errors=by_field, messages=general, flash=flash or ([done] if done else []),
        created_token=created_token,
    )  # fmt: skip


@router.get("/admin", response_class=HTMLResponse)
def admin_home(request: Request, session: SessionDep, principal: PageAdmin) -> HTMLResponse:
    return _admin_page(request, session, principal)


@router.post("/admin/users")
def user_create(
    request: Request, session: SessionDep, clock: ClockDep, principal: PageAdmin, form: FormDep
) -> Response:
    data = {"email": _text(form, "email"), "name": _optional(form, "name"), "password": _text(form, "password"),
            "role": _text(form, "role") or "viewer", "teams": _list(form, "teams")}  # fmt: skip
    try:
        access.create_user(session, clock.now(), principal, validated(UserIn, data))
    except CohortaError as exc:
        session.rollback()
        values = {**data, "password": ""}  # a password is never sent back to the browser
        return _admin_page(request, session, principal, form_name="user-create", values=values, error=exc)
    session.commit()
    return RedirectResponse("/ui/admin?done=user-created#users", status_code=303)


@router.post("/admin/users/{user_id}")
def user_update(
    request: Request, user_id: RowId, session: SessionDep, clock: ClockDep, principal: PageAdmin, form: FormDep
) -> Response:
    data = {"role": _text(form, "role"), "is_active": _text(form, "is_active"), "teams": _list(form, "teams")}
    try:
        access.update_user(session, clock.now(), principal, user_id, validated(UserPatch, data))
    except CohortaError as exc:
        session.rollback()
        return _admin_page(request, session, principal, form_name=f"user-{user_id}", values=data, error=exc)
    session.commit()
    return RedirectResponse("/ui/admin?done=user-updated#users", status_code=303)


@router.post("/admin/users/{user_id}/password")
def user_password(
    request: Request, user_id: RowId, session: SessionDep, clock: ClockDep, principal: PageAdmin, form: FormDep
) -> Response:
    try:
        body = validated(UserPatch, {"password": _text(form, "password")})
        access.update_user(session, clock.now(), principal, user_id, body)
    except CohortaError as exc:
        session.rollback()
        return _admin_page(request, session, principal, form_name=f"password-{user_id}", error=exc)
    session.commit()
    return RedirectResponse("/ui/admin?done=password-reset#users", status_code=303)


@router.post("/admin/users/{user_id}/delete")
def user_delete(
    request: Request, user_id: RowId, session: SessionDep, clock: ClockDep, principal: PageAdmin
) -> Response:
    access.delete_user(session, clock.now(), principal, user_id)
    session.commit()
    return _redirect(request, "/ui/admin?done=user-deleted#users")


@router.post("/admin/teams")
def team_create(
    request: Request, session: SessionDep, clock: ClockDep, principal: PageAdmin, form: FormDep
) -> Response:
    data = {"id": _text(form, "id"), "name": _text(form, "name"), "description": _optional(form, "description")}
    try:
        access.create_team(session, clock.now(), principal, validated(TeamIn, data))
    except CohortaError as exc:
        session.rollback()
        return _admin_page(request, session, principal, form_name="team-create", values=data, error=exc)
    session.commit()
    return RedirectResponse("/ui/admin?done=team-created#teams", status_code=303)


@router.post("/admin/teams/{team_id}")
def team_rename(
    request: Request, team_id: str, session: SessionDep, clock: ClockDep, principal: PageAdmin, form: FormDep
) -> Response:
    data = {"name": _text(form, "name"), "description": _optional(form, "description")}
    try:
        access.update_team(session, clock.now(), principal, team_id, validated(TeamPatch, data))
    except CohortaError as exc:
        session.rollback()
        return _admin_page(request, session, principal, form_name=f"team-{team_id}", values=data, error=exc)
    session.commit()
    return RedirectResponse("/ui/admin?done=team-renamed#teams", status_code=303)


@router.post("/admin/teams/{team_id}/delete")
def team_delete(request: Request, team_id: str, session: SessionDep, clock: ClockDep, principal: PageAdmin) -> Response:
    # What still belongs to the team, named in the refusal: the same question DELETE /api/v1/teams/{team_id} asks.
    owned = [f"segment {s}" for s in session.scalars(sa.select(Segment.id).where(Segment.team == team_id).limit(20))]
    owned += [
        f"campaign {c}" for c in session.scalars(sa.select(Campaign.id).where(Campaign.team == team_id).limit(20))
    ]
    access.delete_team(session, clock.now(), principal, team_id, owned)
    session.commit()
    return _redirect(request, "/ui/admin?done=team-deleted#teams")


def _expiry(value: str, settings: Settings) -> datetime | str | None:
    """A datetime-local input is a wall-clock time in the project's zone; anything else goes to the schema as is."""
    if not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment if moment.tzinfo else moment.replace(tzinfo=settings.tz)


@router.post("/admin/tokens", response_class=HTMLResponse)
def token_create(
    request: Request, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: PageAdmin,
    form: FormDep,
) -> HTMLResponse:  # fmt: skip
    data = {"name": _text(form, "name"), "role": _text(form, "role") or "viewer", "team": _optional(form, "team"),
            "expires_at": _expiry(_text(form, "expires_at"), settings)}  # fmt: skip
    try:
        created = access.create_token(session, clock.now(), principal, validated(TokenIn, data))
    except CohortaError as exc:
        session.rollback()
        values = {**data, "expires_at": _text(form, "expires_at")}
        return _admin_page(request, session, principal, form_name="token-create", values=values, error=exc)
    session.commit()
    # Shown once, in this answer only (no redirect: the secret must not travel in a URL).
    return _admin_page(request, session, principal, created_token=created.token,
                       flash=[f"Token “{created.name}” created. Copy it now: it will not be shown again."])  # fmt: skip


@router.post("/admin/tokens/{token_id}/revoke")
def token_revoke(
    request: Request, token_id: str, session: SessionDep, clock: ClockDep, principal: PageAdmin
) -> Response:
    access.revoke_token(session, clock.now(), principal, token_id)
    session.commit()
    request.app.state.token_cache.clear()  # as DELETE /api/v1/tokens/{token_id}: stops working at once here
    return _redirect(request, "/ui/admin?done=token-revoked#tokens")


@router.get("/admin/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    session: SessionDep,
    principal: PageAdmin,
    action: Annotated[str, Query(max_length=64)] = "",
    object_type: Annotated[str, Query(max_length=32)] = "",
    object_id: Annotated[str, Query(max_length=255)] = "",
    actor: Annotated[str, Query(max_length=320)] = "",
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> HTMLResponse:
    given = {"action": action.strip(), "object_type": object_type.strip(), "object_id": object_id.strip(),
             "actor": actor.strip()}  # fmt: skip
    rows, total = audit.query(
        session, actor=given["actor"] or None, object_type=given["object_type"] or None,
        object_id=given["object_id"] or None, action=given["action"] or None, since=None, until=None,
        limit=PAGE_SIZE, offset=offset,
    )  # fmt: skip
    entries = [AuditEntryOut.model_validate(r, from_attributes=True) for r in rows]
    shown = [
        {"entry": e, "before": json.dumps(e.before, indent=2, ensure_ascii=False, default=str) if e.before else "",
         "after": json.dumps(e.after, indent=2, ensure_ascii=False, default=str) if e.after else ""}
        for e in entries
    ]  # fmt: skip
    query = urlencode({k: v for k, v in given.items() if v})
    return page(request, "admin/audit.html", principal, entries=shown, total=total, offset=offset,
                page_size=PAGE_SIZE, given=given, query=query)  # fmt: skip


# --- webhooks (admins) --------------------------------------------------------------------------------------------

WEBHOOK_FIELDS = {"url", "event_types", "segments", "secret", "description", "batch_size"}


def _webhooks_page(
    request: Request,
    session: Session,
    settings: Settings,
    principal: Principal,
    *,
    values: dict[str, Any] | None = None,
    error: CohortaError | None = None,
    flash: list[str] | None = None,
    created_secret: str | None = None,
) -> HTMLResponse:
    by_field, general = form_errors(error, WEBHOOK_FIELDS) if error else ({}, [])
    choices = {s.id: s.name for s in _visible_segments(session, settings, principal, None)}
    done = DONE.get(request.query_params.get("done", ""))
    return page(
        request, "admin/webhooks.html", principal, status_code=error.status if error else 200,
        subscriptions=webhooks.list_subscriptions(session), segment_choices=choices,
        event_types=[t.value for t in EventType], values=values or {"event_types": [t.value for t in EventType],
                                                                     "batch_size": "100"},
        errors=by_field, messages=general, flash=flash or ([done] if done else []), created_secret=created_secret,
    )  # fmt: skip


@router.get("/webhooks", response_class=HTMLResponse)
def webhook_list(request: Request, session: SessionDep, settings: SettingsDep, principal: PageAdmin) -> HTMLResponse:
    return _webhooks_page(request, session, settings, principal)


@router.post("/webhooks", response_class=HTMLResponse)
def webhook_create(
    request: Request, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: PageAdmin,
    form: FormDep,
) -> HTMLResponse:  # fmt: skip
    data = {"url": _text(form, "url").strip(), "event_types": _list(form, "event_types"),
            "segments": _list(form, "segments"), "secret": _optional(form, "secret"),
            "description": _optional(form, "description"),
            "batch_size": _optional(form, "batch_size") or 100}  # fmt: skip
    try:
        created = webhooks.create_subscription(session, clock.now(), principal, validated(SubscriptionIn, data))
    except CohortaError as exc:
        session.rollback()
        values = {**data, "secret": "", "batch_size": str(data["batch_size"])}
        return _webhooks_page(request, session, settings, principal, values=values, error=exc)
    session.commit()
    flash = [f"Subscription to {created.url} created."]
    if created.secret:
        flash.append("Its signing secret was generated: copy it now, it will not be shown again.")
    return _webhooks_page(request, session, settings, principal, flash=flash, created_secret=created.secret)


@router.get("/webhooks/{subscription_id}", response_class=HTMLResponse)
def webhook_detail(
    request: Request, subscription_id: str, session: SessionDep, settings: SettingsDep, principal: PageAdmin
) -> HTMLResponse:
    subscription = webhooks.to_out(session, webhooks.get_subscription(session, subscription_id))
    names = {s.id: s.name for s in _visible_segments(session, settings, principal, None)}
    return page(request, "admin/webhook.html", principal, subscription=subscription, segment_names=names,
                deliveries=webhooks.deliveries(session, subscription_id, PAGE_SIZE, 0))  # fmt: skip


@router.post("/webhooks/{subscription_id}/delete")
def webhook_delete(
    request: Request, subscription_id: str, session: SessionDep, clock: ClockDep, principal: PageAdmin
) -> Response:
    webhooks.delete_subscription(session, clock.now(), principal, subscription_id)
    session.commit()
    return _redirect(request, "/ui/webhooks?done=webhook-deleted")


# --- settings -----------------------------------------------------------------------------------------------------

ATTRIBUTE_FIELDS = {"name", "type", "label", "description"}
EVENT_FIELDS = {"name", "label", "description", "properties"}


def _settings_page(
    request: Request,
    session: Session,
    settings: Settings,
    principal: Principal,
    *,
    form_name: str = "",
    values: dict[str, Any] | None = None,
    error: CohortaError | None = None,
) -> HTMLResponse:
    attributes = [AttributeDefinitionOut.model_validate(d, from_attributes=True)
                  for d in customers.attribute_definitions(session).values()]  # fmt: skip
    events = [EventDefinitionOut.model_validate(d, from_attributes=True)
              for d in customers.event_definitions(session).values()]  # fmt: skip
    fields = ATTRIBUTE_FIELDS if form_name == "attribute" else EVENT_FIELDS
    by_field, general = form_errors(error, fields) if error else ({}, [])
    attribute_values: dict[str, Any] = {"type": "string"}
    event_values: dict[str, Any] = {}
    wanted = request.query_params.get("attribute")  # "Edit" links fill the form with a definition
    for a in attributes:
        if a.name == wanted:
            attribute_values = {"name": a.name, "type": a.type.value, "label": a.label or "",
                                "description": a.description or ""}  # fmt: skip
    wanted = request.query_params.get("event")
    for e in events:
        if e.name == wanted:
            event_values = {"name": e.name, "label": e.label or "", "description": e.description or "",
                            "properties": "\n".join(f"{k}: {t.value}" for k, t in e.properties.items())}  # fmt: skip
    if form_name == "attribute":
        attribute_values = values or {}
    elif form_name == "event":
        event_values = values or {}
    done = DONE.get(request.query_params.get("done", ""))
    return page(
        request, "admin/settings.html", principal, status_code=error.status if error else 200, settings=settings,
        attributes_open=customers.attributes_open(session), attributes=attributes, events=events,
        value_types=[t.value for t in ValueType], form_name=form_name, attribute_values=attribute_values,
        event_values=event_values, errors=by_field, messages=general, flash=[done] if done else [],
    )  # fmt: skip


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, session: SessionDep, settings: SettingsDep, principal: PageUser) -> HTMLResponse:
    return _settings_page(request, session, settings, principal)


@router.post("/settings/attributes")
def attribute_save(
    request: Request, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: PageAdmin,
    form: FormDep,
) -> Response:  # fmt: skip
    name = _text(form, "name").strip()
    data = {
        "type": _text(form, "type"),
        "label": _optional(form, "label"),
        "description": _optional(form, "description"),
    }
    try:
        body = validated(AttributeDefinitionIn, data)
        previous = customers.attribute_definitions(session).get(name)
        before = AttributeDefinitionOut.model_validate(previous, from_attributes=True) if previous else None
        definition = customers.put_attribute(session, clock, name, body)
    except CohortaError as exc:
        session.rollback()
        values = {"name": name, **{k: v or "" for k, v in data.items()}}
        return _settings_page(request, session, settings, principal, form_name="attribute", values=values, error=exc)
    after = AttributeDefinitionOut.model_validate(definition, from_attributes=True)
    audit.record(
        session, clock.now(), principal.name, "settings.attribute", "attribute", name, before=before, after=after
    )  # fmt: skip  (as PUT /api/v1/attributes/{name})
    session.commit()
    return RedirectResponse("/ui/settings?done=attribute-saved#attributes", status_code=303)


def _properties(text: str) -> dict[str, str]:
    """Lines "key: type" -> {"key": "type"}; the schema checks the names and types."""
    properties: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, colon, value_type = line.partition(":")
        if not colon:
            raise InvalidInput([FieldError(("properties",), f"line {number}: write “name: type”")])
        properties[key.strip()] = value_type.strip()
    return properties


@router.post("/settings/events")
def event_save(
    request: Request, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: PageAdmin,
    form: FormDep,
) -> Response:  # fmt: skip
    name = _text(form, "name").strip()
    values = {"name": name, "label": _text(form, "label"), "description": _text(form, "description"),
              "properties": _text(form, "properties")}  # fmt: skip
    try:
        if not re.match(EVENT_NAME, name):
            raise InvalidInput([FieldError(("name",), "must start with a letter: letters, digits and _ . : - only")])
        data = {"label": _optional(form, "label"), "description": _optional(form, "description"),
                "properties": _properties(values["properties"])}  # fmt: skip
        body = validated(EventDefinitionIn, data)
        previous = customers.event_definitions(session).get(name)
        before = EventDefinitionOut.model_validate(previous, from_attributes=True) if previous else None
        definition = customers.put_event_definition(session, clock, name, body)
    except CohortaError as exc:
        session.rollback()
        return _settings_page(request, session, settings, principal, form_name="event", values=values, error=exc)
    after = EventDefinitionOut.model_validate(definition, from_attributes=True)
    audit.record(
        session,
        clock.now(),
        principal.name,
        "settings.event_definition",
        "event_definition",
        name,
        before=before,
        after=after,
    )  # fmt: skip  (as PUT /api/v1/event-definitions/{name})
    session.commit()
    return RedirectResponse("/ui/settings?done=event-saved#events", status_code=303)
