"""The Alembic migrations build exactly the schema the models declare, on SQLite and PostgreSQL, and reverse."""

from __future__ import annotations

import warnings
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cohorta import db
from cohorta.customers import models  # noqa: F401  (registers the tables)


def test_migrated_schema_matches_the_models(store: sa.Engine) -> None:
    with warnings.catch_warnings():
        # SQLAlchemy cannot reflect SQLite's expression indexes and Alembic then skips them on both sides (it
        # compares them on PostgreSQL): the next test checks the one there is.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression-based index")
        with store.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_object": db.built_on(store.dialect.name)}
            )
            differences = compare_metadata(context, db.Base.metadata)
    assert differences == []
    assert db.current_revision(store) is not None


def test_sqlite_tables_are_without_rowid_as_the_models_declare(sqlite_template: Path) -> None:
    """Alembic's comparison does not see ``WITHOUT ROWID``: each table the models declare so must be so."""
    store = db.create_db_engine(f"sqlite:///{sqlite_template}")
    declared = {t.name for t in db.Base.metadata.tables.values() if t.dialect_options["sqlite"]["with_rowid"] is False}
    assert {"event_property_values", "customer_attribute_values", "segment_members"} <= declared
    with store.connect() as connection:
        tables = connection.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all()
    store.dispose()
    without_rowid = {name for name, sql in tables if sql.rstrip().upper().endswith("WITHOUT ROWID")}
    assert without_rowid == declared


def test_string_attribute_values_are_indexed_lowercased(store: sa.Engine) -> None:
    """Rules compare text case-insensitively (``LOWER(value_string) IN (...)``): the index must be on the same
    expression for the database to seek it."""
    name = "ix_customer_attribute_values_name_lower_string"
    with store.connect() as connection:
        if store.dialect.name == "sqlite":
            definition = connection.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).scalar()
        else:
            definition = connection.execute(
                sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"), {"name": name}
            ).scalar()
    assert definition is not None
    compact = " ".join(definition.lower().replace('"', "").split())
    for postgres_spelling in ("((value_string)::text)", "((value_string))"):  # how pg_indexes prints lower(...)
        compact = compact.replace(postgres_spelling, "(value_string)")
    assert "(name, lower(value_string), customer_id)" in compact
    assert "where" in compact and "value_string is not null" in compact


def test_birthday_rules_seek_the_anniversary_index_on_sqlite(store: sa.Engine) -> None:
    """The batch compiles an anniversary as ``strftime('%m%d', birthdate)``, the expression migration 0014 indexes on
    SQLite; the planner must match the two (PostgreSQL has no such index: it cannot index to_char)."""
    import datetime as dt

    import ibis

    from cohorta import rules

    with store.connect() as connection:
        names = {r[0] for r in connection.execute(sa.text(
            "SELECT name FROM sqlite_master WHERE type = 'index'" if store.dialect.name == "sqlite"
            else "SELECT indexname FROM pg_indexes WHERE tablename = 'customers'"))}
        assert ("ix_customers_birth_month_day" in names) == (store.dialect.name == "sqlite")
        if store.dialect.name != "sqlite":
            return
        rule = rules.validate({"field": "profile.birthdate", "op": "anniversary_within_days", "value": 7},
                              rules.Catalog())
        ctx = rules.Context(as_of=dt.datetime(2026, 12, 28, tzinfo=dt.UTC))
        sql = ibis.to_sql(rules.compile_batch(rule, ctx), dialect="sqlite")
        plan = " ".join(r[-1] for r in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "USING INDEX ix_customers_birth_month_day" in plan, plan


def test_a_segments_newest_changes_are_read_in_index_order_without_a_sort(store: sa.Engine) -> None:
    """The segment page reads the last 50 of a segment's changes; a first computation records every member at one
    instant, so an index without ``id`` made PostgreSQL sort all of them (845 ms for 699,399 members)."""
    from cohorta.segments.service import history_page_query

    sql = str(history_page_query("seg_x", 50, 0).compile(store, compile_kwargs={"literal_binds": True}))
    with store.begin() as connection:
        if store.dialect.name == "sqlite":
            plan = " ".join(r[-1] for r in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert "ix_membership_history_segment_time" in plan and "TEMP B-TREE" not in plan, plan
        else:  # an empty table: make every sort and scan look dear, so only an index in order avoids them
            for setting in ("enable_sort", "enable_incremental_sort", "enable_seqscan", "enable_bitmapscan"):
                connection.exec_driver_sql(f"SET LOCAL {setting} = off")
            plan = " ".join(r[0] for r in connection.exec_driver_sql(f"EXPLAIN {sql}"))
            assert "ix_membership_history_segment_time_id" in plan and "Sort" not in plan, plan


def test_migrations_downgrade_and_upgrade_again(store: sa.Engine) -> None:
    head = db.current_revision(store)
    db.upgrade(store, "head")  # idempotent
    db.downgrade(store, "base")
    assert "customers" not in sa.inspect(store).get_table_names()
    db.upgrade(store)
    assert db.current_revision(store) == head
    assert "customers" in sa.inspect(store).get_table_names()


def test_the_size_over_time_counts_are_filled_from_past_membership_history(store: sa.Engine) -> None:
    from datetime import UTC, date, datetime
    from zoneinfo import ZoneInfo

    from cohorta.customers.models import Customer
    from cohorta.db import table_of
    from cohorta.membership.service import size_over_time
    from cohorta.segments.models import MembershipChange, Segment

    db.downgrade(store, "0010")
    now = datetime(2026, 3, 1, 8, tzinfo=UTC)
    with store.begin() as connection:  # the tables 0011 reads are as the models declare them
        connection.execute(sa.insert(table_of(Customer)), [
            {"id": n, "source_id": f"c{n}", "created_at": now, "updated_at": now, "content_hash": "-"} for n in (1, 2)])
        connection.execute(sa.insert(table_of(Segment)).values(
            id="s1", name="S", type="dynamic", status="active", version=1, member_count=1, created_at=now,
            updated_at=now, refresh_state="done", refresh_attempts=0))
        # Two entries on 1 March (one quarter hour), one exit at 23:50 UTC on 2 March (00:50 on 3 March in Warsaw).
        connection.execute(sa.insert(table_of(MembershipChange)), [
            {"segment_id": "s1", "customer_id": customer, "entered": entered, "cause": "data", "version": 1,
             "occurred_at": when}
            for customer, entered, when in [
                (1, True, datetime(2026, 3, 1, 8, 0, 5, tzinfo=UTC)),
                (2, True, datetime(2026, 3, 1, 8, 14, 59, tzinfo=UTC)),
                (1, False, datetime(2026, 3, 2, 23, 50, tzinfo=UTC)),
            ]
        ])  # fmt: skip
    db.upgrade(store)
    factory = db.make_session_factory(store)
    with factory() as session:
        segment = session.get(Segment, "s1")
        assert segment is not None
        utc = size_over_time(session, segment, date(2026, 2, 28), date(2026, 3, 3), ZoneInfo("UTC"))
        warsaw = size_over_time(session, segment, date(2026, 3, 1), date(2026, 3, 3), ZoneInfo("Europe/Warsaw"))
    assert [(n, e, x) for _, n, e, x in utc] == [(0, 0, 0), (2, 2, 0), (1, 0, 1), (1, 0, 0)]
    assert [(n, e, x) for _, n, e, x in warsaw] == [(2, 2, 0), (2, 0, 0), (1, 0, 1)]  # 00:50 on 3 March there
