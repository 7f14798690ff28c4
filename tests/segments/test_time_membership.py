"""Time-based membership: answers that change with the clock alone change on time (within a minute)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.app import create_app
from cohorta.clock import FrozenClock
from cohorta.config import Settings
from cohorta.membership.jobs import queue_safety_net, queue_window_edges, run_due_wakeups
from tests.conftest import ADMIN_TOKEN
from tests.segments.test_segments_api import create, members, run


@pytest.fixture
def api(store: sa.Engine, clock: FrozenClock, settings: Settings) -> Iterator[TestClient]:
    zoned = settings.model_copy(update={"scheduler": False, "timezone": "Europe/Warsaw"})
    app = create_app(zoned, clock=clock, engine=store)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        client.put("/api/v1/event-definitions/product_viewed", json={})
        for index in range(3):
            client.put(f"/api/v1/customers/c{index}", json={})
        yield client


def tick(client: TestClient) -> int:
    state = client.app.state  # type: ignore[attr-defined]
    queue_window_edges(state.session_factory, state.clock)
    run(client)
    return run_due_wakeups(state.session_factory, state.clock, state.settings, state.segment_index)


def wakeups(store: sa.Engine) -> list[tuple[str, datetime]]:
    with store.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT c.source_id, w.due_at FROM segment_wakeups w "
                "JOIN customers c ON c.id = w.customer_id ORDER BY 1"
            )
        )
        return [(source_id, _aware(due)) for source_id, due in rows]


def _aware(value: object) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def test_lapsed_customers_enter_at_the_local_midnight(api: TestClient, clock: FrozenClock, store: sa.Engine) -> None:
    # clock: 2026-03-14 12:00 UTC. c0 ordered on 2026-03-10 (Warsaw date).
    api.post("/api/v1/orders", json={"id": "o0", "customer": "c0", "total": "10", "created_at": "2026-03-10T09:00:00Z"})
    lapsed = create(api, name="Lapsed", text="summary.last_order_at more_than_days_ago 30")
    tick(api)
    assert members(api, lapsed["id"]) == []
    # More than 30 days ago: from the local day 2026-04-10, which starts at 2026-04-09T22:00Z (CEST, UTC+2).
    due = dict(wakeups(store))
    assert due["c0"] == datetime(2026, 4, 9, 22, 0, tzinfo=UTC)
    clock.set(datetime(2026, 4, 9, 21, 59, 30, tzinfo=UTC))
    tick(api)
    assert members(api, lapsed["id"]) == []
    clock.set(datetime(2026, 4, 9, 22, 0, 30, tzinfo=UTC))  # within a minute of the instant
    assert tick(api) == 1
    assert members(api, lapsed["id"]) == ["c0"]
    history = api.get(f"/api/v1/segments/{lapsed['id']}/history").json()
    assert (history[0]["change"], history[0]["cause"]) == ("entered", "time")
    # A new order brings the customer back at once (data), and moves the wake-up.
    api.post(
        "/api/v1/orders", json={"id": "o1", "customer": "c0", "total": "10", "created_at": clock.now().isoformat()}
    )
    assert members(api, lapsed["id"]) == []
    assert dict(wakeups(store))["c0"] > clock.now() + timedelta(days=30)


def test_activity_leaving_a_window_exits_on_time(api: TestClient, clock: FrozenClock) -> None:
    viewers = create(
        api,
        name="Viewers",
        rule={
            "activity": "events",
            "event": "product_viewed",
            "window": {"last_days": 7},
            "measure": {"fn": "count"},
            "op": "gte",
            "value": 2,
        },
    )
    tick(api)
    api.post(
        "/api/v1/events/bulk",
        json={
            "items": [
                {"id": "e1", "customer": "c1", "name": "product_viewed", "timestamp": "2026-03-10T08:00:00Z"},
                {"id": "e2", "customer": "c1", "name": "product_viewed", "timestamp": "2026-03-12T08:00:00Z"},
            ]
        },
    )
    assert members(api, viewers["id"]) == ["c1"]
    clock.set(datetime(2026, 3, 17, 7, 0, tzinfo=UTC))
    tick(api)
    assert members(api, viewers["id"]) == ["c1"]
    clock.set(datetime(2026, 3, 17, 9, 0, tzinfo=UTC))  # the first view is now more than 7 days old
    tick(api)
    assert members(api, viewers["id"]) == []
    assert api.get(f"/api/v1/segments/{viewers['id']}/history").json()[0]["cause"] == "time"


def test_segment_window_edges(api: TestClient, clock: FrozenClock) -> None:
    start, end = clock.now() + timedelta(hours=1), clock.now() + timedelta(hours=5)
    promo = create(
        api,
        name="Promo",
        type="static",
        customers=["c0", "c1"],
        starts_at=start.isoformat(),
        expires_at=end.isoformat(),
    )
    assert members(api, promo["id"]) == []
    clock.set(start + timedelta(seconds=20))
    tick(api)
    assert members(api, promo["id"]) == ["c0", "c1"]
    clock.set(end + timedelta(seconds=20))
    tick(api)
    assert members(api, promo["id"]) == []


def test_wakeups_planned_after_a_recompute_read_the_segments_a_rule_uses(api: TestClient, clock: FrozenClock) -> None:
    """A recompute plans every customer's wake-up with the memberships its rule reads: a Pole who ordered recently
    leaves "Recent Poles" when the order leaves the window, though the order came before the segment existed."""
    api.put("/api/v1/customers/c2", json={"country": "PL"})
    api.post("/api/v1/orders", json={"id": "o2", "customer": "c2", "total": "10", "created_at": "2026-03-10T09:00:00Z"})
    poles = create(api, name="Poles", text='profile.country in ("PL")')
    tick(api)
    recent_poles = create(api, name="Recent Poles", rule={"and": [
        {"in_segment": poles["id"]},
        {"activity": "orders", "window": {"last_days": 7}, "op": "gte", "value": 1},
    ]})  # fmt: skip
    tick(api)
    assert members(api, recent_poles["id"]) == ["c2"]
    clock.set(datetime(2026, 3, 17, 9, 0, 1, tzinfo=UTC))  # the order is now more than 7 days old
    tick(api)
    assert members(api, recent_poles["id"]) == []


def test_a_safety_net_without_drift_keeps_the_planned_wakeups(
    api: TestClient, clock: FrozenClock, store: sa.Engine
) -> None:
    """Writes and wake-ups keep the stored wake-ups current, so a safety net that finds no drift leaves them as they
    are (re-planning every customer was most of its time), even when it moved a customer whose wake-up was due; one
    that found drift plans the whole segment again."""
    api.post("/api/v1/orders", json={"id": "o0", "customer": "c0", "total": "10", "created_at": "2026-03-10T09:00:00Z"})
    lapsed = create(api, name="Lapsed", text="summary.last_order_at more_than_days_ago 30")
    tick(api)
    planned = datetime(2026, 4, 9, 22, 0, tzinfo=UTC)
    assert wakeups(store) == [("c0", planned)]
    marker = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)  # not an instant planning would give: shows who wrote it
    with store.begin() as connection:
        connection.execute(sa.text("UPDATE segment_wakeups SET due_at = :at"), {"at": marker.replace(tzinfo=None)})
    state = api.app.state  # type: ignore[attr-defined]

    def safety_net() -> dict[str, object]:
        clock.advance(timedelta(days=1, minutes=1))
        assert queue_safety_net(state.session_factory, clock, state.settings) == [lapsed["id"]]
        run(api)  # the recomputes only: the scheduler's wake-up pass comes after them
        return dict(api.get(f"/api/v1/segments/{lapsed['id']}").json()["drift"])

    assert safety_net()["entered"] == 0 and wakeups(store) == [("c0", marker)]
    clock.set(datetime(2026, 4, 10, 0, 0, tzinfo=UTC))  # c0 has lapsed and the marked wake-up is due
    assert safety_net()["entered"] == 0 and members(api, lapsed["id"]) == ["c0"]  # due: not drift
    assert wakeups(store) == [("c0", marker)]  # kept for the wake-up pass, which finds c0 in and plans nothing more
    assert tick(api) == 1 and wakeups(store) == [] and members(api, lapsed["id"]) == ["c0"]
    with store.begin() as connection:
        connection.execute(sa.text("INSERT INTO segment_wakeups (segment_id, customer_id, due_at) "
                                   "SELECT :segment, id, :at FROM customers WHERE source_id = 'c0'"),
                           {"segment": lapsed["id"], "at": "2026-06-01 00:00:00.000000"})  # stale: replanning drops it
    with store.begin() as connection:  # a member no mechanism put there: drift, and the segment is planned again
        connection.execute(sa.text(
            "INSERT INTO segment_members (segment_id, customer_id, since) "
            "SELECT :segment, id, '2026-03-15 00:00:00.000000' FROM customers WHERE source_id = 'c1'"
        ), {"segment": lapsed["id"]})  # fmt: skip
    assert safety_net()["exited"] == 1 and wakeups(store) == []  # planned again: c0 is in for good


@pytest.fixture
def api_utc(store: sa.Engine, clock: FrozenClock, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"scheduler": False, "timezone": "UTC"}), clock=clock, engine=store)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        client.put("/api/v1/event-definitions/product_viewed", json={})
        for index in range(2):
            client.put(f"/api/v1/customers/c{index}", json={})
        yield client


def test_a_new_segment_wakes_a_customer_early_once_then_at_the_exact_instant(
    api_utc: TestClient, clock: FrozenClock, store: sa.Engine
) -> None:
    """A new segment's wake-ups are planned set-based (jobs.plan_all_wakeups): from the earliest counted row, which
    may leave before the count drops under the threshold. At that instant the customer is re-evaluated, stays, and is
    planned exactly; c1 (one view, never two) gets no wake-up at all."""
    now = clock.now()  # 2026-03-14 12:00 UTC
    for number, days_ago in enumerate((20, 10, 2)):
        api_utc.post("/api/v1/events", json={"id": f"v{number}", "customer": "c0", "name": "product_viewed",
                                             "timestamp": (now - timedelta(days=days_ago)).isoformat()})  # fmt: skip
    api_utc.post("/api/v1/events", json={"id": "w0", "customer": "c1", "name": "product_viewed",
                                         "timestamp": (now - timedelta(days=5)).isoformat()})  # fmt: skip
    viewers = create(api_utc, name="Viewers", rule={"activity": "events", "event": "product_viewed",
                                                    "window": {"last_days": 30}, "op": "gte", "value": 2})  # fmt: skip
    tick(api_utc)
    assert members(api_utc, viewers["id"]) == ["c0"]
    assert wakeups(store) == [("c0", now + timedelta(days=10))]  # the view of 20 days ago leaves the window
    clock.set(now + timedelta(days=10, seconds=30))
    assert tick(api_utc) == 1
    assert members(api_utc, viewers["id"]) == ["c0"]  # still two views
    # now exact: the count drops under 2 when the view of 10 days ago leaves
    assert wakeups(store) == [("c0", now + timedelta(days=20, microseconds=1))]
    clock.set(now + timedelta(days=20, seconds=30))
    assert tick(api_utc) == 1
    assert members(api_utc, viewers["id"]) == []
    assert wakeups(store) == []


def test_a_view_just_below_the_window_start_re_enters_when_the_clocks_fall_back(
    api: TestClient, clock: FrozenClock
) -> None:
    """Warsaw falls back at 2025-10-26 01:00 UTC: "viewed at least twice in the last 7 days" then starts an hour
    earlier, and a view that had just left the window counts again (until 01:15 UTC). A new view decides the
    customer (one view inside: still out); the view below the start must be read for the customer to wake then."""
    clock.set(datetime(2025, 10, 26, 0, 30, tzinfo=UTC))
    rule = {"activity": "events", "event": "product_viewed", "window": {"last_days": 7}, "op": "gte", "value": 2}
    viewers = create(api, name="Viewers", rule=rule)
    tick(api)

    def view(event_id: str, at: datetime) -> None:
        api.post("/api/v1/events", json={"id": event_id, "customer": "c0", "name": "product_viewed",
                                         "timestamp": at.isoformat()}).raise_for_status()  # fmt: skip

    view("v1", datetime(2025, 10, 19, 0, 15, tzinfo=UTC))  # left the window at 00:15 UTC today
    view("v2", clock.now())
    assert members(api, viewers["id"]) == []
    clock.set(datetime(2025, 10, 26, 1, 0, 30, tzinfo=UTC))
    tick(api)
    assert members(api, viewers["id"]) == ["c0"]
    clock.set(datetime(2025, 10, 26, 1, 15, 30, tzinfo=UTC))
    tick(api)
    assert members(api, viewers["id"]) == []
