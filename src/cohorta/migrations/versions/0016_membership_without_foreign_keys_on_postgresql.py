"""no foreign keys on the bulk-written membership tables (PostgreSQL)

Revision ID: 0016
Revises: 0015

``segment_members`` and ``segment_list_entries`` are written in bulk: a recompute or a new static segment inserts
hundreds of thousands of rows at once. On PostgreSQL each row's foreign-key check runs ``SELECT ... FOR KEY SHARE``
on its customer and its segment, which locks (and dirties) the parent row: writing a 171,341-customer list at
1,000,000 customers took 2.55 s, 1.38 s of it in those checks (0.86 s without them). Nothing depends on their
cascades: deleting a customer or a segment deletes these rows explicitly. SQLite keeps them (checked in process).
Create Date: 2026-11-24 06:45:00
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

KEYS = [
    (table, f"fk_{table}_{column}_{parent}", column, parent)
    for table in ("segment_members", "segment_list_entries")
    for column, parent in (("segment_id", "segments"), ("customer_id", "customers"))
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, name, _, _ in KEYS:
            op.drop_constraint(name, table, type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, name, column, parent in KEYS:
            op.create_foreign_key(name, table, parent, [column], ["id"], ondelete="CASCADE")
