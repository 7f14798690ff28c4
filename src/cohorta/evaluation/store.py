"""Compiled rules on the store's own connection, inside the caller's transaction.

A rule compiles (in :mod:`cohorta.rules`) to an Ibis expression over unbound tables named like the store's tables;
here it becomes SQL for the store's dialect and runs on the session's connection, so it sees the transaction's own
uncommitted writes and nothing else.
"""

from __future__ import annotations

from typing import Any

import ibis
import sqlalchemy as sa
from sqlalchemy.orm import Session

from cohorta import rules

_DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres"}


def dialect_of(session: Session) -> str:
    name = session.get_bind().dialect.name
    try:
        return _DIALECTS[name]
    except KeyError:
        raise RuntimeError(f"rules cannot run on {name}") from None


def to_sql(session: Session, expr: Any) -> str:
    return str(ibis.to_sql(expr, dialect=dialect_of(session)))


def run_sql(session: Session, sql: str) -> sa.CursorResult[Any]:
    # The compiled SQL carries its literals (quoted by sqlglot) and takes no parameters. psycopg still parses
    # placeholders in it, so a literal % (LIKE patterns, modulo) is written %% for psycopg to read back as %.
    if session.get_bind().dialect.name == "postgresql":
        sql = sql.replace("%", "%%")
    return session.connection().exec_driver_sql(sql)


def matching_sql(session: Session, rule: rules.Rule | Any, ctx: rules.Context) -> str:
    """SQL returning the ids (column ``customer_id``) of every customer the rule matches."""
    return to_sql(session, rules.compile_batch(rule, ctx))


def matching_ids(session: Session, rule: rules.Rule | Any, ctx: rules.Context) -> set[int]:
    return {row[0] for row in run_sql(session, matching_sql(session, rule, ctx))}


def count_matching(session: Session, rule: rules.Rule | Any, ctx: rules.Context) -> int:
    sql = f"SELECT COUNT(*) FROM ({matching_sql(session, rule, ctx)}) AS matching"
    return int(run_sql(session, sql).scalar_one())


def sample_matching(
    session: Session, rule: rules.Rule | Any, ctx: rules.Context, columns: list[str], limit: int
) -> list[dict[str, Any]]:
    """The first ``limit`` matching customers (by internal id: stable between calls), with the given columns."""
    if limit <= 0:
        return []
    customers = rules.TABLES.customers
    matching = rules.compile_batch(rule, ctx)
    expr = (
        customers.filter(customers.id.isin(matching.customer_id)).order_by(customers.id).select(*columns).limit(limit)
    )
    result = run_sql(session, to_sql(session, expr))
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


def population(session: Session) -> int:
    return int(session.execute(sa.text("SELECT COUNT(*) FROM customers")).scalar_one())
