"""The segment list and segment analytics over HTTP: ``GET /api/v1/segments`` (search, filters, sorts) with many
segments, and ``GET /api/v1/segments/{id}/analytics``, ``POST /api/v1/segments/overlap`` and
``POST /api/v1/segments/combine`` on real, computed segments.

Targets (the issue): the segment list answers in under 100 ms (median) with 1,000 segments over 1,000,000 customers;
each analytics answer in under 1 s (median) at 1,000,000 customers.

Usage: python -m bench.analytics_bench [--customers 100000] [--segments 1000] [--list-runs 50]
       [--analytics-runs 10] [--runs N (both)] [--rebuild] [--only-analytics]
   or: bash bench/run.sh analytics   (CUSTOMERS, SEGMENTS, LIST_RUNS, ANALYTICS_RUNS)
   The issue's size: python -m bench.analytics_bench --customers 1000000
   (builds the 1,000,000-customer demo database once, about 12 minutes and 15 GB in $COHORTA_BENCH_CACHE, then
   copies it: about 30 GB of free disk needed while it runs)

Copies the cached demo database (``bench.rules_bench`` builds it into ``$COHORTA_BENCH_CACHE``, default
/tmp/cohorta-bench) into a temporary folder, then:

1. Real segments: creates in process (``segments.service.create_segment``, system principal) five dynamic segments
   on the demo data (:data:`REAL_SEGMENTS`) and computes their membership with ``membership.jobs.run_pending``
   (timed, and each segment's own recompute time read back from the segment).
2. Synthetic segments, up to ``--segments`` in all: rows inserted straight into the ``segments`` table, each a copy of
   every column of a real segment's row with a new id and name, and varied type, status, team, creation instant and
   figures (member count, orders and spending, and the averages derived from them as the application derives them).
   They have no stored members: the segment list reads only the ``segments`` table (the figures are kept on it), so
   they are real rows for the list measurement, and are never used for analytics.
3. ``cohorta serve`` on a loopback port (``bench.common.server``), with ``COHORTA_SCHEDULER=false``: its periodic
   statistics recount would reset the synthetic segments' figures (they have no stored members) and its safety-net
   recomputes would compete with the measured requests.
4. Over HTTP, one request at a time (an ``httpx.Client`` with keep-alive; latency = send to last body byte, the
   client's own cost included - the ``health`` row shows that floor): each case gets one uncounted warm-up request
   ("first"), then ``--list-runs`` (list) or ``--analytics-runs`` (analytics) timed ones; median, p95 (nearest rank)
   and max. ``POST /segments/combine`` (intersection, saved as a static segment) runs once, at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from bench.common import console, demo_copy, run_queued, server
from cohorta import db
from cohorta.access.service import system_principal
from cohorta.clock import SystemClock
from cohorta.config import Settings
from cohorta.membership import monthly
from cohorta.membership.jobs import run_pending
from cohorta.membership.service import divide_minor, recount_all_statistics
from cohorta.segments.models import Segment
from cohorta.segments.schemas import SegmentIn
from cohorta.segments.service import create_segment, new_segment_id

LIST_TARGET_MS = 100.0
ANALYTICS_TARGET_MS = 1000.0
UI_TARGET_MS = 200.0  # issue 7: list pages render in under 200 ms of server time
SEED = 11
API = "/api/v1"
PAGE = 50
#: The real segments: (name, rule). Membership is computed for them; analytics use only these.
REAL_SEGMENTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("Customers in Poland", {"field": "profile.country", "op": "in", "value": ["PL"]}),
    ("Spent over 500", {"field": "summary.total_spent", "op": "gt", "value": 500}),
    ("Club gold or platinum", {"field": "loyalty.club.tier", "op": "in", "value": ["gold", "platinum"]}),
    ("Ten orders or more", {"field": "summary.order_count", "op": "gte", "value": 10}),
    ("Loyalty members", {"field": "profile.loyalty_member", "op": "is", "value": True}),
)
# Synthetic names: "<adjective> <noun> <country> #<n>"; searches type the first three letters of a word.
ADJECTIVES = ("Loyal", "Lapsed", "High value", "Weekend", "Summer", "Winter", "Newsletter", "Churn risk", "VIP",
              "Mobile", "Frequent", "Dormant", "New", "Family", "Student", "Premium", "Discount", "Holiday", "Local",
              "Online", "Birthday", "Returning", "Gift card", "Outlet")  # fmt: skip
NOUNS = ("buyers", "shoppers", "members", "customers", "fans", "subscribers", "savers", "visitors")
COUNTRIES = ("PL", "DE", "FR", "GB", "ES", "IT", "NL", "SE", "US", "CZ")
SEARCHES = ("loy", "sum", "pre", "buy", "fre", "hol", "mem", "dor", "stu", "onl")  # typed as a search box would get
TEAMS = (None, None, "crm", "marketing", "stores", "ecommerce", "loyalty")
wide = Console(width=max(console.width, 170))  # tables unwrapped, also when not on a terminal


@dataclass
class RealSegment:
    id: str
    name: str
    rule: str
    members: int
    recompute_ms: int | None


@dataclass
class Case:
    """One measured request shape."""

    group: str  # "list", "analytics" or "floor"
    name: str
    request: str  # method and path, as shown
    target_ms: float | None
    first_ms: float = 0.0  # the uncounted warm-up request (or the one request of a single run)
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    answer: str = ""  # what came back, e.g. "50 of 612"

    @property
    def median(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p95(self) -> float:
        return nearest_rank(self.latencies_ms, 0.95)

    @property
    def met(self) -> bool | None:
        return None if self.target_ms is None or not self.latencies_ms else self.median < self.target_ms


@dataclass
class Results:
    engine: str
    customers: int
    real: list[RealSegment]
    synthetic: int
    segments_total: int
    statuses: dict[str, int]
    seconds: dict[str, float]
    cases: list[Case]
    list_runs: int
    analytics_runs: int
    window: tuple[date, date]
    load_average: dict[str, tuple[float, float, float]] = field(default_factory=dict)


def nearest_rank(values: list[float], q: float) -> float:
    """The ``q`` quantile by nearest rank (with 10 values, p95 is the largest)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# --------------------------------------------------------------------------------------------------------------------
# Setup


def real_segments(url: str) -> tuple[list[RealSegment], dict[str, float]]:
    """The dynamic segments of :data:`REAL_SEGMENTS`, created and computed in process."""
    settings = Settings(database_url=url, scheduler=False, log_level="warning")
    engine = db.create_db_engine(url)
    factory = db.make_session_factory(engine)
    clock = SystemClock()
    principal = system_principal("analytics-bench")
    ids = []
    started = time.perf_counter()
    # What the scheduler does first after the upgrade that added them (the demo cache predates them).
    monthly.build_if_needed(factory, settings.timezone)
    seconds = {"month figures built": time.perf_counter() - started}
    started = time.perf_counter()
    for name, rule in REAL_SEGMENTS:
        with db.unit_of_work(factory) as session:
            ids.append(create_segment(session, settings, clock, SegmentIn(name=name, rule=rule), principal).id)
    seconds["real segments created"] = time.perf_counter() - started
    started = time.perf_counter()
    run_pending(factory, clock, settings)
    seconds["real segments computed"] = time.perf_counter() - started
    recount_all_statistics(factory, clock.now())  # the scheduler's first pass does it too
    out = []
    with factory() as session:
        for segment_id in ids:
            segment = session.get(Segment, segment_id)
            assert segment is not None
            if segment.refresh_state != "done":
                raise RuntimeError(f"{segment.name}: not computed ({segment.refresh_state}: {segment.refresh_error})")
            out.append(RealSegment(segment.id, segment.name, segment.rule_text or "", segment.member_count,
                                   segment.refresh_duration_ms))  # fmt: skip
    engine.dispose()
    return out, seconds


def synthetic_rows(template: dict[str, Any], rules: list[dict[str, Any]], count: int, customers: int,
                   now: datetime, rng: random.Random) -> list[dict[str, Any]]:  # fmt: skip
    """``count`` copies of a real segment's row (every column) with new ids and names and varied attributes and
    figures; the averages are derived from the sums as ``membership.service.derive_averages`` does."""
    rows = []
    for n in range(1, count + 1):
        row = dict(template)
        kind = rng.choices(("dynamic", "static", "external"), weights=(6, 3, 1))[0]
        status = rng.choices(("active", "inactive", "archived"), weights=(6, 2.5, 1.5))[0]
        created = now - timedelta(days=rng.uniform(0, 3 * 365))
        updated = min(now, created + timedelta(days=rng.uniform(0, 90)))
        source = rng.choice(rules)
        members = 0 if rng.random() < 0.05 else int(math.exp(rng.uniform(math.log(10), math.log(max(customers, 11)))))
        members = min(members, customers)
        orders = round(members * rng.uniform(0.5, 15))
        spent = round(orders * rng.uniform(1_500, 25_000))  # average order value 15 to 250 in the currency
        row.update(
            id=new_segment_id(),
            name=f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(COUNTRIES)} #{n:04d}",
            description=f"Synthetic segment {n} (analytics benchmark)",
            type=kind,
            status=status,
            rule=source["rule"] if kind == "dynamic" else None,
            rule_text=source["rule_text"] if kind == "dynamic" else None,
            team=rng.choice(TEAMS),
            customer_groups=rng.sample(["newsletter", "vip", "b2b", "staff", "app"], rng.randint(0, 2)),
            created_at=created,
            created_by="analytics-bench",
            updated_at=updated,
            updated_by="analytics-bench",
            archived_at=updated if status == "archived" else None,
            member_count=members,
            stats_orders=orders,
            stats_spent_minor=spent,
            stats_at=now,
            avg_transactions=orders / members if members else None,
            avg_spending_minor=divide_minor(spent, members) if members else None,
            avg_transaction_value_minor=divide_minor(spent, orders) if members and orders else None,
            avg_clv_minor=None,  # null until CLV is modelled, as on the real segments
            list_digest=None,
        )
        rows.append(row)
    return rows


def add_synthetic(url: str, real: list[RealSegment], total: int, customers: int) -> tuple[int, dict[str, int]]:
    """Insert synthetic segments up to ``total`` segments in all; (how many inserted, segments by status)."""
    engine = db.create_db_engine(url)
    table = Segment.__table__
    rng = random.Random(SEED)
    count = max(0, total - len(real))
    with engine.begin() as connection:
        templates = [dict(r) for r in connection.execute(
            sa.select(table).where(table.c.id.in_([s.id for s in real]))
        ).mappings()]  # fmt: skip
        if count:
            rows = synthetic_rows(templates[0], templates, count, customers, datetime.now(UTC), rng)
            connection.execute(sa.insert(table), rows)
        statuses = dict(connection.execute(sa.select(table.c.status, sa.func.count()).group_by(table.c.status)).all())
    engine.dispose()
    return count, {str(k): int(v) for k, v in statuses.items()}


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Environment variables set for what starts inside (``bench.common.server`` passes ``os.environ`` on)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------------------------------------------------
# Measuring


Send = Callable[[httpx.Client, int], httpx.Response]


def measure(client: httpx.Client, case: Case, send: Send, runs: int, describe: Callable[[Any], str]) -> Case:
    """One warm-up request (``first_ms``), then ``runs`` timed ones, one at a time; request ``i`` is ``send(c, i)``."""
    clock = time.perf_counter
    for i in range(runs + 1):
        started = clock()
        try:
            response = send(client, i)
            response.read()
        except httpx.HTTPError as exc:
            case.errors.append(f"{type(exc).__name__}: {exc}")
            continue
        elapsed = (clock() - started) * 1000
        if not response.is_success:
            case.errors.append(f"{response.status_code}: {response.text[:300]}")
            continue
        if i == 0:
            case.first_ms = elapsed
            html = not response.headers.get("content-type", "").startswith("application/json")
            case.answer = describe(response.text if html else response.json())
            if runs == 0:
                case.latencies_ms.append(elapsed)  # a single run: the one request is the measurement
        else:
            case.latencies_ms.append(elapsed)
    return case


def page(body: dict[str, Any]) -> str:
    return f"{len(body['items'])} of {body['total']:,}"


def list_cases(client: httpx.Client, runs: int, customers: int, today: date) -> list[Case]:
    segments = f"{API}/segments"
    filters = {
        "status": "active", "members_min": max(1, customers // 1000), "members_max": customers // 2,
        "avg_spending_min": "100", "avg_spending_max": "2000",
        "created_from": (today - timedelta(days=365)).isoformat(), "created_to": today.isoformat(), "limit": PAGE,
    }  # fmt: skip
    shown_filters = "&".join(f"{k}={v}" for k, v in filters.items() if k != "limit")
    searches = ",".join(SEARCHES)  # request i searches SEARCHES[i % 10]
    specs: list[tuple[str, str, Send]] = [
        ("no filter (sort by name)", f"GET {segments}?limit={PAGE}",
         lambda c, i: c.get(segments, params={"limit": PAGE})),
        ("search as you type (q, 3 letters, 10 in turn)", f"GET {segments}?q={{{searches}}}&limit={PAGE}",
         lambda c, i: c.get(segments, params={"q": SEARCHES[i % len(SEARCHES)], "limit": PAGE})),
        ("several filters at once", f"GET {segments}?{shown_filters}&limit={PAGE}",
         lambda c, i: c.get(segments, params=filters)),
        ("sorted by -avg_spending", f"GET {segments}?sort=-avg_spending&limit={PAGE}",
         lambda c, i: c.get(segments, params={"sort": "-avg_spending", "limit": PAGE})),
        ("q + filters + sort -avg_spending",
         f"GET {segments}?q={{{searches}}}&{shown_filters}&sort=-avg_spending&limit={PAGE}",
         lambda c, i: c.get(segments, params={**filters, "q": SEARCHES[i % len(SEARCHES)], "sort": "-avg_spending"})),
        ("page 10 (offset 450), sort -members", f"GET {segments}?sort=-members&offset=450&limit={PAGE}",
         lambda c, i: c.get(segments, params={"sort": "-members", "offset": 450, "limit": PAGE})),
    ]  # fmt: skip
    return [measure(client, Case("list", name, shown, LIST_TARGET_MS), send, runs, page)
            for name, shown, send in specs]  # fmt: skip


def analytics_cases(client: httpx.Client, url: str, runs: int, real: list[RealSegment],
                    window: tuple[date, date]) -> list[Case]:  # fmt: skip
    by_size = sorted(real, key=lambda s: (-s.members, s.name))
    biggest, smallest = by_size[0], by_size[-1]
    span = {"from": window[0].isoformat(), "to": window[1].isoformat()}
    three, five = [s.id for s in by_size[:3]], [s.id for s in by_size[:5]]

    def months(body: dict[str, Any]) -> str:
        return f"{body['members']:,} members, {len(body['months'])} months, {len(body['size'])} days"

    def overlap(body: dict[str, Any]) -> str:
        return f"{len(body['intersections'])} intersections, {len(body['pairs'])} pairs"

    cases = []
    for label, segment in (("biggest", biggest), ("smallest", smallest)):
        path = f"{API}/segments/{segment.id}/analytics"
        case = Case("analytics", f"analytics, {label} real segment ({segment.name}, {segment.members:,})",
                    f"GET {API}/segments/{{id}}/analytics?from={span['from']}&to={span['to']}",
                    ANALYTICS_TARGET_MS)  # fmt: skip
        cases.append(measure(client, case, lambda c, i, path=path: c.get(path, params=span), runs, months))
    for ids in (three, five):
        case = Case("analytics", f"overlap of the {len(ids)} biggest real segments", f"POST {API}/segments/overlap",
                    ANALYTICS_TARGET_MS)  # fmt: skip
        body = {"segments": ids}
        cases.append(measure(client, case, lambda c, i, body=body: c.post(f"{API}/segments/overlap", json=body),
                             runs, overlap))  # fmt: skip
    case = Case("analytics", "combine: intersection of the 3 biggest, saved (once)", f"POST {API}/segments/combine",
                ANALYTICS_TARGET_MS)  # fmt: skip
    combine = {"operation": "intersection", "segments": three, "name": "Intersection (analytics bench)"}
    saved: dict[str, Any] = {}

    def answer_kept(body: dict[str, Any]) -> str:
        saved.update(body)
        if body["refresh"]["state"] == "queued":
            return "list saved; members entering (job queued)"
        return f"{body['members']:,} members saved"

    cases.append(measure(client, case, lambda c, i: c.post(f"{API}/segments/combine", json=combine), 0, answer_kept))
    if saved.get("refresh", {}).get("state") == "queued":  # a long list: its members enter in the background
        started = time.perf_counter()
        run_queued(url)
        elapsed = (time.perf_counter() - started) * 1000
        members = client.get(f"{API}/segments/{saved['id']}").raise_for_status().json()["members"]
        cases.append(Case("analytics", "combine: the saved segment's members entered by its job (once)",
                          "membership.jobs.run_pending, in this process", None, first_ms=elapsed,
                          latencies_ms=[elapsed], answer=f"{members:,} members entered"))  # fmt: skip
    return cases


UI_EMAIL, UI_PASSWORD = "bench@ui.local", "bench-ui-password"


@contextlib.contextmanager
def ui_browser(api: httpx.Client) -> Iterator[httpx.Client]:
    """A client logged in through the UI's login form, as a browser is: the session cookie, no bearer token."""
    created = api.post(f"{API}/users", json={"email": UI_EMAIL, "password": UI_PASSWORD, "role": "admin"})
    if created.status_code not in (201, 409):
        raise RuntimeError(f"creating the UI user failed: {created.status_code} {created.text[:200]}")
    with httpx.Client(base_url=api.base_url, timeout=60) as browser:
        form = browser.get("/ui/login").text  # the form's token, with its cookie
        token = form.split('name="login_token" value="', 1)[1].split('"', 1)[0]
        login = browser.post("/ui/login", data={"email": UI_EMAIL, "password": UI_PASSWORD, "login_token": token})
        if login.status_code != 303:
            raise RuntimeError(f"UI login failed: {login.status_code} {login.text[:200]}")
        yield browser


def ui_cases(api: httpx.Client, runs: int, real: list[RealSegment], customers: int) -> list[Case]:
    """The UI's list pages (and, beside them, the segment page and its member table), as a browser asks for them."""
    biggest = max(real, key=lambda s: s.members)
    fragment = {"HX-Request": "true", "HX-Target": "segment-table"}
    filters = {"status": "active", "members_min": str(max(1, customers // 1000)), "avg_spending_min": "100",
               "sort": "-avg_spending"}  # fmt: skip
    some_id = f"C{customers // 2:07d}"

    def size(text: str) -> str:
        return f"{len(text):,} bytes of HTML"

    list_page, other = UI_TARGET_MS, None  # the target is set for list pages; the others are shown beside them
    specs: list[tuple[str, str, float | None, Send]] = [
        ("UI: segment list page", "GET /ui/segments", list_page, lambda c, i: c.get("/ui/segments")),
        ("UI: search as you type (htmx table fragment)", "GET /ui/segments?q={...} (HX-Request)", list_page,
         lambda c, i: c.get("/ui/segments", params={"q": SEARCHES[i % len(SEARCHES)]}, headers=fragment)),
        ("UI: filters + sort (htmx table fragment)", "GET /ui/segments?status=active&members_min=..&sort=-avg_spending",
         list_page, lambda c, i: c.get("/ui/segments", params=filters, headers=fragment)),
        ("UI: campaign list page", "GET /ui/campaigns", list_page, lambda c, i: c.get("/ui/campaigns")),
        ("UI: customer search (id prefix)", f"GET /ui/customers?q={some_id[:6]}", list_page,
         lambda c, i: c.get("/ui/customers", params={"q": some_id[:6]})),
        ("UI: member table fragment (50 rows)", "GET /ui/segments/{id}/members (biggest real segment)", list_page,
         lambda c, i: c.get(f"/ui/segments/{biggest.id}/members", headers={"HX-Request": "true"})),
        (f"UI: segment page ({biggest.name}, {biggest.members:,})", "GET /ui/segments/{id}", other,
         lambda c, i: c.get(f"/ui/segments/{biggest.id}")),
        ("UI: customer profile", "GET /ui/customers/{id}", other, lambda c, i: c.get(f"/ui/customers/{some_id}")),
    ]  # fmt: skip
    with ui_browser(api) as browser:
        return [measure(browser, Case("ui", name, shown, target), send, runs, size)
                for name, shown, target, send in specs]  # fmt: skip


def twelve_months(today: date) -> tuple[date, date]:
    """From the first day of the month eleven months back to today: twelve calendar months."""
    month = today.year * 12 + today.month - 1 - 11
    return date(month // 12, month % 12 + 1, 1), today


def run(demo: contextlib.AbstractContextManager[tuple[str, int]], engine: str, *, segments: int = 1000,
        list_runs: int = 50, analytics_runs: int = 10, only_analytics: bool = False) -> Results:  # fmt: skip
    """The whole benchmark on ``demo``, a working copy of a demo data set (its URL and its customers) in ``engine``
    ("sqlite": a copy of the cached database; "postgresql": a database loaded for the run), removed afterwards by
    the context; ``only_analytics``: without the segment list and UI cases."""
    load_average: dict[str, tuple[float, float, float]] = {"start": os.getloadavg()}
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with demo as (url, customers):
        seconds["copy" if engine == "sqlite" else "demo data loaded"] = time.perf_counter() - started
        real, real_seconds = real_segments(url)
        seconds |= real_seconds
        load_average["real segments computed"] = os.getloadavg()
        started = time.perf_counter()
        synthetic, statuses = add_synthetic(url, real, segments, customers)
        seconds["synthetic segments inserted"] = time.perf_counter() - started
        today = datetime.now(UTC).date()  # the server's clock and time zone (UTC by default)
        window = twelve_months(today)
        cases: list[Case] = []
        with environment(COHORTA_SCHEDULER="false"), server(url) as client:
            health = Case("floor", "health (HTTP and client floor)", f"GET {API}/health", None)
            cases.append(measure(client, health, lambda c, i: c.get(f"{API}/health"), list_runs, lambda b: "ok"))
            load_average["list"] = os.getloadavg()
            if not only_analytics:
                cases += list_cases(client, list_runs, customers, today)
            load_average["analytics"] = os.getloadavg()
            cases += analytics_cases(client, url, analytics_runs, real, window)
            load_average["ui"] = os.getloadavg()
            if not only_analytics:
                cases += ui_cases(client, list_runs, real, customers)
        load_average["end"] = os.getloadavg()
    return Results(engine, customers, real, synthetic, len(real) + synthetic, statuses, seconds, cases, list_runs,
                   analytics_runs, window, load_average)  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# Tables


def print_table(title: str, columns: list[str], rows: list[list[str]], left: int = 1) -> None:
    """Like ``bench.common.print_table``, on a console wide enough for every column; the first ``left`` columns
    left-aligned."""
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i < left else "right")
    for row in rows:
        table.add_row(*row)
    wide.print(table)


def case_rows(cases: list[Case]) -> list[list[str]]:
    out = []
    for c in cases:
        met = c.met
        out.append([
            c.name, str(len(c.latencies_ms)), str(len(c.errors)), c.answer, f"{c.first_ms:,.1f}",
            f"{c.median:,.1f}", f"{c.p95:,.1f}", f"{max(c.latencies_ms, default=float('nan')):,.1f}",
            "-" if c.target_ms is None else f"< {c.target_ms:,.0f}",
            "-" if met is None else ("yes" if met else "NO"),
        ])  # fmt: skip
    return out


def requests(cases: list[Case]) -> None:
    wide.print("Requests:")
    for c in cases:
        wide.print(f"  {c.name}: {c.request}", soft_wrap=True)


def report(results: Results, build_s: float | None) -> None:
    s = results.seconds
    if results.engine == "sqlite":
        built = f"built in {build_s:.0f} s" if build_s is not None else "cached"
        source = f"SQLite: demo database {built}; copied in {s['copy']:.1f} s"
    else:
        source = f"PostgreSQL: demo data loaded in {s['demo data loaded']:.0f} s"
    wide.print(
        f"{results.customers:,} customers ({source}; month figures built "
        f"in {s['month figures built']:.1f} s). Real dynamic "
        f"segments: {len(results.real)} created in {s['real segments created']:.2f} s, membership computed with "
        f"membership.jobs.run_pending in {s['real segments computed']:.2f} s. Synthetic segments: "
        f"{results.synthetic:,} rows inserted into the segments table in {s['synthetic segments inserted']:.2f} s "
        f"({results.segments_total:,} segments in all; by status: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(results.statuses.items())) + ")."
    )  # fmt: skip
    print_table(
        "Real segments (analytics use only these)",
        ["segment", "rule", "members", "recompute ms (refresh_duration_ms)"],
        [
            [r.name, r.rule, f"{r.members:,}", "-" if r.recompute_ms is None else f"{r.recompute_ms:,}"]
            for r in results.real
        ],
        left=2,
    )
    wide.print(
        "Load average (1, 5, 15 min): "
        + "; ".join(f"{stage} {a:.2f} {b:.2f} {c:.2f}" for stage, (a, b, c) in results.load_average.items())
        + f" ({os.cpu_count()} CPUs)"
    )
    floor = [c for c in results.cases if c.group == "floor"]
    listed = [c for c in results.cases if c.group == "list"]
    analysed = [c for c in results.cases if c.group == "analytics"]
    columns = ["case", "runs", "errors", "answer", "first ms", "median ms", "p95 ms", "max ms", "target",
               "median met"]  # fmt: skip
    print_table(
        f"Segment list over HTTP: {results.segments_total:,} segments ({results.synthetic:,} synthetic rows), "
        f"{results.customers:,} customers; {results.list_runs} sequential requests per case after 1 warm-up "
        f"('first'); page size {PAGE}",
        columns, case_rows(floor + listed),
    )  # fmt: skip
    requests(floor + listed)
    start, end = results.window
    print_table(
        f"Analytics over HTTP on the real segments, {results.customers:,} customers; {results.analytics_runs} "
        f"sequential requests per case after 1 warm-up ('first'); analytics from {start} to {end} (12 months); "
        "combine: one request",
        columns, case_rows(analysed),
    )  # fmt: skip
    requests(analysed)
    pages = [c for c in results.cases if c.group == "ui"]
    if pages:  # (none with --only-analytics)
        print_table(
            f"Web UI pages over HTTP (a logged-in browser session), {results.customers:,} customers; "
            f"{results.list_runs} sequential requests per case after 1 warm-up ('first'); target: list pages",
            columns, case_rows(pages),
        )  # fmt: skip
        requests(pages)
    wide.print(
        "Notes: latency is send to last body byte in this process (httpx, keep-alive), the client's own cost included "
        "(see the health row). p95 is by nearest rank (with 10 runs: the largest). 'answer' is from the warm-up "
        "request: for the list, the rows on the page of the total matching. The server runs with "
        "COHORTA_SCHEDULER=false, so a saved combination's background job (a list over 20,000) is run by this "
        "process, timed on its own row. The synthetic segments are rows of the segments table only (no stored "
        "members): legitimate for the list, which reads only that table; analytics use the real segments."
    )
    errors = [(c.name, e) for c in results.cases for e in c.errors]
    if errors:
        wide.print("[red]Errors:[/]")
        for name, error in errors[:20]:
            wide.print(f"  - {name}: {error}")


def main() -> None:
    from bench.rules_bench import demo_database

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000, help="Demo size (the issue's: 1000000)")
    parser.add_argument("--segments", type=int, default=1000, help="Segments in all (5 real, the rest synthetic)")
    parser.add_argument("--list-runs", type=int, default=50, help="Timed requests per segment-list case")
    parser.add_argument("--analytics-runs", type=int, default=10, help="Timed requests per analytics case")
    parser.add_argument("--runs", type=int, default=None, help="Both --list-runs and --analytics-runs")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite",
                        help="sqlite: a copy of the cached demo database; postgresql: the demo loaded afresh")
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the cached (SQLite) demo database")
    parser.add_argument("--only-analytics", action="store_true", help="Skip the segment list and UI cases")
    args = parser.parse_args()
    if args.runs is not None:
        args.list_runs = args.analytics_runs = args.runs
    if args.list_runs < 1 or args.analytics_runs < 1:
        parser.error("runs must be at least 1")
    build_s = demo_database(args.customers, rebuild=args.rebuild)[1] if args.engine == "sqlite" else None
    results = run(demo_copy(args.engine, args.customers), args.engine, segments=args.segments, list_runs=args.list_runs,
                  analytics_runs=args.analytics_runs, only_analytics=args.only_analytics)  # fmt: skip
    report(results, build_s)


if __name__ == "__main__":
    main()
