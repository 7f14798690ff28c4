"""Predicted CLV: fitting (``clv.service.fit``, built-in maximum likelihood) and scoring every customer
(``clv.service.score_all``: keyset batches of summaries read, numpy predictions, upserts into ``customer_clv``,
then the segment statistics recount).

Target (the task): scoring 1,000,000 customers well under a minute.

Usage: python -m bench.clv_bench [--customers 100000] [--engines sqlite,postgresql] [--source demo|synthetic]
       [--runs 3]
   or: bash bench/run.sh clv   (CUSTOMERS, ENGINES, SOURCE, RUNS)
   The target's size: python -m bench.clv_bench --customers 1000000 --source synthetic

Sources:
- ``demo`` (SQLite only; PostgreSQL rows fall back to synthetic): a copy of the cached demo database that
  ``bench.rules_bench`` builds into ``$COHORTA_BENCH_CACHE`` (default /tmp/cohorta-bench).
- ``synthetic``: customers and their summaries only (scoring reads nothing else), written straight into a fresh
  database: 70% buyers, 1 + Poisson(4) orders of about 60 each, first order in the last three years. Quick to build
  at 1,000,000.

Each engine: one fit (timed; it also scores everyone once), then ``--runs`` timed re-scorings (median, min, max) and
the numpy computation alone on the same customers held in memory (no database), the floor of a scoring.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from bench.common import console, copy_database, database, print_table
from cohorta import db
from cohorta.clock import FrozenClock
from cohorta.clv import service
from cohorta.config import Settings

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SEED = 7


def synthetic(url: str, customers: int) -> None:
    """Customers and summaries only, in batches of 100,000."""
    from cohorta.customers.models import Customer, CustomerSummary
    from cohorta.db import insert_rows, table_of

    engine = db.create_db_engine(url)
    db.upgrade(engine)
    rng = np.random.default_rng(SEED)
    now_s = NOW.timestamp()
    step = 100_000
    with engine.begin() as connection:
        for start in range(0, customers, step):
            n = min(step, customers - start)
            ids = np.arange(start + 1, start + n + 1)
            buyer = rng.random(n) < 0.7
            orders = np.where(buyer, 1 + rng.poisson(4, n), 0)
            first = now_s - rng.random(n) * 3 * 365 * 86_400
            last = first + rng.random(n) * (now_s - first) * (orders > 1)
            totals = np.where(buyer, np.rint(orders * rng.gamma(4, 1500, n)), 0).astype(np.int64)
            insert_rows(connection, table_of(Customer), [
                {"id": int(i), "source_id": f"c{i}", "created_at": NOW, "updated_at": NOW, "loyalty_member": False}
                for i in ids.tolist()
            ])  # fmt: skip
            rows = []
            for i, o, t, f, la in zip(ids.tolist(), orders.tolist(), totals.tolist(), first.tolist(), last.tolist(),
                                      strict=True):  # fmt: skip
                rows.append({
                    "customer_id": i, "order_count": o, "total_spent_minor": t,
                    "first_order_at": datetime.fromtimestamp(f, UTC) if o else None,
                    "last_order_at": datetime.fromtimestamp(la, UTC) if o else None,
                    "points_balance": 0, "redemption_count": 0, "referral_count": 0, "gift_card_balance_minor": 0,
                })  # fmt: skip
            insert_rows(connection, table_of(CustomerSummary), rows)
    engine.dispose()


def measure(url: str, runs: int) -> dict[str, float]:
    engine = db.create_db_engine(url)
    settings = Settings(database_url=url)
    factory = db.make_session_factory(engine)
    clock = FrozenClock(NOW + timedelta(days=1))
    started = time.perf_counter()
    fitted = service.fit(factory, clock, settings, "bench")
    fit_total = time.perf_counter() - started
    fit_only = fitted.fit_duration_ms / 1000
    times = []
    for _ in range(runs):
        clock.advance(timedelta(days=1))
        started = time.perf_counter()
        service.score_all(factory, clock, settings)
        times.append(time.perf_counter() - started)
    with factory() as session:
        batches = service.Batch.concat(list(service._batches(session.connection(), settings.clv_batch_size)))
        scored = int(session.execute(sa.text("SELECT COUNT(*) FROM customer_clv")).scalar_one())
    started = time.perf_counter()
    service.score(fitted.params, settings.clv_horizon_days, batches, clock.now(), settings.currency_exponent)
    compute = time.perf_counter() - started
    engine.dispose()
    return {
        "customers": float(len(batches.ids)), "scored": float(scored), "fit": fit_only, "fit_total": fit_total,
        "median": statistics.median(times), "min": min(times), "max": max(times), "compute": compute,
        "buyers": float(fitted.data["buyers"]), "fitted": float(fitted.data["fitted_customers"]),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--source", choices=("demo", "synthetic"), default="demo")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for kind in args.engines.split(","):
        source = args.source if kind == "sqlite" else "synthetic"
        with database(kind) as url, tempfile.TemporaryDirectory(prefix="cohorta-clv-bench-") as folder:
            started = time.perf_counter()
            if source == "demo":
                from bench.rules_bench import demo_database

                cached, _ = demo_database(args.customers)
                url, _ = copy_database(cached, Path(folder), "clv.db")
            else:
                synthetic(url, args.customers)
            console.print(f"{kind}: {source} data of {args.customers:,} customers ready in "
                          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
            m = measure(url, args.runs)
        rate = m["customers"] / m["median"]
        rows.append([
            f"{kind} ({source})", f"{int(m['customers']):,}", f"{int(m['buyers']):,} / {int(m['fitted']):,}",
            f"{m['fit']:.2f}", f"{m['fit_total']:.2f}", f"{m['median']:.2f}", f"{m['min']:.2f}-{m['max']:.2f}",
            f"{rate:,.0f}", f"{m['compute']:.3f}",
        ])  # fmt: skip
        assert int(m["scored"]) == int(m["customers"]), "every customer has a predicted CLV"
    print_table(
        "Predicted CLV: fit and score (seconds)",
        ["store", "customers", "buyers/fitted", "fit s", "+score s", "score s", "min-max", "per s", "numpy s"],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    main()
