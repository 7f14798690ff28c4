"""Campaigns: selection rules, status, eligibility and why, where-used guards, points from the member list."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.clock import FrozenClock
from tests.support import admin_api, run_jobs


@pytest.fixture
def api(store: sa.Engine, clock: FrozenClock) -> Iterator[TestClient]:
    """Customers: c1 Polish big spender, c2 Polish, c3 German with group 'staff', c4 German with group 'vip'."""
    with admin_api(store, clock) as client:
        for source_id, country in (("c1", "PL"), ("c2", "PL"), ("c3", "DE"), ("c4", "DE")):
            assert client.put(f"/api/v1/customers/{source_id}", json={"country": country}).status_code == 201
        order = {"id": "o1", "customer": "c1", "total": "900", "created_at": "2026-03-01T10:00:00Z"}
        assert client.post("/api/v1/orders", json=order).status_code == 201
        client.put("/api/v1/customers/c3/groups", json={"groups": ["staff"]})
        client.put("/api/v1/customers/c4/groups", json={"groups": ["vip"]})
        yield client


def segment(api: TestClient, name: str, text: str, **extra: Any) -> str:
    response = api.post("/api/v1/segments", json={"name": name, "text": text, **extra})
    assert response.status_code == 201, response.text
    run_jobs(api)
    return str(response.json()["id"])


def campaign(api: TestClient, **body: Any) -> dict[str, Any]:
    response = api.post("/api/v1/campaigns", json={"name": "Spring promo", "kind": "promotion", **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


def eligible(api: TestClient, campaign_id: str, source_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/campaigns/{campaign_id}/eligibility/{source_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_only_active_visible_segments_may_be_selected(api: TestClient) -> None:
    poles = segment(api, "Poles", 'profile.country in ("PL")')
    idle = segment(api, "Idle", 'profile.country in ("DE")', status="inactive")
    created = campaign(api, included_segments=[poles], included_groups=["vip", "vip"])
    assert created["included_segments"] == [{"id": poles, "name": "Poles", "status": "active"}]
    assert created["included_groups"] == ["vip"] and created["status"] == "draft"
    refused = api.post("/api/v1/campaigns", json={"name": "X", "kind": "reward", "included_segments": [idle]})
    assert refused.status_code == 409 and "inactive" in refused.json()["detail"]
    unknown = api.post("/api/v1/campaigns", json={"name": "X", "kind": "reward", "excluded_segments": ["seg_no"]})
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["pointer"] == "/excluded_segments/0"
    both = api.post(
        "/api/v1/campaigns",
        json={"name": "X", "kind": "reward", "included_segments": [poles], "excluded_segments": [poles]},
    )
    assert both.status_code == 422
    bad_kind = api.post("/api/v1/campaigns", json={"name": "X", "kind": "lottery"})
    assert bad_kind.status_code == 422 and bad_kind.json()["errors"][0]["pointer"] == "/kind"
    assert api.get("/api/v1/campaigns", params={"segment": poles}).json()["total"] == 1


def test_status_changes_follow_the_lifecycle(api: TestClient) -> None:
    poles = segment(api, "Poles", 'profile.country in ("PL")')
    created = campaign(api, included_segments=[poles])
    path = f"/api/v1/campaigns/{created['id']}"
    assert api.post(f"{path}/pause").status_code == 409  # a draft cannot be paused
    assert api.post(f"{path}/activate").json()["status"] == "active"
    assert api.delete(path).status_code == 409
    assert api.post(f"{path}/pause").json()["status"] == "paused"
    assert api.post(f"{path}/activate").json()["status"] == "active"
    assert api.post(f"{path}/end").json()["status"] == "ended"
    assert api.post(f"{path}/activate").status_code == 409
    assert api.patch(path, json={"name": "Again"}).status_code == 409
    audit = api.get("/api/v1/audit", params={"object_id": created["id"]}).json()["items"]
    assert [e["action"] for e in reversed(audit)] == [
        "campaign.create", "campaign.active", "campaign.paused", "campaign.active", "campaign.ended",
    ]  # fmt: skip
    assert api.delete(path).status_code == 204


def test_activating_rechecks_segments_chosen_while_a_draft(api: TestClient) -> None:
    poles = segment(api, "Poles", 'profile.country in ("PL")')
    draft = campaign(api, included_segments=[poles])
    assert api.post(f"/api/v1/segments/{poles}/deactivate").status_code == 200  # a draft does not hold it
    refused = api.post(f"/api/v1/campaigns/{draft['id']}/activate")
    assert refused.status_code == 409 and "Poles" in refused.json()["detail"]


def test_eligibility_says_which_segment_or_group_decided(api: TestClient) -> None:
    poles = segment(api, "Poles", 'profile.country in ("PL")')
    big = segment(api, "Big spenders", "summary.total_spent > 500")
    promo = campaign(
        api, status="active", included_segments=[poles], excluded_segments=[big], included_groups=["vip"],
        excluded_groups=["staff"],
    )  # fmt: skip
    c1, c2, c3, c4 = (eligible(api, promo["id"], f"c{n}") for n in range(1, 5))
    assert (c1["eligible"], c1["reason"]) == (False, "excluded: member of segment Big spenders")
    assert c1["decided_by"] == [{"type": "segment", "id": big, "name": "Big spenders", "role": "exclude"}]
    assert (c2["eligible"], c2["reason"]) == (True, "member of segment Poles")
    assert (c3["eligible"], c3["decided_by"][0]["type"], c3["decided_by"][0]["id"]) == (False, "group", "staff")
    assert (c4["eligible"], c4["reason"]) == (True, "member of group vip")
    everyone = campaign(api, name="All", status="active")
    assert eligible(api, everyone["id"], "c3")["reason"] == "the campaign targets every customer"
    api.post(f"/api/v1/campaigns/{promo['id']}/pause")
    paused = eligible(api, promo["id"], "c2")
    assert (paused["eligible"], paused["reason"]) == (False, "the campaign is paused")
    assert api.get(f"/api/v1/campaigns/{promo['id']}/eligibility/nobody").status_code == 404


def test_eligibility_follows_membership_changes_at_once(api: TestClient) -> None:
    poles = segment(api, "Poles", 'profile.country in ("PL")')
    promo = campaign(api, status="active", included_segments=[poles])
    assert not eligible(api, promo["id"], "c3")["eligible"]
    api.put("/api/v1/customers/c3", json={"country": "PL"})
    assert eligible(api, promo["id"], "c3")["eligible"]


def test_many_customers_and_campaigns_at_once(api: TestClient) -> None:
    poles = segment(api, "Poles", 'profile.country in ("PL")')
    first = campaign(api, status="active", included_segments=[poles])
    second = campaign(api, name="Germans", status="active", excluded_segments=[poles])
    response = api.post(
        "/api/v1/eligibility/check", json={"customers": ["c1", "c3", "ghost"], "campaigns": [first["id"], second["id"]]}
    )
    results = response.json()["results"]
    assert [(r["source_id"], r["campaign_id"] == first["id"], r["eligible"]) for r in results] == [
        ("c1", True, True), ("c1", False, False), ("c3", True, False), ("c3", False, True),
        ("ghost", True, False), ("ghost", False, False),
    ]  # fmt: skip
    assert results[4]["error"] == "no customer 'ghost'"
    too_many = api.post("/api/v1/eligibility/check", json={"customers": ["c"] * 1001, "campaigns": [first["id"]]})
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["pointer"] == "/customers"


def test_usage_lists_consumers_and_guards_refuse_with_their_names(api: TestClient) -> None:
    poles = segment(api, "Poles", 'profile.country in ("PL")')
    rich_poles = segment(api, "Rich Poles", "summary.total_spent > 500", rule=None)
    api.patch(f"/api/v1/segments/{rich_poles}", json={"rule": {"in_segment": poles}})
    promo = campaign(api, status="active", included_segments=[poles])
    usage = api.get(f"/api/v1/segments/{poles}/usage").json()
    assert [(c["id"], c["detail"]) for c in usage["campaigns"]] == [(promo["id"], "promotion, include")]
    assert [s["id"] for s in usage["segments"]] == [rich_poles]
    assert usage["webhooks"] == usage["exports"] == usage["sources"] == [] and usage["hidden"] == 0
    refused = api.post(f"/api/v1/segments/{poles}/deactivate")
    assert refused.status_code == 409
    assert "Spring promo" in refused.json()["detail"] and "Rich Poles" in refused.json()["detail"]
    api.post(f"/api/v1/segments/{rich_poles}/deactivate")
    api.post(f"/api/v1/campaigns/{promo['id']}/end")
    assert api.post(f"/api/v1/segments/{poles}/deactivate").status_code == 200
    kept = api.delete(f"/api/v1/segments/{poles}")  # an ended campaign still names it: archive instead
    assert kept.status_code == 409 and promo["id"] in kept.json()["detail"]
    api.delete(f"/api/v1/segments/{rich_poles}")
    assert api.post(f"/api/v1/segments/{poles}/archive").json()["status"] == "archived"
    assert api.get(f"/api/v1/campaigns/{promo['id']}").json()["included_segments"][0]["status"] == "archived"


def test_points_from_the_member_list_update_balance_and_segments(api: TestClient) -> None:
    loyal = segment(api, "Loyal", "loyalty.points_balance >= 100")
    added = api.post("/api/v1/customers/c2/points", json={"program": "club", "points": 120, "reason": "goodwill"})
    assert added.status_code == 201, added.text
    body = added.json()
    assert (body["balance"], body["entered"], body["exited"]) == (120, [loyal], [])
    too_much = api.post("/api/v1/customers/c2/points", json={"program": "club", "points": -500, "reason": "fix"})
    assert too_much.status_code == 409 and "balance is 120" in too_much.json()["detail"]
    removed = api.post("/api/v1/customers/c2/points", json={"program": "club", "points": -30, "reason": "fix"})
    assert (removed.json()["balance"], removed.json()["exited"]) == (90, [loyal])
    assert api.get("/api/v1/customers/c2").json()["summary"]["points_balance"] == 90
    no_reason = api.post("/api/v1/customers/c2/points", json={"program": "club", "points": 5, "reason": " "})
    assert no_reason.status_code == 422 and no_reason.json()["errors"][0]["pointer"] == "/reason"
    audit = api.get("/api/v1/audit", params={"action": "points.adjust"}).json()["items"]
    assert [(e["before"]["balance"], e["after"]["balance"], e["after"]["reason"]) for e in audit] == [
        (120, 90, "fix"), (0, 120, "goodwill"),
    ]  # fmt: skip


def test_refusals_never_name_what_the_caller_cannot_see(api: TestClient) -> None:
    for team in ("alpha", "beta"):
        api.post("/api/v1/teams", json={"id": team, "name": team})
    api.post("/api/v1/users", json={"email": "out@x.io", "password": "long enough pw", "role": "editor",
                                    "teams": ["beta"]})  # fmt: skip
    shared = segment(api, "Shared", 'profile.country in ("PL")')
    campaign(api, name="Alpha secret promo", status="active", team="alpha", included_segments=[shared])
    outsider = TestClient(api.app)
    login = outsider.post("/api/v1/auth/login", json={"email": "out@x.io", "password": "long enough pw"}).json()
    outsider.headers["X-CSRF-Token"] = login["csrf_token"]
    refused = outsider.post(f"/api/v1/segments/{shared}/deactivate")
    assert refused.status_code == 409
    assert "1 in teams you cannot see" in refused.json()["detail"] and "Alpha" not in refused.json()["detail"]
    usage = outsider.get(f"/api/v1/segments/{shared}/usage").json()
    assert (usage["campaigns"], usage["hidden"]) == ([], 1)
    hidden_loyal = segment(api, "Alpha loyal", "loyalty.points_balance >= 10", team="alpha")
    adjusted = outsider.post("/api/v1/customers/c2/points", json={"program": "club", "points": 10, "reason": "x"})
    assert adjusted.json()["entered"] == []  # it did enter Alpha loyal, which the outsider cannot see
    assert hidden_loyal in {s["id"] for s in api.get("/api/v1/customers/c2/segments").json()}
    assert outsider.get(f"/api/v1/campaigns?segment={shared}").json()["total"] == 0


def test_bad_points_are_pointed_at(api: TestClient) -> None:
    zero = api.post("/api/v1/customers/c2/points", json={"program": "club", "points": 0, "reason": "x"})
    assert zero.status_code == 422 and zero.json()["errors"][0]["pointer"] == "/points"
    unknown = api.post("/api/v1/customers/nobody/points", json={"program": "club", "points": 5, "reason": "x"})
    assert unknown.status_code == 404
