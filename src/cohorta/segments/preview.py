"""Preview and explain of draft rules. No HTTP; reads only."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
from cohorta.evaluation.snapshots import load_snapshots
from cohorta.rules.model import Not, walk
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
    matches = store.NodeMatches(session, ctx, population)
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
        nodes=node_counts(matches, rule) if draft.dropoff else [],
        warnings=_warnings(session, rule, count, population),
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )


def node_counts(matches: store.NodeMatches, rule: rules.Rule) -> list[NodeCount]:
    """The drop-off: every node counted by ``matches`` (``where`` conditions filter rows and are not), in order."""
    return [
        NodeCount(
            id=node.id,
            text=rules.to_text(node),
            passing=matches.passing[id(node)],
            cumulative=matches.cumulative.get(id(node)),
        )
        for node in walk(rule.root)
        if getattr(node, "id", None) is not None and id(node) in matches.passing
    ]


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
