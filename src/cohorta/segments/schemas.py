"""API shapes of segment preview and explain."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

MAX_RULE_TEXT = 20_000


class DraftRule(BaseModel):
    """A rule given as a JSON tree (``rule``) or in its text form (``text``): exactly one of them."""

    model_config = ConfigDict(extra="forbid")

    rule: dict[str, Any] | None = Field(default=None, description="The rule tree (see GET /api/v1/rules/schema)")
    text: str | None = Field(default=None, max_length=MAX_RULE_TEXT, description="The rule in its text form")
    as_of: AwareDatetime | None = Field(default=None, description="Evaluate as at this instant (default: now)")
    timezone: str | None = Field(default=None, description="Zone for relative dates (default: the project's)")

    @model_validator(mode="after")
    def _one_form(self) -> DraftRule:
        if (self.rule is None) == (self.text is None):
            raise ValueError("give exactly one of 'rule' (the JSON tree) or 'text' (the text form)")
        return self


class PreviewIn(DraftRule):
    sample_size: int = Field(default=10, ge=0, le=100)
    dropoff: bool = Field(default=True, description="Count the customers passing each node (one query per node)")


class NodeCount(BaseModel):
    id: str
    text: str
    passing: int = Field(description="Customers for whom this node alone is true")
    cumulative: int | None = Field(
        default=None, description="Inside an AND: customers passing this node and every earlier sibling"
    )


class Warning(BaseModel):
    code: str
    message: str
    node: str | None = None


class PreviewOut(BaseModel):
    count: int
    population: int
    share: float = Field(description="count / population (0 when there are no customers)")
    as_of: AwareDatetime
    timezone: str
    rule: dict[str, Any] = Field(description="The rule with an id on every node")
    text: str
    sample: list[dict[str, Any]]
    nodes: list[NodeCount]
    warnings: list[Warning]
    duration_ms: float


class ExplainIn(DraftRule):
    source_id: str = Field(min_length=1, max_length=255)


class ExplainOut(BaseModel):
    source_id: str
    matches: bool
    as_of: AwareDatetime
    timezone: str
    text: str
    tree: dict[str, Any] = Field(description="Per node: id, kind, text, result, observed values, changes_by")
