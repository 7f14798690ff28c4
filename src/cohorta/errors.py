"""Domain errors raised by services. The app maps them to RFC 9457 problem responses; services know no HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError


@dataclass
class FieldError:
    """One thing wrong with the input. ``loc`` is the path to it, e.g. ``("items", 3, "email")``."""

    loc: tuple[str | int, ...]
    message: str
    type: str = "value_error"

    def as_dict(self) -> dict[str, object]:
        return {"loc": list(self.loc), "pointer": json_pointer(self.loc), "detail": self.message, "type": self.type}


def json_pointer(loc: tuple[str | int, ...]) -> str:
    """RFC 6901 pointer for a location path."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in loc)


class CohortaError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class InvalidInput(CohortaError):
    """Input that is well-formed JSON but wrong: unknown attribute, wrong type, unknown customer..."""

    errors: list[FieldError] = field(default_factory=list)
    detail: str = "The request has invalid fields."
    status = 422
    title = "Invalid input"

    def __post_init__(self) -> None:
        Exception.__init__(self, self.detail)


class NotFound(CohortaError):
    status = 404
    title = "Not found"


class Conflict(CohortaError):
    status = 409
    title = "Conflict"


@dataclass
class UnknownReference(InvalidInput):
    """A reference to something that does not exist or that the caller may not see (a hidden segment is a 404)."""

    detail: str = "The request refers to something that was not found."
    status = 404
    title = "Not found"


class Unauthorized(CohortaError):
    status = 401
    title = "Unauthorized"


class Forbidden(CohortaError):
    status = 403
    title = "Forbidden"


class TooManyRequests(CohortaError):
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, retry_after_seconds: int) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(CohortaError):
    """A feature this installation lacks (an optional extra that is not installed)."""

    status = 503
    title = "Service unavailable"


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: dict[str, Any], *prefix: str | int) -> M:
    """``data`` parsed by ``model``; its errors as InvalidInput located under ``prefix``. Messages only: the input
    (perhaps a secret) is never echoed."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(
            [FieldError((*prefix, *e["loc"]), e["msg"].removeprefix("Value error, "), e["type"]) for e in exc.errors()]
        ) from None
