"""SQL of the batches' letter trigrams (journal/trigrams.py): the time ranges where a grep can match.

Ingest writes a batch's row in the same statement as its entries (journal/ingest_store.py), so a
snapshot that sees an entry sees its batch's row. Retention deletes the rows older than the
oldest day kept.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

# The GIN index intersects the keys' lists; the VM and time conditions are checked on those rows.
SELECT_RANGES = """
SELECT first_at, last_at FROM journal_trigrams
WHERE grams @> $2::int[] AND vm_id = $1
  AND ($3::timestamptz IS NULL OR last_at >= $3) AND ($4::timestamptz IS NULL OR first_at <= $4)
ORDER BY first_at
LIMIT $5
"""
# A VM's batches are looked up through the GIN index only: the primary key's (vm_id, ...) would
# walk every batch of the VM and read each one's keys.
RANGES_BY_GRAMS = "SET LOCAL enable_indexscan = off"

# Of these VMs, those with a batch holding every one of its keys ($2 holds each VM's $3 keys in turn).
SELECT_VMS_WITH = """
SELECT v.vm_id FROM unnest($1::uuid[]) WITH ORDINALITY AS v(vm_id, i)
WHERE EXISTS (SELECT FROM journal_trigrams t
              WHERE t.grams @> ($2::int[])[(v.i - 1) * $3 + 1 : v.i * $3] AND t.vm_id = v.vm_id)
"""

DELETE_BEFORE = "DELETE FROM journal_trigrams WHERE last_at < $1"

# Past this many batches, the word is common enough that scanning in journal order finds a page
# soon; the ranges would cost more than they save.
MAX_RANGES = 2000

Range = tuple[datetime, datetime]


async def ranges(
    conn: asyncpg.Connection, vm_id: UUID, grams: list[int], since: datetime | None, until: datetime | None
) -> list[Range] | None:
    """The VM's time ranges where entries holding every trigram may be, disjoint and in time order;
    None when there are too many to be worth it."""
    scope = conn.transaction()
    await scope.start()
    try:
        await conn.execute(RANGES_BY_GRAMS)
        rows = await conn.fetch(SELECT_RANGES, vm_id, grams, since, until, MAX_RANGES + 1)
    finally:
        await scope.rollback()
    if len(rows) > MAX_RANGES:
        return None
    merged: list[Range] = []
    for first, last in rows:
        # Touching ranges merge too: BETWEEN on both would read the entries at the shared instant twice.
        if merged and first <= merged[-1][1]:
            if last > merged[-1][1]:
                merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


async def vms_with(conn: asyncpg.Connection, keys: dict[UUID, list[int]]) -> set[UUID]:
    """The VMs with a batch holding all their keys (each VM's keys of one pattern: equally many)."""
    if not keys:
        return set()
    vm_ids = list(keys)
    scope = conn.transaction()
    await scope.start()
    try:
        await conn.execute(RANGES_BY_GRAMS)
        flat = [k for vm_id in vm_ids for k in keys[vm_id]]
        rows = await conn.fetch(SELECT_VMS_WITH, vm_ids, flat, len(keys[vm_ids[0]]))
    finally:
        await scope.rollback()
    return {r["vm_id"] for r in rows}


async def delete_before(conn: asyncpg.Connection, start: datetime) -> None:
    """Forget the batches that ended before ``start`` (the oldest day kept)."""
    await conn.execute(DELETE_BEFORE, start)
