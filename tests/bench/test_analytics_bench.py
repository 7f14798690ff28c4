"""The analytics benchmark runs end to end at a tiny size (real and synthetic segments, list and analytics over HTTP)
and produces its rows, without errors. No timing assertions."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import analytics_bench, common, rules_bench
from cohorta import db
from cohorta.demo.generator import load_demo

CUSTOMERS = 300
SEGMENTS = 20
RUNS = 2


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("analytics-bench") / "demo.db"
    engine = db.create_db_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    load_demo(engine, customers=CUSTOMERS, seed=rules_bench.SEED, now=rules_bench.NOW)
    engine.dispose()
    return path


def test_analytics_bench_produces_rows(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = common.copied(demo, tmp_path, "analytics.db")
    results = analytics_bench.run(copy, "sqlite", segments=SEGMENTS, list_runs=RUNS, analytics_runs=RUNS)
    assert results.engine == "sqlite"
    assert results.customers == CUSTOMERS
    assert len(results.real) == len(analytics_bench.REAL_SEGMENTS)
    assert results.synthetic == SEGMENTS - len(results.real) and results.segments_total == SEGMENTS
    assert sum(results.statuses.values()) == SEGMENTS
    assert all(0 <= r.members <= CUSTOMERS for r in results.real)
    assert {"copy", "real segments created", "real segments computed", "synthetic segments inserted"} <= set(
        results.seconds
    )
    groups = [c.group for c in results.cases]
    assert groups.count("floor") == 1
    assert groups.count("list") == 6
    assert groups.count("analytics") == 5
    for case in results.cases:
        assert case.errors == [], (case.name, case.errors)
        expected = 1 if case.name.startswith("combine") else RUNS
        assert len(case.latencies_ms) == expected, case.name
        assert all(ms > 0 for ms in case.latencies_ms)
        assert case.answer
    no_filter = next(c for c in results.cases if c.name.startswith("no filter"))
    assert no_filter.answer == f"{SEGMENTS} of {SEGMENTS}"  # page size 50: every segment on one page
    rows = analytics_bench.case_rows(results.cases)
    assert len(rows) == len(results.cases) and all(len(row) == 10 for row in rows)
    assert all(row[-1] in ("yes", "NO", "-") for row in rows)
    analytics_bench.report(results, None)
    out = capsys.readouterr().out
    assert "Segment list over HTTP" in out and "Analytics over HTTP" in out and "Load average" in out
