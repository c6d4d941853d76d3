"""journal_event: entries of servers up for more than 28 hours keep their cursor as numbers

Ingest read a ``__MONOTONIC_TIMESTAMP`` of 12 digits or more (a boot more than 28 hours ago) as
no number, so such an entry's cursor could not be split into the columns: it was stored whole in
the entry's own fields with the clock beside it (about 180 bytes of JSON), and identified by a
hash of its text. Ingest now splits it; an entry stored before and sent again (a batch retried
across the upgrade) would then not meet its first copy. So every such entry is split again here,
through the same code ingest uses: its identity becomes the cursor's numbers, its context the one
ingest now makes. The contexts they used before stay until retention drops their last day, as
any context does (a few per process; ``journalctl -F`` lists the same values from either).

It reads the journal once and rewrites only those entries; the upgrade holds ingest meanwhile.

Revision ID: 7f4b2d8e6a13
Revises: 3c1d7e9a5b20
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence
from typing import Any

from sqlalchemy.util import await_only

from alembic import op
from vmjournal.journal import entries, layout

revision: str = "7f4b2d8e6a13"
down_revision: str | None = "3c1d7e9a5b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 5000
REST = entries.ROW_COLUMNS.index("rest")

# Entries whose cursor is stored as text: those of other senders stay so, journald's split now.
READ_WHOLE_CURSORS = """
SELECT e.vm_id, e.ts, e.seqnum, e.xor, e.monotonic_us, e.boot_id, e.message, e.priority, e.context_id,
       e.rest::text AS rest, c.fields::text AS context
FROM journal_event e JOIN journal_context c ON c.vm_id = e.vm_id AND c.id = e.context_id
WHERE e.monotonic_us IS NULL AND e.rest IS NOT NULL AND (e.rest->>'__CURSOR') IS NOT NULL
"""
UPDATE_SPLIT = """
UPDATE journal_event e SET seqnum = u.seqnum, xor = u.xor, monotonic_us = u.monotonic_us,
                           context_id = u.context_id, rest = u.rest::json
FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
            $8::bigint[], $9::text[]) u(vm_id, ts, old_seqnum, old_xor, seqnum, xor, monotonic_us, context_id, rest)
WHERE e.vm_id = u.vm_id AND e.ts = u.ts AND e.seqnum = u.old_seqnum AND e.xor = u.old_xor
"""
UPSERT_CONTEXTS = """
INSERT INTO journal_context AS c (vm_id, id, last_day, fields)
SELECT vm_id, id, date '1970-01-01' + day, fields::json
FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::text[]) k(vm_id, id, day, fields)
ON CONFLICT (vm_id, id) DO UPDATE SET last_day = greatest(c.last_day, excluded.last_day)
"""


def upgrade() -> None:
    conn: Any = op.get_bind().connection.driver_connection
    updates: list[tuple[Any, ...]] = []
    contexts: dict[tuple[Any, int], tuple[str, int]] = {}
    # A server-side cursor: the journal may be far larger than memory. It reads the snapshot of its
    # start, so the updates below do not meet it again.
    await_only(conn.execute(f"DECLARE whole_cursors NO SCROLL CURSOR FOR {READ_WHOLE_CURSORS}"))
    while records := await_only(conn.fetch(f"FETCH {CHUNK} FROM whole_cursors")):
        for record in records:
            row, context = entries.to_row(layout.assemble(record))
            seqnum, xor, _, monotonic_us, context_id = row[:5]
            rest = row[REST]
            if (seqnum, xor, monotonic_us, context_id, rest) == (
                record["seqnum"], record["xor"], None, record["context_id"], record["rest"]
            ):
                continue  # another sender's cursor, stored as ingest stores it today
            updates.append((record["vm_id"], record["ts"], record["seqnum"], record["xor"], seqnum, xor,
                            monotonic_us, context_id, rest))
            key = (record["vm_id"], context_id)
            day = row[entries.TS_US] // entries.DAY_US
            if key not in contexts or contexts[key][1] < day:
                contexts[key] = (context, day)
        # Contexts first: each updated entry refers to its new one.
        _upsert_contexts(conn, contexts)
        contexts.clear()
        if updates:
            await_only(conn.execute(UPDATE_SPLIT, *map(list, zip(*updates, strict=True))))
            updates.clear()
    await_only(conn.execute("CLOSE whole_cursors"))


def _upsert_contexts(conn: Any, contexts: dict[tuple[Any, int], tuple[str, int]]) -> None:
    if contexts:
        rows = [(vm_id, ctx, day, text) for (vm_id, ctx), (text, day) in contexts.items()]
        await_only(conn.execute(UPSERT_CONTEXTS, *map(list, zip(*rows, strict=True))))


def downgrade() -> None:
    # The split entries read back the same: the previous revision's code stores them whole again
    # only when they are sent again, and then as new entries. Nothing to undo in the schema.
    pass
