"""Segment exports: ``cohorta export`` of a segment holding every customer, as CSV, JSON Lines and Parquet.

Targets (the issue): a segment's members export streams 1,000,000 members in bounded memory (peak RSS under 300 MB)
at 100,000 rows per second or more, in each of the three formats.

Usage: python -m bench.export_bench [--customers 100000] [--formats csv,jsonl,parquet]
       [--attributes occupation,children,interests] [--no-activity] [--rebuild]

Copies the cached demo database (``bench.rules_bench`` builds it into ``$COHORTA_BENCH_CACHE``, default
/tmp/cohorta-bench) into a temporary folder, creates in process (``segments.service.create_segment``, system
principal) a dynamic segment whose rule everyone matches (``summary.order_count >= 0``) and computes it with
``membership.jobs.run_pending`` (timed apart). Then, for each format, runs ``cohorta export SEGMENT --out FILE
--attribute ...`` as a child process (``COHORTA_DATABASE_URL`` on the copy, ``COHORTA_LOG_LEVEL=warning``) and
measures:

* seconds: wall time of the child, from start to exit (interpreter start-up and imports included; the start-up alone
  is measured once, as ``python -c "import cohorta.cli, cohorta.exports.service"``, and printed);
* peak RSS: the child's own high-water mark, ``ru_maxrss`` of the resource usage ``os.wait4`` returns for that one
  child (Linux: KiB; shown in MiB), taken by a small launcher process that starts the child (see ``measured``).
  Unlike ``getrusage(RUSAGE_CHILDREN)`` it is per run, not the maximum over every child so far;
* rows: counted in the file written (CSV parsed, JSON lines counted, Parquet metadata) and checked against the count
  the command prints and the segment's member count.

One more row: the members' orders (one row per order item) over the year up to the demo data's end, as CSV
(``--activity orders --from ... --to ...``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from bench.common import console, demo_copy
from cohorta import db
from cohorta.access.service import system_principal
from cohorta.clock import SystemClock
from cohorta.config import Settings
from cohorta.membership.jobs import run_pending
from cohorta.segments.models import Segment
from cohorta.segments.schemas import SegmentIn
from cohorta.segments.service import create_segment

RATE_TARGET = 100_000.0  # rows per second
RSS_TARGET_MB = 300.0  # MiB
FORMATS = ("csv", "jsonl", "parquet")
#: Custom attributes of the demo data: a text, a number and a list (exported joined with "|").
DEFAULT_ATTRIBUTES = ("occupation", "children", "interests")
EVERYONE = "summary.order_count >= 0"  # counts are 0, never missing, for a customer without orders
MB = 1024 * 1024
wide = Console(width=max(console.width, 160))  # the table and notes unwrapped, also when not on a terminal


@dataclass
class Run:
    """One ``cohorta export`` child process."""

    label: str  # "members" or "orders"
    fmt: str
    rows: int  # counted in the file
    reported: int  # as the command printed it
    seconds: float
    peak_rss_kib: int
    file_bytes: int

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_kib / 1024


@dataclass
class Results:
    engine: str
    customers: int
    members: int
    attributes: list[str]
    runs: list[Run]
    seconds: dict[str, float]  # copy, segment creation, membership computation
    startup: Run  # the interpreter with the export modules imported, nothing exported
    window: tuple[datetime, datetime]  # of the activity export
    load_average: dict[str, tuple[float, float, float]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------------
# Measuring a child process


#: Run with ``python -S -c`` (about 8 MB): starts argv[2:], waits, writes "peak-KiB exit-code seconds" to argv[1].
_LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)} {seconds}")
"""


def measured(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, int, str, str]:
    """Runs ``command`` in ``cwd``; (wall seconds, its peak RSS in KiB, exit code, stdout, stderr).

    The peak is ``ru_maxrss`` from ``os.wait4`` on that one child (KiB on Linux): the kernel's high-water mark of its
    resident set over its whole life, which polling /proc could miss. The child is started by a small launcher
    process (``python -S``, about 8 MB), not by this one: Linux counts in a child's ``ru_maxrss`` the memory of the
    process image it replaced at exec - a copy of its parent's - so a child started directly from this benchmark
    (hundreds of MB once the segment is computed) would report at least that much. Timing is taken in the launcher,
    from spawn to exit. Output goes to files, not pipes, so a chatty child cannot block on a full pipe."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "usage"
        subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(report), *command], env=env, cwd=cwd,
                       stdin=subprocess.DEVNULL, stdout=out, stderr=err, check=True)  # fmt: skip
        peak, code, seconds = report.read_text().split()
        out.seek(0)
        err.seek(0)
        return (float(seconds), int(peak), int(code), out.read().decode(errors="replace"),
                err.read().decode(errors="replace"))  # fmt: skip


def cohorta_command() -> list[str]:
    """The ``cohorta`` script of this interpreter's environment, or ``python -m cohorta.cli``."""
    script = Path(sys.executable).parent / "cohorta"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cohorta.cli"]


def count_rows(path: Path, fmt: str) -> int:
    """Data rows in an exported file (the CSV header not counted; quoted newlines inside a cell handled)."""
    if fmt == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return sum(1 for _ in csv.reader(handle)) - 1
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def export_run(label: str, fmt: str, args: list[str], out: Path, env: dict[str, str], cwd: Path) -> Run:
    seconds, rss, code, stdout, stderr = measured([*cohorta_command(), "export", *args, "--out", str(out)], env, cwd)
    if code != 0:
        raise RuntimeError(f"cohorta export ({label}, {fmt}) exited with {code}:\n{stdout}\n{stderr}")
    said = re.search(r"([\d,]+) rows\s+written", stdout)
    if said is None:
        raise RuntimeError(f"cohorta export ({label}, {fmt}) did not say how many rows it wrote:\n{stdout}")
    return Run(label, fmt, count_rows(out, fmt), int(said.group(1).replace(",", "")), seconds, rss,
               out.stat().st_size)  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# The benchmark


def everyone_segment(url: str) -> tuple[str, int, dict[str, float]]:
    """A dynamic segment of every customer, created and computed in process: (id, members, seconds by step)."""
    seconds: dict[str, float] = {}
    settings = Settings(database_url=url, scheduler=False, log_level="warning")
    engine = db.create_db_engine(url)
    factory = db.make_session_factory(engine)
    clock = SystemClock()
    started = time.perf_counter()
    with db.unit_of_work(factory) as session:
        segment_id = create_segment(
            session, settings, clock, SegmentIn(name="Everyone (export bench)", text=EVERYONE),
            system_principal("export-bench"),
        ).id  # fmt: skip
    seconds["segment created"] = time.perf_counter() - started
    started = time.perf_counter()
    run_pending(factory, clock, settings)
    seconds["membership computed"] = time.perf_counter() - started
    with factory() as session:
        segment = session.get(Segment, segment_id)
        assert segment is not None
        if segment.refresh_state != "done":
            raise RuntimeError(f"segment not computed: {segment.refresh_state} {segment.refresh_error}")
        members = segment.member_count
        customers = session.scalar(sa.text("SELECT COUNT(*) FROM customers"))
    engine.dispose()
    if members != customers:
        raise RuntimeError(f"the segment has {members:,} members, the database {customers:,} customers")
    return segment_id, members, seconds


def run(
    demo: contextlib.AbstractContextManager[tuple[str, int]], *, engine: str = "sqlite",
    formats: tuple[str, ...] = FORMATS, attributes: tuple[str, ...] = DEFAULT_ATTRIBUTES, activity: bool = True,
    as_of: datetime | None = None,
) -> Results:  # fmt: skip
    """The whole benchmark on ``demo``, a working copy of a demo data set in ``engine`` (its URL and customers;
    removed afterwards by the context: ``bench.common.demo_copy``).

    ``as_of``: the end of the activity export's one-year window (default: the demo data's end, ``rules_bench.NOW``).
    """
    from bench.rules_bench import NOW

    end = (as_of or NOW).replace(tzinfo=None)  # the command takes naive UTC
    window = (end - timedelta(days=365), end)
    load_average: dict[str, tuple[float, float, float]] = {"start": os.getloadavg()}
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with demo as (url, customers), tempfile.TemporaryDirectory(prefix="cohorta-export-") as name:
        folder = Path(name)
        seconds["copy" if engine == "sqlite" else "demo data loaded"] = time.perf_counter() - started
        segment_id, members, segment_seconds = everyone_segment(url)
        seconds |= segment_seconds
        env = {**os.environ, "COHORTA_DATABASE_URL": url, "COHORTA_LOG_LEVEL": "warning", "COHORTA_SCHEDULER": "false",
               "COLUMNS": "500", "NO_COLOR": "1", "TERM": "dumb"}  # fmt: skip
        s, rss, code, _, err = measured(
            [sys.executable, "-c", "import cohorta.cli, cohorta.exports.service"], env, folder
        )  # fmt: skip
        if code != 0:
            raise RuntimeError(f"importing the export modules failed:\n{err}")
        startup = Run("start-up", "-", 0, 0, s, rss, 0)
        runs: list[Run] = []
        attribute_args = [arg for a in attributes for arg in ("--attribute", a)]
        for fmt in formats:
            load_average[f"members, {fmt}"] = os.getloadavg()
            out = folder / f"members.{fmt}"
            runs.append(export_run("members", fmt, [segment_id, *attribute_args], out, env, folder))
            out.unlink()
            if runs[-1].rows != members or runs[-1].reported != members:
                raise RuntimeError(f"{fmt}: {runs[-1].rows:,} rows in the file, {runs[-1].reported:,} reported, "
                                   f"{members:,} members")  # fmt: skip
        if activity:
            load_average["orders, csv"] = os.getloadavg()
            out = folder / "orders.csv"
            args = [segment_id, "--activity", "orders", "--from", window[0].isoformat(), "--to", window[1].isoformat()]
            runs.append(export_run("orders", "csv", args, out, env, folder))
            out.unlink()
            if runs[-1].rows != runs[-1].reported:
                raise RuntimeError(f"orders: {runs[-1].rows:,} rows in the file, {runs[-1].reported:,} reported")
        load_average["end"] = os.getloadavg()
    return Results(engine, customers, members, list(attributes), runs, seconds, startup, window, load_average)


# --------------------------------------------------------------------------------------------------------------------
# Tables


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Like ``bench.common.print_table``, on a console wide enough for every column (also when not a terminal)."""
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i < 2 else "right")
    for row in rows:
        table.add_row(*row)
    wide.print(table)


def rows(results: Results) -> list[list[str]]:
    out = []
    startup = results.startup.seconds
    for r in results.runs:
        out.append([
            r.label, r.fmt, f"{r.rows:,}", f"{r.seconds:.2f}", f"{r.rate:,.0f}",
            f"{r.rows / (r.seconds - startup):,.0f}" if r.seconds > startup else "-", f"{r.peak_rss_mb:,.0f}",
            f"{r.file_bytes / MB:,.1f}", "yes" if r.rate >= RATE_TARGET else "NO",
            "yes" if r.peak_rss_mb < RSS_TARGET_MB else "NO",
        ])  # fmt: skip
    return out


def report(results: Results, build_s: float | None) -> None:
    if results.engine == "sqlite":
        built = f"built in {build_s:.0f} s" if build_s is not None else "cached"
        source = f"SQLite, demo database {built}); copied in {results.seconds['copy']:.1f} s"
    else:
        source = f"PostgreSQL); demo data loaded in {results.seconds['demo data loaded']:.0f} s"
    wide.print(
        f"{results.customers:,} customers ({source}; "
        f"segment of everyone ({EVERYONE!r}): created in {results.seconds['segment created']:.2f} s, membership "
        f"computed ({results.members:,} members) in {results.seconds['membership computed']:.2f} s"
    )
    wide.print(
        "Load average (1, 5, 15 min): "
        + "; ".join(f"{stage} {a:.2f} {b:.2f} {c:.2f}" for stage, (a, b, c) in results.load_average.items())
    )
    print_table(
        f"cohorta export, one child process per row ({results.customers:,} customers; members with attributes "
        f"{', '.join(results.attributes) or 'none'}; targets >= {RATE_TARGET:,.0f} rows/s, peak RSS < "
        f"{RSS_TARGET_MB:g} MB)",
        ["export", "format", "rows", "seconds", "rows/s", "rows/s after start-up", "peak RSS MB", "file MB",
         ">= 100,000 rows/s", "RSS < 300 MB"],
        rows(results),
    )  # fmt: skip
    start, end = results.window
    wide.print(
        f"Note: 'seconds' is the child's wall time, start to exit, and 'rows/s' is rows / seconds (the targets apply "
        f"to it). Of that time, starting Python and importing the CLI and export modules alone takes "
        f"{results.startup.seconds:.2f} s and {results.startup.peak_rss_mb:.0f} MB RSS; 'rows/s after start-up' "
        "takes those seconds off. Peak RSS: ru_maxrss of that one child from os.wait4, in a small launcher process "
        f"(MB = MiB). 'orders': --activity orders from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, one row "
        "per order item (the targets are the issue's, for the members export)."
    )


def main() -> None:
    from bench.rules_bench import demo_database

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000, help="Demo size (the issue's: 1000000)")
    parser.add_argument("--formats", default=",".join(FORMATS), help="Comma-separated: csv, jsonl, parquet")
    parser.add_argument("--attributes", default=",".join(DEFAULT_ATTRIBUTES),
                        help="Custom attributes to export (comma-separated; empty for none)")  # fmt: skip
    parser.add_argument("--no-activity", action="store_true", help="Leave out the orders (activity) export")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite",
                        help="sqlite: a copy of the cached demo database; postgresql: the demo loaded afresh")
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the cached (SQLite) demo database")
    args = parser.parse_args()
    formats = tuple(dict.fromkeys(f.strip().lower() for f in args.formats.split(",") if f.strip()))
    if not formats or set(formats) - set(FORMATS):
        parser.error(f"--formats: comma-separated, from {', '.join(FORMATS)}")
    attributes = tuple(dict.fromkeys(a.strip() for a in args.attributes.split(",") if a.strip()))
    build_s = demo_database(args.customers, rebuild=args.rebuild)[1] if args.engine == "sqlite" else None
    results = run(demo_copy(args.engine, args.customers), engine=args.engine, formats=formats, attributes=attributes,
                  activity=not args.no_activity)  # fmt: skip
    report(results, build_s)


if __name__ == "__main__":
    main()
