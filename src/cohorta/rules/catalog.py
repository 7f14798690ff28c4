"""The field catalog: which paths a rule may name, their types, labels, groups, operators and value hints.

Pure data, built from the project's attribute and event definitions and its loyalty programs. ``Catalog.as_json()``
is what ``GET /api/v1/fields`` returns.

Field types: ``string``, ``country`` (ISO 3166 alpha-2 string), ``number`` (float), ``integer``, ``money`` (a decimal
amount in the project currency, stored as integer minor units), ``boolean``, ``date``, ``datetime``, ``list``
(of strings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FIELD_TYPES = ("string", "country", "number", "integer", "money", "boolean", "date", "datetime", "list")
ATTRIBUTE_TYPES = ("string", "number", "boolean", "date", "datetime", "list")

_EQ = ("is", "is_not", "in", "not_in")
_PRESENCE = ("has_value", "is_unknown")
_TEXT = (*_EQ, "contains", "not_contains", "starts_with", "ends_with", *_PRESENCE)
_NUMERIC = (*_EQ, "lt", "lte", "gt", "gte", "between", *_PRESENCE)
_DATETIME = ("on", "before", "after", "between", "exactly_days_ago", "less_than_days_ago", "more_than_days_ago",
             "in_next_days", "in_calendar", *_PRESENCE)
# Anniversaries need the local month and day of a stored value: only date fields (birthdate, date attributes) for
# now; a portable SQL form for timestamps (UTC -> local day) is future work.
_DATE = (*_DATETIME[:-2], "anniversary_within_days", "anniversary_this_month", *_PRESENCE)
OPERATORS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "string": _TEXT,
    "country": _TEXT,
    "number": _NUMERIC,
    "integer": _NUMERIC,
    "money": _NUMERIC,
    "boolean": ("is", "is_not", *_PRESENCE),
    "date": _DATE,
    "datetime": _DATETIME,
    "list": ("has_any", "has_all", "has_none", *_PRESENCE),
}
#: Operators allowed on an activity's measure (count, sum ...): numeric comparisons only.
MEASURE_OPERATORS = ("is", "is_not", "in", "not_in", "lt", "lte", "gt", "gte", "between", "has_value", "is_unknown")


@dataclass(frozen=True)
class FieldSpec:
    """One field a rule can name."""

    path: str
    type: str
    label: str
    group: str
    column: str = ""  # storage column (profile, summary, activity) - empty for attributes and event properties
    nullable: bool = True
    hints: tuple[Any, ...] = ()
    operators: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.operators:
            object.__setattr__(self, "operators", OPERATORS_BY_TYPE[self.type])

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "type": self.type, "label": self.label, "group": self.group,
                               "operators": list(self.operators), "nullable": self.nullable}
        if self.hints:
            out["hints"] = list(self.hints)
        return out


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


# (name, type, nullable)
PROFILE_FIELDS: tuple[tuple[str, str], ...] = (
    ("first_name", "string"), ("last_name", "string"), ("email", "string"), ("phone", "string"),
    ("birthdate", "date"), ("gender", "string"), ("postal_code", "string"), ("city", "string"),
    ("state", "string"), ("country", "country"), ("created_at", "datetime"), ("source", "string"),
    ("store", "string"), ("company", "string"), ("loyalty_member", "boolean"), ("member_since", "datetime"),
)  # fmt: skip
# (name, type, storage column, nullable)
SUMMARY_FIELDS: tuple[tuple[str, str, str, bool], ...] = (
    ("order_count", "integer", "order_count", False),
    ("total_spent", "money", "total_spent_minor", False),
    ("average_order_value", "money", "average_order_value_minor", True),
    ("first_order_at", "datetime", "first_order_at", True),
    ("last_order_at", "datetime", "last_order_at", True),
    ("last_order_amount", "money", "last_order_amount_minor", True),
    ("redemption_count", "integer", "redemption_count", False),
    ("referral_count", "integer", "referral_count", False),
    ("gift_card_balance", "money", "gift_card_balance_minor", False),
)
ORDER_STATUSES = ("created", "paid", "fulfilled", "cancelled", "refunded")  # as cohorta.customers.models.OrderStatus
COUNTED_ORDER_STATUSES = ("paid", "fulfilled")
POINT_ENTRIES = ("earn", "spend", "adjust", "expire")

# activity -> {field name: (type, storage column)}
ACTIVITY_FIELDS: dict[str, dict[str, tuple[str, str]]] = {
    "orders": {"status": ("string", "status"), "total": ("money", "total_minor"),
               "created_at": ("datetime", "created_at")},
    "order_items": {
        "sku": ("string", "sku"), "name": ("string", "name"), "category": ("string", "category"),
        "brand": ("string", "brand"), "quantity": ("integer", "quantity"),
        "unit_price": ("money", "unit_price_minor"), "amount": ("money", "amount_minor"),
        "status": ("string", "status"),
    },
    "events": {},
    "points": {"program": ("string", "program"), "entry": ("string", "entry"), "points": ("integer", "points"),
               "reason": ("string", "reason")},
    "redemptions": {"program": ("string", "program"), "reward": ("string", "reward")},
}  # fmt: skip
#: The timestamp column of each activity (the window applies to it).
ACTIVITY_TIME_COLUMN = {"orders": "created_at", "order_items": "ordered_at", "events": "occurred_at",
                        "points": "occurred_at", "redemptions": "occurred_at"}
ACTIVITY_LABELS = {"orders": "Orders", "order_items": "Order items", "events": "Events", "points": "Points",
                   "redemptions": "Redemptions"}


class Catalog:
    """Every field a rule may name in this project.

    ``attribute_definitions`` maps custom attribute names to types (string, number, boolean, date, datetime, list);
    ``event_definitions`` maps event names to their declared properties and types; ``programs`` maps loyalty program
    codes to their tiers (or is a list of codes); ``value_hints`` maps a field path to suggested values.
    """

    def __init__(
        self,
        attribute_definitions: Mapping[str, str] | None = None,
        event_definitions: Mapping[str, Mapping[str, str]] | None = None,
        programs: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
        value_hints: Mapping[str, Sequence[Any]] | None = None,
        profile_fields: Sequence[tuple[str, str]] = PROFILE_FIELDS,
    ) -> None:
        hints = dict(value_hints or {})
        if programs is None:
            programs = {}
        if not isinstance(programs, Mapping):
            programs = {p: () for p in programs}
        self.programs: dict[str, tuple[str, ...]] = {p: tuple(t) for p, t in programs.items()}
        self.attribute_definitions: dict[str, str] = dict(attribute_definitions or {})
        self.event_definitions: dict[str, dict[str, str]] = {
            e: dict(props) for e, props in (event_definitions or {}).items()
        }
        for name, typ in self.attribute_definitions.items():
            if typ not in ATTRIBUTE_TYPES:
                raise ValueError(f"attribute {name!r}: unknown type {typ!r}")
        for ev, props in self.event_definitions.items():
            for name, typ in props.items():
                if typ not in ATTRIBUTE_TYPES:
                    raise ValueError(f"event {ev!r} property {name!r}: unknown type {typ!r}")
        fields: dict[str, FieldSpec] = {}

        def add(spec: FieldSpec) -> None:
            if spec.path in hints:
                spec = FieldSpec(spec.path, spec.type, spec.label, spec.group, spec.column, spec.nullable,
                                 tuple(hints[spec.path]), spec.operators)
            fields[spec.path] = spec

        for name, typ in profile_fields:
            add(FieldSpec(f"profile.{name}", typ, _label(name), "profile", name,
                          hints=("ISO 3166-1 alpha-2 code",) if typ == "country" else ()))
        for name, typ in self.attribute_definitions.items():
            add(FieldSpec(f"attributes.{name}", typ, _label(name), "attributes"))
        for name, typ, column, nullable in SUMMARY_FIELDS:
            add(FieldSpec(f"summary.{name}", typ, _label(name), "summary", column, nullable))
        add(FieldSpec("loyalty.points_balance", "integer", "Points balance (all programs)", "loyalty",
                      "points_balance", False))
        for program, tiers in self.programs.items():
            add(FieldSpec(f"loyalty.{program}.points_balance", "integer", f"Points balance ({program})", "loyalty",
                          "points_balance", False))
            add(FieldSpec(f"loyalty.{program}.tier", "string", f"Tier ({program})", "loyalty", "tier", True, tiers))
        self.fields = fields
        self.value_hints = hints

    # -- lookups --------------------------------------------------------------------------------------------------
    def field(self, path: str) -> FieldSpec | None:
        """The field named by ``path``; a bare name (``country``) means a profile field."""
        spec = self.fields.get(path)
        if spec is None and "." not in path:
            spec = self.fields.get(f"profile.{path}")
        return spec

    def activity_field(self, activity: str, name: str, event: str | None = None) -> FieldSpec | None:
        """A field of one activity row (``brand`` of order_items, ``properties.color`` of an event)."""
        if activity == "events":
            if not name.startswith("properties.") or event is None:
                return None
            prop = name[len("properties."):]
            typ = self.event_definitions.get(event, {}).get(prop)
            if typ is None:
                return None
            return FieldSpec(name, typ, _label(prop), "events")
        spec = ACTIVITY_FIELDS.get(activity, {}).get(name)
        if spec is None:
            return None
        typ, column = spec
        hints: tuple[Any, ...] = ()
        if name == "status":
            hints = ORDER_STATUSES
        elif name == "entry":
            hints = POINT_ENTRIES
        elif name == "program":
            hints = tuple(self.programs)
        return FieldSpec(name, typ, _label(name), "orders" if activity.startswith("order") else "loyalty", column,
                         hints=hints)

    def activity_fields(self, activity: str, event: str | None = None) -> list[FieldSpec]:
        if activity == "events":
            names = [f"properties.{p}" for p in self.event_definitions.get(event or "", {})]
        else:
            names = list(ACTIVITY_FIELDS[activity])
        return [s for n in names if (s := self.activity_field(activity, n, event)) is not None]

    def as_json(self) -> dict[str, Any]:
        """The catalog for ``GET /api/v1/fields``."""
        from .model import CALENDAR_PERIODS, MEASURE_FUNCTIONS, WINDOW_CALENDAR_PERIODS

        activities = []
        for activity in ACTIVITY_FIELDS:
            entry: dict[str, Any] = {"activity": activity, "label": ACTIVITY_LABELS[activity],
                                     "group": "events" if activity == "events" else
                                     "orders" if activity.startswith("order") else "loyalty",
                                     "measures": list(MEASURE_FUNCTIONS), "measure_operators": list(MEASURE_OPERATORS)}
            if activity == "events":
                entry["events"] = {
                    ev: [s.as_json() for s in self.activity_fields("events", ev)] for ev in self.event_definitions
                }
            else:
                entry["fields"] = [s.as_json() for s in self.activity_fields(activity)]
            activities.append(entry)
        return {
            "fields": [s.as_json() for s in self.fields.values()],
            "activities": activities,
            "segments": {"group": "segments", "node": "in_segment"},
            "programs": {p: list(t) for p, t in self.programs.items()},
            "calendar_periods": list(CALENDAR_PERIODS),
            "window_calendar_periods": list(WINDOW_CALENDAR_PERIODS),
            "operators_by_type": {t: list(ops) for t, ops in OPERATORS_BY_TYPE.items()},
        }
