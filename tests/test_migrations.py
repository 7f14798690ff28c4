"""The Alembic migrations build exactly the schema the models declare, on SQLite and PostgreSQL, and reverse."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cohorta import db
from cohorta.customers import models  # noqa: F401  (registers the tables)


def test_migrated_schema_matches_the_models(store: sa.Engine) -> None:
    with store.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.Base.metadata)
    assert differences == []
    assert db.current_revision(store) is not None


def test_migrations_downgrade_and_upgrade_again(store: sa.Engine) -> None:
    head = db.current_revision(store)
    db.upgrade(store, "head")  # idempotent
    db.downgrade(store, "base")
    assert "customers" not in sa.inspect(store).get_table_names()
    db.upgrade(store)
    assert db.current_revision(store) == head
    assert "customers" in sa.inspect(store).get_table_names()
