"""Segment definitions, lifecycle, versions, lists and stored membership, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.app import create_app
from cohorta.clock import FrozenClock
from cohorta.config import Settings
from tests.conftest import ADMIN_TOKEN
from tests.customers.test_customers_api import errors_at
from tests.support import run_jobs


@pytest.fixture
def api(store: sa.Engine, clock: FrozenClock, settings: Settings) -> Iterator[TestClient]:
    """An API client whose recompute jobs run only when the test says so (``run(api)``)."""
    app = create_app(settings.model_copy(update={"scheduler": False}), clock=clock, engine=store)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        for index, (country, spent) in enumerate([("PL", 100), ("DE", 200), ("PL", 300), ("PL", None), ("FR", 50)]):
            client.put(f"/api/v1/customers/c{index}", json={"country": country, "first_name": f"N{index}"})
            if spent:
                client.post(
                    "/api/v1/orders",
                    json={
                        "id": f"o{index}",
                        "customer": f"c{index}",
                        "total": str(spent),
                        "created_at": "2026-03-01T10:00:00Z",
                    },
                )
        yield client


run = run_jobs


def members(client: TestClient, segment_id: str) -> list[str]:
    page = client.get(f"/api/v1/segments/{segment_id}/members", params={"limit": 1000}).json()
    return [item["source_id"] for item in page["items"]]


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/segments", json=body)
    assert response.status_code == 201, response.json()
    return response.json()


def test_dynamic_segment_is_recomputed_by_a_job(api: TestClient) -> None:
    poles = create(api, name="Poles", text='profile.country in ("PL")')
    assert poles["refresh"]["state"] == "queued" and poles["members"] == 0
    assert run(api) == [poles["id"]]
    done = api.get(f"/api/v1/segments/{poles['id']}").json()
    assert (done["refresh"]["state"], done["refresh"]["entered"], done["members"]) == ("done", 3, 3)
    assert members(api, poles["id"]) == ["c0", "c2", "c3"]
    history = api.get(f"/api/v1/segments/{poles['id']}/history").json()
    assert {(h["source_id"], h["change"], h["cause"], h["version"]) for h in history} == {
        ("c0", "entered", "definition", 1),
        ("c2", "entered", "definition", 1),
        ("c3", "entered", "definition", 1),
    }


def test_edit_makes_a_version_and_recomputes_as_a_diff(api: TestClient) -> None:
    segment = create(api, name="Poles", text='profile.country in ("PL")')
    run(api)
    edited = api.patch(f"/api/v1/segments/{segment['id']}", json={"text": 'profile.country in ("PL", "FR")'}).json()
    assert edited["version"] == 2 and edited["refresh"]["state"] == "queued"
    run(api)
    after = api.get(f"/api/v1/segments/{segment['id']}").json()
    assert (after["refresh"]["entered"], after["refresh"]["exited"], after["members"]) == (1, 0, 4)
    versions = api.get(f"/api/v1/segments/{segment['id']}/versions").json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["diff"] == ['- profile.country in ("PL")', '+ profile.country in ("PL", "FR")']
    restored = api.post(f"/api/v1/segments/{segment['id']}/versions/1/restore").json()
    assert restored["version"] == 3 and restored["text"] == 'profile.country in ("PL")'
    assert api.get(f"/api/v1/segments/{segment['id']}/versions").json()[0]["restored_from"] == 1
    run(api)
    assert members(api, segment["id"]) == ["c0", "c2", "c3"]
    causes = {
        (h["source_id"], h["change"], h["version"]) for h in api.get(f"/api/v1/segments/{segment['id']}/history").json()
    }
    assert ("c4", "entered", 2) in causes and ("c4", "exited", 3) in causes


def test_names_are_unique_among_live_segments(api: TestClient) -> None:
    create(api, name="VIP", text="summary.total_spent > 150")
    taken = api.post("/api/v1/segments", json={"name": "VIP", "text": "summary.order_count > 0"})
    assert taken.status_code == 409 and "already used" in taken.json()["detail"]


def test_lifecycle_and_its_guards(api: TestClient) -> None:
    base = create(api, name="Poles", text='profile.country in ("PL")')
    rich = create(
        api,
        name="Rich Poles",
        rule={"and": [{"in_segment": base["id"]}, {"field": "summary.total_spent", "op": "gt", "value": 150}]},
    )
    run(api)
    assert members(api, rich["id"]) == ["c2"]
    used = api.post(f"/api/v1/segments/{base['id']}/deactivate")
    assert used.status_code == 409 and "Rich Poles" in used.json()["detail"]
    assert api.post(f"/api/v1/segments/{rich['id']}/archive").status_code == 409  # active: deactivate first
    assert api.post(f"/api/v1/segments/{rich['id']}/deactivate").json()["status"] == "inactive"
    archived = api.post(f"/api/v1/segments/{rich['id']}/archive").json()
    assert (archived["status"], archived["members"]) == ("archived", 0)
    assert members(api, rich["id"]) == []
    assert api.get(f"/api/v1/segments/{rich['id']}/history").json()[0]["cause"] == "archive"
    for action in ("activate", "refresh"):
        assert api.post(f"/api/v1/segments/{rich['id']}/{action}").status_code == 409
    assert api.patch(f"/api/v1/segments/{rich['id']}", json={"name": "x"}).status_code == 409
    # Archived, it no longer holds its name, and the base segment is free to change status.
    create(api, name="Rich Poles", text="summary.total_spent > 150")
    assert api.post(f"/api/v1/segments/{base['id']}/deactivate").status_code == 200


def test_cycles_and_unknown_references_are_refused(api: TestClient) -> None:
    a = create(api, name="A", text='profile.country in ("PL")')
    b = create(api, name="B", rule={"in_segment": a["id"]})
    cycle = api.patch(f"/api/v1/segments/{a['id']}", json={"rule": {"in_segment": b["id"]}})
    assert cycle.status_code == 422 and "cycle" in errors_at(cycle)["/rule"]
    self_ref = api.patch(f"/api/v1/segments/{a['id']}", json={"rule": {"in_segment": a["id"]}})
    assert self_ref.status_code == 422
    unknown = api.post("/api/v1/segments", json={"name": "C", "rule": {"in_segment": "seg_nope"}})
    # An unknown segment is answered like one hidden from the caller: 404, naming where the rule refers to it.
    assert unknown.status_code == 404 and "unknown segment 'seg_nope'" in errors_at(unknown)["/rule"]


def test_dependencies_recompute_first_and_changes_cascade(api: TestClient, clock: FrozenClock) -> None:
    base = create(api, name="Poles", text='profile.country in ("PL")')
    rich = create(
        api,
        name="Rich Poles",
        rule={"and": [{"in_segment": base["id"]}, {"field": "summary.total_spent", "op": "gt", "value": 50}]},
    )
    # Queue the dependent first: the job runner still does the base segment first.
    api.post(f"/api/v1/segments/{rich['id']}/refresh")
    assert run(api)[:2] == [base["id"], rich["id"]]
    assert members(api, rich["id"]) == ["c0", "c2"]
    api.patch(f"/api/v1/segments/{base['id']}", json={"text": 'profile.country in ("PL", "DE")'})
    run(api)  # base changes, so the rich segment is queued and recomputed after it
    assert members(api, rich["id"]) == ["c0", "c1", "c2"]


def test_static_segments(api: TestClient, store: sa.Engine) -> None:
    unknown = api.post("/api/v1/segments", json={"name": "S", "type": "static", "customers": ["c1", "ghost"]})
    assert unknown.status_code == 422 and "ghost" in unknown.json()["detail"]
    listed = create(api, name="S", type="static", customers=["c1", "c2"])
    assert listed["members"] == 2 and members(api, listed["id"]) == ["c1", "c2"]
    twin = api.post("/api/v1/segments", json={"name": "S2", "type": "static", "customers": ["c2", "c1"]})
    assert twin.status_code == 409 and listed["id"] in twin.json()["detail"]
    snapshot = create(api, name="Snapshot", type="static", text='profile.country in ("PL")')
    assert members(api, snapshot["id"]) == ["c0", "c2", "c3"]
    # A snapshot does not follow the data afterwards.
    api.put("/api/v1/customers/c1", json={"country": "PL"})
    api.post(f"/api/v1/segments/{snapshot['id']}/refresh")
    run(api)
    assert members(api, snapshot["id"]) == ["c0", "c2", "c3"]
    added = api.post(f"/api/v1/segments/{listed['id']}/members/add", json={"customers": ["c3", "nobody"]}).json()
    assert (added["added"], added["unknown"], added["members"]) == (1, ["nobody"], 3)
    removed = api.post(f"/api/v1/segments/{listed['id']}/members/remove", json={"customers": ["c1"]}).json()
    assert (removed["removed"], removed["members"]) == (1, 2)
    assert api.put(f"/api/v1/segments/{listed['id']}/members", json={"customers": []}).status_code == 409


def test_external_segments_are_set_by_another_system(api: TestClient) -> None:
    external = create(api, name="From CRM", type="external")
    replaced = api.put(f"/api/v1/segments/{external['id']}/members", json={"customers": ["c0", "c4", "zz"]}).json()
    assert (replaced["added"], replaced["unknown"], replaced["members"]) == (2, ["zz"], 2)
    again = api.put(f"/api/v1/segments/{external['id']}/members", json={"customers": ["c4", "c1"]}).json()
    assert (again["added"], again["removed"], again["members"]) == (1, 1, 2)
    assert members(api, external["id"]) == ["c1", "c4"]
    assert {h["cause"] for h in api.get(f"/api/v1/segments/{external['id']}/history").json()} == {"sync"}
    # Inactive: the list is replaced, membership is not maintained (it stays as it was) until active again.
    assert api.post(f"/api/v1/segments/{external['id']}/deactivate").status_code == 200
    paused = api.put(f"/api/v1/segments/{external['id']}/members", json={"customers": ["c2", "c3"]}).json()
    assert (paused["added"], paused["removed"], paused["members"]) == (2, 2, 2)
    assert members(api, external["id"]) == ["c1", "c4"]
    assert api.post(f"/api/v1/segments/{external['id']}/activate").status_code == 200
    assert members(api, external["id"]) == ["c2", "c3"]
    dynamic = create(api, name="Dyn", text="summary.order_count > 0")
    assert api.put(f"/api/v1/segments/{dynamic['id']}/members", json={"customers": ["c0"]}).status_code == 409


def test_outside_its_window_a_segment_has_no_members(api: TestClient, clock: FrozenClock) -> None:
    start = clock.now() + timedelta(days=1)
    segment = create(
        api,
        name="Soon",
        text='profile.country in ("PL")',
        starts_at=start.isoformat(),
        expires_at=(start + timedelta(days=7)).isoformat(),
    )
    run(api)
    assert members(api, segment["id"]) == []
    clock.advance(timedelta(days=2))
    api.post(f"/api/v1/segments/{segment['id']}/refresh")
    run(api)
    assert members(api, segment["id"]) == ["c0", "c2", "c3"]
    bad = api.post(
        "/api/v1/segments",
        json={
            "name": "Bad",
            "text": "summary.order_count > 0",
            "starts_at": start.isoformat(),
            "expires_at": start.isoformat(),
        },
    )
    assert bad.status_code == 422


def test_member_table_sorts_filters_and_pages(api: TestClient) -> None:
    everyone = create(api, name="All", text="not profile.country is_unknown or profile.country is_unknown")
    run(api)
    page = api.get(f"/api/v1/segments/{everyone['id']}/members", params={"sort": "-total_spent", "limit": 2}).json()
    assert page["total"] == 5 and [m["source_id"] for m in page["items"]] == ["c2", "c1"]
    assert page["items"][0]["total_spent"] == "300.00" and page["items"][0]["since"].endswith("Z")
    second = api.get(
        f"/api/v1/segments/{everyone['id']}/members", params={"sort": "-total_spent", "limit": 2, "offset": 2}
    )
    assert [m["source_id"] for m in second.json()["items"]] == ["c0", "c4"]
    filtered = api.get(f"/api/v1/segments/{everyone['id']}/members", params={"filter": 'profile.country in ("PL")'})
    assert filtered.json()["total"] == 3
    assert api.get(f"/api/v1/segments/{everyone['id']}/members", params={"sort": "shoe_size"}).status_code == 422


def test_member_pages_by_source_id_are_the_same_whichever_way_they_are_found(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dense segment's pages in source_id order walk the customers' index (EXISTS); a sparse one's sort its members.
    Both give the same pages, forwards and backwards."""
    poles = create(api, name="Poles", text='profile.country in ("PL")')
    run(api)
    url = f"/api/v1/segments/{poles['id']}/members"

    def pages() -> list[list[str]]:
        out = []
        for sort in ("source_id", "-source_id"):
            for offset in range(4):
                body = api.get(url, params={"sort": sort, "limit": 2, "offset": offset}).json()
                assert body["total"] == 3
                out.append([m["source_id"] for m in body["items"]])
        return out

    monkeypatch.setattr("cohorta.segments.service.DENSE_SCAN_ROWS", 10**9)  # always walk the index
    walked = pages()
    monkeypatch.setattr("cohorta.segments.service.DENSE_SCAN_ROWS", 0)  # always sort the members
    assert pages() == walked
    a, b, c = sorted(m["source_id"] for m in api.get(url, params={"limit": 10}).json()["items"])
    assert walked == [[a, b], [b, c], [c], [], [c, b], [b, a], [a], []]


def test_explain_saved_segment_and_customer_views(api: TestClient) -> None:
    segment = create(api, name="Big spenders", text="summary.total_spent > 150")
    run(api)
    why = api.get(f"/api/v1/segments/{segment['id']}/explain/c0").json()
    assert why["matches"] is False and why["tree"]["result"] is False
    assert api.get(f"/api/v1/segments/{segment['id']}/explain/c2").json()["matches"] is True
    assert [s["name"] for s in api.get("/api/v1/customers/c2/segments").json()] == ["Big spenders"]
    assert api.get("/api/v1/customers/c2/segment-history").json()[0]["change"] == "entered"


def test_a_failed_recompute_is_recorded_and_retried(
    api: TestClient, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock
) -> None:
    segment = create(api, name="Poles", text='profile.country in ("PL")')

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("engine unavailable")

    monkeypatch.setattr("cohorta.membership.service.store.matching_id_set", broken)
    run(api)
    failed = api.get(f"/api/v1/segments/{segment['id']}").json()
    assert failed["refresh"]["state"] == "queued" and failed["refresh"]["attempts"] == 1
    assert "engine unavailable" in failed["refresh"]["error"]
    monkeypatch.undo()
    assert run(api) == []  # backing off
    clock.advance(timedelta(seconds=11))
    run(api)
    assert api.get(f"/api/v1/segments/{segment['id']}").json()["members"] == 3


def test_a_recompute_killed_midway_leaves_membership_whole(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    segment = create(api, name="Poles", text='profile.country in ("PL")')
    run(api)
    api.patch(f"/api/v1/segments/{segment['id']}", json={"text": 'profile.country in ("DE", "FR")'})
    from cohorta.membership import service as membership

    real_insert = membership.insert_rows
    calls = {"n": 0}

    def dies_after_first_write(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        real_insert(*args, **kwargs)
        if calls["n"] == 1:  # members written, history not yet: the process "dies"
            raise KeyboardInterrupt

    monkeypatch.setattr(membership, "insert_rows", dies_after_first_write)
    with pytest.raises(KeyboardInterrupt):
        run(api)
    monkeypatch.undo()
    assert members(api, segment["id"]) == ["c0", "c2", "c3"]  # the previous membership, whole
    # The segment was left "running"; once stale it is picked up again and finishes.
    clock = api.app.state.clock  # type: ignore[attr-defined]
    clock.advance(timedelta(minutes=16))
    run(api)
    assert members(api, segment["id"]) == ["c1", "c4"]


def test_erasing_a_customer_updates_member_counts(api: TestClient) -> None:
    segment = create(api, name="Poles", text='profile.country in ("PL")')
    run(api)
    assert api.delete("/api/v1/customers/c0").status_code == 204
    after = api.get(f"/api/v1/segments/{segment['id']}").json()
    assert after["members"] == 2 and members(api, segment["id"]) == ["c2", "c3"]
    assert api.get(f"/api/v1/segments/{segment['id']}/history").json()[0]["source_id"] != "c0"


def test_erasing_a_customer_or_deleting_a_segment_leaves_no_membership_rows(api: TestClient, store: sa.Engine) -> None:
    """Members and list entries carry no foreign keys on PostgreSQL (migration 0016): erasure and deletion must
    remove their rows themselves, on both engines."""
    static = create(api, name="Listed", type="static", customers=["c0", "c1", "c2"])
    dynamic = create(api, name="Poles", text='profile.country in ("PL")')
    run(api)
    with store.connect() as connection:
        c0 = connection.execute(sa.text("SELECT id FROM customers WHERE source_id = 'c0'")).scalar_one()
    assert api.delete("/api/v1/customers/c0").status_code == 204
    for segment in (static, dynamic):
        assert api.post(f"/api/v1/segments/{segment['id']}/deactivate").status_code == 200
    assert api.delete(f"/api/v1/segments/{static['id']}").status_code == 204
    with store.connect() as connection:
        for table in ("segment_members", "segment_list_entries"):
            left = connection.execute(
                sa.text(f"SELECT COUNT(*) FROM {table} WHERE customer_id = :c OR segment_id = :s"),
                {"c": c0, "s": static["id"]},
            ).scalar()
            assert left == 0, table
        keys = sa.inspect(connection).get_foreign_keys("segment_members")
    assert (len(keys) == 2) == (store.dialect.name == "sqlite")


def test_delete_is_guarded(api: TestClient) -> None:
    base = create(api, name="Base", text='profile.country in ("PL")')
    user = create(api, name="User", rule={"in_segment": base["id"]})
    assert api.delete(f"/api/v1/segments/{base['id']}").status_code == 409  # active
    api.post(f"/api/v1/segments/{user['id']}/deactivate")
    api.post(f"/api/v1/segments/{base['id']}/deactivate")
    refused = api.delete(f"/api/v1/segments/{base['id']}")
    assert refused.status_code == 409 and user["id"] in refused.json()["detail"]
    assert api.delete(f"/api/v1/segments/{user['id']}").status_code == 204
    assert api.delete(f"/api/v1/segments/{base['id']}").status_code == 204
    assert api.get(f"/api/v1/segments/{base['id']}").status_code == 404


def test_segment_list_search(api: TestClient) -> None:
    create(api, name="Gold Poles", text='profile.country in ("PL")')
    create(api, name="Silver", text='profile.country in ("DE")', status="inactive")
    found = api.get("/api/v1/segments", params={"q": "gold"}).json()
    assert [s["name"] for s in found["items"]] == ["Gold Poles"] and found["total"] == 1
    assert api.get("/api/v1/segments", params={"status": "inactive"}).json()["items"][0]["name"] == "Silver"


def test_editing_a_list_touches_only_the_given_customers_and_moves_segments_that_use_it(api: TestClient) -> None:
    """Add and remove change the given customers' list rows and membership (history, counts) without a recompute of
    the whole list, and a dynamic segment whose rule uses the list follows (its recompute is queued)."""
    listed = create(api, name="Listed", type="static", customers=["c0", "c1"])
    user = create(api, name="Listed and Polish",
                  rule={"and": [{"in_segment": listed["id"]}, {"field": "profile.country", "op": "is", "value": "PL"}]})
    run(api)
    assert members(api, user["id"]) == ["c0"]
    added = api.post(f"/api/v1/segments/{listed['id']}/members/add", json={"customers": ["c2", "c1", "nobody"]}).json()
    assert (added["added"], added["unchanged"], added["unknown"], added["members"]) == (1, 1, ["nobody"], 3)
    assert members(api, listed["id"]) == ["c0", "c1", "c2"]
    assert api.get(f"/api/v1/segments/{user['id']}").json()["refresh"]["state"] == "queued"
    run(api)
    assert members(api, user["id"]) == ["c0", "c2"]
    removed = api.post(f"/api/v1/segments/{listed['id']}/members/remove", json={"customers": ["c0", "c4"]}).json()
    assert (removed["removed"], removed["unchanged"], removed["members"]) == (1, 1, 2)
    run(api)
    assert members(api, listed["id"]) == ["c1", "c2"] and members(api, user["id"]) == ["c2"]
    history = api.get(f"/api/v1/segments/{listed['id']}/history").json()
    assert sorted((h["source_id"], h["change"], h["cause"]) for h in history) == [
        ("c0", "entered", "manual"), ("c0", "exited", "manual"), ("c1", "entered", "manual"),
        ("c2", "entered", "manual"),
    ]  # fmt: skip
    again = api.post("/api/v1/segments", json={"name": "Twin", "type": "static", "customers": ["c2", "c1"]})
    assert again.status_code == 409 and listed["id"] in again.json()["detail"]  # the digest follows the edits
    # Inactive: the list changes, membership is not maintained (it stays as it was) until the segment is active again.
    assert api.post(f"/api/v1/segments/{user['id']}/deactivate").status_code == 200  # it uses the list
    assert api.post(f"/api/v1/segments/{listed['id']}/deactivate").status_code == 200
    paused = api.post(f"/api/v1/segments/{listed['id']}/members/add", json={"customers": ["c3"]}).json()
    assert (paused["added"], paused["members"]) == (1, 2) and members(api, listed["id"]) == ["c1", "c2"]
    assert api.post(f"/api/v1/segments/{listed['id']}/activate").status_code == 200
    assert members(api, listed["id"]) == ["c1", "c2", "c3"]
