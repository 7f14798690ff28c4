"""Webhook subscriptions: the transactional outbox, signed batches, retries with backoff, the delivery log; against a
real HTTP receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.clock import FrozenClock
from cohorta.webhooks.service import dispatch
from tests.support import Receiver, admin_api, run_jobs

SECRET = "subscriber-shared-secret"


@pytest.fixture
def api(store: sa.Engine, clock: FrozenClock) -> Iterator[TestClient]:
    retries = {"webhook_timeout_seconds": 0.5, "webhook_retry_base_seconds": 10, "webhook_max_retries": 4}
    with admin_api(store, clock, **retries) as client:
        client.put("/api/v1/customers/c1", json={"country": "DE"})
        yield client


def send(api: TestClient) -> int:
    state = api.app.state  # type: ignore[attr-defined]
    return dispatch(state.session_factory, state.clock, state.settings)


def subscribe(api: TestClient, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    body = {"url": receiver.url, "event_types": ["segment.entered", "segment.exited"], "secret": SECRET, **extra}
    response = api.post("/api/v1/webhooks", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def poles(api: TestClient) -> str:
    created = api.post("/api/v1/segments", json={"name": "Poles", "text": 'profile.country in ("PL")'})
    run_jobs(api)
    return str(created.json()["id"])


def events(receiver: Receiver) -> list[tuple[str, str]]:
    return [(e["type"], e["customer"]) for p in receiver.payloads() for e in p["events"]]


def test_entries_and_exits_arrive_signed_in_order(api: TestClient, receiver: Receiver) -> None:
    segment = poles(api)
    subscription = subscribe(api, receiver)
    assert subscription["secret"] is None  # we sent our own: nothing to show
    api.put("/api/v1/customers/c1", json={"country": "PL"})
    api.put("/api/v1/customers/c2", json={"country": "PL"})
    api.put("/api/v1/customers/c1", json={"country": "FR"})
    assert api.get(f"/api/v1/webhooks/{subscription['id']}").json()["pending"] == 3
    assert send(api) == 3
    assert events(receiver) == [("segment.entered", "c1"), ("segment.entered", "c2"), ("segment.exited", "c1")]
    assert len(receiver.requests) == 1 and receiver.verify(SECRET)  # one batch
    event = receiver.payloads()[0]["events"][0]
    assert event["segment"] == {"id": segment, "name": "Poles", "version": 1} and event["cause"] == "data"
    assert event["occurred_at"].startswith("2026-03-14T12:00:00")
    assert send(api) == 0  # nothing twice
    log = api.get(f"/api/v1/webhooks/{subscription['id']}/deliveries").json()
    assert [(d["ok"], d["events"], d["status_code"], d["attempt"]) for d in log] == [(True, 3, 200, 1)]


def test_a_rolled_back_change_notifies_nobody(api: TestClient, receiver: Receiver) -> None:
    poles(api)
    subscribe(api, receiver)
    bad = api.post(
        "/api/v1/customers/bulk",
        json={"items": [{"source_id": "c5", "country": "PL"}, {"source_id": "c6", "birthdate": "not a date"}]},
    )
    assert bad.status_code == 422  # all or nothing: c5 was not written, so it entered nothing
    assert send(api) == 0 and receiver.requests == []


def test_a_failing_receiver_is_retried_with_backoff_and_recovers(
    api: TestClient, receiver: Receiver, clock: FrozenClock
) -> None:
    poles(api)
    subscription = subscribe(api, receiver)
    api.put("/api/v1/customers/c1", json={"country": "PL"})
    receiver.fail_first = 2
    assert send(api) == 0
    clock.advance(timedelta(seconds=9))
    assert send(api) == 0 and len(receiver.requests) == 1  # not before the backoff (10 s)
    api.put("/api/v1/customers/c2", json={"country": "PL"})  # newer events wait behind the failed one
    assert send(api) == 0 and len(receiver.requests) == 1
    clock.advance(timedelta(seconds=1))
    assert send(api) == 0  # second failure: next in 20 s
    clock.advance(timedelta(seconds=20))
    assert send(api) == 1  # the failed batch, exactly as it was
    assert send(api) == 1  # then the newer event
    assert events(receiver)[-2:] == [("segment.entered", "c1"), ("segment.entered", "c2")]
    keys = [r["headers"]["X-Cohorta-Delivery"] for r in receiver.requests]
    assert keys[0] == keys[1] == keys[2] != keys[3]  # a retry of the same batch carries the same key
    log = api.get(f"/api/v1/webhooks/{subscription['id']}/deliveries").json()
    assert [(d["ok"], d["attempt"], d["status_code"]) for d in reversed(log)] == [
        (False, 1, 503), (False, 2, 503), (True, 3, 200), (True, 1, 200),
    ]  # fmt: skip
    assert log[-1]["next_attempt_at"] is not None and log[0]["next_attempt_at"] is None


def test_a_slow_receiver_times_out_and_events_are_given_up_after_the_last_retry(
    api: TestClient, receiver: Receiver, clock: FrozenClock
) -> None:
    poles(api)
    subscription = subscribe(api, receiver)
    api.put("/api/v1/customers/c1", json={"country": "PL"})
    receiver.delay = 1.0
    for _ in range(4):
        assert send(api) == 0
        clock.advance(timedelta(hours=1))
    state = api.get(f"/api/v1/webhooks/{subscription['id']}").json()
    assert (state["pending"], state["dead"]) == (0, 1)
    log = api.get(f"/api/v1/webhooks/{subscription['id']}/deliveries").json()
    assert len(log) == 4 and all("Timeout" in d["error"] for d in log) and log[0]["next_attempt_at"] is None


def test_filters_by_segment_and_event_type_and_status_changes(api: TestClient, receiver: Receiver) -> None:
    segment = poles(api)
    other = api.post("/api/v1/segments", json={"name": "Germans", "text": 'profile.country in ("DE")'}).json()["id"]
    run_jobs(api)
    subscribe(api, receiver, segments=[segment], event_types=["segment.exited", "segment.status_changed"])
    api.put("/api/v1/customers/c9", json={"country": "PL"})  # entered Poles: not subscribed
    api.put("/api/v1/customers/c9", json={"country": "DE"})  # left Poles, entered Germans: only the exit
    api.post(f"/api/v1/segments/{segment}/deactivate")
    api.post(f"/api/v1/segments/{other}/deactivate")  # another segment: filtered out
    send(api)
    sent = [e for p in receiver.payloads() for e in p["events"]]
    assert [e["type"] for e in sent] == ["segment.exited", "segment.status_changed"]
    assert (sent[1]["from"], sent[1]["to"], sent[1]["actor"]) == ("active", "inactive", "admin-token")
    usage = api.get(f"/api/v1/segments/{segment}/usage").json()
    assert [w["name"] for w in usage["webhooks"]] == [receiver.url]
    refused = api.delete(f"/api/v1/segments/{segment}")
    assert refused.status_code == 409 and "webhook" in refused.json()["detail"]


def test_many_changes_go_in_batches(api: TestClient, receiver: Receiver) -> None:
    poles(api)
    subscribe(api, receiver, batch_size=4)
    items = [{"source_id": f"p{n}", "country": "PL"} for n in range(10)]
    api.post("/api/v1/customers/bulk", json={"items": items})
    while send(api):
        pass
    assert [len(p["events"]) for p in receiver.payloads()] == [4, 4, 2]
    assert [c for _, c in events(receiver)] == [f"p{n}" for n in range(10)]


def test_subscriptions_are_validated_and_secrets_write_only(api: TestClient, receiver: Receiver) -> None:
    generated = api.post("/api/v1/webhooks", json={"url": receiver.url, "event_types": ["segment.entered"]}).json()
    assert generated["secret"].startswith("whsec_")
    assert "secret" not in api.get(f"/api/v1/webhooks/{generated['id']}").json()
    assert "whsec_" not in str(api.get("/api/v1/audit", params={"object_type": "webhook"}).json())
    unknown = api.post("/api/v1/webhooks", json={"url": receiver.url, "event_types": ["segment.entered"],
                                                "segments": ["seg_nope"]})  # fmt: skip
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["pointer"] == "/segments/0"
    bad_type = api.post("/api/v1/webhooks", json={"url": receiver.url, "event_types": ["order.created"]})
    assert bad_type.status_code == 422
    paused = api.patch(f"/api/v1/webhooks/{generated['id']}", json={"active": False}).json()
    assert paused["active"] is False
    assert api.delete(f"/api/v1/webhooks/{generated['id']}").status_code == 204
    assert api.get(f"/api/v1/webhooks/{generated['id']}").status_code == 404
