"""Campaign eligibility: ``GET /api/v1/campaigns/{id}/eligibility/{source_id}``, in process and over HTTP.

Targets (the issue): median under 1 ms in process, and at least 1,000 requests per second over HTTP on loopback.

Usage: python -m bench.eligibility_bench [--customers 100000] [--requests 2000] [--concurrency 16] [--duration 10]
       [--workers-list 1,2] [--rebuild] [--no-http]

Copies the cached demo database (``bench.rules_bench`` builds it into ``$COHORTA_BENCH_CACHE``, default
/tmp/cohorta-bench), creates through the API (admin token) three active dynamic segments (by country, by total spent
with a customer group, by loyalty tier with a customer group), computes them with ``membership.jobs.run_pending``,
creates two active promotion campaigns (included and excluded segments, included groups) and an API token with the
viewer role. Then:

a. In process, for ``--requests`` random (campaign, customer) pairs: ``campaigns.service.eligibility`` with a fresh
   Session per call (as a request has), and the same request through FastAPI's TestClient (auth, routing, response
   model; the TestClient's own transport is included too), with the admin token and with the viewer API token.
b. Over HTTP: ``cohorta serve`` (scheduler on, as deployed; once per ``--workers-list`` entry, with
   ``--workers N`` for N > 1, when ``cohorta serve`` has that option) on a loopback port, driven for ``--duration``
   seconds by ``--concurrency`` keep-alive connections from ``bench.common.hammer`` (a light asyncio-streams load
   generator) in this process, once with the admin token (no DB lookup) and once with the viewer API token (looked
   up by its hash).

The load generator runs on the same machine as the server and competes with it for the CPUs; the HTTP table shows
the CPU time each side spent per request, so the server's own cost can be read apart from the generator's.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

from bench.common import ROOT, TOKEN, console, hammer, server
from cohorta import db
from cohorta.access.service import system_principal
from cohorta.app import create_app
from cohorta.campaigns import service
from cohorta.clock import SystemClock
from cohorta.config import Settings
from cohorta.membership.jobs import run_pending

IN_PROCESS_TARGET_MS = 1.0
HTTP_TARGET_RPS = 1000.0
SEED = 11

#: The dynamic segments (name, rule, customer groups): a profile field, a summary, a loyalty tier.
SEGMENTS: list[tuple[str, dict[str, object], list[str]]] = [
    ("Poland and Germany", {"field": "profile.country", "op": "in", "value": ["PL", "DE"]}, []),
    ("Big spenders", {"field": "summary.total_spent", "op": "gt", "value": 500}, ["big-spenders"]),
    ("Gold and platinum", {"field": "loyalty.club.tier", "op": "in", "value": ["gold", "platinum"]}, ["gold"]),
]


@dataclass
class Setup:
    """The prepared copy: campaign ids, the viewer token, the customers asked about and what setting up took."""

    url: str
    campaigns: list[str]
    viewer_token: str
    source_ids: list[str]
    members: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class Load:
    """One HTTP load run."""

    label: str
    workers: int  # server worker processes
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    statuses: Counter[int]
    failures: Counter[str]  # requests without a usable answer, by reason (see bench.common.hammer)
    client_cpu_s: float
    server_cpu_s: float | None  # the server's process tree (its workers included)
    machine_busy_s: float | None = None  # every CPU's non-idle time over the run (all processes)

    @property
    def other_cpu_s(self) -> float | None:
        """CPU time other processes (not the server, not this load generator) took during the run."""
        if self.machine_busy_s is None or self.server_cpu_s is None:
            return None
        return max(0.0, self.machine_busy_s - self.server_cpu_s - self.client_cpu_s)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# --------------------------------------------------------------------------------------------------------------------
# Setting up


def prepare(url: str, sample: int) -> Setup:
    """Segments (computed), campaigns and a viewer token in the database at ``url``, through the API."""
    seconds: dict[str, float] = {}
    settings = Settings(database_url=url, admin_token=TOKEN, scheduler=False, log_level="warning")
    engine = db.create_db_engine(url)
    app = create_app(settings, clock=SystemClock(), engine=engine)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        started = time.perf_counter()
        segment_ids = []
        for name, rule, groups in SEGMENTS:
            response = client.post("/api/v1/segments", json={"name": name, "rule": rule, "customer_groups": groups})
            response.raise_for_status()
            segment_ids.append(response.json()["id"])
        run_pending(app.state.session_factory, SystemClock(), settings)
        members = {}
        for segment_id, (name, _, _) in zip(segment_ids, SEGMENTS, strict=True):
            segment = client.get(f"/api/v1/segments/{segment_id}").raise_for_status().json()
            if segment["refresh"]["state"] != "done":
                raise RuntimeError(f"segment {name} not computed: {segment['refresh']}")
            members[name] = int(segment["members"])
        seconds["segments"] = time.perf_counter() - started
        poland, spenders, gold = segment_ids
        campaigns = []
        for body in (
            {"name": "PL/DE promotion", "kind": "promotion", "status": "active", "included_segments": [poland],
             "excluded_segments": [spenders], "included_groups": ["gold"]},
            {"name": "Big spender promotion", "kind": "promotion", "status": "active",
             "included_segments": [spenders, gold], "excluded_segments": [poland], "included_groups": ["gold"]},
        ):  # fmt: skip
            campaigns.append(client.post("/api/v1/campaigns", json=body).raise_for_status().json()["id"])
        viewer = client.post("/api/v1/tokens", json={"name": "eligibility-bench", "role": "viewer"})
        viewer_token = viewer.raise_for_status().json()["token"]
    with engine.connect() as connection:
        everyone = [row[0] for row in connection.exec_driver_sql("SELECT source_id FROM customers")]
    engine.dispose()
    rng = random.Random(SEED)
    return Setup(url, campaigns, viewer_token, rng.sample(everyone, min(sample, len(everyone))), members, seconds)


def pairs(setup: Setup, count: int) -> list[tuple[str, str]]:
    """``count`` (campaign, source id) pairs: the sampled customers, each campaign in turn."""
    return [(setup.campaigns[i % len(setup.campaigns)], setup.source_ids[i % len(setup.source_ids)])
            for i in range(count)]  # fmt: skip


def path_of(campaign_id: str, source_id: str) -> str:
    return f"/api/v1/campaigns/{campaign_id}/eligibility/{source_id}"


# --------------------------------------------------------------------------------------------------------------------
# In process


def timed(calls: list[Callable[[], object]]) -> list[float]:
    out = []
    for call in calls:
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def in_process(setup: Setup, requests: int) -> tuple[dict[str, list[float]], Counter[bool]]:
    """Milliseconds per call: the service with a fresh Session, and the route through TestClient (two tokens)."""
    engine = db.create_db_engine(setup.url)
    factory = db.make_session_factory(engine)
    principal = system_principal()
    work = pairs(setup, requests)
    answers: Counter[bool] = Counter()

    expected: dict[tuple[str, str], bool] = {}

    def service_call(campaign_id: str, source_id: str) -> Callable[[], object]:
        def call() -> object:
            with factory() as session:
                out = service.eligibility(session, principal, campaign_id, source_id)
            answers[out.eligible] += 1
            expected[campaign_id, source_id] = out.eligible
            return out

        return call

    results: dict[str, list[float]] = {}
    timed([service_call(c, s) for c, s in work[:200]])  # warm-up: connection pool, compiled statement cache
    answers.clear()
    results["service.eligibility, fresh Session"] = timed([service_call(c, s) for c, s in work])

    settings = Settings(database_url=setup.url, admin_token=TOKEN, scheduler=False, log_level="warning")
    app = create_app(settings, engine=engine)
    with TestClient(app) as client:
        for label, token in (("admin token", TOKEN), ("viewer API token", setup.viewer_token)):
            headers = {"Authorization": f"Bearer {token}"}

            def request(campaign_id: str, source_id: str, headers: dict[str, str] = headers) -> Callable[[], object]:
                return lambda: client.get(path_of(campaign_id, source_id), headers=headers).raise_for_status()

            for c, s in work[:200]:  # warm-up, and the route answers as the service does
                got = client.get(path_of(c, s), headers=headers).raise_for_status().json()["eligible"]
                if got != expected[c, s]:
                    raise AssertionError(f"{label}: {c}/{s} answered {got}, the service said {expected[c, s]}")
            results[f"TestClient GET, {label}"] = timed([request(c, s) for c, s in work])
    engine.dispose()
    return results, answers


# --------------------------------------------------------------------------------------------------------------------
# Over HTTP


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc), those that still exist."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                todo += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
    return out


def _process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds a process and its descendants (the server's workers) have used so far (Linux
    /proc), None when unknown."""
    if pid is None:
        return None
    total = 0.0
    for member in _process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            if member == pid:
                return None
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _machine_busy_s() -> float | None:
    """Non-idle CPU seconds of the whole machine since boot, summed over CPUs (Linux /proc/stat)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def _server_pid() -> int | None:
    """The ``cohorta serve`` child that ``bench.common.server`` started: this process's only child (Linux)."""
    children: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            children += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
    return children[0] if len(children) == 1 else None


def serve_has_workers_option() -> bool:
    """Whether ``cohorta serve`` takes ``--workers`` (asked through its ``--help``)."""
    help_text = subprocess.run(
        [sys.executable, "-m", "cohorta.cli", "serve", "--help"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    ).stdout  # fmt: skip
    return "--workers" in help_text


def http_load(
    port: int, label: str, token: str, paths: list[str], concurrency: int, duration: float, pid: int | None,
    workers: int = 1,
) -> Load:  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    hammer(port, paths, headers, concurrency, min(2.0, duration / 4))  # warm-up, not counted
    server_before, machine_before = _process_cpu_s(pid), _machine_busy_s()
    got = hammer(port, paths, headers, concurrency, duration)
    server_after, machine_after = _process_cpu_s(pid), _machine_busy_s()
    load = Load(
        label, workers, got.requests, got.errors, got.seconds, got.latencies_ms, got.statuses, got.failures,
        got.client_cpu_s, None,
    )  # fmt: skip
    if server_before is not None and server_after is not None:
        load.server_cpu_s = server_after - server_before
    if machine_before is not None and machine_after is not None:
        load.machine_busy_s = machine_after - machine_before
    return load


@dataclass
class Results:
    setup: Setup
    in_process: dict[str, list[float]]
    answers: Counter[bool]
    http: list[Load]
    load_average: dict[str, tuple[float, float, float]]


def run(
    demo_db: Path, *, requests: int, concurrency: int, duration: float, http: bool = True,
    workers: tuple[int, ...] = (1,),
) -> Results:  # fmt: skip
    """The whole benchmark on a copy of ``demo_db`` (a demo database; the copy is removed afterwards).

    ``workers``: the HTTP rows are measured once per entry, ``cohorta serve --workers N`` (N > 1 needs that option).
    """
    load_average: dict[str, tuple[float, float, float]] = {"start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="cohorta-eligibility-") as folder:
        url = f"sqlite:///{folder}/eligibility.db"
        shutil.copy(demo_db, f"{folder}/eligibility.db")
        started = time.perf_counter()
        engine = db.create_db_engine(url)
        db.upgrade(engine)
        engine.dispose()
        setup = prepare(url, sample=requests)
        setup.seconds["setup"] = time.perf_counter() - started
        load_average["in process"] = os.getloadavg()
        measured, answers = in_process(setup, requests)
        loads: list[Load] = []
        if http:
            paths = [path_of(c, s) for c, s in pairs(setup, max(requests, 1000))]
            for count in workers:
                with server(url, workers=None if count == 1 else count) as client:
                    port = client.base_url.port
                    if port is None:
                        raise RuntimeError(f"no port in {client.base_url}")
                    pid = _server_pid()
                    load_average[f"http, {count} worker{'s' if count > 1 else ''}"] = os.getloadavg()
                    for label, token in (("admin token", TOKEN), ("viewer API token", setup.viewer_token)):
                        loads.append(http_load(port, label, token, paths, concurrency, duration, pid, count))
        load_average["end"] = os.getloadavg()
    return Results(setup, measured, answers, loads, load_average)


# --------------------------------------------------------------------------------------------------------------------
# Tables


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Like ``bench.common.print_table``, on a console wide enough for the HTTP table's columns."""
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=max(console.width, 180)).print(table)


def percentile(values: list[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def in_process_rows(results: Results) -> list[list[str]]:
    rows = []
    for label, ms in results.in_process.items():
        median = statistics.median(ms)
        rows.append([
            label, f"{len(ms):,}", f"{median:.3f}", f"{percentile(ms, 95):.3f}", f"{percentile(ms, 99):.3f}",
            f"{max(ms):.2f}", "yes" if median < IN_PROCESS_TARGET_MS else "NO",
        ])  # fmt: skip
    return rows


def http_rows(results: Results, concurrency: int) -> list[list[str]]:
    rows = []
    for load in results.http:
        per_request = 1000 / load.requests if load.requests else float("nan")
        server_ms = f"{load.server_cpu_s * per_request:.2f}" if load.server_cpu_s is not None else "n/a"
        per_cpu = f"{load.requests / load.server_cpu_s:,.0f}" if load.server_cpu_s else "n/a"
        other = f"{load.other_cpu_s / load.seconds:.2f}" if load.other_cpu_s is not None else "n/a"
        rows.append([
            load.label, str(load.workers), str(concurrency), f"{load.seconds:.1f}", f"{load.requests:,}",
            f"{load.rps:,.0f}",
            f"{statistics.median(load.latencies_ms):.2f}" if load.latencies_ms else "-",
            f"{percentile(load.latencies_ms, 99):.2f}" if load.latencies_ms else "-",
            f"{load.errors:,}", server_ms, per_cpu, f"{load.client_cpu_s * per_request:.2f}", other,
            "yes" if load.rps >= HTTP_TARGET_RPS and not load.errors else "NO",
        ])  # fmt: skip
    return rows


def iter_rows(results: Results, concurrency: int) -> Iterator[list[str]]:
    """Every table row (for tests)."""
    yield from in_process_rows(results)
    yield from http_rows(results, concurrency)


def report(
    results: Results, customers: int, concurrency: int, build_s: float | None, notes: list[str] | None = None
) -> None:
    setup = results.setup
    cpus = os.cpu_count() or 0
    built = f"built in {build_s:.0f} s" if build_s is not None else "cached"
    console.print(
        f"{customers:,} customers (demo database {built}); setup through the API {setup.seconds['setup']:.1f} s "
        f"(segments created and computed in {setup.seconds['segments']:.1f} s: "
        + ", ".join(f"{name} {count:,}" for name, count in setup.members.items())
        + f"); answers: {results.answers[True]:,} eligible, {results.answers[False]:,} not"
    )
    console.print(
        "Load average (1, 5, 15 min): "
        + "; ".join(f"{stage} {a:.2f} {b:.2f} {c:.2f}" for stage, (a, b, c) in results.load_average.items())
    )
    print_table(
        f"Eligibility in process ({customers:,} customers, 3 segments, 2 campaigns; ms per call; "
        f"target median < {IN_PROCESS_TARGET_MS:g} ms)",
        ["path", "calls", "median", "p95", "p99", "max", "median < 1 ms"],
        in_process_rows(results),
    )
    if results.http:
        print_table(
            f"Eligibility over HTTP on loopback (cohorta serve; load from bench.common.hammer, asyncio streams; "
            f"target >= {HTTP_TARGET_RPS:,.0f} req/s)",
            ["token", "workers", "concurrency", "seconds", "requests", "req/s", "median ms", "p99 ms", "errors",
             "server CPU ms/req", "req per server CPU-s", "client CPU ms/req",
             "other procs, CPUs", ">= 1,000 req/s"],
            http_rows(results, concurrency),
        )  # fmt: skip
        odd = {
            f"{load.label}, {load.workers} worker(s)": {**dict(load.statuses), **dict(load.failures)}
            for load in results.http
            if set(load.statuses) - {200} or load.failures
        }
        if odd:
            console.print(f"[red]Non-200 answers by status, and failures by reason:[/] {odd}")
        console.print(
            f"Note: this machine has {cpus} CPUs and the load generator (this process, bench.common.hammer) runs on "
            "it beside the server, competing for them: req/s is a lower bound for the server alone. 'server CPU' "
            "sums the server's processes (its workers included); 'req per server CPU-s' (1000 / server CPU ms per "
            "request) estimates what the server could answer with one CPU to itself. 'client CPU': the load "
            "generator's own time. 'other procs, CPUs': CPUs' worth of time that other processes on the machine "
            "took meanwhile."
        )
    for note in notes or []:
        console.print(f"Note: {note}")


def main() -> None:
    from bench.rules_bench import demo_database

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2_000, help="In-process calls per path")
    parser.add_argument("--concurrency", type=int, default=16, help="Concurrent HTTP connections")
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds of HTTP load per token")
    parser.add_argument(
        "--workers-list", default="1,2", help="Server worker processes to measure the HTTP rows with (comma-separated)"
    )
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the cached demo database")
    parser.add_argument("--no-http", action="store_true", help="Only the in-process measurements")
    args = parser.parse_args()
    try:
        workers = tuple(dict.fromkeys(int(n) for n in args.workers_list.split(",") if n.strip()))
    except ValueError:
        workers = ()
    if not workers or min(workers) < 1:
        parser.error("--workers-list: positive integers, comma-separated")
    notes = []
    if not args.no_http and max(workers) > 1 and not serve_has_workers_option():
        skipped = ", ".join(str(n) for n in workers if n > 1)
        notes.append(f"cohorta serve has no --workers option: measured with 1 worker only (asked for {skipped} too)")
        workers = (1,)
    path, build_s = demo_database(args.customers, rebuild=args.rebuild)
    results = run(path, requests=args.requests, concurrency=args.concurrency, duration=args.duration,
                  http=not args.no_http, workers=workers)  # fmt: skip
    report(results, args.customers, args.concurrency, build_s, notes)


if __name__ == "__main__":
    main()
