"""Segment analytics: size over time, order value and frequency by month, averages beside all customers, overlaps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.clock import FrozenClock
from cohorta.membership.service import recount_all_statistics
from tests.analytics.shop import SHOP_ORDERS, shop_api
from tests.support import admin_api, run_jobs


@pytest.fixture
def api(store: sa.Engine, clock: FrozenClock) -> Iterator[TestClient]:
    """Poles a, b, c and German d. Orders: a 100 (Jan) + 50 (Feb), b 30 (Feb), d 400 (Feb); a cancelled one."""
    with shop_api(store, clock, [*SHOP_ORDERS, ("c", "999", "2026-02-11T10:00:00Z", "cancelled")]) as client:
        yield client


def segment(api: TestClient, name: str, text: str) -> str:
    created = api.post("/api/v1/segments", json={"name": name, "text": text})
    run_jobs(api)
    return str(created.json()["id"])


def test_months_averages_and_size(api: TestClient) -> None:
    poles = segment(api, "Poles", 'profile.country in ("PL")')
    window = {"from": "2026-01-01", "to": "2026-03-14"}
    report = api.get(f"/api/v1/segments/{poles}/analytics", params=window)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["members"] == 3
    months = {m["month"]: m for m in body["months"]}
    assert list(months) == ["2026-01", "2026-02", "2026-03"]
    assert (months["2026-01"]["orders"], months["2026-01"]["revenue"]) == (1, "100.00")
    feb = months["2026-02"]  # a's 50 (local time), b's 30; c's cancelled order does not count
    assert (feb["orders"], feb["revenue"], feb["average_order_value"], feb["buyers"]) == (2, "80.00", "40.00", 2)
    assert feb["purchase_frequency"] == pytest.approx(2 / 3)
    assert months["2026-03"]["average_order_value"] is None
    recomputed_at = api.get(f"/api/v1/segments/{poles}").json()["statistics"]["as_of"]
    assert body["segment"] == {"customers": 3, "avg_transaction_value": "60.00", "avg_transactions": 1.0,
                               "avg_spending": "60.00", "as_of": recomputed_at}  # fmt: skip
    assert body["all_customers"] == {"customers": 4, "avg_transaction_value": "145.00", "avg_transactions": 1.0,
                                     "avg_spending": "145.00", "as_of": None}  # counted now: no recount yet # fmt: skip
    assert body["clv"]["historical"] == "60.00" and body["clv"]["predicted"] is None
    assert body["size"][-1] == {"day": "2026-03-14", "members": 3, "entered": 3, "exited": 0}
    # All customers' figures as of the periodic recount once one has run; the next recount brings in new orders.
    state = api.app.state  # type: ignore[attr-defined]
    recount_all_statistics(state.session_factory, state.clock.now())
    late = {"id": "late", "customer": "c", "total": "55", "created_at": "2026-03-01T10:00:00Z"}
    assert api.post("/api/v1/orders", json=late).status_code == 201
    everyone = api.get(f"/api/v1/segments/{poles}/analytics", params=window).json()["all_customers"]
    assert (everyone["avg_spending"], everyone["as_of"]) == ("145.00", "2026-03-14T12:00:00Z")
    recount_all_statistics(state.session_factory, state.clock.now())
    everyone = api.get(f"/api/v1/segments/{poles}/analytics", params=window).json()["all_customers"]
    assert (everyone["avg_transactions"], everyone["avg_spending"]) == (1.25, "158.75")
    too_long = api.get(f"/api/v1/segments/{poles}/analytics", params={"from": "2010-01-01", "to": "2026-01-01"})
    assert too_long.status_code == 422


def overlap(api: TestClient, *ids: str) -> dict[str, Any]:
    response = api.post("/api/v1/segments/overlap", json={"segments": list(ids)})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_overlaps_and_saved_combinations(api: TestClient) -> None:
    poles = segment(api, "Poles", 'profile.country in ("PL")')  # a b c
    buyers = segment(api, "Buyers", "summary.order_count >= 1")  # a b d
    big = segment(api, "Big", "summary.total_spent >= 150")  # a d
    result = overlap(api, poles, buyers, big)
    assert result["sizes"] == {poles: 3, buyers: 3, big: 2}
    sizes = {tuple(i["segments"]): i["size"] for i in result["intersections"]}
    assert sizes == {(poles, buyers): 2, (poles, big): 1, (buyers, big): 2, (poles, buyers, big): 1}
    pair = next(p for p in result["pairs"] if (p["a"], p["b"]) == (poles, buyers))
    assert pair["both"] == 2 and pair["jaccard"] == pytest.approx(2 / 4)
    assert api.post("/api/v1/segments/overlap", json={"segments": [poles]}).status_code == 422
    assert api.post("/api/v1/segments/overlap", json={"segments": [poles, "seg_none"]}).status_code == 404
    saved = api.post(
        "/api/v1/segments/combine",
        json={"operation": "difference", "segments": [buyers, poles], "name": "Foreign buyers"},
    )
    assert saved.status_code == 201, saved.text
    assert (saved.json()["type"], saved.json()["members"]) == ("static", 1)
    members = api.get(f"/api/v1/segments/{saved.json()['id']}/members").json()["items"]
    assert [m["source_id"] for m in members] == ["d"]
    both = api.post(
        "/api/v1/segments/combine", json={"operation": "intersection", "segments": [poles, buyers], "name": "PB"}
    )
    assert both.json()["members"] == 2
    again = api.post(
        "/api/v1/segments/combine", json={"operation": "intersection", "segments": [buyers, poles], "name": "BP"}
    )
    assert again.status_code == 409  # the same members as the static segment PB


def test_analytics_refuses_ranges_it_cannot_count(store: sa.Engine, clock: FrozenClock) -> None:
    with admin_api(store, clock) as api:
        assert api.put("/api/v1/customers/c1", json={"country": "PL"}).status_code == 201
        segment = api.post("/api/v1/segments", json={"name": "Poles", "text": 'profile.country in ("PL")'}).json()
        for start, end, field in (("0001-01-01", "9999-12-31", "from"), ("9999-01-01", "9999-12-31", "to")):
            response = api.get(f"/api/v1/segments/{segment['id']}/analytics", params={"from": start, "to": end})
            assert response.status_code == 422, response.text
            assert response.json()["errors"][0]["loc"] == [field]
        deep = api.get("/api/v1/segments", params={"offset": 10**30})
        assert deep.status_code == 422
        assert api.delete(f"/api/v1/users/{10**30}").status_code == 422
