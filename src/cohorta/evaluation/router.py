"""HTTP routes about the rule language itself: its JSON Schema, the field catalog, text <-> tree."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from cohorta import rules
from cohorta.deps import ReaderDep, ReadSessionDep, SessionDep, SettingsDep
from cohorta.evaluation.catalog import build_catalog
from cohorta.segments.preview import checked_rule, live_segment_ids
from cohorta.segments.schemas import MAX_RULE_TEXT, DraftRule

router = APIRouter(tags=["rules"])


@router.get("/rules/schema")
def rule_schema() -> dict[str, Any]:
    """The JSON Schema of a rule tree."""
    return rules.json_schema()


@router.get("/fields")
def fields(session: SessionDep) -> dict[str, Any]:
    """The field catalog: every path a rule may use, its type, label, allowed operators and known values."""
    return build_catalog(session, with_hints=True).as_json()


class RuleForms(BaseModel):
    rule: dict[str, Any]
    text: str


class TextIn(BaseModel):
    text: str = Field(max_length=MAX_RULE_TEXT)


@router.post("/rules/parse", response_model=RuleForms)
def parse(body: TextIn, session: ReadSessionDep, settings: SettingsDep, principal: ReaderDep) -> RuleForms:
    """Text form -> validated tree (with node ids) and its canonical text."""
    known = live_segment_ids(session, principal)
    rule = checked_rule(DraftRule(text=body.text), settings, build_catalog(session), known)
    return RuleForms(rule=rules.node_to_json(rule), text=rules.to_text(rule))


@router.post("/rules/format", response_model=RuleForms)
def format_rule(
    body: dict[str, Any], session: ReadSessionDep, settings: SettingsDep, principal: ReaderDep
) -> RuleForms:
    """Tree -> validated tree (with node ids) and its text form."""
    rule = checked_rule(DraftRule(rule=body), settings, build_catalog(session), live_segment_ids(session, principal))
    return RuleForms(rule=rules.node_to_json(rule), text=rules.to_text(rule))
