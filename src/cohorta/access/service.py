"""Who is calling and what they may do: users, teams, API tokens, browser sessions, logins. No HTTP here."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from cohorta.access.models import (
    ROLE_PERMISSIONS,
    ApiToken,
    LoginFailure,
    Permission,
    Role,
    Team,
    User,
    UserTeam,
    WebSession,
)
from cohorta.access.schemas import (
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
from cohorta.audit import service as audit
from cohorta.config import Settings
from cohorta.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound, TooManyRequests, Unauthorized

TOKEN_PREFIX = "coh_"
# How stale "last used" and a session's expiry may get before a request writes them again (keeps reads read-only).
TOUCH_INTERVAL = timedelta(seconds=60)
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Principal:
    """The caller of a request. ``teams`` is None when the caller sees every team (an admin, an unscoped token)."""

    name: str  # what the audit trail and ``created_by`` record
    role: Role
    teams: frozenset[str] | None
    user_id: int | None = None
    token_id: str | None = None
    csrf_token: str | None = field(default=None, repr=False)  # set when authenticated by a session cookie

    def has(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def sees(self, team: str | None) -> bool:
        return team is None or self.teams is None or team in self.teams

    def team_filter(self) -> frozenset[str] | None:
        """Teams whose objects this caller sees, beside those with no team; None: all."""
        return self.teams


def visible_to(column: Any, principal: Principal) -> Any:
    """A WHERE clause keeping rows whose team ``column`` the principal sees (rows with no team: everyone)."""
    if principal.teams is None:
        return sa.true()
    return sa.or_(column.is_(None), column.in_(sorted(principal.teams)))


def system_principal(name: str = "system") -> Principal:
    """The scheduler and the CLI act with every right."""
    return Principal(name=name, role=Role.admin, teams=None)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _password_matches(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


# A hash to verify against when the account does not exist, so that timing does not reveal which emails exist.
_ABSENT_USER_HASH = _hasher.hash(secrets.token_hex(16))


# --- authentication -----------------------------------------------------------------------------------------


def authenticate(
    session: Session,
    now: datetime,
    settings: Settings,
    *,
    authorization: str | None,
    session_cookie: str | None,
    touches: list[sa.Update] | None = None,
    token_cache: TokenCache | None = None,
) -> Principal:
    """The caller from a bearer token (admin token or API token) or, failing that, a browser session cookie.

    Bookkeeping writes (a token's last use, a session's sliding expiry) are appended to ``touches`` for the caller to
    run apart, off the request's path; without it they run at once in a short transaction of their own.
    """
    pending: list[sa.Update] = [] if touches is None else touches
    if authorization:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        if settings.admin_token and secrets.compare_digest(token.encode(), settings.admin_token.encode()):
            return system_principal("admin-token")
        principal = _token_principal(session, now, token, pending, token_cache)
    elif session_cookie:
        principal = _session_principal(session, now, settings, session_cookie, pending)
    else:
        raise Unauthorized("not authenticated: send 'Authorization: Bearer <token>' or log in at /api/v1/auth/login")
    if touches is None:
        for statement in pending:
            write_apart(session.get_bind(), statement)
    return principal


# Built once: every request with an API token runs it, and a prepared statement skips SQLAlchemy's per-call build.
_TOKEN_BY_DIGEST = sa.select(
    ApiToken.id, ApiToken.name, ApiToken.role, ApiToken.team_id, ApiToken.expires_at, ApiToken.revoked_at,
    ApiToken.last_used_at,
).where(ApiToken.token_hash == sa.bindparam("digest"))  # fmt: skip


class TokenCache:
    """API tokens found recently, by digest, kept ``ttl_seconds``: a machine calling many times a second pays the
    lookup once per period. The price: a token revoked in another process keeps working there up to ``ttl_seconds``
    (the process that revokes it forgets it at once). Expiry is checked on every request. Unknown tokens are never
    kept."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._rows: dict[str, tuple[datetime, Any]] = {}
        self._used: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def get(self, key: str, now: datetime) -> Any | None:
        entry = self._rows.get(key)
        if entry is None or (now - entry[0]).total_seconds() > self.ttl:
            return None
        return entry[1]

    def put(self, key: str, row: Any, now: datetime) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._rows) >= self.MAX_ENTRIES:
                self._rows.clear()
                self._used.clear()
            self._rows[key] = (now, row)

    def last_used(self, key: str, stored: datetime | None) -> datetime | None:
        return self._used.get(key, stored)

    def used(self, key: str, at: datetime) -> None:
        self._used[key] = at

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._used.clear()


def _token_principal(
    session: Session, now: datetime, token: str, touches: list[sa.Update], cache: TokenCache | None
) -> Principal:
    key = digest(token)
    row = cache.get(key, now) if cache else None
    if row is None:
        row = session.execute(_TOKEN_BY_DIGEST, {"digest": key}).one_or_none()
        if row is not None and cache is not None:
            cache.put(key, row, now)
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise Unauthorized("invalid, revoked or expired token")
    last_used = cache.last_used(key, row.last_used_at) if cache else row.last_used_at
    if last_used is None or now - last_used >= TOUCH_INTERVAL:
        touches.append(sa.update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
        if cache is not None:
            cache.used(key, now)
    teams = frozenset({row.team_id}) if row.team_id else None
    return Principal(name=f"token:{row.name}", role=Role(row.role), teams=teams, token_id=row.id)


def _session_principal(
    session: Session, now: datetime, settings: Settings, cookie: str, touches: list[sa.Update]
) -> Principal:
    row = session.get(WebSession, digest(cookie))
    if row is None or row.expires_at <= now:
        raise Unauthorized("the session has ended: log in again")
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("the account is disabled")
    if now - row.last_seen_at >= TOUCH_INTERVAL:
        ttl = timedelta(seconds=settings.session_ttl_seconds)
        touches.append(
            sa.update(WebSession)
            .where(WebSession.id_hash == row.id_hash)
            .values(last_seen_at=now, expires_at=now + ttl),
        )
    return Principal(
        name=user.email,
        role=Role(user.role),
        teams=_user_teams(session, user),
        user_id=user.id,
        csrf_token=row.csrf_token,
    )


def write_apart(engine: Any, statement: sa.Update) -> None:
    """Bookkeeping (last used, session expiry) in its own short transaction, so a read request stays a read."""
    assert isinstance(engine, sa.Engine)
    with engine.begin() as connection:
        connection.execute(statement)


def _user_teams(session: Session, user: User) -> frozenset[str] | None:
    if user.role == Role.admin:
        return None
    return frozenset(session.scalars(sa.select(UserTeam.team_id).where(UserTeam.user_id == user.id)))


def require(principal: Principal, permission: Permission) -> Principal:
    if not principal.has(permission):
        raise Forbidden(f"the {principal.role} role lacks the {permission} permission")
    return principal


# --- logins and sessions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedIn:
    user: User
    cookie: str
    csrf_token: str
    expires_at: datetime


def login(session: Session, now: datetime, settings: Settings, email: str, password: str, address: str) -> LoggedIn:
    """Check the password and open a session. Failed attempts are recorded and rate-limited per account and address.

    The caller commits even when this raises Unauthorized, so that the failure is counted.
    """
    email = email.strip().lower()
    _check_rate_limit(session, now, settings, email, address)
    user = session.scalars(sa.select(User).where(User.email == email)).one_or_none()
    valid = _password_matches(user.password_hash if user else _ABSENT_USER_HASH, password)
    if user is None or not valid or not user.is_active:
        session.add(LoginFailure(email=email, address=address, at=now))
        raise Unauthorized("wrong email or password")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = now
    # A successful login forgives the account's earlier failures (the address's stay counted).
    session.execute(sa.delete(LoginFailure).where(LoginFailure.email == email))
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=settings.session_ttl_seconds)
    session.add(
        WebSession(
            id_hash=digest(cookie), user_id=user.id, csrf_token=csrf, created_at=now, expires_at=expires_at,
            last_seen_at=now,
        )
    )  # fmt: skip
    session.execute(sa.delete(WebSession).where(WebSession.expires_at <= now))
    return LoggedIn(user=user, cookie=cookie, csrf_token=csrf, expires_at=expires_at)


def _check_rate_limit(session: Session, now: datetime, settings: Settings, email: str, address: str) -> None:
    since = now - timedelta(seconds=settings.login_window_seconds)
    session.execute(sa.delete(LoginFailure).where(LoginFailure.at < since))
    for column, value, limit, what in (
        (LoginFailure.email, email, settings.login_max_failures_per_account, "this account"),
        (LoginFailure.address, address, settings.login_max_failures_per_address, "this address"),
    ):
        failures = session.scalars(
            sa.select(LoginFailure.at).where(column == value, LoginFailure.at >= since).order_by(LoginFailure.at)
        ).all()
        if len(failures) >= limit:
            oldest_counted = failures[len(failures) - limit]
            retry = max(
                1, int((oldest_counted + timedelta(seconds=settings.login_window_seconds) - now).total_seconds())
            )
            raise TooManyRequests(f"too many failed logins for {what}; try again in {retry} s", retry)


def logout(session: Session, cookie: str | None) -> None:
    if cookie:
        session.execute(sa.delete(WebSession).where(WebSession.id_hash == digest(cookie)))


# --- users ----------------------------------------------------------------------------------------------------


def _normalise_email(email: str) -> str:
    email = email.strip().lower()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
        raise InvalidInput([FieldError(("email",), "is not an email address")])
    return email


def user_out(session: Session, user: User) -> UserOut:
    teams = sorted(session.scalars(sa.select(UserTeam.team_id).where(UserTeam.user_id == user.id)))
    return UserOut(
        id=user.id, email=user.email, name=user.name, role=Role(user.role), teams=teams, is_active=user.is_active,
        created_at=user.created_at, last_login_at=user.last_login_at,
    )  # fmt: skip


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


def list_users(session: Session) -> list[UserOut]:
    return [user_out(session, user) for user in session.scalars(sa.select(User).order_by(User.email))]


def _check_teams(session: Session, teams: Sequence[str], loc: tuple[str | int, ...]) -> list[str]:
    known = set(session.scalars(sa.select(Team.id).where(Team.id.in_(list(teams)))))
    errors = [FieldError((*loc, i), f"unknown team {t!r}") for i, t in enumerate(teams) if t not in known]
    if errors:
        raise InvalidInput(errors)
    return sorted(set(teams))


def _set_user_teams(session: Session, user: User, teams: Sequence[str]) -> None:
    session.execute(sa.delete(UserTeam).where(UserTeam.user_id == user.id))
    session.add_all(UserTeam(user_id=user.id, team_id=team) for team in teams)


def create_user(session: Session, now: datetime, actor: Principal, body: UserIn) -> UserOut:
    email = _normalise_email(body.email)
    if session.scalars(sa.select(User.id).where(User.email == email)).first() is not None:
        raise Conflict(f"a user with email {email!r} already exists")
    teams = _check_teams(session, body.teams, ("teams",))
    user = User(
        email=email, name=body.name, password_hash=hash_password(body.password), role=body.role.value,
        is_active=True, created_at=now,
    )  # fmt: skip
    session.add(user)
    session.flush()
    _set_user_teams(session, user, teams)
    session.flush()
    out = user_out(session, user)
    audit.record(session, now, actor.name, "user.create", "user", user.id, after=out)
    return out


def update_user(session: Session, now: datetime, actor: Principal, user_id: int, body: UserPatch) -> UserOut:
    user = get_user(session, user_id)
    before = user_out(session, user)
    changes = body.model_dump(exclude_unset=True)
    if user.id == actor.user_id and (
        changes.get("role", Role.admin) != Role.admin or changes.get("is_active") is False
    ):
        raise Conflict("you cannot demote or disable your own account")
    if "email" in changes:
        email = _normalise_email(body.email or "")
        taken = session.scalars(sa.select(User.id).where(User.email == email, User.id != user.id)).first()
        if taken is not None:
            raise Conflict(f"a user with email {email!r} already exists")
        user.email = email
    if "name" in changes:
        user.name = body.name
    if body.role is not None:
        user.role = body.role.value
    if body.is_active is not None:
        user.is_active = body.is_active
    if body.password is not None:
        user.password_hash = hash_password(body.password)
    if body.password is not None or body.is_active is False:
        session.execute(sa.delete(WebSession).where(WebSession.user_id == user.id))  # sign out everywhere
    if body.teams is not None:
        _set_user_teams(session, user, _check_teams(session, body.teams, ("teams",)))
    session.flush()
    after = user_out(session, user)
    audit.record(session, now, actor.name, "user.update", "user", user.id, before=before, after=after)
    return after


def delete_user(session: Session, now: datetime, actor: Principal, user_id: int) -> None:
    user = get_user(session, user_id)
    if user.id == actor.user_id:
        raise Conflict("you cannot delete your own account")
    before = user_out(session, user)
    session.execute(sa.delete(UserTeam).where(UserTeam.user_id == user.id))
    session.execute(sa.delete(WebSession).where(WebSession.user_id == user.id))
    session.delete(user)
    audit.record(session, now, actor.name, "user.delete", "user", user_id, before=before)


def ensure_user(
    session: Session,
    now: datetime,
    email: str,
    password: str,
    role: Role,
    *,
    reset_password: bool,
    restore_role: bool,
    actor: str,
) -> tuple[User, bool]:
    """Create the user, or set the password of the existing one (``reset_password``), and with ``restore_role``
    also give back the role and re-enable the account. Returns (user, created)."""
    email = _normalise_email(email)
    user = session.scalars(sa.select(User).where(User.email == email)).one_or_none()
    if user is None:
        user = User(email=email, name=None, password_hash=hash_password(password), role=role.value, is_active=True,
                    created_at=now)  # fmt: skip
        session.add(user)
        session.flush()
        audit.record(session, now, actor, "user.create", "user", user.id, after={"email": email, "role": role.value})
        return user, True
    if reset_password:
        user.password_hash = hash_password(password)
        if restore_role:
            user.role, user.is_active = role.value, True
        session.execute(sa.delete(LoginFailure).where(LoginFailure.email == email))
        audit.record(session, now, actor, "user.reset_password", "user", user.id, after={"email": email})
    return user, False


# --- teams ----------------------------------------------------------------------------------------------------


def team_out(session: Session, team: Team) -> TeamOut:
    members = sorted(
        session.scalars(
            sa.select(User.email).join(UserTeam, UserTeam.user_id == User.id).where(UserTeam.team_id == team.id)
        )
    )
    return TeamOut(
        id=team.id, name=team.name, description=team.description, members=members, created_at=team.created_at
    )


def get_team(session: Session, principal: Principal, team_id: str) -> Team:
    team = session.get(Team, team_id)
    if team is None or not principal.sees(team.id):
        raise NotFound(f"no team with id {team_id!r}")
    return team


def list_teams(session: Session, principal: Principal) -> list[TeamOut]:
    query = sa.select(Team).order_by(Team.name)
    if principal.teams is not None:
        query = query.where(Team.id.in_(sorted(principal.teams)))
    return [team_out(session, team) for team in session.scalars(query)]


def create_team(session: Session, now: datetime, actor: Principal, body: TeamIn) -> TeamOut:
    if session.get(Team, body.id) is not None:
        raise Conflict(f"a team with id {body.id!r} already exists")
    team = Team(id=body.id, name=body.name, description=body.description, created_at=now)
    session.add(team)
    session.flush()
    out = team_out(session, team)
    audit.record(session, now, actor.name, "team.create", "team", team.id, after=out)
    return out


def update_team(session: Session, now: datetime, actor: Principal, team_id: str, body: TeamPatch) -> TeamOut:
    team = get_team(session, actor, team_id)
    before = team_out(session, team)
    if body.name is not None:
        team.name = body.name
    if "description" in body.model_fields_set:
        team.description = body.description
    if body.members is not None:
        emails = [e.strip().lower() for e in body.members]
        users = dict(session.execute(sa.select(User.email, User.id).where(User.email.in_(emails))).all())
        errors = [FieldError(("members", i), f"unknown user {e!r}") for i, e in enumerate(emails) if e not in users]
        if errors:
            raise InvalidInput(errors)
        session.execute(sa.delete(UserTeam).where(UserTeam.team_id == team.id))
        session.add_all(UserTeam(user_id=users[e], team_id=team.id) for e in sorted(set(emails)))
    session.flush()
    after = team_out(session, team)
    audit.record(session, now, actor.name, "team.update", "team", team.id, before=before, after=after)
    return after


def delete_team(session: Session, now: datetime, actor: Principal, team_id: str, users_of: list[str]) -> None:
    """``users_of`` names the segments and campaigns still in the team: a team in use cannot be deleted."""
    team = get_team(session, actor, team_id)
    if users_of:
        raise Conflict(f"team {team_id!r} still owns {', '.join(users_of)}: move or delete them first")
    before = team_out(session, team)
    session.execute(sa.delete(UserTeam).where(UserTeam.team_id == team.id))
    session.delete(team)
    audit.record(session, now, actor.name, "team.delete", "team", team_id, before=before)


def check_team(session: Session, principal: Principal, team: str | None) -> None:
    """A segment or campaign may be put only in a team that exists and that the caller belongs to."""
    if team is not None and (not principal.sees(team) or session.get(Team, team) is None):
        raise InvalidInput([FieldError(("team",), f"unknown team {team!r}", "unknown_team")])


# --- API tokens -------------------------------------------------------------------------------------------------


def token_out(row: ApiToken) -> TokenOut:
    return TokenOut(
        id=row.id, name=row.name, prefix=row.prefix, role=Role(row.role), team=row.team_id, expires_at=row.expires_at,
        created_at=row.created_at, created_by=row.created_by, revoked_at=row.revoked_at, last_used_at=row.last_used_at,
    )  # fmt: skip


def list_tokens(session: Session) -> list[TokenOut]:
    return [token_out(row) for row in session.scalars(sa.select(ApiToken).order_by(ApiToken.created_at, ApiToken.id))]


def create_token(session: Session, now: datetime, actor: Principal, body: TokenIn) -> TokenCreated:
    if body.team is not None:
        if body.role == Role.admin:
            raise InvalidInput([FieldError(("team",), "an admin token sees every team: it cannot be team-scoped")])
        _check_teams(session, [body.team], ("team",))
    if body.expires_at is not None and body.expires_at <= now:
        raise InvalidInput([FieldError(("expires_at",), "must be in the future")])
    secret = generate_token()
    row = ApiToken(
        id="tok_" + secrets.token_hex(8), name=body.name, token_hash=digest(secret), prefix=secret[:10],
        role=body.role.value, team_id=body.team, expires_at=body.expires_at, created_at=now, created_by=actor.name,
    )  # fmt: skip
    session.add(row)
    session.flush()
    out = token_out(row)
    audit.record(session, now, actor.name, "token.create", "token", row.id, after=out)
    return TokenCreated(**out.model_dump(), token=secret)


def revoke_token(session: Session, now: datetime, actor: Principal, token_id: str) -> TokenOut:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"no token with id {token_id!r}")
    before = token_out(row)
    if row.revoked_at is None:
        row.revoked_at = now
    session.flush()
    after = token_out(row)
    audit.record(session, now, actor.name, "token.revoke", "token", row.id, before=before, after=after)
    return after
