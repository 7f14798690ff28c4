"""The member view: a customer's orders with items, events and loyalty journal, newest first, paginated."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.clock import FrozenClock
from tests.support import admin_api


@pytest.fixture
def api(store: sa.Engine, clock: FrozenClock) -> Iterator[TestClient]:
    with admin_api(store, clock) as client:
        client.put("/api/v1/customers/ala", json={"first_name": "Ala"})
        client.put("/api/v1/event-definitions/viewed", json={"properties": {"sku": "string"}})
        for n, day in enumerate(("01", "02", "03")):
            order = {"id": f"o{n}", "customer": "ala", "total": "10", "created_at": f"2026-03-{day}T10:00:00Z",
                     "items": [{"sku": f"S{n}", "quantity": 2, "unit_price": "5"}]}  # fmt: skip
            client.post("/api/v1/orders", json=order)
            event = {"id": f"e{n}", "customer": "ala", "name": "viewed", "properties": {"sku": f"S{n}"},
                     "timestamp": f"2026-03-{day}T09:00:00Z"}  # fmt: skip
            client.post("/api/v1/events", json=event)
        client.post("/api/v1/customers/ala/points", json={"program": "club", "points": 25, "reason": "welcome"})
        yield client


def test_orders_events_and_ledger_newest_first(api: TestClient) -> None:
    orders = api.get("/api/v1/customers/ala/orders", params={"limit": 2}).json()
    assert orders["total"] == 3 and [o["id"] for o in orders["items"]] == ["o2", "o1"]
    assert orders["items"][0]["items"] == [{"sku": "S2", "name": None, "category": None, "brand": None, "quantity": 2,
                                            "unit_price": "5.00", "amount": "10.00"}]  # fmt: skip
    assert [o["id"] for o in api.get("/api/v1/customers/ala/orders", params={"offset": 2}).json()["items"]] == ["o0"]
    events = api.get("/api/v1/customers/ala/events", params={"name": "viewed"}).json()
    assert [e["id"] for e in events["items"]] == ["e2", "e1", "e0"]
    assert events["items"][0]["properties"] == {"sku": "S2"}
    ledger = api.get("/api/v1/customers/ala/ledger").json()["items"]
    assert [(t["type"], t["entry"], t["points"], t["reason"]) for t in ledger] == [("points", "adjust", 25, "welcome")]
    assert api.get("/api/v1/customers/nobody/orders").status_code == 404
