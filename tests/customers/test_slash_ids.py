"""Customer ids with slashes (Shopify's gid://shopify/Customer/1, paths from other systems) work on every customer
route of the API and the UI: the id is the rest of the path, and the routes on a bare id come after the others."""

from __future__ import annotations

import re

import sqlalchemy as sa

from cohorta.clock import FrozenClock
from tests.support import admin_api, run_jobs

GID = "gid://shopify/Customer/7"


def test_every_customer_route_takes_an_id_with_slashes(store: sa.Engine, clock: FrozenClock) -> None:
    with admin_api(store, clock) as api:
        base = f"/api/v1/customers/{GID}"
        assert api.put(base, json={"country": "PL", "loyalty_member": True}).status_code == 201
        assert api.put("/api/v1/customers/gid://shopify/Customer/8", json={"country": "DE"}).status_code == 201
        assert api.get(base).json()["source_id"] == GID
        order = {"id": "o1", "customer": GID, "total": "12.50", "created_at": "2026-03-01T10:00:00Z",
                 "items": [{"sku": "A", "unit_price": "12.50"}]}  # fmt: skip
        assert api.post("/api/v1/orders", json=order).status_code == 201
        assert [o["id"] for o in api.get(f"{base}/orders").json()["items"]] == ["o1"]
        assert api.get(f"{base}/events").json()["total"] == 0
        assert api.put(f"{base}/groups", json={"groups": ["vip"]}).json()[0]["group"] == "vip"
        points = {"program": "club", "points": 5, "reason": "welcome"}
        assert api.post(f"{base}/points", json=points).status_code == 201
        assert api.get(f"{base}/ledger").json()["items"][0]["points"] == 5
        segment = api.post("/api/v1/segments", json={"name": "Poles", "text": 'profile.country in ("PL")'}).json()
        run_jobs(api)
        assert [s["name"] for s in api.get(f"{base}/segments").json()] == ["Poles"]
        assert api.get(f"{base}/segment-history").json()[0]["change"] == "entered"
        assert api.get(f"/api/v1/segments/{segment['id']}/explain/{GID}").json()["matches"] is True
        members = api.get(f"/api/v1/segments/{segment['id']}/members").json()["items"]
        assert [m["source_id"] for m in members] == [GID]
        # the UI's customer page and its "why" open for such an id too
        token = re.search(r'name="login_token" value="([^"]+)"', api.get("/ui/login").text)
        assert api.post("/api/v1/users", json={"email": "v@x.io", "password": "correct-horse-battery",
                                               "role": "viewer"}).status_code == 201  # fmt: skip
        assert token is not None
        login = {"email": "v@x.io", "password": "correct-horse-battery", "login_token": token.group(1)}
        assert api.post("/ui/login", data=login, follow_redirects=False).status_code == 303
        page = api.get(f"/ui/customers/{GID}", headers={"Authorization": ""})
        assert page.status_code == 200 and "Poles" in page.text
        why = api.get(f"/ui/customers/{GID}/why", params={"segment": segment["id"]}, headers={"Authorization": ""})
        assert why.status_code == 200 and f"{GID} is IN" in why.text
        assert api.delete(base).status_code == 204
        assert api.get(base).status_code == 404
        assert api.get("/api/v1/customers/gid://shopify/Customer/8").status_code == 200
