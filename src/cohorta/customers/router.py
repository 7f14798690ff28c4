"""HTTP routes of the customer data store. Thin: parse, call the service, commit, shape the answer."""

from __future__ import annotations

from fastapi import APIRouter, Path, Response, status
from sqlalchemy.orm import Session

from cohorta.customers import service
from cohorta.customers.schemas import (
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
    WriteResult,
)
from cohorta.deps import ClockDep, SegmentIndexDep, SessionDep, SettingsDep
from cohorta.errors import FieldError, InvalidInput
from cohorta.membership import live
from cohorta.membership.service import forget_customer, groups_of, set_manual_groups
from cohorta.segments.schemas import CustomerGroupsIn

# Every route here needs a bearer token: the app mounts this router behind get_principal.
router = APIRouter()
SourceId = Path(min_length=1, max_length=255, description="The customer's id in the client's own systems")


def _check_bulk_size(count: int, limit: int) -> None:
    if count > limit:
        raise InvalidInput([FieldError(("items",), f"has {count} items; at most {limit} are accepted per request")])


def _single_status(response: Response, result: WriteResult) -> WriteResult:
    response.status_code = status.HTTP_201_CREATED if result.result == "created" else status.HTTP_200_OK
    return result


# --- customers -------------------------------------------------------------------------------------------


@router.put(
    "/customers/{source_id}",
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
    source_id: str = SourceId,
) -> CustomerOut:
    """Create or update one customer. Fields left out are kept; a field sent as null is cleared."""
    ingested = service.upsert_customer(session, clock, source_id, body)
    live.reevaluate(session, settings, clock.now(), ingested.customer_ids, "profile", index=index)
    session.commit()
    created = ingested.result.created == 1
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return _customer_with_groups(session, source_id, settings.currency_exponent)


@router.post("/customers/bulk", response_model=BulkResult, tags=["customers"])
def bulk_customers(
    body: CustomerBulkIn, session: SessionDep, clock: ClockDep, settings: SettingsDep, index: SegmentIndexDep
) -> BulkResult:
    """Create or update many customers, all or nothing."""
    _check_bulk_size(len(body.items), settings.bulk_max_items)
    ingested = service.upsert_customers(session, clock, body.items)
    live.reevaluate(session, settings, clock.now(), ingested.customer_ids, "profile", index=index)
    session.commit()
    return ingested.result


@router.get("/customers/{source_id}", response_model=CustomerOut, tags=["customers"])
def get_customer(session: SessionDep, settings: SettingsDep, source_id: str = SourceId) -> CustomerOut:
    return _customer_with_groups(session, source_id, settings.currency_exponent)


def _customer_with_groups(session: Session, source_id: str, exponent: int) -> CustomerOut:
    customer = service.get_customer(session, source_id, exponent)
    customer_id = service.customer_id_for(session, source_id)
    customer.groups = [CustomerGroupOut(group=g, origins=o) for g, o in groups_of(session, customer_id)]
    return customer


@router.get("/customers/{source_id}/groups", response_model=list[CustomerGroupOut], tags=["customers"])
def get_groups(session: SessionDep, source_id: str = SourceId) -> list[CustomerGroupOut]:
    customer_id = service.customer_id_for(session, source_id)
    return [CustomerGroupOut(group=g, origins=o) for g, o in groups_of(session, customer_id)]


@router.put("/customers/{source_id}/groups", response_model=list[CustomerGroupOut], tags=["customers"])
def put_groups(
    body: CustomerGroupsIn, session: SessionDep, clock: ClockDep, source_id: str = SourceId
) -> list[CustomerGroupOut]:
    """Replace the groups assigned by hand. Groups inherited from segments are not affected."""
    customer_id = service.customer_id_for(session, source_id)
    set_manual_groups(session, customer_id, body.groups, clock.now())
    session.commit()
    return [CustomerGroupOut(group=g, origins=o) for g, o in groups_of(session, customer_id)]


@router.delete("/customers/{source_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["customers"])
def delete_customer(session: SessionDep, source_id: str = SourceId) -> Response:
    """Erase the customer and all their activity, memberships and membership history."""
    forget_customer(session, service.customer_id_for(session, source_id))
    service.delete_customer(session, source_id)
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
def put_attribute_schema(body: AttributeSchemaSettingsIn, session: SessionDep) -> AttributeSchemaOut:
    """Open or close the attribute schema (open: an unknown attribute is declared on first use)."""
    service.set_attributes_open(session, body.open)
    session.commit()
    return list_attributes(session)


@router.put("/attributes/{name}", response_model=AttributeDefinitionOut, tags=["schemas"])
def put_attribute(
    name: str, body: AttributeDefinitionIn, session: SessionDep, clock: ClockDep
) -> AttributeDefinitionOut:
    definition = service.put_attribute(session, clock, name, body)
    session.commit()
    return AttributeDefinitionOut.model_validate(definition, from_attributes=True)


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
    name: str = Path(pattern=r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$"),
) -> EventDefinitionOut:
    definition = service.put_event_definition(session, clock, name, body)
    session.commit()
    return EventDefinitionOut.model_validate(definition, from_attributes=True)


# --- activity --------------------------------------------------------------------------------------------


@router.post("/orders", response_model=WriteResult, status_code=201, tags=["activity"])
def post_order(
    body: OrderIn,
    response: Response,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    index: SegmentIndexDep,
) -> WriteResult:
    """Record an order. Idempotent by ``id``: the same order again is a duplicate; other content updates it."""
    ingested = service.record_orders(session, clock, settings.currency_exponent, [body], loc_prefix=lambda _i: ())
    live.reevaluate(session, settings, clock.now(), ingested.customer_ids, "orders", index=index)
    session.commit()
    return _single_status(response, ingested.result.items[0])


@router.post("/orders/bulk", response_model=BulkResult, tags=["activity"])
def bulk_orders(
    body: OrderBulkIn, session: SessionDep, clock: ClockDep, settings: SettingsDep, index: SegmentIndexDep
) -> BulkResult:
    _check_bulk_size(len(body.items), settings.bulk_max_items)
    ingested = service.record_orders(session, clock, settings.currency_exponent, body.items)
    live.reevaluate(session, settings, clock.now(), ingested.customer_ids, "orders", index=index)
    session.commit()
    return ingested.result


@router.post("/events", response_model=WriteResult, status_code=201, tags=["activity"])
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
    live.reevaluate(
        session, settings, clock.now(), ingested.customer_ids, "events", event_names={body.name}, index=index
    )
    session.commit()
    return _single_status(response, ingested.result.items[0])


@router.post("/events/bulk", response_model=BulkResult, tags=["activity"])
def bulk_events(
    body: EventBulkIn, session: SessionDep, clock: ClockDep, settings: SettingsDep, index: SegmentIndexDep
) -> BulkResult:
    _check_bulk_size(len(body.items), settings.bulk_max_items)
    ingested = service.record_events(session, clock, body.items)
    names = {item.name for item in body.items}
    live.reevaluate(session, settings, clock.now(), ingested.customer_ids, "events", event_names=names, index=index)
    session.commit()
    return ingested.result


@router.post("/loyalty/transactions", response_model=WriteResult, status_code=201, tags=["activity"])
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
    live.reevaluate(session, settings, clock.now(), ingested.customer_ids, "loyalty", index=index)
    session.commit()
    return _single_status(response, ingested.result.items[0])


@router.post("/loyalty/transactions/bulk", response_model=BulkResult, tags=["activity"])
def bulk_loyalty_transactions(
    body: LoyaltyBulkIn, session: SessionDep, clock: ClockDep, settings: SettingsDep, index: SegmentIndexDep
) -> BulkResult:
    _check_bulk_size(len(body.items), settings.bulk_max_items)
    ingested = service.record_loyalty(session, clock, settings.currency_exponent, body.items)
    live.reevaluate(session, settings, clock.now(), ingested.customer_ids, "loyalty", index=index)
    session.commit()
    return ingested.result
