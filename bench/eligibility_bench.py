"""Campaign eligibility: ``GET /api/v1/campaigns/{id}/eligibility/{source_id}``, in process and over HTTP.

Targets (the issue): median under 1 ms in process, and at least 1,000 requests per second over HTTP on loopback.

Usage: python -m bench.eligibility_bench [--customers 100000] [--requests 2000] [--concurrency 16] [--duration 10]
       [--rebuild] [--no-http]

Copies the cached demo database (``bench.rules_bench`` builds it into ``$COHORTA_BENCH_CACHE``, default
/tmp/cohorta-bench), creates through the API (admin token) three active dynamic segments (by country, by total spent
with a customer group, by loyalty tier with a customer group), computes them with ``membership.jobs.run_pending``,
creates two active promotion campaigns (included and excluded segments, included groups) and an API token with the
viewer role. Then:

a. In process, for ``--requests`` random (campaign, customer) pairs: ``campaigns.service.eligibility`` with a fresh
   Session per call (as a request has), and the same request through FastAPI's TestClient (auth, routing, response
   model; the TestClient's own transport is included too), with the admin token and with the viewer API token.
b. Over HTTP: ``cohorta serve`` (one process, scheduler on, as deployed) on a loopback port, driven for
   ``--duration`` seconds by ``--concurrency`` keep-alive connections from httpx's AsyncClient in this process,
   once with the admin token (no DB lookup) and once with the viewer API token (looked up by its hash).

The load generator runs on the same machine as the server and competes with it for the CPUs; the HTTP table shows
the CPU time each side spent per request, so the server's own cost can be read apart from the generator's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

from bench.common import TOKEN, console, server
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
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    statuses: Counter[int]
    client_cpu_s: float
    server_cpu_s: float | None
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


def _process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc), None when unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


async def _drive(base: str, token: str, paths: list[str], concurrency: int, duration: float) -> Load:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as client:
        stop_at = time.perf_counter() + duration

        async def worker(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < stop_at:
                path = paths[i % len(paths)]
                i += concurrency
                started = time.perf_counter()
                try:
                    response = await client.get(path)
                    statuses[response.status_code] += 1
                    if response.status_code != 200:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                    statuses[0] += 1
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Load("", len(latencies), errors, elapsed, latencies, statuses, 0.0, None)


def http_load(
    base: str, label: str, token: str, paths: list[str], concurrency: int, duration: float, pid: int | None
) -> Load:
    asyncio.run(_drive(base, token, paths, concurrency, min(2.0, duration / 4)))  # warm-up, not counted
    server_before, client_before, machine_before = _process_cpu_s(pid), time.process_time(), _machine_busy_s()
    load = asyncio.run(_drive(base, token, paths, concurrency, duration))
    server_after, machine_after = _process_cpu_s(pid), _machine_busy_s()
    load.label = label
    load.client_cpu_s = time.process_time() - client_before
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


def run(demo_db: Path, *, requests: int, concurrency: int, duration: float, http: bool = True) -> Results:
    """The whole benchmark on a copy of ``demo_db`` (a demo database; the copy is removed afterwards)."""
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
            with server(url) as client:
                base = str(client.base_url).rstrip("/")
                pid = _server_pid()
                load_average["http"] = os.getloadavg()
                for label, token in (("admin token", TOKEN), ("viewer API token", setup.viewer_token)):
                    loads.append(http_load(base, label, token, paths, concurrency, duration, pid))
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
            load.label, str(concurrency), f"{load.seconds:.1f}", f"{load.requests:,}", f"{load.rps:,.0f}",
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


def report(results: Results, customers: int, concurrency: int, build_s: float | None) -> None:
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
            f"Eligibility over HTTP on loopback (cohorta serve, 1 process; httpx AsyncClient; "
            f"target >= {HTTP_TARGET_RPS:,.0f} req/s)",
            ["token", "concurrency", "seconds", "requests", "req/s", "median ms", "p99 ms", "errors",
             "server CPU ms/req", "req per server CPU-s", "client CPU ms/req",
             "other procs, CPUs", ">= 1,000 req/s"],
            http_rows(results, concurrency),
        )  # fmt: skip
        odd = {load.label: dict(load.statuses) for load in results.http if set(load.statuses) - {200}}
        if odd:
            console.print(f"[red]Non-200 answers by status (0: transport error):[/] {odd}")
        console.print(
            f"Note: this machine has {cpus} CPUs and the load generator (this process, httpx) runs on it beside the "
            "server, competing for them: req/s is a lower bound for the server alone. 'req per server CPU-s' "
            "(1000 / server CPU ms per request) estimates what the one server process could answer with a CPU to "
            "itself. 'other procs, CPUs': CPUs' worth of time that other processes on the machine took meanwhile."
        )


def main() -> None:
    from bench.rules_bench import demo_database

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2_000, help="In-process calls per path")
    parser.add_argument("--concurrency", type=int, default=16, help="Concurrent HTTP connections")
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds of HTTP load per token")
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the cached demo database")
    parser.add_argument("--no-http", action="store_true", help="Only the in-process measurements")
    args = parser.parse_args()
    path, build_s = demo_database(args.customers, rebuild=args.rebuild)
    results = run(path, requests=args.requests, concurrency=args.concurrency, duration=args.duration,
                  http=not args.no_http)  # fmt: skip
    report(results, args.customers, args.concurrency, build_s)


if __name__ == "__main__":
    main()
