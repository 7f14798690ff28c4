"""The command line: migrations, demo data, and refusal to load demo data over real data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cohorta import db
from cohorta.cli import app
from cohorta.config import get_settings

runner = CliRunner()


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("COHORTA_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_db_upgrade_and_current(sqlite_url: str) -> None:
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "revision" in result.output
    current = runner.invoke(app, ["db", "current"])
    assert current.output.strip() == db.current_revision(db.create_db_engine(sqlite_url))


def test_demo_load_fills_an_empty_database_once(sqlite_url: str) -> None:
    result = runner.invoke(app, ["demo", "load", "--customers", "60", "--seed", "3"])
    assert result.exit_code == 0, result.output
    engine = db.create_db_engine(sqlite_url)
    with engine.connect() as connection:
        customers = connection.execute(sa.text("SELECT COUNT(*) FROM customers")).scalar_one()
        summaries = connection.execute(sa.text("SELECT COUNT(*) FROM customer_summaries")).scalar_one()
        orders = connection.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar_one()
    assert customers == summaries == 60
    assert orders > 0
    again = runner.invoke(app, ["demo", "load", "--customers", "10"])
    assert again.exit_code == 1
    assert "already holds customers" in again.output


def test_demo_load_builds_the_month_figures_and_they_can_be_rebuilt_in_another_zone(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner.invoke(app, ["demo", "load", "--customers", "60", "--seed", "3"]).exit_code == 0
    engine = db.create_db_engine(sqlite_url)
    counted = "SELECT COUNT(*) FROM orders WHERE status IN ('paid', 'fulfilled')"
    with engine.connect() as connection:
        orders = connection.execute(sa.text(counted)).scalar_one()
        kept = connection.execute(sa.text("SELECT SUM(orders) FROM customer_months")).scalar_one()
        zone = connection.execute(sa.text("SELECT value FROM project_settings WHERE key = 'order_months'")).scalar()
    assert kept == orders > 0
    assert '"UTC"' in zone
    monkeypatch.setenv("COHORTA_TIMEZONE", "Asia/Tokyo")
    get_settings.cache_clear()
    rebuilt = runner.invoke(app, ["analytics", "rebuild-months"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "Month figures rebuilt in Asia/Tokyo" in rebuilt.output
    with engine.connect() as connection:
        zone = connection.execute(sa.text("SELECT value FROM project_settings WHERE key = 'order_months'")).scalar()
        kept = connection.execute(sa.text("SELECT SUM(orders) FROM customer_months")).scalar_one()
    assert '"Asia/Tokyo"' in zone and kept == orders


def test_bad_configuration_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COHORTA_CURRENCY", "XYZ")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["db", "current"])
        assert result.exit_code != 0
        assert "XYZ" in str(result.exception)
    finally:
        get_settings.cache_clear()


def test_worker_runs_queued_recomputes_in_its_own_process(sqlite_url: str, tmp_path: Path) -> None:
    """`cohorta worker` is a separate process that applies queued recomputes to the shared database."""
    import os
    import subprocess
    import sys
    import time
    from datetime import UTC, datetime

    from cohorta.access.service import system_principal
    from cohorta.clock import FrozenClock
    from cohorta.config import Settings
    from cohorta.customers.schemas import CustomerBulkItem
    from cohorta.customers.service import upsert_customers
    from cohorta.segments.schemas import SegmentIn
    from cohorta.segments.service import create_segment

    engine = db.create_db_engine(sqlite_url)
    db.upgrade(engine)
    clock = FrozenClock(datetime.now(UTC))
    settings = Settings(database_url=sqlite_url)
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        upsert_customers(
            session, clock, [CustomerBulkItem(source_id="a", country="PL"), CustomerBulkItem(source_id="b")]
        )
        segment_id = create_segment(
            session, settings, clock, SegmentIn(name="Poles", text='country in ("PL")'), system_principal("test")
        ).id
    worker = subprocess.Popen(
        [sys.executable, "-m", "cohorta.cli", "worker", "--interval", "0.2"],
        env={**os.environ, "COHORTA_DATABASE_URL": sqlite_url},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        members = 0
        while time.monotonic() < deadline and members != 1:
            time.sleep(0.3)
            with engine.connect() as connection:
                members = connection.execute(
                    sa.text("SELECT member_count FROM segments WHERE id = :id"), {"id": segment_id}
                ).scalar_one()
        assert members == 1
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_create_admin_then_log_in(sqlite_url: str) -> None:
    from fastapi.testclient import TestClient

    from cohorta.app import create_app
    from cohorta.config import Settings

    create = ["users", "create-admin", "--email", "Boss@Example.com", "--password", "long enough pw"]
    created = runner.invoke(app, create)
    assert created.exit_code == 0, created.output
    assert "created" in created.output
    again = runner.invoke(app, ["users", "create-admin", "--email", "boss@example.com", "--password", "other long pw"])
    assert again.exit_code == 1 and "--reset" in again.output
    short = runner.invoke(app, ["users", "create-admin", "--email", "x@example.com", "--password", "short"])
    assert short.exit_code == 2
    client = TestClient(create_app(Settings(database_url=sqlite_url, scheduler=False)))
    login = client.post("/api/v1/auth/login", json={"email": "boss@example.com", "password": "long enough pw"})
    assert login.status_code == 200 and login.json()["user"]["role"] == "admin"
    reset = runner.invoke(app, ["users", "create-admin", "--email", "boss@example.com", "--password", "other long pw",
                                "--reset"])  # fmt: skip
    assert reset.exit_code == 0 and "updated" in reset.output
    assert client.post("/api/v1/auth/login", json={"email": "boss@example.com", "password": "other long pw"}).is_success


def test_clv_commands(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from cohorta.clv import model

    assert runner.invoke(app, ["demo", "load", "--customers", "150", "--seed", "3"]).exit_code == 0
    assert runner.invoke(app, ["clv", "show"]).exit_code == 1
    assert runner.invoke(app, ["clv", "score"]).exit_code == 1  # nothing fitted yet
    monkeypatch.setattr(model, "pymc_marketing_version", lambda: None)
    missing = runner.invoke(app, ["clv", "fit", "--engine", "pymc-marketing"])
    assert missing.exit_code == 1 and "pip install 'cohorta[clv]'" in missing.output
    fitted = runner.invoke(app, ["clv", "fit"])
    assert fitted.exit_code == 0, fitted.output
    assert "BG/NBD" in fitted.output and "scored" in fitted.output and "150 customers" in fitted.output
    shown = runner.invoke(app, ["clv", "show"])
    assert shown.exit_code == 0 and "Gamma-Gamma" in shown.output
