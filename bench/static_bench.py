"""A static segment of every customer, over HTTP: made from a CSV upload and from a JSON list of ids, then changed by
explicit add and remove, paged, and refused as a twin of an equal list.

Issue 4: "No size limit of ours (Voucherify stops at 20,000): test one with 1,000,000 members."

Usage: python -m bench.static_bench [--customers 100000]
   or: CUSTOMERS=1000000 bash bench/run.sh static
Copies the cached demo database (built by ``bench.rules_bench`` into ``$COHORTA_BENCH_CACHE``, default
/tmp/cohorta-bench), serves it with ``cohorta serve`` (scheduler off) on a loopback port and sends one request per
step with the admin token; each step's time is send to last byte of the answer. A list of more than 20,000 customers
enters membership by a background job; with the scheduler off, this process runs that job after the request that
queued it (``bench.common.run_queued``), timed as a step of its own. The server's peak RSS is read from /proc at the
end.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.common import copy_database, print_table, run_queued, server

API = "/api/v1"


def _timed(send: Any) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = send()
    response.read()
    return (time.perf_counter() - started) * 1000, response


def _server_peak_rss_mb() -> float | None:
    """The peak RSS of the newest ``cohorta serve`` process (VmHWM), in MB."""
    best: tuple[float, float] | None = None
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            cmdline = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ")
            if b"cohorta.cli serve" not in cmdline:
                continue
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            started = status.parent.stat().st_mtime
            peak = int(fields["VmHWM"].split()[0]) / 1024
        except (OSError, KeyError, ValueError):
            continue
        if best is None or started > best[0]:
            best = (started, peak)
    return None if best is None else best[1]


def run(demo_db: Path) -> tuple[int, list[list[str]], float | None]:
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="cohorta-static-") as name:
        url, customers = copy_database(demo_db, Path(name), "static.db")
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            ids = [r[0] for r in connection.execute(sa.text("SELECT source_id FROM customers ORDER BY id"))]
        engine.dispose()
        csv = ("source_id\n" + "\n".join(ids) + "\n").encode()
        os.environ["COHORTA_SCHEDULER"] = "false"
        with server(url) as client:
            client.timeout = httpx.Timeout(600)

            def step(label: str, send: Any, describe: Any) -> dict[str, Any]:
                ms, response = _timed(send)
                if response.status_code >= 400 and not label.startswith("twin"):
                    raise RuntimeError(f"{label}: {response.status_code} {response.text[:300]}")
                body = response.json() if response.content else {}
                rows.append([label, f"{response.status_code}", describe(body), f"{ms:,.0f}"])
                return dict(body)

            uploaded = step(
                "CSV upload, every customer (POST /segments/upload)",
                lambda: client.post(f"{API}/segments/upload", data={"name": "Everyone (CSV)"},
                                    files={"file": ("all.csv", csv, "text/csv")}),
                lambda b: f"list of {b['members']:,} saved; {b['segment']['members']:,} members so far (entry "
                f"{b['segment']['refresh']['state']}); {b['unknown_count']} unknown; {len(csv) / 1e6:.1f} MB file",
            )  # fmt: skip
            segment_id = uploaded["segment"]["id"]

            def entry(label: str) -> None:
                """A long list's members enter in a background job (the scheduler is off here): run it, timed."""
                started = time.perf_counter()
                done = run_queued(url)
                ms = (time.perf_counter() - started) * 1000
                rows.append([label, "-", f"{len(done)} job(s) run", f"{ms:,.0f}"])

            entry("its members enter (the background job, in this process)")
            step(
                "twin: the same list as JSON (POST /segments, static) is refused",
                lambda: client.post(f"{API}/segments", json={"name": "Everyone (JSON)", "type": "static",
                                                             "customers": ids}),
                lambda b: b.get("detail", "")[:60],
            )  # fmt: skip
            step(
                "remove 10 members (POST .../members/remove)",
                lambda: client.post(f"{API}/segments/{segment_id}/members/remove", json={"customers": ids[:10]}),
                lambda b: f"removed {b['removed']}, now {b['members']:,}",
            )
            step(
                "add them back (POST .../members/add)",
                lambda: client.post(f"{API}/segments/{segment_id}/members/add", json={"customers": ids[:10]}),
                lambda b: f"added {b['added']}, now {b['members']:,}",
            )
            step(
                "a JSON list of all but one (POST /segments, static)",
                lambda: client.post(f"{API}/segments", json={"name": "All but one", "type": "static",
                                                             "customers": ids[1:]}),
                lambda b: f"{b['members']:,} members so far (entry {b['refresh']['state']})",
            )  # fmt: skip
            entry("its members enter (the background job, in this process)")
            step(
                "a members page half-way down (GET .../members?offset=N/2)",
                lambda: client.get(
                    f"{API}/segments/{segment_id}/members", params={"offset": customers // 2, "limit": 50}
                ),
                lambda b: f"{len(b['items'])} of {b['total']:,}",
            )
            step(
                "the segment (GET /segments/{id})",
                lambda: client.get(f"{API}/segments/{segment_id}"),
                lambda b: f"{b['members']:,} members",
            )
            peak = _server_peak_rss_mb()
    return customers, rows, peak


def main() -> None:
    from bench.rules_bench import demo_database

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000, help="Demo size (the issue's: 1000000)")
    args = parser.parse_args()
    path, _ = demo_database(args.customers)
    started = time.perf_counter()
    customers, rows, peak = run(path)
    print_table(
        f"A static segment of every customer: {customers:,} customers (one request per step; "
        f"load average {os.getloadavg()[0]:.2f}; server peak RSS {peak or 0:,.0f} MB)",
        ["step", "status", "answer", "ms"], rows,
    )  # fmt: skip
    print(json.dumps({"customers": customers, "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
