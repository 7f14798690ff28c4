"""a segment's newest membership changes without a sort (PostgreSQL)

Revision ID: 0015
Revises: 0014

A segment's history is read newest first, ``ORDER BY occurred_at DESC, id DESC`` (the segment page shows the last
50 changes; ``GET /segments/{id}/history`` pages them). The index on (segment_id, occurred_at) serves that order on
SQLite, where every index ends with the rowid (``id``); on PostgreSQL it does not, and the first computation of a
segment records all its members at one instant, so PostgreSQL read and sorted every one of them: 845 ms for a
699,399-member segment at 1,000,000 customers. With ``id`` in the index, it reads 50 entries. SQLite is unchanged.
Create Date: 2026-11-24 06:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_membership_history_segment_time", table_name="segment_membership_history")
        op.create_index(
            "ix_membership_history_segment_time_id", "segment_membership_history", ["segment_id", "occurred_at", "id"]
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_membership_history_segment_time_id", table_name="segment_membership_history")
        op.create_index(
            "ix_membership_history_segment_time", "segment_membership_history", ["segment_id", "occurred_at"]
        )
