"""Demo data load time per engine: a fresh migrated database, then ``load_demo``.

Usage: python -m bench.demo_load [--customers 100000] [--engines sqlite,postgresql] [--seed 7]

Prints rows written, seconds per stage (data with the summaries and the month figures, indexes), total seconds, rows
per second, the process's peak RSS and the 1-minute load average before and after each load (the machine may be
shared).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from bench.common import console, database
from cohorta import db
from cohorta.demo.generator import DemoStats, load_demo

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


def run(kind: str, customers: int, seed: int) -> tuple[DemoStats, float, float]:
    with database(kind) as url:
        engine = db.create_db_engine(url)
        try:
            db.upgrade(engine)
            load_before = os.getloadavg()[0]
            last = [0.0]

            def progress(stage: str, done: int, total: int) -> None:
                if stage == "data" and time.monotonic() - last[0] > 10:
                    last[0] = time.monotonic()
                    console.log(f"{kind}: {done:,}/{total:,} customers, load average {os.getloadavg()[0]:.2f}")

            # With the analytics' month figures, as `cohorta demo load` writes them.
            stats = load_demo(engine, customers=customers, seed=seed, now=NOW, progress=progress, month_zone="UTC")
            return stats, load_before, os.getloadavg()[0]
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rows = []
    for kind in args.engines.split(","):
        stats, load_before, load_after = run(kind, args.customers, args.seed)
        # KiB on Linux; the SQLite writer runs in a child process, so the larger of this process and its children.
        peak_kib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        peak_mib = peak_kib / 1024
        t = stats.timings
        rows.append([
            kind, f"{stats.customers:,}", f"{stats.rows:,}", f"{t.get('data', 0):.1f}", f"{t.get('indexes', 0):.1f}",
            f"{stats.seconds:.1f}", f"{stats.rows / stats.seconds:,.0f}",
            f"{peak_mib:,.0f}", f"{load_before:.2f} / {load_after:.2f}",
        ])
        console.log(f"{kind}: {stats}")
    table = Table(title=f"Demo data load ({os.cpu_count()} CPUs)")
    for i, column in enumerate(["engine", "customers", "rows written", "data s", "indexes s",
                                "total s", "rows/s", "peak RSS MiB", "load avg before / after"]):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=max(console.width, 150)).print(table)

if __name__ == "__main__":
    main()
