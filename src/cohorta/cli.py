"""The ``cohorta`` command line."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from cohorta import db
from cohorta.access.service import generate_token
from cohorta.config import Settings, get_settings

app = typer.Typer(help="Cohorta: customer segmentation engine for loyalty programs and commerce.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)
users_app = typer.Typer(help="People who log in.", no_args_is_help=True)
clv_app = typer.Typer(help="Predicted customer lifetime value (BG/NBD x Gamma-Gamma).", no_args_is_help=True)
analytics_app = typer.Typer(help="Segment analytics.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
app.add_typer(users_app, name="users")
app.add_typer(clv_app, name="clv")
app.add_typer(analytics_app, name="analytics")
console = Console()

if TYPE_CHECKING:
    from cohorta.clv.models import ClvModel

TOKEN_FILE = Path(".cohorta-admin-token")
DEMO_LOGIN_FILE = Path(".cohorta-demo-login")
DEMO_ADMIN_EMAIL = "admin@demo.cohorta.dev"


def _engine(settings: Settings) -> sa.Engine:
    return db.create_db_engine(settings.database_url)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Apply the schema migrations."""
    settings = get_settings()
    engine = _engine(settings)
    db.upgrade(engine, revision)
    console.print(f"[green]Database at revision {db.current_revision(engine)}[/] ({engine.url.render_as_string()})")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database."""
    engine = _engine(get_settings())
    console.print(db.current_revision(engine) or "empty (no migrations applied)")


@contextmanager
def _progress_bars() -> Iterator[Callable[[str, int, int], None]]:
    """Rich progress bars, one per stage: yields ``report(stage, done, total)``."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield report


def _load_demo(engine: sa.Engine, customers: int, seed: int, timezone: str) -> None:
    from cohorta.demo.generator import load_demo

    with _progress_bars() as report:
        # With the analytics' month figures in the project's zone: nothing is left for the scheduler to build.
        stats = load_demo(engine, customers=customers, seed=seed, now=datetime.now(UTC), progress=report,
                          month_zone=timezone)
    console.print(f"[green]Demo data loaded:[/] {stats}")


@demo_app.command("load")
def demo_load(
    customers: Annotated[int, typer.Option(min=1, help="How many customers to generate")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data")] = 7,
) -> None:
    """Generate a realistic demo data set into an empty database (migrating it first)."""
    settings = get_settings()
    engine = _engine(settings)
    db.upgrade(engine)
    if not _is_empty(engine):
        console.print("[red]The database already holds customers; demo data loads only into an empty one.[/]")
        raise typer.Exit(code=1)
    _load_demo(engine, customers, seed, settings.timezone)


def _is_empty(engine: sa.Engine) -> bool:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT 1 FROM customers LIMIT 1")).first() is None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes (each with its scheduler)")] = 1,
) -> None:
    """Migrate the database and serve the API, its docs and the web UI."""
    import uvicorn

    from cohorta.app import create_app

    settings = get_settings()
    engine = _engine(settings)
    db.upgrade(engine)
    bind_host, bind_port = host or settings.host, port or settings.port
    if workers == 1:
        uvicorn.run(create_app(settings, engine=engine), host=bind_host, port=bind_port, log_level=settings.log_level)
        return
    engine.dispose()
    # Several processes: each builds its app from the same environment. Their schedulers share the work safely
    # (recomputes lock the segment they change; a scheduled delivery is claimed by exactly one).
    uvicorn.run(
        "cohorta.app:create_app", factory=True, workers=workers, host=bind_host, port=bind_port,
        log_level=settings.log_level,
    )  # fmt: skip


@app.command()
def worker(
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between passes")] = 1.0,
) -> None:
    """Run recompute jobs, wake-ups, window edges and safety nets in this process (for `serve` with
    COHORTA_SCHEDULER=false, or beside several `serve` processes)."""
    import signal
    import threading

    from cohorta.clock import SystemClock
    from cohorta.evaluation.store import warm_up
    from cohorta.membership.live import SegmentIndex
    from cohorta.membership.scheduler import Scheduler

    settings = get_settings()
    engine = _engine(settings)
    db.upgrade(engine)
    warm_up()
    scheduler = Scheduler(db.make_session_factory(engine), SystemClock(), settings, SegmentIndex(), interval=interval)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scheduler.start()
    console.print(f"[green]Cohorta worker running[/] ({engine.url.render_as_string()}); Ctrl+C to stop")
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        scheduler.stop()


@app.command("export")
def export(
    segment_id: Annotated[str, typer.Argument(help="The segment's id")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write; the format follows its extension")],
    attribute: Annotated[list[str] | None, typer.Option(help="A custom attribute to add (repeatable)")] = None,
    filter_text: Annotated[str | None, typer.Option("--filter", help="Only members matching this rule (text)")] = None,
    activity: Annotated[str | None, typer.Option(help="Export the members' orders, events or points instead")] = None,
    start: Annotated[datetime | None, typer.Option("--from", help="Activity from (UTC; default: a year ago)")] = None,
    end: Annotated[datetime | None, typer.Option("--to", help="Activity up to, excluded (default: now)")] = None,
) -> None:
    """Export a segment's members (or their activity) to CSV, JSON Lines or Parquet, with a progress bar."""
    from cohorta.access.service import system_principal
    from cohorta.clock import SystemClock
    from cohorta.errors import CohortaError, InvalidInput
    from cohorta.exports import service

    fmt = out.suffix.lstrip(".").lower()
    if fmt not in ("csv", "jsonl", "parquet"):
        console.print("[red]--out must end in .csv, .jsonl or .parquet[/]")
        raise typer.Exit(2)
    import pyarrow as pa

    # Arrow's memory from the C library: its default allocator keeps freed batches' pages (about 30 MB more RSS here).
    pa.set_memory_pool(pa.system_memory_pool())
    settings = get_settings()
    engine = _engine(settings)
    clock = SystemClock()
    with db.make_session_factory(engine)() as session:
        try:
            if activity:
                if activity not in ("orders", "events", "points"):
                    raise typer.BadParameter("one of orders, events, points", param_hint="--activity")
                last = _utc(end) or clock.now()
                first = _utc(start) or last - timedelta(days=365)
                exported = service.activity_export(session, settings, system_principal("cli"), segment_id,
                                                   activity, first, last)  # type: ignore[arg-type]  # fmt: skip
            else:
                exported = service.members_export(session, settings, clock, system_principal("cli"), segment_id,
                                                  attributes=attribute or [], filter_text=filter_text)  # fmt: skip
        except InvalidInput as exc:
            console.print(f"[red]{'; '.join(e.message for e in exc.errors)}[/]")
            raise typer.Exit(1) from None
        except CohortaError as exc:
            console.print(f"[red]{exc.detail}[/]")
            raise typer.Exit(1) from None
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task(out.name, total=exported.total)
        partial = out.with_name(out.name + ".partial")
        with partial.open("wb") as handle:
            for chunk in service.encode(exported, fmt, lambda n: progress.update(task, completed=n)):  # type: ignore[arg-type]
                handle.write(chunk)
        partial.replace(out)
    console.print(f"[green]{exported.total:,} rows[/] written to {out}")


def _utc(value: datetime | None) -> datetime | None:
    """A datetime from the command line: naive ones are UTC."""
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def _show_model(row: ClvModel) -> None:
    from cohorta.clv.service import model_out

    out = model_out(row)
    bgnbd, spend = out.params["bgnbd"], out.params["gamma_gamma"]
    console.print(f"Model {out.id}: fitted {out.fitted_at:%Y-%m-%d %H:%M} UTC with {out.library} ({out.method})")
    console.print("  BG/NBD       " + "  ".join(f"{k} {v:.4g}" for k, v in bgnbd.items()))
    console.print("  Gamma-Gamma  " + "  ".join(f"{k} {v:.4g}" for k, v in spend.items()))
    console.print("  data         " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in out.data.items()))  # fmt: skip
    if out.scored_at is not None:
        console.print(f"  scored       {out.scored_customers:,} customers at {out.scored_at:%Y-%m-%d %H:%M} UTC, "
                      f"horizon {out.horizon_days} days, {out.score_duration_ms} ms")  # fmt: skip


@clv_app.command("fit")
def clv_fit(
    engine: Annotated[
        str | None, typer.Option(help="scipy (built in) or pymc-marketing (needs: pip install 'cohorta[clv]')")
    ] = None,
) -> None:
    """Fit the purchase and spend models on every customer's orders as of now, then score every customer."""
    from cohorta.clock import SystemClock
    from cohorta.clv import service
    from cohorta.errors import CohortaError

    if engine not in (None, "scipy", "pymc-marketing"):
        raise typer.BadParameter("scipy or pymc-marketing", param_hint="--engine")
    settings = get_settings()
    sql = _engine(settings)
    db.upgrade(sql)
    try:
        row = service.fit(db.make_session_factory(sql), SystemClock(), settings, "cli", engine)
    except CohortaError as exc:
        console.print(exc.detail, style="red", markup=False)
        raise typer.Exit(1) from None
    _show_model(row)


@clv_app.command("score")
def clv_score() -> None:
    """Score every customer now with the model in force (the scheduler repeats it every
    COHORTA_CLV_SCORE_PERIOD_SECONDS)."""
    from cohorta.clock import SystemClock
    from cohorta.clv import service

    settings = get_settings()
    sql = _engine(settings)
    db.upgrade(sql)
    row = service.score_all(db.make_session_factory(sql), SystemClock(), settings)
    if row is None:
        console.print("[red]No CLV model has been fitted yet: run `cohorta clv fit` first.[/]")
        raise typer.Exit(1)
    _show_model(row)


@clv_app.command("show")
def clv_show() -> None:
    """Show the CLV model in force."""
    from cohorta.clv import service

    sql = _engine(get_settings())
    with db.make_session_factory(sql)() as session:
        row = service.current_model(session)
    if row is None:
        console.print("No CLV model has been fitted yet: run `cohorta clv fit`.")
        raise typer.Exit(1)
    _show_model(row)


@analytics_app.command("rebuild-months")
def analytics_rebuild_months() -> None:
    """Rebuild the month-by-month order figures kept per customer and per segment, in the project's time zone
    (the scheduler builds them by itself when they are missing or the zone changed)."""
    from cohorta.membership import monthly

    settings = get_settings()
    sql = _engine(settings)
    db.upgrade(sql)
    with _progress_bars() as report, db.unit_of_work(db.make_session_factory(sql)) as session:
        customer_rows, segment_rows = monthly.rebuild(
            session, settings.timezone, lambda done, total: report("months", done, total)
        )
    console.print(
        f"[green]Month figures rebuilt in {settings.timezone}:[/] {customer_rows:,} customer months, "
        f"{segment_rows:,} segment months"
    )


@users_app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(prompt=True, help="The admin's email (the login)")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True, hide_input=True, confirmation_prompt=True, envvar="COHORTA_ADMIN_PASSWORD",
            help="At least 10 characters (prompted when left out)",
        ),
    ],
    reset: Annotated[bool, typer.Option(help="Set the password (and admin role) if the user exists")] = False,
) -> None:
    """Create an admin user (bootstrap). Refuses an existing email unless --reset."""
    from cohorta.access.models import Role
    from cohorta.access.service import ensure_user
    from cohorta.clock import SystemClock
    from cohorta.errors import InvalidInput

    if len(password) < 10:
        console.print("[red]The password needs at least 10 characters.[/]")
        raise typer.Exit(2)
    engine = _engine(get_settings())
    db.upgrade(engine)
    factory = db.make_session_factory(engine)
    with factory.begin() as session:
        try:
            _, created = ensure_user(session, SystemClock().now(), email, password, Role.admin, reset_password=reset,
                                     restore_role=reset, actor="cli")  # fmt: skip
        except InvalidInput as exc:
            console.print(f"[red]{exc.errors[0].message}[/]")
            raise typer.Exit(2) from None
    if not created and not reset:
        console.print(f"[red]A user with email {email} exists; use --reset to set its password.[/]")
        raise typer.Exit(1)
    console.print(f"[green]Admin {'created' if created else 'updated'}:[/] {email.strip().lower()}")


@app.command()
def run(
    demo_customers: Annotated[int, typer.Option(help="Demo customers to load into an empty database")] = 10_000,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Quickstart: migrate, load demo data into an empty database, print how to log in, and serve."""
    if not os.environ.get("COHORTA_ADMIN_TOKEN"):
        os.environ["COHORTA_ADMIN_TOKEN"] = _stored_or_new_token()
        get_settings.cache_clear()
    settings = get_settings()
    engine = _engine(settings)
    db.upgrade(engine)
    if _is_empty(engine) and demo_customers > 0:
        _load_demo(engine, demo_customers, 7, settings.timezone)
        _demo_segments(engine, settings)
    demo_password = _demo_admin(engine)
    address = f"http://{host or settings.host}:{port or settings.port}"
    console.rule("[bold]Cohorta is starting")
    console.print(f"Web UI:     {address}/ui   (log in with the email and password below)")
    console.print(f"API:        {address}/api/v1   (health: {address}/api/v1/health)")
    console.print(f"API docs:   {address}/docs")
    console.print(f"Log in:     {DEMO_ADMIN_EMAIL} / {demo_password}   (POST {address}/api/v1/auth/login)")
    console.print(f"API token:  send the header  Authorization: Bearer {settings.admin_token}")
    console.print(f'Try:        curl -H "Authorization: Bearer {settings.admin_token}" {address}/api/v1/attributes')
    console.rule()
    serve(host=host, port=port)


def _demo_segments(engine: sa.Engine, settings: Settings) -> None:
    from cohorta.clock import SystemClock
    from cohorta.demo.segments import create_demo_segments

    with db.make_session_factory(engine).begin() as session:
        made = create_demo_segments(session, settings, SystemClock())
    console.print(f"[green]Example segments created:[/] {made} (their members are computed as the server starts)")


def _demo_admin(engine: sa.Engine) -> str:
    """The quickstart's admin user. Its password is kept in a file beside the database (like the token) and set
    again at every start, so the printed login works; a role or a disabled flag set since is left alone."""
    from cohorta.access.models import Role
    from cohorta.access.service import ensure_user
    from cohorta.clock import SystemClock

    password = DEMO_LOGIN_FILE.read_text().strip() if DEMO_LOGIN_FILE.exists() else ""
    if len(password) < 10:
        password = generate_token()[4:24]
        DEMO_LOGIN_FILE.write_text(password + "\n")
        DEMO_LOGIN_FILE.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with db.make_session_factory(engine).begin() as session:
        user, _ = ensure_user(session, SystemClock().now(), DEMO_ADMIN_EMAIL, password, Role.admin, reset_password=True,
                              restore_role=False, actor="cohorta run")  # fmt: skip
        if user.role != Role.admin or not user.is_active:  # someone changed it on purpose: say so, keep it
            console.print(f"[yellow]{DEMO_ADMIN_EMAIL} is now {user.role}{'' if user.is_active else ', disabled'}[/]")
    return password


def _stored_or_new_token() -> str:
    """The quickstart's admin token, kept in a file beside the database so it survives restarts."""
    if TOKEN_FILE.exists():
        token = TOKEN_FILE.read_text().strip()
        if token:
            return token
    token = generate_token()
    TOKEN_FILE.write_text(token + "\n")
    TOKEN_FILE.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return token


def main() -> None:
    app()


if __name__ == "__main__":
    main()
