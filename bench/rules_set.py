"""The rules the rule-evaluation benchmarks run (:mod:`bench.rules_bench`), valid against the demo data's catalog.

Each :class:`BenchRule` has a name, the kind of condition it covers, its class and a ``make(k)`` function: ``make(0)``
is the benchmark rule itself, ``make(k)`` for k = 1, 2 ... a variant with another threshold, window or value (the
real-time benchmark compiles 1,000 distinct rules made this way).

Classes (the preview targets differ): ``profile`` means the rule reads only profile fields, custom attributes,
summaries and loyalty balances/tiers (one row per customer: median preview under 300 ms); ``activity`` means it
aggregates activity rows (orders, order items, events, loyalty transactions: preview under 1 s).

Values come from the demo generator (:mod:`cohorta.demo.generator`, :mod:`cohorta.demo.reference`): countries
PL/DE/FR/GB/ES/IT/NL/SE/US and a long tail, attributes occupation (string), married (boolean), club_level (string:
standard/plus/vip), children (number 0-4), interests (list of 15 hobbies), last_survey_at (datetime); 12 event kinds
with declared properties (product_viewed: category, price); brands per category (Stride, Nordpeak ... for shoes);
the loyalty program "club" with tiers bronze/silver/gold/platinum, welcome/earn/spend/expire/adjust point entries
and redemptions. The data set ends at :data:`bench.rules_bench.NOW` (2026-11-01 12:00 UTC), the rules' ``as_of``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PROFILE = "profile"  # profile/attribute/summary: one row per customer
ACTIVITY = "activity"  # aggregates over activity rows

COUNTRIES = [
    "PL",
    "DE",
    "FR",
    "GB",
    "ES",
    "IT",
    "NL",
    "SE",
    "US",
    "CZ",
    "AT",
    "BE",
    "PT",
    "IE",
    "DK",
    "NO",
    "FI",
    "CH",
    "LT",
]
CITY_PREFIXES = ["Ma", "Be", "Bo", "Li", "St", "Wa", "Pa", "Lo", "Ko", "Gr", "Ha", "Mi", "Ro", "Sa", "Le"]
OCCUPATIONS = [
    "engineer",
    "teacher",
    "nurse",
    "student",
    "designer",
    "accountant",
    "sales manager",
    "developer",
    "physician",
    "lawyer",
    "retired",
    "entrepreneur",
    "chef",
    "architect",
    "marketing specialist",
]
INTERESTS = [
    "running",
    "yoga",
    "cooking",
    "travel",
    "photography",
    "gaming",
    "fashion",
    "gardening",
    "cycling",
    "music",
    "books",
    "home decor",
    "skincare",
    "outdoor",
    "tech",
]
BRANDS = [
    "Stride",
    "Nordpeak",
    "Urbanfoot",
    "Linea",
    "Woolford",
    "Coastline",
    "Voltra",
    "Sonique",
    "Pixelon",
    "Cucina",
    "Ironleaf",
    "Kitchenista",
    "Peakform",
    "Aquaflex",
    "Trailhead",
]
CATEGORIES = ["shoes", "apparel", "beauty", "home", "kitchen", "electronics", "sports", "toys", "books", "grocery"]
TIERS = ["bronze", "silver", "gold", "platinum"]
CLUB_LEVELS = ["standard", "plus", "vip"]
CAMPAIGNS = ["spring-sale", "summer-drop", "back-to-school", "black-friday", "xmas-gifts", "club-news", "welcome"]
CALENDAR = ["this_year", "last_year", "this_quarter", "last_quarter", "this_month", "last_month"]


def pick(pool: list[Any], k: int, n: int = 1) -> list[Any]:
    """``n`` consecutive elements of ``pool`` starting at ``k`` (wrapping around)."""
    return [pool[(k + i) % len(pool)] for i in range(n)]


@dataclass(frozen=True)
class BenchRule:
    name: str
    kind: str  # what it covers, for the tables
    cls: str  # PROFILE or ACTIVITY
    make: Callable[[int], dict[str, Any]]

    @property
    def rule(self) -> dict[str, Any]:
        return self.make(0)


def _nested_profile(k: int) -> dict[str, Any]:
    return {
        "and": [
            {"field": "profile.country", "op": "in", "value": pick(COUNTRIES, k % 9, 2)},
            {
                "or": [
                    {"field": "loyalty.club.tier", "op": "in", "value": ["gold", "platinum"]},
                    {"field": "summary.total_spent", "op": "gt", "value": 2000 + 10 * k},
                ]
            },
            {"not": {"field": "attributes.interests", "op": "has_any", "value": pick(INTERESTS, 5 + k)}},
        ]
    }


def _nested_activity(k: int) -> dict[str, Any]:
    return {
        "and": [
            {"field": "profile.loyalty_member", "op": "is", "value": True},
            {"not": {"activity": "orders", "window": {"last_days": 60 + k}, "op": "gte", "value": 1}},
            {
                "or": [
                    {
                        "activity": "events",
                        "event": "newsletter_opened",
                        "window": {"last_days": 30},
                        "op": "gte",
                        "value": 2 + k % 3,
                    },
                    {"field": "attributes.club_level", "op": "is", "value": "vip"},
                ]
            },
        ]
    }


RULES: list[BenchRule] = [
    # -- profile fields -------------------------------------------------------------------------------------------
    BenchRule(
        "country_in",
        "profile.country in",
        PROFILE,
        lambda k: {"field": "profile.country", "op": "in", "value": pick(COUNTRIES, k, 3 + k // len(COUNTRIES))},
    ),
    BenchRule(
        "city_starts_with",
        "profile.city starts_with (case-insensitive)",
        PROFILE,
        lambda k: {
            "field": "profile.city",
            "op": "starts_with",
            "value": pick(CITY_PREFIXES, k)[0] if k < 30 else pick(CITY_PREFIXES, k)[0].upper(),
            "case_sensitive": k >= len(CITY_PREFIXES),
        },
    ),
    BenchRule(
        "birthday_week",
        "profile.birthdate anniversary_within_days",
        PROFILE,
        lambda k: {"field": "profile.birthdate", "op": "anniversary_within_days", "value": 7 + k},
    ),
    BenchRule(
        "signed_up_over_a_year_ago",
        "profile.created_at more_than_days_ago",
        PROFILE,
        lambda k: {"field": "profile.created_at", "op": "more_than_days_ago", "value": 365 + 5 * k},
    ),
    BenchRule(
        "loyalty_member",
        "profile.loyalty_member is",
        PROFILE,
        lambda k: (
            {"field": "profile.loyalty_member", "op": "is", "value": k % 2 == 0}
            if k < 2
            else {
                "and": [
                    {"field": "profile.loyalty_member", "op": "is", "value": k % 2 == 0},
                    {"field": "profile.country", "op": "is", "value": pick(COUNTRIES, k)[0]},
                ]
            }
        ),
    ),
    # -- custom attributes, every type ----------------------------------------------------------------------------
    BenchRule(
        "occupation_in",
        "attribute string in",
        PROFILE,
        lambda k: {"field": "attributes.occupation", "op": "in", "value": pick(OCCUPATIONS, 7 + k, 2 + k // 15)},
    ),
    BenchRule(
        "children_at_least_2",
        "attribute number gte",
        PROFILE,
        lambda k: {"field": "attributes.children", "op": "gte", "value": 2 + k * 0.25},
    ),
    BenchRule(
        "married",
        "attribute boolean is",
        PROFILE,
        lambda k: (
            {"field": "attributes.married", "op": "is", "value": k % 2 == 0}
            if k < 2
            else {
                "and": [
                    {"field": "attributes.married", "op": "is", "value": k % 2 == 0},
                    {"field": "attributes.children", "op": "gte", "value": k % 19 * 0.25},
                ]
            }
        ),
    ),
    BenchRule(
        "surveyed_last_90_days",
        "attribute datetime less_than_days_ago",
        PROFILE,
        lambda k: {"field": "attributes.last_survey_at", "op": "less_than_days_ago", "value": 90 + k},
    ),
    BenchRule(
        "interests_any",
        "attribute list has_any",
        PROFILE,
        lambda k: {"field": "attributes.interests", "op": "has_any", "value": pick(INTERESTS, 1 + k, 2 + k // 15)},
    ),
    BenchRule(
        "interests_all",
        "attribute list has_all",
        PROFILE,
        lambda k: {"field": "attributes.interests", "op": "has_all", "value": pick(INTERESTS, 3 + k, 2 + k // 15)},
    ),
    # -- summary fields ------------------------------------------------------------------------------------------
    BenchRule(
        "total_spent_over_1000",
        "summary.total_spent gt (money)",
        PROFILE,
        lambda k: {"field": "summary.total_spent", "op": "gt", "value": 1000 + 25 * k},
    ),
    BenchRule(
        "order_count_at_least_10",
        "summary.order_count gte",
        PROFILE,
        lambda k: {"field": "summary.order_count", "op": "gte", "value": 10 + k},
    ),
    BenchRule(
        "aov_50_to_100",
        "summary.average_order_value between",
        PROFILE,
        lambda k: {"field": "summary.average_order_value", "op": "between", "value": [50 + k, 100 + k]},
    ),
    BenchRule(
        "last_order_over_180_days_ago",
        "summary.last_order_at more_than_days_ago",
        PROFILE,
        lambda k: {"field": "summary.last_order_at", "op": "more_than_days_ago", "value": 180 + 3 * k},
    ),
    # -- loyalty --------------------------------------------------------------------------------------------------
    BenchRule(
        "points_balance_over_1000",
        "loyalty.points_balance gte (all programs)",
        PROFILE,
        lambda k: {"field": "loyalty.points_balance", "op": "gte", "value": 1000 + 20 * k},
    ),
    BenchRule(
        "club_points_below_100",
        "loyalty.club.points_balance lt (missing = 0 passes)",
        PROFILE,
        lambda k: {"field": "loyalty.club.points_balance", "op": "lt", "value": 100 + 10 * k},
    ),
    BenchRule(
        "club_tier_gold_plus",
        "loyalty.club.tier in",
        PROFILE,
        lambda k: (
            {"field": "loyalty.club.tier", "op": "in", "value": pick(TIERS, 2 + k, 2)}
            if k < 4
            else {
                "and": [
                    {"field": "loyalty.club.tier", "op": "is", "value": pick(TIERS, k)[0]},
                    {"field": "profile.country", "op": "is", "value": pick(COUNTRIES, k)[0]},
                ]
            }
        ),
    ),
    # -- activity -------------------------------------------------------------------------------------------------
    BenchRule(
        "no_orders_60_days",
        "orders count in last 60 days == 0",
        ACTIVITY,
        lambda k: {"activity": "orders", "window": {"last_days": 60 + k}, "op": "is", "value": 0},
    ),
    BenchRule(
        "brand_spend_90_days",
        "order_items sum(amount) where brand in last 90 days > 500",
        ACTIVITY,
        lambda k: {
            "activity": "order_items",
            "where": [{"field": "brand", "op": "is", "value": pick(BRANDS, k)[0]}],
            "window": {"last_days": 90 + k // len(BRANDS)},
            "measure": {"fn": "sum", "field": "amount"},
            "op": "gt",
            "value": 500,
        },
    ),
    BenchRule(
        "product_viewed_3x_30_days",
        "events count in last 30 days >= 3",
        ACTIVITY,
        lambda k: {
            "activity": "events",
            "event": "product_viewed",
            "window": {"last_days": 30 + k},
            "op": "gte",
            "value": 3,
        },
    ),
    BenchRule(
        "shoes_viewed_2x_30_days",
        "events with a declared-property filter",
        ACTIVITY,
        lambda k: {
            "activity": "events",
            "event": "product_viewed",
            "where": [{"field": "properties.category", "op": "is", "value": pick(CATEGORIES, k)[0]}],
            "window": {"last_days": 30 + k // len(CATEGORIES)},
            "op": "gte",
            "value": 2,
        },
    ),
    BenchRule(
        "earned_points_this_year",
        "points sum(points) where entry=earn this_year",
        ACTIVITY,
        lambda k: {
            "activity": "points",
            "where": [{"field": "entry", "op": "is", "value": "earn"}],
            "window": {"calendar": pick(CALENDAR, k)[0]},
            "measure": {"fn": "sum", "field": "points"},
            "op": "gt",
            "value": 500 + 10 * (k // len(CALENDAR)),
        },
    ),
    BenchRule(
        "redeemed_last_quarter",
        "redemptions count in last_quarter",
        ACTIVITY,
        lambda k: {
            "activity": "redemptions",
            "window": {"calendar": pick(CALENDAR, 3 + k)[0]},
            "op": "gte",
            "value": 1 + k // len(CALENDAR),
        },
    ),
    # -- combinations and sampling --------------------------------------------------------------------------------
    BenchRule("nested_profile", "and / or / not over profile, tier, summary, list", PROFILE, _nested_profile),
    BenchRule("nested_activity", "and / not(orders) / or(events, attribute)", ACTIVITY, _nested_activity),
    BenchRule(
        "holdout_10_percent",
        "sample 10% (stable holdout) and country",
        PROFILE,
        lambda k: {
            "and": [
                {"field": "profile.country", "op": "is", "value": pick(COUNTRIES, k)[0]},
                {"sample": {"percent": 10 + k % 50, "seed": f"q4-holdout-{k // 50}"}},
            ]
        },
    ),
]

BY_NAME = {r.name: r for r in RULES}


def variants(total: int) -> list[tuple[str, dict[str, Any]]]:
    """``total`` rules: every benchmark rule and its variants, round robin, as (base name, rule JSON)."""
    out: list[tuple[str, dict[str, Any]]] = []
    k = 0
    while len(out) < total:
        for r in RULES:
            if len(out) < total:
                out.append((r.name, r.make(k)))
        k += 1
    return out
