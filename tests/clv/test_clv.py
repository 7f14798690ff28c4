"""Predicted CLV in the store: scoring with a stored model, segment statistics and the list, analytics, the customer
view, fitting over the API (admin), the scheduler's periodic scoring. SQLite and PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from cohorta.clock import FrozenClock
from cohorta.clv import model, service
from cohorta.clv.models import ClvModel
from cohorta.config import Settings
from cohorta.demo.generator import load_demo
from tests.clv.test_model import direct_expected_purchases
from tests.support import admin_api, run_jobs

BGNBD = {"r": 1.0, "alpha": 1.0, "a": 2.0, "b": 3.0}
GAMMA_GAMMA = {"p": 6.0, "q": 4.0, "v": 15.0}
WEEK = timedelta(weeks=1)


def store_model(store: sa.Engine, at: datetime) -> int:
    with Session(store) as session:
        row = ClvModel(
            fitted_at=at, calibration_end=at, engine="scipy", method="maximum-likelihood", library="test",
            time_unit="week", currency="EUR", params={"bgnbd": BGNBD, "gamma_gamma": GAMMA_GAMMA}, data={},
            fit_duration_ms=0,
        )  # fmt: skip
        session.add(row)
        session.commit()
        return row.id


def order(api: TestClient, order_id: str, customer: str, total: str, at: datetime) -> None:
    body = {"id": order_id, "customer": customer, "total": total, "created_at": at.isoformat(), "status": "paid"}
    assert api.post("/api/v1/orders", json=body).status_code == 201


@pytest.fixture
def api(store: sa.Engine, clock: FrozenClock) -> Iterator[TestClient]:
    """Poles a (one order of 100, a week ago), b (orders of 30 and 50, three weeks and a week ago), c (no order);
    German d (one order of 400, a week ago). The horizon is one week (7 days)."""
    now = clock.now()
    with admin_api(store, clock, clv_horizon_days=7) as client:
        for source_id, country in (("a", "PL"), ("b", "PL"), ("c", "PL"), ("d", "DE")):
            client.put(f"/api/v1/customers/{source_id}", json={"country": country})
        order(client, "o1", "a", "100", now - WEEK)
        order(client, "o2", "b", "30", now - 3 * WEEK)
        order(client, "o3", "b", "50", now - WEEK)
        order(client, "o4", "d", "400", now - WEEK)
        yield client


def eur(minor: int) -> str:
    return str(Decimal(minor).scaleb(-2))


def half_up(value: float) -> int:
    return int(Decimal(repr(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def expected_minor() -> dict[str, int]:
    """By hand from the formulas. a and d: x = 0, T = 1 week, t = 1 week: E[purchases] = 4 (1 - (2/3) 2F1(1, 3; 4;
    1/3)), 2F1 summed in closed form; spend p (v + 1 m) / (p + q - 1). b: x = 1, t_x = 2, T = 3 (the printed
    formula); spend over its 2 orders averaging 40."""
    z = 1 / 3
    one_purchase = 4 * (1 - (2 / 3) * 3 * z**-3 * (-math.log(1 - z) - z - z**2 / 2))

    def spend(n: int, mean: float) -> float:
        return 6 * (15 + n * mean) / (6 * n + 4 - 1)

    b_purchases = float(direct_expected_purchases(model.BgNbd(**BGNBD), 1.0, np.array([1.0]), np.array([2.0]),
                                                  np.array([3.0]))[0])  # fmt: skip
    return {
        "a": half_up(one_purchase * spend(1, 100) * 100),
        "b": half_up(b_purchases * spend(2, 40) * 100),
        "c": 0,
        "d": half_up(one_purchase * spend(1, 400) * 100),
    }


def stored_clv(store: sa.Engine) -> dict[str, tuple[int, float | None]]:
    with store.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT c.source_id, v.predicted_minor, v.expected_purchases FROM customer_clv v "
                "JOIN customers c ON c.id = v.customer_id"
            )
        ).all()
    return {source_id: (int(minor), expected) for source_id, minor, expected in rows}


def segment(api: TestClient, name: str, text: str) -> str:
    created = api.post("/api/v1/segments", json={"name": name, "text": text})
    assert created.status_code == 201, created.text
    run_jobs(api)
    return str(created.json()["id"])


def test_scoring_matches_the_formulas(api: TestClient, store: sa.Engine, clock: FrozenClock) -> None:
    assert api.post("/api/v1/clv/score").status_code == 409  # no model yet
    store_model(store, clock.now())
    scored = api.post("/api/v1/clv/score")
    assert scored.status_code == 200, scored.text
    assert (scored.json()["scored_customers"], scored.json()["horizon_days"]) == (4, 7)
    want = expected_minor()
    stored = stored_clv(store)
    assert {k: v[0] for k, v in stored.items()} == want
    assert want["a"] == 3216  # 0.41954 purchases x 76.67 per purchase = 32.16 EUR
    assert stored["c"][1] is None and stored["a"][1] == pytest.approx(0.41954, abs=1e-5)  # no order: not modelled
    customer = api.get("/api/v1/customers/b").json()
    assert customer["summary"]["predicted_clv"] == eur(want["b"])
    assert api.get("/api/v1/customers/c").json()["summary"]["predicted_clv"] == "0.00"


def test_segment_statistics_list_and_analytics(api: TestClient, store: sa.Engine, clock: FrozenClock) -> None:
    poles = segment(api, "Poles", 'profile.country in ("PL")')
    germans = segment(api, "Germans", 'profile.country in ("DE")')
    assert api.get(f"/api/v1/segments/{poles}").json()["statistics"]["avg_clv"] is None
    before = api.get(f"/api/v1/segments/{poles}/analytics").json()
    assert before["clv"]["predicted"] is None
    store_model(store, clock.now())
    assert api.post("/api/v1/clv/score").status_code == 200  # scores, then recounts the statistics
    want = expected_minor()
    poles_avg = (want["a"] + want["b"] + want["c"]) / 3

    def avg_clv(segment_id: str) -> str:
        return str(api.get(f"/api/v1/segments/{segment_id}").json()["statistics"]["avg_clv"])

    assert avg_clv(poles) == eur(half_up(poles_avg))
    assert avg_clv(germans) == eur(want["d"])
    names = [s["name"] for s in api.get("/api/v1/segments", params={"sort": "-avg_clv"}).json()["items"]]
    assert names == ["Germans", "Poles"]
    threshold = eur(half_up(poles_avg + 100))
    filtered = api.get("/api/v1/segments", params={"avg_clv_min": threshold}).json()["items"]
    assert [s["name"] for s in filtered] == ["Germans"]

    report = api.get(f"/api/v1/segments/{poles}/analytics").json()["clv"]["predicted"]
    everyone = half_up(sum(want.values()) / 4)
    assert report["segment"] == avg_clv(poles)
    assert report["all_customers"] == eur(everyone)
    assert report["horizon_days"] == 7 and report["engine"] == "scipy"
    assert report["model_fitted_at"].startswith("2026-03-14T12:00")
    assert "BG/NBD" in report["method"]

    # A customer entering live brings their predicted CLV (none yet: 0 until the next scoring); one leaving takes it.
    api.put("/api/v1/customers/e", json={"country": "PL"})
    assert avg_clv(poles) == eur(half_up((want["a"] + want["b"]) / 4))
    api.put("/api/v1/customers/b", json={"country": "FR"})
    assert avg_clv(poles) == eur(half_up(want["a"] / 3))


def test_periodic_scoring(api: TestClient, store: sa.Engine, clock: FrozenClock) -> None:
    state = api.app.state  # type: ignore[attr-defined]
    factory, settings = state.session_factory, state.settings
    assert not service.score_if_due(factory, clock, settings)  # no model
    store_model(store, clock.now())
    assert service.score_if_due(factory, clock, settings)  # never scored
    first = stored_clv(store)["a"][0]
    clock.advance(timedelta(hours=23))
    assert not service.score_if_due(factory, clock, settings)  # scored less than a period ago
    clock.advance(timedelta(hours=2))
    assert service.score_if_due(factory, clock, settings)
    assert stored_clv(store)["a"][0] < first  # a day more without buying: a little less expected
    with Session(store) as session:
        scored_at = session.scalars(sa.select(ClvModel.scored_at)).one()
    assert scored_at == clock.now()


def test_fit_over_the_api_on_demo_data(store: sa.Engine, clock: FrozenClock) -> None:
    load_demo(store, customers=300, seed=5, now=clock.now() - timedelta(days=1))
    with admin_api(store, clock) as api:
        assert api.get("/api/v1/clv/model").status_code == 404
        response = api.post("/api/v1/clv/fit", json={})
        assert response.status_code == 201, response.text
        body = response.json()
        with store.connect() as connection:
            buyers = connection.execute(sa.text("SELECT COUNT(*) FROM customer_summaries WHERE order_count > 0"))
            scored = connection.execute(sa.text("SELECT COUNT(*), SUM(predicted_minor) FROM customer_clv")).one()
            buyers_count = buyers.scalar_one()
        assert body["data"]["customers"] == 300 and body["data"]["buyers"] == buyers_count
        assert body["engine"] == "scipy" and body["method"] == "maximum-likelihood" and body["time_unit"] == "week"
        assert set(body["params"]["bgnbd"]) == {"r", "alpha", "a", "b"}
        assert set(body["params"]["gamma_gamma"]) == {"p", "q", "v"}
        assert all(v > 0 for part in body["params"].values() for v in part.values())
        assert body["scored_customers"] == 300 and scored[0] == 300 and scored[1] > 0
        assert api.get("/api/v1/clv/model").json()["id"] == body["id"]
        audit = api.get("/api/v1/audit", params={"action": "clv.fit"})
        assert audit.status_code == 200 and "clv.fit" in audit.text


def test_fit_refusals(store: sa.Engine, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> None:
    with admin_api(store, clock) as api:
        api.put("/api/v1/customers/a", json={"country": "PL"})
        too_little = api.post("/api/v1/clv/fit", json={})
        assert too_little.status_code == 409
        assert "cannot be fitted" in too_little.json()["detail"]
        monkeypatch.setattr(model, "pymc_marketing_version", lambda: None)
        missing = api.post("/api/v1/clv/fit", json={"engine": "pymc-marketing"})
        assert missing.status_code == 503
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert "cohorta[clv]" in missing.json()["detail"]
        assert api.post("/api/v1/clv/fit", json={"engine": "sas"}).status_code == 422


def test_customers_without_orders_score_zero(store: sa.Engine, clock: FrozenClock) -> None:
    settings = Settings(database_url="sqlite://", clv_horizon_days=365)
    with admin_api(store, clock) as api:
        api.put("/api/v1/customers/new", json={"country": "PL"})
    store_model(store, clock.now())
    from cohorta.db import make_session_factory

    row = service.score_all(make_session_factory(store), clock, settings)
    assert row is not None and row.scored_customers == 1
    assert stored_clv(store) == {"new": (0, None)}
