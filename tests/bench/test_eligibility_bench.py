"""The eligibility benchmark runs end to end at a tiny size (in process and over HTTP) and produces its rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import eligibility_bench
from cohorta import db
from cohorta.demo.generator import load_demo

CUSTOMERS = 300
REQUESTS = 20
CONCURRENCY = 2


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eligibility-bench") / "demo.db"
    engine = db.create_db_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    load_demo(engine, customers=CUSTOMERS, seed=7)
    engine.dispose()
    return path


def test_eligibility_bench_produces_rows(demo: Path) -> None:
    results = eligibility_bench.run(demo, requests=REQUESTS, concurrency=CONCURRENCY, duration=0.5)
    assert len(results.setup.campaigns) == 2
    assert sum(results.answers.values()) == REQUESTS
    assert set(results.in_process) == {
        "service.eligibility, fresh Session",
        "TestClient GET, admin token",
        "TestClient GET, viewer API token",
    }
    assert all(len(ms) == REQUESTS for ms in results.in_process.values())
    assert [load.label for load in results.http] == ["admin token", "viewer API token"]
    for load in results.http:
        assert load.workers == 1
        assert load.requests > 0 and len(load.latencies_ms) == load.requests
        assert load.errors == 0, (load.statuses, load.failures)
        assert load.client_cpu_s > 0 and load.server_cpu_s is not None and load.server_cpu_s > 0
    rows = list(eligibility_bench.iter_rows(results, CONCURRENCY))
    assert len(rows) == 5
    assert all(len(row) == 7 for row in rows[:3]) and all(len(row) == 14 for row in rows[3:])
