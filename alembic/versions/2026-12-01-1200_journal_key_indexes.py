"""journal_event: unit and identifier indexes keyed by a 64-bit hash of (vm_id, name)

While a day is written, every unit's entries go in at the end of that unit's run of the index, so
the B-tree splits pages in half and the left halves stay half full: the (vm_id, unit, ts, seq)
index took 129 B per entry while written and 73 B rebuilt, and the identifier's 111 and 62.
PostgreSQL packs such "grouped, then ascending" inserts (nbtsplitloc.c, _bt_afternewitemoff) only
when the index tuples are all the same size and no wider than two bigints. ``journal_key(vm_id,
name)``, a bigint, and ``ts`` are exactly that. Pages keep the ``vm_id`` and name conditions, so a
hash collision costs a heap read and never a wrong answer; the order by seq within one microsecond
comes from an incremental sort, as for the primary key.

Built on every day partition at once (an index on a partitioned table cannot be built
concurrently): the upgrade holds ingest into journal_event while it runs.

Revision ID: 4a7c2e9b3d18
Revises: 2e8a6c4f1d37
Create Date: 2026-12-01 12:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "4a7c2e9b3d18"
down_revision: str | None = "2e8a6c4f1d37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# hashtextextended and uuid_hash_extended are the hash partitioning's support functions, so their
# results stay the same across PostgreSQL versions, as an index expression needs. They may differ
# on a machine of the other byte order: a dump restored there must REINDEX these two indexes.
CREATE_FUNCTIONS = (
    """
    CREATE FUNCTION journal_key(vm uuid, name text) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN hashtextextended(name, uuid_hash_extended(vm, 0))
    """,
    """
    CREATE FUNCTION journal_keys(vm uuid, names text[]) RETURNS bigint[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ARRAY(SELECT journal_key(vm, n) FROM unnest(names) n)
    """,
)
NEW_INDEXES = (
    "CREATE INDEX ix_journal_event_unit_key_ts ON journal_event (journal_key(vm_id, unit), ts) "
    "WHERE unit IS NOT NULL",
    "CREATE INDEX ix_journal_event_identifier_key_ts ON journal_event (journal_key(vm_id, identifier), ts) "
    "WHERE identifier IS NOT NULL",
)
OLD_INDEXES = (
    "CREATE INDEX ix_journal_event_vm_unit_ts ON journal_event (vm_id, unit, ts, seq)",
    "CREATE INDEX ix_journal_event_vm_identifier_ts ON journal_event (vm_id, identifier, ts, seq)",
)


def upgrade() -> None:
    for statement in CREATE_FUNCTIONS:
        op.execute(statement)
    for statement in NEW_INDEXES:
        op.execute(statement)
    op.execute("DROP INDEX ix_journal_event_vm_unit_ts")
    op.execute("DROP INDEX ix_journal_event_vm_identifier_ts")


def downgrade() -> None:
    for statement in OLD_INDEXES:
        op.execute(statement)
    op.execute("DROP INDEX ix_journal_event_unit_key_ts")
    op.execute("DROP INDEX ix_journal_event_identifier_key_ts")
    op.execute("DROP FUNCTION journal_keys(uuid, text[])")
    op.execute("DROP FUNCTION journal_key(uuid, text)")
