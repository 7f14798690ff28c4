"""The quickstart's example segments over the demo data, so the web UI opens on something to look at."""

from __future__ import annotations

from sqlalchemy.orm import Session

from cohorta.access.service import system_principal
from cohorta.clock import Clock
from cohorta.config import Settings
from cohorta.segments import service
from cohorta.segments.schemas import SegmentIn

# (name, description, rule text, customer groups)
DEMO_SEGMENTS: tuple[tuple[str, str, str, list[str]], ...] = (
    ("Gold and platinum members", "The club's top tiers", 'loyalty.club.tier in ("gold", "platinum")', ["vip"]),
    ("Poland, spent over 500", "Polish customers with a lifetime spend above 500",
     'profile.country in ("PL") and summary.total_spent > 500', []),
    ("Lapsed buyers", "Bought before, but not in the last 90 days",
     "summary.order_count >= 1 and count(orders during last 90 days) = 0", ["winback"]),
    ("Window shoppers", "Viewed products at least 3 times in 30 days without ordering",
     'count(events["product_viewed"] during last 30 days) >= 3 and count(orders during last 30 days) = 0', []),
    ("Spring holdout", "A stable 10% holdout group", 'sample 10% seed "spring-holdout"', []),
)  # fmt: skip


def create_demo_segments(session: Session, settings: Settings, clock: Clock) -> int:
    """Create the example segments (active; the scheduler computes their members). Returns how many were made."""
    principal = system_principal("cohorta run")
    for name, description, text, groups in DEMO_SEGMENTS:
        body = SegmentIn(name=name, description=description, text=text, customer_groups=groups)
        service.create_segment(session, settings, clock, body, principal)
    return len(DEMO_SEGMENTS)
