"""Distribution campaigns deliver their audience to a real HTTP receiver on loopback, or to a file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.campaigns.distribution import run_due_distributions
from cohorta.clock import FrozenClock
from tests.support import Receiver, admin_api, run_jobs

SECRET = "a-long-shared-secret"


@pytest.fixture
def api(store: sa.Engine, clock: FrozenClock, tmp_path: Path) -> Iterator[TestClient]:
    """25 customers c00..c24: even ones Polish; c03 and c05 in group 'vip'; c02 in group 'staff'."""
    options = dict(export_dir=str(tmp_path / "exports"), webhook_backoff_seconds=0.01, webhook_timeout_seconds=0.5)
    with admin_api(store, clock, **options) as client:
        items = [{"source_id": f"c{n:02d}", "country": "PL" if n % 2 == 0 else "DE"} for n in range(25)]
        assert client.post("/api/v1/customers/bulk", json={"items": items}).status_code == 200
        for source_id, group in (("c03", "vip"), ("c05", "vip"), ("c02", "staff")):
            client.put(f"/api/v1/customers/{source_id}/groups", json={"groups": [group]})
        poles = client.post("/api/v1/segments", json={"name": "Poles", "text": 'profile.country in ("PL")'})
        run_jobs(client)
        client.headers["X-Poles"] = poles.json()["id"]
        yield client


def distribution(api: TestClient, target: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {
        "name": "Daily audience", "kind": "distribution", "status": "active",
        "included_segments": [api.headers["X-Poles"]], "included_groups": ["vip"], "excluded_groups": ["staff"],
        "distribution": target, **extra,
    }  # fmt: skip
    response = api.post("/api/v1/campaigns", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def expected_audience() -> list[str]:
    poles = {f"c{n:02d}" for n in range(0, 25, 2)}
    return sorted((poles | {"c03", "c05"}) - {"c02"})


def test_webhook_gets_signed_batches_of_the_audience(api: TestClient, receiver: Receiver) -> None:
    created = distribution(api, {"target": "webhook", "url": receiver.url, "secret": SECRET, "batch_size": 5})
    assert created["distribution"]["has_secret"] is True and "secret" not in created["distribution"]
    report = api.post(f"/api/v1/campaigns/{created['id']}/deliveries")
    assert report.status_code == 201, report.text
    audience = expected_audience()
    batches = -(-len(audience) // 5)
    assert report.json() | {"duration_ms": 0, "started_at": "", "finished_at": "", "id": 0, "bytes": 0} == {
        "id": 0, "campaign_id": created["id"], "trigger": "manual", "target": "webhook", "destination": receiver.url,
        "status": "succeeded", "recipients": len(audience), "batches": batches, "attempts": batches, "bytes": 0,
        "error": None, "started_at": "", "finished_at": "", "duration_ms": 0, "actor": "admin-token",
    }  # fmt: skip
    payloads = receiver.payloads()
    assert [p["batch"] for p in payloads] == list(range(1, batches + 1))
    assert {p["total"] for p in payloads} == {len(audience)} and {p["batches"] for p in payloads} == {batches}
    assert [c for p in payloads for c in p["customers"]] == audience
    assert receiver.verify(SECRET) and not receiver.verify("another secret")
    listed = api.get(f"/api/v1/campaigns/{created['id']}/deliveries").json()
    assert [d["id"] for d in listed] == [report.json()["id"]]


def test_webhook_failures_are_retried_with_backoff_then_reported(api: TestClient, receiver: Receiver) -> None:
    created = distribution(api, {"target": "webhook", "url": receiver.url, "secret": SECRET, "batch_size": 100})
    receiver.fail_first = 2
    retried = api.post(f"/api/v1/campaigns/{created['id']}/deliveries").json()
    assert (retried["status"], retried["attempts"], retried["batches"]) == ("succeeded", 3, 1)
    receiver.requests.clear()
    receiver.status = 400
    refused = api.post(f"/api/v1/campaigns/{created['id']}/deliveries").json()
    assert (refused["status"], refused["attempts"], refused["recipients"]) == ("failed", 1, 0)
    assert "400" in refused["error"] and len(receiver.requests) == 1  # a 400 is not retried
    receiver.status, receiver.delay = 200, 1.0
    slow = api.post(f"/api/v1/campaigns/{created['id']}/deliveries").json()
    assert (slow["status"], slow["attempts"]) == ("failed", 3) and "Timeout" in slow["error"]


def test_file_delivery_writes_a_safe_csv_or_json_lines(api: TestClient, tmp_path: Path) -> None:
    api.put("/api/v1/customers/=HYPERLINK(1)", json={"country": "PL"})
    created = distribution(api, {"target": "file", "format": "csv"})
    report = api.post(f"/api/v1/campaigns/{created['id']}/deliveries").json()
    path = Path(report["destination"])
    assert path.parent == tmp_path / "exports" / "distributions" / created["id"] and path.suffix == ".csv"
    lines = path.read_text().splitlines()
    assert lines[0] == "source_id" and lines[1] == "'=HYPERLINK(1)"  # a spreadsheet would run it: neutralised
    assert lines[2:] == expected_audience()
    assert report["recipients"] == len(lines) - 1 and report["bytes"] == path.stat().st_size
    assert not list(path.parent.glob("*.partial"))
    api.patch(f"/api/v1/campaigns/{created['id']}", json={"distribution": {"target": "file", "format": "jsonl"}})
    jsonl = Path(api.post(f"/api/v1/campaigns/{created['id']}/deliveries").json()["destination"])
    assert [json.loads(line)["source_id"] for line in jsonl.read_text().splitlines()][1:] == expected_audience()


def test_scheduled_deliveries_run_when_due(api: TestClient, receiver: Receiver, clock: FrozenClock) -> None:
    target = {"target": "webhook", "url": receiver.url, "secret": SECRET, "period_seconds": 3600}
    created = distribution(api, target)
    state = api.app.state  # type: ignore[attr-defined]
    assert run_due_distributions(state.session_factory, clock, state.settings) == 0
    clock.advance(timedelta(hours=1))
    assert run_due_distributions(state.session_factory, clock, state.settings) == 1
    assert run_due_distributions(state.session_factory, clock, state.settings) == 0  # next one an hour later
    deliveries = api.get(f"/api/v1/campaigns/{created['id']}/deliveries").json()
    assert [(d["trigger"], d["actor"]) for d in deliveries] == [("schedule", "scheduler")]
    api.post(f"/api/v1/campaigns/{created['id']}/pause")
    clock.advance(timedelta(hours=2))
    assert run_due_distributions(state.session_factory, clock, state.settings) == 0  # paused: nothing goes out
    assert len(receiver.requests) == 1


def test_only_distribution_campaigns_that_may_deliver_do(api: TestClient, receiver: Receiver) -> None:
    promo = api.post("/api/v1/campaigns", json={"name": "Promo", "kind": "promotion"}).json()
    assert api.post(f"/api/v1/campaigns/{promo['id']}/deliveries").status_code == 409
    with_target = {"name": "P", "kind": "promotion", "distribution": {"target": "file"}}
    assert api.post("/api/v1/campaigns", json=with_target).status_code == 422
    no_url = {"name": "D", "kind": "distribution", "distribution": {"target": "webhook", "secret": SECRET}}
    assert api.post("/api/v1/campaigns", json=no_url).status_code == 422
    created = distribution(api, {"target": "webhook", "url": receiver.url, "secret": SECRET})
    api.post(f"/api/v1/campaigns/{created['id']}/end")
    assert api.post(f"/api/v1/campaigns/{created['id']}/deliveries").status_code == 409
    assert receiver.requests == []


def test_the_webhook_secret_is_write_only_and_kept(api: TestClient, receiver: Receiver) -> None:
    created = distribution(api, {"target": "webhook", "url": receiver.url, "secret": SECRET})
    moved = api.patch(f"/api/v1/campaigns/{created['id']}", json={"distribution": {"target": "webhook",
                      "url": receiver.url + "?v=2", "batch_size": 2}})  # fmt: skip
    assert moved.status_code == 200 and moved.json()["distribution"]["has_secret"] is True
    api.post(f"/api/v1/campaigns/{created['id']}/deliveries")
    assert receiver.requests and receiver.verify(SECRET)
    assert SECRET not in str(api.get(f"/api/v1/campaigns/{created['id']}").json())
    assert SECRET not in str(api.get("/api/v1/audit").json())
    lost = api.patch(f"/api/v1/campaigns/{created['id']}", json={"distribution": None})
    assert lost.status_code == 422 and lost.json()["errors"][0]["pointer"] == "/distribution"
    fresh = {"name": "New", "kind": "distribution", "distribution": {"target": "webhook", "url": receiver.url}}
    no_secret = api.post("/api/v1/campaigns", json=fresh)
    assert no_secret.status_code == 422 and no_secret.json()["errors"][0]["pointer"] == "/distribution/secret"
