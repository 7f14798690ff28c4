"""API shapes of segment preview and explain."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

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


# --- definitions -------------------------------------------------------------------------------------------------

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=255)]
GroupName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
MAX_STATIC_IDS = 1_000_000


class SegmentFields(BaseModel):
    """Fields shared by create and update."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True)] | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    rule: dict[str, Any] | None = Field(default=None, description="Dynamic segments: the rule tree")
    text: Annotated[str, StringConstraints(max_length=MAX_RULE_TEXT)] | None = Field(
        default=None, description="Dynamic segments: the rule in its text form (instead of rule)"
    )
    timezone: str | None = Field(default=None, description="Zone for relative dates; default: the project's")
    starts_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    store: Annotated[str, StringConstraints(max_length=255)] | None = Field(default=None, description="null: all")
    team: Annotated[str, StringConstraints(max_length=64)] | None = None
    customer_groups: list[GroupName] | None = Field(default=None, max_length=50)
    sync_period_seconds: int | None = Field(default=None, ge=60, le=90 * 86400)


class SegmentIn(SegmentFields):
    name: Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True)]
    type: Literal["dynamic", "static", "external"] = "dynamic"
    status: Literal["active", "inactive"] = "active"
    customers: list[Identifier] | None = Field(
        default=None, max_length=MAX_STATIC_IDS, description="Static or external: the members' source_ids"
    )

    @model_validator(mode="after")
    def _fits_type(self) -> SegmentIn:
        has_rule = self.rule is not None or self.text is not None
        if self.rule is not None and self.text is not None:
            raise ValueError("give 'rule' or 'text', not both")
        if self.type == "dynamic" and not has_rule:
            raise ValueError("a dynamic segment needs a rule ('rule' or 'text')")
        if self.type == "external" and has_rule:
            raise ValueError("an external segment has no rule: its members come from another system")
        if self.type == "static" and has_rule and self.customers is not None:
            raise ValueError("a static segment comes from a rule snapshot or a list of customers, not both")
        return self


class SegmentPatch(SegmentFields):
    @model_validator(mode="after")
    def _one_rule_form(self) -> SegmentPatch:
        if self.rule is not None and self.text is not None:
            raise ValueError("give 'rule' or 'text', not both")
        return self


class RefreshOut(BaseModel):
    state: str
    reason: str | None = Field(
        description="definition, refresh, safety_net, window (a start or expiry passed) or list (a new static "
        "segment's long list entering in the background)"
    )
    requested_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    entered: int | None
    exited: int | None
    error: str | None
    attempts: int


class SegmentOut(BaseModel):
    id: str
    name: str
    description: str | None
    type: str
    status: str
    rule: dict[str, Any] | None
    text: str | None
    conditions: int
    timezone: str | None
    starts_at: datetime | None
    expires_at: datetime | None
    store: str | None
    team: str | None
    customer_groups: list[str]
    sync_period_seconds: int | None
    version: int
    members: int
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    updated_by: str | None
    archived_at: datetime | None
    refresh: RefreshOut
    drift: DriftOut
    statistics: StatisticsOut | None = Field(default=None, description="The members' figures (in lists and reads)")


class StatisticsOut(BaseModel):
    """Figures of the members, kept with membership: entries and exits count at once, changes of the members' own
    spending with the next recount (``as_of``; every COHORTA_STATS_PERIOD_SECONDS and after every recompute)."""

    avg_transaction_value: Decimal | None = Field(description="Members' spending / their transactions")
    avg_transactions: float | None = Field(description="Transactions per member")
    avg_spending: Decimal | None = Field(description="Spending per member (historical CLV)")
    avg_clv: Decimal | None = Field(description="Predicted 12-month CLV per member; null until CLV is modelled")
    as_of: datetime | None = Field(description="The last exact recount")


class DriftOut(BaseModel):
    """The last safety-net recompute: members it had to add or remove (non-zero means live updates missed them)."""

    checked_at: datetime | None
    entered: int | None
    exited: int | None


class SegmentPage(BaseModel):
    items: list[SegmentOut]
    total: int


class VersionOut(BaseModel):
    version: int
    name: str
    text: str | None
    rule: dict[str, Any] | None
    created_at: datetime
    created_by: str | None
    restored_from: int | None
    diff: list[str] = Field(
        description="Changes from the previous version: lines of conditions, '-' removed, '+' added"
    )


class ListChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customers: list[Identifier] = Field(max_length=MAX_STATIC_IDS)


class ListChangeOut(BaseModel):
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    unknown: list[str] = Field(default_factory=list, description="source_ids that are not customers (not added)")
    members: int


class CsvRow(BaseModel):
    row: int = Field(description="Line number in the file (the header, when there is one, is line 1)")
    source_id: str


class CsvImportOut(BaseModel):
    """A static segment made from an uploaded CSV file, with what happened to every row that did not make it."""

    segment: SegmentOut
    rows: int = Field(description="Rows with a value")
    members: int = Field(
        description="Customers in the list (known, each once); a list over 20,000 enters the segment's membership "
        "in the background (segment.refresh.state 'queued')"
    )
    unknown: list[CsvRow] = Field(description="Rows whose source_id is not a customer (not added); first 1,000")
    unknown_count: int
    duplicates: int = Field(description="Rows repeating an earlier row's source_id")
    blank_rows: list[int] = Field(description="Line numbers of rows without a value; first 1,000")


class MemberOut(BaseModel):
    source_id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    city: str | None
    country: str | None
    order_count: int
    total_spent: str
    last_order_at: datetime | None
    points_balance: int
    since: datetime
    attributes: dict[str, Any] = Field(default_factory=dict, description="The custom attributes asked for")


class MemberPage(BaseModel):
    items: list[MemberOut]
    total: int
    limit: int
    offset: int


class CustomerGroupsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groups: list[GroupName] = Field(max_length=100, description="The hand-assigned groups (replaces them)")


class CustomerSegmentOut(BaseModel):
    id: str
    name: str
    type: str
    customer_groups: list[str]
    since: datetime


class SizePoint(BaseModel):
    day: str = Field(description="Local date (project time zone)")
    members: int = Field(description="Members at the end of that day")
    entered: int
    exited: int


class MembershipChangeOut(BaseModel):
    segment_id: str
    source_id: str | None
    change: Literal["entered", "exited"]
    cause: str
    version: int
    at: datetime


class UsedBy(BaseModel):
    type: Literal["campaign", "segment", "webhook", "export", "source"]
    id: str
    name: str
    status: str
    detail: str = Field(description="How it uses the segment, e.g. 'promotion, include'")


class UsageOut(BaseModel):
    """Every consumer of a segment. Webhook subscriptions, scheduled exports and sources arrive with their features;
    the lists are part of the contract already."""

    campaigns: list[UsedBy]
    segments: list[UsedBy]
    webhooks: list[UsedBy]
    exports: list[UsedBy]
    sources: list[UsedBy]
    hidden: int = Field(description="Consumers in teams the caller cannot see (they still block deletion)")


SEGMENT_SORTS = (
    "name", "members", "avg_transaction_value", "avg_transactions", "avg_spending", "avg_clv", "created_at",
)  # fmt: skip


class SegmentFilters(BaseModel):
    """The segment list's search, filters (all optional, combined with AND) and sort. Amounts are decimals in the
    project's currency; ranges are inclusive."""

    q: str | None = Field(default=None, max_length=255, description="Name contains (case-insensitive)")
    status: Literal["active", "inactive", "archived"] | None = None
    type: Literal["dynamic", "static", "external"] | None = None
    team: str | None = Field(default=None, max_length=64)
    store: str | None = Field(default=None, max_length=255)
    description: str | None = Field(default=None, max_length=255, description="Description contains")
    created_from: date | None = Field(default=None, description="Created on or after this day (project time zone)")
    created_to: date | None = Field(default=None, description="Created on or before this day")
    members_min: int | None = Field(default=None, ge=0)
    members_max: int | None = Field(default=None, ge=0)
    avg_transaction_value_min: Decimal | None = None
    avg_transaction_value_max: Decimal | None = None
    avg_transactions_min: float | None = None
    avg_transactions_max: float | None = None
    avg_spending_min: Decimal | None = None
    avg_spending_max: Decimal | None = None
    avg_clv_min: Decimal | None = None
    avg_clv_max: Decimal | None = None
    sort: str = Field(default="name", description="One of " + ", ".join(SEGMENT_SORTS) + "; '-' prefix: descending")
