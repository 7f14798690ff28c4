"""A customer as the API and the UI show them (profile with groups and where each comes from), and points adjusted
by hand with the customer's segments following at once. Shared by both so neither has logic of its own."""

from __future__ import annotations

from sqlalchemy.orm import Session

from cohorta.access.service import Principal
from cohorta.clock import Clock
from cohorta.config import Settings
from cohorta.customers import service
from cohorta.customers.schemas import CustomerGroupOut, CustomerOut, PointsAdjusted, PointsAdjustmentIn
from cohorta.membership import live
from cohorta.membership.service import groups_of, visible_changes


def adjust_points(
    session: Session,
    settings: Settings,
    clock: Clock,
    index: live.SegmentIndex,
    source_id: str,
    body: PointsAdjustmentIn,
    principal: Principal,
) -> PointsAdjusted:
    """A ledger entry, the summary and the customer's segments, in the caller's transaction; audited."""
    adjusted = service.adjust_points(session, clock, settings.currency_exponent, source_id, body, principal.name)
    written = adjusted.ingested
    changes = live.reevaluate(session, settings, clock.now(), [adjusted.customer_id], "loyalty",
                              new_loyalty=live.NewLoyalty.of(written.inserted, written.rewritten), index=index)
    return adjusted.out(visible_changes(session, principal, changes))


def customer_with_groups(session: Session, source_id: str, exponent: int, principal: Principal) -> CustomerOut:
    customer = service.get_customer(session, source_id, exponent)
    customer.groups = groups(session, service.customer_id_for(session, source_id), principal)
    return customer


def groups(session: Session, customer_id: int, principal: Principal) -> list[CustomerGroupOut]:
    """The customer's groups, each with its origins ('manual' or the segments that give it) the caller may see."""
    return [CustomerGroupOut(group=g, origins=o) for g, o in groups_of(session, customer_id, principal)]
