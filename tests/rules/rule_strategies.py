"""Hypothesis strategies for valid rules over the test catalog (rules_harness.CATALOG)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from cohorta.rules.model import CALENDAR_PERIODS, WINDOW_CALENDAR_PERIODS

TEXT_VALUES = st.sampled_from(["PL", "pl", "DE", "Ab", "a", "b", "%", "_", "x_y", "vip", "VIP", "new", "gold", "A1",
                               "a1", "X", "ios", "sale", "Sale", "shop"])
DATES = st.sampled_from(["2024-03-01", "2024-03-30", "2024-03-31", "2024-01-01", "1990-02-28", "2000-02-29",
                         "2023-12-31"])
DATETIMES = st.sampled_from(["2024-03-31T00:00:00", "2024-03-31T02:30:00+02:00", "2024-03-10T08:00:00Z",
                             "2024-02-01T10:00:00"])
MONEY = st.sampled_from([Decimal("0"), Decimal("1"), Decimal("499.99"), Decimal("500"), Decimal("500.00"),
                         Decimal("500.01"), Decimal("250"), Decimal("10"), 0, 500])
INTS = st.integers(0, 5)
NUMBERS = st.sampled_from([Decimal("0.1"), Decimal("0.3"), Decimal("0.30000000000000004"), 5, Decimal("1.5"), 3])
DAYS = st.integers(0, 120)

FIELDS: dict[str, str] = {
    "country": "string", "profile.first_name": "string", "profile.city": "string", "profile.gender": "string",
    "profile.birthdate": "date", "profile.created_at": "datetime", "profile.member_since": "datetime",
    "profile.loyalty_member": "boolean", "summary.order_count": "integer", "summary.total_spent": "money",
    "summary.average_order_value": "money", "summary.last_order_at": "datetime", "summary.first_order_at": "datetime",
    "summary.last_order_amount": "money", "loyalty.points_balance": "integer", "loyalty.club.points_balance": "integer",
    "loyalty.club.tier": "string", "loyalty.kids.tier": "string", "attributes.tags": "list",
    "attributes.score": "number", "attributes.vip": "boolean", "attributes.anniversary": "date",
    "attributes.last_login": "datetime", "attributes.nickname": "string",
}  # fmt: skip


def scalar_for(typ: str) -> st.SearchStrategy[Any]:
    return {"string": TEXT_VALUES, "list": TEXT_VALUES, "money": MONEY, "integer": INTS, "number": NUMBERS,
            "boolean": st.booleans(), "date": DATES, "datetime": st.one_of(DATES, DATETIMES)}[typ]


def op_value(typ: str) -> st.SearchStrategy[tuple[str, Any]]:
    sc = scalar_for(typ)
    lists = st.lists(sc, min_size=1, max_size=3)
    presence = st.sampled_from([("has_value", None), ("is_unknown", None)])
    if typ == "string":
        return st.one_of(presence, st.tuples(st.sampled_from(["is", "is_not"]), sc),
                         st.tuples(st.sampled_from(["in", "not_in"]), lists),
                         st.tuples(st.sampled_from(["contains", "not_contains", "starts_with", "ends_with"]), sc))
    if typ in ("integer", "money", "number"):
        return st.one_of(presence, st.tuples(st.sampled_from(["is", "is_not", "lt", "lte", "gt", "gte"]), sc),
                         st.tuples(st.sampled_from(["in", "not_in"]), lists),
                         st.tuples(st.just("between"), st.lists(sc, min_size=2, max_size=2).map(sorted)))
    if typ == "boolean":
        return st.one_of(presence, st.tuples(st.sampled_from(["is", "is_not"]), sc))
    if typ == "list":
        return st.one_of(presence, st.tuples(st.sampled_from(["has_any", "has_all", "has_none"]), lists))
    date_only = DATES
    return st.one_of(
        presence,
        st.tuples(st.just("on"), date_only),
        st.tuples(st.sampled_from(["before", "after"]), date_only if typ == "date" else sc),
        st.tuples(st.just("between"), st.lists(date_only, min_size=2, max_size=2).map(sorted)),
        st.tuples(st.sampled_from(["exactly_days_ago", "less_than_days_ago", "more_than_days_ago", "in_next_days"]),
                  DAYS),
        st.tuples(st.just("in_calendar"), st.sampled_from(CALENDAR_PERIODS)),
        *([st.tuples(st.just("anniversary_within_days"), DAYS), st.just(("anniversary_this_month", None))]
          if typ == "date" else []),
    )


@st.composite
def condition(draw: st.DrawFn, fields: dict[str, str] = FIELDS) -> dict[str, Any]:
    f = draw(st.sampled_from(sorted(fields)))
    op, value = draw(op_value(fields[f]))
    out: dict[str, Any] = {"field": f, "op": op}
    if value is not None:
        out["value"] = value
    if fields[f] in ("string", "list") and op not in ("has_value", "is_unknown") and draw(st.booleans()):
        out["case_sensitive"] = True
    return out


WINDOWS = st.one_of(
    st.none(),
    st.builds(lambda n: {"last_days": n}, st.integers(1, 90)),
    st.builds(lambda a, b: {"days_ago": [a, b]}, st.integers(0, 60), st.integers(0, 60)),
    st.builds(lambda c: {"calendar": c}, st.sampled_from(WINDOW_CALENDAR_PERIODS)),
    st.builds(lambda a, b: {"between": [a, b]}, st.one_of(DATES, DATETIMES), st.one_of(DATES, DATETIMES)),
)
ACTIVITY_FIELDS = {
    "orders": {"status": "string", "total": "money", "created_at": "datetime"},
    "order_items": {"sku": "string", "brand": "string", "category": "string", "quantity": "integer",
                    "amount": "money", "unit_price": "money", "status": "string"},
    "points": {"program": "string", "entry": "string", "points": "integer", "reason": "string"},
    "redemptions": {"program": "string", "reward": "string"},
}
EVENT_FIELDS = {"product_viewed": {"properties.sku": "string", "properties.price": "number",
                                   "properties.tags": "list"},
                "app_opened": {"properties.platform": "string"}}
NUMERIC = ("integer", "money", "number")


@st.composite
def activity(draw: st.DrawFn) -> dict[str, Any]:
    act = draw(st.sampled_from(["orders", "order_items", "events", "points", "redemptions"]))
    out: dict[str, Any] = {"activity": act}
    if act == "events":
        ev = draw(st.sampled_from(sorted(EVENT_FIELDS)))
        out["event"] = ev
        fields = EVENT_FIELDS[ev]
    else:
        fields = ACTIVITY_FIELDS[act]
    where = draw(st.lists(condition(fields), max_size=2))
    if where:
        out["where"] = where
    w = draw(WINDOWS)
    if w is not None:
        out["window"] = w
    numeric = sorted(f for f, t in fields.items() if t in NUMERIC)
    fn = draw(st.sampled_from(["count", "sum", "avg", "min", "max"])) if numeric else "count"
    mtyp = "integer"
    if fn != "count":
        mf = draw(st.sampled_from(numeric))
        out["measure"] = {"fn": fn, "field": mf}
        mtyp = fields[mf]
    if fn == "avg" and mtyp == "integer":
        mtyp = "number"
    op, value = draw(op_value(mtyp))
    out["op"] = op
    if value is not None:
        out["value"] = value
    return out


LEAVES = st.one_of(
    condition(), condition(), activity(),
    st.builds(lambda s: {"in_segment": s}, st.sampled_from(["seg-a", "seg-b"])),
    st.builds(lambda p, s: {"sample": {"percent": p, "seed": s}},
              st.sampled_from([0, 10, 50, Decimal("33.33"), 100]), st.sampled_from(["a", "spring-holdout"])),
)
RULES = st.recursive(
    LEAVES,
    lambda kids: st.one_of(
        st.builds(lambda xs: {"and": xs}, st.lists(kids, max_size=3)),
        st.builds(lambda xs: {"or": xs}, st.lists(kids, max_size=3)),
        st.builds(lambda x: {"not": x}, kids),
    ),
    max_leaves=6,
)
