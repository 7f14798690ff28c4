"""Overlaps and saved combinations against Python set arithmetic: counts of every intersection, the members of a
saved intersection, union and difference, the twin refusal, and the figures a saved combination carries (history,
size, statistics, month figures, webhook outbox)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from cohorta.analytics.service import months_from_orders, pattern_counts
from cohorta.clock import FrozenClock
from cohorta.membership import monthly
from cohorta.membership.service import list_ids, member_ids
from cohorta.segments import service as segments_service
from cohorta.segments.models import MembershipChange, SegmentSizeChange
from cohorta.webhooks.models import OutboxEvent
from tests.analytics.shop import SHOP_ORDERS, shop_api
from tests.support import admin_api, run_jobs

CUSTOMERS = [f"c{n:02d}" for n in range(24)]


def truth_counts(lists: list[set[int]]) -> list[int]:
    """Customers per membership pattern, by Python sets."""
    counts = [0] * (1 << len(lists))
    for customer in set().union(*lists):
        counts[sum(1 << i for i, ids in enumerate(lists) if customer in ids)] += 1
    return counts


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sets(st.integers(min_value=0, max_value=300), max_size=60), min_size=1, max_size=5),
    st.sampled_from([0, -(10**12), 10**15]),  # dense ids, and ids the dense array cannot hold (negative, sparse)
)
def test_pattern_counts_match_set_arithmetic(lists: list[set[int]], shift: int) -> None:
    shifted = [{i + shift for i in ids} for ids in lists]
    arrays = [np.array(sorted(ids), dtype=np.int64) for ids in shifted]
    assert pattern_counts(arrays).tolist() == truth_counts(shifted)


@pytest.fixture
def people(store: sa.Engine, clock: FrozenClock) -> Iterator[TestClient]:
    with admin_api(store, clock) as client:
        for source_id in CUSTOMERS:
            assert client.put(f"/api/v1/customers/{source_id}", json={"country": "PL"}).status_code == 201
        yield client


def test_overlaps_and_combinations_match_set_arithmetic(people: TestClient) -> None:
    api = people
    factory = api.app.state.session_factory  # type: ignore[attr-defined]
    rng = random.Random(5)
    saved: dict[frozenset[str], str] = {}  # every static list so far: a twin is refused
    names = itertools.count()

    def static(members: set[str], path: str, body: dict[str, object]) -> None:
        response = api.post(path, json={**body, "name": f"s{next(names)}"})
        key = frozenset(members)
        if key in saved:
            assert response.status_code == 409, response.text
            assert saved[key] in response.json()["detail"]
            return
        assert response.status_code == 201, response.text
        segment_id = response.json()["id"]
        saved[key] = segment_id
        with factory() as session:
            by_id = dict(session.execute(sa.text("SELECT id, source_id FROM customers")).all())
            assert {by_id[i] for i in list_ids(session, segment_id)} == members
            assert {by_id[i] for i in member_ids(session, segment_id)} == members
        assert response.json()["members"] == len(members)

    for _ in range(12):
        k = rng.randint(2, 5)
        lists = [set(rng.sample(CUSTOMERS, rng.randint(0, len(CUSTOMERS)))) for _ in range(k)]
        ids = []
        for members in lists:
            if frozenset(members) in saved:
                ids.append(saved[frozenset(members)])
                continue
            static(members, "/api/v1/segments", {"type": "static", "customers": sorted(members)})
            ids.append(saved[frozenset(members)])
        if len(set(ids)) < 2:
            continue
        by_segment = dict(zip(ids, lists, strict=True))
        unique = list(dict.fromkeys(ids))
        if len(unique) <= 5:
            answer = api.post("/api/v1/segments/overlap", json={"segments": ids})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["sizes"] == {sid: len(by_segment[sid]) for sid in unique}
            expected = {
                tuple(combo): len(set.intersection(*(by_segment[sid] for sid in combo)))
                for size in range(2, len(unique) + 1)
                for combo in itertools.combinations(unique, size)
            }
            assert {tuple(i["segments"]): i["size"] for i in body["intersections"]} == expected
            for pair in body["pairs"]:
                a, b = by_segment[pair["a"]], by_segment[pair["b"]]
                assert pair["both"] == len(a & b)
                assert pair["jaccard"] == (pytest.approx(len(a & b) / len(a | b)) if a | b else None)
        sets = [by_segment[sid] for sid in unique]
        for operation, members in (
            ("intersection", set.intersection(*sets)),
            ("union", set.union(*sets)),
            ("difference", sets[0].difference(*sets[1:])),
        ):
            static(members, "/api/v1/segments/combine", {"operation": operation, "segments": unique})


@pytest.fixture
def shop(store: sa.Engine, clock: FrozenClock) -> Iterator[TestClient]:
    """a, b, c Poles; a, b, d buyers (orders in January and February, Warsaw months); a webhook listening."""
    with shop_api(store, clock, [*SHOP_ORDERS, ("b", "20", "2026-03-01T10:00:00Z", "cancelled")]) as client:
        yield client


@pytest.mark.parametrize("in_background", [False, True], ids=["entered in the request", "entered by a job"])
def test_a_saved_combination_carries_history_statistics_months_and_webhooks(
    shop: TestClient, in_background: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = shop
    factory = api.app.state.session_factory  # type: ignore[attr-defined]
    ids = []
    for name, text in (("Poles", 'profile.country in ("PL")'), ("Buyers", "summary.order_count >= 1")):
        ids.append(api.post("/api/v1/segments", json={"name": name, "text": text}).json()["id"])
    run_jobs(api)
    hook = api.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "event_types": ["segment.entered"]})
    assert hook.status_code == 201, hook.text
    if in_background:  # a list longer than this enters by a job (the real limit: tens of thousands)
        monkeypatch.setattr(segments_service, "LIST_ENTRY_IN_REQUEST", 1)
    saved = api.post("/api/v1/segments/combine",
                     json={"operation": "intersection", "segments": ids, "name": "Polish buyers"})  # fmt: skip
    assert saved.status_code == 201, saved.text
    body = saved.json()
    segment_id = body["id"]
    if in_background:
        # Saved, its list written and twin-checked; nobody entered yet, the entry queued and shown as such.
        assert (body["members"], body["refresh"]["state"]) == (0, "queued")
        with factory() as session:
            assert len(list_ids(session, segment_id)) == 2 and member_ids(session, segment_id) == set()
        twin = api.post("/api/v1/segments/combine",
                        json={"operation": "intersection", "segments": ids, "name": "Twin before entry"})  # fmt: skip
        assert twin.status_code == 409 and segment_id in twin.json()["detail"]
        assert run_jobs(api) == [segment_id]
        body = api.get(f"/api/v1/segments/{segment_id}").json()
        assert (body["refresh"]["state"], body["refresh"]["entered"]) == ("done", 2)
    assert (body["type"], body["members"]) == ("static", 2)  # a and b
    # a: 2 orders, 150.00; b: 1 counted order, 30.00 (the cancelled one does not count)
    statistics = body["statistics"]
    assert statistics["avg_transactions"] == 1.5
    assert (statistics["avg_spending"], statistics["avg_transaction_value"]) == ("90.00", "60.00")
    assert statistics["as_of"] == "2026-03-14T12:00:00Z"
    with factory() as session:
        history = session.execute(
            sa.select(MembershipChange.customer_id, MembershipChange.entered, MembershipChange.cause,
                      MembershipChange.version).where(MembershipChange.segment_id == segment_id)
        ).all()  # fmt: skip
        assert sorted((entered, cause, version) for _, entered, cause, version in history) == [(True, "manual", 1)] * 2
        assert {customer for customer, *_ in history} == member_ids(session, segment_id)
        size = session.execute(
            sa.select(SegmentSizeChange.entered, SegmentSizeChange.exited).where(
                SegmentSizeChange.segment_id == segment_id
            )
        ).all()
        assert size == [(2, 0)]
        months = monthly.months_between(monthly.as_date("2026-01-01"), monthly.as_date("2026-03-01"))
        kept = monthly.segment_months(session, segment_id, months[0], months[-1])
        truth = months_from_orders(session, segment_id, months, ZoneInfo("Europe/Warsaw"))
        assert kept == truth
        assert {m.isoformat(): v for m, v in kept.items()} == {"2026-01-01": (1, 10000, 1),
                                                               "2026-02-01": (2, 8000, 2)}  # fmt: skip
        outbox = session.execute(sa.select(OutboxEvent.event_type, OutboxEvent.payload)).all()
        entered = sorted(p["customer"] for t, p in outbox if p["segment"]["id"] == segment_id)
        assert entered == ["a", "b"]
        assert {t for t, p in outbox if p["segment"]["id"] == segment_id} == {"segment.entered"}
    report = api.get(f"/api/v1/segments/{segment_id}/analytics", params={"from": "2026-01-01", "to": "2026-03-14"})
    assert report.status_code == 200, report.text
    assert report.json()["size"][-1] == {"day": "2026-03-14", "members": 2, "entered": 2, "exited": 0}
    assert report.json()["segment"]["avg_spending"] == "90.00"
    # The same members again: refused, and nothing of the refused segment is left behind.
    twin = api.post("/api/v1/segments/combine",
                    json={"operation": "intersection", "segments": list(reversed(ids)), "name": "Again"})  # fmt: skip
    assert twin.status_code == 409 and segment_id in twin.json()["detail"]
    assert all(s["name"] != "Again" for s in api.get("/api/v1/segments").json()["items"])
