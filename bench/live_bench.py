"""Live membership: the latency one write adds by re-evaluating its customer against active dynamic segments.

Usage: python -m bench.live_bench --customers 100000 [--segments 27] [--writes 200]

Copies the cached demo database (``bench.rules_bench`` builds it), creates the benchmark rules as active dynamic
segments (computed by recompute jobs; wake-up planning is left out here), then times single ``POST /orders`` and
``POST /events`` requests in process: with no segments, and with the segments active. The difference is the added
latency of live re-evaluation.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from bench.common import TOKEN, console, print_table
from bench.rules_set import RULES
from cohorta import db
from cohorta.app import create_app
from cohorta.clock import FrozenClock
from cohorta.config import Settings
from cohorta.membership.jobs import run_pending

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
CACHE = os.environ.get("COHORTA_BENCH_CACHE", "/tmp/cohorta-bench")


def time_writes(client: TestClient, writes: int, prefix: str, customers: int) -> tuple[list[float], list[float]]:
    order_ms, event_ms = [], []
    for n in range(writes):
        who = f"C{(n * 7919) % customers + 1:07d}"
        started = time.perf_counter()
        client.post(
            "/api/v1/orders",
            json={"id": f"{prefix}-o{n}", "customer": who, "total": "42.00", "created_at": NOW.isoformat()},
        ).raise_for_status()
        order_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        client.post(
            "/api/v1/events",
            json={
                "id": f"{prefix}-e{n}",
                "customer": who,
                "name": "product_viewed",
                "timestamp": NOW.isoformat(),
                "properties": {"category": "tea"},
            },
        ).raise_for_status()
        event_ms.append((time.perf_counter() - started) * 1000)
    return order_ms, event_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--segments", type=int, default=len(RULES))
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()
    source = f"{CACHE}/demo-{args.customers}.db"
    with tempfile.TemporaryDirectory(prefix="cohorta-live-") as folder:
        path = f"{folder}/live.db"
        shutil.copy(source, path)
        url = f"sqlite:///{path}"
        engine = db.create_db_engine(url)
        db.upgrade(engine)
        clock = FrozenClock(NOW)
        settings = Settings(database_url=url, admin_token=TOKEN, scheduler=False)
        app = create_app(settings, clock=clock, engine=engine)
        rows: list[list[str]] = []
        with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            time_writes(client, 20, "warm", args.customers)
            base_orders, base_events = time_writes(client, args.writes, "base", args.customers)
            started = time.perf_counter()
            for rule in RULES[: args.segments]:
                client.post("/api/v1/segments", json={"name": rule.name, "rule": rule.make(0)}).raise_for_status()
            run_pending(app.state.session_factory, clock, settings)
            recompute_s = time.perf_counter() - started
            clock.advance(timedelta(seconds=1))
            live_orders, live_events = time_writes(client, args.writes, "live", args.customers)
        for label, base, live in (
            ("POST /orders", base_orders, live_orders),
            ("POST /events", base_events, live_events),
        ):
            added = statistics.median(live) - statistics.median(base)
            rows.append(
                [
                    label,
                    f"{statistics.median(base):.1f}",
                    f"{statistics.median(live):.1f}",
                    f"{statistics.quantiles(live, n=10)[-1]:.1f}",
                    f"{added:.1f}",
                ]
            )
    console.print(
        f"Load average: {os.getloadavg()}; {args.segments} segments created and computed in {recompute_s:.1f} s"
    )
    print_table(
        f"Live re-evaluation, one write at a time ({args.customers:,} customers, {args.segments} active segments)",
        ["request", "median ms, no segments", "median ms, with segments", "p90 ms, with", "added ms"],
        rows,
    )


if __name__ == "__main__":
    main()
