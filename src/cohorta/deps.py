"""FastAPI dependencies shared by every router: the unit of work, the clock, settings and the caller."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Annotated

import anyio
import sqlalchemy as sa
from fastapi import Depends, Path, Request
from fastapi.security import APIKeyCookie, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from cohorta.access.models import Permission
from cohorta.access.service import Principal, authenticate, require, write_apart
from cohorta.clock import Clock
from cohorta.config import Settings
from cohorta.db import ReadAhead
from cohorta.errors import Forbidden
from cohorta.membership.live import SegmentIndex

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session(request: Request) -> Iterator[Session]:
    """A session per request. Routers commit explicitly; anything not committed is rolled back.

    On SQLite a request that may write takes the write lock before its first read (see ``db.unit_of_work``): SQLite
    has one writer at a time anyway, and a write decided on reads made before another writer committed is lost.
    """
    session: Session = request.app.state.session_factory()
    try:
        if request.method not in READ_METHODS and session.get_bind().dialect.name == "sqlite":
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        yield session
    finally:
        session.rollback()
        session.close()


def get_read_session(request: Request) -> Iterator[Session]:
    """A session for a route that only reads, whatever its method (previews are POSTs): it never takes the write
    lock, so a long preview does not hold up writers."""
    session: Session = request.app.state.session_factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SESSION_COOKIE = "cohorta_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
# Declared only so that the OpenAPI document (and its "Authorize" button) shows both ways in; get_principal reads
# the headers itself to give precise problems.
_bearer_scheme = HTTPBearer(auto_error=False, description="An API token, or COHORTA_ADMIN_TOKEN")
_cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="The session of POST /auth/login")


async def get_principal(
    request: Request,
    _bearer: Annotated[object, Depends(_bearer_scheme)] = None,
    _cookie: Annotated[object, Depends(_cookie_scheme)] = None,
) -> Principal:
    """Who calls: a bearer token, else the session cookie."""
    return await principal_of(request, request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE))


async def principal_of(request: Request, authorization: str | None, session_cookie: str | None) -> Principal:
    """The caller from a bearer token or a session cookie.

    The lookup is one indexed read by primary or unique key, well under a millisecond, so it runs inline on the
    event loop rather than paying a thread hop on every request; it uses a short session of its own, so routes that
    only read never hold a write transaction for it. The rare bookkeeping write (last use, sliding expiry) goes to
    a worker thread, since a write may wait for SQLite's lock.
    """
    clock: Clock = request.app.state.clock
    touches: list[sa.Update] = []
    with request.app.state.session_factory() as session:
        principal = authenticate(
            session,
            clock.now(),
            request.app.state.settings,
            authorization=authorization,
            session_cookie=session_cookie,
            touches=touches,
            token_cache=request.app.state.token_cache,
        )
    engine = request.app.state.engine
    for statement in touches:
        await anyio.to_thread.run_sync(write_apart, engine, statement)
    return principal


async def verify_csrf(request: Request, principal: Principal) -> None:
    """A browser session may write only with its CSRF token (header, or form field for plain HTML forms): a cookie
    is sent by the browser whoever made the page, the token only by pages Cohorta served."""
    if principal.csrf_token is not None and request.method not in READ_METHODS:
        sent = request.headers.get(CSRF_HEADER)
        content_type = request.headers.get("content-type", "")
        if sent is None and content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form()).get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
        if not sent or not secrets.compare_digest(sent.encode(), principal.csrf_token.encode()):
            raise Forbidden(f"missing or wrong CSRF token: send the {CSRF_HEADER} header given at login")


async def checked_principal(request: Request, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    await verify_csrf(request, principal)
    return principal


async def reader(principal: Annotated[Principal, Depends(checked_principal)]) -> Principal:
    return require(principal, Permission.read)


async def editor(principal: Annotated[Principal, Depends(checked_principal)]) -> Principal:
    return require(principal, Permission.write)


async def admin(principal: Annotated[Principal, Depends(checked_principal)]) -> Principal:
    return require(principal, Permission.admin)


def in_sight(param: str, lookup: Callable[[Session, str, Principal], object]) -> Callable[..., None]:
    """A router dependency: a route whose path has ``{param}`` answers 404 when ``lookup`` (which raises NotFound for
    an object of a team the caller is not in) refuses it, before the body is read or validated."""

    def check(request: Request, principal: Annotated[Principal, Depends(reader)]) -> None:
        value = request.path_params.get(param)
        if value is not None:
            with request.app.state.session_factory() as session:
                lookup(session, value, principal)

    return check


def get_session_factory(request: Request) -> sessionmaker[Session]:
    """For work that runs its own transactions around calls to other systems (source imports and syncs)."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    return factory


def get_segment_index(request: Request) -> SegmentIndex:
    index: SegmentIndex = request.app.state.segment_index
    return index


def get_read_ahead(request: Request) -> ReadAhead | None:
    reader: ReadAhead | None = request.app.state.read_ahead
    return reader


# Offsets and integer ids in paths are bounded: a bigger number than the databases' 64-bit integers is a 422, not
# an overflow deep in the driver.
MAX_OFFSET = 1_000_000_000
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]

SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]
SegmentIndexDep = Annotated[SegmentIndex, Depends(get_segment_index)]
ReadAheadDep = Annotated[ReadAhead | None, Depends(get_read_ahead)]
ClockDep = Annotated[Clock, Depends(get_clock)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ReaderDep = Annotated[Principal, Depends(reader)]
EditorDep = Annotated[Principal, Depends(editor)]
AdminDep = Annotated[Principal, Depends(admin)]
