"""Large request bodies validated by pydantic-core straight from the request's bytes, in one pass.

FastAPI decodes a JSON body with ``json.loads`` and then validates the Python objects it made; for a bulk request of
10,000 customers the intermediate objects cost more than the validation itself. A route that takes a large body
declares it with :func:`json_body` instead: pydantic parses and validates the bytes at once.

Only a body that passes takes that path. Anything else (no body, another content type, malformed JSON, invalid
fields) is handled exactly the way FastAPI handles a body parameter, so its problem answer (status, pointers, messages)
is the one every other route gives. The limits are unchanged: the request-size guard sits in front of the body, and
the models carry the string, list and object limits.

Only models without ``Decimal`` fields may use it: pydantic reads a JSON number such as ``1e2`` straight into
``Decimal('1E+2')``, where ``json.loads`` gives the float 100.0 and then ``Decimal('100.0')``; an order's content hash
(the duplicate check) would then differ from the one stored for the same order sent before.
"""

from __future__ import annotations

import email.message
import json
from typing import Any, NoReturn, TypeVar

from fastapi import Depends, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.constants import REF_TEMPLATE
from fastapi.openapi.models import OpenAPI
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.json_schema import GenerateJsonSchema

M = TypeVar("M", bound=BaseModel)

# The models declared as bodies here, by name: app.py adds their schemas to the OpenAPI document's components.
DOCUMENTED: dict[str, type[BaseModel]] = {}


def json_body(model: type[M]) -> Any:
    """A dependency giving the request body validated as ``model``. Declare it in the route's signature as
    ``body: Annotated[Model, json_body(Model)]`` and describe it with ``openapi_extra=described(Model)``."""
    adapter = TypeAdapter(model)

    async def parse(request: Request) -> M:
        raw = await request.body()
        is_json = _is_json(request.headers.get("content-type"))
        if raw and is_json:
            try:
                return model.model_validate_json(raw)
            except ValidationError:
                pass  # reported below, as FastAPI reports it
        return _as_fastapi_does(adapter, raw, is_json)

    DOCUMENTED[model.__name__] = model
    return Depends(parse)


def described(model: type[BaseModel]) -> dict[str, Any]:
    """The ``openapi_extra`` of a route whose body is ``json_body(model)``: the request body and its 422 answer, as
    FastAPI documents a body parameter."""
    body = {"content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=model.__name__)}}}}
    invalid = {"$ref": REF_TEMPLATE.format(model="HTTPValidationError")}
    return {
        "requestBody": {**body, "required": True},
        "responses": {"422": {"description": "Validation Error", "content": {"application/json": {"schema": invalid}}}},
    }


def add_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the schemas of the models of :func:`json_body` (and of the models they use) among
    its components, generated and encoded as FastAPI does those of body parameters."""
    generator = GenerateJsonSchema(ref_template=REF_TEMPLATE)
    inputs = [(name, "validation", TypeAdapter(model).core_schema) for name, model in DOCUMENTED.items()]
    _, definitions = generator.generate_definitions(inputs=inputs)  # type: ignore[arg-type]
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in definitions.items():
        components.setdefault(name, schema)
    encoded: dict[str, Any] = jsonable_encoder(OpenAPI(**document), by_alias=True, exclude_none=True)
    return encoded


def _is_json(content_type: str | None) -> bool:
    """FastAPI's test: a body is JSON when its content type is application/json or application/*+json (a body
    without a content type is not)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def _as_fastapi_does(adapter: TypeAdapter[M], raw: bytes, is_json: bool) -> M:
    """The body decoded with ``json.loads`` and validated as Python objects (FastAPI's way): the model, or the very
    error FastAPI raises for a body parameter."""
    if not raw:
        _refuse([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}], None)
    value: Any = raw
    if is_json:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error", "input": {}}
            _refuse([{**error, "ctx": {"error": exc.msg}}], exc.doc)
        except ValueError:  # not UTF-8 (UnicodeDecodeError)
            raise HTTPException(status_code=400, detail="There was an error parsing the body") from None
    try:
        return adapter.validate_python(value, from_attributes=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        _refuse([{**error, "loc": ("body", *error["loc"])} for error in errors], value)


def _refuse(errors: list[Any], body: Any) -> NoReturn:
    raise RequestValidationError(errors, body=body)
