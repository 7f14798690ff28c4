"""A simulated day: writes and scheduler passes over 24 hours of clock time, with rules whose answers change by data
and by time alone, then the daily safety net; it must find nothing to repair (drift 0)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.app import create_app
from cohorta.clock import FrozenClock
from cohorta.config import Settings
from cohorta.membership.scheduler import Scheduler
from cohorta.segments.models import MembershipChange
from tests.conftest import ADMIN_TOKEN
from tests.segments.test_segments_api import create, members

CUSTOMERS = 300
NO_RECENT_ORDER = {"activity": "orders", "window": {"last_days": 7}, "op": "is", "value": 0}


@pytest.fixture
def api(store: sa.Engine, clock: FrozenClock, settings: Settings) -> Iterator[TestClient]:
    zoned = settings.model_copy(update={"scheduler": False, "timezone": "Europe/Warsaw"})
    app = create_app(zoned, clock=clock, engine=store)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        client.put("/api/v1/event-definitions/product_viewed", json={"properties": {"category": "string"}})
        yield client


def scheduler(client: TestClient) -> Scheduler:
    state = client.app.state  # type: ignore[attr-defined]
    return Scheduler(state.session_factory, state.clock, state.settings, state.segment_index)


def drift(client: TestClient, segment_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/api/v1/segments/{segment_id}").json()["drift"]
    return body


def test_a_due_wakeup_is_not_drift(api: TestClient, clock: FrozenClock) -> None:
    """Regression: the scheduler runs recomputes before due wake-ups, so a safety net used to count a customer whose
    wake-up had just fallen due (and was about to be processed) as a member the live mechanisms had missed."""
    order_at = clock.now() - timedelta(days=7) + timedelta(minutes=30)  # leaves the 7-day window in 30 minutes
    api.put("/api/v1/customers/c0", json={})
    api.post("/api/v1/orders", json={"id": "o0", "customer": "c0", "total": "10", "created_at": order_at.isoformat()})
    lapsed = create(api, name="Lapsed", rule=NO_RECENT_ORDER, sync_period_seconds=3600)
    passes = scheduler(api)
    passes.membership_pass()
    assert members(api, lapsed["id"]) == []
    clock.advance(timedelta(hours=2))  # the wake-up and the safety net are both due
    passes.membership_pass()
    assert members(api, lapsed["id"]) == ["c0"]
    assert (drift(api, lapsed["id"])["entered"], drift(api, lapsed["id"])["exited"]) == (0, 0)


def test_a_simulated_day_leaves_no_drift(api: TestClient, clock: FrozenClock, store: sa.Engine) -> None:
    rng = random.Random(4)
    start = clock.now()
    today = start.date()
    customers = [
        {"source_id": f"c{i}", "birthdate": (date(1990, today.month, today.day) + timedelta(days=rng.randrange(-5, 6)))
         .isoformat()}
        for i in range(CUSTOMERS)
    ]  # fmt: skip
    api.post("/api/v1/customers/bulk", json={"items": customers}).raise_for_status()

    def when(days: float) -> str:
        return (clock.now() - timedelta(days=rng.uniform(0, days))).isoformat()

    def order(key: str, at: str) -> dict[str, Any]:
        return {"id": key, "customer": f"c{rng.randrange(CUSTOMERS)}", "total": str(rng.randrange(5, 200)),
                "created_at": at}  # fmt: skip

    def event(key: str, at: str) -> dict[str, Any]:
        return {"id": key, "customer": f"c{rng.randrange(CUSTOMERS)}", "name": "product_viewed", "timestamp": at}

    def points(key: str, at: str) -> dict[str, Any]:
        entry = rng.choice(["earn", "earn", "spend"])
        return {"id": key, "customer": f"c{rng.randrange(CUSTOMERS)}", "type": "points", "program": "club",
                "entry": entry, "points": rng.randrange(5, 60), "timestamp": at}  # fmt: skip

    api.post("/api/v1/orders/bulk", json={"items": [order(f"o{i}", when(30)) for i in range(900)]}).raise_for_status()
    api.post("/api/v1/events/bulk", json={"items": [event(f"e{i}", when(3)) for i in range(900)]}).raise_for_status()
    api.post(
        "/api/v1/loyalty/transactions/bulk", json={"items": [points(f"p{i}", when(20)) for i in range(600)]}
    ).raise_for_status()
    definitions: list[dict[str, Any]] = [
        {"name": "No order this week", "rule": NO_RECENT_ORDER},
        {"name": "Lapsed 3 days", "text": "summary.last_order_at more_than_days_ago 3"},
        {"name": "Birthday soon", "text": "profile.birthdate anniversary_within_days 2"},
        {"name": "Viewers today", "rule": {"activity": "events", "event": "product_viewed",
                                           "window": {"last_days": 1}, "op": "gte", "value": 2}},
        {"name": "Earned this month", "rule": {"activity": "points", "where": [{"field": "entry", "op": "is",
                                                                                  "value": "earn"}],
                                               "window": {"calendar": "this_month"},
                                               "measure": {"fn": "sum", "field": "points"}, "op": "gt", "value": 60}},
        {"name": "Big spenders", "text": "summary.total_spent > 400"},
        {"name": "Viewed 1-2 days ago", "rule": {"activity": "events", "event": "product_viewed",
                                                 "window": {"days_ago": [1, 2]}, "op": "gte", "value": 1}},
    ]  # fmt: skip
    segments = [create(api, **d) for d in definitions]
    passes = scheduler(api)
    passes.membership_pass()  # computes them and plans their wake-ups
    for step in range(96):  # 24 hours in steps of 15 minutes, a few writes in each
        clock.advance(timedelta(minutes=15))
        for n in range(3):
            at = when(15 / 1440)
            kind = (n + step) % 3
            if kind == 0:
                api.post("/api/v1/orders", json=order(f"do{step}-{n}", at)).raise_for_status()
            elif kind == 1:
                api.post("/api/v1/events", json=event(f"de{step}-{n}", at)).raise_for_status()
            else:
                api.post("/api/v1/loyalty/transactions", json=points(f"dp{step}-{n}", at)).raise_for_status()
        passes.membership_pass()  # the daily safety net falls due in the last one
    history = MembershipChange.__table__
    with store.connect() as connection:
        rows = connection.execute(
            sa.select(history.c.cause, history.c.entered, sa.func.count())
            .where(history.c.occurred_at > start)
            .group_by(history.c.cause, history.c.entered)
        ).all()
    causes = {f"{cause}:{'in' if entered else 'out'}": n for cause, entered, n in rows}
    # Customers entered and left both by data and by time alone during the day.
    assert all(causes.get(key, 0) > 0 for key in ("data:in", "data:out", "time:in", "time:out")), causes
    for segment in segments:
        found = drift(api, segment["id"])
        assert datetime.fromisoformat(found["checked_at"]) > start, segment["name"]
        assert (found["entered"], found["exited"]) == (0, 0), segment["name"]
