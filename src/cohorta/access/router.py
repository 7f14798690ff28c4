"""HTTP routes of logins, sessions, users, teams and API tokens. Thin: parse, call the service, commit."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response, status

from cohorta.access import service
from cohorta.access.models import ROLE_PERMISSIONS
from cohorta.access.schemas import (
    LoginIn,
    SessionOut,
    TeamIn,
    TeamOut,
    TeamPatch,
    TokenCreated,
    TokenIn,
    TokenOut,
    UserIn,
    UserOut,
    UserPatch,
)
from cohorta.campaigns.models import Campaign
from cohorta.deps import SESSION_COOKIE, AdminDep, ClockDep, ReaderDep, RowId, SessionDep, SettingsDep
from cohorta.errors import Unauthorized
from cohorta.segments.models import Segment

public_router = APIRouter(tags=["access"])  # login answers without authentication
router = APIRouter(tags=["access"])


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@public_router.post("/auth/login", response_model=SessionOut)
def login(
    body: LoginIn, request: Request, response: Response, session: SessionDep, settings: SettingsDep, clock: ClockDep
) -> SessionOut:
    """Open a browser session: sets an HttpOnly, SameSite=Lax cookie and returns the CSRF token that writes must send
    back as ``X-CSRF-Token``. Failed attempts are limited per account and per client address (429)."""
    try:
        logged_in = service.login(session, clock.now(), settings, body.email, body.password, _client_address(request))
    except Unauthorized:
        session.commit()  # the failure counts towards the rate limit
        raise
    session.commit()
    # No Max-Age: a browser session cookie. Its life is decided on the server (idle expiry, sliding with use),
    # which a fixed cookie age could not follow.
    response.set_cookie(
        SESSION_COOKIE,
        logged_in.cookie,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )
    return SessionOut(
        user=service.user_out(session, logged_in.user), csrf_token=logged_in.csrf_token, expires_at=logged_in.expires_at
    )


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, session: SessionDep, principal: ReaderDep) -> Response:
    """End the browser session (a bearer token stays valid: revoke it instead)."""
    service.logout(session, request.cookies.get(SESSION_COOKIE))
    session.commit()
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/auth/me")
def me(session: SessionDep, principal: ReaderDep) -> dict[str, object]:
    """Who the caller is: role, permissions and the teams whose segments and campaigns they see."""
    user = service.user_out(session, service.get_user(session, principal.user_id)) if principal.user_id else None
    return {
        "name": principal.name,
        "role": principal.role.value,
        "permissions": sorted(p.value for p in ROLE_PERMISSIONS[principal.role]),
        "teams": None if principal.teams is None else sorted(principal.teams),
        "user": user.model_dump(mode="json") if user else None,
        "token_id": principal.token_id,
    }


# --- users (admin) --------------------------------------------------------------------------------------------


@router.get("/users", response_model=list[UserOut])
def list_users(session: SessionDep, principal: AdminDep) -> list[UserOut]:
    return service.list_users(session)


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(body: UserIn, session: SessionDep, clock: ClockDep, principal: AdminDep) -> UserOut:
    out = service.create_user(session, clock.now(), principal, body)
    session.commit()
    return out


@router.get("/users/{user_id}", response_model=UserOut)
def get_user(user_id: RowId, session: SessionDep, principal: AdminDep) -> UserOut:
    return service.user_out(session, service.get_user(session, user_id))


@router.patch("/users/{user_id}", response_model=UserOut)
def update_user(user_id: RowId, body: UserPatch, session: SessionDep, clock: ClockDep, principal: AdminDep) -> UserOut:
    """Change email, name, password, role, active flag or teams. A new password or disabling signs the user out."""
    out = service.update_user(session, clock.now(), principal, user_id, body)
    session.commit()
    return out


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_user(user_id: RowId, session: SessionDep, clock: ClockDep, principal: AdminDep) -> Response:
    service.delete_user(session, clock.now(), principal, user_id)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- teams ----------------------------------------------------------------------------------------------------


@router.get("/teams", response_model=list[TeamOut])
def list_teams(session: SessionDep, principal: ReaderDep) -> list[TeamOut]:
    """The teams the caller belongs to (all of them for an admin)."""
    return service.list_teams(session, principal)


@router.post("/teams", response_model=TeamOut, status_code=status.HTTP_201_CREATED)
def create_team(body: TeamIn, session: SessionDep, clock: ClockDep, principal: AdminDep) -> TeamOut:
    out = service.create_team(session, clock.now(), principal, body)
    session.commit()
    return out


@router.get("/teams/{team_id}", response_model=TeamOut)
def get_team(team_id: str, session: SessionDep, principal: ReaderDep) -> TeamOut:
    return service.team_out(session, service.get_team(session, principal, team_id))


@router.patch("/teams/{team_id}", response_model=TeamOut)
def update_team(team_id: str, body: TeamPatch, session: SessionDep, clock: ClockDep, principal: AdminDep) -> TeamOut:
    """Rename, describe, or replace the members (by email)."""
    out = service.update_team(session, clock.now(), principal, team_id, body)
    session.commit()
    return out


@router.delete("/teams/{team_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_team(team_id: str, session: SessionDep, clock: ClockDep, principal: AdminDep) -> Response:
    """Refused while segments or campaigns belong to the team."""
    owned = [
        f"segment {sid}" for sid in session.scalars(sa.select(Segment.id).where(Segment.team == team_id).limit(20))
    ] + [f"campaign {cid}" for cid in session.scalars(sa.select(Campaign.id).where(Campaign.team == team_id).limit(20))]
    service.delete_team(session, clock.now(), principal, team_id, owned)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- API tokens (admin) ------------------------------------------------------------------------------------------


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(session: SessionDep, principal: AdminDep) -> list[TokenOut]:
    return service.list_tokens(session)


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(body: TokenIn, session: SessionDep, clock: ClockDep, principal: AdminDep) -> TokenCreated:
    """Create a machine token. The secret is in this answer only; Cohorta keeps its SHA-256."""
    out = service.create_token(session, clock.now(), principal, body)
    session.commit()
    return out


@router.delete("/tokens/{token_id}", response_model=TokenOut)
def revoke_token(
    token_id: str, request: Request, session: SessionDep, clock: ClockDep, principal: AdminDep
) -> TokenOut:
    """Revoke: the token stops working at once in this process, and within COHORTA_TOKEN_CACHE_SECONDS in others;
    the record stays for the audit trail."""
    out = service.revoke_token(session, clock.now(), principal, token_id)
    session.commit()
    request.app.state.token_cache.clear()
    return out
