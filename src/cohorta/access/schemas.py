"""API shapes of users, teams, tokens and sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from cohorta.access.models import Role

TeamId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Email = Annotated[str, StringConstraints(min_length=3, max_length=320, strip_whitespace=True)]
# argon2 hashes any length; the bounds keep typos and abuse out (a 1 MB password is a denial of service).
Password = Annotated[str, StringConstraints(min_length=10, max_length=256)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(Strict):
    email: Email
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class UserIn(Strict):
    email: Email
    name: Name | None = None
    password: Password
    role: Role = Role.viewer
    teams: list[TeamId] = Field(default_factory=list, max_length=100)


class UserPatch(Strict):
    email: Email | None = None
    name: Name | None = None
    password: Password | None = None
    role: Role | None = None
    is_active: bool | None = None
    teams: list[TeamId] | None = Field(default=None, max_length=100)


class UserOut(BaseModel):
    id: int
    email: str
    name: str | None
    role: Role
    teams: list[str]
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class SessionOut(BaseModel):
    user: UserOut
    csrf_token: str = Field(description="Send it back as the X-CSRF-Token header (or csrf_token form field) on writes")
    expires_at: datetime


class TeamIn(Strict):
    id: TeamId
    name: Name
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None


class TeamPatch(Strict):
    name: Name | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    members: list[Email] | None = Field(default=None, max_length=10_000, description="Emails; replaces the members")


class TeamOut(BaseModel):
    id: str
    name: str
    description: str | None
    members: list[str]
    created_at: datetime


class TokenIn(Strict):
    name: Name
    role: Role = Role.viewer
    team: TeamId | None = Field(default=None, description="Restrict the token to this team's segments and campaigns")
    expires_at: AwareDatetime | None = None


class TokenOut(BaseModel):
    id: str
    name: str
    prefix: str
    role: Role
    team: str | None
    expires_at: datetime | None
    created_at: datetime
    created_by: str | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The secret. Shown once: only its hash is stored.")
