"""The live segment index reloads exactly when what it holds changes, with a frozen clock too (same timestamps)."""

from __future__ import annotations

import sqlalchemy as sa

from cohorta.clock import FrozenClock
from cohorta.config import Settings
from cohorta.membership.live import SegmentIndex
from tests.support import admin_api


def test_the_index_reloads_on_every_change_it_depends_on(store: sa.Engine, clock: FrozenClock,
                                                         settings: Settings) -> None:
    index = SegmentIndex()
    with admin_api(store, clock) as api:
        factory = api.app.state.session_factory  # type: ignore[attr-defined]

        def current() -> list[str]:
            with factory() as session:
                return [s.id for s in index.current(session, settings, clock.now())]

        a = api.post("/api/v1/segments", json={"name": "A", "text": 'country is "PL"'}).json()["id"]
        b = api.post("/api/v1/segments", json={"name": "B", "text": 'country is "DE"'}).json()["id"]
        assert sorted(current()) == sorted([a, b])
        with factory() as session:
            first = index.current(session, settings, clock.now())
            assert index.current(session, settings, clock.now()) is first  # nothing changed: no reload

        # the clock does not move: a swap of active segments within one instant is still seen
        assert api.post(f"/api/v1/segments/{a}/deactivate").status_code == 200
        assert current() == [b]
        assert api.post(f"/api/v1/segments/{a}/activate").status_code == 200
        assert api.post(f"/api/v1/segments/{b}/deactivate").status_code == 200
        assert current() == [a]

        # an edit that makes no new version (the expiry) within the same instant
        assert api.patch(f"/api/v1/segments/{a}", json={"expires_at": "2031-01-01T00:00:00Z"}).status_code == 200
        with factory() as session:
            (live,) = index.current(session, settings, clock.now())
        assert live.expires_at is not None and live.expires_at.year == 2031

        assert "occupation" not in index.types.attributes
        assert api.put("/api/v1/attributes/occupation", json={"type": "string"}).status_code == 200
        current()
        assert index.types.attributes["occupation"].value == "string"
        assert index.catalog.field("attributes.occupation") is not None

        assert api.put("/api/v1/event-definitions/app_opened", json={"properties": {}}).status_code == 200
        current()
        assert index.types.event_properties["app_opened"] == {}
        assert api.put("/api/v1/event-definitions/app_opened",
                       json={"properties": {"platform": "string"}}).status_code == 200
        current()
        assert index.types.event_properties["app_opened"] == {"platform": "string"}
