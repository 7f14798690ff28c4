"""Preview and explain of draft rules. No HTTP; reads only."""

from __future__ import annotations

import functools
import re
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from cohorta import rules
from cohorta.access.service import Principal, visible_to
from cohorta.clock import Clock
from cohorta.config import Settings
from cohorta.customers.service import customer_id_for
from cohorta.errors import FieldError, InvalidInput, UnknownReference
from cohorta.evaluation import store
from cohorta.evaluation.catalog import build_catalog
from cohorta.evaluation.idsets import IdSet
from cohorta.evaluation.snapshots import load_snapshots
from cohorta.rules.model import And, Not, Or, walk
from cohorta.rules.plan import BSample, bind
from cohorta.segments.models import Segment, SegmentMember, SegmentStatus
from cohorta.segments.schemas import DraftRule, ExplainOut, NodeCount, PreviewIn, PreviewOut, Warning

SAMPLE_COLUMNS = ["source_id", "first_name", "last_name", "email", "city", "country"]
# Activity tables large enough that an activity condition without a window deserves a warning.
LARGE_ACTIVITY_ROWS = 1_000_000


def json_path_loc(path: str, root: str) -> tuple[str | int, ...]:
    """``$.and[1].value`` -> ``(root, "and", 1, "value")``."""
    loc: list[str | int] = [root]
    for name, index in re.findall(r"\.([^.\[\]]+)|\[(\d+)\]", path):
        loc.append(int(index) if index else name)
    return tuple(loc)


def checked_rule(
    draft: DraftRule, settings: Settings, catalog: rules.Catalog, known_segments: set[str] | None = None
) -> rules.Rule:
    """The draft's rule, validated against the catalog, with an id on every node; InvalidInput naming each problem.

    ``in_segment`` may only name segments in ``known_segments`` (those that exist and are not archived).
    """
    try:
        if draft.text is not None:
            parsed = rules.parse_text(draft.text)
            rule = rules.validate(rules.node_to_json(parsed), catalog, settings.currency_exponent)
        else:
            rule = rules.validate(draft.rule, catalog, settings.currency_exponent)
    except rules.RuleError as exc:
        root = "text" if draft.text is not None else "rule"
        raise InvalidInput(
            [
                FieldError(json_path_loc(p.path, root) if root == "rule" else (root,), p.message, "rule_error")
                for p in exc.problems
            ]
        ) from None
    unknown = sorted(rules.segment_references(rule) - (known_segments or set()))
    if unknown:  # a segment hidden from the caller is as unknown as one that never existed: 404 for both
        raise UnknownReference(
            [FieldError((draft_root(draft),), f"unknown segment {ref!r}", "unknown_segment") for ref in unknown]
        )
    return rules.assign_ids(rule)


def draft_root(draft: DraftRule) -> str:
    return "text" if draft.text is not None else "rule"


def context(draft: DraftRule, settings: Settings, clock: Clock, catalog: rules.Catalog) -> rules.Context:
    zone = draft.timezone or settings.timezone
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput([FieldError(("timezone",), f"unknown time zone {zone!r}")]) from None
    as_of: datetime = draft.as_of or clock.now()
    return rules.Context(as_of=as_of, timezone=zone, currency_exponent=settings.currency_exponent, catalog=catalog)


def preview(session: Session, settings: Settings, clock: Clock, draft: PreviewIn, principal: Principal) -> PreviewOut:
    started = time.perf_counter()
    catalog = build_catalog(session)
    rule = checked_rule(draft, settings, catalog, live_segment_ids(session, principal))
    ctx = context(draft, settings, clock, catalog)
    population = store.population(session)
    matches = NodeMatches(session, ctx, population)
    matching = matches.of(rule.root)
    count = matching.count(population)
    return PreviewOut(
        count=count,
        population=population,
        share=count / population if population else 0.0,
        as_of=ctx.as_of,
        timezone=str(ctx.tz),
        rule=rules.node_to_json(rule),
        text=rules.to_text(rule),
        sample=store.customers_by_id(session, matches.lowest(matching, draft.sample_size), SAMPLE_COLUMNS),
        nodes=matches.counts(rule) if draft.dropoff else [],
        warnings=_warnings(session, rule, count, population),
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )


class NodeMatches:
    """The customers each node of a rule matches, each condition read from the store once, as a set of ids
    (:mod:`cohorta.evaluation.idsets`); groups, AND prefixes and counts are worked out from those sets.

    Batch evaluation composes the same way (an AND is the intersection of its members' matches, a NOT the
    complement among all customers), so every count is that of evaluating the node on its own. One query for the
    whole rule, then one per node and per AND prefix for the drop-off, evaluated each condition several times: at
    1,000,000 customers `nested_profile` took 0.50 s to count and 2.3 s with its drop-off; this way 0.26 s for
    both. A rule of one condition costs what one query did, within 5% either way (docs/design.md)."""

    def __init__(self, session: Session, ctx: rules.Context, population: int) -> None:
        self.session = session
        self.ctx = ctx
        self.population = population
        self.passing: dict[int, int] = {}  # by id() of the node
        self.cumulative: dict[int, int] = {}  # AND members: passing it and every earlier member

    def of(self, node: Any) -> IdSet:
        """The customers ``node`` matches; counts it and its descendants on the way."""
        found: IdSet
        if isinstance(node, And):
            found = IdSet.everybody()
            for index, member in enumerate(node.and_):
                found = found & self.of(member)
                self.cumulative[id(member)] = found.count(self.population) if index else self.passing[id(member)]
        elif isinstance(node, Or):
            found = IdSet.nobody()
            for member in node.or_:
                found = found | self.of(member)
        elif isinstance(node, Not):
            found = ~self.of(node.not_)
        elif isinstance(node, rules.Sample):
            found = self._sampled(node)
        else:
            ids, others = store.matching_or_other_ids(self.session, node, self.ctx)
            found = ~IdSet.of(ids) if others else IdSet.of(ids)
        self.passing[id(node)] = found.count(self.population)
        return found

    def counts(self, rule: rules.Rule) -> list[NodeCount]:
        """The drop-off: every node counted by :meth:`of` (``where`` conditions filter rows and are not), in order."""
        return [
            NodeCount(
                id=node.id,
                text=rules.to_text(node),
                passing=self.passing[id(node)],
                cumulative=self.cumulative.get(id(node)),
            )
            for node in walk(rule.root)
            if getattr(node, "id", None) is not None and id(node) in self.passing
        ]

    def lowest(self, found: IdSet, limit: int) -> list[int]:
        """Up to ``limit`` of the customers in ``found``, lowest ids first."""
        return (found if not found.complement else self._customers & found).ids(limit)

    def _sampled(self, node: rules.Sample) -> IdSet:
        # Bucketed here over every customer id rather than read from the store: "one country and a 10% sample" at
        # 1,000,000 customers counted in 0.42 s as one SQLite query, in 0.11 s this way.
        bound = bind(node, self.ctx)
        assert isinstance(bound, BSample)
        customers = self._customers.mask
        return IdSet(customers & bound.includes(np.arange(len(customers), dtype=np.int64)))

    @functools.cached_property
    def _customers(self) -> IdSet:
        """Every customer, read once if needed."""
        return IdSet.of(store.customer_ids(self.session))


def _warnings(session: Session, rule: rules.Rule, count: int, population: int) -> list[Warning]:
    warnings: list[Warning] = []
    if population and count == 0:
        warnings.append(Warning(code="matches_nobody", message="No customer matches this rule."))
    if population and count == population:
        warnings.append(Warning(code="matches_everybody", message="Every customer matches this rule."))
    if isinstance(rule.root, Not):
        warnings.append(
            Warning(
                code="negation_only",
                message="The rule only says who is out; check it is meant "
                "to match everyone else, including customers with no data.",
                node=rule.root.id,
            )
        )
    for node in walk(rule.root):
        if isinstance(node, rules.Activity) and node.window is None:
            rows = _activity_rows(session, node.activity)
            if rows >= LARGE_ACTIVITY_ROWS:
                warnings.append(
                    Warning(
                        code="unbounded_window",
                        node=node.id,
                        message=f"No window: this condition reads all {rows:,} rows of "
                        f"{node.activity} history; add a window if recent activity is meant.",
                    )
                )
    return warnings


def _activity_rows(session: Session, activity: str) -> int:
    table = {
        "orders": "orders",
        "order_items": "order_items",
        "events": "events",
        "points": "loyalty_transactions",
        "redemptions": "loyalty_transactions",
    }[activity]
    # An estimate is enough for a warning; exact COUNT(*) on a large table costs more than the preview.
    from sqlalchemy import text

    if session.get_bind().dialect.name == "postgresql":
        estimate = session.execute(text("SELECT reltuples::bigint FROM pg_class WHERE relname = :t"), {"t": table})
        return max(int(estimate.scalar() or 0), 0)
    return int(session.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table}")).scalar_one())


def explain_draft(session: Session, settings: Settings, clock: Clock, draft: Any, principal: Principal) -> ExplainOut:
    catalog = build_catalog(session)
    rule = checked_rule(draft, settings, catalog, live_segment_ids(session, principal))
    ctx = context(draft, settings, clock, catalog)
    return explain_rule(session, rule, ctx, draft.source_id)


def explain_rule(session: Session, rule: rules.Rule, ctx: rules.Context, source_id: str) -> ExplainOut:
    customer_id = customer_id_for(session, source_id)
    requirements = rules.rule_requirements(rule, ctx)
    memberships = {customer_id: _segments_of(session, customer_id)} if requirements.segments else None
    snapshot = load_snapshots(session, [customer_id], requirements, segment_ids=memberships)[customer_id]
    tree = rules.explain(rule, snapshot, ctx)
    return ExplainOut(
        source_id=source_id,
        matches=bool(tree["result"]),
        as_of=ctx.as_of,
        timezone=str(ctx.tz),
        text=rules.to_text(rule),
        tree=tree,
    )


def live_segment_ids(session: Session, principal: Principal) -> set[str]:
    """Segments a rule may reference: every one not archived, among those the caller may see."""
    query = sa.select(Segment.id).where(Segment.status != SegmentStatus.archived.value)
    query = query.where(visible_to(Segment.team, principal))
    return set(session.scalars(query))


def _segments_of(session: Session, customer_id: int) -> set[str]:
    return set(session.scalars(sa.select(SegmentMember.segment_id).where(SegmentMember.customer_id == customer_id)))
