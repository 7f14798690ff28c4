"""API shapes of the customer data store (request and response bodies under /api/v1)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import pycountry
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from cohorta.customers.models import GiftCardOperation, OrderStatus, PointsEntry, ValueType

# Limits on input; documented in docs/api.md.
MAX_SHORT_TEXT = 255
MAX_LONG_TEXT = 2000
MAX_OBJECT_KEYS = 100
MAX_ORDER_ITEMS = 1000

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True)]
ShortText = Annotated[str, StringConstraints(max_length=MAX_SHORT_TEXT)]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
EventName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$")]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, allow_inf_nan=False)]


def _bounded_object(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_OBJECT_KEYS:
        raise ValueError(f"has more than {MAX_OBJECT_KEYS} keys")
    for key in value:
        if len(key) > 64:
            raise ValueError(f"key {key[:20]!r}... is longer than 64 characters")
    return value


BoundedObject = Annotated[dict[str, Any], AfterValidator(_bounded_object)]


def _country_code(value: str) -> str:
    value = value.upper()
    if pycountry.countries.get(alpha_2=value) is None:
        raise ValueError("is not an ISO 3166-1 alpha-2 country code")
    return value


CountryCode = Annotated[str, StringConstraints(min_length=2, max_length=2), AfterValidator(_country_code)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=MAX_LONG_TEXT)


class CustomerIn(Strict):
    """A customer profile. On upsert, fields left out are kept; a field sent as null is cleared."""

    first_name: ShortText | None = None
    last_name: ShortText | None = None
    email: Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    phone: Annotated[str, StringConstraints(max_length=64, pattern=r"^\+?[0-9 ()./-]{3,64}$")] | None = None
    birthdate: date | None = None
    gender: Annotated[str, StringConstraints(max_length=32)] | None = None
    postal_code: Annotated[str, StringConstraints(max_length=32)] | None = None
    city: ShortText | None = None
    state: ShortText | None = None
    country: CountryCode | None = None
    created_at: AwareDatetime | None = Field(
        default=None, description="When the customer was created in the client's system"
    )
    source: Annotated[str, StringConstraints(max_length=64)] | None = None
    source_metadata: BoundedObject | None = None
    store: ShortText | None = None
    company: ShortText | None = None
    loyalty_member: bool | None = None
    member_since: AwareDatetime | None = None
    attributes: BoundedObject | None = Field(
        default=None, description="Custom attributes, typed by the attribute schema; a null value removes one"
    )

    @field_validator("birthdate")
    @classmethod
    def _plausible_birthdate(cls, value: date | None) -> date | None:
        if value is not None and value.year < 1900:
            raise ValueError("is before 1900")
        return value


class CustomerBulkItem(CustomerIn):
    source_id: Identifier


class CustomerBulkIn(Strict):
    items: list[CustomerBulkItem] = Field(min_length=1)


class ProgramSummaryOut(BaseModel):
    program: str
    points_balance: int
    tier: str | None


class GiftCardOut(BaseModel):
    code: str
    balance: Decimal


class SummaryOut(BaseModel):
    order_count: int
    total_spent: Decimal
    average_order_value: Decimal | None
    first_order_at: datetime | None
    last_order_at: datetime | None
    last_order_amount: Decimal | None
    points_balance: int
    redemption_count: int
    referral_count: int
    gift_card_balance: Decimal
    programs: list[ProgramSummaryOut]
    gift_cards: list[GiftCardOut]
    predicted_clv: Decimal | None = Field(
        default=None, description="Expected spend over the CLV horizon (docs/analytics.md); null until scored"
    )


class CustomerGroupOut(BaseModel):
    group: str
    origins: list[str] = Field(description="'manual' and/or the ids of the segments that give the group")


class CustomerOut(BaseModel):
    source_id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    birthdate: date | None
    gender: str | None
    postal_code: str | None
    city: str | None
    state: str | None
    country: str | None
    created_at: datetime
    source: str | None
    source_metadata: dict[str, Any] | None
    store: str | None
    company: str | None
    loyalty_member: bool
    member_since: datetime | None
    updated_at: datetime
    attributes: dict[str, Any]
    summary: SummaryOut
    groups: list[CustomerGroupOut] = Field(default_factory=list, description="Customer groups, each once, with origins")


class WriteResult(BaseModel):
    """What one write did.

    ``created``; ``updated``; ``unchanged`` (a customer sent again with the same values); ``duplicate`` (an order,
    event or loyalty transaction sent again with the same content: nothing changed).
    """

    id: str
    result: Literal["created", "updated", "unchanged", "duplicate"]


class BulkResult(BaseModel):
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    items: list[WriteResult] = Field(default_factory=list)


class OrderItemIn(Strict):
    sku: Identifier
    name: Annotated[str, StringConstraints(max_length=512)] | None = None
    category: ShortText | None = None
    brand: ShortText | None = None
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    unit_price: Money = Decimal(0)


class OrderIn(Strict):
    id: Identifier
    customer: Identifier = Field(description="The customer's source_id")
    status: OrderStatus = OrderStatus.paid
    created_at: AwareDatetime | None = Field(default=None, description="Defaults to the time of the request")
    total: Money
    items: list[OrderItemIn] = Field(default_factory=list, max_length=MAX_ORDER_ITEMS)


class OrderBulkIn(Strict):
    items: list[OrderIn] = Field(min_length=1)


class EventIn(Strict):
    id: Identifier
    customer: Identifier
    name: EventName
    timestamp: AwareDatetime | None = Field(default=None, description="Defaults to the time of the request")
    properties: BoundedObject = Field(default_factory=dict)


class EventBulkIn(Strict):
    items: list[EventIn] = Field(min_length=1)


class _LoyaltyBase(Strict):
    id: Identifier
    customer: Identifier
    timestamp: AwareDatetime | None = None
    reason: Annotated[str, StringConstraints(max_length=512)] | None = None


Program = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


def _nonzero(value: int) -> int:
    if value == 0:
        raise ValueError("must not be zero")
    return value


Points = Annotated[int, Field(ge=-(10**12), le=10**12), AfterValidator(_nonzero)]


class PointsTransactionIn(_LoyaltyBase):
    type: Literal["points"]
    program: Program
    entry: PointsEntry
    points: Points = Field(description="Positive for earn, spend and expire; signed for adjust")


class TierTransactionIn(_LoyaltyBase):
    type: Literal["tier"]
    program: Program
    tier: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class RedemptionTransactionIn(_LoyaltyBase):
    type: Literal["redemption"]
    program: Program | None = None
    reward: ShortText


class ReferralTransactionIn(_LoyaltyBase):
    type: Literal["referral"]
    program: Program | None = None
    referred: Identifier = Field(description="The referred person's id in the client's system")


class GiftCardTransactionIn(_LoyaltyBase):
    type: Literal["gift_card"]
    gift_card: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    operation: GiftCardOperation
    amount: Annotated[Decimal, Field(max_digits=18, allow_inf_nan=False)] = Field(
        description="Positive for issue, load and redeem; signed for adjust"
    )


LoyaltyTransactionIn = Annotated[
    PointsTransactionIn | TierTransactionIn | RedemptionTransactionIn | ReferralTransactionIn | GiftCardTransactionIn,
    Field(discriminator="type"),
]


class LoyaltyBulkIn(Strict):
    items: list[LoyaltyTransactionIn] = Field(min_length=1)


class AttributeDefinitionIn(Strict):
    type: ValueType
    label: ShortText | None = None
    description: Annotated[str, StringConstraints(max_length=MAX_LONG_TEXT)] | None = None


class AttributeDefinitionOut(BaseModel):
    name: str
    type: ValueType
    label: str | None
    description: str | None
    created_at: datetime
    updated_at: datetime


class AttributeSchemaOut(BaseModel):
    open: bool = Field(
        description="When true, an attribute not in the schema is declared on first use, typed by its JSON value"
    )
    attributes: list[AttributeDefinitionOut]


class AttributeSchemaSettingsIn(Strict):
    open: bool


class EventDefinitionIn(Strict):
    label: ShortText | None = None
    description: Annotated[str, StringConstraints(max_length=MAX_LONG_TEXT)] | None = None
    properties: dict[Name, ValueType] = Field(default_factory=dict, max_length=MAX_OBJECT_KEYS)


class EventDefinitionOut(BaseModel):
    name: str
    label: str | None
    description: str | None
    properties: dict[str, ValueType]
    created_at: datetime
    updated_at: datetime


class PointsAdjustmentIn(Strict):
    """An editor adds or removes a member's points by hand (from the member list)."""

    program: Program
    points: Points = Field(description="Positive to add, negative to remove")
    reason: Annotated[str, StringConstraints(min_length=1, max_length=512, strip_whitespace=True)]


class PointsAdjusted(BaseModel):
    transaction_id: str
    program: str
    points: int
    balance: int = Field(description="The program's balance after the adjustment")
    reason: str
    entered: list[str] = Field(description="Segments the customer entered because of it")
    exited: list[str] = Field(description="Segments the customer left because of it")


class OrderItemOut(BaseModel):
    sku: str
    name: str | None
    category: str | None
    brand: str | None
    quantity: int
    unit_price: Decimal
    amount: Decimal


class OrderOut(BaseModel):
    id: str
    status: str
    created_at: datetime
    total: Decimal
    items: list[OrderItemOut]


class EventOut(BaseModel):
    id: str
    name: str
    occurred_at: datetime
    properties: dict[str, Any]


class LedgerEntryOut(BaseModel):
    id: str
    type: str
    occurred_at: datetime
    program: str | None
    entry: str | None
    points: int | None
    tier: str | None
    reward: str | None
    referred: str | None
    gift_card: str | None
    operation: str | None
    amount: Decimal | None
    reason: str | None


class ActivityPage(BaseModel):
    """One page of a customer's activity, newest first."""

    items: list[OrderOut] | list[EventOut] | list[LedgerEntryOut]
    total: int
