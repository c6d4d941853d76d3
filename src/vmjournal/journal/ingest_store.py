"""SQL of storing a batch: COPY into a staging table, then one statement that stores contexts and
events, skips what is stored already and keeps the summaries.

Functions take an asyncpg connection inside the caller's transaction and never commit.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from vmjournal.journal import partition_store, trigrams
from vmjournal.journal.entries import ROW_COLUMNS, Batch

# Session-local and emptied at commit, so concurrent batches on other connections never mix.
CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS journal_staging (
    seqnum bigint, xor bigint, ts_us bigint, monotonic_us bigint, context_id bigint, boot_id text, unit text,
    about_unit text, priority smallint, identifier text, pid integer, hostname text, message text, rest text
) ON COMMIT DELETE ROWS;
-- Emptied here too, in case a caller stores several batches in one transaction.
DELETE FROM journal_staging
"""

# One statement stores the batch's contexts once, moves the batch while skipping entries already
# stored, keeps the boot, unit and volume summaries and the VM's counters, and wakes live
# followers. $2-$4 are the contexts (ids, texts, latest day numbers), $5-$9 the messages' letter
# trigrams in runs of entries (journal/trigrams.py ``Chunks``), each kept with its time range and the
# batch's last seq (rows for every batch that stored something, letters or not). Returns how many were new.
# {skip_stored} is empty or the conflict clause (see ``_merge``).
_MERGE_STAGING = """
WITH contexts AS (
    INSERT INTO journal_context AS c (vm_id, id, last_day, fields)
    SELECT $1, id, date '1970-01-01' + day, fields::json
    FROM unnest($2::bigint[], $3::text[], $4::int[]) k(id, fields, day)
    ON CONFLICT (vm_id, id) DO UPDATE SET last_day = excluded.last_day WHERE c.last_day < excluded.last_day
), ins AS (
    INSERT INTO journal_event (vm_id, ts, seqnum, xor, context_id, monotonic_us, boot_id, pid, priority, unit,
                               about_unit, identifier, hostname, message, rest)
    SELECT $1, timestamptz 'epoch' + ts_us * interval '1 microsecond', seqnum, xor, context_id, monotonic_us,
           boot_id::uuid, pid, priority, unit, about_unit, identifier, hostname, message, rest::json
    FROM journal_staging
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
           timestamptz 'epoch' + k.last_us * interval '1 microsecond', ($9::int[])[k.start + 1 : k.stop], last_seq
    FROM counted, unnest($5::bigint[], $6::bigint[], $7::int[], $8::int[]) k(first_us, last_us, start, stop)
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
MERGE_NEW = _MERGE_STAGING.format(skip_stored="")
MERGE_SKIPPING_STORED = _MERGE_STAGING.format(skip_stored="ON CONFLICT (vm_id, ts, seqnum, xor) DO NOTHING")

# The VM record's last ingest problem: an entry skipped inside an export-format stream.
RECORD_INGEST_ERROR = "UPDATE vm SET last_ingest_error = $2, last_ingest_error_at = now() WHERE id = $1"


async def ingest(conn: asyncpg.Connection, vm_id: UUID, rows: Batch, *, grams: trigrams.Chunks | None = None) -> int:
    """Store the rows not stored yet; returns how many were new. ``grams``: the batch's trigram rows
    (journal/trigrams.py ``of_batch``), if the caller has them already (journal/row_workers.py)."""
    if not rows:
        return 0
    if not conn.is_in_transaction():
        # A session that has not run a statement yet has not begun its transaction: without one,
        # the staging rows would vanish at the COPY's own commit.
        async with conn.transaction():
            return await _ingest(conn, vm_id, rows, grams)
    return await _ingest(conn, vm_id, rows, grams)


async def _ingest(conn: asyncpg.Connection, vm_id: UUID, batch: Batch, grams: trigrams.Chunks | None) -> int:
    # The COPY into this session's staging table comes before the VM's lock, which orders its
    # batches: another batch of the VM meanwhile waits for the insert only.
    await conn.execute(CREATE_STAGING)
    await conn.copy_records_to_table("journal_staging", records=batch.rows, columns=ROW_COLUMNS)
    # Each entry's partition is its own day: the batch's days exist before the insert.
    await partition_store.lock_ingest(conn, vm_id, batch.days())
    ids = list(batch.contexts)
    texts = [batch.contexts[i][0] for i in ids]
    days = [batch.contexts[i][1] for i in ids]
    if grams is None:
        grams = trigrams.of_batch(vm_id, batch)
    args = (vm_id, ids, texts, days, grams.first_us, grams.last_us, grams.starts, grams.stops, grams.keys)
    try:
        async with conn.transaction():  # a savepoint
            new: int = await conn.fetchval(MERGE_NEW, *args)
            return new
    except asyncpg.UniqueViolationError:
        pass
    stored: int = await conn.fetchval(MERGE_SKIPPING_STORED, *args)
    return stored


async def record_ingest_error(conn: asyncpg.Connection, vm_id: UUID, problem: str) -> None:
    await conn.execute(RECORD_INGEST_ERROR, vm_id, problem)
