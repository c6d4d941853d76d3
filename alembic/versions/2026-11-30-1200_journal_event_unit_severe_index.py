"""journal_event: an index of each unit's warnings and worse

A first page of a unit with a severe priority (``-u nginx -p err``) walked the unit's index and
read every entry of the unit until a hundred were severe enough: at 10 M events, thousands of
heap reads. Warnings and worse are a few percent of a journal, so this partial index is small, and
such a page reads its hundred entries in order.

Built on every day partition at once (an index on a partitioned table cannot be built
concurrently): the upgrade holds ingest into journal_event while it runs.

Revision ID: e5a9c3f1b742
Revises: d81f3b6e2a45
Create Date: 2026-11-30 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "e5a9c3f1b742"
down_revision: str | None = "d81f3b6e2a45"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_journal_event_vm_unit_severe_ts",
        "journal_event",
        ["vm_id", "unit", "ts", "seq"],
        unique=False,
        postgresql_where=sa.text("priority <= 4"),
    )


def downgrade() -> None:
    op.drop_index("ix_journal_event_vm_unit_severe_ts", table_name="journal_event")
