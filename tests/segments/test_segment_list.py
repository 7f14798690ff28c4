"""The segment list: figures kept with membership, search, several filters at once, sorts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.clock import FrozenClock
from cohorta.membership.service import recount_all_statistics
from tests.support import admin_api, run_jobs


@pytest.fixture
def api(store: sa.Engine, clock: FrozenClock) -> Iterator[TestClient]:
    """Poles a (2 orders: 100 + 50), b (1 order: 30), c (none); German d (1 order: 400)."""
    with admin_api(store, clock) as client:
        for source_id, country in (("a", "PL"), ("b", "PL"), ("c", "PL"), ("d", "DE")):
            client.put(f"/api/v1/customers/{source_id}", json={"country": country})
        for n, (customer, total) in enumerate((("a", "100"), ("a", "50"), ("b", "30"), ("d", "400"))):
            order = {"id": f"o{n}", "customer": customer, "total": total, "created_at": "2026-03-01T10:00:00Z"}
            client.post("/api/v1/orders", json=order)
        yield client


def create(api: TestClient, name: str, text: str, **extra: Any) -> str:
    response = api.post("/api/v1/segments", json={"name": name, "text": text, **extra})
    assert response.status_code == 201, response.text
    run_jobs(api)
    return str(response.json()["id"])


def listed(api: TestClient, **params: Any) -> list[str]:
    response = api.get("/api/v1/segments", params=params)
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def figures(api: TestClient, segment_id: str) -> dict[str, Any]:
    return dict(api.get(f"/api/v1/segments/{segment_id}").json()["statistics"])


def test_figures_are_exact_after_a_recompute(api: TestClient) -> None:
    poles = create(api, "Poles", 'profile.country in ("PL")')
    stats = figures(api, poles)
    # 3 members, 3 orders, 180 spent: 60 per order, 1 order and 60 spent per member.
    assert (stats["avg_transaction_value"], stats["avg_transactions"], stats["avg_spending"]) == ("60.00", 1.0, "60.00")
    assert stats["avg_clv"] is None and stats["as_of"] is not None


def test_entries_and_exits_count_at_once_and_spending_at_the_next_recount(api: TestClient, clock: FrozenClock) -> None:
    poles = create(api, "Poles", 'profile.country in ("PL")')
    api.put("/api/v1/customers/d", json={"country": "PL"})  # d enters with 1 order of 400
    stats = figures(api, poles)
    assert (stats["avg_transaction_value"], stats["avg_spending"]) == ("145.00", "145.00")  # 580 / 4 orders, / 4
    api.put("/api/v1/customers/a", json={"country": "FR"})  # a leaves with 150 over 2 orders
    assert figures(api, poles)["avg_spending"] == "143.33"  # 430 / 3, rounded half up
    api.post(
        "/api/v1/orders", json={"id": "late", "customer": "c", "total": "70", "created_at": "2026-03-02T10:00:00Z"}
    )
    assert figures(api, poles)["avg_spending"] == "143.33"  # the members did not change: the figure waits
    clock.advance(timedelta(minutes=10))
    state = api.app.state  # type: ignore[attr-defined]
    assert recount_all_statistics(state.session_factory, clock.now()) == 1
    after = figures(api, poles)
    assert (after["avg_spending"], after["avg_transactions"]) == ("166.67", 1.0)  # 500 / 3, 3 orders / 3
    assert after["as_of"].startswith("2026-03-14T12:10")


def test_search_filters_and_sorts(api: TestClient) -> None:
    api.post("/api/v1/teams", json={"id": "crm", "name": "CRM"})
    poles = create(api, "Poles", 'profile.country in ("PL")', description="Everyone in Poland")
    create(api, "Germans", 'profile.country in ("DE")', team="crm")
    create(api, "Spenders", "summary.total_spent > 100")  # a (150), d (400)
    create(api, "Nobody", 'profile.country in ("JP")', status="inactive")
    assert listed(api) == ["Germans", "Nobody", "Poles", "Spenders"]
    assert listed(api, q="ERS") == ["Spenders"]
    assert listed(api, description="poland") == ["Poles"]
    assert listed(api, team="crm") == ["Germans"]
    assert listed(api, status="inactive") == ["Nobody"]
    assert listed(api, members_min=2) == ["Poles", "Spenders"]
    assert listed(api, avg_spending_min="200") == ["Germans", "Spenders"]  # 400; 275
    assert listed(api, avg_spending_min="200", members_min=2) == ["Spenders"]  # several at once
    assert listed(api, avg_transaction_value_max="100", avg_transactions_min=1) == ["Poles"]
    assert listed(api, sort="-avg_spending") == ["Germans", "Spenders", "Poles", "Nobody"]  # no figure: last
    assert listed(api, sort="members") == ["Nobody", "Germans", "Spenders", "Poles"]
    assert listed(api, created_from="2026-03-14", created_to="2026-03-14")[:1] == ["Germans"]
    assert listed(api, created_from="2026-03-15") == []
    row = api.get("/api/v1/segments", params={"q": "poles"}).json()["items"][0]
    assert (row["id"], row["conditions"], row["members"], row["refresh"]["state"]) == (poles, 1, 3, "done")
    bad = api.get("/api/v1/segments", params={"sort": "colour"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/sort"
