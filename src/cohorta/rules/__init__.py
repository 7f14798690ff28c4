"""Cohorta's rule language: segment rules as data, validated against a field catalog and compiled twice.

A rule is JSON (or text) describing which customers belong to a segment. It compiles into (a) one Ibis expression
over the store's tables returning every matching customer id (batch) and (b) a Python predicate over one customer's
snapshot (real time). Both share one bound form (:mod:`cohorta.rules.plan`), so they always give the same answer.
This package is pure: no database, no HTTP.

Public API
----------
Model and JSON
    ``Rule`` (pydantic root model; ``Rule.root`` is the node), node classes ``And``, ``Or``, ``Not``, ``Condition``,
    ``Activity``, ``InSegment``, ``Sample``; ``json_schema() -> dict``; ``node_to_json(rule) -> dict``.
Catalog
    ``Catalog(attribute_definitions, event_definitions, programs, value_hints)``; ``catalog.field(path)``,
    ``catalog.as_json()`` (for ``GET /api/v1/fields``); ``FieldSpec``.
Validation
    ``validate(rule_json, catalog, currency_exponent=None) -> Rule`` raising ``RuleError`` whose ``problems`` are
    ``Problem(path, message)`` with JSON paths like ``$.and[1].value``. Limits: :mod:`cohorta.rules.limits`.
Text
    ``to_text(rule) -> str``; ``parse_text(text) -> Rule`` (grammar in :mod:`cohorta.rules.text`).
Ids and references
    ``assign_ids(rule) -> Rule``; ``strip_ids(rule)``; ``segment_references(rule) -> set[str]``;
    ``find_cycle(graph) -> list[str] | None``.
Evaluation
    ``Context(as_of, timezone="UTC", currency_exponent=2, catalog=Catalog())``;
    ``compile_batch(rule, ctx, tables=TABLES) -> ibis.Table`` (one column ``customer_id``, distinct);
    ``compile_batch_or_complement(rule, ctx) -> (ibis.Table, bool)`` (with True: the ids *not* matching);
    ``compile_predicate(rule, ctx) -> Callable[[CustomerSnapshot], bool]``; ``CustomerSnapshot``;
    ``rule_requirements(rule, ctx) -> Requirements``; ``event_row_effect(rule, ctx)``, ``order_effect(rule, ctx)``,
    ``loyalty_effect(rule, ctx)`` (what can a new event, order or loyalty row do to the rule's answer?);
    ``explain(rule, snapshot, ctx) -> dict``;
    ``next_change(rule, snapshot, ctx) -> datetime | None`` (when the answer may next change by the clock alone);
    ``time_leaves(rule, ctx)`` (the parts of a rule that move with the clock, for wake-ups planned set-based);
    ``kept_answer(rule, ctx)`` (the answers only an arriving row can change: no wake-up to plan for them);
    ``TABLES`` / ``Tables`` (unbound Ibis tables of the storage schema).

Semantics in one place
----------------------
* Null policy: a condition on a missing value is false, except ``is_not``, ``not_in``, ``not_contains``,
  ``has_none`` and ``is_unknown`` (negations of ``is``, ``in``, ``contains``, ``has_any``, ``has_value``), which
  are true. ``not`` is two-valued negation. Count/sum over no activity are 0; avg/min/max are missing.
* Text comparisons ignore case unless ``case_sensitive`` is true (ASCII folding is the portable guarantee).
* Money values are decimals in the project currency, compared in integer minor units (more decimals than the
  currency has is an error). Number attributes compare as floats.
* Relative dates are day-granular in the segment's zone: with ``today`` the local day of ``as_of`` and ``d`` the
  local days between a value and today: ``less_than_days_ago N`` is ``0 <= d < N``, ``exactly_days_ago N`` is
  ``d == N``, ``more_than_days_ago N`` is ``d > N``; ``in_next_days N`` is today to today + N. Weeks start Monday.
  ``before D``/``after D`` exclude day D; ``between`` includes both days; ``on D`` is that local day.
* Anniversaries (date fields only, e.g. birthdate) compare month and day; Feb 29 counts on Feb 28 in other years.
* Windows: ``last_days N`` is the last N x 24 h of local wall-clock time before ``as_of``; ``days_ago [N, M]`` the
  local days N..M ago; ``calendar`` a local period; ``between`` dates (whole local days) or instants (naive ones
  are local). Activity after ``as_of`` never counts. Orders and order items count only statuses paid/fulfilled
  unless ``where`` names ``status``.
* Sample: bucket = a fixed integer hash of (customer id, seed) mod 10000; in the sample when bucket < percent*100.
"""

from .batch import compile_batch, compile_batch_or_complement
from .catalog import Catalog, FieldSpec
from .errors import Problem, RuleError
from .explain import explain
from .model import Activity, And, Condition, InSegment, Not, Or, Rule, Sample, json_schema, node_to_json
from .next_change import NextChangeCache, next_change
from .plan import Requirements
from .predicate import CustomerSnapshot, compile_predicate
from .refs import assign_ids, find_cycle, segment_references, strip_ids
from .requirements import NewOrder, RowEffect, event_row_effect, loyalty_effect, order_effect, rule_requirements
from .tables import TABLES, Tables
from .text import parse_text, to_text
from .timeutil import Context
from .validate import validate
from .wakeup_plan import ActivityLeaf, FieldLeaf, Gate, KeptAnswer, kept_answer, time_leaves

__all__ = [
    "TABLES",
    "Activity",
    "ActivityLeaf",
    "And",
    "Catalog",
    "Condition",
    "Context",
    "CustomerSnapshot",
    "FieldLeaf",
    "FieldSpec",
    "Gate",
    "InSegment",
    "KeptAnswer",
    "NewOrder",
    "NextChangeCache",
    "Not",
    "Or",
    "Problem",
    "Requirements",
    "RowEffect",
    "Rule",
    "RuleError",
    "Sample",
    "Tables",
    "assign_ids",
    "compile_batch",
    "compile_batch_or_complement",
    "compile_predicate",
    "event_row_effect",
    "explain",
    "find_cycle",
    "json_schema",
    "kept_answer",
    "loyalty_effect",
    "next_change",
    "node_to_json",
    "order_effect",
    "parse_text",
    "rule_requirements",
    "segment_references",
    "strip_ids",
    "time_leaves",
    "to_text",
    "validate",
]  # fmt: skip
