"""Bulk writes read their customers' rows ahead, in parallel, on connections of their own (``db.ReadAhead``): the
reads must touch what the write's transaction then reads, and must change nothing about its answer."""

from __future__ import annotations

import math
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import event

from cohorta import db
from cohorta.app import create_app
from cohorta.clock import FrozenClock
from cohorta.config import Settings
from cohorta.db import ReadAhead
from cohorta.membership import live
from tests.conftest import ADMIN_TOKEN
from tests.segments.test_segments_api import create, members, run

CUSTOMERS = [f"c{i}" for i in range(12)]

RULES: dict[str, dict[str, Any]] = {
    "Viewers": {"activity": "events", "event": "product_viewed", "window": {"last_days": 30}, "op": "gte",
                "value": 2},
    "Shoe viewers": {"activity": "events", "event": "product_viewed", "window": {"last_days": 30}, "op": "gte",
                     "value": 1, "where": [{"field": "properties.category", "op": "is", "value": "shoes"}]},
    "Loyal readers": {"and": [
        {"field": "profile.loyalty_member", "op": "is", "value": True},
        {"activity": "events", "event": "newsletter_opened", "window": {"last_days": 30}, "op": "gte", "value": 1},
    ]},
    "Recent buyers": {"activity": "orders", "window": {"last_days": 60}, "op": "gte", "value": 1},
    "Two orders": {"field": "summary.order_count", "op": "gte", "value": 2},
    "Earners": {"activity": "points", "where": [{"field": "entry", "op": "is", "value": "earn"}],
                "window": {"calendar": "this_year"}, "measure": {"fn": "sum", "field": "points"}, "op": "gt",
                "value": 10},
}  # fmt: skip


@pytest.fixture
def api(store: sa.Engine, clock: FrozenClock, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[
        TestClient]:  # fmt: skip
    monkeypatch.setattr(live, "READ_AHEAD_MIN_CUSTOMERS", 2)  # small writes read ahead too
    monkeypatch.setattr(db, "_memory_bytes", lambda: 0)  # and a small SQLite file is larger than memory
    app = create_app(settings.model_copy(update={"scheduler": False, "read_ahead_threads": 3}), clock=clock,
                     engine=store)  # fmt: skip
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        client.put("/api/v1/event-definitions/product_viewed", json={"properties": {"category": "string"}})
        client.put("/api/v1/event-definitions/newsletter_opened", json={"properties": {}})
        client.post("/api/v1/customers/bulk", json={"items": [
            {"source_id": who, "loyalty_member": i % 2 == 0} for i, who in enumerate(CUSTOMERS)
        ]}).raise_for_status()  # fmt: skip
        yield client


def events(clock: FrozenClock, prefix: str, who: list[str]) -> list[dict[str, Any]]:
    at = (clock.now() - timedelta(days=1)).isoformat()
    return [
        {"id": f"{prefix}-{i}", "customer": c, "name": "newsletter_opened" if i % 3 == 2 else "product_viewed",
         "timestamp": at, "properties": {"category": "shoes" if i % 4 == 1 else "books"}}
        for i, c in enumerate(who)
    ]  # fmt: skip


def orders(clock: FrozenClock, prefix: str, who: list[str]) -> list[dict[str, Any]]:
    at = (clock.now() - timedelta(days=2)).isoformat()
    return [{"id": f"{prefix}-{i}", "customer": c, "total": "20", "created_at": at} for i, c in enumerate(who)]


def points(clock: FrozenClock, prefix: str, who: list[str]) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}-{i}", "customer": c, "type": "points", "program": "club", "entry": "earn",
             "points": 7} for i, c in enumerate(who)]  # fmt: skip


WRITES: dict[str, tuple[str, Callable[[FrozenClock, str, list[str]], list[dict[str, Any]]]]] = {
    "events": ("/api/v1/events/bulk", events),
    "orders": ("/api/v1/orders/bulk", orders),
    "loyalty": ("/api/v1/loyalty/transactions/bulk", points),
}


def test_bulk_writes_read_ahead_and_keep_their_answers(api: TestClient, clock: FrozenClock,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """Every bulk write runs its read-ahead (one part per thread and then some), and membership comes out as the
    rules say, the same as when the write reads everything itself."""
    ids = {name: create(api, name=name, rule=rule)["id"] for name, rule in RULES.items()}
    run(api)
    reader: ReadAhead = api.app.state.read_ahead  # type: ignore[attr-defined]
    ran: list[int] = []
    original = reader.start
    monkeypatch.setattr(reader, "start", lambda tasks: (ran.append(len(tasks)), original(tasks))[1])
    for kind, (path, make) in WRITES.items():
        for round_ in range(2):  # twice: the second round makes members of the first's customers
            api.post(path, json={"items": make(clock, f"{kind}{round_}", CUSTOMERS)}).raise_for_status()
    reader.wait()
    assert ran == [2 * reader.threads] * 6
    assert "read-ahead failed" not in caplog.text  # every read ran on this engine
    expected = {
        "Viewers": [c for i, c in enumerate(CUSTOMERS) if i % 3 != 2],
        "Shoe viewers": [c for i, c in enumerate(CUSTOMERS) if i % 4 == 1 and i % 3 != 2],
        "Loyal readers": [c for i, c in enumerate(CUSTOMERS) if i % 3 == 2 and i % 2 == 0],
        "Recent buyers": CUSTOMERS,
        "Two orders": CUSTOMERS,
        "Earners": CUSTOMERS,
    }
    assert {name: members(api, segment_id) for name, segment_id in ids.items()} == {
        name: sorted(who) for name, who in expected.items()
    }


def test_a_failing_read_ahead_leaves_the_write_whole(api: TestClient, clock: FrozenClock,
                                                     caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """The reads are advisory: when they fail (here: their connections cannot open) the write is logged about and
    goes on, reading everything itself."""
    viewers = create(api, name="Viewers", rule=RULES["Viewers"])["id"]
    run(api)
    reader: ReadAhead = api.app.state.read_ahead  # type: ignore[attr-defined]
    reader._engine.dispose()

    def unopenable() -> Any:
        raise sqlite3.OperationalError("unable to open database file")

    reader._engine = sa.create_engine("sqlite://", creator=unopenable)
    for round_ in range(2):
        api.post("/api/v1/events/bulk", json={"items": events(clock, f"e{round_}", CUSTOMERS)}).raise_for_status()
    reader.wait()
    assert "read-ahead failed" in caplog.text
    assert members(api, viewers) == sorted(c for i, c in enumerate(CUSTOMERS) if i % 3 != 2)


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_a_sqlite_database_that_fits_in_memory_is_not_read_ahead(store: sa.Engine,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    reader = ReadAhead(store, 2)
    ran: list[str] = []
    try:
        assert reader.worthwhile() is False  # a test database is far smaller than a quarter of this machine's memory
        assert reader.start([lambda _session: ran.append("read")]) is False
        monkeypatch.setattr(db, "_memory_bytes", lambda: 0)
        assert reader.worthwhile() is False  # the size is looked at once a minute
        monkeypatch.setattr(reader, "_size_checked", -math.inf)
        assert reader.worthwhile() is True
        assert reader.start([lambda _session: ran.append("read")]) is True
        reader.wait()
        assert ran == ["read"]
    finally:
        reader.close()


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_reads_are_dropped_while_too_many_are_pending(store: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes arriving faster than their rows can be read ahead: the reads of the later ones would come too late."""
    monkeypatch.setattr(db, "_memory_bytes", lambda: 0)
    reader = ReadAhead(store, 2, max_pending=3)
    release = threading.Event()
    try:
        assert reader.start([lambda _session: release.wait()] * 3) is True
        assert reader.start([lambda _session: None]) is False
        release.set()
        reader.wait()
        assert reader.start([lambda _session: None] * 3) is True
    finally:
        release.set()
        reader.close()


_SEARCH = re.compile(r"^(?:SEARCH|SCAN) (\w+)(?: USING (?:COVERING )?(INDEX \w+|INTEGER PRIMARY KEY|PRIMARY KEY))?")
#: The tables read by customer, whose pages a write to customers nobody has read lately finds on disk.
BY_CUSTOMER = {"customers", "events", "event_property_values", "orders", "order_items", "loyalty_transactions",
               "customer_summaries", "customer_program_summaries", "customer_attribute_values", "segment_members",
               "segment_wakeups"}  # fmt: skip


def _btrees(path: str, statements: list[str]) -> set[tuple[str, str]]:
    """The (table, index) pairs SQLite searches to run these statements (selects, updates and deletes) over the
    tables read by customer."""
    found: set[tuple[str, str]] = set()
    with sqlite3.connect(path) as connection:
        for sql in statements:
            if not re.match(r"\s*(SELECT|UPDATE|DELETE|WITH)\b", sql, re.IGNORECASE):
                continue
            for *_ids, detail in connection.execute(f"EXPLAIN QUERY PLAN {sql}"):
                match = _SEARCH.match(detail)
                if match and match[1] in BY_CUSTOMER:
                    found.add((match[1], match[2] or "table"))
    return found


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
@pytest.mark.parametrize("kind", list(WRITES))
def test_the_read_ahead_searches_every_b_tree_the_write_searches(
    api: TestClient, clock: FrozenClock, store: sa.Engine, kind: str
) -> None:
    """Of the tables read by customer, every index (or table) the write's transaction searches, the read-ahead
    searched first: the pages the write reads from them are then in memory."""
    for name, rule in RULES.items():
        create(api, name=name, rule=rule)
    run(api)
    path, make = WRITES[kind]
    # Rows to find in windows; the customers after the first half are new to every segment when traced.
    api.post(path, json={"items": make(clock, "before", CUSTOMERS[:6])}).raise_for_status()
    reader: ReadAhead = api.app.state.read_ahead  # type: ignore[attr-defined]
    traced: dict[str, list[str]] = {"write": [], "ahead": []}

    def trace(into: list[str]) -> Callable[..., None]:
        def checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            dbapi_connection.set_trace_callback(into.append)

        return checkout

    listeners = [(store, trace(traced["write"])), (reader._engine, trace(traced["ahead"]))]
    for engine, listener in listeners:
        event.listen(engine, "checkout", listener)
    try:
        api.post(path, json={"items": make(clock, "traced", CUSTOMERS)}).raise_for_status()
        reader.wait()
    finally:
        for engine, listener in listeners:
            event.remove(engine, "checkout", listener)
    database = store.url.database
    assert database
    written, ahead = _btrees(database, traced["write"]), _btrees(database, traced["ahead"])
    assert "segment_members" in {table for table, _ in written}  # the trace saw the write's reads
    assert written <= ahead, f"searched by the write only: {sorted(written - ahead)}"
