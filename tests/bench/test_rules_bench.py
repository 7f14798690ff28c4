"""The rule benchmarks' own correctness: every benchmark rule (and its variants) is valid on the demo data, and each
hand-written Polars query returns exactly the ids the store's SQLite evaluation returns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.rules_set import RULES, variants
from sqlalchemy.orm import Session

from bench import rules_bench
from cohorta import db, rules
from cohorta.demo.generator import load_demo
from cohorta.evaluation import store
from cohorta.evaluation.catalog import build_catalog

CUSTOMERS = 2_000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules-bench") / "demo.db"
    engine = db.create_db_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    load_demo(engine, customers=CUSTOMERS, seed=rules_bench.SEED, now=rules_bench.NOW)
    engine.dispose()
    return path


def test_every_rule_has_a_polars_query_and_1000_distinct_variants() -> None:
    assert len(RULES) >= 20
    assert set(rules_bench.POLARS_QUERIES) == {r.name for r in RULES}
    specs = variants(1000)
    assert len({json.dumps(r, sort_keys=True) for _, r in specs}) == 1000


def test_variants_are_valid(demo: Path) -> None:
    with Session(db.create_db_engine(f"sqlite:///{demo}")) as session:
        catalog = build_catalog(session)
    for _, rule in variants(1000):
        rules.validate(rule, catalog, 2)


def test_polars_queries_match_sqlite(demo: Path) -> None:
    frames = {name: df.lazy() for name, df in rules_bench.load_frames(demo).items()}
    with Session(db.create_db_engine(f"sqlite:///{demo}")) as session:
        catalog = build_catalog(session)
        ctx = rules.Context(as_of=rules_bench.NOW, timezone="UTC", currency_exponent=2, catalog=catalog)
        for r in RULES:
            expected = store.matching_ids(session, rules.validate(r.rule, catalog, 2), ctx)
            got = set(rules_bench.POLARS_QUERIES[r.name](frames).collect()["customer_id"].to_list())
            assert got == expected, r.name


def test_polars_variants_match_sqlite(demo: Path) -> None:
    """The parametrised queries (k = 0 .. 7: the 200 rules of the live-membership benchmark) give the store's ids."""
    frames = {name: df.lazy() for name, df in rules_bench.load_frames(demo).items()}
    with Session(db.create_db_engine(f"sqlite:///{demo}")) as session:
        catalog = build_catalog(session)
        ctx = rules.Context(as_of=rules_bench.NOW, timezone="UTC", currency_exponent=2, catalog=catalog)
        for number, (name, rule) in enumerate(variants(200)):
            expected = store.matching_ids(session, rules.validate(rule, catalog, 2), ctx)
            query = rules_bench.POLARS_VARIANTS[name](frames, number // len(RULES))
            got = set(query.collect()["customer_id"].to_list())
            assert got == expected, (name, number // len(RULES), len(got), len(expected))
