"""add journal_volume: events per VM, minute and priority, for log volume histograms

Revision ID: 7a41c9d2e5f3
Revises: 3c0f1e2a9b47
Create Date: 2026-11-25 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '7a41c9d2e5f3'
down_revision: str | None = '3c0f1e2a9b47'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('journal_volume',
    sa.Column('vm_id', sa.UUID(), nullable=False),
    sa.Column('minute', sa.DateTime(timezone=True), nullable=False),
    sa.Column('priority', sa.SmallInteger(), nullable=False),
    sa.Column('entries', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['vm_id'], ['vm.id'], name=op.f('fk_journal_volume_vm_id_vm'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('vm_id', 'minute', 'priority', name=op.f('pk_journal_volume'))
    )
    # Events stored before this table existed are summed once here; ingest keeps it from now on.
    op.execute(
        "INSERT INTO journal_volume (vm_id, minute, priority, entries) "
        "SELECT vm_id, date_bin('1 minute', ts, timestamptz 'epoch'), coalesce(priority, 7), count(*) "
        "FROM journal_event GROUP BY 1, 2, 3"
    )


def downgrade() -> None:
    op.drop_table('journal_volume')
