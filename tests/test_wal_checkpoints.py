"""SQLite's WAL is checkpointed by a thread of its own while the app runs, not by the commits that fill it."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta import db
from cohorta.app import create_app
from cohorta.config import Settings
from cohorta.customers.models import Event
from tests.conftest import ADMIN_TOKEN

AT = datetime(2026, 1, 1, tzinfo=UTC)
ROWS = 4_000  # about 2,000 pages of events: past SQLite's automatic checkpoint at 1,000


@pytest.fixture
def sqlite_file(sqlite_template: Path, tmp_path: Path) -> Iterator[tuple[sa.Engine, Path]]:
    path = tmp_path / "cohorta.db"
    shutil.copy(sqlite_template, path)
    engine = db.create_db_engine(f"sqlite:///{path}")
    yield engine, path
    engine.dispose()


def _write_pages(engine: sa.Engine, start: int) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO customers (id, source_id, created_at, updated_at, loyalty_member) "
                                   "VALUES (1, 'c1', '2026-01-01 00:00:00', '2026-01-01 00:00:00', 0) "
                                   "ON CONFLICT DO NOTHING")  # fmt: skip
        db.insert_rows(connection, db.table_of(Event), [
            {"event_id": f"e{start + i}", "customer_id": 1, "name": "viewed", "occurred_at": AT,
             "properties": {"padding": "x" * 1500}, "content_hash": "h"}
            for i in range(ROWS)
        ])  # fmt: skip


def test_a_commit_leaves_the_checkpoint_to_the_checkpointer(sqlite_file: tuple[sa.Engine, Path]) -> None:
    """Without a checkpointer the commit that takes the WAL past 1,000 pages copies them into the database file;
    with one it does not, and the checkpointer's turn does. Once stopped, commits checkpoint again."""
    engine, path = sqlite_file
    size = path.stat().st_size
    _write_pages(engine, 0)
    assert path.stat().st_size > size  # SQLite's default: the commit checkpointed
    checkpointer = db.WalCheckpointer(engine, interval=3600)  # its own turns never come during the test
    checkpointer.start()
    try:
        size = path.stat().st_size
        _write_pages(engine, ROWS)
        assert path.stat().st_size == size  # the pages are in the WAL only
        busy, log, done = checkpointer.checkpoint()
        assert (busy, done) == (0, log) and log > 1_000
        assert path.stat().st_size > size
    finally:
        checkpointer.stop()
    size = path.stat().st_size
    _write_pages(engine, 2 * ROWS)
    assert path.stat().st_size > size  # back to checkpoints on commit


def test_writes_in_a_row_keep_the_wal_bounded(sqlite_file: tuple[sa.Engine, Path]) -> None:
    """SQLite starts the WAL over only when a write begins with every page copied: writes one after the other, with
    no turn of the checkpointer between them, would make it grow without end. Past ``commit_pages`` a commit
    checkpoints by itself, and the next write starts the WAL over."""
    engine, path = sqlite_file
    wal = Path(f"{path}-wal")
    checkpointer = db.WalCheckpointer(engine, interval=3600, commit_pages=1_000)
    checkpointer.start()
    try:
        _write_pages(engine, 0)
        one_write = wal.stat().st_size
        for n in range(1, 5):
            _write_pages(engine, n * ROWS)
        assert wal.stat().st_size < 2 * one_write  # five writes' pages without the bound
    finally:
        checkpointer.stop()


def test_the_app_checkpoints_in_the_background(sqlite_file: tuple[sa.Engine, Path]) -> None:
    engine, path = sqlite_file
    settings = Settings(database_url=str(engine.url), admin_token=ADMIN_TOKEN, scheduler=False)
    app = create_app(settings, engine=engine)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}):
        size = path.stat().st_size
        _write_pages(engine, 0)
        assert path.stat().st_size == size
        deadline = time.monotonic() + 10
        while path.stat().st_size == size and time.monotonic() < deadline:
            time.sleep(0.05)  # the checkpointer's next turn (every half second)
        assert path.stat().st_size > size
