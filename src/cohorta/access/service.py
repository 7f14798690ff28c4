"""Token checks. Until users, roles and API tokens land, the admin token is the only accepted credential."""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    name: str
    role: str


class Unauthorized(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def authenticate_bearer(authorization: str | None, admin_token: str | None) -> Principal:
    if not authorization:
        raise Unauthorized("missing Authorization header: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    if admin_token and secrets.compare_digest(token.strip().encode(), admin_token.encode()):
        return Principal(name="admin-token", role="admin")
    raise Unauthorized("invalid or expired token")


def generate_token() -> str:
    return "coh_" + secrets.token_urlsafe(32)
