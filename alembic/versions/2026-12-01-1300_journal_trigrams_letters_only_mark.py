"""journal_trigrams: rows stored before numbers had keys are marked as holding letters only

Batches now also record the words with a digit of their messages (journal/trigrams.py), and a grep
such as ``items/4242 `` needs them. The rows already stored hold letter trigrams only; each gets
its VM's ``LETTERS_ONLY`` key, and a grep accepts such a row on its letters alone, so it still reads
every batch that can hold a match. The mark goes with the rows: retention deletes them with their
days, and merging small rows keeps it (a merged row holds its rows' keys).

Revision ID: 6c3e8b1f5a92
Revises: 4a7c2e9b3d18
Create Date: 2026-12-01 13:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "6c3e8b1f5a92"
down_revision: str | None = "4a7c2e9b3d18"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The VM's salt (journal/trigrams.py ``_salt``: the uuid's first 32 bits with the low 15 cleared,
# as a signed int4) plus LETTERS_ONLY (2 ** 15 - 1). A key is never larger, so the array stays sorted.
MARK = (
    "(((('x' || left(replace(vm_id::text, '-', ''), 8))::bit(32)::bigint >> 15 << 15) - 2147483648)"
    " + 32767)::int"
)


def upgrade() -> None:
    op.execute(f"UPDATE journal_trigrams SET grams = grams || {MARK} WHERE NOT grams @> ARRAY[{MARK}]")


def downgrade() -> None:
    # The keys of numbers stay: the previous code never asks for them.
    op.execute(f"UPDATE journal_trigrams SET grams = array_remove(grams, {MARK})")
