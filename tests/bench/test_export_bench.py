"""The export benchmark runs end to end at a tiny size (every format, and the orders export) and produces its rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import common, export_bench, rules_bench
from cohorta import db
from cohorta.demo.generator import load_demo

CUSTOMERS = 300


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export-bench") / "demo.db"
    engine = db.create_db_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    load_demo(engine, customers=CUSTOMERS, seed=rules_bench.SEED, now=rules_bench.NOW)
    engine.dispose()
    return path


def test_export_bench_produces_rows(demo: Path, tmp_path: Path) -> None:
    results = export_bench.run(common.copied(demo, tmp_path, "export.db"))
    assert results.engine == "sqlite"
    assert results.customers == results.members == CUSTOMERS
    assert set(results.seconds) == {"copy", "segment created", "membership computed"}
    assert [(r.label, r.fmt) for r in results.runs] == [
        ("members", "csv"),
        ("members", "jsonl"),
        ("members", "parquet"),
        ("orders", "csv"),
    ]
    for r in results.runs[:3]:
        assert r.rows == r.reported == CUSTOMERS
    orders = results.runs[3]
    assert orders.rows == orders.reported > 0
    start, end = results.window
    assert end == rules_bench.NOW.replace(tzinfo=None) and (end - start).days == 365
    for r in [*results.runs, results.startup]:
        assert r.seconds > 0
        assert 10 < r.peak_rss_mb < 10_000  # a Python process with the project imported, KiB read as such
    for r in results.runs:
        assert r.file_bytes > 0 and r.rate > 0
    table = export_bench.rows(results)
    assert len(table) == 4 and all(len(row) == 10 for row in table)
    assert all(row[-2] in ("yes", "NO") and row[-1] in ("yes", "NO") for row in table)


def test_export_bench_one_format_without_attributes_or_activity(demo: Path, tmp_path: Path) -> None:
    copy = common.copied(demo, tmp_path, "export.db")
    results = export_bench.run(copy, formats=("parquet",), attributes=(), activity=False)
    assert [(r.label, r.fmt, r.rows) for r in results.runs] == [("members", "parquet", CUSTOMERS)]
