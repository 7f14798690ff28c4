"""Typed values of custom attributes and declared event properties: checking, storing as rows, reading back.

One value becomes one row of the typed value columns (see ``TypedValueColumns``); a list becomes one row per element.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from cohorta.customers.models import ValueType

MAX_VALUE_STRING = 1024
MAX_LIST_ITEMS = 100
VALUE_COLUMNS = ("value_string", "value_number", "value_boolean", "value_date", "value_datetime")


def coerce(value_type: ValueType, raw: Any) -> Any:
    """The Python value of ``raw`` (decoded JSON) for ``value_type``; ValueError with a readable reason if it
    does not fit."""
    if value_type is ValueType.string:
        if not isinstance(raw, str):
            raise ValueError(f"must be a string, got {_json_kind(raw)}")
        if len(raw) > MAX_VALUE_STRING:
            raise ValueError(f"must be at most {MAX_VALUE_STRING} characters")
        return raw
    if value_type is ValueType.number:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ValueError(f"must be a number, got {_json_kind(raw)}")
        number = float(raw)
        if not math.isfinite(number) or abs(number) > 1e300:
            raise ValueError("must be a finite number")
        return number
    if value_type is ValueType.boolean:
        if not isinstance(raw, bool):
            raise ValueError(f"must be true or false, got {_json_kind(raw)}")
        return raw
    if value_type is ValueType.date:
        if isinstance(raw, date) and not isinstance(raw, datetime):
            return raw
        if not isinstance(raw, str):
            raise ValueError(f"must be a date (YYYY-MM-DD), got {_json_kind(raw)}")
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"must be a date (YYYY-MM-DD), got {raw[:40]!r}") from None
    if value_type is ValueType.datetime:
        if isinstance(raw, datetime):
            parsed = raw
        elif isinstance(raw, str):
            try:
                parsed = datetime.fromisoformat(raw)
            except ValueError:
                raise ValueError(f"must be an ISO 8601 date-time with offset, got {raw[:40]!r}") from None
        else:
            raise ValueError(f"must be an ISO 8601 date-time with offset, got {_json_kind(raw)}")
        if parsed.tzinfo is None:
            raise ValueError("must include a UTC offset (for example 2024-05-01T10:00:00Z)")
        return parsed.astimezone(UTC)
    if value_type is ValueType.string_list:
        if not isinstance(raw, list):
            raise ValueError(f"must be a list of strings, got {_json_kind(raw)}")
        if len(raw) > MAX_LIST_ITEMS:
            raise ValueError(f"must have at most {MAX_LIST_ITEMS} items")
        items: list[str] = []
        for index, item in enumerate(raw):
            if not isinstance(item, str):
                raise ValueError(f"item {index} must be a string, got {_json_kind(item)}")
            if len(item) > MAX_VALUE_STRING:
                raise ValueError(f"item {index} must be at most {MAX_VALUE_STRING} characters")
            if item not in items:
                items.append(item)
        return items
    raise ValueError(f"unknown type {value_type}")


def infer_type(raw: Any) -> ValueType:
    """The type of an attribute outside the schema (open schema), from its JSON value."""
    if isinstance(raw, bool):
        return ValueType.boolean
    if isinstance(raw, int | float):
        return ValueType.number
    if isinstance(raw, list):
        return ValueType.string_list
    if isinstance(raw, str):
        return ValueType.string
    raise ValueError(f"must be a string, number, boolean or list of strings, got {_json_kind(raw)}")


def to_rows(value_type: ValueType, value: Any) -> list[dict[str, Any]]:
    """Rows (position + value columns) for an already coerced value."""
    column = _COLUMN_OF[value_type]
    if value_type is ValueType.string_list:
        return [{**_EMPTY_ROW, "position": position, column: item} for position, item in enumerate(value)]
    return [{**_EMPTY_ROW, column: value}]


def positioned(value_type: ValueType, value: Any) -> Iterable[tuple[int, Any]]:
    """The (position, element) pairs an already coerced value is stored as: one per list item, else one."""
    if value_type is ValueType.string_list:
        return enumerate(value)
    return ((0, value),)


def same(stored: Any, value: Any) -> bool:
    """Whether a stored value (``from_rows``; None when absent) is the coerced ``value``, down to the sign of a zero
    (0.0 == -0.0, but they are stored and read back differently)."""
    if stored != value:
        return False
    return not isinstance(value, float) or math.copysign(1, value) == math.copysign(1, stored)


def from_rows(value_type: ValueType, rows: Iterable[Mapping[str, Any]]) -> Any:
    column = column_for(value_type)
    ordered = sorted(rows, key=lambda row: row["position"])
    if value_type is ValueType.string_list:
        return [row[column] for row in ordered]
    return ordered[0][column] if ordered else None


_COLUMN_OF = {
    ValueType.string: "value_string",
    ValueType.number: "value_number",
    ValueType.boolean: "value_boolean",
    ValueType.date: "value_date",
    ValueType.datetime: "value_datetime",
    ValueType.string_list: "value_string",
}
_EMPTY_ROW: dict[str, Any] = {"position": 0, **dict.fromkeys(VALUE_COLUMNS)}


def column_for(value_type: ValueType) -> str:
    return _COLUMN_OF[value_type]


def to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _json_kind(raw: Any) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "a boolean"
    if isinstance(raw, int | float):
        return "a number"
    if isinstance(raw, str):
        return "a string"
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, dict):
        return "an object"
    return type(raw).__name__
