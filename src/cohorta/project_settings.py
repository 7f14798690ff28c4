"""Small project-wide values changed at run time (``project_settings``): read and written in the caller's
transaction. Not deployment configuration (that is :mod:`cohorta.config`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cohorta.customers.models import ProjectSetting
from cohorta.db import dialect_insert, send_rows, table_of


def get_setting(session: Session, key: str) -> Any | None:
    """The value, or None when it was never set (read from the database, not the session's identity map)."""
    return send_setting(session.connection(), key)()


def send_setting(connection: sa.Connection, key: str) -> Callable[[], Any | None]:
    """:func:`get_setting`, sent now (:func:`cohorta.db.send_rows`); the function returned reads the value."""
    sent = send_rows(connection, table_of(ProjectSetting), ("value",), {"key": [key]})

    def value() -> Any | None:
        found = sent.rows()
        return found[0]["value"] if found else None

    return value


def put_setting(session: Session, key: str, value: Any) -> None:
    """Set the value; two writers setting it at once do not fail (the later one wins)."""
    statement = dialect_insert(session.connection().dialect.name, table_of(ProjectSetting)).values(key=key, value=value)
    session.execute(statement.on_conflict_do_update(index_elements=["key"], set_={"value": statement.excluded.value}))
