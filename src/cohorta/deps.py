"""FastAPI dependencies shared by every router: the unit of work, the clock, settings and the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from cohorta.access.service import Principal, authenticate_bearer
from cohorta.clock import Clock
from cohorta.config import Settings
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


def get_principal(
    request: Request, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> Principal:
    return authenticate_bearer(authorization, request.app.state.settings.admin_token)


def get_segment_index(request: Request) -> SegmentIndex:
    index: SegmentIndex = request.app.state.segment_index
    return index


SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
SegmentIndexDep = Annotated[SegmentIndex, Depends(get_segment_index)]
ClockDep = Annotated[Clock, Depends(get_clock)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
