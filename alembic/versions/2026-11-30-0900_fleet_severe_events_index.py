"""index journal_event's entries of priority warning or worse, per VM in time order

A fleet page of errors reads each VM's severe entries in (ts, seq) order; they are rare (a few in a
hundred), so walking the full (vm_id, ts, seq) index visits dozens of entries per row it returns.
The predicate is a literal bound, as the page queries write priority bounds, so any plan proves it.

Revision ID: 3f6a9c1e7b42
Revises: 5dc5281c8ab3
Create Date: 2026-11-30 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '3f6a9c1e7b42'
down_revision: str | None = '5dc5281c8ab3'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # On the partitioned table: every day's partition gets it, and partitions attached later too.
    op.execute("CREATE INDEX ix_journal_event_vm_severe_ts ON journal_event (vm_id, ts, seq) WHERE priority <= 4")


def downgrade() -> None:
    op.execute("DROP INDEX ix_journal_event_vm_severe_ts")
