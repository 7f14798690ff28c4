"""Helpers shared by the benchmarks: a real server on a loopback port, a throwaway database, an HTTP load generator,
result tables."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get("COHORTA_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TOKEN = "bench-token"
console = Console()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh, empty database URL of the given kind ("sqlite" or "postgresql"), removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="cohorta-bench-") as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"cohorta_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def server(database_url: str, workers: int | None = None) -> Iterator[httpx.Client]:
    """``cohorta serve`` in its own process on a free loopback port; yields an authenticated client.

    ``workers``: passed on as ``cohorta serve --workers N`` when given (None: the option is left out).
    """
    port = free_port()
    env = {
        **os.environ,
        "COHORTA_DATABASE_URL": database_url,
        "COHORTA_ADMIN_TOKEN": TOKEN,
        "COHORTA_LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-m", "cohorta.cli", "serve", "--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(
        command,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {process.stderr.read().decode() if process.stderr else ''}")
            time.sleep(0.2)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600) as client:
            yield client
    finally:
        process.terminate()
        process.wait(timeout=30)


def copy_database(source: Path, folder: Path, name: str) -> tuple[str, int]:
    """A working copy of a (cached) SQLite database in ``folder``, migrated to the current schema (a cached one may
    predate a migration): its URL and how many customers it holds."""
    from cohorta import db

    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", folder / f"{name}{suffix}")
    url = f"sqlite:///{folder}/{name}"
    engine = db.create_db_engine(url)
    db.upgrade(engine)
    with engine.connect() as connection:
        customers = int(connection.execute(sa.text("SELECT COUNT(*) FROM customers")).scalar_one())
    engine.dispose()
    return url, customers


@contextlib.contextmanager
def copied(source: Path, folder: Path, name: str) -> Iterator[tuple[str, int]]:
    """:func:`copy_database` as the working copy a benchmark's ``run`` takes (the caller owns ``folder``)."""
    yield copy_database(source, folder, name)


@contextlib.contextmanager
def demo_copy(kind: str, customers: int) -> Iterator[tuple[str, int]]:
    """A working database of the demo data set (``bench.rules_bench``'s seed and instant), removed afterwards: its
    URL and how many customers it holds. SQLite: a copy of the cached demo database; PostgreSQL: a fresh database
    loaded by ``load_demo`` (nothing is cached on PostgreSQL)."""
    from bench.rules_bench import NOW, SEED, demo_database
    from cohorta import db
    from cohorta.demo.generator import load_demo

    if kind == "sqlite":
        path, _ = demo_database(customers)
        with tempfile.TemporaryDirectory(prefix="cohorta-bench-copy-") as folder, copied(
            path, Path(folder), "bench.db"
        ) as copy:
            yield copy
        return
    with database("postgresql") as url:
        engine = db.create_db_engine(url)
        db.upgrade(engine)
        started = time.perf_counter()
        load_demo(engine, customers=customers, seed=SEED, now=NOW)
        engine.dispose()
        console.log(f"postgresql: demo data loaded in {time.perf_counter() - started:.0f} s")
        yield url, customers


def run_queued(url: str) -> list[str]:
    """Run the queued membership jobs of the database at ``url`` in this process, as a server's scheduler would (for
    benchmarks serving with the scheduler off): the segments done."""
    from cohorta import db
    from cohorta.clock import SystemClock
    from cohorta.config import Settings
    from cohorta.membership.jobs import run_pending

    engine = db.create_db_engine(url)
    try:
        settings = Settings(database_url=url, scheduler=False, log_level="warning")
        return run_pending(db.make_session_factory(engine), SystemClock(), settings)
    finally:
        engine.dispose()


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column != columns[0] else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)


# --------------------------------------------------------------------------------------------------------------------
# HTTP load generator


@dataclass
class Hammered:
    """What :func:`hammer` measured."""

    requests: int  # answered requests (any status) plus failures (failed connection attempts included)
    errors: int  # non-2xx answers plus failures
    seconds: float  # wall time from the first request sent to the last answer read
    latencies_ms: list[float]  # one per answered request, send to last body byte
    statuses: Counter[int]  # answers by status code
    failures: Counter[str] = field(default_factory=Counter)  # requests without a usable answer, by reason
    client_cpu_s: float = 0.0  # this process's CPU time (time.process_time) over the run, connecting included

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def client_cpu_ms_per_request(self) -> float:
        return 1000 * self.client_cpu_s / self.requests if self.requests else float("nan")


class _BadResponse(Exception):
    """An answer the generator cannot read on (no Content-Length, chunked, not HTTP/1.x): the connection is dropped."""


def _request_bytes(path: str, host: str, port: int, headers: Mapping[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """One response from ``reader``: its status and whether the server keeps the connection open."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise _BadResponse("not HTTP/1.x")
    status = int(head[9:12])
    lower = head.lower()
    if b"\r\ntransfer-encoding:" in lower:
        raise _BadResponse("chunked")  # uvicorn sends Content-Length for these routes; anything else is a surprise
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        length = int(lower[at + 17 : lower.index(b"\r\n", at + 2)])
    elif status < 200 or status in (204, 304):
        length = 0
    else:
        raise _BadResponse("no content-length")
    if length:
        await reader.readexactly(length)
    return status, b"\r\nconnection: close\r\n" not in lower


async def _hammer(
    host: str, port: int, requests: list[bytes], concurrency: int, duration: float, timeout: float
) -> Hammered:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    count = len(requests)
    turn = 0  # the next request to send, over all connections (one thread: no lock needed)
    in_flight = [False] * concurrency
    stop_at = loop.time() + duration
    clock = time.perf_counter

    async def connection(k: int) -> None:
        nonlocal turn
        writer: asyncio.StreamWriter | None = None
        try:
            while loop.time() < stop_at:
                if writer is None:
                    try:
                        reader, writer = await asyncio.open_connection(host, port)
                    except OSError as exc:
                        failures[f"connect: {type(exc).__name__}"] += 1
                        await asyncio.sleep(0.05)
                        continue
                request = requests[turn % count]
                turn += 1
                in_flight[k] = True
                started = clock()
                try:
                    writer.write(request)
                    status, keep_alive = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                    failures[type(exc).__name__] += 1
                    keep_alive = False
                except _BadResponse as exc:
                    failures[str(exc)] += 1
                    keep_alive = False
                else:
                    latencies.append((clock() - started) * 1000)
                    statuses[status] += 1
                in_flight[k] = False
                if not keep_alive:
                    writer.close()
                    writer = None
        finally:
            if writer is not None:
                writer.close()

    started = clock()
    tasks = [asyncio.create_task(connection(k)) for k in range(concurrency)]
    _, pending = await asyncio.wait(tasks, timeout=duration + timeout)
    for task in pending:  # stuck on an answer that did not come
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = clock() - started
    failures["timeout"] += sum(in_flight)
    for task in tasks:
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc  # a bug in the generator, not a failed request
    errors = sum(n for status, n in statuses.items() if not 200 <= status < 300) + sum(failures.values())
    return Hammered(len(latencies) + sum(failures.values()), errors, elapsed, latencies, statuses, +failures)


def hammer(
    port: int,
    paths: Sequence[str],
    headers: Mapping[str, str],
    concurrency: int,
    duration: float,
    *,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
) -> Hammered:
    """Closed-loop HTTP/1.1 GET load on ``host:port`` for ``duration`` seconds; returns what it measured.

    A light load generator on plain asyncio streams (httpx's AsyncClient spends ~3 ms of client CPU per request,
    which on a small machine caps the load below what the server can take). ``concurrency`` keep-alive connections
    each send one request, read its answer and send the next until ``duration`` has passed (requests in flight then
    are finished and counted); no pipelining. The requests are built once, before the clock starts: ``GET path``
    with ``Host`` and ``headers`` (e.g. ``Authorization``), taking ``paths`` in turn over all connections.

    An answer is read as its status line and headers, then exactly Content-Length bytes of body; one without
    Content-Length (chunked, or close-delimited) cannot be read on and is counted as a failure and its connection is
    reopened, as are connection errors, and answers the server marks ``Connection: close``. Non-2xx answers and
    failures are errors; a request still unanswered ``timeout`` seconds after ``duration`` is a failure ("timeout").
    Latency: from writing the request to reading the last byte of the body, for answered requests.

    ``client_cpu_s`` is this process's CPU time (``time.process_time``, all its threads) over the run, so
    ``client_cpu_ms_per_request`` is the generator's own cost only when nothing else in this process is busy.
    Meant for loopback benchmarks: no TLS, no redirects, no proxies; the default event loop.
    """
    if not paths:
        raise ValueError("no paths")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    requests = [_request_bytes(path, host, port, headers) for path in paths]
    cpu_before = time.process_time()
    result = asyncio.run(_hammer(host, port, requests, concurrency, duration, timeout))
    result.client_cpu_s = time.process_time() - cpu_before
    return result
