"""Shared fixtures: a migrated store on SQLite and on PostgreSQL, a frozen clock, an authenticated API client.

PostgreSQL tests use COHORTA_TEST_POSTGRES_URL (default: the local server's ``test`` database), create a database of
their own and drop it at the end. Under CI=true an unreachable PostgreSQL is an error, never a skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta import db
from cohorta.app import create_app
from cohorta.clock import FrozenClock
from cohorta.config import Settings
from tests.support import Receiver

ADMIN_TOKEN = "test-admin-token"
POSTGRES_URL = os.environ.get("COHORTA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
START = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("store") == "postgresql":
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy (faster than migrating per test)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    engine = db.create_db_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A migrated PostgreSQL database of this test run's own."""
    admin_url = sa.make_url(POSTGRES_URL)
    try:
        admin = db.create_db_engine(admin_url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:
        message = f"PostgreSQL at {admin_url.render_as_string()} is unreachable: {exc}"
        if IN_CI:
            pytest.fail(message + " (CI=true: the PostgreSQL suite must run)", pytrace=False)
        pytest.skip(message)
    name = f"cohorta_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = db.create_db_engine(url)
    db.upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """A migrated, empty database: a copy of the SQLite template, or the run's PostgreSQL database truncated."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "cohorta.db"
        shutil.copy(template, path)
        engine = db.create_db_engine(f"sqlite:///{path}")
        yield engine
        engine.dispose()
        return
    url: str = request.getfixturevalue("postgres_database")
    engine = db.create_db_engine(url)
    yield engine
    with engine.begin() as connection:
        tables = [t.name for t in reversed(db.Base.metadata.sorted_tables)]
        connection.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def settings(store: sa.Engine) -> Settings:
    return Settings(database_url=store.url.render_as_string(hide_password=False), admin_token=ADMIN_TOKEN)


@pytest.fixture
def client(store: sa.Engine, clock: FrozenClock, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, clock=clock, engine=store)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as test_client:
        yield test_client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a loopback port (tests/support.py)."""
    server = Receiver()
    yield server
    server.server.shutdown()


