"""The driver-level reads and writes of live membership give what SQLAlchemy's own give, on both engines, pipelined or
not."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cohorta import db
from cohorta.customers.models import Customer, CustomerAttributeValue, Event, EventDefinition
from cohorta.db import (
    UTCDateTime,
    add_rows,
    constant_rows,
    delete_rows,
    insert_rows,
    pipelined,
    select_rows,
    send_rows,
    table_of,
)

NOW = datetime(2026, 3, 29, 1, 30, 15, 250_000, tzinfo=UTC)


def _fill(connection: sa.Connection) -> None:
    insert_rows(connection, table_of(Customer), [
        {"id": i, "source_id": f"c{i}", "country": "PL" if i % 2 else None, "birthdate": date(1990, 1, i),
         "created_at": NOW - timedelta(days=i), "updated_at": NOW, "loyalty_member": bool(i % 3),
         "source_metadata": {"tier": i, "tags": ["a", "%b"]}}
        for i in range(1, 8)
    ])  # fmt: skip
    typed = {"value_number": 0.25, "value_boolean": True, "value_date": date(2020, 2, 29), "value_datetime": NOW}
    insert_rows(connection, table_of(CustomerAttributeValue), [
        {"customer_id": 1 + i % 3, "name": column, "position": 0, "value_string": None,
         **{c: value if c == column else None for c in typed}}
        for i, (column, value) in enumerate(typed.items())
    ])  # fmt: skip
    insert_rows(connection, table_of(Event), [
        {"id": 10 + i, "event_id": f"e{i}", "customer_id": 1 + i % 3, "name": ("viewed", "opened")[i % 2],
         "occurred_at": NOW - timedelta(hours=i, microseconds=i), "properties": {"n": i}, "content_hash": "h"}
        for i in range(12)
    ])  # fmt: skip


def _by_core(connection: sa.Connection, query: sa.Select) -> list[dict]:
    return [dict(row._mapping) for row in connection.execute(query)]


def test_select_rows_types_values_as_sqlalchemy_does(store: sa.Engine) -> None:
    customers, values, events = table_of(Customer), table_of(CustomerAttributeValue), table_of(Event)
    with store.begin() as connection:
        _fill(connection)
        found = select_rows(connection, customers, list(customers.c.keys()), {"id": [1, 2, 3, 99]})
        expected = _by_core(connection, sa.select(customers).where(customers.c.id.in_([1, 2, 3, 99])))
        assert sorted(found, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])
        assert found[0]["created_at"].tzinfo is not None and isinstance(found[0]["source_metadata"], dict)

        found = select_rows(connection, values, list(values.c.keys()), {"customer_id": [1, 2, 3]})
        expected = _by_core(connection, sa.select(values).where(values.c.customer_id.in_([1, 2, 3])))
        key = lambda r: (r["customer_id"], r["name"])  # noqa: E731
        assert sorted(found, key=key) == sorted(expected, key=key)

        columns = ["id", "customer_id", "name", "occurred_at"]
        for since, ids in ((NOW - timedelta(hours=4, microseconds=4), {10, 14}),  # the boundary row counts (>=)
                           (NOW - timedelta(hours=4, microseconds=3), {10})):
            found = select_rows(connection, events, columns, {"customer_id": [1, 2], "name": ["viewed"]},
                                {"occurred_at": since})
            expected = _by_core(connection, sa.select(*[events.c[c] for c in columns]).where(
                events.c.customer_id.in_([1, 2]), events.c.name == "viewed", events.c.occurred_at >= since))
            assert sorted(found, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])
            assert {r["id"] for r in found} == ids
        assert select_rows(connection, events, columns, {"customer_id": []}) == []
        # several lists: every pair (PostgreSQL joins the unnested arrays)
        pairs = select_rows(connection, events, ["id"], {"name": ["opened", "viewed"], "customer_id": [2, 3]})
        assert sorted(r["id"] for r in pairs) == sorted(
            10 + i for i in range(12) if 1 + i % 3 in (2, 3))
        delete_rows(connection, events, {"name": ["opened"], "customer_id": [2, 3]})
        delete_rows(connection, events, {"id": [10]})
        left = connection.execute(sa.select(events.c.id)).scalars().all()
        assert sorted(left) == sorted(10 + i for i in range(1, 12) if 1 + i % 3 == 1 or i % 2 == 0)


def test_constant_rows_read_a_statement_with_its_values_rendered(store: sa.Engine) -> None:
    definitions = table_of(EventDefinition)
    statement = sa.select(definitions.c.name, sa.cast(definitions.c.properties, sa.Text)).where(
        definitions.c.name.in_(["viewed", "50% off"])
    )
    with store.begin() as connection:
        insert_rows(connection, definitions, [
            {"name": name, "properties": {"k": "string"}, "created_at": NOW, "updated_at": NOW}
            for name in ("viewed", "50% off", "other")
        ])  # fmt: skip
        rows = constant_rows(connection, statement)
        assert sorted(name for name, _ in rows) == ["50% off", "viewed"]
        assert constant_rows(connection, statement) == rows  # compiled once, the same answer


@pytest.mark.parametrize("libpq_pipelines", [True, False])
def test_pipelined_writes_and_reads_store_and_read_what_plain_ones_do(
    store: sa.Engine, libpq_pipelines: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside ``pipelined`` (PostgreSQL's pipeline mode) ``insert_rows`` sends one INSERT of unnested arrays instead
    of COPY; the rows stored (JSON, NULLs, instants, dates, booleans) are the same, and reads sent before any is read
    give the answers ``select_rows`` gives. Where libpq has no pipeline mode the block changes nothing."""
    monkeypatch.setattr(db, "_can_pipeline", lambda: libpq_pipelines)
    customers, events = table_of(Customer), table_of(Event)
    with store.begin() as connection:
        _fill(connection)  # COPY on PostgreSQL
        plain = _by_core(connection, sa.select(customers).order_by(customers.c.id))
        connection.execute(sa.delete(events))
        connection.execute(sa.delete(table_of(CustomerAttributeValue)))
        connection.execute(sa.delete(customers))
        with pipelined(connection):
            if store.dialect.name == "postgresql":
                assert db._in_pipeline(connection) is libpq_pipelines
            _fill(connection)
            sent = [send_rows(connection, customers, list(customers.c.keys()), {"id": [1, 2, 3]}),
                    send_rows(connection, events, ["id", "customer_id"], {"customer_id": [2]}),
                    send_rows(connection, customers, ["id"], {"id": [99]})]  # fmt: skip
            answers = [part.rows() for part in sent]
        assert _by_core(connection, sa.select(customers).order_by(customers.c.id)) == plain
        assert sorted(answers[0], key=lambda r: r["id"]) == [row for row in plain if row["id"] in (1, 2, 3)]
        assert sorted(r["id"] for r in answers[1]) == [10 + i for i in range(12) if 1 + i % 3 == 2]
        assert answers[2] == []
        assert select_rows(connection, customers, ["id"], {"id": [1]}) == [{"id": 1}]  # and out of the pipeline


def test_add_rows_inserts_new_keys_and_adds_to_existing_ones(store: sa.Engine) -> None:
    """Counters: a new key is inserted, an existing one gets the values added, a key repeated in one call is summed
    (one statement may not update a row twice on PostgreSQL)."""
    metadata = sa.MetaData()
    counts = sa.Table(
        "test_add_rows_counts", metadata,
        sa.Column("name", sa.String(32), primary_key=True), sa.Column("quarter", UTCDateTime(), primary_key=True),
        sa.Column("entered", sa.BigInteger, nullable=False), sa.Column("exited", sa.BigInteger, nullable=False),
    )  # fmt: skip
    quarter = NOW.replace(minute=30, second=0, microsecond=0)
    later = quarter + timedelta(minutes=15)
    metadata.create_all(store)
    try:
        with store.begin() as connection:
            add_rows(connection, counts, ("name", "quarter"), [
                {"name": "a", "quarter": quarter, "entered": 2, "exited": 0},
                {"name": "b", "quarter": quarter, "entered": 0, "exited": 1},
                {"name": "a", "quarter": quarter, "entered": 1, "exited": 4},
            ])  # fmt: skip
            add_rows(connection, counts, ("name", "quarter"), [
                {"name": "a", "quarter": quarter, "entered": 10, "exited": 0},
                {"name": "a", "quarter": later, "entered": 1, "exited": 1},
            ])  # fmt: skip
            add_rows(connection, counts, ("name", "quarter"), [])
            rows = connection.execute(sa.select(counts.c.name, counts.c.quarter, counts.c.entered, counts.c.exited))
            assert sorted((n, q, e, x) for n, q, e, x in rows) == [
                ("a", quarter, 13, 4), ("a", later, 1, 1), ("b", quarter, 0, 1),
            ]  # fmt: skip
    finally:
        metadata.drop_all(store)


def test_a_failed_pipelined_write_fails_its_transaction_and_leaves_the_connection_usable(store: sa.Engine) -> None:
    """An error inside ``pipelined`` (a duplicate key among rows sent without waiting) is raised by the block, the
    transaction rolls back whole, and the pooled connection serves the next transaction."""
    customers = table_of(Customer)
    with store.begin() as connection:
        _fill(connection)
    with store.connect() as connection:
        transaction = connection.begin()
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"), pipelined(connection):
            delete_rows(connection, customers, {"id": [7]})
            insert_rows(connection, customers, [{"id": 1, "source_id": "again", "created_at": NOW, "updated_at": NOW,
                                                 "loyalty_member": False}])  # fmt: skip
            select_rows(connection, customers, ["id"], {"id": [1]})
        transaction.rollback()
        with connection.begin():
            assert sorted(r["id"] for r in select_rows(connection, customers, ["id"], {"id": list(range(1, 8))})) == [
                1, 2, 3, 4, 5, 6, 7,
            ]  # the delete sent before the failure was rolled back too


_ELEMENTS = {
    "text": st.one_of(st.none(), st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))),
    "bigint": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    "numeric": st.one_of(st.none(), st.decimals(allow_nan=False, allow_infinity=False, places=4)),
    "date": st.one_of(st.none(), st.dates()),
    "timestamptz": st.one_of(st.none(), st.datetimes(
        min_value=datetime(1900, 1, 1),  # noqa: DTZ001 (hypothesis takes naive bounds and adds the zones below)
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7, minutes=-30))]),
    )),
}  # fmt: skip


@given(data=st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_an_array_literal_reads_back_as_the_values_it_was_made_of(postgres_database: str, data: st.DataObject) -> None:
    """PostgreSQL reads ``array_literal``'s text as exactly the values it was made of: quotes, backslashes, braces,
    commas, spaces, "NULL" as text, None, other time zones."""
    type_name = data.draw(st.sampled_from(sorted(_ELEMENTS)))
    values = data.draw(st.lists(_ELEMENTS[type_name], max_size=8))
    engine = db.create_db_engine(postgres_database)
    try:
        with engine.connect() as connection:
            cursor = db.driver_cursor(connection)
            cursor.execute(f"SELECT %s::{type_name}[]", [db.array_literal(values)])
            (found,) = cursor.fetchone()
    finally:
        engine.dispose()
    assert found == values
    assert isinstance(db.array_literal([*values, True]), list)  # other kinds of values stay a list for psycopg

