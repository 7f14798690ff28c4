"""The rules' field catalog, built from the project's schemas and, for the UI, value hints from the data."""

from __future__ import annotations

from typing import Any

import pycountry
import sqlalchemy as sa
from sqlalchemy.orm import Session

from cohorta import rules
from cohorta.customers import service as customers
from cohorta.customers.models import Customer, CustomerAttributeValue, CustomerProgramSummary, Event, ValueType
from cohorta.db import table_of

HINT_LIMIT = 50


def build_catalog(session: Session, *, with_hints: bool = False) -> rules.Catalog:
    """Fields for validation and compilation; ``with_hints`` adds known values (slower: it reads the data)."""
    attribute_types = {name: d.type for name, d in customers.attribute_definitions(session).items()}
    event_types = {name: dict(d.properties) for name, d in customers.event_definitions(session).items()}
    programs: dict[str, list[str]] = {}
    for program, tier in session.execute(
        sa.select(CustomerProgramSummary.program, CustomerProgramSummary.tier).distinct()
    ).all():
        tiers = programs.setdefault(program, [])
        if tier is not None and tier not in tiers:
            tiers.append(tier)
    hints: dict[str, list[Any]] = {}
    if with_hints:
        hints = _value_hints(session, attribute_types, event_types)
    return rules.Catalog(
        attribute_definitions=attribute_types,
        event_definitions=event_types,
        programs={p: sorted(t) for p, t in sorted(programs.items())},
        value_hints=hints,
    )


def _value_hints(
    session: Session, attribute_types: dict[str, str], event_types: dict[str, dict[str, str]]
) -> dict[str, list[Any]]:
    customers_table = table_of(Customer)
    hints: dict[str, list[Any]] = {}
    countries = session.execute(
        sa.select(customers_table.c.country).where(customers_table.c.country.is_not(None)).distinct()
    ).scalars()
    hints["profile.country"] = [
        {"value": code, "label": getattr(pycountry.countries.get(alpha_2=code), "name", code)}
        for code in sorted(countries)
    ]
    for column in ("city", "gender", "source", "store"):
        hints[f"profile.{column}"] = _top_values(session, customers_table.c[column])
    values = table_of(CustomerAttributeValue)
    for name, value_type in attribute_types.items():
        if value_type in (ValueType.string.value, ValueType.string_list.value):
            hints[f"attributes.{name}"] = _top_values(session, values.c.value_string, values.c.name == name)
    seen_events = session.execute(sa.select(Event.name).distinct().limit(500)).scalars().all()
    hints["events"] = sorted(set(seen_events) | set(event_types))
    return hints


def _top_values(session: Session, column: sa.ColumnElement[Any], *where: sa.ColumnElement[bool]) -> list[Any]:
    """The most common values of a column (at most HINT_LIMIT), most common first."""
    count = sa.func.count().label("n")
    query = (
        sa.select(column, count)
        .where(column.is_not(None), *where)
        .group_by(column)
        .order_by(count.desc(), column)
        .limit(HINT_LIMIT)
    )
    return [value for value, _ in session.execute(query).all()]
