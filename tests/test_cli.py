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


def test_bad_configuration_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COHORTA_CURRENCY", "XYZ")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["db", "current"])
        assert result.exit_code != 0
        assert "XYZ" in str(result.exception)
    finally:
        get_settings.cache_clear()
