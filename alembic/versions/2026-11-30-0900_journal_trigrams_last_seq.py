"""journal_trigrams: each batch's last seq, and an index on (vm_id, last_at), for alert evaluation

Alert evaluation reads a VM's newest entries and first asks which rules' greps the batches holding
them can match at all (alerts/evaluation.py): the index finds the batches from a time on, and their
last seq tells where the entries they cover end. Rows written before have no last seq (NULL):
evaluation reads every rule where it meets one, as before.

Revision ID: d81f3b6e2a45
Revises: c4d7a2e9f013
Create Date: 2026-11-30 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "d81f3b6e2a45"
down_revision: str | None = "c4d7a2e9f013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("journal_trigrams", sa.Column("last_seq", sa.BigInteger(), nullable=True))
    op.create_index("ix_journal_trigrams_vm_last", "journal_trigrams", ["vm_id", "last_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_journal_trigrams_vm_last", table_name="journal_trigrams")
    op.drop_column("journal_trigrams", "last_seq")
