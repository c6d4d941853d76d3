"""SQL of storing a batch: one statement that unpacks the batch's rows, stores contexts and
events, skips what is stored already and keeps the summaries.

Functions take an asyncpg connection inside the caller's transaction and never commit.
"""

from __future__ import annotations

import re
from uuid import UUID

import asyncpg

from vmjournal.journal import packing, partition_store
from vmjournal.journal.entries import ROW_COLUMNS, Batch

# The rows of $2, a JSON array of arrays in ROW_COLUMNS order (journal/packing.py). One parameter
# parsed here costs PostgreSQL about what COPY into a staging table and reading it back did, and
# saves the event loop encoding every row (and the COPY's round trip).
_ROWS = """(
    SELECT (e->>0)::bigint AS seqnum, (e->>1)::bigint AS xor, (e->>2)::bigint AS ts_us,
           (e->>3)::bigint AS monotonic_us, (e->>4)::bigint AS context_id, e->>5 AS boot_id, e->>6 AS unit,
           e->>7 AS about_unit, (e->>8)::smallint AS priority, e->>9 AS identifier, (e->>10)::int AS pid,
           e->>11 AS hostname, e->>12 AS message, e->>13 AS rest
    FROM jsonb_array_elements($2::jsonb) e
) r"""
assert tuple(re.findall(r"AS (\w+)", _ROWS)) == ROW_COLUMNS

# One statement stores the batch's contexts once, inserts its events (see MERGE_NEW), keeps the
# boot, unit and volume summaries and the VM's counters, and wakes live followers. $3-$5 are the
# contexts (ids, texts, latest day numbers), $6-$10 the messages' letter trigrams in runs of
# entries (journal/trigrams.py ``Chunks``), each kept with its time range and the batch's last seq
# (rows for every batch that stored something, letters or not). Returns how many were new.
_MERGE = """
WITH contexts AS (
    INSERT INTO journal_context AS c (vm_id, id, last_day, fields)
    SELECT $1, id, date '1970-01-01' + day, fields::json
    FROM unnest($3::bigint[], $4::text[], $5::int[]) k(id, fields, day)
    ON CONFLICT (vm_id, id) DO UPDATE SET last_day = excluded.last_day WHERE c.last_day < excluded.last_day
), ins AS (
    INSERT INTO journal_event (vm_id, ts, seqnum, xor, context_id, monotonic_us, boot_id, pid, priority, unit,
                               about_unit, identifier, hostname, message, rest)
    SELECT $1, timestamptz 'epoch' + ts_us * interval '1 microsecond', seqnum, xor, context_id, monotonic_us,
           boot_id::uuid, pid, priority, unit, about_unit, identifier, hostname, message, rest::json
    FROM {rows}
    {skip_stored}
    RETURNING boot_id, ts, unit, about_unit, priority, seq
), boots AS (
    INSERT INTO journal_boot AS b (vm_id, boot_id, first_at, last_at, entries)
    SELECT $1, boot_id, min(ts), max(ts), count(*) FROM ins WHERE boot_id IS NOT NULL GROUP BY boot_id
    ON CONFLICT (vm_id, boot_id) DO UPDATE SET
        first_at = least(b.first_at, excluded.first_at),
        last_at = greatest(b.last_at, excluded.last_at),
        entries = b.entries + excluded.entries
), units AS (
    INSERT INTO journal_unit AS u (vm_id, unit, entries, first_at, last_at)
    SELECT $1, name, count(*), min(ts), max(ts)
    FROM (SELECT unit AS name, ts FROM ins WHERE unit IS NOT NULL
          UNION ALL
          SELECT about_unit, ts FROM ins WHERE about_unit IS NOT NULL AND about_unit IS DISTINCT FROM unit) n
    GROUP BY name
    ON CONFLICT (vm_id, unit) DO UPDATE SET
        entries = u.entries + excluded.entries,
        first_at = least(u.first_at, excluded.first_at),
        last_at = greatest(u.last_at, excluded.last_at)
), volume AS (
    INSERT INTO journal_volume AS v (vm_id, minute, priority, entries)
    SELECT $1, date_bin('1 minute', ts, timestamptz 'epoch'), coalesce(priority, 7), count(*) FROM ins GROUP BY 2, 3
    ON CONFLICT (vm_id, minute, priority) DO UPDATE SET entries = v.entries + excluded.entries
), counted AS (
    SELECT count(*) AS stored, max(ts) AS last_ts, min(ts) AS first_ts, max(seq) AS last_seq FROM ins
), vm_update AS (
    UPDATE vm SET event_count = event_count + counted.stored,
                  last_event_at = greatest(vm.last_event_at, counted.last_ts)
    FROM counted WHERE vm.id = $1 AND counted.stored > 0
), trigrams AS (
    INSERT INTO journal_trigrams (vm_id, first_at, last_at, grams, last_seq)
    SELECT $1, timestamptz 'epoch' + k.first_us * interval '1 microsecond',
           timestamptz 'epoch' + k.last_us * interval '1 microsecond', ($10::int[])[k.start + 1 : k.stop], last_seq
    FROM counted, unnest($6::bigint[], $7::bigint[], $8::int[], $9::int[]) k(first_us, last_us, start, stop)
    WHERE stored > 0
)
SELECT stored, CASE WHEN stored > 0 THEN pg_notify(
    'vmjournal_events', $1::text || ' ' || (extract(epoch FROM first_ts) * 1000000)::bigint
) END AS notified
FROM counted
"""
# An agent sends each entry once unless it resends after a failure, so a batch is first inserted as
# all new: a plain insert skips ON CONFLICT's probe of the key before each row and its speculative
# insertion (12 % of PostgreSQL's CPU during ingest, measured with perf). A batch holding a stored
# entry fails on the key, and runs again skipping what is stored.
MERGE_NEW = _MERGE.format(rows=_ROWS, skip_stored="")
MERGE_SKIPPING_STORED = _MERGE.format(rows=_ROWS, skip_stored="ON CONFLICT (vm_id, ts, seqnum, xor) DO NOTHING")

# The VM record's last ingest problem: an entry skipped inside an export-format stream.
RECORD_INGEST_ERROR = "UPDATE vm SET last_ingest_error = $2, last_ingest_error_at = now() WHERE id = $1"


async def ingest(conn: asyncpg.Connection, vm_id: UUID, batch: Batch | packing.Packed) -> int:
    """Store the rows not stored yet; returns how many were new. A ``Batch`` is packed here; a row
    worker (journal/row_workers.py) passes it packed already."""
    packed = batch if isinstance(batch, packing.Packed) else packing.pack(vm_id, batch)
    if not packed.size:
        return 0
    args = _arguments(vm_id, packed)
    if conn.is_in_transaction():
        # The caller's transaction: a batch holding a stored entry rolls back to a savepoint.
        await partition_store.lock_ingest(conn, vm_id, packed.days)
        try:
            async with conn.transaction():
                new: int = await conn.fetchval(MERGE_NEW, *args)
                return new
        except asyncpg.UniqueViolationError:
            pass
        stored: int = await conn.fetchval(MERGE_SKIPPING_STORED, *args)
        return stored
    # A session that has not run a statement yet has not begun a transaction: the batch gets one of
    # its own, and runs again in a second if it holds a stored entry (no savepoint: two round trips
    # and a subtransaction fewer for every batch). The VM's lock is held to the end of each.
    try:
        return await _in_transaction(conn, vm_id, packed.days, MERGE_NEW, args)
    except asyncpg.UniqueViolationError:
        pass
    return await _in_transaction(conn, vm_id, packed.days, MERGE_SKIPPING_STORED, args)


def _arguments(vm_id: UUID, packed: packing.Packed) -> tuple[object, ...]:
    g = packed.grams
    return (
        vm_id,
        packed.rows_json,
        packed.context_ids,
        packed.context_texts,
        packed.context_days,
        *(g.first_us, g.last_us, g.starts, g.stops, g.keys),
    )


async def _in_transaction(
    conn: asyncpg.Connection, vm_id: UUID, days: list[int], statement: str, args: tuple[object, ...]
) -> int:
    async with conn.transaction():
        # Each entry's partition is its own day: the batch's days exist before the insert. The VM's
        # lock orders its batches.
        await partition_store.lock_ingest(conn, vm_id, days)
        stored: int = await conn.fetchval(statement, *args)
        return stored


async def record_ingest_error(conn: asyncpg.Connection, vm_id: UUID, problem: str) -> None:
    await conn.execute(RECORD_INGEST_ERROR, vm_id, problem)
