"""The month-by-month figures kept with membership (``cohorta.membership.monthly``) against the truth: the members'
orders read directly, and a rebuild from scratch. Random sequences of writes move customers in and out of segments
by data, by hand and by erasure, and orders between months, statuses and amounts."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cohorta import db
from cohorta.analytics.service import months_from_orders
from cohorta.clock import FrozenClock
from cohorta.customers.models import CustomerMonth, ProjectSetting
from cohorta.membership import monthly
from cohorta.segments.models import SegmentMonth
from tests.support import admin_api, run_jobs

ZONE = "Europe/Warsaw"
FIRST, LAST = dt.date(2025, 11, 1), dt.date(2026, 3, 1)
MONTHS = monthly.months_between(FIRST, LAST)
CUSTOMERS = ["m1", "m2", "m3", "m4", "m5"]
# Order times near month edges in Warsaw (UTC+1 in winter): 23:30 UTC on the last day is the next month locally.
TIMES = [
    "2025-11-30T22:59:00Z",
    "2025-11-30T23:00:00Z",
    "2025-12-15T12:00:00Z",
    "2025-12-31T23:30:00Z",
    "2026-01-31T22:30:00Z",
    "2026-02-14T08:00:00Z",
    "2026-02-28T23:10:00Z",
]
STATUSES = ["paid", "fulfilled", "cancelled", "refunded"]
counter = itertools.count()


@pytest.fixture
def world(store: sa.Engine, clock: FrozenClock) -> Iterator[tuple[TestClient, list[str]]]:
    clock.set(dt.datetime(2026, 3, 15, 12, tzinfo=dt.UTC))
    with admin_api(store, clock, timezone=ZONE) as client:
        for source_id in CUSTOMERS:
            assert client.put(f"/api/v1/customers/{source_id}", json={"country": "PL"}).status_code in (200, 201)
        rules = ['profile.country in ("PL")', "summary.order_count >= 2", "summary.total_spent >= 100"]
        segments = []
        for n, text in enumerate(rules):
            created = client.post("/api/v1/segments", json={"name": f"s{n}", "text": text})
            assert created.status_code == 201, created.text
            segments.append(created.json()["id"])
        static = client.post("/api/v1/segments", json={"name": "list", "type": "static", "customers": ["m1", "m2"]})
        assert static.status_code == 201, static.text
        segments.append(static.json()["id"])
        run_jobs(client)
        yield client, segments


def kept_and_truth(client: TestClient, segment_id: str) -> tuple[dict[Any, Any], dict[Any, Any]]:
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    with factory() as session:
        kept = monthly.segment_months(session, segment_id, FIRST, LAST)
        truth = months_from_orders(session, segment_id, MONTHS, ZoneInfo(ZONE))
    return {m: v for m, v in kept.items() if v != (0, 0, 0)}, truth


operation = st.one_of(
    st.tuples(
        st.just("order"),
        st.sampled_from(CUSTOMERS),
        st.integers(0, 5),  # order id: a repeated id updates the order
        st.sampled_from(TIMES),
        st.sampled_from(STATUSES),
        st.integers(1, 90),
    ),
    st.tuples(st.just("country"), st.sampled_from(CUSTOMERS), st.sampled_from(["PL", "DE"])),
    st.tuples(st.just("static"), st.sampled_from(["add", "remove"]), st.sampled_from(CUSTOMERS)),
    st.tuples(st.just("erase"), st.sampled_from(CUSTOMERS)),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(operation, min_size=1, max_size=12))
def test_kept_months_equal_the_orders_after_any_writes(
    world: tuple[TestClient, list[str]], operations: list[tuple[Any, ...]]
) -> None:
    client, segments = world
    run = next(counter)  # examples share the store: order ids of one example are its own
    for op in operations:
        if op[0] == "order":
            _, who, n, at, status, amount = op
            client.put(f"/api/v1/customers/{who}", json={"country": "PL"})  # brings an erased customer back
            body = {"id": f"r{run}-{n}", "customer": who, "total": str(amount), "created_at": at, "status": status}
            response = client.post("/api/v1/orders", json=body)
            # An id first used for another customer is refused (422): that is not what this test is about.
            assert response.status_code in (200, 201, 422), response.text
        elif op[0] == "country":
            client.put(f"/api/v1/customers/{op[1]}", json={"country": op[2]})
        elif op[0] == "static":
            response = client.post(f"/api/v1/segments/{segments[-1]}/members/{op[1]}", json={"customers": [op[2]]})
            assert response.status_code == 200, response.text
        else:
            client.delete(f"/api/v1/customers/{op[1]}")
        run_jobs(client)
    for segment_id in segments:
        kept, truth = kept_and_truth(client, segment_id)
        assert kept == truth, (segment_id, operations)


def test_a_rebuild_gives_what_was_kept(world: tuple[TestClient, list[str]]) -> None:
    client, _segments = world
    for n, (who, at) in enumerate(zip(itertools.cycle(CUSTOMERS), TIMES, strict=False)):
        body = {"id": f"b{n}", "customer": who, "total": str(20 + n * 11), "created_at": at}
        assert client.post("/api/v1/orders", json=body).status_code == 201
    run_jobs(client)
    factory = client.app.state.session_factory  # type: ignore[attr-defined]

    def snapshot() -> tuple[set[Any], set[Any]]:
        with factory() as session:
            customers = session.execute(sa.select(CustomerMonth.customer_id, CustomerMonth.month,
                                                  CustomerMonth.orders, CustomerMonth.revenue_minor)).all()  # fmt: skip
            segment_rows = session.execute(
                sa.select(SegmentMonth.segment_id, SegmentMonth.month, SegmentMonth.orders,
                          SegmentMonth.revenue_minor, SegmentMonth.buyers).where(SegmentMonth.buyers != 0)
            ).all()  # fmt: skip
        return set(customers), set(segment_rows)

    kept = snapshot()
    assert kept[0] and kept[1]
    with db.unit_of_work(factory) as session:
        monthly.rebuild(session, ZONE)
    assert snapshot() == kept


def test_without_kept_figures_the_analytics_read_orders_until_the_scheduler_builds_them(
    world: tuple[TestClient, list[str]],
) -> None:
    client, segments = world
    for n, at in enumerate(TIMES):
        body = {"id": f"w{n}", "customer": CUSTOMERS[n % 2], "total": "25", "created_at": at}
        assert client.post("/api/v1/orders", json=body).status_code == 201
    run_jobs(client)
    url = f"/api/v1/segments/{segments[0]}/analytics"
    params = {"from": FIRST.isoformat(), "to": "2026-03-14"}
    expected = client.get(url, params=params).json()["months"]
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    # As a database that had orders before the upgrade that added the figures: nothing kept.
    with db.unit_of_work(factory) as session:
        session.execute(sa.delete(SegmentMonth))
        session.execute(sa.delete(CustomerMonth))
        session.execute(sa.delete(ProjectSetting).where(ProjectSetting.key == monthly.SETTING_KEY))
    assert client.get(url, params=params).json()["months"] == expected  # read from the orders
    with factory() as session:
        assert monthly.kept_zone(session, claim=ZONE) is None  # orders exist: a build is needed, not a claim
    assert monthly.build_if_needed(factory, ZONE)
    assert not monthly.build_if_needed(factory, ZONE)
    assert client.get(url, params=params).json()["months"] == expected
    # Another zone for the project: built again, in that zone (New York is 6 hours behind Warsaw).
    assert monthly.build_if_needed(factory, "America/New_York")
    with factory() as session:
        zone = monthly.kept_zone(session)
        assert zone is not None and zone.key == "America/New_York"
        nov = session.execute(
            sa.select(sa.func.sum(CustomerMonth.orders)).where(CustomerMonth.month == dt.date(2025, 11, 1))
        ).scalar_one()
    assert nov == 2  # 22:59 and 23:00 UTC on 30 November are still November in New York
    assert [m["orders"] for m in expected][:2] == [1, 2]  # in Warsaw the second is already December
