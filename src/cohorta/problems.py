"""RFC 9457 problem responses for every error the API gives, and the request-size guard."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cohorta.errors import CohortaError, FieldError, InvalidInput, TooManyRequests, json_pointer

PROBLEM_TYPE_BASE = "https://cohorta.dev/problems/"
log = logging.getLogger("cohorta.api")


def problem(
    status: int, title: str, detail: str, *, kind: str, instance: str | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_TYPE_BASE + kind, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def _field_errors(errors: list[FieldError]) -> list[dict[str, object]]:
    return [error.as_dict() for error in errors]


def _client_loc(error: Any) -> tuple[Any, ...]:
    """The path of the offending field in the client's own JSON.

    pydantic adds the member's tag to paths inside a discriminated union (``items/0/points/program``) and reports a
    bad tag at the union itself; the client sent ``items/0/program`` and a bad ``type``.
    """
    loc = tuple(error.get("loc", ()))
    if loc and loc[0] == "body":
        loc = loc[1:]
    if error.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        discriminator = (error.get("ctx") or {}).get("discriminator", "'type'").strip("'")
        return (*loc, discriminator)
    cleaned: list[Any] = []
    for index, part in enumerate(loc):
        previous_is_item = index == 0 or isinstance(loc[index - 1], int)
        is_last = index == len(loc) - 1  # a tag is followed by the field inside it; a last part is a field itself
        if previous_is_item and not is_last and isinstance(part, str) and part in DISCRIMINATED_TAGS:
            continue
        cleaned.append(part)
    return tuple(cleaned)


# Tags of the discriminated unions in request bodies (loyalty transaction types), removed from error paths.
DISCRIMINATED_TAGS = frozenset({"points", "tier", "redemption", "referral", "gift_card"})


PROBLEM_KINDS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    409: "conflict",
    429: "too-many-requests",
    502: "bad-gateway",
    503: "unavailable",
}


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for error in exc.errors():
            loc = _client_loc(error)
            message = error.get("msg", "invalid")
            errors.append(
                {"loc": list(loc), "pointer": json_pointer(loc), "detail": message, "type": error.get("type")}
            )
        summary = "; ".join(f"{e['pointer'] or '/'}: {e['detail']}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        return problem(
            422, "Invalid input", summary + more, kind="invalid-input", instance=request.url.path, errors=errors
        )

    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput) -> JSONResponse:
        summary = "; ".join(f"{json_pointer(e.loc) or '/'}: {e.message}" for e in exc.errors[:3])
        more = f" (and {len(exc.errors) - 3} more)" if len(exc.errors) > 3 else ""
        return problem(
            exc.status,
            exc.title,
            summary + more or exc.detail,
            kind="invalid-input" if exc.status == 422 else "not-found",
            instance=request.url.path,
            errors=_field_errors(exc.errors),
        )

    @app.exception_handler(CohortaError)
    async def _domain(request: Request, exc: CohortaError) -> JSONResponse:
        kind = PROBLEM_KINDS.get(exc.status, "bad-request")
        response = problem(exc.status, exc.title, exc.detail, kind=kind, instance=request.url.path)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after_seconds)
        return response

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        log.warning("integrity error on %s: %s", request.url.path, exc.orig)
        return problem(
            409,
            "Conflict",
            "A concurrent request wrote the same record; nothing was written. Retry.",
            kind="conflict",
            instance=request.url.path,
        )

    @app.exception_handler(OperationalError)
    async def _busy(request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database error on %s: %s", request.url.path, exc.orig)
        return problem(
            503,
            "Service unavailable",
            "The database is busy or unreachable; nothing was written. Retry.",
            kind="unavailable",
            instance=request.url.path,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 413: "Request too large"}
        return problem(
            exc.status_code,
            titles.get(exc.status_code, "Error"),
            str(exc.detail),
            kind=titles.get(exc.status_code, "error").lower().replace(" ", "-"),
            instance=request.url.path,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return problem(
            500,
            "Internal error",
            "Something unexpected failed; nothing was written.",
            kind="internal",
            instance=request.url.path,
        )


class BodySizeLimit:
    """Refuses request bodies over ``max_bytes`` with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise StarletteHTTPException(413, f"The request body exceeds {self.max_bytes} bytes.")
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            "Request too large",
            f"The request body exceeds {self.max_bytes} bytes.",
            kind="request-too-large",
            instance=scope.get("path"),
        )
        await response(scope, receive, send)
