"""The rule tree as pydantic v2 models, and its published JSON Schema.

A rule is data. Node kinds (each may carry an ``"id"``):

* groups - ``{"and": [...]}``, ``{"or": [...]}``, ``{"not": node}``
* attribute condition - ``{"field": "profile.country", "op": "in", "value": ["PL"], "case_sensitive": false}``
* activity condition - ``{"activity": "orders", "where": [...], "window": {...}, "measure": {...}, "op": "gte",
  "value": 3}`` (``"event"`` names the event for ``"activity": "events"``)
* membership - ``{"in_segment": "<segment id>"}``
* sample - ``{"sample": {"percent": 10, "seed": "spring-holdout"}}``

Values stay JSON-like here (strings, ints, Decimals, booleans, lists); their meaning (a date, a money amount ...)
comes from the catalog type of the field, applied by the compilers. Use :func:`cohorta.rules.validate` to build a
rule from untrusted JSON: it checks shape, fields, operators and values against a catalog with readable messages.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    RootModel,
    Tag,
    model_validator,
)

ACTIVITIES = ("orders", "order_items", "events", "points", "redemptions")
MEASURE_FUNCTIONS = ("count", "sum", "avg", "min", "max")
CALENDAR_PERIODS = tuple(f"{w}_{p}" for p in ("week", "month", "quarter", "year") for w in ("this", "last", "next"))
WINDOW_CALENDAR_PERIODS = tuple(p for p in CALENDAR_PERIODS if not p.startswith("next_"))

OPERATORS = (
    "is", "is_not", "in", "not_in", "has_value", "is_unknown",
    "contains", "not_contains", "starts_with", "ends_with",
    "lt", "lte", "gt", "gte", "between",
    "before", "after", "on",
    "exactly_days_ago", "less_than_days_ago", "more_than_days_ago", "in_next_days", "in_calendar",
    "anniversary_within_days", "anniversary_this_month",
    "has_any", "has_all", "has_none",
)  # fmt: skip
#: Operators whose answer moves with the clock: relative dates, calendar periods and anniversaries.
RELATIVE_OPERATORS = ("exactly_days_ago", "less_than_days_ago", "more_than_days_ago", "in_next_days", "in_calendar",
                      "anniversary_within_days", "anniversary_this_month")
#: Operators that are the negation of another one: true for a missing value.
NEGATIONS = {"is_not": "is", "not_in": "in", "not_contains": "contains", "has_none": "has_any",
             "is_unknown": "has_value"}
NO_VALUE_OPERATORS = ("has_value", "is_unknown", "anniversary_this_month")
LIST_VALUE_OPERATORS = ("in", "not_in", "has_any", "has_all", "has_none")
TEXT_OPERATORS = ("is", "is_not", "in", "not_in", "contains", "not_contains", "starts_with", "ends_with",
                  "has_any", "has_all", "has_none")  # accept the case_sensitive option


def _float_to_decimal(v: Any) -> Any:
    if isinstance(v, float):
        return Decimal(repr(v))
    return v


def _decimal_json(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() and abs(v) < 2**53 else float(v)
    return v


Scalar = Annotated[
    Union[bool, int, Decimal, str],  # noqa: UP007 - pydantic keeps the order of a Union
    BeforeValidator(_float_to_decimal),
    PlainSerializer(_decimal_json, when_used="json"),
]
Value = Union[Scalar, list[Scalar], None]  # noqa: UP007


def _parse_date_or_datetime(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return dt.date.fromisoformat(v) if len(v) == 10 else dt.datetime.fromisoformat(v)
        except ValueError:
            return v
    return v


DateOrDatetime = Annotated[Union[dt.datetime, dt.date], BeforeValidator(_parse_date_or_datetime)]  # noqa: UP007


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Condition(_Base):
    """``field op value`` on one customer (or, inside an activity's ``where``, on one activity row)."""

    id: str | None = None
    field: str
    op: str
    value: Value = None
    case_sensitive: bool = False


class LastDays(_Base):
    last_days: int


class BetweenDates(_Base):
    between: tuple[DateOrDatetime, DateOrDatetime]


class DaysAgo(_Base):
    days_ago: tuple[int, int]


class CalendarWindow(_Base):
    calendar: str


def _window_tag(v: Any) -> str | None:
    keys = set(v) if isinstance(v, dict) else set(type(v).model_fields) if isinstance(v, BaseModel) else set()
    for key in ("last_days", "between", "days_ago", "calendar"):
        if key in keys:
            return key
    return None


Window = Annotated[
    Union[  # noqa: UP007
        Annotated[LastDays, Tag("last_days")],
        Annotated[BetweenDates, Tag("between")],
        Annotated[DaysAgo, Tag("days_ago")],
        Annotated[CalendarWindow, Tag("calendar")],
    ],
    Discriminator(_window_tag),
]


class Measure(_Base):
    fn: Literal["count", "sum", "avg", "min", "max"] = "count"
    field: str | None = None


class Activity(_Base):
    """An aggregate over the customer's activity rows (orders, order items, events, points, redemptions)."""

    id: str | None = None
    activity: Literal["orders", "order_items", "events", "points", "redemptions"]
    event: str | None = None
    where: list[Condition] = Field(default_factory=list)
    window: Window | None = None
    measure: Measure | None = None
    op: str
    value: Value = None

    @model_validator(mode="after")
    def _canonical_count(self) -> Activity:
        """``{"fn": "count"}`` without a field is the default measure: stored as no measure."""
        if self.measure is not None and self.measure.fn == "count" and self.measure.field is None:
            self.measure = None
        return self


class InSegment(_Base):
    id: str | None = None
    in_segment: str


class SampleSpec(_Base):
    percent: Annotated[Decimal, BeforeValidator(_float_to_decimal), PlainSerializer(_decimal_json, when_used="json")]
    seed: str


class Sample(_Base):
    id: str | None = None
    sample: SampleSpec


class And(_Base):
    id: str | None = None
    and_: list[Node] = Field(alias="and")


class Or(_Base):
    id: str | None = None
    or_: list[Node] = Field(alias="or")


class Not(_Base):
    id: str | None = None
    not_: Node = Field(alias="not")


_NODE_KEYS = (("and", "and"), ("or", "or"), ("not", "not"), ("activity", "activity"), ("field", "condition"),
              ("in_segment", "in_segment"), ("sample", "sample"))
_CLASS_TAGS: dict[type, str] = {}


def _node_tag(v: Any) -> str | None:
    if isinstance(v, dict):
        for key, tag in _NODE_KEYS:
            if key in v:
                return tag
        return None
    return _CLASS_TAGS.get(type(v))


Node = Annotated[
    Union[  # noqa: UP007
        Annotated[And, Tag("and")],
        Annotated[Or, Tag("or")],
        Annotated[Not, Tag("not")],
        Annotated[Activity, Tag("activity")],
        Annotated[Condition, Tag("condition")],
        Annotated[InSegment, Tag("in_segment")],
        Annotated[Sample, Tag("sample")],
    ],
    Discriminator(_node_tag),
]
NodeType = And | Or | Not | Activity | Condition | InSegment | Sample
_CLASS_TAGS.update({And: "and", Or: "or", Not: "not", Activity: "activity", Condition: "condition",
                    InSegment: "in_segment", Sample: "sample"})

for _m in (And, Or, Not):
    _m.model_rebuild()


class Rule(RootModel[Node]):
    """A whole rule: ``Rule.root`` is the root node."""

    def to_json(self) -> dict[str, Any]:
        return node_to_json(self.root)


def node_to_json(node: NodeType | Rule) -> dict[str, Any]:
    """The canonical JSON form of a rule or node (defaults left out, money and numbers as JSON numbers)."""
    if isinstance(node, Rule):
        node = node.root
    out: dict[str, Any] = _to_json_value(node.model_dump(mode="python", by_alias=True, exclude_defaults=True))
    return out


def _to_json_value(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _to_json_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_to_json_value(x) for x in v]
    if isinstance(v, Decimal):
        return _decimal_json(v)
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    return v


def json_schema() -> dict[str, Any]:
    """JSON Schema of the rule tree (structure only; fields and operators are checked against the catalog)."""
    schema = Rule.model_json_schema(by_alias=True)
    schema["title"] = "Cohorta segment rule"
    schema["description"] = (
        "A segment rule: and/or/not groups over attribute conditions, activity conditions, segment membership and "
        "stable random samples. Field paths and operators are listed by GET /api/v1/fields."
    )
    return schema


def children(node: NodeType) -> list[NodeType]:
    """Direct child nodes of a group (an activity's ``where`` conditions are not tree children)."""
    if isinstance(node, And):
        return list(node.and_)
    if isinstance(node, Or):
        return list(node.or_)
    if isinstance(node, Not):
        return [node.not_]
    return []


def walk(node: NodeType) -> list[NodeType]:
    """All nodes of the tree in pre-order (``where`` conditions after their activity)."""
    out: list[NodeType] = []
    stack: list[NodeType] = [node]
    while stack:
        n = stack.pop()
        out.append(n)
        if isinstance(n, Activity):
            out.extend(n.where)
        stack.extend(reversed(children(n)))
    return out
