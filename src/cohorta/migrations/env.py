"""Alembic environment: runs on the connection handed over by cohorta.db.upgrade, or on COHORTA_DATABASE_URL."""

from __future__ import annotations

from alembic import context

from cohorta.access import models as _access_models  # noqa: F401  (registers the tables)
from cohorta.audit import models as _audit_models  # noqa: F401
from cohorta.campaigns import models as _campaign_models  # noqa: F401
from cohorta.clv import models as _clv_models  # noqa: F401
from cohorta.customers import models as _customer_models  # noqa: F401
from cohorta.db import Base, built_on, create_db_engine
from cohorta.exports import models as _export_models  # noqa: F401
from cohorta.segments import models as _segment_models  # noqa: F401
from cohorta.sources import models as _source_models  # noqa: F401
from cohorta.webhooks import models as _webhook_models  # noqa: F401

target_metadata = Base.metadata


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        from cohorta.config import get_settings

        engine = create_db_engine(get_settings().database_url)
        with engine.begin() as connection:
            _run(connection)
        return
    _run(connection)


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
        include_object=built_on(connection.dialect.name),  # type: ignore[attr-defined]
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
