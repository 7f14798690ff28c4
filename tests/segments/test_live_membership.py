"""Live membership: every write re-evaluates the customers it touched, in the same transaction."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.app import create_app
from cohorta.clock import FrozenClock
from cohorta.config import Settings
from cohorta.db import as_instant
from tests.conftest import ADMIN_TOKEN
from tests.segments.test_segments_api import create, members, run


@pytest.fixture
def api(store: sa.Engine, clock: FrozenClock, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"scheduler": False}), clock=clock, engine=store)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        client.put("/api/v1/event-definitions/product_viewed", json={"properties": {"category": "string"}})
        for index, country in enumerate(["PL", "DE", "PL"]):
            client.put(f"/api/v1/customers/c{index}", json={"country": country})
        yield client


def segment_names(client: TestClient, source_id: str) -> list[str]:
    return [s["name"] for s in client.get(f"/api/v1/customers/{source_id}/segments").json()]


def test_an_order_moves_its_customer_at_once(api: TestClient) -> None:
    big = create(api, name="Big spenders", text="summary.total_spent > 150")
    run(api)
    assert members(api, big["id"]) == []
    api.post(
        "/api/v1/orders", json={"id": "o1", "customer": "c0", "total": "200", "created_at": "2026-03-10T10:00:00Z"}
    )
    assert segment_names(api, "c0") == ["Big spenders"]  # the next read already sees it
    refunded = {
        "id": "o1",
        "customer": "c0",
        "total": "200",
        "created_at": "2026-03-10T10:00:00Z",
        "status": "refunded",
    }
    api.post("/api/v1/orders", json=refunded)
    assert segment_names(api, "c0") == []
    history = api.get(f"/api/v1/segments/{big['id']}/history").json()
    assert [(h["change"], h["cause"], h["version"]) for h in history] == [("exited", "data", 1), ("entered", "data", 1)]
    assert api.get(f"/api/v1/segments/{big['id']}").json()["members"] == 0


def test_a_write_past_a_segments_expiry_removes_a_member_its_rows_could_only_raise(
    api: TestClient, clock: FrozenClock
) -> None:
    """A new view can only raise "viewed at least once", so a member viewing again is not decided again: except past
    the segment's expiry (before its window edge is processed), where nobody is a member whatever the rule says."""
    body = {"activity": "events", "event": "product_viewed", "op": "gte", "value": 1}
    viewers = create(api, name="Viewers", rule=body, expires_at=(clock.now() + timedelta(hours=1)).isoformat())
    run(api)
    api.post("/api/v1/events", json={"id": "v1", "customer": "c0", "name": "product_viewed"})
    assert members(api, viewers["id"]) == ["c0"]
    api.post("/api/v1/events", json={"id": "v2", "customer": "c0", "name": "product_viewed"})
    assert members(api, viewers["id"]) == ["c0"]
    clock.advance(timedelta(hours=2))
    api.post("/api/v1/events", json={"id": "v3", "customer": "c0", "name": "product_viewed"})
    assert members(api, viewers["id"]) == []


def test_profile_events_and_loyalty_writes(api: TestClient) -> None:
    poles = create(api, name="Poles", text='profile.country in ("PL")')
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
    gold = create(api, name="Gold", rule={"field": "loyalty.points_balance", "op": "gte", "value": 100})
    run(api)
    assert members(api, poles["id"]) == ["c0", "c2"]
    api.put("/api/v1/customers/c0", json={"country": "FR"})
    assert members(api, poles["id"]) == ["c2"]
    api.post(
        "/api/v1/events/bulk",
        json={
            "items": [
                {"id": f"e{n}", "customer": "c1", "name": "product_viewed", "timestamp": "2026-03-13T10:00:00Z"}
                for n in range(2)
            ]
        },
    )
    assert members(api, viewers["id"]) == ["c1"]
    api.post(
        "/api/v1/loyalty/transactions",
        json={"id": "p1", "customer": "c2", "type": "points", "program": "club", "entry": "earn", "points": 150},
    )
    assert members(api, gold["id"]) == ["c2"]
    api.put("/api/v1/customers/c9", json={"country": "PL"})  # a new customer enters at creation
    assert members(api, poles["id"]) == ["c2", "c9"]


def test_a_new_customer_is_decided_against_every_segment(api: TestClient) -> None:
    """A customer a profile write creates (alone or in bulk) enters, in that write, every segment whose rule holds for
    someone with no activity yet, not only the segments that read profiles; an update of an existing customer moves
    them in profile segments only, as before. A full recompute finds nothing to add or remove."""
    none_yet = create(api, name="No orders yet", text="summary.order_count < 1")
    quiet = create(api, name="No views this week", rule={"not": {
        "activity": "events", "event": "product_viewed", "window": {"last_days": 7}, "measure": {"fn": "count"},
        "op": "gte", "value": 1}})  # fmt: skip
    few_points = create(api, name="Few points", rule={"field": "loyalty.points_balance", "op": "lt", "value": 100})
    poles = create(api, name="Poles", text='profile.country in ("PL")')
    not_poles = create(api, name="Not Poles", rule={"not": {"in_segment": poles["id"]}})
    segments = [none_yet, quiet, few_points, poles, not_poles]
    run(api)
    assert members(api, none_yet["id"]) == ["c0", "c1", "c2"]
    api.put("/api/v1/customers/n1", json={"country": "PL"}).raise_for_status()
    assert sorted(segment_names(api, "n1")) == ["Few points", "No orders yet", "No views this week", "Poles"]
    # New and known customers in one write (one pass): c0 leaves Poles, and so enters the segment using it.
    api.post("/api/v1/customers/bulk", json={"items": [
        {"source_id": "n2", "country": "DE"}, {"source_id": "c0", "country": "DE"},
    ]}).raise_for_status()  # fmt: skip
    assert sorted(segment_names(api, "n2")) == ["Few points", "No orders yet", "No views this week", "Not Poles"]
    assert members(api, poles["id"]) == ["c2", "n1"]
    assert members(api, not_poles["id"]) == ["c0", "c1", "n2"]
    assert_no_drift(api, segments)


def test_segments_that_use_segments_follow_in_the_same_write(api: TestClient) -> None:
    poles = create(api, name="Poles", text='profile.country in ("PL")')
    rich_poles = create(
        api,
        name="Rich Poles",
        rule={"and": [{"in_segment": poles["id"]}, {"field": "summary.total_spent", "op": "gt", "value": 100}]},
    )
    not_poles = create(api, name="Not Poles", rule={"not": {"in_segment": poles["id"]}})
    run(api)
    api.post(
        "/api/v1/orders", json={"id": "o1", "customer": "c1", "total": "500", "created_at": "2026-03-10T10:00:00Z"}
    )
    assert members(api, rich_poles["id"]) == []
    api.put("/api/v1/customers/c1", json={"country": "PL"})  # enters Poles, and so Rich Poles, leaves Not Poles
    assert sorted(segment_names(api, "c1")) == ["Poles", "Rich Poles"]
    assert members(api, not_poles["id"]) == []


def test_inactive_archived_and_out_of_window_segments_do_not_change(api: TestClient, clock: FrozenClock) -> None:
    paused = create(api, name="Paused", text='profile.country in ("FR")', status="inactive")
    later = create(
        api, name="Later", text='profile.country in ("FR")', starts_at=(clock.now() + timedelta(days=1)).isoformat()
    )
    run(api)
    api.put("/api/v1/customers/c0", json={"country": "FR"})
    assert members(api, paused["id"]) == [] and members(api, later["id"]) == []


def assert_no_drift(api: TestClient, segments: list[dict[str, Any]]) -> None:
    """A full recompute of every segment finds nothing to add or remove."""
    for segment in segments:
        api.post(f"/api/v1/segments/{segment['id']}/refresh")
    run(api)
    for segment in segments:
        refresh = api.get(f"/api/v1/segments/{segment['id']}").json()["refresh"]
        assert (refresh["entered"], refresh["exited"]) == (0, 0), segment["name"]


def test_no_drift_after_random_writes(api: TestClient, clock: FrozenClock) -> None:
    """Live updates keep stored membership equal to a full recompute, whatever the writes."""
    definitions: list[dict[str, Any]] = [
        {"name": "PL", "text": 'profile.country in ("PL")'},
        {"name": "Spenders", "text": "summary.total_spent >= 100 and summary.order_count >= 2"},
        {
            "name": "Recent",
            "rule": {
                "activity": "orders",
                "window": {"last_days": 30},
                "measure": {"fn": "count"},
                "op": "gte",
                "value": 1,
            },
        },
        {
            "name": "Viewers",
            "rule": {
                "activity": "events",
                "event": "product_viewed",
                "measure": {"fn": "count"},
                "op": "gte",
                "value": 2,
            },
        },
        {"name": "Points", "rule": {"field": "loyalty.points_balance", "op": "gt", "value": 50}},
    ]
    segments = [create(api, **d) for d in definitions]
    segments.append(
        create(
            api,
            name="PL spenders",
            rule={"and": [{"in_segment": segments[0]["id"]}, {"in_segment": segments[1]["id"]}]},
        )
    )
    run(api)
    rng = random.Random(11)
    for step in range(60):
        who = f"c{rng.randrange(5)}"
        api.put(f"/api/v1/customers/{who}", json={"country": rng.choice(["PL", "DE", None])})
        kind = rng.randrange(4)
        when = (clock.now() - timedelta(days=rng.randrange(40))).isoformat()
        if kind == 0:
            api.post(
                "/api/v1/orders",
                json={
                    "id": f"o{step}",
                    "customer": who,
                    "total": str(rng.randrange(10, 120)),
                    "created_at": when,
                    "status": rng.choice(["paid", "paid", "refunded"]),
                },
            )
        elif kind == 1:
            api.post(
                "/api/v1/events", json={"id": f"e{step}", "customer": who, "name": "product_viewed", "timestamp": when}
            )
        elif kind == 2:
            api.post(
                "/api/v1/loyalty/transactions",
                json={
                    "id": f"l{step}",
                    "customer": who,
                    "type": "points",
                    "program": "club",
                    "entry": rng.choice(["earn", "spend"]),
                    "points": rng.randrange(1, 80),
                },
            )
        clock.advance(timedelta(minutes=rng.randrange(1, 90)))
    # Time-based changes ("Recent" ageing out) are not live yet; hold the clock where the writes left it.
    assert_no_drift(api, segments)


def test_events_that_cannot_count_leave_segments_alone_and_nothing_drifts(api: TestClient, clock: FrozenClock,
                                                                         store: sa.Engine) -> None:
    """An events write re-evaluates a segment for a customer only when a new row can count for its rule (name and
    ``where``) or a row was rewritten; membership still equals a full recompute after random single and bulk writes,
    rewrites that move a row in and out of a filter, and segments built on those segments."""
    api.put("/api/v1/event-definitions/product_viewed", json={"properties": {"category": "string", "release": "date"}})
    shoes_rule = {"activity": "events", "event": "product_viewed", "window": {"last_days": 30},
                  "where": [{"field": "properties.category", "op": "is", "value": "shoes"}], "op": "gte", "value": 2}
    shoes = create(api, name="Shoes twice", rule=shoes_rule)
    definitions: list[dict[str, Any]] = [
        {"name": "Bags", "rule": {"activity": "events", "event": "product_viewed", "op": "gte", "value": 1,
                                  "where": [{"field": "properties.category", "op": "in", "value": ["bags"]}]}},
        # a variant of "Shoes twice": the same effect function, decided with its own membership
        {"name": "Shoes thrice in 60 days", "rule": {**shoes_rule, "window": {"last_days": 60}, "value": 3}},
        {"name": "Any view in 7 days", "rule": {"activity": "events", "event": "product_viewed",
                                                "window": {"last_days": 7}, "op": "gte", "value": 1}},
        {"name": "Released soon", "rule": {"activity": "events", "event": "product_viewed", "op": "gte", "value": 1,
                                           "where": [{"field": "properties.release", "op": "in_next_days",
                                                      "value": 10}]}},
    ]  # fmt: skip
    segments = [shoes, *(create(api, **d) for d in definitions)]
    segments.append(create(api, name="Shoes, not bags",
                           rule={"and": [{"in_segment": shoes["id"]}, {"not": {"in_segment": segments[1]["id"]}}]}))
    run(api)

    # A bags view cannot count for "Shoes twice": its wake-up row (set to a marker here) is left alone.
    for key in ("s1", "s2"):
        api.post("/api/v1/events", json={"id": key, "customer": "c0", "name": "product_viewed",
                                         "timestamp": clock.now().isoformat(), "properties": {"category": "shoes"}})
    # until the first view leaves the window: a wake-up; the segment built on it follows in the same write
    assert sorted(segment_names(api, "c0")) == ["Any view in 7 days", "Shoes twice", "Shoes, not bags"]
    mark_wakeups(store, [shoes["id"]])
    api.post("/api/v1/events", json={"id": "b1", "customer": "c0", "name": "product_viewed",
                                     "timestamp": clock.now().isoformat(), "properties": {"category": "bags"}})
    assert marked(store, shoes["id"])
    # A third shoes view counts, but a member of "at least 2" stays one whatever it adds, and the stored wake-up can
    # only be early (safe): neither is touched.
    api.post("/api/v1/events", json={"id": "s3", "customer": "c0", "name": "product_viewed",
                                     "timestamp": clock.now().isoformat(), "properties": {"category": "shoes"}})
    assert marked(store, shoes["id"])
    # c1 is no member: one shoes view cannot make them one (no wake-up either), the second does, with a wake-up.
    for key in ("t1", "t2"):
        api.post("/api/v1/events", json={"id": key, "customer": "c1", "name": "product_viewed",
                                         "timestamp": clock.now().isoformat(), "properties": {"category": "shoes"}})
        assert ("Shoes twice" in segment_names(api, "c1")) is (key == "t2")
    with store.connect() as conn:
        c1_wakeup = conn.execute(sa.text("SELECT due_at FROM segment_wakeups WHERE segment_id = :s AND customer_id = "
                                         "(SELECT id FROM customers WHERE source_id = 'c1')"), {"s": shoes["id"]})
        due = as_instant(c1_wakeup.scalar())
    assert due is not None and timedelta(days=29) < due - clock.now() <= timedelta(days=31)  # the views age out
    # Rewritten as hats, two of the three shoes views stop counting: no new row, yet the customer leaves.
    for key in ("s1", "s2"):
        api.post("/api/v1/events", json={"id": key, "customer": "c0", "name": "product_viewed",
                                         "timestamp": clock.now().isoformat(), "properties": {"category": "hats"}})
    assert sorted(segment_names(api, "c0")) == ["Any view in 7 days", "Bags"]
    assert not marked(store, shoes["id"])  # a rewrite decides the customer again: the marker is gone

    rng = random.Random(5)

    def event(key: str) -> dict[str, Any]:
        when = clock.now() - timedelta(days=rng.randrange(40), minutes=rng.randrange(600))
        return {"id": key, "customer": f"c{rng.randrange(3)}", "name": rng.choice(["product_viewed", "app_opened"]),
                "timestamp": when.isoformat(), "properties": {
                    "category": rng.choice(["shoes", "bags", "hats"]),
                    "release": (clock.now() + timedelta(days=rng.randrange(-5, 30))).date().isoformat()}}

    random_writes(api, clock, rng, "/api/v1/events", event, batch=6)  # rewrites move a category, customer or time
    assert_no_drift(api, segments)


_C0 = "(SELECT id FROM customers WHERE source_id = 'c0')"


def mark_wakeups(store: sa.Engine, segment_ids: list[str]) -> None:
    """c0's stored wake-ups in these segments moved to a marker instant far ahead (2099): a write that decides the
    pair again plans it anew, so a marker still there after a write shows that the write left the pair alone."""
    with store.begin() as conn:
        for segment_id in segment_ids:
            conn.execute(sa.text("UPDATE segment_wakeups SET due_at = :m WHERE segment_id = :s AND customer_id = "
                                 + _C0), {"m": "2099-01-01 00:00:00", "s": segment_id})  # fmt: skip


def marked(store: sa.Engine, segment_id: str) -> bool | None:
    """Whether c0's wake-up in the segment is still the marker (None: c0 has none there)."""
    with store.connect() as conn:
        due = conn.execute(sa.text("SELECT due_at FROM segment_wakeups WHERE segment_id = :s AND customer_id = " + _C0),
                           {"s": segment_id}).scalar()  # fmt: skip
    return None if due is None else str(due).startswith("2099")


def random_writes(api: TestClient, clock: FrozenClock, rng: random.Random, path: str,
                  item: Callable[[str], dict[str, Any]], batch: int) -> None:  # fmt: skip
    """40 random single writes, bulk writes of up to ``batch`` - 1 items and rewrites of an earlier item, a few
    seconds apart."""
    written: list[str] = []
    for step in range(40):
        if rng.random() < 0.3 and written:
            api.post(path, json=item(rng.choice(written)))
        elif rng.random() < 0.5:
            items = [item(f"k{step}-{i}") for i in range(rng.randrange(1, batch))]
            response = api.post(f"{path}/bulk", json={"items": items})
            assert response.status_code == 200, response.text
            written += [x["id"] for x in items]
        else:
            written.append(f"w{step}")
            api.post(path, json=item(f"w{step}"))
        clock.advance(timedelta(seconds=rng.randrange(1, 30)))


def test_orders_that_cannot_move_an_answer_leave_segments_alone_and_nothing_drifts(
    api: TestClient, clock: FrozenClock, store: sa.Engine
) -> None:
    """An orders write re-evaluates a segment for a customer only when the new order (or its items) can move the
    rule's answer that way (rules.order_effect) or an order was rewritten; membership still equals a full recompute
    after random single and bulk orders, rewrites of status, total and items, and segments built on them."""
    recent = create(api, name="Ordered in 30 days",
                    rule={"activity": "orders", "window": {"last_days": 30}, "op": "gte", "value": 1})
    quiet = create(api, name="No order in 30 days",
                   rule={"not": {"activity": "orders", "window": {"last_days": 30}, "op": "gte", "value": 1}})
    definitions: list[dict[str, Any]] = [
        {"name": "Spent over 100", "text": "summary.total_spent > 100"},
        {"name": "Under 3 orders", "text": "summary.order_count < 3"},
        {"name": "Average over 40", "text": "summary.average_order_value > 40"},
        {"name": "Brand X twice", "rule": {"activity": "order_items", "op": "gte", "value": 2,
                                           "where": [{"field": "brand", "op": "is", "value": "X"}]}},
        {"name": "Paid in 60 days", "rule": {"activity": "orders", "window": {"last_days": 60}, "op": "gte",
                                             "value": 1, "where": [{"field": "status", "op": "is", "value": "paid"}]}},
    ]  # fmt: skip
    segments = [recent, quiet, *(create(api, **d) for d in definitions)]
    segments.append(create(api, name="Quiet spenders",
                           rule={"and": [{"in_segment": quiet["id"]}, {"in_segment": segments[2]["id"]}]}))
    run(api)

    def order(key: str, customer: str, total: str = "30", status: str = "paid", days_ago: int = 0,
              brands: tuple[str, ...] = ()) -> dict[str, Any]:
        return {"id": key, "customer": customer, "total": total, "status": status,
                "created_at": (clock.now() - timedelta(days=days_ago)).isoformat(),
                "items": [{"sku": f"s{i}", "brand": brand, "quantity": 1, "unit_price": "5"}
                          for i, brand in enumerate(brands)]}  # fmt: skip

    assert api.post("/api/v1/orders", json=order("a1", "c0")).status_code == 201
    assert "Ordered in 30 days" in segment_names(api, "c0") and "No order in 30 days" not in segment_names(api, "c0")
    mark_wakeups(store, [recent["id"], quiet["id"]])
    # Another order only raises "ordered in 30 days" (a member) and lowers "no order in 30 days" (not one): neither
    # is decided again, so their stored wake-ups, early at worst, are left as they were.
    assert api.post("/api/v1/orders", json=order("a2", "c0")).status_code == 201
    assert marked(store, recent["id"]) and marked(store, quiet["id"]) is not False
    # Rewritten (its date moved back), an order is decided again: the marker is gone.
    assert api.post("/api/v1/orders", json=order("a2", "c0", days_ago=45)).status_code == 200
    assert not marked(store, recent["id"])
    # A cancelled order feeds no summary: "spent over 100" cannot move; a paid one of 80 makes c1 a member.
    api.post("/api/v1/orders", json=order("b1", "c1", total="80", status="cancelled"))
    api.post("/api/v1/orders", json=order("b2", "c1", total="30"))
    assert "Spent over 100" not in segment_names(api, "c1")
    api.post("/api/v1/orders", json=order("b3", "c1", total="80"))
    assert "Spent over 100" in segment_names(api, "c1") and "Quiet spenders" not in segment_names(api, "c1")

    rng = random.Random(7)

    def random_order(key: str) -> dict[str, Any]:
        return order(key, f"c{rng.randrange(3)}", total=str(rng.choice([0, 15, 60])),
                     status=rng.choice(["paid", "paid", "cancelled", "refunded"]), days_ago=rng.randrange(70),
                     brands=tuple(rng.choice(["X", "Y"]) for _ in range(rng.randrange(3))))  # fmt: skip

    random_writes(api, clock, rng, "/api/v1/orders", random_order, batch=5)  # rewrites move status, total, items...
    assert_no_drift(api, segments)


def test_loyalty_rows_that_cannot_move_an_answer_leave_segments_alone_and_nothing_drifts(
    api: TestClient, clock: FrozenClock, store: sa.Engine
) -> None:
    """A loyalty write re-evaluates a segment for a customer only when the new journal row can move the rule's answer
    that way (rules.loyalty_effect) or a row was rewritten; membership still equals a full recompute after random
    single and bulk points, tier, redemption, referral and gift-card rows, rewrites included."""
    api.post("/api/v1/loyalty/transactions", json={"id": "t0", "customer": "c2", "type": "tier", "program": "club",
                                                   "tier": "silver"}).raise_for_status()  # the catalog knows "club"
    redeemed = create(api, name="Redeemed in 30 days",
                      rule={"activity": "redemptions", "window": {"last_days": 30}, "op": "gte", "value": 1})
    definitions: list[dict[str, Any]] = [
        {"name": "No redemption in 30 days", "rule": {"not": {"activity": "redemptions", "window": {"last_days": 30},
                                                              "op": "gte", "value": 1}}},
        {"name": "Points over 100", "text": "loyalty.points_balance > 100"},
        {"name": "Club gold", "rule": {"field": "loyalty.club.tier", "op": "is", "value": "gold"}},
        {"name": "Two redemptions", "text": "summary.redemption_count >= 2"},
        {"name": "Referrer", "text": "summary.referral_count >= 1"},
        {"name": "Gift card over 10", "text": "summary.gift_card_balance > 10"},
        {"name": "Earned in club", "rule": {"activity": "points", "op": "gte", "value": 2, "where": [
            {"field": "program", "op": "is", "value": "club"}, {"field": "entry", "op": "is", "value": "earn"}]}},
    ]  # fmt: skip
    segments = [redeemed, *(create(api, **d) for d in definitions)]
    run(api)

    def journal(key: str, customer: str, kind: str = "redemption", days_ago: int = 0, **more: Any) -> dict[str, Any]:
        body = {"id": key, "customer": customer, "type": kind,
                "timestamp": (clock.now() - timedelta(days=days_ago)).isoformat(), **more}  # fmt: skip
        if kind in ("redemption", "tier", "points") and "program" not in body:
            body["program"] = "club"
        return body

    path = "/api/v1/loyalty/transactions"
    assert api.post(path, json=journal("r1", "c0", reward="mug")).status_code == 201
    assert "Redeemed in 30 days" in segment_names(api, "c0")
    mark_wakeups(store, [redeemed["id"]])
    # Another redemption only raises "redeemed in 30 days" for a member: not decided again, its wake-up kept; a
    # points row cannot move it at all.
    assert api.post(path, json=journal("r2", "c0", reward="cap")).status_code == 201
    assert api.post(path, json=journal("p1", "c0", "points", entry="earn", points=50)).status_code == 201
    adjusted = api.post("/api/v1/customers/c0/points", json={"program": "club", "points": 5, "reason": "goodwill"})
    assert adjusted.status_code == 201, adjusted.text  # a points adjustment by hand is narrowed the same way
    assert marked(store, redeemed["id"])
    assert "Two redemptions" in segment_names(api, "c0")
    # Rewritten (moved 45 days back), a redemption is decided again: the marker is gone.
    assert api.post(path, json=journal("r2", "c0", days_ago=45, reward="cap")).status_code == 200
    assert not marked(store, redeemed["id"])
    api.post(path, json=journal("p2", "c1", "points", entry="earn", points=150))
    api.post(path, json=journal("t1", "c1", "tier", tier="gold"))
    assert {"Points over 100", "Club gold"} <= set(segment_names(api, "c1"))
    api.post(path, json=journal("p3", "c1", "points", entry="spend", points=100))
    assert "Points over 100" not in segment_names(api, "c1")

    rng = random.Random(11)

    def random_row(key: str) -> dict[str, Any]:
        kind = rng.choice(["points", "points", "tier", "redemption", "referral", "gift_card"])
        customer, days_ago = f"c{rng.randrange(3)}", rng.randrange(60)
        if kind == "points":
            return journal(key, customer, kind, days_ago, program=rng.choice(["club", "kids"]),
                           entry=rng.choice(["earn", "spend", "expire"]), points=rng.choice([10, 60, 120]))
        if kind == "tier":
            return journal(key, customer, kind, days_ago, program=rng.choice(["club", "kids"]),
                           tier=rng.choice(["gold", "silver"]))
        if kind == "redemption":
            return journal(key, customer, kind, days_ago, program=rng.choice(["club", "kids"]), reward="mug")
        if kind == "referral":
            return journal(key, customer, kind, days_ago, referred=f"friend{rng.randrange(5)}")
        return journal(key, customer, kind, days_ago, gift_card="GC1", operation=rng.choice(["load", "redeem"]),
                       amount=rng.choice(["5", "20"]))  # fmt: skip

    random_writes(api, clock, rng, path, random_row, batch=5)
    assert_no_drift(api, segments)


def test_snapshots_hold_only_the_attributes_the_rules_name(api: TestClient, store: sa.Engine) -> None:
    """A customer holds many custom attributes and a rule reads one or two: live re-evaluation loads only those,
    and a rule over another attribute still sees its own."""
    from sqlalchemy.orm import Session

    from cohorta import rules
    from cohorta.evaluation.snapshots import load_snapshots

    for name, typ in (("club_level", "string"), ("pets", "number"), ("newsletter", "boolean")):
        api.put(f"/api/v1/attributes/{name}", json={"type": typ})
    api.put("/api/v1/customers/c0", json={"attributes": {"club_level": "gold", "pets": 2, "newsletter": True}})
    with Session(store) as session:
        (customer_id,) = session.execute(sa.text("SELECT id FROM customers WHERE source_id = 'c0'")).one()
        wanted = {
            frozenset({"attributes.club_level"}): {"club_level": "gold"},
            frozenset({"attributes.pets", "profile.country"}): {"pets": 2},
            frozenset({"profile.country"}): {},
        }
        for fields, expected in wanted.items():
            requirements = rules.Requirements(fields=set(fields))
            snapshot = load_snapshots(session, [customer_id], requirements)[customer_id]
            assert dict(snapshot.attributes) == expected
        everything = load_snapshots(session, [customer_id])[customer_id]
        assert set(everything.attributes) == {"club_level", "pets", "newsletter"}
    gold = create(api, name="Gold", text='attributes.club_level is "gold"')
    pets = create(api, name="Two pets", text="attributes.pets >= 2")
    run(api)
    api.put("/api/v1/customers/c0", json={"attributes": {"club_level": "silver", "pets": 2, "newsletter": True}})
    assert segment_names(api, "c0") == ["Two pets"]
    assert members(api, gold["id"]) == [] and members(api, pets["id"]) == ["c0"]


def test_snapshots_hold_only_the_event_properties_the_rules_read(api: TestClient, store: sa.Engine) -> None:
    """Events carry several properties and most rules count events by name alone: snapshots hold the properties the
    rules test in ``where`` or measure, and none for the others; a rule over another property still sees its own."""
    from sqlalchemy.orm import Session

    from cohorta import rules
    from cohorta.evaluation.snapshots import load_snapshots

    api.put("/api/v1/event-definitions/product_viewed",
            json={"properties": {"category": "string", "price": "number"}})  # fmt: skip
    api.post("/api/v1/events", json={"id": "e1", "customer": "c0", "name": "product_viewed",
                                     "properties": {"category": "shoes", "price": 80}})  # fmt: skip
    viewed = {"activity": "events", "event": "product_viewed", "op": "gte", "value": 1}
    counted = viewed
    shoes = {**viewed, "where": [{"field": "properties.category", "op": "is", "value": "shoes"}]}
    spent = {**viewed, "measure": {"fn": "sum", "field": "properties.price"}, "value": 50}
    catalog = rules.Catalog(event_definitions={"product_viewed": {"category": "string", "price": "number"}})
    ctx = rules.Context(as_of=datetime.now(UTC), catalog=catalog)
    with Session(store) as session:
        (customer_id,) = session.execute(sa.text("SELECT id FROM customers WHERE source_id = 'c0'")).one()
        for rule, expected in ((counted, {}), (shoes, {"category": "shoes"}), (spent, {"price": 80})):
            requirements = rules.rule_requirements(rules.validate(rule, catalog, 2), ctx)
            (event,) = load_snapshots(session, [customer_id], requirements)[customer_id].events
            assert event["properties"] == expected, rule
        (event,) = load_snapshots(session, [customer_id])[customer_id].events
        assert event["properties"] == {"category": "shoes", "price": 80}
    segments = [create(api, name=f"S{i}", rule=rule) for i, rule in enumerate((counted, shoes, spent))]
    run(api)
    assert [members(api, s["id"]) for s in segments] == [["c0"], ["c0"], ["c0"]]
    api.post("/api/v1/events", json={"id": "e2", "customer": "c1", "name": "product_viewed",
                                     "properties": {"category": "bags", "price": 60}})  # fmt: skip
    assert [members(api, s["id"]) for s in segments] == [["c0", "c1"], ["c0"], ["c0", "c1"]]


def test_snapshots_of_known_customers_are_those_read_from_the_profile_table(api: TestClient, store: sa.Engine) -> None:
    """Live membership vouches that its customers exist (they are the write's own), so snapshots for rules that read
    no profile column skip the profile table: they must be the snapshots read with it, and a rule that reads a profile
    column still gets it."""
    from sqlalchemy.orm import Session

    from cohorta import rules
    from cohorta.evaluation.snapshots import load_snapshots

    api.put("/api/v1/customers/c0", json={"country": "PL"})
    api.post("/api/v1/events", json={"id": "e1", "customer": "c0", "name": "newsletter_opened"})
    api.post("/api/v1/orders", json={"id": "o1", "customer": "c0", "total": "12.50"})
    with Session(store) as session:
        (customer_id,) = session.execute(sa.text("SELECT id FROM customers WHERE source_id = 'c0'")).one()
        for fields in (set(), {"summary.order_count"}, {"profile.country"}):
            requirements = rules.Requirements(fields=fields, activities={"events", "orders"})
            read = load_snapshots(session, [customer_id], requirements)[customer_id]
            vouched = load_snapshots(session, [customer_id], requirements, known=True)[customer_id]
            assert (vouched.profile, vouched.summary, vouched.events, vouched.orders) == (
                read.profile, read.summary, read.events, read.orders
            ), fields
            assert len(read.events) == 1 and len(read.orders) == 1
        assert vouched.profile["country"] == "PL"
        assert load_snapshots(session, [customer_id + 1000], rules.Requirements()) == {}  # unknown: left out


def test_an_events_writes_new_rows_are_what_a_snapshot_reads_back(api: TestClient, store: sa.Engine,
                                                                   clock: FrozenClock) -> None:  # fmt: skip
    """Live membership tests a write's new events as it wrote them, without reading them back: typed by the declared
    properties of every type (a list, instants given in another offset, no time at all, an undeclared property), they
    equal what a snapshot loads from the tables."""
    from sqlalchemy.orm import Session

    from cohorta.customers import service
    from cohorta.customers.schemas import EventIn
    from cohorta.evaluation.snapshots import load_snapshots, value_types, written_event_rows

    declared = {"category": "string", "price": "number", "gift": "boolean", "ships_on": "date",
                "seen_at": "datetime", "tags": "string_list"}  # fmt: skip
    api.put("/api/v1/event-definitions/checkout_started", json={"properties": declared})
    events = [
        EventIn(id="e1", customer="c0", name="checkout_started",
                timestamp=datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2))), properties={
            "category": "shoes", "price": 80.5, "gift": True, "ships_on": "2026-03-04",
            "seen_at": "2026-03-01T10:15:00+01:00", "tags": ["red", "sale", "red"], "undeclared": 1}),
        EventIn(id="e2", customer="c0", name="checkout_started", properties={"price": -0.0, "tags": []}),
        EventIn.model_validate({"id": "e3", "customer": "c1", "name": "product_viewed",
                                "timestamp": "2026-03-01T23:59:59.5-08:00", "properties": {"category": "bags"}}),
        EventIn(id="e4", customer="c1", name="never_declared", properties={"category": "x"}),
    ]  # fmt: skip
    with Session(store) as session:
        ingested = service.record_events(session, clock, events)
        written = written_event_rows(ingested.inserted, value_types(session))
        loaded = load_snapshots(session, sorted(ingested.customer_ids))
        def by_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return sorted(rows, key=lambda row: row["occurred_at"])

        assert {cid: by_time(rows) for cid, rows in written.items()} == {
            cid: by_time(loaded[cid].events) for cid in ingested.customer_ids
        }
        assert sorted(len(rows) for rows in written.values()) == [2, 2]
        session.rollback()


def test_a_bulk_write_loads_for_each_customer_what_its_segments_read(api: TestClient, clock: FrozenClock) -> None:
    """Customers of one events write decided for different segments get snapshots with different parts (views
    only; newsletter opens with orders and an attribute; a segment using the latter with the summary): each segment
    still sees everything its rule reads, including segments that follow a used segment's moves."""
    api.put("/api/v1/attributes/club_level", json={"type": "string"})
    api.put("/api/v1/event-definitions/newsletter_opened", json={"properties": {}})
    api.put("/api/v1/customers/c1", json={"country": "DE", "attributes": {"club_level": "gold"}})
    api.put("/api/v1/customers/c2", json={"country": "PL", "attributes": {"club_level": "gold"}})
    for who in ("c1", "c2"):
        api.post("/api/v1/orders", json={"id": f"o-{who}", "customer": who, "total": "80",
                                         "created_at": (clock.now() - timedelta(days=3)).isoformat()})
    viewers = create(api, name="Viewers", rule={"activity": "events", "event": "product_viewed", "op": "gte",
                                                "value": 2, "window": {"last_days": 7}})
    readers = create(api, name="Gold readers who ordered", rule={"and": [
        {"activity": "events", "event": "newsletter_opened", "op": "gte", "value": 1, "window": {"last_days": 30}},
        {"activity": "orders", "op": "gte", "value": 1, "window": {"last_days": 30}},
        {"field": "attributes.club_level", "op": "is", "value": "gold"}]})  # fmt: skip
    polish = create(api, name="Polish readers who spent", rule={"and": [
        {"in_segment": readers["id"]}, {"field": "profile.country", "op": "is", "value": "PL"},
        {"field": "summary.total_spent", "op": "gte", "value": 50}]})  # fmt: skip
    run(api)
    now = clock.now().isoformat()
    batch = [{"id": f"v{i}", "customer": "c0", "name": "product_viewed", "timestamp": now,
              "properties": {"category": "shoes"}} for i in range(2)]  # fmt: skip
    batch += [{"id": f"n-{c}", "customer": c, "name": "newsletter_opened", "timestamp": now} for c in ("c1", "c2")]
    assert api.post("/api/v1/events/bulk", json={"items": batch}).status_code == 200
    assert members(api, viewers["id"]) == ["c0"]
    assert sorted(members(api, readers["id"])) == ["c1", "c2"]
    assert members(api, polish["id"]) == ["c2"]
    assert_no_drift(api, [viewers, readers, polish])


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)  # statistics are PostgreSQL's
def test_a_recompute_that_fills_the_membership_tables_refreshes_postgresql_statistics(
    api: TestClient, store: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL plans the live path's membership reads from statistics; a recompute run that wrote many rows
    vacuums and analyzes the membership tables, so they do not keep describing empty tables and a customer's
    memberships are read from the index alone (autovacuum may be late or off)."""
    from cohorta.membership import jobs

    def estimated_members() -> float:
        with store.connect() as conn:
            return float(conn.execute(sa.text("SELECT reltuples FROM pg_class WHERE relname = 'segment_members'"))
                         .scalar_one())  # fmt: skip

    with store.begin() as conn:  # statistics of an empty table, whatever earlier tests left
        conn.execute(sa.text("TRUNCATE segment_members, segment_membership_history, segment_wakeups"))
        conn.execute(sa.text("ANALYZE segment_members, segment_membership_history, segment_wakeups"))
    assert estimated_members() <= 0
    create(api, name="Everybody", text='profile.country in ("PL", "DE")')
    run(api)  # 3 members, 6 rows: under the threshold
    assert estimated_members() <= 0
    monkeypatch.setattr(jobs, "ANALYZE_AFTER_ROWS", 4)
    create(api, name="Poles", text='profile.country in ("PL")')
    run(api)  # 2 members and their history: 4 rows, and more than a tenth of what the statistics know
    assert estimated_members() == 5
    with store.connect() as conn:  # vacuumed too: the visibility map lets a customer's memberships be index-only
        visible = conn.execute(sa.text("SELECT relallvisible FROM pg_class WHERE relname = 'segment_members'"))
        assert visible.scalar_one() > 0


@pytest.mark.parametrize(("text", "kinds"), [
    ("summary.total_spent > 100", {"orders"}),
    ("summary.order_count < 1", {"orders"}),
    ("summary.last_order_at more_than_days_ago 60", {"orders"}),
    ("summary.redemption_count >= 2", {"loyalty"}),
    ("summary.gift_card_balance > 0", {"loyalty"}),
    ("loyalty.points_balance >= 100", {"loyalty"}),
    ('summary.total_spent > 100 and summary.referral_count >= 1 or profile.country in ("PL")',
     {"orders", "loyalty", "profile"}),
])  # fmt: skip
def test_a_write_reaches_the_segments_that_read_what_it_feeds(text: str, kinds: set[str]) -> None:
    """The dependency index: an order feeds the order summary fields, a loyalty write the loyalty ones (every customer
    has a summary row from creation on, so neither write moves the other's fields)."""
    from cohorta import rules
    from cohorta.membership.live import _kinds

    catalog = rules.Catalog()
    rule = rules.validate(rules.parse_text(text), catalog, 2)
    ctx = rules.Context(as_of=datetime(2026, 3, 15, tzinfo=UTC), timezone="UTC", currency_exponent=2, catalog=catalog)
    assert _kinds(rules.rule_requirements(rule, ctx), catalog) == kinds
