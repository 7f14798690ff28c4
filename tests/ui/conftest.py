"""Fixtures and helpers of the UI tests: a migrated SQLite store, the admin token's API client and browsers that log
in through the login form (session cookie, CSRF token read from the page)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta import db
from cohorta.clock import FrozenClock
from tests.support import admin_api, run_jobs

PASSWORD = "correct-horse-battery"


@pytest.fixture
def ui_store(sqlite_template: Path, tmp_path: Path) -> Iterator[sa.Engine]:
    """A migrated SQLite store (the pages are the same on every database; the services are tested on both)."""
    path = tmp_path / "cohorta.db"
    shutil.copy(sqlite_template, path)
    engine = db.create_db_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture
def api(ui_store: sa.Engine, clock: FrozenClock) -> Iterator[TestClient]:
    """The admin token's API client; customers c1, c2 (PL) and c3 (DE)."""
    with admin_api(ui_store, clock) as client:
        for source_id, country in (("c1", "PL"), ("c2", "PL"), ("c3", "DE")):
            assert client.put(f"/api/v1/customers/{source_id}", json={"country": country}).status_code == 201
        yield client


def user(api: TestClient, email: str, role: str, teams: list[str] | None = None) -> int:
    response = api.post("/api/v1/users", json={"email": email, "password": PASSWORD, "role": role,
                                               "teams": teams or []})  # fmt: skip
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def login_token(client: TestClient) -> str:
    """The login form's token, as a browser gets it with the form (and its cookie)."""
    found = re.search(r'name="login_token" value="([^"]+)"', client.get("/ui/login").text)
    assert found, "the login form carries no token"
    return found.group(1)


def browser(api: TestClient, email: str, password: str = PASSWORD) -> TestClient:
    """A browser logged in through the login form: it holds the session cookie and no bearer token."""
    client = TestClient(api.app, follow_redirects=False)
    form = {"email": email, "password": password, "next": "/ui/campaigns", "login_token": login_token(client)}
    response = client.post("/ui/login", data=form)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/campaigns"
    return client


def csrf(client: TestClient, path: str = "/ui/settings") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def post(client: TestClient, path: str, data: dict[str, Any], *, token: str | None = None) -> Any:
    """A plain HTML form post with the csrf_token field (as the pages' forms send it)."""
    return client.post(path, data={"csrf_token": token if token is not None else csrf(client), **data})


def segment(api: TestClient, name: str, text: str = 'profile.country in ("PL")', **extra: Any) -> str:
    response = api.post("/api/v1/segments", json={"name": name, "text": text, **extra})
    assert response.status_code == 201, response.text
    run_jobs(api)
    return str(response.json()["id"])
