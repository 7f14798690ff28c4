"""Database engine, session and the column types shared by every domain.

One code path serves SQLite (the embedded default, in WAL mode) and PostgreSQL (psycopg 3).
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import string
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache, partial
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.visitors import InternalTraversal

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware instant, stored in UTC.

    PostgreSQL keeps it as ``timestamptz``. SQLite has no time zones or timestamp type: the value is stored as
    naive UTC text, ``YYYY-MM-DD HH:MM:SS`` with ``.ffffff`` only when the microseconds are not zero. That is the
    exact form Ibis gives timestamp literals on SQLite, so text comparison in compiled rules is time comparison,
    boundaries included.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(26))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a timezone-aware instant is required")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return sqlite_instant_text(value)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_id(prefix: str) -> str:
    """A random public id like ``seg_k2x9...``: the prefix says what it is, 12 characters make it unguessable."""
    return prefix + "_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


# SQLite page cache per connection: 64 MiB (negative: KiB).
SQLITE_CACHE_SIZE = -65536

def as_instant(value: Any) -> datetime | None:
    """A stored instant read through raw SQL (SQLite text, or PostgreSQL timestamptz) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sqlite_instant_text(value: datetime) -> str:
    """The stored SQLite text of an instant (see UTCDateTime)."""
    # isoformat drops the fraction exactly when the microseconds are zero, as Ibis's literals do.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def table_of(model: type[Any]) -> sa.Table:
    """The Core table of a mapped class, typed as one."""
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table


def driver_cursor(connection: sa.Connection) -> Any:
    """A cursor of the driver's own connection under ``connection`` (in its transaction): for the statements this
    module writes itself, where SQLAlchemy's per-statement work costs more than the statement."""
    return connection.connection.driver_connection.cursor()  # type: ignore[union-attr]


def _processed_rows(dialect: Dialect, columns: list[sa.Column[Any]], rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Row values in column order, each through its column type's bind processor (as the ORM would store it)."""
    names = [column.key for column in columns]
    getter = itemgetter(*names)
    params = [list(getter(row)) for row in rows] if len(names) > 1 else [[row[names[0]]] for row in rows]
    for index, column in enumerate(columns):
        process = column.type._cached_bind_processor(dialect)
        if process is None:
            continue
        # Bulk rows repeat values (the same "now", the same country): process each distinct value once.
        memo: dict[Any, Any] = {}
        for values in params:
            value = values[index]
            if value is None:
                continue
            try:
                values[index] = memo[value]
            except KeyError:
                values[index] = memo[value] = process(value)
            except TypeError:  # unhashable (JSON objects)
                values[index] = process(value)
    return params


def dialect_insert(dialect: str, table: sa.Table) -> Any:
    """The dialect's own INSERT (by dialect name), which has ON CONFLICT (PostgreSQL and SQLite spell it the same)."""
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def add_into_statement(dialect: str, table: sa.Table, keys: Sequence[str], rows: sa.Select[Any]) -> Any:
    """INSERT the rows a SELECT gives (its columns named as the table's); where a row with the same ``keys`` exists
    already, add the new values to its other columns instead (counters kept with membership). Built once with bind
    parameters where a statement runs on every write: building costs more than running it."""
    statement = dialect_insert(dialect, table)
    names = [column.name for column in rows.selected_columns]
    statement = statement.from_select(names, rows)
    added = {name: table.c[name] + statement.excluded[name] for name in names if name not in keys}
    return statement.on_conflict_do_update(index_elements=list(keys), set_=added)


def add_into(connection: sa.Connection, table: sa.Table, keys: Sequence[str], rows: sa.Select[Any]) -> None:
    """:func:`add_into_statement`, built and run once."""
    connection.execute(add_into_statement(connection.dialect.name, table, keys, rows))


def insert_rows(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows at a fraction of SQLAlchemy's per-row cost. Every row must have the same keys.

    SQLite: one prepared statement, executemany. PostgreSQL: COPY, which avoids a round trip per row (inside
    :func:`pipelined`, one INSERT of unnested arrays). Values go through each column type's own bind processor, so
    they are stored exactly as the ORM would store them.
    """
    if not rows:
        return
    dialect = connection.dialect
    columns = [table.c[name] for name in rows[0]]
    quote = dialect.identifier_preparer.quote
    if dialect.name == "postgresql":
        copy_columns = [column for column in columns if not isinstance(column.type, sa.JSON)]
        params = _processed_rows(dialect, copy_columns, rows)
        json_columns = [column for column in columns if isinstance(column.type, sa.JSON)]
        if json_columns:  # COPY takes JSON as text
            for values, row in zip(params, rows, strict=True):
                values.extend(None if row[c.key] is None else json.dumps(row[c.key]) for c in json_columns)
        ordered = (*copy_columns, *json_columns)
        names = ", ".join(quote(column.name) for column in ordered)
        if _in_pipeline(connection):
            # COPY cannot run in a pipeline: one INSERT of unnested arrays, which there needs no round trip of its own.
            _insert_unnested(connection, table, ordered, params)
            return
        cursor = driver_cursor(connection)
        with cursor.copy(f"COPY {quote(table.name)} ({names}) FROM STDIN") as copy:
            for values in params:
                copy.write_row(values)
        return
    # Binding a NULL costs about a microsecond in Python's sqlite3, more than the insert itself: rows are grouped by
    # which columns they leave NULL, and those columns are left out of that group's INSERT (they have no server
    # default, so the database stores NULL just the same).
    def present(row: dict[str, Any]) -> tuple[str, ...]:
        return tuple(name for name, value in row.items() if value is not None)

    groups: Iterable[tuple[tuple[str, ...], Iterable[dict[str, Any]]]]
    generated = table.autoincrement_column
    if not any(None in row.values() for row in rows):  # checked at C speed: one group, no key per row
        groups = [(tuple(rows[0]), rows)]
    elif generated is not None and generated.key not in rows[0]:
        # Ids are generated in insertion order and follow the request: only consecutive rows are grouped.
        groups = groupby(rows, key=present)
    else:
        # Order does not matter: one INSERT per pattern (attribute values alternate between typed value columns,
        # which in request order made groups of one row each).
        by_pattern: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_pattern[present(row)].append(row)
        groups = by_pattern.items()
    for present_names, run in groups:
        group = list(run)
        group_columns = [table.c[name] for name in present_names]
        params = _processed_rows(dialect, group_columns, group)
        placeholders = ", ".join(["?"] * len(group_columns))
        column_list = ", ".join(quote(column.name) for column in group_columns)
        # The driver's own executemany takes the lists as they are (SQLAlchemy's wants a tuple per row).
        cursor = driver_cursor(connection)
        cursor.executemany(f"INSERT INTO {quote(table.name)} ({column_list}) VALUES ({placeholders})", params)


def add_rows(connection: sa.Connection, table: sa.Table, keys: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Insert these rows (all with the same columns); where a row with the same ``keys`` exists already, add the new
    values to its other columns instead (counters). Rows repeating a key are summed first: one statement may not
    update a row twice. Through the driver, in one statement (PostgreSQL, unnested arrays) or one executemany
    (SQLite): the counts of one live write, built by SQLAlchemy as many rows of VALUES, cost it more than running."""
    if not rows:
        return
    summed: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[name] for name in keys)
        kept = summed.get(key)
        if kept is None:
            summed[key] = dict(row)
        else:
            for name, value in row.items():
                if name not in keys:
                    kept[name] += value
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    columns = [table.c[name] for name in rows[0]]
    params = _processed_rows(dialect, columns, list(summed.values()))
    added = ", ".join(
        f"{quote(c.name)} = {quote(table.name)}.{quote(c.name)} + excluded.{quote(c.name)}"
        for c in columns if c.key not in keys
    )  # fmt: skip
    conflict = f"ON CONFLICT ({', '.join(quote(table.c[name].name) for name in keys)}) DO UPDATE SET {added}"
    if dialect.name == "postgresql":
        _insert_unnested(connection, table, columns, params, conflict)
        return
    names = ", ".join(quote(c.name) for c in columns)
    marks = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks}) {conflict}"
    connection.exec_driver_sql(sql, [tuple(values) for values in params])


#: Values whose text form PostgreSQL's array input reads as they are, and values it reads once double-quoted.
_BARE_ELEMENTS = frozenset({int, Decimal})
_QUOTED_ELEMENTS = frozenset({str, date, datetime})


def array_literal(values: Iterable[Any]) -> Any:
    """PostgreSQL's text form of an array of these values, for a parameter cast to an array type (``%s::int[]``);
    the values as a list (psycopg dumps it) when one is of another kind (booleans, floats). psycopg dumps a
    list element by element in Python: 0.42 ms for 1,000 ids, against 0.05 ms joined here, and a live bulk write
    binds thousands of ids per statement (about a tenth of a bulk events request went to dumping lists). Instants
    keep their offset in the text (the store's are aware; a naive one would be read in the session's time zone, as
    psycopg's own ``timestamp`` would be)."""
    values = list(values)
    kinds = set(map(type, values))
    if kinds <= _BARE_ELEMENTS:
        return "{" + ",".join(map(str, values)) + "}"
    if not kinds <= _QUOTED_ELEMENTS | _BARE_ELEMENTS | {type(None)}:
        return values
    if type(None) not in kinds:
        joined = '","'.join(map(str, values))
        if "\\" not in joined and '"' not in joined:  # the common case: nothing to escape
            return '{"' + joined + '"}'
    return "{" + ",".join("NULL" if v is None else _quoted(str(v)) for v in values) + "}"


def _quoted(text: str) -> str:
    """An array element double-quoted, backslashes and double quotes escaped (PostgreSQL's array input syntax)."""
    if "\\" in text or '"' in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text + '"'


def _insert_unnested(connection: sa.Connection, table: sa.Table, columns: Sequence[sa.Column[Any]],
                     params: list[list[Any]], suffix: str = "") -> None:  # fmt: skip
    """PostgreSQL: one ``INSERT ... SELECT FROM unnest(...)`` of these rows (values in ``columns`` order), each
    column one array parameter; ``suffix``: an ON CONFLICT clause."""
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c.name) for c in columns)
    arrays = ", ".join(f"%s::{c.type.compile(dialect)}[]" for c in columns)
    driver_cursor(connection).execute(
        f"INSERT INTO {quote(table.name)} ({names}) SELECT * FROM unnest({arrays}) {suffix}",
        [array_literal(values) for values in zip(*params, strict=True)],
    )


def update_rows(connection: sa.Connection, table: sa.Table, key: str, rows: list[dict[str, Any]]) -> None:
    """Update many rows, matched by the ``key`` column, in one statement (PostgreSQL) or one executemany (SQLite)."""
    if not rows:
        return
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    columns = [table.c[name] for name in rows[0] if name != key]
    key_column = table.c[key]
    params = _processed_rows(dialect, [*columns, key_column], rows)
    if dialect.name == "postgresql":
        arrays = [array_literal(values) for values in zip(*params, strict=True)]
        unnest = ", ".join(
            f"unnest(%s::{c.type.compile(dialect)}[]) AS {quote(c.name)}" for c in [*columns, key_column]
        )
        assignments = ", ".join(f"{quote(c.name)} = v.{quote(c.name)}" for c in columns)
        sql = (
            f"UPDATE {quote(table.name)} SET {assignments} FROM (SELECT {unnest}) AS v "
            f"WHERE {quote(table.name)}.{quote(key)} = v.{quote(key)}"
        )
        cursor = driver_cursor(connection)
        cursor.execute(sql, arrays)
        return
    assignments = ", ".join(f"{quote(c.name)} = ?" for c in columns)
    connection.exec_driver_sql(
        f"UPDATE {quote(table.name)} SET {assignments} WHERE {quote(key)} = ?", [tuple(v) for v in params]
    )


def select_rows(
    connection: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    any_of: Mapping[str, Sequence[Any]],
    at_least: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The ``columns`` of the rows whose ``any_of`` columns each hold one of the given values (lists without
    duplicates) and whose ``at_least`` columns are at least the given value, as dicts, values typed as SQLAlchemy
    would type them. Read through the driver, like :func:`insert_rows` writes: the reads of one live write (a
    customer's snapshot, memberships) are small, and building, keying and setting up each statement in SQLAlchemy
    cost about five times running it (measured: 0.16 of 3.0 ms for a snapshot's seven queries in SQLite). The SQL is
    written once per shape: PostgreSQL binds each list as one array (``= ANY``, or a join with the unnested arrays
    for several lists), SQLite as one parameter per value."""
    return send_rows(connection, table, columns, any_of, at_least).rows()


class SentRows:
    """A select sent by :func:`send_rows`; :meth:`rows` reads its answer (on PostgreSQL inside :func:`pipelined`,
    the first read waits for every statement sent before it, in one round trip)."""

    def __init__(self, connection: sa.Connection, table: sa.Table, columns: Sequence[str], cursor: Any) -> None:
        self._connection, self._table, self._columns, self._cursor = connection, table, tuple(columns), cursor

    def rows(self) -> list[dict[str, Any]]:
        columns, cursor = self._columns, self._cursor
        rows = cursor.fetchall()
        # Some processors depend on the driver's type code of the column (PostgreSQL numbers).
        result_processors = _result_processors(
            self._connection.dialect, self._table, columns, tuple(d[1] for d in cursor.description or ())
        )
        if any(p is not None for p in result_processors):
            procs = [(i, p) for i, p in enumerate(result_processors) if p is not None]
            out = []
            for row in rows:
                values = list(row)
                for i, p in procs:
                    values[i] = p(values[i])
                out.append(dict(zip(columns, values, strict=True)))
            return out
        return [dict(zip(columns, row, strict=True)) for row in rows]


def send_rows(
    connection: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    any_of: Mapping[str, Sequence[Any]],
    at_least: Mapping[str, Any] | None = None,
) -> SentRows:
    """:func:`select_rows`, sent now and read later: several reads sent inside :func:`pipelined` before any is read
    cost PostgreSQL one round trip instead of one each."""
    dialect = connection.dialect
    bounds = at_least or {}
    sql = _select_sql(dialect, table, tuple(columns), tuple(any_of), tuple(bounds), _list_lengths(dialect, any_of))
    params = _key_params(dialect, table, any_of, bounds)
    cursor = driver_cursor(connection)
    if _READING_AHEAD.get():
        cursor.execute(_counted_sql(dialect, tuple(table.c[c].name for c in columns), sql), params)
        cursor.fetchall()
        return _NoRows(connection, table, columns, cursor)
    cursor.execute(sql, params)
    return SentRows(connection, table, columns, cursor)


_READING_AHEAD: ContextVar[bool] = ContextVar("reading_ahead", default=False)


@contextmanager
def reading_ahead() -> Iterator[None]:
    """Inside, :func:`send_rows` and :func:`select_rows` read the columns of the rows they select and keep none:
    every row answers nothing. For :class:`ReadAhead`, which wants the pages, not the rows: one statement's count of
    each column is worked out in the database, where a row at a time through the driver would pass Python's lock
    back and forth with the write it reads ahead of, once per row."""
    token = _READING_AHEAD.set(True)
    try:
        yield
    finally:
        _READING_AHEAD.reset(token)


class _NoRows(SentRows):
    def rows(self) -> list[dict[str, Any]]:
        return []


@lru_cache(maxsize=1024)
def _counted_sql(dialect: Dialect, columns: tuple[str, ...], sql: str) -> str:
    """``sql``, whose rows have these columns, as one row counting each column's values: the database reads the
    same rows and columns by the same plan."""
    quote = dialect.identifier_preparer.quote
    return f"SELECT {', '.join(f'count(read_ahead.{quote(c)})' for c in columns)} FROM ({sql}) AS read_ahead"


@lru_cache(maxsize=1)
def _can_pipeline() -> bool:
    import psycopg

    return psycopg.Pipeline.is_supported()


def _in_pipeline(connection: sa.Connection) -> bool:
    from psycopg import pq

    driver = connection.connection.driver_connection
    return driver.pgconn.pipeline_status != pq.PipelineStatus.OFF  # type: ignore[union-attr]


@contextmanager
def pipelined(connection: sa.Connection) -> Iterator[None]:
    """On PostgreSQL, statements sent through the driver inside this block do not wait for their answers: reading
    one answer (or leaving the block) waits for all of them, in one round trip (psycopg's pipeline mode). Only for
    the driver-level helpers here (:func:`send_rows`, :func:`select_rows`, :func:`insert_rows`, which sends an INSERT
    instead of COPY there, :func:`delete_rows`, :func:`update_rows`, :func:`add_rows`): a statement run by SQLAlchemy
    inside would see no rows. Inside an outer block it adds nothing (psycopg's nested pipelines would wait at each
    exit). On SQLite nothing changes (no round trips), nor where the driver's libpq has no pipeline mode (before
    version 14): there each statement waits for its answer, as outside the block."""
    if connection.dialect.name != "postgresql" or not _can_pipeline() or _in_pipeline(connection):
        yield
        return
    with connection.connection.driver_connection.pipeline():  # type: ignore[union-attr]
        yield


def delete_rows(connection: sa.Connection, table: sa.Table, any_of: Mapping[str, Sequence[Any]]) -> None:
    """Delete the rows whose ``any_of`` columns each hold one of the given values (lists without duplicates), through
    the driver, as :func:`select_rows` reads them."""
    dialect = connection.dialect
    sql = _delete_sql(dialect, table, tuple(any_of), _list_lengths(dialect, any_of))
    driver_cursor(connection).execute(sql, _key_params(dialect, table, any_of, {}))


def _list_lengths(dialect: Dialect, any_of: Mapping[str, Sequence[Any]]) -> tuple[int, ...]:
    """SQLite's SQL has one parameter per listed value, so it is written per list length; PostgreSQL's is not."""
    return () if dialect.name == "postgresql" else tuple(len(v) for v in any_of.values())


def _key_params(
    dialect: Dialect, table: sa.Table, any_of: Mapping[str, Sequence[Any]], at_least: Mapping[str, Any]
) -> list[Any]:
    """The parameters of :func:`_key_conditions`, each value through its column type's bind processor."""
    params: list[Any] = []
    for name, values in any_of.items():
        process = table.c[name].type._cached_bind_processor(dialect)
        listed = [process(v) for v in values] if process is not None else list(values)
        if dialect.name == "postgresql":
            params.append(array_literal(listed))
        else:
            params.extend(listed)
    for name, value in at_least.items():
        process = table.c[name].type._cached_bind_processor(dialect)
        params.append(process(value) if process is not None else value)
    return params


@lru_cache(maxsize=1024)
def _select_sql(
    dialect: Dialect,
    table: sa.Table,
    columns: tuple[str, ...],
    any_of: tuple[str, ...],
    at_least: tuple[str, ...],
    sqlite_lengths: tuple[int, ...],
) -> str:
    quote = dialect.identifier_preparer.quote
    lists, conditions = _key_conditions(dialect, table, any_of, at_least, sqlite_lengths)
    names = ", ".join(f"{quote(table.name)}.{quote(table.c[c].name)}" for c in columns)
    return f"SELECT {names} FROM {', '.join([quote(table.name), *lists])} WHERE {conditions}"


@lru_cache(maxsize=1024)
def _delete_sql(dialect: Dialect, table: sa.Table, any_of: tuple[str, ...], sqlite_lengths: tuple[int, ...]) -> str:
    lists, conditions = _key_conditions(dialect, table, any_of, (), sqlite_lengths)
    using = f" USING {', '.join(lists)}" if lists else ""
    return f"DELETE FROM {dialect.identifier_preparer.quote(table.name)}{using} WHERE {conditions}"


def _key_conditions(
    dialect: Dialect, table: sa.Table, any_of: tuple[str, ...], at_least: tuple[str, ...],
    sqlite_lengths: tuple[int, ...],
) -> tuple[list[str], str]:
    """(unnested arrays to join, conditions) for the rows whose ``any_of`` columns hold listed values."""
    quote = dialect.identifier_preparer.quote
    column = {name: f"{quote(table.name)}.{quote(table.c[name].name)}" for name in (*any_of, *at_least)}
    lists: list[str] = []
    if dialect.name == "postgresql":
        if len(any_of) > 1:
            # Each pair of the lists as a key lookup, whatever the statistics: as two "= ANY" conditions, a generic
            # plan with stale statistics scanned every row of the first values and tested each against the second
            # array (0.6 s per 2,000 customers, seen on segment wake-ups).
            lists = [f"unnest(%s::{table.c[name].type.compile(dialect)}[]) AS k{i}(v)" for i, name in enumerate(any_of)]
            conditions = [f"{column[name]} = k{i}.v" for i, name in enumerate(any_of)]
        else:
            conditions = [f"{column[name]} = ANY(%s::{table.c[name].type.compile(dialect)}[])" for name in any_of]
        conditions += [f"{column[name]} >= %s" for name in at_least]
    else:
        listed = zip(any_of, sqlite_lengths, strict=True)
        conditions = [f"{column[name]} IN ({', '.join(['?'] * length)})" for name, length in listed]
        conditions += [f"{column[name]} >= ?" for name in at_least]
    return lists, " AND ".join(conditions) or "TRUE"


@lru_cache(maxsize=256)
def _result_processors(
    dialect: Dialect, table: sa.Table, columns: tuple[str, ...], type_codes: tuple[Any, ...]
) -> list[Any]:
    pairs = zip(columns, type_codes, strict=True)
    return [table.c[c].type._cached_result_processor(dialect, code) for c, code in pairs]


def constant_rows(connection: sa.Connection, statement: sa.sql.expression.ClauseElement) -> list[tuple[Any, ...]]:
    """The raw rows of a statement without parameters (its values rendered into the SQL), compiled once per dialect
    and run through the driver: for a check that runs on every write (the live segment index's fingerprint)."""
    cursor = driver_cursor(connection)
    # With (empty) parameters psycopg reads the text as the compiler escaped it for them ("%%" for "%").
    cursor.execute(_constant_sql(connection.dialect, statement), ())
    return list(cursor.fetchall())


@lru_cache(maxsize=64)
def _constant_sql(dialect: Dialect, statement: sa.sql.expression.ClauseElement) -> str:
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


class InValues(sa.sql.expression.ColumnElement[bool]):
    """``column IN (values)`` for long lists. PostgreSQL gets ``column = ANY(:array)``: one parameter, cheap to plan,
    where thousands of IN parameters cost more than the query itself. Other databases get an expanding IN.

    The values travel as bound parameters that are part of the element's traversal, so a statement using it is
    compiled once and then served from SQLAlchemy's statement cache whatever the values (compiling the statements of
    one live write used to cost more than running them)."""

    inherit_cache = True
    type = sa.Boolean()
    # A comparison in its own right: without this SQLite renders "x IN (...) = 1", which no index can serve.
    _is_implicitly_boolean = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("listed", InternalTraversal.dp_clauseelement),
        ("array", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: sa.ColumnElement[Any], values: Sequence[Any] | None = None, key: str | None = None
                 ) -> None:  # fmt: skip
        """The values now, or (``key``) a named parameter given at execution: for a statement built once."""
        self.column = column
        listed = None if values is None else list(values)
        self.listed = sa.bindparam(key, listed, expanding=True, type_=column.type)
        self.array = sa.bindparam(key, listed, type_=postgresql.ARRAY(column.type))


@compiles(InValues)
def _compile_in_values(element: InValues, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.column.in_(element.listed), **kw))


@compiles(InValues, "postgresql")
def _compile_in_values_postgresql(element: InValues, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.column == sa.any_(element.array), **kw))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while one writer writes; NORMAL is durable across application crashes in WAL mode.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute(f"PRAGMA cache_size={SQLITE_CACHE_SIZE}")
    # Sorts and temporary b-trees bigger than the cache spill to temporary files (the OS caches them), not to
    # SQLite's in-memory store: at 1,000,000 customers recomputes were 20-27% faster and an index build 2x faster
    # (docs/benchmarks.md), and memory stays bounded.
    cursor.execute("PRAGMA temp_store=FILE")
    cursor.close()


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    sa_url = sa.make_url(url)
    if sa_url.drivername == "postgresql":
        sa_url = sa_url.set(drivername="postgresql+psycopg")
    if sa_url.get_backend_name() == "sqlite":
        if sa_url.database and sa_url.database != ":memory:":
            Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"check_same_thread": False})
        engine = sa.create_engine(sa_url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "checkout", partial(_sqlite_checkout, engine))
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(sa_url, **kwargs)


#: SQLite engines whose WAL a :class:`WalCheckpointer` is checkpointing, with the WAL size (pages) past which a commit
#: still checkpoints by itself.
_CHECKPOINTED_ELSEWHERE: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()
_SQLITE_AUTOCHECKPOINT = 1000  # SQLite's default, in pages


def _sqlite_checkout(engine: Engine, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Each connection checkpoints on commit past SQLite's default WAL size, or past the :class:`WalCheckpointer`'s
    while one runs for its engine; the pragma is sent only when that changes."""
    wanted = _CHECKPOINTED_ELSEWHERE.get(engine, _SQLITE_AUTOCHECKPOINT)
    if record.info.get("wal_autocheckpoint", _SQLITE_AUTOCHECKPOINT) != wanted:
        dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={wanted}")
        record.info["wal_autocheckpoint"] = wanted


class WalCheckpointer:
    """SQLite's WAL checkpoints in a thread of their own instead of in the writes that fill the WAL.

    By default the connection whose commit takes the WAL past 1,000 pages copies them back into the database file
    before its commit returns: a bulk events request at 100,000 customers dirties some 12,000 pages, so every request
    paid a checkpoint (about 150 of 200 ms of its commit). While started, this thread runs a passive checkpoint every
    ``interval`` seconds: like SQLite's own, it waits for nobody (pages a reader still needs stay in the WAL for the
    next turn), so it never holds up a request; and connections checked out of the engine checkpoint on commit only
    past ``commit_pages``. That bound stays necessary: SQLite starts the WAL over only when a write begins with every
    page already copied, and writes that follow each other closely (recomputes) begin before the thread's next turn,
    so without it the WAL grew until the disk was full (seen at 1,000,000 customers). Past the bound the commit's own
    checkpoint copies only what came after the thread's last turn. A commit is durable without any checkpoint (WAL
    mode)."""

    def __init__(self, engine: Engine, interval: float = 0.5, commit_pages: int = 100_000) -> None:
        self.engine, self.interval, self.commit_pages = engine, interval, commit_pages
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        _CHECKPOINTED_ELSEWHERE[self.engine] = self.commit_pages
        self._thread = threading.Thread(target=self._run, name="cohorta-wal-checkpoints", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        _CHECKPOINTED_ELSEWHERE.pop(self.engine, None)
        self._checkpoint_logged()  # nothing left behind for connections that checkpoint by themselves again

    def checkpoint(self) -> tuple[int, int, int]:
        """One passive checkpoint: (busy, pages in the WAL, pages of it in the database file) as SQLite reports
        them."""
        raw = self.engine.raw_connection()
        try:
            busy, log, done = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return busy, log, done
        finally:
            raw.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._checkpoint_logged()

    def _checkpoint_logged(self) -> None:
        try:
            self.checkpoint()
        except Exception:  # a locked database or a full disk: logged, and the next turn (or commit) tries again
            logging.getLogger(__name__).warning("WAL checkpoint failed", exc_info=True)


class ReadAhead:
    """Reads run in parallel on connections of their own, ahead of a write that will read the same rows: the pages
    they touch are then in memory when the write's transaction reads them.

    SQLite reads one page at a time and waits for each; PostgreSQL's index scans do the same. A bulk write to thousands
    of customers whose pages are not cached (a database larger than memory) so waits for thousands of disk reads one
    after the other: at 1,000,000 customers about 1.5 s of a 5,000-event request. A disk serves many reads at once
    (random 4 KB reads on this machine kind: 132 us each one at a time, 18 us each with 8 in flight), so reading the
    rows from several connections at once while the transaction works through them turns most of that wait into
    parallel reads. The write does not wait for them: when its pages are cached they cost it only the other core's
    time. What the reads see does not matter (they are discarded); a failure is logged, and the write reads what it
    needs anyway. While more tasks are queued than ``max_pending`` (writes arriving faster than they can be read
    ahead), new ones are dropped: they would read for writes already done."""

    def __init__(self, engine: Engine, threads: int, max_pending: int | None = None) -> None:
        self.threads = threads
        self.max_pending = 4 * threads if max_pending is None else max_pending
        url = engine.url.render_as_string(hide_password=False)
        # An engine of its own: the reads never take connections the requests need.
        self._engine = create_db_engine(url, pool_size=threads, max_overflow=0)
        if self._engine.dialect.name == "sqlite":
            event.listen(self._engine, "connect", _read_only)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cohorta-read-ahead")
        self._pending = 0
        self._idle = threading.Condition()
        self._size_checked, self._large = -math.inf, True

    @staticmethod
    def available(engine: Engine) -> bool:
        """Whether the engine's database has pages on disk to read ahead (not an in-memory SQLite)."""
        return engine.dialect.name != "sqlite" or engine.url.database not in (None, "", ":memory:")

    def worthwhile(self) -> bool:
        """Whether reading ahead can pay: always on PostgreSQL (whose server's memory is unknown here); on SQLite
        while the database file is larger than a quarter of this machine's memory. A smaller one stays in the
        operating system's cache once read, and there the reads only cost time on the other core, which the write
        shares (at 100,000 customers, a 2 GB file, bulk events ran 7% slower with them; at 1,000,000, 15 GB, as fast
        when cached and 40% faster when not). The size is looked at once a minute."""
        path = self._engine.url.database
        if self._engine.dialect.name != "sqlite" or not path:
            return True
        now = time.monotonic()
        if now >= self._size_checked + 60:
            self._size_checked = now
            try:
                self._large = os.path.getsize(path) > _memory_bytes() / 4
            except OSError:
                self._large = True
        return self._large

    def start(self, tasks: Sequence[Callable[[Session], None]]) -> bool:
        """Queue every task (each given a session on a connection of its own), run ``threads`` at a time; return at
        once: whether they were queued (not when not :meth:`worthwhile`, nor while too many are pending)."""
        if not self.worthwhile():
            return False
        with self._idle:
            if self._pending + len(tasks) > max(self.max_pending, len(tasks)):
                return False
            self._pending += len(tasks)
        for task in tasks:
            self._pool.submit(self._run_one, task)
        return True

    def wait(self) -> None:
        """Return when no task is queued or running."""
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0)

    def _run_one(self, task: Callable[[Session], None]) -> None:
        try:
            with Session(self._engine) as session:
                task(session)
                session.rollback()
        except Exception:  # advisory: the write reads everything again anyway
            logging.getLogger(__name__).warning("read-ahead failed", exc_info=True)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._engine.dispose()


def _memory_bytes() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _read_only(dbapi_connection: Any, _record: Any) -> None:
    # The pages matter in the operating system's cache, not in the connection's own.
    dbapi_connection.execute("PRAGMA query_only = 1")
    dbapi_connection.execute("PRAGMA cache_size = -2000")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session], *, write_lock: bool = False) -> Iterator[Session]:
    """One transaction: commits when the block succeeds, rolls back when it raises.

    ``write_lock``: for work that reads, decides and then writes (recomputes, wake-ups). On SQLite the transaction
    starts with ``BEGIN IMMEDIATE``, taking the database's write lock before the first read: Python's sqlite3 would
    otherwise run the reads outside any transaction, and a write committed in between could be undone by the
    decision. PostgreSQL work of this kind locks the rows it decides on instead (SELECT ... FOR UPDATE).
    """
    session = factory()
    try:
        if write_lock and session.get_bind().dialect.name == "sqlite":
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def built_on(dialect: str) -> Callable[..., bool]:
    """An Alembic ``include_object`` hook for ``dialect``: leaves out what the models declare for another database
    only (``ddl_if(dialect=...)``), which Alembic would otherwise report as missing."""

    def include(obj: Any, _name: str | None, _type: str, _reflected: bool, _compare_to: Any) -> bool:
        condition = getattr(obj, "_ddl_if", None)
        return condition is None or condition.dialect is None or condition.dialect == dialect

    return include


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the Alembic migrations shipped inside the package."""
    from alembic import command

    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
