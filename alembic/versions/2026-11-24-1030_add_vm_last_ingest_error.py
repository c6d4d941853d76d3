"""add vm last ingest error

Revision ID: 3c0f1e2a9b47
Revises: d51260a59fb1
Create Date: 2026-11-24 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '3c0f1e2a9b47'
down_revision: str | None = 'd51260a59fb1'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('vm', sa.Column('last_ingest_error', sa.Text(), nullable=True))
    op.add_column('vm', sa.Column('last_ingest_error_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('vm', 'last_ingest_error_at')
    op.drop_column('vm', 'last_ingest_error')
