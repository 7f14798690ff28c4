"""Importing remote lists as external segments and syncing them, through the API, on SQLite and PostgreSQL: sync
semantics, the small-result guard, failures that keep members, backoff on the injectable clock, the scheduler's
claim, hand-edit refusal, usage and deletion."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.clock import FrozenClock
from cohorta.sources import service
from cohorta.sources.crypto import generate_key
from cohorta.sources.models import SourceSegment
from tests.sources.remote import Remote, Reply
from tests.support import admin_api

API = "/api/v1"
CUSTOMERS = [  # source_id, email, loyalty member
    ("c1", "Ann@Example.com", True), ("c2", "bob@example.com", True), ("c3", "cy@example.com", True),
    ("c4", "dee@example.com", False), ("c5", "eve@example.com", True),
]  # fmt: skip


@pytest.fixture
def api(store: sa.Engine, clock: FrozenClock) -> Iterator[TestClient]:
    limits = {"secret_key": generate_key(), "source_timeout_seconds": 0.5, "source_retry_base_seconds": 60}
    with admin_api(store, clock, **limits) as client:
        for source_id, email, member in CUSTOMERS:
            response = client.put(f"{API}/customers/{source_id}", json={"email": email, "loyalty_member": member})
            assert response.status_code == 201, response.text
        yield client


@pytest.fixture
def remote() -> Iterator[Remote]:
    server = Remote()
    yield server
    server.close()


def csv_of(*emails: str) -> str:
    return "email,name\n" + "".join(f"{e},x\n" for e in emails)


def csv_source(api: TestClient, *emails: str, **extra: Any) -> dict[str, Any]:
    body = {"name": "Newsletter", "kind": "csv", "key_field": "email", "config": {"key_column": "email"},
            "content": csv_of(*emails), **extra}  # fmt: skip
    response = api.post(f"{API}/sources", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def import_(api: TestClient, source_id: str, remote_id: str = "file", **extra: Any) -> dict[str, Any]:
    response = api.post(f"{API}/sources/{source_id}/import", json={"remote_id": remote_id, **extra})
    assert response.status_code == 201, response.text
    return dict(response.json())


def members(api: TestClient, segment_id: str) -> list[str]:
    page = api.get(f"{API}/segments/{segment_id}/members", params={"limit": 1000}).json()
    return [m["source_id"] for m in page["items"]]


def set_content(api: TestClient, source_id: str, *emails: str) -> None:
    response = api.patch(f"{API}/sources/{source_id}", json={"content": csv_of(*emails)})
    assert response.status_code == 200, response.text


def sync(api: TestClient, segment_id: str, **body: Any) -> dict[str, Any]:
    response = api.post(f"{API}/segments/{segment_id}/sync", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def run_scheduler(api: TestClient) -> list[str]:
    state = api.app.state  # type: ignore[attr-defined]
    return service.run_due_syncs(state.session_factory, state.clock, state.settings, limit=10)


def test_import_creates_a_labelled_external_segment_and_syncs_it(api: TestClient) -> None:
    source = csv_source(api, "ann@example.com", "BOB@example.com", "dee@example.com", "zed@example.com", "")
    remote = api.get(f"{API}/sources/{source['id']}/remote-segments").json()
    assert remote == [{"id": "file", "name": "the whole file", "kind": "list", "size": 5, "imported_as": None}]
    segment = import_(api, source["id"], name="Newsletter readers")
    assert (segment["type"], segment["name"], segment["members"]) == ("external", "Newsletter readers", 2)
    assert "Imported from Newsletter (csv)" in segment["description"]
    link = segment["source"]
    assert (link["source_id"], link["remote_id"], link["key_field"], link["failures"]) == (
        source["id"],
        "file",
        "email",
        0,
    )
    report = link["last_report"]
    assert (report["status"], report["trigger"], report["received"], report["added"]) == ("ok", "import", 5, 2)
    assert (report["unmatched"], report["unmatched_examples"]) == (2, ["zed@example.com", ""])
    assert (report["skipped"], report["skipped_examples"]) == (1, ["c4"])  # not a loyalty member: never added
    assert members(api, segment["id"]) == ["c1", "c2"]  # emails match case-insensitively
    history = api.get(f"{API}/segments/{segment['id']}/history").json()
    assert {(h["source_id"], h["cause"]) for h in history} == {("c1", "sync"), ("c2", "sync")}
    again = api.get(f"{API}/sources/{source['id']}/remote-segments").json()
    assert again[0]["imported_as"] == segment["id"]
    duplicate = api.post(f"{API}/sources/{source['id']}/import", json={"remote_id": "file", "name": "Other"})
    assert duplicate.status_code == 409 and segment["id"] in duplicate.json()["detail"]
    unknown = api.post(f"{API}/sources/{source['id']}/import", json={"remote_id": "nope"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["type"] == "unknown_remote"


def test_sync_adds_the_new_removes_the_gone_and_counts_the_unchanged(api: TestClient, clock: FrozenClock) -> None:
    source = csv_source(api, "ann@example.com", "bob@example.com")
    segment = import_(api, source["id"])
    set_content(api, source["id"], "bob@example.com", "cy@example.com", "eve@example.com", "dee@example.com")
    clock.advance(timedelta(minutes=5))
    report = sync(api, segment["id"])
    counts = {k: report[k] for k in ("status", "trigger", "added", "removed", "unchanged", "unmatched", "skipped")}
    assert counts == {"status": "ok", "trigger": "manual", "added": 2, "removed": 1, "unchanged": 1, "unmatched": 0,
                      "skipped": 1}  # fmt: skip
    assert report["actor"] == "admin-token" and report["started_at"].startswith("2026-03-14T12:05:00")
    assert members(api, segment["id"]) == ["c2", "c3", "c5"]
    history = api.get(f"{API}/segments/{segment['id']}/history").json()
    assert ("c1", "exited", "sync") in {(h["source_id"], h["change"], h["cause"]) for h in history}
    reports = api.get(f"{API}/segments/{segment['id']}/sync-reports").json()
    assert [r["trigger"] for r in reports] == ["manual", "import"]  # newest first
    audit = api.get(f"{API}/audit", params={"action": "source.sync"}).json()["items"]
    assert [a["after"]["added"] for a in audit] == [2, 2]


def test_membership_cannot_be_edited_by_hand(api: TestClient) -> None:
    source = csv_source(api, "ann@example.com")
    segment = import_(api, source["id"])
    for method, path in (("POST", "members/add"), ("POST", "members/remove"), ("PUT", "members")):
        response = api.request(method, f"{API}/segments/{segment['id']}/{path}", json={"customers": ["c2"]})
        assert response.status_code == 409, response.text
        assert f"imported from source Newsletter ({source['id']})" in response.json()["detail"]
    assert members(api, segment["id"]) == ["c1"]
    plain = api.post(f"{API}/segments", json={"name": "Hand list", "type": "external"}).json()
    assert api.put(f"{API}/segments/{plain['id']}/members", json={"customers": ["c2"]}).status_code == 200
    refused = api.post(f"{API}/segments/{plain['id']}/sync", json={})
    assert refused.status_code == 409 and "not imported from a source" in refused.json()["detail"]


def test_a_suspiciously_small_result_keeps_the_members_until_forced(api: TestClient, clock: FrozenClock) -> None:
    everyone = ["ann@example.com", "bob@example.com", "cy@example.com", "eve@example.com"]
    source = csv_source(api, *everyone, guard_min_members=3, guard_min_percent=50)
    segment = import_(api, source["id"])
    set_content(api, source["id"], "ann@example.com")  # 1 of 4: under half
    report = sync(api, segment["id"])
    assert report["status"] == "failed" and "suspiciously small result: 1 members" in report["error"]
    assert report["added"] == report["removed"] == 0 and report["received"] == 1
    assert members(api, segment["id"]) == ["c1", "c2", "c3", "c5"]
    view = api.get(f"{API}/segments/{segment['id']}").json()
    assert view["source"]["error"] == report["error"] and view["source"]["failures"] == 1
    assert api.get(f"{API}/sources/{source['id']}").json()["last_error"] == report["error"]
    set_content(api, source["id"], "ann@example.com", "bob@example.com")  # exactly half: accepted
    assert sync(api, segment["id"])["status"] == "ok"
    assert api.get(f"{API}/segments/{segment['id']}").json()["source"]["error"] is None
    assert api.get(f"{API}/sources/{source['id']}").json()["last_error"] is None
    set_content(api, source["id"], "nobody@example.com")  # empty after matching: refused below the threshold too
    assert "no members where there are 2" in sync(api, segment["id"])["error"]
    forced = sync(api, segment["id"], force=True)
    assert (forced["status"], forced["removed"]) == ("ok", 2) and members(api, segment["id"]) == []


def test_failures_keep_members_and_retry_with_exponential_backoff(
    api: TestClient, remote: Remote, clock: FrozenClock
) -> None:
    state = {"reply": Reply(200, {"members": ["c1", "c2", "c3"]})}
    remote.route("GET", "/members", lambda r: state["reply"])
    body = {"name": "CRM", "kind": "json", "key_field": "source_id", "config": {"url": remote.url + "/members",
            "items_path": "members"}, "sync_period_seconds": 3600}  # fmt: skip
    source = api.post(f"{API}/sources", json=body).json()
    segment = import_(api, source["id"], remote_id="default")
    assert members(api, segment["id"]) == ["c1", "c2", "c3"]
    assert run_scheduler(api) == []  # synced just now: due in an hour
    clock.advance(timedelta(hours=1))
    state["reply"] = Reply(502, {"error": "bad gateway"})
    assert run_scheduler(api) == [segment["id"]]
    failures = [("answered 502", 60)]
    state["reply"] = Reply(200, {"members": "not a list"})
    clock.advance(timedelta(seconds=59))
    assert run_scheduler(api) == []  # not before the backoff
    clock.advance(timedelta(seconds=1))
    assert run_scheduler(api) == [segment["id"]]
    failures.append(("is not a list", 120))
    remote.delay = 1.5  # past the 0.5 s timeout
    clock.advance(timedelta(seconds=120))
    assert run_scheduler(api) == [segment["id"]]
    failures.append(("timed out", 240))
    reports = list(reversed(api.get(f"{API}/segments/{segment['id']}/sync-reports").json()))[1:]
    assert [(r["status"], r["attempt"], r["trigger"]) for r in reports] == [
        ("failed", n, "schedule") for n in (1, 2, 3)
    ]
    for report, (message, delay) in zip(reports, failures, strict=True):
        assert message in report["error"]
        waited = datetime.fromisoformat(report["next_attempt_at"]) - datetime.fromisoformat(report["finished_at"])
        assert waited == timedelta(seconds=delay)
    assert members(api, segment["id"]) == ["c1", "c2", "c3"]  # untouched through every failure
    view = api.get(f"{API}/segments/{segment['id']}").json()["source"]
    assert view["failures"] == 3 and "timed out" in view["error"]
    assert view["next_sync_at"].startswith((clock.now() + timedelta(seconds=240)).strftime("%Y-%m-%dT%H:%M:%S"))
    remote.delay = 0
    state["reply"] = Reply(200, {"members": ["c2", "c3", "c5"]})
    clock.advance(timedelta(seconds=240))
    assert run_scheduler(api) == [segment["id"]]
    assert members(api, segment["id"]) == ["c2", "c3", "c5"]
    view = api.get(f"{API}/segments/{segment['id']}").json()["source"]
    assert (view["failures"], view["error"]) == (0, None)
    assert view["next_sync_at"].startswith((clock.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"))


def test_backoff_never_exceeds_the_period(api: TestClient) -> None:
    settings = api.app.state.settings  # type: ignore[attr-defined]
    assert [service.backoff(settings, n, 3600).total_seconds() for n in (1, 2, 3, 6, 7, 50)] == [
        60, 120, 240, 1920, 3600, 3600,
    ]  # fmt: skip


def test_a_claimed_segment_is_not_synced_twice(api: TestClient, store: sa.Engine, clock: FrozenClock) -> None:
    source = csv_source(api, "ann@example.com")
    segment = import_(api, source["id"], sync=False)
    assert segment["members"] == 0 and segment["source"]["next_sync_at"].startswith("2026-03-14T12:00:00")
    state = api.app.state  # type: ignore[attr-defined]
    with state.session_factory() as session:
        version = session.get(SourceSegment, segment["id"]).version
        due = service.due_syncs(session, state.settings, clock.now())
    assert due == [(segment["id"], version)]
    # Another process claimed it (a lease in the future): neither the scheduler nor a manual sync may start.
    with store.begin() as connection:
        connection.execute(
            sa.update(SourceSegment.__table__).values(
                claim_token="other", claimed_until=clock.now() + timedelta(minutes=5)
            )
        )
    assert run_scheduler(api) == []
    busy = api.post(f"{API}/segments/{segment['id']}/sync", json={})
    assert busy.status_code == 409 and "being synced" in busy.json()["detail"]
    assert api.get(f"{API}/segments/{segment['id']}").json()["source"]["syncing"] is True
    clock.advance(timedelta(minutes=6))  # the other process died: its lease ran out
    assert run_scheduler(api) == [segment["id"]]
    # A process that saw the segment due before that sync finished must not sync it again.
    stale = service.sync_segment(state.session_factory, state.settings, clock, segment["id"], trigger="schedule",
                                 actor="scheduler", version=version)  # fmt: skip
    assert stale is None
    assert len(api.get(f"{API}/segments/{segment['id']}/sync-reports").json()) == 1


def test_inactive_segments_and_sources_are_not_synced(api: TestClient, clock: FrozenClock) -> None:
    source = csv_source(api, "ann@example.com")
    segment = import_(api, source["id"])
    clock.advance(timedelta(days=2))
    api.patch(f"{API}/sources/{source['id']}", json={"active": False})
    assert run_scheduler(api) == []
    api.patch(f"{API}/sources/{source['id']}", json={"active": True})
    api.post(f"{API}/segments/{segment['id']}/deactivate")
    assert run_scheduler(api) == []
    refused = api.post(f"{API}/segments/{segment['id']}/sync", json={})
    assert refused.status_code == 409 and "only an active segment" in refused.json()["detail"]
    api.post(f"{API}/segments/{segment['id']}/activate")
    assert run_scheduler(api) == [segment["id"]]


def test_per_segment_period_overrides_the_source(api: TestClient, clock: FrozenClock) -> None:
    source = csv_source(api, "ann@example.com", sync_period_seconds=7200)
    daily = import_(api, source["id"])
    assert daily["source"]["sync_period_seconds"] == 7200
    api.patch(f"{API}/segments/{daily['id']}", json={"sync_period_seconds": 600})
    view = api.get(f"{API}/segments/{daily['id']}").json()["source"]
    assert view["sync_period_seconds"] == 600 and view["next_sync_at"].startswith("2026-03-14T12:10:00")
    clock.advance(timedelta(minutes=10))
    assert run_scheduler(api) == [daily["id"]]


def test_usage_names_the_source_and_deletion_follows_the_links(api: TestClient) -> None:
    source = csv_source(api, "ann@example.com")
    segment = import_(api, source["id"])
    usage = api.get(f"{API}/segments/{segment['id']}/usage").json()
    assert [(s["type"], s["id"], s["name"]) for s in usage["sources"]] == [("source", source["id"], "Newsletter")]
    listed = api.get(f"{API}/sources/{source['id']}/segments").json()
    assert [s["id"] for s in listed] == [segment["id"]] and listed[0]["source"]["last_report"]["status"] == "ok"
    assert api.get(f"{API}/sources/{source['id']}").json()["segments"] == 1
    refused = api.delete(f"{API}/sources/{source['id']}")
    assert refused.status_code == 409 and segment["id"] in refused.json()["detail"]
    api.post(f"{API}/segments/{segment['id']}/deactivate")
    assert api.delete(f"{API}/segments/{segment['id']}").status_code == 204
    assert api.delete(f"{API}/sources/{source['id']}").status_code == 204
    assert api.get(f"{API}/sources/{source['id']}").status_code == 404
    actions = [a["action"] for a in api.get(f"{API}/audit", params={"object_type": "source"}).json()["items"]]
    assert actions == ["source.delete", "source.create"]


def test_sources_are_validated_per_kind(api: TestClient) -> None:
    bad = api.post(f"{API}/sources", json={"name": "J", "kind": "json", "config": {"url": "ftp://x", "paging": "x"}})
    assert bad.status_code == 422
    assert {tuple(e["loc"]) for e in bad.json()["errors"]} == {("config", "url"), ("config", "paging")}
    no_file = api.post(f"{API}/sources", json={"name": "C", "kind": "csv", "config": {}})
    assert no_file.status_code == 422 and no_file.json()["errors"][0]["loc"] == ["content"]
    wsse = api.post(f"{API}/sources", json={"name": "E", "kind": "emarsys", "config": {"auth": "wsse"},
                                            "credentials": {"username": "u"}})  # fmt: skip
    assert wsse.status_code == 422 and wsse.json()["errors"][0]["loc"] == ["credentials", "secret"]
    odd = api.post(f"{API}/sources", json={"name": "E", "kind": "emarsys", "credentials": {"password": "p"}})
    assert odd.status_code == 422 and odd.json()["errors"][0]["loc"] == ["credentials", "password"]
    csv_source(api, "ann@example.com")
    taken = api.post(f"{API}/sources", json={"name": "Newsletter", "kind": "csv", "content": "email\n"})
    assert taken.status_code == 409
