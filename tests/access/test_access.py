"""People and access: logins and sessions, CSRF, rate limits, API tokens, users, teams and what each caller sees."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cohorta.app import create_app
from cohorta.clock import FrozenClock
from cohorta.config import Settings
from cohorta.deps import CSRF_HEADER, SESSION_COOKIE
from tests.conftest import ADMIN_TOKEN
from tests.support import run_jobs

PASSWORD = "correct horse battery"


@pytest.fixture
def app(store: sa.Engine, clock: FrozenClock) -> FastAPI:
    settings = Settings(
        database_url=store.url.render_as_string(hide_password=False),
        admin_token=ADMIN_TOKEN,
        scheduler=False,
        login_max_failures_per_account=3,
        login_max_failures_per_address=5,
        login_window_seconds=600,
        session_ttl_seconds=3600,
    )
    return create_app(settings, clock=clock, engine=store)


@pytest.fixture
def root(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        yield client


def make_user(root: TestClient, email: str, role: str, teams: list[str] | None = None) -> dict[str, Any]:
    response = root.post(
        "/api/v1/users", json={"email": email, "password": PASSWORD, "role": role, "teams": teams or []}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def browser(app: FastAPI, email: str, password: str = PASSWORD) -> TestClient:
    """A logged-in browser: the session cookie, and the CSRF token sent back on writes."""
    client = TestClient(app)
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    client.headers[CSRF_HEADER] = response.json()["csrf_token"]
    return client


def make_teams(root: TestClient, *teams: str) -> None:
    for team in teams:
        assert root.post("/api/v1/teams", json={"id": team, "name": team.title()}).status_code == 201


# --- sessions -------------------------------------------------------------------------------------------------


def test_login_sets_a_protected_cookie_and_logout_ends_the_session(app: FastAPI, root: TestClient) -> None:
    make_user(root, "Ana@Example.com", "editor")
    client = TestClient(app)
    response = client.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": PASSWORD})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert f"{SESSION_COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert response.json()["user"]["email"] == "ana@example.com" and response.json()["user"]["role"] == "editor"
    me = client.get("/api/v1/auth/me").json()
    assert me["name"] == "ana@example.com" and me["permissions"] == ["read", "write"]
    csrf = response.json()["csrf_token"]
    assert client.post("/api/v1/auth/logout", headers={CSRF_HEADER: csrf}).status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401


def test_wrong_password_and_unknown_account_get_the_same_answer(app: FastAPI, root: TestClient) -> None:
    make_user(root, "ana@example.com", "viewer")
    client = TestClient(app)
    wrong = client.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": "nope"})
    unknown = client.post("/api/v1/auth/login", json={"email": "bob@example.com", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert SESSION_COOKIE not in wrong.cookies


def test_writes_with_a_session_need_the_csrf_token(app: FastAPI, root: TestClient) -> None:
    make_user(root, "ed@example.com", "editor")
    client = browser(app, "ed@example.com")
    token = client.headers.pop(CSRF_HEADER)
    body = {"name": "Poles", "text": 'profile.country in ("PL")'}
    missing = client.post("/api/v1/segments", json=body)
    assert missing.status_code == 403 and "CSRF" in missing.json()["detail"]
    wrong = client.post("/api/v1/segments", json=body, headers={CSRF_HEADER: "forged"})
    assert wrong.status_code == 403
    assert client.get("/api/v1/segments").json()["total"] == 0  # reads need no token; nothing was written
    assert client.post("/api/v1/segments", json=body, headers={CSRF_HEADER: token}).status_code == 201
    # A plain HTML form sends it as a field.
    assert client.post("/api/v1/auth/logout", data={"csrf_token": token}).status_code == 204


def test_sessions_expire_when_idle_and_slide_when_used(app: FastAPI, root: TestClient, clock: FrozenClock) -> None:
    make_user(root, "ana@example.com", "viewer")
    client = browser(app, "ana@example.com")
    clock.advance(timedelta(minutes=50))
    assert client.get("/api/v1/auth/me").status_code == 200  # used: the hour starts again
    clock.advance(timedelta(minutes=50))
    assert client.get("/api/v1/auth/me").status_code == 200
    clock.advance(timedelta(minutes=61))
    assert client.get("/api/v1/auth/me").status_code == 401


def test_failed_logins_are_limited_per_account_then_forgiven(
    app: FastAPI, root: TestClient, clock: FrozenClock
) -> None:
    make_user(root, "ana@example.com", "viewer")
    client = TestClient(app)
    for _ in range(3):
        assert client.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": "x"}).status_code == 401
    blocked = client.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": PASSWORD})
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) == 600
    clock.advance(timedelta(minutes=4))
    assert int(client.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": PASSWORD})
               .headers["Retry-After"]) == 360  # fmt: skip
    clock.advance(timedelta(minutes=6, seconds=1))
    assert client.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": PASSWORD}).status_code == 200


def test_failed_logins_are_limited_per_address(app: FastAPI, root: TestClient) -> None:
    make_user(root, "ana@example.com", "viewer")
    client = TestClient(app)
    for n in range(5):  # five different accounts from one address
        assert client.post("/api/v1/auth/login", json={"email": f"u{n}@x.io", "password": "x"}).status_code == 401
    blocked = client.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": PASSWORD})
    assert blocked.status_code == 429 and "address" in blocked.json()["detail"]


def test_a_disabled_user_or_a_new_password_ends_open_sessions(app: FastAPI, root: TestClient) -> None:
    ana = make_user(root, "ana@example.com", "viewer")
    client = browser(app, "ana@example.com")
    assert root.patch(f"/api/v1/users/{ana['id']}", json={"password": "another long one"}).status_code == 200
    assert client.get("/api/v1/auth/me").status_code == 401
    assert (
        TestClient(app).post("/api/v1/auth/login", json={"email": ana["email"], "password": PASSWORD}).status_code
        == 401
    )
    client = browser(app, "ana@example.com", "another long one")
    assert root.patch(f"/api/v1/users/{ana['id']}", json={"is_active": False}).status_code == 200
    assert client.get("/api/v1/auth/me").status_code == 401


# --- users and roles ------------------------------------------------------------------------------------------


def test_users_are_validated_and_unique(app: FastAPI, root: TestClient) -> None:
    make_user(root, "ana@example.com", "viewer")
    again = root.post("/api/v1/users", json={"email": "ANA@example.com", "password": PASSWORD})
    assert again.status_code == 409
    short = root.post("/api/v1/users", json={"email": "bob@example.com", "password": "short"})
    assert short.status_code == 422 and short.json()["errors"][0]["pointer"] == "/password"
    bad_team = root.post("/api/v1/users", json={"email": "bob@example.com", "password": PASSWORD, "teams": ["nope"]})
    assert bad_team.status_code == 422 and bad_team.json()["errors"][0]["pointer"] == "/teams/0"
    assert [u["email"] for u in root.get("/api/v1/users").json()] == ["ana@example.com"]


def test_an_admin_cannot_lock_themselves_out(app: FastAPI, root: TestClient) -> None:
    boss = make_user(root, "boss@example.com", "admin")
    client = browser(app, "boss@example.com")
    assert client.patch(f"/api/v1/users/{boss['id']}", json={"role": "viewer"}).status_code == 409
    assert client.delete(f"/api/v1/users/{boss['id']}").status_code == 409
    assert client.patch(f"/api/v1/users/{boss['id']}", json={"name": "Boss"}).json()["name"] == "Boss"


def test_roles_grant_read_write_and_admin(app: FastAPI, root: TestClient) -> None:
    for role in ("viewer", "editor", "admin"):
        make_user(root, f"{role}@example.com", role)
    viewer, editor, admin = (browser(app, f"{r}@example.com") for r in ("viewer", "editor", "admin"))
    body = {"name": "Poles", "text": 'profile.country in ("PL")'}
    assert viewer.post("/api/v1/segments", json=body).status_code == 403
    assert viewer.post("/api/v1/segments/preview", json={"text": body["text"]}).status_code == 200
    segment = editor.post("/api/v1/segments", json=body).json()
    assert editor.post(f"/api/v1/segments/{segment['id']}/deactivate").status_code == 200
    assert editor.delete(f"/api/v1/segments/{segment['id']}").status_code == 204  # deleting needs create rights
    assert editor.put("/api/v1/attribute-schema", json={"open": False}).status_code == 403
    assert admin.put("/api/v1/attribute-schema", json={"open": False}).status_code == 200
    assert editor.get("/api/v1/audit").status_code == 403


# --- API tokens -----------------------------------------------------------------------------------------------


def test_tokens_are_shown_once_stored_hashed_and_revocable(
    app: FastAPI, root: TestClient, store: sa.Engine, clock: FrozenClock
) -> None:
    created = root.post("/api/v1/tokens", json={"name": "etl", "role": "editor"}).json()
    secret = created["token"]
    assert secret.startswith("coh_") and created["prefix"] == secret[:10]
    listed = root.get("/api/v1/tokens").json()
    assert listed[0]["id"] == created["id"] and "token" not in listed[0] and listed[0]["last_used_at"] is None
    with store.connect() as connection:
        stored = connection.execute(sa.text("SELECT token_hash FROM api_tokens")).scalar_one()
    assert secret not in stored and len(stored) == 64
    machine = TestClient(app, headers={"Authorization": f"Bearer {secret}"})
    assert machine.put("/api/v1/customers/c1", json={"country": "PL"}).status_code == 201
    assert root.get("/api/v1/tokens").json()[0]["last_used_at"] is not None
    revoked = root.delete(f"/api/v1/tokens/{created['id']}").json()
    assert revoked["revoked_at"] is not None
    assert machine.get("/api/v1/customers/c1").status_code == 401
    audit = root.get("/api/v1/audit", params={"object_type": "token"}).json()["items"]
    assert [e["action"] for e in audit] == ["token.revoke", "token.create"]


def test_tokens_expire(app: FastAPI, root: TestClient, clock: FrozenClock) -> None:
    past = root.post("/api/v1/tokens", json={"name": "old", "expires_at": "2020-01-01T00:00:00Z"})
    assert past.status_code == 422
    expires = (clock.now() + timedelta(days=1)).isoformat()
    secret = root.post("/api/v1/tokens", json={"name": "day", "expires_at": expires}).json()["token"]
    machine = TestClient(app, headers={"Authorization": f"Bearer {secret}"})
    assert machine.get("/api/v1/segments").status_code == 200
    clock.advance(timedelta(days=1))
    assert machine.get("/api/v1/segments").status_code == 401
    assert TestClient(app, headers={"Authorization": "Bearer coh_made_up"}).get("/api/v1/segments").status_code == 401
    assert TestClient(app, headers={"Authorization": "Basic abc"}).get("/api/v1/segments").status_code == 401


# --- teams and visibility -----------------------------------------------------------------------------------------


def test_a_segment_of_another_team_does_not_exist_for_its_outsiders(app: FastAPI, root: TestClient) -> None:
    make_teams(root, "alpha", "beta")
    make_user(root, "in@example.com", "editor", ["alpha"])
    make_user(root, "out@example.com", "editor", ["beta"])
    make_user(root, "boss@example.com", "admin")
    assert root.put("/api/v1/customers/c1", json={"country": "PL"}).status_code == 201
    secret = root.post(
        "/api/v1/segments",
        json={"name": "Alpha Poles", "text": 'profile.country in ("PL")', "team": "alpha", "customer_groups": ["vip"]},
    ).json()
    open_ = root.post("/api/v1/segments", json={"name": "Everyone's", "text": 'profile.country in ("PL")'}).json()
    run_jobs(root)
    insider, outsider, boss = (browser(app, e) for e in ("in@example.com", "out@example.com", "boss@example.com"))

    def names(client: TestClient) -> list[str]:
        return [s["name"] for s in client.get("/api/v1/segments").json()["items"]]

    assert names(insider) == names(boss) == ["Alpha Poles", "Everyone's"]
    assert names(outsider) == ["Everyone's"]
    for path in ("", "/members", "/versions", "/history", "/usage", "/size", "/explain/c1"):
        assert outsider.get(f"/api/v1/segments/{secret['id']}{path}").status_code == 404, path
        assert insider.get(f"/api/v1/segments/{secret['id']}{path}").status_code == 200, path
    # Referring to it in a rule: the same 404 as for a segment that never existed.
    hidden = outsider.post("/api/v1/segments/preview", json={"rule": {"in_segment": secret["id"]}})
    never = outsider.post("/api/v1/segments/preview", json={"rule": {"in_segment": "seg_never"}})
    assert hidden.status_code == never.status_code == 404
    assert hidden.json()["errors"][0]["pointer"] == never.json()["errors"][0]["pointer"] == "/rule"
    assert insider.post("/api/v1/segments/preview", json={"rule": {"in_segment": secret["id"]}}).status_code == 200
    refer = {"name": "Ref", "rule": {"in_segment": secret["id"]}}
    assert outsider.post("/api/v1/segments", json=refer).status_code == 404
    # A customer's segments and the origins of their groups.
    assert [s["id"] for s in outsider.get("/api/v1/customers/c1/segments").json()] == [open_["id"]]
    assert {s["id"] for s in insider.get("/api/v1/customers/c1/segments").json()} == {open_["id"], secret["id"]}
    assert outsider.get("/api/v1/customers/c1/groups").json() == [
        {"group": "vip", "origins": ["another team's segment"]}
    ]
    assert insider.get("/api/v1/customers/c1/groups").json() == [{"group": "vip", "origins": [secret["id"]]}]
    written = outsider.put("/api/v1/customers/c1", json={"first_name": "Ola"}).json()
    assert written["groups"] == [{"group": "vip", "origins": ["another team's segment"]}]
    assert {h["segment_id"] for h in outsider.get("/api/v1/customers/c1/segment-history").json()} == {open_["id"]}
    # An editor may put a segment only in a team of their own.
    foreign = outsider.post(
        "/api/v1/segments", json={"name": "X", "text": 'profile.country in ("DE")', "team": "alpha"}
    )
    assert foreign.status_code == 422 and foreign.json()["errors"][0]["pointer"] == "/team"
    assert [t["id"] for t in outsider.get("/api/v1/teams").json()] == ["beta"]
    assert outsider.get("/api/v1/teams/alpha").status_code == 404


def test_a_team_scoped_token_sees_its_team_only(app: FastAPI, root: TestClient) -> None:
    make_teams(root, "alpha", "beta")
    for team in ("alpha", "beta"):
        body = {"name": f"{team} segment", "text": 'profile.country in ("PL")', "team": team}
        assert root.post("/api/v1/segments", json=body).status_code == 201
    scoped_admin = root.post("/api/v1/tokens", json={"name": "x", "role": "admin", "team": "beta"})
    assert scoped_admin.status_code == 422 and scoped_admin.json()["errors"][0]["pointer"] == "/team"
    secret = root.post("/api/v1/tokens", json={"name": "beta etl", "role": "viewer", "team": "beta"}).json()["token"]
    machine = TestClient(app, headers={"Authorization": f"Bearer {secret}"})
    assert [s["name"] for s in machine.get("/api/v1/segments").json()["items"]] == ["beta segment"]


def test_a_team_in_use_cannot_be_deleted(app: FastAPI, root: TestClient) -> None:
    make_teams(root, "alpha")
    make_user(root, "ana@example.com", "viewer", ["alpha"])
    segment = root.post(
        "/api/v1/segments", json={"name": "A", "text": 'profile.country in ("PL")', "team": "alpha"}
    ).json()
    refused = root.delete("/api/v1/teams/alpha")
    assert refused.status_code == 409 and segment["id"] in refused.json()["detail"]
    assert root.patch(f"/api/v1/segments/{segment['id']}", json={"team": None}).status_code == 200
    team = root.patch("/api/v1/teams/alpha", json={"members": []}).json()
    assert team["members"] == []
    assert root.delete("/api/v1/teams/alpha").status_code == 204


# --- audit ----------------------------------------------------------------------------------------------------


def test_changes_are_audited_with_who_when_before_and_after(app: FastAPI, root: TestClient, clock: FrozenClock) -> None:
    make_user(root, "ed@example.com", "editor")
    editor = browser(app, "ed@example.com")
    segment = editor.post("/api/v1/segments", json={"name": "Poles", "text": 'profile.country in ("PL")'}).json()
    clock.advance(timedelta(minutes=30))
    renamed = editor.patch(f"/api/v1/segments/{segment['id']}", json={"name": "Polish customers"})
    assert renamed.status_code == 200, renamed.text
    entries = root.get("/api/v1/audit", params={"object_id": segment["id"]}).json()
    assert [e["action"] for e in entries["items"]] == ["segment.update", "segment.create"]
    update = entries["items"][0]
    assert update["actor"] == "ed@example.com"
    assert update["before"]["name"] == "Poles" and update["after"]["name"] == "Polish customers"
    by_actor = root.get("/api/v1/audit", params={"actor": "ed@example.com"}).json()
    assert by_actor["total"] == 2
    since = (clock.now() - timedelta(minutes=1)).isoformat()
    assert [e["action"] for e in root.get("/api/v1/audit", params={"from": since}).json()["items"]] == [
        "segment.update"
    ]
    users = root.get("/api/v1/audit", params={"object_type": "user"}).json()["items"]
    assert users[0]["action"] == "user.create" and "password" not in str(users[0]["after"])


def test_a_revoked_token_stops_in_other_processes_within_the_cache_period(
    app: FastAPI, root: TestClient, store: sa.Engine, clock: FrozenClock
) -> None:
    secret = root.post("/api/v1/tokens", json={"name": "etl", "role": "viewer"}).json()["token"]
    other_process = create_app(app.state.settings, clock=clock, engine=store)  # its own token cache
    machine = TestClient(other_process, headers={"Authorization": f"Bearer {secret}"})
    assert machine.get("/api/v1/segments").status_code == 200
    token_id = root.get("/api/v1/tokens").json()[0]["id"]
    root.delete(f"/api/v1/tokens/{token_id}")
    assert TestClient(app, headers={"Authorization": f"Bearer {secret}"}).get("/api/v1/segments").status_code == 401
    assert machine.get("/api/v1/segments").status_code == 200  # still cached over there (5 s by default)
    clock.advance(timedelta(seconds=6))
    assert machine.get("/api/v1/segments").status_code == 401
