"""Who is looking at a page: the browser session only (no bearer tokens), redirected to the login page when absent.

Pages use a route class that turns domain errors into HTML (a page, or for htmx requests a message in the page's
flash area) instead of the API's problem documents.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from cohorta.access.models import Permission
from cohorta.access.service import Principal, require
from cohorta.deps import SESSION_COOKIE, principal_of, verify_csrf
from cohorta.errors import CohortaError, FieldError, InvalidInput, Unauthorized
from cohorta.ui.render import page

log = logging.getLogger(__name__)


class LoginRequired(Exception):
    """No valid browser session: the page sends the browser to the login form."""


async def page_principal(request: Request) -> Principal:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise LoginRequired
    try:
        principal = await principal_of(request, None, cookie)
    except Unauthorized as exc:
        raise LoginRequired from exc
    await verify_csrf(request, principal)  # every UI write is a form or an htmx request carrying the token
    return principal


async def _known_principal(request: Request) -> Principal | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        return await principal_of(request, None, cookie)
    except CohortaError:
        return None


async def page_writer(request: Request) -> Principal:
    """A page action that changes something: the write permission, checked before the form is read."""
    return require(await page_principal(request), Permission.write)


async def page_admin(request: Request) -> Principal:
    return require(await page_principal(request), Permission.admin)


def _login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.headers.get("HX-Request") == "true":  # back to the page the user was on: its path and query only
        current = urlsplit(request.headers.get("HX-Current-URL", "/ui/segments"))
        target = current.path + (f"?{current.query}" if current.query else "")
    return f"/ui/login?next={quote(target, safe='')}"


def error_messages(exc: CohortaError) -> list[str]:
    if isinstance(exc, InvalidInput) and exc.errors:
        return [f"{'.'.join(str(p) for p in e.loc) or 'input'}: {e.message}" for e in exc.errors]
    return [exc.detail]


class PageRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                try:
                    return await handler(request)
                except RequestValidationError as exc:  # a form or query value of the wrong shape: a page, not JSON
                    raise InvalidInput(
                        [FieldError(tuple(e["loc"][1:]) or tuple(e["loc"]), e["msg"]) for e in exc.errors()]
                    ) from exc
            except LoginRequired:
                url = _login_url(request)
                if request.headers.get("HX-Request") == "true":
                    return Response(status_code=204, headers={"HX-Redirect": url})
                return RedirectResponse(url, status_code=303)
            except CohortaError as exc:
                messages = error_messages(exc)
                if request.headers.get("HX-Request") == "true":
                    # Shown in the page's flash area, whatever the request meant to replace.
                    response = page(request, "_flash.html", None, status_code=exc.status, messages=messages,
                                    level="error")  # fmt: skip
                    response.headers["HX-Retarget"] = "#flash"
                    response.headers["HX-Reswap"] = "innerHTML"
                    return response
                # The error page keeps the navigation when the browser has a session (a 404 is not a dead end).
                return page(request, "error.html", await _known_principal(request), status_code=exc.status,
                            title=exc.title, messages=messages)  # fmt: skip

        return route_handler


def page_in_sight(
    param: str, lookup: Callable[[Session, str, Principal], object]
) -> Callable[..., Coroutine[Any, Any, None]]:
    """The UI's ``deps.in_sight``: a page about a segment or campaign of a team the caller is not in is a 404,
    decided before anything else about the request (its permission, its query, its form)."""

    async def check(request: Request) -> None:
        value = request.path_params.get(param)
        if value is None:
            return
        principal = await page_principal(request)
        with request.app.state.session_factory() as session:
            lookup(session, value, principal)

    return check


PageUser = Annotated[Principal, Depends(page_principal)]
PageWriter = Annotated[Principal, Depends(page_writer)]  # checked before the form is read
PageAdmin = Annotated[Principal, Depends(page_admin)]


def page_router(**lookups: Callable[[Session, str, Principal], object]) -> APIRouter:
    """A router of pages under /ui: domain errors become HTML, and each path parameter named in ``lookups`` (e.g.
    ``segment_id=segments.get_segment``) is checked for visibility (404) before anything else."""
    return APIRouter(
        prefix="/ui",
        route_class=PageRoute,
        include_in_schema=False,
        dependencies=[Depends(page_in_sight(param, lookup)) for param, lookup in lookups.items()],
    )
