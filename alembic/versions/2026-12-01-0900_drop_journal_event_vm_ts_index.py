"""journal_event: the primary key gives a VM's entries in time order; the (vm_id, ts, seq) index goes

The primary key (vm_id, ts, seqnum, xor) already holds every VM's entries in time order, so a page
in journal order walks it and sorts only entries of the same microsecond by seq (an incremental
sort); a keyset position (ts, seq) starts it at ts. The other index cost every stored entry
83 bytes while its day was written (50 once compacted) and one more index insert.

Dropped on every day partition at once: the upgrade holds ingest into journal_event for as long as
the catalog changes take, not for a scan.

Revision ID: 3c1d7e9a5b20
Revises: e5a9c3f1b742
Create Date: 2026-12-01 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3c1d7e9a5b20"
down_revision: str | None = "e5a9c3f1b742"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_journal_event_vm_ts", table_name="journal_event")


def downgrade() -> None:
    op.create_index("ix_journal_event_vm_ts", "journal_event", ["vm_id", "ts", "seq"], unique=False)
