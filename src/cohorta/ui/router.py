"""HTML routes of the management UI. Thin like the API's: read the form, call the services, render.

Pages are under /ui. They authenticate with the browser session (the login form sets the same cookie as
POST /api/v1/auth/login); writes carry the session's CSRF token, as a form field or htmx's X-CSRF-Token header.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import File, Form, Query, Request, Response, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cohorta.access import service as access
from cohorta.access.models import Permission
from cohorta.access.service import Principal
from cohorta.analytics import service as analytics
from cohorta.customers import profile
from cohorta.customers import service as customers
from cohorta.customers.schemas import PointsAdjustmentIn
from cohorta.customers.service import attribute_definitions
from cohorta.deps import MAX_OFFSET, SESSION_COOKIE, ClockDep, RowId, SegmentIndexDep, SessionDep, SettingsDep
from cohorta.errors import Conflict, InvalidInput, TooManyRequests, Unauthorized, validated
from cohorta.evaluation.catalog import build_catalog
from cohorta.segments import service as segments
from cohorta.segments.models import Segment
from cohorta.segments.schemas import SEGMENT_SORTS, CsvImportOut, SegmentFilters
from cohorta.sources import service as sources
from cohorta.ui.auth import PageUser, PageWriter, error_messages, page_router
from cohorta.ui.render import page

router = page_router(segment_id=segments.get_segment)
PAGE_SIZE = 50


def _safe_next(target: str | None) -> str:
    # Only a path on this site: an open redirect would let a link send a fresh login anywhere.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/ui/segments"


# --- log in, log out ---------------------------------------------------------------------------------------------


LOGIN_COOKIE = "cohorta_login"  # the login form's own CSRF token (double submit): no session exists yet


def _login_page(
    request: Request, settings: Any, *, next_url: str, email: str = "", messages: list[str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    """The login form with a fresh token in a hidden field and in a cookie only this site's pages can read back:
    another site cannot post a login (and so cannot log a browser into the attacker's account)."""
    token = secrets.token_urlsafe(24)
    response = page(request, "login.html", None, status_code=status_code, next=next_url, email=email,
                    messages=messages or [], login_token=token)  # fmt: skip
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=settings.secure_cookies,
                        path="/ui/login", max_age=3600)  # fmt: skip
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, settings: SettingsDep, next: str | None = None) -> HTMLResponse:
    return _login_page(request, settings, next_url=_safe_next(next))


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str | None, Form()] = None,
    login_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    next_url = _safe_next(next)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not secrets.compare_digest(expected.encode(), login_token.encode()):
        return _login_page(request, settings, next_url=next_url, email=email, status_code=400,
                           messages=["This login form has expired or did not come from Cohorta: log in again."])
    address = request.client.host if request.client else "unknown"
    try:
        logged_in = access.login(session, clock.now(), settings, email, password, address)
    except (Unauthorized, TooManyRequests) as exc:
        session.commit()  # a failure counts towards the rate limit
        return _login_page(request, settings, next_url=next_url, email=email, status_code=exc.status,
                           messages=[exc.detail])  # fmt: skip
    session.commit()
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(SESSION_COOKIE, logged_in.cookie, httponly=True, samesite="lax",
                        secure=settings.secure_cookies, path="/")  # fmt: skip
    response.delete_cookie(LOGIN_COOKIE, path="/ui/login")
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, principal: PageUser) -> Response:
    access.logout(session, request.cookies.get(SESSION_COOKIE))
    session.commit()
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("")
@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/segments", status_code=303)


# --- segment list -------------------------------------------------------------------------------------------------

FILTER_FIELDS = tuple(SegmentFilters.model_fields)


def _filters(request: Request) -> tuple[SegmentFilters, dict[str, str]]:
    """The list's filters from the query string; empty inputs mean "no filter"."""
    given = {k: v for k, v in request.query_params.items() if k in FILTER_FIELDS and v.strip() != ""}
    return validated(SegmentFilters, given), given


def row_actions(segment: Segment, principal: Principal) -> list[dict[str, Any]]:
    """The actions a row offers this caller, each with the confirmation that says what will happen."""
    actions: list[dict[str, Any]] = [{"name": "view", "label": "View", "href": f"/ui/segments/{segment.id}"}]
    members = f"{segment.member_count:,}"
    writer = principal.has(Permission.write)
    if writer and segment.status != "archived":
        actions.append({"name": "edit", "label": "Edit", "href": f"/ui/segments/{segment.id}/edit"})
    if writer and segment.status == "inactive":
        actions.append(
            {
                "name": "activate",
                "label": "Activate",
                "post": "activate",
                "confirm": f"Activate “{segment.name}”? Its members will be computed and kept current.",
            }
        )
        actions.append({"name": "archive", "label": "Archive", "post": "archive",
                        "confirm": f"Archiving is irreversible: all {members} members will be removed and "
                                   f"“{segment.name}” can never be reactivated."})  # fmt: skip
    if writer and segment.status == "active":
        actions.append({"name": "deactivate", "label": "Deactivate", "post": "deactivate",
                        "confirm": f"Deactivate “{segment.name}”? Its {members} members stay as they are but are no "
                                   "longer updated, and campaigns can no longer select it."})  # fmt: skip
    if writer and segment.status != "active":
        actions.append(
            {
                "name": "delete",
                "label": "Delete",
                "post": "delete",
                "confirm": f"Delete “{segment.name}” for good, with its {members} members and its history?",
            }
        )
    if segment.status != "archived":
        actions.append({"name": "export", "label": "Export", "href": f"/ui/segments/{segment.id}#export"})
        actions.append(
            {
                "name": "download",
                "label": "Download CSV",
                "href": f"/api/v1/segments/{segment.id}/export?format=csv",
                "download": True,
            }
        )
    return actions


def _sort_links(given: dict[str, str]) -> dict[str, str]:
    current = given.get("sort", "name")
    links = {}
    for key in SEGMENT_SORTS:
        flipped = f"-{key}" if current == key else key
        links[key] = "?" + urlencode({**{k: v for k, v in given.items() if k != "sort"}, "sort": flipped})
    return links


@router.get("/segments", response_class=HTMLResponse)
def segment_list(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: PageUser,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> HTMLResponse:
    filters, given = _filters(request)
    items, total = segments.list_segments(session, settings, principal, filters, limit=PAGE_SIZE, offset=offset)
    rows = [
        {"segment": segments.to_out(s, settings.currency_exponent), "actions": row_actions(s, principal)} for s in items
    ]
    context: dict[str, Any] = {
        "rows": rows, "total": total, "offset": offset, "page_size": PAGE_SIZE, "given": given,
        "sort": filters.sort, "sort_links": _sort_links(given),
        "teams": [t.id for t in access.list_teams(session, principal)],
        "query": urlencode(given),
    }  # fmt: skip
    # Typing in the search box or changing a filter asks htmx for the table alone.
    template = "segments/_table.html" if request.headers.get("HX-Target") == "segment-table" else "segments/list.html"
    return page(request, template, principal, **context)


def _row(request: Request, session: Session, settings: Any, principal: Principal, segment_id: str) -> HTMLResponse:
    """After an action: the list's row again, or, when the action came from the segment's own page, a reload."""
    if request.headers.get("HX-Target") != f"segment-{segment_id}":
        return HTMLResponse("", headers={"HX-Refresh": "true"})
    segment = segments.get_segment(session, segment_id, principal)
    row = {"segment": segments.to_out(segment, settings.currency_exponent), "actions": row_actions(segment, principal)}
    return page(request, "segments/_row.html", principal, row=row)


@router.post("/segments/{segment_id}/activate", response_class=HTMLResponse)
def activate(
    request: Request, segment_id: str, session: SessionDep, settings: SettingsDep, clock: ClockDep,
    principal: PageWriter,
) -> HTMLResponse:  # fmt: skip
    segments.activate(session, settings, clock, segment_id, principal)
    session.commit()
    return _row(request, session, settings, principal, segment_id)


@router.post("/segments/{segment_id}/deactivate", response_class=HTMLResponse)
def deactivate(
    request: Request, segment_id: str, session: SessionDep, settings: SettingsDep, clock: ClockDep,
    principal: PageWriter,
) -> HTMLResponse:  # fmt: skip
    segments.deactivate(session, clock, segment_id, principal)
    session.commit()
    return _row(request, session, settings, principal, segment_id)


@router.post("/segments/{segment_id}/archive", response_class=HTMLResponse)
def archive(
    request: Request, segment_id: str, session: SessionDep, settings: SettingsDep, clock: ClockDep,
    principal: PageWriter,
) -> HTMLResponse:  # fmt: skip
    segments.archive(session, clock, segment_id, principal)
    session.commit()
    return _row(request, session, settings, principal, segment_id)


@router.post("/segments/{segment_id}/delete", response_class=HTMLResponse)
def delete(
    request: Request, segment_id: str, session: SessionDep, clock: ClockDep, principal: PageWriter
) -> HTMLResponse:
    segments.delete_segment(session, clock, segment_id, principal)
    session.commit()
    if request.headers.get("HX-Target") != f"segment-{segment_id}":
        return HTMLResponse("", headers={"HX-Redirect": "/ui/segments"})
    return HTMLResponse("")  # the row goes away


# --- create and edit --------------------------------------------------------------------------------------------


def _editor_context(
    session: Session, principal: Principal, mode: str, segment: Segment | None, settings: Any
) -> dict[str, Any]:
    """What the rule builder needs: the field catalog, the segments a rule may name, the segment's fields."""
    live = [
        {"id": s.id, "name": s.name}
        for s in segments.list_segments(
            session, settings, principal, SegmentFilters(status="active"), limit=1000, offset=0
        )[0]
        if segment is None or s.id != segment.id
    ]
    form: dict[str, Any] = {}
    if segment is not None:
        form = {
            "name": segment.name, "description": segment.description or "", "type": segment.type,
            "status": segment.status, "team": segment.team or "", "store": segment.store or "",
            "customer_groups": ", ".join(segment.customer_groups or []),
            "starts_at": _local_input(segment.starts_at), "expires_at": _local_input(segment.expires_at),
            "sync_minutes": segment.sync_period_seconds // 60 if segment.sync_period_seconds else "",
        }  # fmt: skip
    return {
        "mode": mode,
        "segment_id": segment.id if segment else None,
        "form": form,
        "has_rule": segment is None or segment.type == "dynamic",
        "catalog": build_catalog(session, with_hints=True).as_json(),
        "initial": {"rule": segment.rule if segment is not None else None, "form": form},
        "config": {"mode": mode, "segmentId": segment.id if segment else None, "segments": live},
        "teams": [t.id for t in access.list_teams(session, principal)],
    }


def _local_input(value: Any) -> str:
    # The instant with its offset; the editor shows it in the browser's wall-clock time (datetime-local inputs
    # take no offset) and converts back with the browser's zone when saving.
    return value.isoformat() if value is not None else ""


@router.get("/segments/new", response_class=HTMLResponse)
def new_segment(request: Request, session: SessionDep, settings: SettingsDep, principal: PageWriter) -> HTMLResponse:
    return page(
        request, "segments/form.html", principal, **_editor_context(session, principal, "create", None, settings)
    )


@router.get("/segments/{segment_id}/edit", response_class=HTMLResponse)
def edit_segment(
    request: Request, segment_id: str, session: SessionDep, settings: SettingsDep, principal: PageWriter
) -> HTMLResponse:
    segment = segments.get_segment(session, segment_id, principal)
    if segment.status == "archived":
        raise Conflict("an archived segment cannot be edited")
    context = _editor_context(session, principal, "edit", segment, settings)
    return page(request, "segments/form.html", principal, **context)


@router.post("/segments/upload", response_class=HTMLResponse)
async def upload_segment(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: PageWriter,
    name: Annotated[str, Form(min_length=1, max_length=255)],
    file: Annotated[UploadFile, File()],
) -> HTMLResponse:
    content = await file.read()
    report = await run_in_threadpool(_upload, session, settings, clock, name.strip(), content, principal)
    return page(request, "segments/upload_report.html", principal, report=report)


def _upload(
    session: Session, settings: Any, clock: Any, name: str, content: bytes, principal: Principal
) -> CsvImportOut:
    report = segments.create_static_from_csv(session, settings, clock, name, content, principal)
    session.commit()
    return report


# --- segment detail -----------------------------------------------------------------------------------------------


@router.get("/segments/{segment_id}", response_class=HTMLResponse)
def segment_detail(
    request: Request, segment_id: str, session: SessionDep, settings: SettingsDep, principal: PageUser
) -> HTMLResponse:
    segment = segments.get_segment(session, segment_id, principal)
    today = datetime.now(settings.tz).date()
    context: dict[str, Any] = {
        "segment": segments.to_out(segment, settings.currency_exponent),
        "actions": row_actions(segment, principal),
        "lines": segments.condition_lines(segment.rule),
        "versions": segments.versions(session, segment_id),
        "history": segments.segment_history(session, segment_id, 50, 0, principal),
        "usage": segments.usage(session, segment_id, principal),
        "source": sources.segment_source(session, settings, segment),
        "sync_reports": sources.reports(session, segment_id, 10, 0) if segment.type == "external" else [],
        "attributes": sorted(attribute_definitions(session)),
        "default_from": (today.replace(day=1) - timedelta(days=330)).replace(day=1).isoformat(),
        "default_to": today.isoformat(),
        "export_from": datetime.combine(today - timedelta(days=90), dt_time(0), settings.tz).isoformat(),
        "export_to": datetime.combine(today + timedelta(days=1), dt_time(0), settings.tz).isoformat(),
    }
    return page(request, "segments/detail.html", principal, **context)


@router.get("/segments/{segment_id}/members", response_class=HTMLResponse)
def segment_members(
    request: Request,
    segment_id: str,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: PageUser,
    filter: Annotated[str | None, Query(max_length=20_000)] = None,
    sort: Annotated[str, Query(max_length=40)] = "source_id",
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    attribute: Annotated[list[str], Query(max_length=20)] = [],  # noqa: B006
) -> HTMLResponse:
    filter_text = filter.strip() if filter and filter.strip() else None
    try:
        members = segments.members_page(
            session, settings, clock, segment_id, limit=PAGE_SIZE, offset=offset, sort=sort, filter_text=filter_text,
            principal=principal, attributes=attribute,
        )  # fmt: skip
    except InvalidInput as exc:  # a filter being typed: say what is wrong in place of the table
        return page(request, "_flash.html", principal, messages=error_messages(exc), level="error")
    given = {"filter": filter_text or "", "sort": sort, "attribute": attribute}
    programs = list(build_catalog(session).programs)
    return page(request, "segments/_members.html", principal, members=members, segment_id=segment_id, given=given,
                programs=programs,
                page_size=PAGE_SIZE, query=urlencode({k: v for k, v in given.items() if v}, doseq=True))  # fmt: skip


@router.get("/segments/{segment_id}/analytics", response_class=HTMLResponse)
def segment_analytics(
    request: Request,
    segment_id: str,
    session: SessionDep,
    settings: SettingsDep,
    principal: PageUser,
    start: Annotated[date, Query(alias="from")],
    end: Annotated[date, Query(alias="to")],
) -> HTMLResponse:
    result = analytics.analytics(session, settings, principal, segment_id, start, end)
    return page(request, "segments/_analytics.html", principal, a=result, chart=result.model_dump(mode="json"))


@router.post("/segments/{segment_id}/refresh", response_class=HTMLResponse)
def refresh(
    request: Request, segment_id: str, session: SessionDep, settings: SettingsDep, clock: ClockDep,
    principal: PageWriter,
) -> HTMLResponse:  # fmt: skip
    segments.request_refresh(session, clock, segment_id, principal)
    session.commit()
    return page(request, "_flash.html", principal, messages=["Refresh queued."], level="ok")


@router.post("/segments/{segment_id}/versions/{version}/restore", response_class=HTMLResponse)
def restore_version(
    segment_id: str, version: RowId, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: PageWriter
) -> HTMLResponse:
    """Restoring a version makes a new version with its name and rule; the page reloads to show it."""
    segments.restore_version(session, settings, clock, segment_id, version, principal)
    session.commit()
    return HTMLResponse("", headers={"HX-Refresh": "true"})


# --- customers -----------------------------------------------------------------------------------------------------


@router.get("/customers", response_class=HTMLResponse)
def customer_search(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    q: Annotated[str, Query(max_length=255)] = "",
) -> Response:
    found = customers.find_customers(session, q) if q.strip() else []
    if len(found) == 1 and found[0].source_id.lower() == q.strip().lower():
        return RedirectResponse(f"/ui/customers/{quote(found[0].source_id, safe='')}", status_code=303)
    return page(request, "customers/search.html", principal, q=q, found=found)


@router.get("/customers/{source_id:path}/why", response_class=HTMLResponse)
def why(
    request: Request,
    source_id: str,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: PageUser,
    segment: Annotated[str, Query(max_length=64)],
) -> HTMLResponse:
    explained = segments.explain_saved(session, settings, clock, segment, source_id, principal)
    name = segments.get_segment(session, segment, principal).name
    return page(request, "customers/_why.html", principal, e=explained, segment_name=name)


@router.post("/customers/{source_id:path}/points", response_class=HTMLResponse)
def adjust_points(
    request: Request,
    source_id: str,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    index: SegmentIndexDep,
    principal: PageWriter,
    points: Annotated[int, Form()],
    reason: Annotated[str, Form(max_length=512)],
    program: Annotated[str | None, Form(max_length=64)] = None,
) -> HTMLResponse:
    programs = list(build_catalog(session).programs)
    chosen = program or (programs[0] if programs else "default")
    body = validated(PointsAdjustmentIn, {"program": chosen, "points": points, "reason": reason})
    done = profile.adjust_points(session, settings, clock, index, source_id, body, principal)
    session.commit()
    moved = "".join(
        [
            f" Entered: {', '.join(done.entered)}." if done.entered else "",
            f" Left: {', '.join(done.exited)}." if done.exited else "",
        ]
    )
    message = f"{done.points:+,} {done.program} points for {source_id}; balance {done.balance:,}.{moved}"
    return page(request, "_flash.html", principal, messages=[message], level="ok")


# Last: the customer's id may hold slashes, so this path would otherwise take the pages above.
@router.get("/customers/{source_id:path}", response_class=HTMLResponse)
def customer_page(
    request: Request, source_id: str, session: SessionDep, settings: SettingsDep, principal: PageUser
) -> HTMLResponse:
    exponent = settings.currency_exponent
    customer = profile.customer_with_groups(session, source_id, exponent, principal)
    orders, order_total = customers.customer_orders(session, source_id, exponent, 20, 0)
    events, event_total = customers.customer_events(session, source_id, None, 20, 0)
    ledger, ledger_total = customers.customer_ledger(session, source_id, exponent, None, 20, 0)
    dynamic = segments.list_segments(
        session, settings, principal, SegmentFilters(type="dynamic", status="active"), limit=1000, offset=0
    )[0]
    context: dict[str, Any] = {
        "c": customer, "orders": orders, "order_total": order_total, "events": events, "event_total": event_total,
        "ledger": ledger, "ledger_total": ledger_total,
        "memberships": segments.customer_segments(session, source_id, principal),
        "history": segments.customer_history(session, source_id, 20, 0, principal),
        "dynamic": [{"id": s.id, "name": s.name} for s in dynamic],
        "programs": list(build_catalog(session).programs),
    }  # fmt: skip
    return page(request, "customers/detail.html", principal, **context)
