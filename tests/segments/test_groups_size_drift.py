"""Customer groups with origins, size over time, and the safety-net recompute's drift count."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.app import create_app
from cohorta.clock import FrozenClock
from cohorta.config import Settings
from cohorta.membership.jobs import queue_safety_net
from tests.conftest import ADMIN_TOKEN
from tests.segments.test_segments_api import create, members, run


@pytest.fixture
def api(store: sa.Engine, clock: FrozenClock, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"scheduler": False}), clock=clock, engine=store)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        for index, country in enumerate(["PL", "DE", "PL"]):
            client.put(f"/api/v1/customers/c{index}", json={"country": country})
        yield client


def groups(client: TestClient, source_id: str) -> dict[str, list[str]]:
    return {g["group"]: g["origins"] for g in client.get(f"/api/v1/customers/{source_id}").json()["groups"]}


def test_groups_inherited_and_manual_listed_once(api: TestClient) -> None:
    vip = create(api, name="VIP Poles", text='profile.country in ("PL")', customer_groups=["VIP", "PL"])
    run(api)
    assert groups(api, "c0") == {"PL": [vip["id"]], "VIP": [vip["id"]]}
    api.put("/api/v1/customers/c0/groups", json={"groups": ["VIP", "staff"]})
    assert groups(api, "c0") == {"PL": [vip["id"]], "VIP": ["manual", vip["id"]], "staff": ["manual"]}
    # Removing the hand-assigned copy keeps the inherited one.
    api.put("/api/v1/customers/c0/groups", json={"groups": ["staff"]})
    assert groups(api, "c0")["VIP"] == [vip["id"]]
    # Leaving the segment removes only what it gave.
    api.put("/api/v1/customers/c0/groups", json={"groups": ["VIP"]})
    api.put("/api/v1/customers/c0", json={"country": "FR"})
    assert groups(api, "c0") == {"VIP": ["manual"]}
    assert api.put("/api/v1/customers/c0/groups", json={"groups": ["bad group!"]}).status_code == 422


def test_size_over_time_follows_history(api: TestClient, clock: FrozenClock) -> None:
    poles = create(api, name="Poles", text='profile.country in ("PL")')
    run(api)  # day 0: c0 and c2 enter
    clock.advance(timedelta(days=1))
    api.put("/api/v1/customers/c1", json={"country": "PL"})  # day 1: c1 enters
    clock.advance(timedelta(days=2))
    api.put("/api/v1/customers/c0", json={"country": "DE"})  # day 3: c0 exits
    day0 = (clock.now() - timedelta(days=3)).date()
    points = api.get(
        f"/api/v1/segments/{poles['id']}/size",
        params={"from": (day0 - timedelta(days=1)).isoformat(), "to": clock.now().date().isoformat()},
    ).json()
    assert [(p["members"], p["entered"], p["exited"]) for p in points] == [
        (0, 0, 0),
        (2, 2, 0),
        (3, 1, 0),
        (3, 0, 0),
        (2, 0, 1),
    ]
    bad = api.get(f"/api/v1/segments/{poles['id']}/size", params={"from": "2026-03-10", "to": "2026-03-01"})
    assert bad.status_code == 422


def test_safety_net_counts_drift(api: TestClient, store: sa.Engine, clock: FrozenClock) -> None:
    poles = create(api, name="Poles", text='profile.country in ("PL")', sync_period_seconds=3600)
    run(api)
    state = api.app.state  # type: ignore[attr-defined]
    assert queue_safety_net(state.session_factory, clock, state.settings) == []  # not due yet
    clock.advance(timedelta(hours=2))
    assert queue_safety_net(state.session_factory, clock, state.settings) == [poles["id"]]
    run(api)
    body = api.get(f"/api/v1/segments/{poles['id']}").json()
    assert (body["refresh"]["reason"], body["drift"]["entered"], body["drift"]["exited"]) == ("safety_net", 0, 0)
    # Simulate a missed update: a member silently lost. The next safety net finds and repairs it.
    with store.begin() as connection:
        connection.execute(
            sa.text("DELETE FROM segment_members WHERE customer_id = (SELECT id FROM customers WHERE source_id = 'c0')")
        )
    clock.advance(timedelta(hours=2))
    queue_safety_net(state.session_factory, clock, state.settings)
    run(api)
    body = api.get(f"/api/v1/segments/{poles['id']}").json()
    assert (body["drift"]["entered"], body["drift"]["exited"]) == (1, 0)
    assert members(api, poles["id"]) == ["c0", "c2"]


def test_erasing_a_member_is_an_exit_on_that_day_and_leaves_past_sizes_alone(
    api: TestClient, clock: FrozenClock
) -> None:
    poles = create(api, name="Poles", text='profile.country in ("PL")')
    run(api)  # day 0: c0 and c2 enter
    day0 = clock.now().date()
    clock.advance(timedelta(days=2))
    assert api.delete("/api/v1/customers/c2").status_code == 204
    points = api.get(
        f"/api/v1/segments/{poles['id']}/size",
        params={"from": day0.isoformat(), "to": clock.now().date().isoformat()},
    ).json()
    assert [(p["members"], p["entered"], p["exited"]) for p in points] == [(2, 2, 0), (2, 0, 0), (1, 0, 1)]
    assert api.get(f"/api/v1/segments/{poles['id']}").json()["members"] == 1


def test_quarter_hour_counts_add_up_per_segment_in_one_statement(api: TestClient, store: sa.Engine) -> None:
    """``count_size_changes`` writes many segments' counts at once: a segment named twice is summed, counts add to
    the quarter hour's row, a new quarter hour starts its own row, and zero changes write nothing."""
    from datetime import UTC, datetime

    from sqlalchemy.orm import Session

    from cohorta.membership.service import count_size_changes
    from cohorta.segments.models import SegmentSizeChange

    ids = [create(api, name=f"Counted {n}", text='profile.country in ("PL")')["id"] for n in range(3)]
    at = datetime(2026, 3, 1, 10, 7, tzinfo=UTC)
    with Session(store) as session:
        count_size_changes(session, at, [(ids[0], 2, 0), (ids[1], 0, 3), (ids[0], 1, 1), (ids[2], 0, 0)])
        count_size_changes(session, at + timedelta(minutes=5), [(ids[1], 4, 0)])
        count_size_changes(session, at + timedelta(minutes=10), [(ids[0], 0, 7)])
        count_size_changes(session, at, [])
        session.commit()
        table = SegmentSizeChange.__table__
        rows = session.execute(
            sa.select(table.c.segment_id, table.c.quarter, table.c.entered, table.c.exited).where(
                table.c.segment_id.in_(ids)
            )
        ).all()
    quarter = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert sorted((sid, q.astimezone(UTC), e, x) for sid, q, e, x in rows) == sorted([
        (ids[0], quarter, 3, 1), (ids[1], quarter, 4, 3), (ids[0], quarter + timedelta(minutes=15), 0, 7),
    ])  # fmt: skip
