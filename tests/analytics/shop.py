"""Shared set-up of the analytics tests: a small shop in Warsaw time."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.clock import FrozenClock
from tests.support import admin_api

#: (customer, total, created_at, status) of the orders both shops share; 00:30 on 1 February in Warsaw for a's second.
SHOP_ORDERS = [
    ("a", "100", "2026-01-15T10:00:00Z", "paid"),
    ("a", "50", "2026-01-31T23:30:00Z", "paid"),
    ("b", "30", "2026-02-10T10:00:00Z", "fulfilled"),
    ("d", "400", "2026-02-10T10:00:00Z", "paid"),
]


@contextlib.contextmanager
def shop_api(store: sa.Engine, clock: FrozenClock, orders: list[tuple[str, str, str, str]]) -> Iterator[TestClient]:
    """An admin client on a project in Warsaw time with Poles a, b, c, German d, and these orders (ids o0, o1, ...)."""
    with admin_api(store, clock, timezone="Europe/Warsaw") as client:
        for source_id, country in (("a", "PL"), ("b", "PL"), ("c", "PL"), ("d", "DE")):
            client.put(f"/api/v1/customers/{source_id}", json={"country": country})
        for n, (customer, total, at, state) in enumerate(orders):
            body = {"id": f"o{n}", "customer": customer, "total": total, "created_at": at, "status": state}
            assert client.post("/api/v1/orders", json=body).status_code == 201
        yield client
