"""Live membership with the benchmark rules as active dynamic segments: what writes cost, what a full recompute costs,
and whether a simulated day leaves anything for the safety net.

Usage: python -m bench.live_bench --customers 100000 [--segments 200] [--engines sqlite,postgresql]
       [--parts recompute,writes,plan,day] [--writes 200] [--bulk-batches 5] [--bulk-size 5000]
       [--day-segments 200] [--step-minutes 5] [--writes-per-step 6]

Per engine, on the demo data set (SQLite: a copy of the cached demo database, built by ``bench.rules_bench`` when
missing; PostgreSQL: a fresh database of ``COHORTA_BENCH_POSTGRES_URL`` loaded by ``load_demo`` with the same seed),
in process with a frozen clock at the data's end:

1. recompute: the first ``--segments`` rules of ``bench.rules_set.variants`` (the 27 benchmark rules, then their
   variants with other thresholds and windows) created as active dynamic segments and computed by the recompute jobs;
   the same rules as hand-written Polars queries (``bench.rules_bench.POLARS_VARIANTS``) over the pristine demo tables
   in memory, checked against stored membership (every segment's size, and membership of a sample of customers);
   then every segment recomputed again by the safety-net path (``jobs.queue(..., "safety_net")`` + ``run_pending``).
2. writes: single ``POST /orders`` and ``POST /events`` and bulk ``POST /events/bulk`` with the segments active,
   then the same with them deactivated (no active segment: nothing to re-evaluate).
3. day: the first ``--day-segments`` segments active again, computed and their wake-ups planned by one pass of the
   product's scheduler (``Scheduler.membership_pass``), then 24 hours of clock time in steps of ``--step-minutes``:
   each step writes orders, events and points (half to customers near a threshold) and runs one scheduler pass
   (window edges, safety nets, queued recomputes, due wake-ups). The daily safety net falls due in the last pass;
   its drift (members it had to add or remove) must be 0.
4. plan (not in the default parts): the wake-ups of the first segment of each time-dependent benchmark rule planned
   once more, as after a first computation (``jobs.plan_all_wakeups``), timed segment by segment.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from bench.common import TOKEN, console, demo_copy, print_table
from bench.rules_bench import NOW, POLARS_VARIANTS, SEED, demo_database, load_frames
from bench.rules_set import BRANDS, BY_NAME, CATEGORIES, RULES, variants
from cohorta import db, rules
from cohorta.app import create_app
from cohorta.clock import FrozenClock
from cohorta.config import Settings
from cohorta.db import unit_of_work
from cohorta.membership.jobs import plan_all_wakeups, queue, run_pending
from cohorta.membership.scheduler import Scheduler
from cohorta.segments.models import MembershipChange, Segment, SegmentMember

SAMPLE_CUSTOMERS = 2_000
TARGET_ADDED_MS = 5.0
TARGET_EVENTS_PER_SECOND = 5_000
TARGET_RATIO = 2.0


def specs(count: int) -> list[tuple[str, str, int, dict[str, Any]]]:
    """(segment name, benchmark rule, variant k, rule JSON) for the first ``count`` rules of ``variants``."""
    out = []
    for number, (base, rule) in enumerate(variants(count)):
        k = number // len(RULES)  # variants goes round robin over the benchmark rules
        assert rule == BY_NAME[base].make(k)
        out.append((f"{base} #{k}", base, k, rule))
    return out


def source_id(index: int) -> str:
    return f"C{index:07d}"


# --------------------------------------------------------------------------------------------------------------------
# Writes


def time_writes(client: TestClient, writes: int, prefix: str, customers: int) -> tuple[list[float], list[float]]:
    """Milliseconds of ``writes`` single orders and as many single events, one customer each."""
    now = client.app.state.clock.now().isoformat()  # type: ignore[attr-defined]
    order_ms, event_ms = [], []
    for n in range(writes):
        who = source_id((n * 7919) % customers + 1)
        started = time.perf_counter()
        client.post(
            "/api/v1/orders", json={"id": f"{prefix}-o{n}", "customer": who, "total": "42.00", "created_at": now}
        ).raise_for_status()
        order_ms.append((time.perf_counter() - started) * 1000)
        body = {"id": f"{prefix}-e{n}", "customer": who, "name": "product_viewed", "timestamp": now,
                "properties": {"category": "shoes"}}  # fmt: skip
        started = time.perf_counter()
        client.post("/api/v1/events", json=body).raise_for_status()
        event_ms.append((time.perf_counter() - started) * 1000)
    return order_ms, event_ms


def event_body(rng: random.Random, event_id: str, who: str, at: datetime) -> dict[str, Any]:
    if rng.random() < 0.75:
        name, properties = "product_viewed", {"category": rng.choice(CATEGORIES), "price": rng.randrange(5, 300)}
    else:
        name, properties = "newsletter_opened", {"campaign": "club-news"}
    return {"id": event_id, "customer": who, "name": name, "timestamp": at.isoformat(), "properties": properties}


def bulk_events(client: TestClient, batches: int, size: int, prefix: str, customers: int) -> tuple[float, float]:
    """Events per second through ``POST /events/bulk`` (random customers, the last two days), median ms/request."""
    rng = random.Random(f"{SEED}-{prefix}")
    now = client.app.state.clock.now()  # type: ignore[attr-defined]
    bodies = [
        json.dumps({"items": [
            event_body(rng, f"{prefix}-b{b}-{i}", source_id(rng.randrange(customers) + 1),
                       now - timedelta(seconds=rng.randrange(2 * 86_400)))
            for i in range(size)
        ]}).encode()
        for b in range(batches)
    ]  # fmt: skip
    seconds = []
    for body in bodies:
        started = time.perf_counter()
        response = client.post("/api/v1/events/bulk", content=body, headers={"Content-Type": "application/json"})
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    return batches * size / sum(seconds), statistics.median(seconds) * 1000


# --------------------------------------------------------------------------------------------------------------------
# Recompute and Polars


def polars_members(customers: int, rules_: list[tuple[str, str, int, dict[str, Any]]], runs: int) -> tuple[
    list[set[int]], float, float]:  # fmt: skip
    """The hand-written Polars answer of every rule over the pristine demo tables in memory: member ids per rule,
    the median seconds of one pass over all rules (``runs`` passes after one warm-up) and the load seconds."""
    started = time.perf_counter()
    # Loaded for this call only: at 1,000,000 customers the frames hold about 10 GB, which the writes measured next
    # would otherwise take from the page cache of the database they read.
    frames = {name: df.lazy() for name, df in load_frames(demo_database(customers)[0]).items()}
    load_s = time.perf_counter() - started
    passes: list[float] = []
    found: list[set[int]] = []
    for run in range(runs + 1):
        started = time.perf_counter()
        results = [POLARS_VARIANTS[base](frames, k).collect()["customer_id"] for _, base, k, _ in rules_]
        if run:
            passes.append(time.perf_counter() - started)
        found = [set(series.to_list()) for series in results]
    return found, statistics.median(passes), load_s


def check_members(factory: sessionmaker[Session], ids: list[str], expected: list[set[int]], customers: int) -> list[
    str]:  # fmt: skip
    """Differences between stored membership and the Polars answer: every segment's size, and exact membership of a
    random sample of customers in every segment."""
    sample = set(random.Random(SEED).sample(range(1, customers + 1), min(SAMPLE_CUSTOMERS, customers)))
    members = SegmentMember.__table__
    problems = []
    with factory() as session:
        counts = dict(session.execute(sa.select(Segment.id, Segment.member_count).where(Segment.id.in_(ids))).all())
        stored: dict[str, set[int]] = {segment_id: set() for segment_id in ids}
        rows = session.execute(
            sa.select(members.c.segment_id, members.c.customer_id).where(
                members.c.segment_id.in_(ids), members.c.customer_id.in_(sorted(sample))
            )
        )
        for segment_id, customer_id in rows:
            stored[segment_id].add(customer_id)
    for segment_id, want in zip(ids, expected, strict=True):
        if counts[segment_id] != len(want) or stored[segment_id] != want & sample:
            problems.append(f"{segment_id}: {counts[segment_id]} members stored, Polars {len(want)}")
    return problems


def recompute_all(factory: sessionmaker[Session], clock: FrozenClock, settings: Settings, ids: list[str]) -> tuple[
    float, int]:  # fmt: skip
    """Every segment recomputed by the safety-net path: seconds, and the drift it found."""
    with unit_of_work(factory) as session:
        for segment in session.scalars(sa.select(Segment).where(Segment.id.in_(ids))):
            queue(segment, clock.now(), "safety_net")
    started = time.perf_counter()
    run_pending(factory, clock, settings)
    seconds = time.perf_counter() - started
    return seconds, drift(factory, ids)[0]


def drift(factory: sessionmaker[Session], ids: list[str]) -> tuple[int, list[str]]:
    """Members the last safety net had to add or remove, over these segments; and the segments with drift."""
    with factory() as session:
        rows = session.execute(
            sa.select(Segment.name, Segment.drift_entered, Segment.drift_exited).where(Segment.id.in_(ids))
        ).all()
    return sum((e or 0) + (x or 0) for _, e, x in rows), [f"{n}: +{e} -{x}" for n, e, x in rows if e or x]


# --------------------------------------------------------------------------------------------------------------------
# The simulated day


def near_thresholds(factory: sessionmaker[Session], now: datetime) -> dict[str, list[str]]:
    """Customers whose next order, product view or points entry crosses a benchmark threshold (source ids)."""
    naive = now.astimezone(UTC).replace(tzinfo=None)
    queries = {
        "orders": """SELECT c.source_id FROM customer_summaries s JOIN customers c ON c.id = s.customer_id
                     WHERE s.order_count = 9 OR s.total_spent_minor BETWEEN 90000 AND 100000
                        OR s.last_order_at BETWEEN :d61 AND :d59""",
        "events": """SELECT c.source_id FROM events e JOIN customers c ON c.id = e.customer_id
                     WHERE e.name = 'product_viewed' AND e.occurred_at > :d30
                     GROUP BY c.source_id HAVING COUNT(*) = 2""",
        "points": """SELECT c.source_id FROM customer_summaries s JOIN customers c ON c.id = s.customer_id
                     WHERE s.points_balance BETWEEN 950 AND 1100""",
    }
    params = {"d61": naive - timedelta(days=61), "d59": naive - timedelta(days=59), "d30": naive - timedelta(days=30)}
    rng = random.Random(SEED)
    out = {}
    with factory() as session:
        for kind, sql in queries.items():
            found = sorted(session.execute(sa.text(sql), params).scalars())
            out[kind] = rng.sample(found, min(len(found), 2_000))
    return out


def day_writes(client: TestClient, rng: random.Random, step: int, near: dict[str, list[str]], customers: int,
               per_step: int, since: datetime) -> int:  # fmt: skip
    """``per_step`` single writes (about 2 orders : 3 events : 1 points entry) at instants since the last step."""
    now = client.app.state.clock.now()  # type: ignore[attr-defined]
    for n in range(per_step):
        kind = ("orders", "events", "events", "orders", "events", "points")[n % 6]
        pool = near[kind]
        who = rng.choice(pool) if pool and rng.random() < 0.5 else source_id(rng.randrange(customers) + 1)
        at = since + (now - since) * rng.random()
        key = f"day-{step}-{n}"
        if kind == "orders":
            cents = rng.randrange(2_000, 15_000)
            item = {"sku": f"SKU-{rng.randrange(500)}", "brand": rng.choice(BRANDS), "category": rng.choice(CATEGORIES),
                    "unit_price": f"{cents / 100:.2f}"}  # fmt: skip
            body = {"id": key, "customer": who, "total": f"{cents / 100:.2f}", "created_at": at.isoformat(),
                    "items": [item]}  # fmt: skip
            client.post("/api/v1/orders", json=body).raise_for_status()
        elif kind == "events":
            client.post("/api/v1/events", json=event_body(rng, key, who, at)).raise_for_status()
        else:
            entry = rng.choice(["earn", "earn", "spend"])
            body = {"id": key, "customer": who, "type": "points", "program": "club", "entry": entry,
                    "points": rng.randrange(20, 120), "timestamp": at.isoformat()}  # fmt: skip
            client.post("/api/v1/loyalty/transactions", json=body).raise_for_status()
    return per_step


def changes_by_cause(factory: sessionmaker[Session], ids: list[str], since: datetime) -> dict[tuple[str, bool], int]:
    history = MembershipChange.__table__
    with factory() as session:
        rows = session.execute(
            sa.select(history.c.cause, history.c.entered, sa.func.count())
            .where(history.c.segment_id.in_(ids), history.c.occurred_at > since)
            .group_by(history.c.cause, history.c.entered)
        ).all()
    return {(cause, bool(entered)): int(n) for cause, entered, n in rows}


# --------------------------------------------------------------------------------------------------------------------


def run_engine(kind: str, args: argparse.Namespace, out: dict[str, list[list[str]]]) -> None:
    parts = set(args.parts.split(","))
    rules_ = specs(args.segments)
    label = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[kind]
    with demo_copy(kind, args.customers) as (url, _):
        engine = db.create_db_engine(url)
        clock = FrozenClock(NOW)
        settings = Settings(database_url=url, admin_token=TOKEN, scheduler=False, timezone="UTC", currency="EUR")
        app = create_app(settings, clock=clock, engine=engine)
        factory: sessionmaker[Session] = app.state.session_factory
        with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            started = time.perf_counter()
            ids = [
                client.post("/api/v1/segments", json={"name": name, "rule": rule}).raise_for_status().json()["id"]
                for name, _, _, rule in rules_
            ]
            run_pending(factory, clock, settings)
            first_s = time.perf_counter() - started
            console.log(f"{kind}: {len(ids)} segments created and computed in {first_s:.1f} s")
            if "recompute" in parts:
                expected, polars_s, load_s = polars_members(args.customers, rules_, args.polars_runs)
                problems = check_members(factory, ids, expected, args.customers)
                del expected  # some GB of ids at 1,000,000 customers
                gc.collect()
                full_s, found = recompute_all(factory, clock, settings, ids)
                ratio = full_s / polars_s
                out["problems"] += [
                    [f"{kind}: stored membership differs from Polars in {problem}"] for problem in problems
                ]
                console.log(f"{kind}: recompute {full_s:.1f} s, Polars {polars_s:.2f} s (tables loaded in {load_s:.1f} "
                            f"s); problems: {problems[:5]}")  # fmt: skip
                out["recompute"].append([
                    label, str(len(ids)), f"{first_s:.1f}", f"{full_s:.1f}", f"{polars_s:.2f}", f"{ratio:.1f}x",
                    "yes" if not problems else f"NO ({len(problems)} differ)", str(found),
                    "met" if ratio <= TARGET_RATIO else "**not met**",
                ])  # fmt: skip
            if "writes" in parts:
                clock.advance(timedelta(seconds=1))
                time_writes(client, 20, "warm", args.customers)
                live = time_writes(client, args.writes, "live", args.customers)
                live_bulk = bulk_events(client, args.bulk_batches, args.bulk_size, "live", args.customers)
                for segment_id in ids:
                    client.post(f"/api/v1/segments/{segment_id}/deactivate").raise_for_status()
                base = time_writes(client, args.writes, "base", args.customers)
                base_bulk = bulk_events(client, args.bulk_batches, args.bulk_size, "base", args.customers)
                for what, without, with_ in (("POST /orders", base[0], live[0]), ("POST /events", base[1], live[1])):
                    added = statistics.median(with_) - statistics.median(without)
                    out["single"].append([
                        label, what, f"{statistics.median(without):.1f}", f"{statistics.median(with_):.1f}",
                        f"{statistics.quantiles(with_, n=10)[-1]:.1f}", f"{added:.1f}",
                        "met" if added < TARGET_ADDED_MS else "**not met**",
                    ])  # fmt: skip
                out["bulk"].append([
                    label, f"{args.bulk_batches} x {args.bulk_size:,}", f"{base_bulk[0]:,.0f}", f"{live_bulk[0]:,.0f}",
                    f"{base_bulk[1]:,.0f}", f"{live_bulk[1]:,.0f}",
                    "met" if live_bulk[0] >= TARGET_EVENTS_PER_SECOND else "**not met**",
                ])  # fmt: skip
            if "plan" in parts:
                out["plan"] += plan_wakeups_once(app, ids, rules_, label)
            if "day" in parts:
                out["day"].append(simulated_day(client, ids, args, label))
        engine.dispose()


def plan_wakeups_once(app: Any, ids: list[str], rules_: list[tuple[str, str, int, dict[str, Any]]],
                      label: str) -> list[list[str]]:  # fmt: skip
    """Plan the wake-ups of the first segment of each time-dependent benchmark rule, as after a first computation
    (``jobs.plan_all_wakeups``): seconds, wake-ups stored, and whether it was planned set-based."""
    factory, clock, settings = app.state.session_factory, app.state.clock, app.state.settings
    index = app.state.segment_index
    rows, seen = [], set()
    for segment_id, (_, base, _, _) in zip(ids, rules_, strict=True):
        if base in seen:
            continue
        seen.add(base)
        with factory() as session:
            live = next((s for s in index.current(session, settings, clock.now()) if s.id == segment_id), None)
            if live is None or not live.requirements.time_dependent:
                continue
            ctx = live.context(clock.now(), settings, index.catalog)
            how = "walked" if rules.time_leaves(live.rule, ctx) is None else "set-based"
        started = time.perf_counter()
        planned = plan_all_wakeups(factory, clock, settings, index, segment_id)
        seconds = time.perf_counter() - started
        console.log(f"{label}: {base}: {planned:,} wake-ups in {seconds:.2f} s ({how})")
        rows.append([label, base, how, f"{planned:,}", f"{seconds:.2f}"])
    return rows


def simulated_day(client: TestClient, ids: list[str], args: argparse.Namespace, label: str) -> list[str]:
    state = client.app.state  # type: ignore[attr-defined]
    clock: FrozenClock = state.clock
    factory: sessionmaker[Session] = state.session_factory
    day_ids = ids[: args.day_segments]
    with factory() as session:
        status = dict(session.execute(sa.select(Segment.id, Segment.status).where(Segment.id.in_(ids))).all())
    for segment_id in ids:  # the day's segments recomputed (then their wake-ups planned), the others inactive
        if segment_id in day_ids:
            action = "refresh" if status[segment_id] == "active" else "activate"
        else:
            action = "deactivate" if status[segment_id] == "active" else ""
        if action:
            client.post(f"/api/v1/segments/{segment_id}/{action}").raise_for_status()
    scheduler = Scheduler(factory, clock, state.settings, state.segment_index)
    clock.advance(timedelta(minutes=1))
    started = time.perf_counter()
    scheduler.membership_pass()  # recomputes what activation queued, then plans every wake-up
    setup_s = time.perf_counter() - started
    with factory() as session:
        live = state.segment_index.current(session, state.settings, clock.now())
    timed_segments = sum(1 for s in live if s.requirements.time_dependent)
    console.log(f"day: {len(day_ids)} segments ({timed_segments} time-dependent) computed, wake-ups planned in "
                f"{setup_s:.0f} s")  # fmt: skip
    start = clock.now()
    near = near_thresholds(factory, start)
    rng = random.Random(SEED)
    steps = 24 * 60 // args.step_minutes
    writes, pass_s, write_s = 0, [], 0.0
    for step in range(steps):
        since = clock.now()
        clock.advance(timedelta(minutes=args.step_minutes))
        started = time.perf_counter()
        writes += day_writes(client, rng, step, near, args.customers, args.writes_per_step, since)
        write_s += time.perf_counter() - started
        started = time.perf_counter()
        scheduler.membership_pass()  # the daily safety net falls due in the last one
        pass_s.append(time.perf_counter() - started)
        if step % 48 == 47:
            console.log(f"day: {(step + 1) * args.step_minutes / 60:.0f} h simulated")
    with factory() as session:
        checked = session.scalars(sa.select(Segment.drift_checked_at).where(Segment.id.in_(day_ids))).all()
    assert all(at is not None and db.as_instant(at) > start for at in checked), "the safety net did not run"
    total, where = drift(factory, day_ids)
    if where:
        console.print(f"[red]Drift[/] in {len(where)} segments: {where[:20]}")
    causes = changes_by_cause(factory, day_ids, start)
    moved = "; ".join(
        f"{cause} +{causes.get((cause, True), 0):,} -{causes.get((cause, False), 0):,}"
        for cause in ("data", "time", "definition")
    )
    return [
        label, f"{len(day_ids)} ({timed_segments})", f"{setup_s:.0f}", f"{steps} x {args.step_minutes} min",
        f"{writes:,}", f"{write_s / writes * 1000:.1f}", f"{statistics.median(pass_s[:-1]) * 1000:.0f}",
        f"{pass_s[-1]:.1f}", moved, str(total), "met" if total == 0 else "**not met**",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--segments", type=int, default=200)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--parts", default="recompute,writes,day")
    parser.add_argument("--writes", type=int, default=200, help="Single writes of each kind, with and without")
    parser.add_argument("--bulk-batches", type=int, default=5)
    parser.add_argument("--bulk-size", type=int, default=5_000)
    parser.add_argument("--polars-runs", type=int, default=3)
    parser.add_argument("--day-segments", type=int, default=200, help="Segments active during the simulated day")
    parser.add_argument("--step-minutes", type=int, default=5)
    parser.add_argument("--writes-per-step", type=int, default=6)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    console.width = max(console.width, 200)
    console.print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()}, {os.cpu_count()} CPUs")
    out: dict[str, list[list[str]]] = {"single": [], "bulk": [], "recompute": [], "day": [], "plan": [], "problems": []}
    for kind in args.engines.split(","):
        run_engine(kind, args, out)
    n = f"{args.customers:,} customers, {args.segments} active segments"
    if out["single"]:
        print_table(f"Single writes, in process ({n}); target: under {TARGET_ADDED_MS:g} ms added",
                    ["engine", "request", "median ms, none active", "median ms, with", "p90 ms, with", "added ms",
                     "target"], out["single"])  # fmt: skip
    if out["bulk"]:
        print_table(f"Bulk events (POST /events/bulk) with live re-evaluation ({n}); target: "
                    f"{TARGET_EVENTS_PER_SECOND:,} events/s",
                    ["engine", "requests", "events/s, none active", "events/s, with", "median ms/request, none",
                     "median ms/request, with", "target"], out["bulk"])  # fmt: skip
    if out["recompute"]:
        print_table(f"Full recompute of every segment ({args.customers:,} customers) beside hand-written Polars in "
                    f"memory; target: {TARGET_RATIO:g}x or better",
                    ["engine", "segments", "first computation s", "safety-net recompute s", "Polars s",
                     "recompute / Polars", "ids equal", "drift", "target"], out["recompute"])  # fmt: skip
    if out["plan"]:
        print_table(f"Wake-ups of a whole segment planned once ({args.customers:,} customers), first segment of each "
                    "time-dependent benchmark rule", ["engine", "rule", "planned", "wake-ups", "seconds"],
                    out["plan"])  # fmt: skip
    if out["day"]:
        print_table(f"Simulated day ({args.customers:,} customers): writes and scheduler passes over 24 h of clock "
                    "time, then the daily safety net; target: drift 0",
                    ["engine", "segments (time-dependent)", "compute + plan wake-ups s", "steps", "writes",
                     "ms/write", "median ms/pass", "safety-net pass s", "membership changes (entered, exited)",
                     "drift", "target"], out["day"])  # fmt: skip
    console.print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()}")
    if out["problems"]:  # the ids check failed: the ratio compares different answers
        for (problem,) in out["problems"][:20]:
            console.print(f"[red]{problem}[/]")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
