"""Orders, events and loyalty transactions: idempotency, validation and the summary kept in step."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.clock import FrozenClock
from tests.customers.test_customers_api import errors_at


@pytest.fixture
def customer(client: TestClient) -> str:
    client.put("/api/v1/customers/ala", json={"first_name": "Ala"})
    return "ala"


def order(order_id: str, total: str, when: str, status: str = "paid", **extra: object) -> dict[str, object]:
    return {"id": order_id, "customer": "ala", "total": total, "created_at": when, "status": status, **extra}


def summary(client: TestClient) -> dict[str, object]:
    return client.get("/api/v1/customers/ala").json()["summary"]


def test_summary_follows_orders_exactly(client: TestClient, customer: str) -> None:
    orders = [
        order("o1", "0.10", "2026-01-05T10:00:00Z"),
        order("o2", "0.20", "2026-02-05T10:00:00+01:00"),
        order("o3", "100.01", "2026-01-01T00:00:00Z", status="fulfilled"),
        order("o4", "999.99", "2026-03-01T00:00:00Z", status="cancelled"),
        order("o5", "5.00", "2026-02-20T00:00:00Z", status="refunded"),
    ]
    result = client.post("/api/v1/orders/bulk", json={"items": orders}).json()
    assert result["created"] == 5
    s = summary(client)
    # Cancelled and refunded orders are not purchases; the sum is exact (never float).
    assert s["order_count"] == 3
    assert s["total_spent"] == "100.31"
    assert s["average_order_value"] == "33.44"  # 100.31 / 3 = 33.4366..., half up
    assert s["first_order_at"] == "2026-01-01T00:00:00Z"
    assert s["last_order_at"] == "2026-02-05T09:00:00Z"
    assert s["last_order_amount"] == "0.20"


def test_order_idempotency_duplicate_and_update(client: TestClient, customer: str) -> None:
    first = client.post("/api/v1/orders", json=order("o1", "10.00", "2026-01-05T10:00:00Z"))
    assert (first.status_code, first.json()["result"]) == (201, "created")
    again = client.post("/api/v1/orders", json=order("o1", "10.00", "2026-01-05T10:00:00Z"))
    assert (again.status_code, again.json()["result"]) == (200, "duplicate")
    assert summary(client)["order_count"] == 1
    refunded = client.post("/api/v1/orders", json=order("o1", "10.00", "2026-01-05T10:00:00Z", status="refunded"))
    assert refunded.json()["result"] == "updated"
    assert summary(client)["order_count"] == 0
    assert summary(client)["average_order_value"] is None


def test_order_without_time_takes_now_and_keeps_it_on_update(
    client: TestClient, customer: str, clock: FrozenClock, store: sa.Engine
) -> None:
    client.post("/api/v1/orders", json={"id": "o1", "customer": "ala", "total": "1", "items": [{"sku": "A"}]})
    first_time = summary(client)["last_order_at"]
    clock.advance(timedelta(days=3))
    client.post("/api/v1/orders", json={"id": "o1", "customer": "ala", "total": "2", "items": [{"sku": "B"}]})
    assert summary(client)["last_order_at"] == first_time == "2026-03-14T12:00:00Z"
    assert summary(client)["total_spent"] == "2.00"
    with store.connect() as connection:
        rows = connection.execute(sa.text("SELECT sku FROM order_items")).scalars().all()
    assert rows == ["B"]  # items are replaced on update, never appended


def test_order_items_are_stored_with_exact_amounts(client: TestClient, customer: str, store: sa.Engine) -> None:
    client.post(
        "/api/v1/orders",
        json=order(
            "o1",
            "20.97",
            "2026-01-05T10:00:00Z",
            items=[
                {
                    "sku": "SKU-1",
                    "name": "Tea",
                    "category": "drinks",
                    "brand": "Leaf",
                    "quantity": 3,
                    "unit_price": "6.99",
                }
            ],
        ),
    )
    with store.connect() as connection:
        row = connection.execute(
            sa.text("SELECT quantity, unit_price_minor, amount_minor, status FROM order_items")
        ).one()
    assert tuple(row) == (3, 699, 2097, "paid")


def test_bad_orders_are_refused_whole(client: TestClient, customer: str) -> None:
    response = client.post(
        "/api/v1/orders/bulk",
        json={
            "items": [
                order("o1", "10.00", "2026-01-05T10:00:00Z"),
                {"id": "o2", "customer": "nobody", "total": "1"},
                order("o3", "1.001", "2026-01-05T10:00:00Z"),
                order("o4", "1", "2026-01-05T10:00:00Z", items=[{"sku": "A", "unit_price": "0.333"}]),
            ]
        },
    )
    assert response.status_code == 422
    assert set(errors_at(response)) == {"/items/1/customer", "/items/2/total", "/items/3/items/0/unit_price"}
    negative = client.post("/api/v1/orders/bulk", json={"items": [order("o9", "-1", "2026-01-05T10:00:00Z")]})
    assert set(errors_at(negative)) == {"/items/0/total"}
    assert summary(client)["order_count"] == 0


def test_an_order_cannot_move_to_another_customer(client: TestClient, customer: str) -> None:
    client.put("/api/v1/customers/bob", json={})
    client.post("/api/v1/orders", json=order("o1", "1", "2026-01-05T10:00:00Z"))
    moved = client.post("/api/v1/orders", json={**order("o1", "1", "2026-01-05T10:00:00Z"), "customer": "bob"})
    assert moved.status_code == 422
    assert "another customer" in errors_at(moved)["/customer"]


def test_declared_events_are_validated_and_undeclared_accepted(
    client: TestClient, customer: str, store: sa.Engine
) -> None:
    client.put("/api/v1/event-definitions/product_viewed", json={"properties": {"sku": "string", "price": "number"}})
    bad = client.post(
        "/api/v1/events",
        json={"id": "e1", "customer": "ala", "name": "product_viewed", "properties": {"sku": 12, "price": "cheap"}},
    )
    assert set(errors_at(bad)) == {"/properties/sku", "/properties/price"}
    ok = client.post(
        "/api/v1/events",
        json={
            "id": "e1",
            "customer": "ala",
            "name": "product_viewed",
            "timestamp": "2026-03-01T08:00:00Z",
            "properties": {"sku": "A-1", "price": 9.5, "extra": [1, 2]},
        },
    )
    assert ok.status_code == 201
    assert client.post("/api/v1/events", json={"id": "e2", "customer": "ala", "name": "whatever"}).status_code == 201
    duplicate = client.post("/api/v1/events", json={"id": "e2", "customer": "ala", "name": "whatever"})
    assert duplicate.json()["result"] == "duplicate"
    with store.connect() as connection:
        typed = connection.execute(
            sa.text("SELECT key, value_string, value_number FROM event_property_values ORDER BY key")
        ).all()
    assert [tuple(row) for row in typed] == [("price", None, 9.5), ("sku", "A-1", None)]
    listed = client.get("/api/v1/event-definitions").json()
    assert listed[0]["properties"] == {"sku": "string", "price": "number"}


def test_event_property_type_is_fixed_once_values_exist(client: TestClient, customer: str) -> None:
    client.put("/api/v1/event-definitions/search", json={"properties": {"query": "string"}})
    client.post("/api/v1/events", json={"id": "e1", "customer": "ala", "name": "search", "properties": {"query": "x"}})
    assert client.put("/api/v1/event-definitions/search", json={"properties": {"query": "number"}}).status_code == 409
    widened = client.put("/api/v1/event-definitions/search", json={"properties": {"query": "string", "hits": "number"}})
    assert widened.status_code == 200


def test_loyalty_ledger_tiers_and_gift_cards(client: TestClient, customer: str) -> None:
    def txn(txn_id: str, **body: object) -> dict[str, object]:
        return {"id": txn_id, "customer": "ala", **body}

    items = [
        txn("p1", type="points", program="club", entry="earn", points=500, timestamp="2026-01-01T00:00:00Z"),
        txn("p2", type="points", program="club", entry="spend", points=120, timestamp="2026-01-02T00:00:00Z"),
        txn("p3", type="points", program="club", entry="expire", points=30, timestamp="2026-01-03T00:00:00Z"),
        txn("p4", type="points", program="club", entry="adjust", points=-50, timestamp="2026-01-04T00:00:00Z"),
        txn("p5", type="points", program="partners", entry="earn", points=40, timestamp="2026-01-04T00:00:00Z"),
        txn("t1", type="tier", program="club", tier="silver", timestamp="2026-01-01T00:00:00Z"),
        txn("t2", type="tier", program="club", tier="gold", timestamp="2026-02-01T00:00:00Z"),
        txn("t0", type="tier", program="club", tier="bronze", timestamp="2025-12-01T00:00:00Z"),
        txn("r1", type="redemption", program="club", reward="free coffee"),
        txn("f1", type="referral", referred="friend-1"),
        txn("f2", type="referral", referred="friend-2"),
        txn("g1", type="gift_card", gift_card="GC-1", operation="issue", amount="50.00"),
        txn("g2", type="gift_card", gift_card="GC-1", operation="redeem", amount="12.34"),
        txn("g3", type="gift_card", gift_card="GC-2", operation="issue", amount="5"),
    ]
    assert client.post("/api/v1/loyalty/transactions/bulk", json={"items": items}).json()["created"] == len(items)
    s = summary(client)
    assert s["points_balance"] == 500 - 120 - 30 - 50 + 40
    assert {p["program"]: (p["points_balance"], p["tier"]) for p in s["programs"]} == {
        "club": (300, "gold"),
        "partners": (40, None),
    }
    assert (s["redemption_count"], s["referral_count"]) == (1, 2)
    assert s["gift_card_balance"] == "42.66"
    assert {g["code"]: g["balance"] for g in s["gift_cards"]} == {"GC-1": "37.66", "GC-2": "5.00"}


def test_loyalty_input_checks(client: TestClient, customer: str) -> None:
    bad = client.post(
        "/api/v1/loyalty/transactions/bulk",
        json={
            "items": [
                {"id": "a", "customer": "ala", "type": "points", "program": "club", "entry": "earn", "points": -5},
                {
                    "id": "b",
                    "customer": "ala",
                    "type": "gift_card",
                    "gift_card": "G",
                    "operation": "redeem",
                    "amount": "-1",
                },
                {"id": "c", "customer": "ala", "type": "nonsense"},
                {"id": "d", "customer": "ala", "type": "points", "program": "club", "entry": "earn", "points": 0},
                {"id": "e", "customer": "ala", "type": "tier", "program": "club"},
            ]
        },
    )
    assert bad.status_code == 422
    assert set(errors_at(bad)) == {"/items/2/type", "/items/3/points", "/items/4/tier"}
    # The items that pass the shape check are then checked for meaning, all before anything is written.
    meaning = client.post(
        "/api/v1/loyalty/transactions/bulk",
        json={
            "items": [
                {"id": "a", "customer": "ala", "type": "points", "program": "club", "entry": "earn", "points": -5},
                {
                    "id": "b",
                    "customer": "ala",
                    "type": "gift_card",
                    "gift_card": "G",
                    "operation": "redeem",
                    "amount": "-1",
                },
            ]
        },
    )
    assert set(errors_at(meaning)) == {"/items/0/points", "/items/1/amount"}
    assert summary(client)["points_balance"] == 0
