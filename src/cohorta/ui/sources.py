"""HTML routes of external sources: the list, a source's page (test, remote lists, import, its segments and their
syncs), and syncing an imported segment from its page. Thin: read the form, call sources.service, render."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from fastapi import File, Form, Request, Response, UploadFile
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from cohorta.access.service import Principal
from cohorta.deps import ClockDep, SessionDep, SessionFactoryDep, SettingsDep
from cohorta.errors import CohortaError, FieldError, InvalidInput, validated
from cohorta.segments import service as segments
from cohorta.sources import service
from cohorta.sources.schemas import ImportIn, SourceIn, SourcePatch
from cohorta.ui.auth import PageAdmin, PageUser, PageWriter, error_messages, page_router
from cohorta.ui.render import page

router = page_router(segment_id=segments.get_segment)

# What the form offers as a starting point per kind (docs/sources.md lists every setting).
CONFIG_EXAMPLES = {
    "csv": ({"key_column": "email"}, {}),
    "emarsys": ({"base_url": "https://api.emarsys.net", "auth": "wsse", "key_field_id": 3},
                {"username": "...", "secret": "..."}),
    "json": ({"url": "https://crm.example.com/api/lists/{remote_id}/members", "auth_header": "Authorization",
              "items_path": "data", "key_path": "email", "paging": "next_link",
              "lists_url": "https://crm.example.com/api/lists", "lists_path": "data"},
             {"header_value": "Bearer ..."}),
}  # fmt: skip


def _json_field(raw: str, field: str) -> dict[str, Any] | None:
    """A JSON object typed in a textarea; empty means "not given"."""
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput([FieldError((field,), f"not valid JSON: {exc.msg} (line {exc.lineno})")]) from exc
    if not isinstance(value, dict):
        raise InvalidInput([FieldError((field,), "must be a JSON object")])
    return value


def _hours_to_seconds(text: str) -> int | None:
    if not text.strip():
        return None
    try:
        hours = float(text)
    except ValueError:
        hours = math.nan
    if not math.isfinite(hours) or not 0 < hours <= 31 * 24:
        raise InvalidInput([FieldError(("sync_hours",), "a number of hours from 0.1 to 744")])
    return round(hours * 3600)


async def _content(file: UploadFile | None) -> str | None:
    if file is None or not file.filename:
        return None
    raw = await file.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput([FieldError(("file",), "the file is not UTF-8 text")]) from exc


def _list_page(request: Request, session: Any, settings: Any, principal: Principal, **extra: Any) -> HTMLResponse:
    context = {"sources": service.list_sources(session, settings), "examples": CONFIG_EXAMPLES, "form": {}}
    return page(request, "sources/list.html", principal, **{**context, **extra})


@router.get("/sources", response_class=HTMLResponse)
def source_list(request: Request, session: SessionDep, settings: SettingsDep, principal: PageUser) -> HTMLResponse:
    return _list_page(request, session, settings, principal)


@router.post("/sources", response_class=HTMLResponse)
async def source_create(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: PageAdmin,
    name: Annotated[str, Form(max_length=255)],
    kind: Annotated[str, Form(max_length=16)],
    key_field: Annotated[str, Form(max_length=16)] = "email",
    config: Annotated[str, Form(max_length=20_000)] = "",
    credentials: Annotated[str, Form(max_length=20_000)] = "",
    sync_hours: Annotated[str, Form(max_length=8)] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    form = {"name": name, "kind": kind, "key_field": key_field, "config": config, "sync_hours": sync_hours}
    try:
        body = validated(SourceIn, {
            "name": name, "kind": kind, "key_field": key_field, "config": _json_field(config, "config") or {},
            "credentials": _json_field(credentials, "credentials"), "content": await _content(file),
            "sync_period_seconds": _hours_to_seconds(sync_hours),
        })  # fmt: skip
        out = await run_in_threadpool(service.create_source, session, settings, clock.now(), principal, body)
    except CohortaError as exc:
        messages = error_messages(exc)
        return _list_page(request, session, settings, principal, form=form, messages=messages)
    session.commit()
    return Response(status_code=303, headers={"Location": f"/ui/sources/{out.id}"})


@router.get("/sources/{source}", response_class=HTMLResponse)
def source_detail(
    request: Request, source: str, session: SessionDep, settings: SettingsDep, principal: PageUser
) -> HTMLResponse:
    out = service.to_out(session, settings, service.get_source(session, source))
    imported = service.imported_segments(session, settings, source, principal)
    return page(request, "sources/detail.html", principal, source=out, imported=imported,
                config_json=json.dumps(out.config, indent=2))  # fmt: skip


@router.post("/sources/{source}", response_class=HTMLResponse)
def source_update(
    request: Request,
    source: str,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: PageAdmin,
    config: Annotated[str, Form(max_length=20_000)] = "",
    credentials: Annotated[str, Form(max_length=20_000)] = "",
    active: Annotated[str | None, Form()] = None,
) -> Response:
    patch: dict[str, Any] = {"active": active is not None}
    given = _json_field(config, "config")
    if given is not None:
        patch["config"] = given
    secrets = _json_field(credentials, "credentials")
    if secrets is not None:  # empty: keep the stored credentials
        patch["credentials"] = secrets
    service.update_source(session, settings, clock.now(), principal, source, validated(SourcePatch, patch))
    session.commit()
    return Response(status_code=303, headers={"Location": f"/ui/sources/{source}"})


@router.post("/sources/{source}/delete", response_class=HTMLResponse)
def source_delete(
    source: str, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: PageAdmin
) -> Response:
    service.delete_source(session, settings, clock.now(), principal, source)
    session.commit()
    return Response(status_code=204, headers={"HX-Redirect": "/ui/sources"})


@router.post("/sources/{source}/test", response_class=HTMLResponse)
def source_test(
    request: Request, source: str, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: PageWriter
) -> HTMLResponse:
    result = service.test_source(session, settings, clock, source)
    message = f"{'Connected' if result.ok else 'Failed'}: {result.detail} ({result.duration_ms:,} ms)"
    return page(request, "_flash.html", principal, messages=[message], level="ok" if result.ok else "error")


@router.get("/sources/{source}/remote", response_class=HTMLResponse)
def source_remote(
    request: Request, source: str, session: SessionDep, settings: SettingsDep, clock: ClockDep, principal: PageWriter
) -> HTMLResponse:
    remote = service.remote_segments(session, settings, clock, source)
    return page(request, "sources/_remote.html", principal, remote=remote, source_id=source)


@router.post("/sources/{source}/import", response_class=HTMLResponse)
def source_import(
    source: str,
    factory: SessionFactoryDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: PageWriter,
    remote_id: Annotated[str, Form(max_length=255)],
    name: Annotated[str, Form(max_length=255)] = "",
) -> Response:
    body = validated(ImportIn, {"remote_id": remote_id, "name": name.strip() or None})
    segment_id = service.import_segment(factory, settings, clock, source, body, principal)
    return Response(status_code=204, headers={"HX-Redirect": f"/ui/segments/{segment_id}"})


@router.post("/segments/{segment_id}/sync", response_class=HTMLResponse)
def segment_sync(
    request: Request,
    segment_id: str,
    factory: SessionFactoryDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: PageWriter,
    force: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    report = service.request_sync(factory, settings, clock, segment_id, principal, force=force is not None)
    if report.status == "ok":
        message = (
            f"Synced in {report.duration_ms:,} ms: {report.added:,} added, {report.removed:,} removed, "
            f"{report.unchanged:,} unchanged, {report.unmatched:,} unmatched, {report.skipped:,} skipped."
        )
        return page(request, "_flash.html", principal, messages=[message], level="ok")
    return page(request, "_flash.html", principal, messages=[f"Sync failed, members kept: {report.error}"],
                level="error")  # fmt: skip
