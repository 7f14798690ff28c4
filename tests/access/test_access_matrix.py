"""The access matrix: every route of the app x every role x in-team and out-of-team, against the expected status.

The routes come from the app's own route table, and the table below must name each of them exactly: a new route
fails ``test_every_route_has_an_expected_access`` until someone decides who may call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from cohorta.access.models import User, UserTeam, WebSession
from cohorta.access.service import digest, hash_password
from cohorta.app import create_app
from cohorta.clock import FrozenClock
from cohorta.config import Settings
from cohorta.deps import CSRF_HEADER, SESSION_COOKIE
from tests.conftest import ADMIN_TOKEN

PUBLIC, READ, WRITE, ADMIN = "public", "read", "write", "admin"
ROLES = ("viewer", "editor", "admin")
PERMISSIONS = {"viewer": {READ}, "editor": {READ, WRITE}, "admin": {READ, WRITE, ADMIN}}

# (method, path) -> (permission needed, the team-owned object in the path or None)
EXPECTED: dict[tuple[str, str], tuple[str, str | None]] = {
    ("GET", "/api/v1/openapi.json"): (PUBLIC, None),
    ("GET", "/docs"): (PUBLIC, None),
    ("GET", "/docs/oauth2-redirect"): (PUBLIC, None),
    ("GET", "/redoc"): (PUBLIC, None),
    ("GET", "/"): (PUBLIC, None),
    ("GET", "/api/v1/health"): (PUBLIC, None),
    ("POST", "/api/v1/auth/login"): (PUBLIC, None),
    ("POST", "/api/v1/auth/logout"): (READ, None),
    ("GET", "/api/v1/auth/me"): (READ, None),
    ("GET", "/api/v1/users"): (ADMIN, None),
    ("POST", "/api/v1/users"): (ADMIN, None),
    ("GET", "/api/v1/users/{user_id}"): (ADMIN, None),
    ("PATCH", "/api/v1/users/{user_id}"): (ADMIN, None),
    ("DELETE", "/api/v1/users/{user_id}"): (ADMIN, None),
    ("GET", "/api/v1/teams"): (READ, None),
    ("POST", "/api/v1/teams"): (ADMIN, None),
    ("GET", "/api/v1/teams/{team_id}"): (READ, "team"),
    ("PATCH", "/api/v1/teams/{team_id}"): (ADMIN, None),  # admins see every team
    ("DELETE", "/api/v1/teams/{team_id}"): (ADMIN, None),
    ("GET", "/api/v1/tokens"): (ADMIN, None),
    ("POST", "/api/v1/tokens"): (ADMIN, None),
    ("DELETE", "/api/v1/tokens/{token_id}"): (ADMIN, None),
    ("PUT", "/api/v1/customers/{source_id:path}"): (WRITE, None),
    ("POST", "/api/v1/customers/bulk"): (WRITE, None),
    ("GET", "/api/v1/customers/{source_id:path}"): (READ, None),
    ("GET", "/api/v1/customers/{source_id:path}/groups"): (READ, None),
    ("GET", "/api/v1/customers/{source_id:path}/orders"): (READ, None),
    ("GET", "/api/v1/customers/{source_id:path}/events"): (READ, None),
    ("GET", "/api/v1/customers/{source_id:path}/ledger"): (READ, None),
    ("PUT", "/api/v1/customers/{source_id:path}/groups"): (WRITE, None),
    ("POST", "/api/v1/customers/{source_id:path}/points"): (WRITE, None),
    ("DELETE", "/api/v1/customers/{source_id:path}"): (ADMIN, None),
    ("GET", "/api/v1/attributes"): (READ, None),
    ("PUT", "/api/v1/attribute-schema"): (ADMIN, None),
    ("PUT", "/api/v1/attributes/{name}"): (ADMIN, None),
    ("GET", "/api/v1/event-definitions"): (READ, None),
    ("PUT", "/api/v1/event-definitions/{name}"): (ADMIN, None),
    ("POST", "/api/v1/orders"): (WRITE, None),
    ("POST", "/api/v1/orders/bulk"): (WRITE, None),
    ("POST", "/api/v1/events"): (WRITE, None),
    ("POST", "/api/v1/events/bulk"): (WRITE, None),
    ("POST", "/api/v1/loyalty/transactions"): (WRITE, None),
    ("POST", "/api/v1/loyalty/transactions/bulk"): (WRITE, None),
    ("GET", "/api/v1/rules/schema"): (READ, None),
    ("GET", "/api/v1/fields"): (READ, None),
    ("POST", "/api/v1/rules/parse"): (READ, None),
    ("POST", "/api/v1/rules/format"): (READ, None),
    ("POST", "/api/v1/segments/preview"): (READ, None),
    ("POST", "/api/v1/segments/explain"): (READ, None),
    ("GET", "/api/v1/segments"): (READ, None),
    ("POST", "/api/v1/segments"): (WRITE, None),
    ("GET", "/api/v1/segments/{segment_id}"): (READ, "segment"),
    ("GET", "/api/v1/segments/{segment_id}/usage"): (READ, "segment"),
    ("PATCH", "/api/v1/segments/{segment_id}"): (WRITE, "segment"),
    ("DELETE", "/api/v1/segments/{segment_id}"): (WRITE, "segment"),
    ("POST", "/api/v1/segments/{segment_id}/activate"): (WRITE, "segment"),
    ("POST", "/api/v1/segments/{segment_id}/deactivate"): (WRITE, "segment"),
    ("POST", "/api/v1/segments/{segment_id}/archive"): (WRITE, "segment"),
    ("POST", "/api/v1/segments/{segment_id}/refresh"): (WRITE, "segment"),
    ("GET", "/api/v1/segments/{segment_id}/versions"): (READ, "segment"),
    ("POST", "/api/v1/segments/{segment_id}/versions/{version}/restore"): (WRITE, "segment"),
    ("GET", "/api/v1/segments/{segment_id}/members"): (READ, "segment"),
    ("POST", "/api/v1/segments/{segment_id}/members/add"): (WRITE, "segment"),
    ("POST", "/api/v1/segments/{segment_id}/members/remove"): (WRITE, "segment"),
    ("PUT", "/api/v1/segments/{segment_id}/members"): (WRITE, "segment"),
    ("GET", "/api/v1/segments/{segment_id}/history"): (READ, "segment"),
    ("GET", "/api/v1/segments/{segment_id}/size"): (READ, "segment"),
    ("GET", "/api/v1/segments/{segment_id}/explain/{source_id:path}"): (READ, "segment"),
    ("GET", "/api/v1/segments/{segment_id}/export"): (READ, "segment"),
    ("GET", "/api/v1/segments/{segment_id}/export/{activity}"): (READ, "segment"),
    ("POST", "/api/v1/segments/{segment_id}/exports"): (READ, "segment"),
    ("GET", "/api/v1/segments/{segment_id}/analytics"): (READ, "segment"),
    ("POST", "/api/v1/segments/overlap"): (READ, None),
    ("POST", "/api/v1/segments/combine"): (WRITE, None),
    ("GET", "/api/v1/exports"): (READ, None),
    ("GET", "/api/v1/exports/{export_id}"): (READ, None),
    ("GET", "/api/v1/exports/{export_id}/download"): (READ, None),
    ("GET", "/api/v1/customers/{source_id:path}/segments"): (READ, None),
    ("GET", "/api/v1/customers/{source_id:path}/segment-history"): (READ, None),
    ("GET", "/api/v1/campaigns"): (READ, None),
    ("POST", "/api/v1/campaigns"): (WRITE, None),
    ("GET", "/api/v1/campaigns/{campaign_id}"): (READ, "campaign"),
    ("PATCH", "/api/v1/campaigns/{campaign_id}"): (WRITE, "campaign"),
    ("DELETE", "/api/v1/campaigns/{campaign_id}"): (WRITE, "campaign"),
    ("POST", "/api/v1/campaigns/{campaign_id}/activate"): (WRITE, "campaign"),
    ("POST", "/api/v1/campaigns/{campaign_id}/pause"): (WRITE, "campaign"),
    ("POST", "/api/v1/campaigns/{campaign_id}/end"): (WRITE, "campaign"),
    ("GET", "/api/v1/campaigns/{campaign_id}/eligibility/{source_id:path}"): (READ, "campaign"),
    ("POST", "/api/v1/eligibility/check"): (READ, None),
    ("POST", "/api/v1/campaigns/{campaign_id}/deliveries"): (WRITE, "campaign"),
    ("GET", "/api/v1/campaigns/{campaign_id}/deliveries"): (READ, "campaign"),
    ("GET", "/api/v1/audit"): (ADMIN, None),
    ("GET", "/api/v1/webhooks"): (ADMIN, None),
    ("POST", "/api/v1/webhooks"): (ADMIN, None),
    ("GET", "/api/v1/webhooks/{subscription_id}"): (ADMIN, None),
    ("PATCH", "/api/v1/webhooks/{subscription_id}"): (ADMIN, None),
    ("DELETE", "/api/v1/webhooks/{subscription_id}"): (ADMIN, None),
    ("GET", "/api/v1/webhooks/{subscription_id}/deliveries"): (ADMIN, None),
    # UI administration pages (src/cohorta/ui/admin.py)
    ("GET", "/ui/campaigns"): (READ, None),
    ("GET", "/ui/campaigns/new"): (WRITE, None),
    ("POST", "/ui/campaigns"): (WRITE, None),
    ("GET", "/ui/campaigns/{campaign_id}"): (READ, "campaign"),
    ("GET", "/ui/campaigns/{campaign_id}/edit"): (WRITE, "campaign"),
    ("POST", "/ui/campaigns/{campaign_id}"): (WRITE, "campaign"),
    ("POST", "/ui/campaigns/{campaign_id}/status"): (WRITE, "campaign"),
    ("POST", "/ui/campaigns/{campaign_id}/delete"): (WRITE, "campaign"),
    ("POST", "/ui/campaigns/{campaign_id}/deliveries"): (WRITE, "campaign"),
    ("GET", "/ui/admin"): (ADMIN, None),
    ("POST", "/ui/admin/users"): (ADMIN, None),
    ("POST", "/ui/admin/users/{user_id}"): (ADMIN, None),
    ("POST", "/ui/admin/users/{user_id}/password"): (ADMIN, None),
    ("POST", "/ui/admin/users/{user_id}/delete"): (ADMIN, None),
    ("POST", "/ui/admin/teams"): (ADMIN, None),
    ("POST", "/ui/admin/teams/{team_id}"): (ADMIN, None),
    ("POST", "/ui/admin/teams/{team_id}/delete"): (ADMIN, None),
    ("POST", "/ui/admin/tokens"): (ADMIN, None),
    ("POST", "/ui/admin/tokens/{token_id}/revoke"): (ADMIN, None),
    ("GET", "/ui/admin/audit"): (ADMIN, None),
    ("GET", "/ui/webhooks"): (ADMIN, None),
    ("POST", "/ui/webhooks"): (ADMIN, None),
    ("GET", "/ui/webhooks/{subscription_id}"): (ADMIN, None),
    ("POST", "/ui/webhooks/{subscription_id}/delete"): (ADMIN, None),
    ("GET", "/ui/settings"): (READ, None),
    ("POST", "/ui/settings/attributes"): (ADMIN, None),
    ("POST", "/ui/settings/events"): (ADMIN, None),
    ("POST", "/api/v1/segments/upload"): (WRITE, None),
    # The web UI: the same rights as the API; without a session a page sends the browser to the login form.
    ("GET", "/ui"): (PUBLIC, None),
    ("GET", "/ui/"): (PUBLIC, None),
    ("GET", "/ui/login"): (PUBLIC, None),
    ("POST", "/ui/login"): (PUBLIC, None),
    ("POST", "/ui/logout"): (READ, None),
    ("GET", "/ui/segments"): (READ, None),
    ("GET", "/ui/segments/new"): (WRITE, None),
    ("POST", "/ui/segments/upload"): (WRITE, None),
    ("GET", "/ui/segments/{segment_id}"): (READ, "segment"),
    ("GET", "/ui/segments/{segment_id}/edit"): (WRITE, "segment"),
    ("GET", "/ui/segments/{segment_id}/members"): (READ, "segment"),
    ("GET", "/ui/segments/{segment_id}/analytics"): (READ, "segment"),
    ("POST", "/ui/segments/{segment_id}/activate"): (WRITE, "segment"),
    ("POST", "/ui/segments/{segment_id}/deactivate"): (WRITE, "segment"),
    ("POST", "/ui/segments/{segment_id}/archive"): (WRITE, "segment"),
    ("POST", "/ui/segments/{segment_id}/delete"): (WRITE, "segment"),
    ("POST", "/ui/segments/{segment_id}/refresh"): (WRITE, "segment"),
    ("POST", "/ui/segments/{segment_id}/versions/{version}/restore"): (WRITE, "segment"),
    ("GET", "/ui/sources"): (READ, None),
    ("POST", "/ui/sources"): (ADMIN, None),
    ("GET", "/ui/sources/{source}"): (READ, None),
    ("POST", "/ui/sources/{source}"): (ADMIN, None),
    ("POST", "/ui/sources/{source}/delete"): (ADMIN, None),
    ("POST", "/ui/sources/{source}/test"): (WRITE, None),
    ("GET", "/ui/sources/{source}/remote"): (WRITE, None),
    ("POST", "/ui/sources/{source}/import"): (WRITE, None),
    ("POST", "/ui/segments/{segment_id}/sync"): (WRITE, "segment"),
    ("GET", "/ui/customers"): (READ, None),
    ("GET", "/ui/customers/{source_id:path}"): (READ, None),
    ("GET", "/ui/customers/{source_id:path}/why"): (READ, None),
    ("POST", "/ui/customers/{source_id:path}/points"): (WRITE, None),
    ("GET", "/api/v1/clv/model"): (READ, None),
    ("POST", "/api/v1/clv/fit"): (ADMIN, None),
    ("POST", "/api/v1/clv/score"): (ADMIN, None),
    ("GET", "/api/v1/sources"): (READ, None),
    ("POST", "/api/v1/sources"): (ADMIN, None),
    ("GET", "/api/v1/sources/{source}"): (READ, None),
    ("PATCH", "/api/v1/sources/{source}"): (ADMIN, None),
    ("DELETE", "/api/v1/sources/{source}"): (ADMIN, None),
    ("POST", "/api/v1/sources/{source}/test"): (WRITE, None),
    ("GET", "/api/v1/sources/{source}/remote-segments"): (WRITE, None),
    ("POST", "/api/v1/sources/{source}/import"): (WRITE, None),
    ("GET", "/api/v1/sources/{source}/segments"): (READ, None),
    ("POST", "/api/v1/segments/{segment_id}/sync"): (WRITE, "segment"),
    ("GET", "/api/v1/segments/{segment_id}/sync-reports"): (READ, "segment"),
}

PASSWORD_HASH = hash_password("matrix-password")  # once: argon2 is slow on purpose


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (method, context.path)
        for context in iter_route_contexts(app.routes)
        for method in (getattr(context, "methods", None) or ())
        if method != "HEAD"
    }


@dataclass
class World:
    app: FastAPI
    params: dict[str, str]
    callers: dict[tuple[str, str], TestClient]  # (role, "in" | "out") -> a logged-in browser


def build_world(store: sa.Engine, clock: FrozenClock) -> World:
    settings = Settings(
        database_url=store.url.render_as_string(hide_password=False), admin_token=ADMIN_TOKEN, scheduler=False
    )
    app = create_app(settings, clock=clock, engine=store)
    root = TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    for team in ("alpha", "beta"):
        assert root.post("/api/v1/teams", json={"id": team, "name": team.title()}).status_code == 201
    assert root.put("/api/v1/customers/c1", json={"country": "PL"}).status_code == 201
    segment = root.post(
        "/api/v1/segments", json={"name": "Alpha Poles", "text": 'profile.country in ("PL")', "team": "alpha"}
    ).json()
    campaign = root.post(
        "/api/v1/campaigns",
        json={
            "name": "Alpha promo", "kind": "promotion", "status": "active", "team": "alpha",
            "included_segments": [segment["id"]],
        },
    ).json()  # fmt: skip
    token = root.post("/api/v1/tokens", json={"name": "victim"}).json()
    callers: dict[tuple[str, str], TestClient] = {}
    with Session(store) as session:
        victim = User(email="victim@x.io", password_hash=PASSWORD_HASH, role="viewer", is_active=True,
                      created_at=clock.now())  # fmt: skip
        session.add(victim)
        for role in ROLES:
            for where, team in (("in", "alpha"), ("out", "beta")):
                user = User(email=f"{role}-{where}@x.io", password_hash=PASSWORD_HASH, role=role, is_active=True,
                            created_at=clock.now())  # fmt: skip
                session.add(user)
                session.flush()
                session.add(UserTeam(user_id=user.id, team_id=team))
                cookie, csrf = f"cookie-{role}-{where}", f"csrf-{role}-{where}"
                session.add(
                    WebSession(
                        id_hash=digest(cookie),
                        user_id=user.id,
                        csrf_token=csrf,
                        created_at=clock.now(),
                        expires_at=clock.now() + timedelta(hours=1),
                        last_seen_at=clock.now(),
                    )
                )
                callers[(role, where)] = TestClient(app, cookies={SESSION_COOKIE: cookie}, headers={CSRF_HEADER: csrf})
        session.flush()
        victim_id = victim.id
        session.commit()
    params = {
        "segment_id": segment["id"], "campaign_id": campaign["id"], "source_id": "c1", "user_id": str(victim_id),
        "team_id": "alpha", "token_id": token["id"], "version": "1", "name": "tier", "subscription_id": "whk_none",
        "activity": "orders", "export_id": "exp_none", "source": "src_none",
    }  # fmt: skip
    return World(app=app, params=params, callers=callers)


def call(client: TestClient, method: str, path: str, params: dict[str, str]) -> Any:
    url = path.replace(":path}", "}").format(**params)
    if method in ("GET", "DELETE"):
        return client.request(method, url)
    return client.request(method, url, json={})


def expected_denial(permission: str, scope: str | None, role: str, where: str) -> int | None:
    """The status a caller must get, or None when the caller is let through."""
    if permission == PUBLIC:
        return None
    if scope is not None and where == "out" and role != "admin":
        return 404  # a hidden object does not exist, whatever the role
    if permission not in PERMISSIONS[role]:
        return 403
    return None


def test_every_route_has_an_expected_access(store: sa.Engine, clock: FrozenClock) -> None:
    app = create_app(Settings(database_url="sqlite://", scheduler=False), clock=clock, engine=store)
    routes = app_routes(app)
    assert routes - EXPECTED.keys() == set(), "new routes: add them to EXPECTED with the permission they need"
    assert EXPECTED.keys() - routes == set(), "EXPECTED names routes that no longer exist"


@pytest.mark.parametrize("route", sorted(EXPECTED), ids=lambda r: f"{r[0]} {r[1]}")
def test_access(route: tuple[str, str], store: sa.Engine, clock: FrozenClock) -> None:
    method, path = route
    permission, scope = EXPECTED[route]
    world = build_world(store, clock)
    anonymous = call(TestClient(world.app, follow_redirects=False), method, path, world.params)
    if permission == PUBLIC:
        assert anonymous.status_code not in (401, 403), anonymous.text
    elif path.startswith("/ui"):  # a page sends the browser to log in, then back
        assert anonymous.status_code == 303, anonymous.text
        assert anonymous.headers["location"].startswith("/ui/login?next="), anonymous.headers
    else:
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["content-type"].startswith("application/problem+json")
    # Denied callers first (they change nothing), then the ones let through, admins last.
    order = sorted(world.callers, key=lambda c: (expected_denial(permission, scope, *c) is None, ROLES.index(c[0])))
    for role, where in order:
        response = call(world.callers[(role, where)], method, path, world.params)
        denial = expected_denial(permission, scope, role, where)
        label = f"{role} {where}-of-team: {response.status_code} {response.text[:300]}"
        assert response.status_code < 500, label
        if denial is not None:
            assert response.status_code == denial, label
        else:
            assert response.status_code not in (401, 403), label
            if scope is not None:
                assert response.status_code != 404, label
