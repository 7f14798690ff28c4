"""A write that arrives while a recompute of the same segment is running is neither lost nor overwritten."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.app import create_app
from cohorta.clock import FrozenClock
from cohorta.config import Settings
from cohorta.evaluation.idsets import IdSet
from cohorta.membership import service as membership
from tests.conftest import ADMIN_TOKEN
from tests.segments.test_segments_api import create, members, run


@pytest.fixture
def api(store: sa.Engine, clock: FrozenClock, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"scheduler": False}), clock=clock, engine=store)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        for index, country in enumerate(["PL", "DE", "PL"]):
            client.put(f"/api/v1/customers/c{index}", json={"country": country})
        yield client


def test_a_write_during_a_recompute_is_not_lost(
    api: TestClient, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock
) -> None:
    poles = create(api, name="Poles", text='profile.country in ("PL")')
    run(api)
    assert members(api, poles["id"]) == ["c0", "c2"]

    target_computed, write_started = threading.Event(), threading.Event()
    real_target_ids = membership.target_ids

    def slow_target_ids(*args: Any, **kwargs: Any) -> IdSet:
        ids = real_target_ids(*args, **kwargs)  # computed before c1 moves to Poland
        target_computed.set()
        write_started.wait(10)
        threading.Event().wait(0.5)  # let the write reach the segment's lock (PostgreSQL) or commit (SQLite)
        return ids

    monkeypatch.setattr(membership, "target_ids", slow_target_ids)
    api.post(f"/api/v1/segments/{poles['id']}/refresh")
    job = threading.Thread(target=run, args=(api,))
    job.start()
    assert target_computed.wait(30)
    write_started.set()
    response = api.put("/api/v1/customers/c1", json={"country": "PL"})  # c1 enters Poles (live)
    job.join(60)
    assert response.status_code == 200 and not job.is_alive()
    monkeypatch.undo()
    # On SQLite the recompute's stale snapshot cannot commit over the write: it fails and is retried later.
    clock.advance(timedelta(minutes=1))
    run(api)
    assert members(api, poles["id"]) == ["c0", "c1", "c2"]
    api.post(f"/api/v1/segments/{poles['id']}/refresh")
    run(api)
    refresh = api.get(f"/api/v1/segments/{poles['id']}").json()["refresh"]
    assert (refresh["state"], refresh["entered"], refresh["exited"]) == ("done", 0, 0)  # nothing was left to repair
