"""HTTP routes of the customer data store. Thin: parse, call the service, commit, shape the answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel

from cohorta.audit import service as audit
from cohorta.bodies import described, json_body
from cohorta.customers import profile, service
from cohorta.customers.schemas import (
    ActivityPage,
    AttributeDefinitionIn,
    AttributeDefinitionOut,
    AttributeSchemaOut,
    AttributeSchemaSettingsIn,
    BulkResult,
    CustomerBulkIn,
    CustomerGroupOut,
    CustomerIn,
    CustomerOut,
    EventBulkIn,
    EventDefinitionIn,
    EventDefinitionOut,
    EventIn,
    LoyaltyBulkIn,
    LoyaltyTransactionIn,
    OrderBulkIn,
    OrderIn,
    PointsAdjusted,
    PointsAdjustmentIn,
    WriteResult,
)
from cohorta.deps import (
    MAX_OFFSET,
    AdminDep,
    ClockDep,
    EditorDep,
    ReadAheadDep,
    ReaderDep,
    SegmentIndexDep,
    SessionDep,
    SettingsDep,
    editor,
)
from cohorta.errors import FieldError, InvalidInput
from cohorta.membership import live
from cohorta.membership.service import forget_customer, set_manual_groups
from cohorta.segments.schemas import CustomerGroupsIn

# Every route needs an authenticated caller with the read permission (the app mounts this router behind it); the
# routes that write ask for more. Sending data is an editor's right; changing the schema is an admin's.
# The routes on a bare customer id: its path parameter takes slashes, so they must come after every
# /customers/{id}/... route of every router (app.py mounts this router last).
customer_router = APIRouter()
router = APIRouter()
EDITOR = [Depends(editor)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
F = TypeVar("F", bound=Callable[..., Any])
SourceId = Path(min_length=1, max_length=255, description="The customer's id in the client's own systems")


def _check_bulk_size(count: int, limit: int) -> None:
    if count > limit:
        raise InvalidInput([FieldError(("items",), f"has {count} items; at most {limit} are accepted per request")])


def _bulk_route(path: str, model: type[BaseModel], tag: str) -> Callable[[F], F]:
    """A bulk write for editors whose body is validated straight from its bytes (cohorta.bodies)."""
    return router.post(
        path, response_model=BulkResult, tags=[tag], dependencies=EDITOR, openapi_extra=described(model)
    )


def _single_status(response: Response, result: WriteResult) -> WriteResult:
    response.status_code = status.HTTP_201_CREATED if result.result == "created" else status.HTTP_200_OK
    return result


# --- customers -------------------------------------------------------------------------------------------


@customer_router.put(
    "/customers/{source_id:path}",
    response_model=CustomerOut,
    tags=["customers"],
    responses={201: {"description": "Created"}, 200: {"description": "Updated or unchanged"}},
)
def put_customer(
    body: CustomerIn,
    response: Response,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    index: SegmentIndexDep,
    principal: EditorDep,
    source_id: str = SourceId,
) -> CustomerOut:
    """Create or update one customer. Fields left out are kept; a field sent as null is cleared."""
    ingested = service.upsert_customer(session, clock, source_id, body)
    live.reevaluate_customers(session, settings, clock.now(), ingested.customer_ids, ingested.created, index=index)
    session.commit()
    created = ingested.result.created == 1
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return profile.customer_with_groups(session, source_id, settings.currency_exponent, principal)


@_bulk_route("/customers/bulk", CustomerBulkIn, "customers")
def bulk_customers(
    body: Annotated[CustomerBulkIn, json_body(CustomerBulkIn)],
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    index: SegmentIndexDep,
) -> BulkResult:
    """Create or update many customers, all or nothing."""
    _check_bulk_size(len(body.items), settings.bulk_max_items)
    ingested = service.upsert_customers(session, clock, body.items)
    live.reevaluate_customers(session, settings, clock.now(), ingested.customer_ids, ingested.created, index=index)
    session.commit()
    return ingested.result


@customer_router.get("/customers/{source_id:path}", response_model=CustomerOut, tags=["customers"])
def get_customer(
    session: SessionDep, settings: SettingsDep, principal: ReaderDep, source_id: str = SourceId
) -> CustomerOut:
    return profile.customer_with_groups(session, source_id, settings.currency_exponent, principal)


@router.get("/customers/{source_id:path}/groups", response_model=list[CustomerGroupOut], tags=["customers"])
def get_groups(session: SessionDep, principal: ReaderDep, source_id: str = SourceId) -> list[CustomerGroupOut]:
    return profile.groups(session, service.customer_id_for(session, source_id), principal)


@router.put("/customers/{source_id:path}/groups", response_model=list[CustomerGroupOut], tags=["customers"])
def put_groups(
    body: CustomerGroupsIn, session: SessionDep, clock: ClockDep, principal: EditorDep, source_id: str = SourceId
) -> list[CustomerGroupOut]:
    """Replace the groups assigned by hand. Groups inherited from segments are not affected."""
    customer_id = service.customer_id_for(session, source_id)
    set_manual_groups(session, customer_id, body.groups, clock.now())
    session.commit()
    return profile.groups(session, customer_id, principal)


@router.post("/customers/{source_id:path}/points", response_model=PointsAdjusted, status_code=201, tags=["customers"])
def adjust_points(
    body: PointsAdjustmentIn,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    index: SegmentIndexDep,
    principal: EditorDep,
    source_id: str = SourceId,
) -> PointsAdjusted:
    """Add (positive) or remove (negative) points of one program, with a reason: a ledger entry, the summary and the
    customer's segments follow at once; the change is audited."""
    adjusted = profile.adjust_points(session, settings, clock, index, source_id, body, principal)
    session.commit()
    return adjusted


@router.get("/customers/{source_id:path}/orders", response_model=ActivityPage, tags=["customers"])
def customer_orders(
    session: SessionDep, settings: SettingsDep, limit: Limit = 50, offset: Offset = 0, source_id: str = SourceId
) -> ActivityPage:
    """The member's orders with their items, newest first."""
    items, total = service.customer_orders(session, source_id, settings.currency_exponent, limit, offset)
    return ActivityPage(items=items, total=total)


@router.get("/customers/{source_id:path}/events", response_model=ActivityPage, tags=["customers"])
def customer_events(
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
    name: Annotated[str | None, Query(max_length=128)] = None,
    source_id: str = SourceId,
) -> ActivityPage:
    """The member's events (of one name, optionally), newest first."""
    items, total = service.customer_events(session, source_id, name, limit, offset)
    return ActivityPage(items=items, total=total)


@router.get("/customers/{source_id:path}/ledger", response_model=ActivityPage, tags=["customers"])
def customer_ledger(
    session: SessionDep,
    settings: SettingsDep,
    limit: Limit = 50,
    offset: Offset = 0,
    program: Annotated[str | None, Query(max_length=64)] = None,
    source_id: str = SourceId,
) -> ActivityPage:
    """The member's loyalty journal (points, tiers, redemptions, referrals, gift cards), newest first."""
    items, total = service.customer_ledger(session, source_id, settings.currency_exponent, program, limit, offset)
    return ActivityPage(items=items, total=total)


@customer_router.delete("/customers/{source_id:path}", status_code=status.HTTP_204_NO_CONTENT, tags=["customers"])
def delete_customer(
    session: SessionDep, clock: ClockDep, principal: AdminDep, source_id: str = SourceId
) -> Response:
    """Erase the customer and all their activity, memberships and membership history."""
    forget_customer(session, service.customer_id_for(session, source_id), clock.now())
    service.delete_customer(session, source_id)
    audit.record(session, clock.now(), principal.name, "customer.erase", "customer", source_id)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- schemas ---------------------------------------------------------------------------------------------


@router.get("/attributes", response_model=AttributeSchemaOut, tags=["schemas"])
def list_attributes(session: SessionDep) -> AttributeSchemaOut:
    return AttributeSchemaOut(
        open=service.attributes_open(session),
        attributes=[
            AttributeDefinitionOut.model_validate(d, from_attributes=True)
            for d in service.attribute_definitions(session).values()
        ],
    )


@router.put("/attribute-schema", response_model=AttributeSchemaOut, tags=["schemas"])
def put_attribute_schema(
    body: AttributeSchemaSettingsIn, session: SessionDep, clock: ClockDep, principal: AdminDep
) -> AttributeSchemaOut:
    """Open or close the attribute schema (open: an unknown attribute is declared on first use)."""
    before = service.attributes_open(session)
    service.set_attributes_open(session, body.open)
    audit.record(session, clock.now(), principal.name, "settings.update", "settings", "attributes_open",
                 before={"open": before}, after={"open": body.open})  # fmt: skip
    session.commit()
    return list_attributes(session)


@router.put("/attributes/{name}", response_model=AttributeDefinitionOut, tags=["schemas"])
def put_attribute(
    name: str, body: AttributeDefinitionIn, session: SessionDep, clock: ClockDep, principal: AdminDep
) -> AttributeDefinitionOut:
    previous = service.attribute_definitions(session).get(name)
    before = AttributeDefinitionOut.model_validate(previous, from_attributes=True) if previous else None
    definition = service.put_attribute(session, clock, name, body)
    after = AttributeDefinitionOut.model_validate(definition, from_attributes=True)
    audit.record(session, clock.now(), principal.name, "settings.attribute", "attribute", name, before=before,
                 after=after)  # fmt: skip
    session.commit()
    return after


@router.get("/event-definitions", response_model=list[EventDefinitionOut], tags=["schemas"])
def list_event_definitions(session: SessionDep) -> list[EventDefinitionOut]:
    return [
        EventDefinitionOut.model_validate(d, from_attributes=True) for d in service.event_definitions(session).values()
    ]


@router.put("/event-definitions/{name}", response_model=EventDefinitionOut, tags=["schemas"])
def put_event_definition(
    body: EventDefinitionIn,
    session: SessionDep,
    clock: ClockDep,
    principal: AdminDep,
    name: str = Path(pattern=r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$"),
) -> EventDefinitionOut:
    previous = service.event_definitions(session).get(name)
    before = EventDefinitionOut.model_validate(previous, from_attributes=True) if previous else None
    definition = service.put_event_definition(session, clock, name, body)
    after = EventDefinitionOut.model_validate(definition, from_attributes=True)
    audit.record(session, clock.now(), principal.name, "settings.event_definition", "event_definition", name,
                 before=before, after=after)  # fmt: skip
    session.commit()
    return after


# --- activity --------------------------------------------------------------------------------------------


@router.post("/orders", response_model=WriteResult, status_code=201, tags=["activity"], dependencies=EDITOR)
def post_order(
    body: OrderIn,
    response: Response,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    index: SegmentIndexDep,
) -> WriteResult:
    """Record an order. Idempotent by ``id``: the same order again is a duplicate; other content updates it."""
    ingested = service.record_orders(
        session, clock, settings.currency_exponent, [body], timezone=settings.timezone, loc_prefix=lambda _i: ()
    )
    live.reevaluate(session, settings, clock.now(), ingested.customer_ids, "orders",
                    new_orders=live.NewOrders.of(ingested.inserted, ingested.rewritten), index=index)  # fmt: skip
    session.commit()
    return _single_status(response, ingested.result.items[0])


@router.post("/orders/bulk", response_model=BulkResult, tags=["activity"], dependencies=EDITOR)
def bulk_orders(
    body: OrderBulkIn,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    index: SegmentIndexDep,
    reader: ReadAheadDep,
) -> BulkResult:
    _check_bulk_size(len(body.items), settings.bulk_max_items)
    live.read_ahead(reader, session, settings, clock.now(), "orders", body.items, index=index)
    ingested = service.record_orders(
        session, clock, settings.currency_exponent, body.items, timezone=settings.timezone
    )
    live.reevaluate(session, settings, clock.now(), ingested.customer_ids, "orders",
                    new_orders=live.NewOrders.of(ingested.inserted, ingested.rewritten), index=index)  # fmt: skip
    session.commit()
    return ingested.result


@router.post("/events", response_model=WriteResult, status_code=201, tags=["activity"], dependencies=EDITOR)
def post_event(
    body: EventIn,
    response: Response,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    index: SegmentIndexDep,
) -> WriteResult:
    """Record a custom event. Idempotent by ``id``."""
    ingested = service.record_events(session, clock, [body], loc_prefix=lambda _i: ())
    live.reevaluate(session, settings, clock.now(), ingested.customer_ids, "events", event_names={body.name},
                    new_events=live.NewEvents(ingested.inserted, ingested.rewritten), index=index)  # fmt: skip
    session.commit()
    return _single_status(response, ingested.result.items[0])


@_bulk_route("/events/bulk", EventBulkIn, "activity")
def bulk_events(
    body: Annotated[EventBulkIn, json_body(EventBulkIn)],
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    index: SegmentIndexDep,
    reader: ReadAheadDep,
) -> BulkResult:
    _check_bulk_size(len(body.items), settings.bulk_max_items)
    names = {item.name for item in body.items}
    live.read_ahead(reader, session, settings, clock.now(), "events", body.items, index=index, event_names=names)
    ingested = service.record_events(session, clock, body.items)
    live.reevaluate(session, settings, clock.now(), ingested.customer_ids, "events", event_names=names,
                    new_events=live.NewEvents(ingested.inserted, ingested.rewritten), index=index)  # fmt: skip
    session.commit()
    return ingested.result


@router.post(
    "/loyalty/transactions", response_model=WriteResult, status_code=201, tags=["activity"], dependencies=EDITOR
)
def post_loyalty_transaction(
    body: LoyaltyTransactionIn,
    response: Response,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    index: SegmentIndexDep,
) -> WriteResult:
    """Record a points entry, tier change, redemption, referral or gift-card operation. Idempotent by ``id``."""
    ingested = service.record_loyalty(session, clock, settings.currency_exponent, [body], loc_prefix=lambda _i: ())
    live.reevaluate(session, settings, clock.now(), ingested.customer_ids, "loyalty",
                    new_loyalty=live.NewLoyalty.of(ingested.inserted, ingested.rewritten), index=index)  # fmt: skip
    session.commit()
    return _single_status(response, ingested.result.items[0])


@router.post("/loyalty/transactions/bulk", response_model=BulkResult, tags=["activity"], dependencies=EDITOR)
def bulk_loyalty_transactions(
    body: LoyaltyBulkIn,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    index: SegmentIndexDep,
    reader: ReadAheadDep,
) -> BulkResult:
    _check_bulk_size(len(body.items), settings.bulk_max_items)
    live.read_ahead(reader, session, settings, clock.now(), "loyalty", body.items, index=index)
    ingested = service.record_loyalty(session, clock, settings.currency_exponent, body.items)
    live.reevaluate(session, settings, clock.now(), ingested.customer_ids, "loyalty",
                    new_loyalty=live.NewLoyalty.of(ingested.inserted, ingested.rewritten), index=index)  # fmt: skip
    session.commit()
    return ingested.result
