"""journal_trigrams: each batch's letter trigrams, so a grep reads only the ranges that can match

Entries stored before have no batch of their own: the upgrade groups each VM's entries in time
order by a thousand, as an agent's batches come, and records each group's trigrams
(journal/trigrams.py), so a grep finds old entries as it finds new ones.

Revision ID: c4d7a2e9f013
Revises: 9b3e4f6a1c27
Create Date: 2026-11-30 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.util import await_only

from alembic import op
from vmjournal.journal import trigrams

revision: str = 'c4d7a2e9f013'
down_revision: str | None = '9b3e4f6a1c27'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP = 1000
INSERT = "INSERT INTO journal_trigrams (vm_id, first_at, last_at, grams) VALUES ($1, $2, $3, $4)"


def upgrade() -> None:
    op.create_table('journal_trigrams',
    sa.Column('vm_id', sa.UUID(), nullable=False),
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('first_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('grams', postgresql.ARRAY(sa.Integer()), nullable=False),
    sa.PrimaryKeyConstraint('vm_id', 'id', name=op.f('pk_journal_trigrams'))
    )
    _record_stored_entries()
    op.create_index('ix_journal_trigrams_grams', 'journal_trigrams', ['grams'], unique=False, postgresql_using='gin')
    op.create_index('ix_journal_trigrams_small', 'journal_trigrams', ['vm_id', 'first_at', 'id'], unique=False,
                    postgresql_where=sa.text('cardinality(grams) < 1000'))


def _record_stored_entries() -> None:
    conn = op.get_bind().connection.driver_connection
    for vm_id in await_only(conn.fetch("SELECT DISTINCT vm_id FROM journal_boot UNION SELECT id FROM vm")):
        vm_id = vm_id[0]
        # A server-side cursor in the (vm_id, ts, seq) index's order: a VM's journal may be far larger than memory.
        await_only(conn.execute(
            "DECLARE journal_groups NO SCROLL CURSOR FOR "
            f"SELECT ts, message FROM journal_event WHERE vm_id = '{vm_id}' ORDER BY ts, seq"
        ))
        while rows := await_only(conn.fetch(f"FETCH {GROUP} FROM journal_groups")):
            grams = trigrams.of_messages(vm_id, (r["message"] for r in rows))
            if grams:
                await_only(conn.execute(INSERT, vm_id, rows[0]["ts"], rows[-1]["ts"], grams))
        await_only(conn.execute("CLOSE journal_groups"))


def downgrade() -> None:
    op.drop_index('ix_journal_trigrams_small', table_name='journal_trigrams',
                  postgresql_where=sa.text('cardinality(grams) < 1000'))
    op.drop_index('ix_journal_trigrams_grams', table_name='journal_trigrams', postgresql_using='gin')
    op.drop_table('journal_trigrams')
