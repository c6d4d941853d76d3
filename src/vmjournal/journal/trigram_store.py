"""SQL of the batches' letter trigrams (journal/trigrams.py): the time ranges where a grep can match.

Ingest writes a batch's rows in the same statement as its entries (journal/ingest_store.py), so a
snapshot that sees an entry sees its batch's row. The retention pass merges the rows of small
batches and deletes the rows older than the oldest day kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import asyncpg

# The GIN index intersects the keys' lists; the VM and time conditions are checked on those rows.
# ``batches``: how many of the VM's batches the time bounds hold, candidates or not.
SELECT_RANGES = """
SELECT first_at, last_at,
       (SELECT count(*) FROM journal_trigrams
        WHERE vm_id = $1 AND ($3::timestamptz IS NULL OR last_at >= $3) AND ($4::timestamptz IS NULL OR first_at <= $4))
           AS batches
FROM journal_trigrams
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

# An agent following a quiet journal sends batches of a few entries, each with a few hundred keys
# (tens per entry, against one or two in a batch of a thousand). Rows under SMALL_KEYS keys are
# merged, a VM's in time order, into rows of about MERGED_KEYS; the partial index finds them.
SMALL_KEYS = 1000
MERGED_KEYS = 2000
SELECT_SMALL = f"""
SELECT id, vm_id, first_at, last_at, grams, last_seq FROM journal_trigrams
WHERE cardinality(grams) < {SMALL_KEYS} AND (vm_id, first_at, id) > ($1, $2, $3)
ORDER BY vm_id, first_at, id LIMIT $4
"""
DELETE_ROWS = "DELETE FROM journal_trigrams WHERE id = ANY($1::bigint[])"
INSERT_ROW = "INSERT INTO journal_trigrams (vm_id, first_at, last_at, grams, last_seq) VALUES ($1, $2, $3, $4, $5)"
MERGE_READ = 5000

DELETE_BEFORE = "DELETE FROM journal_trigrams WHERE last_at < $1"

# A VM's batches with entries from $2 on, up to $3 + 1 of them (more: too many to be worth it).
SELECT_RECENT = """
SELECT grams, last_seq FROM journal_trigrams WHERE vm_id = $1 AND last_at >= $2 LIMIT $3 + 1
"""

# Past this many batches, or this share of the batches in the page's time bounds, the word is
# common enough that scanning in journal order finds a page soon; reading range by range would
# cost more (each window of ranges is read to its end) than it saves.
MAX_RANGES = 2000
DENSE_SHARE = 0.75

Range = tuple[datetime, datetime]


@dataclass(frozen=True)
class Recent:
    """What a VM's newest batches hold: every entry from a time on, up to seq ``upto``, has its
    letter trigrams among ``keys``."""

    upto: int
    keys: frozenset[int]


async def ranges(
    conn: asyncpg.Connection, vm_id: UUID, grams: list[int], since: datetime | None, until: datetime | None
) -> list[Range] | None:
    """The VM's time ranges where entries holding every trigram may be, disjoint and in time order;
    None when there are too many, or they are most of the VM's batches, to be worth it."""
    rows = await _by_grams(conn, SELECT_RANGES, vm_id, grams, since, until, MAX_RANGES + 1)
    if len(rows) > MAX_RANGES or (rows and len(rows) > DENSE_SHARE * rows[0]["batches"]):
        return None
    merged: list[Range] = []
    for first, last, _ in rows:
        # Touching ranges merge too: BETWEEN on both would read the entries at the shared instant twice.
        if merged and first <= merged[-1][1]:
            if last > merged[-1][1]:
                merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


async def recent(conn: asyncpg.Connection, vm_id: UUID, since: datetime, max_batches: int) -> Recent | None:
    """The keys of the VM's batches with entries from ``since`` on, read in one snapshot, and the
    highest seq they stored. Every batch that stored something has its rows, and a VM's batches
    commit in seq order (its ingest lock), so each entry from ``since`` on up to that seq is in one
    of them. None past ``max_batches`` of them, or if one was written before rows kept their last seq."""
    rows = await conn.fetch(SELECT_RECENT, vm_id, since, max_batches)
    if not rows or len(rows) > max_batches or any(r["last_seq"] is None for r in rows):
        return None
    return Recent(max(r["last_seq"] for r in rows), frozenset(k for r in rows for k in r["grams"]))


async def vms_with(conn: asyncpg.Connection, keys: dict[UUID, list[int]]) -> set[UUID]:
    """The VMs with a batch holding all their keys (each VM's keys of one pattern: equally many)."""
    if not keys:
        return set()
    vm_ids = list(keys)
    flat = [k for vm_id in vm_ids for k in keys[vm_id]]
    rows = await _by_grams(conn, SELECT_VMS_WITH, vm_ids, flat, len(keys[vm_ids[0]]))
    return {r["vm_id"] for r in rows}


async def _by_grams(conn: asyncpg.Connection, sql: str, *args: object) -> list[asyncpg.Record]:
    """``sql`` with index scans off, in a savepoint rolled back at once so the setting ends with it."""
    scope = conn.transaction()
    await scope.start()
    try:
        await conn.execute(RANGES_BY_GRAMS)
        return list(await conn.fetch(sql, *args))
    finally:
        await scope.rollback()


@dataclass
class _Merged:
    vm_id: UUID
    first_at: datetime
    last_at: datetime
    last_seqs: list[int | None] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    grams: set[int] = field(default_factory=set)

    @property
    def last_seq(self) -> int | None:
        """The rows' last seq; unknown if one row's is."""
        return None if None in self.last_seqs else max(s for s in self.last_seqs if s is not None)


async def merge_small(conn: asyncpg.Connection) -> int:
    """Merge the rows of small batches, each VM's in time order; returns how many rows went.
    A merged row covers its rows' time ranges and holds all their keys, so a grep still finds every
    entry; readers see the rows before or after, never neither."""
    gone = 0
    after: tuple[UUID, datetime, int] = (UUID(int=0), datetime(1, 1, 1, tzinfo=UTC), 0)
    while rows := await conn.fetch(SELECT_SMALL, *after, MERGE_READ):
        groups: list[_Merged] = []
        for r in rows:
            if not groups or groups[-1].vm_id != r["vm_id"] or len(groups[-1].grams) >= MERGED_KEYS:
                groups.append(_Merged(r["vm_id"], r["first_at"], r["last_at"]))
            g = groups[-1]
            g.ids.append(r["id"])
            g.last_seqs.append(r["last_seq"])
            g.grams.update(r["grams"])
            g.first_at, g.last_at = min(g.first_at, r["first_at"]), max(g.last_at, r["last_at"])
        merged = [g for g in groups if len(g.ids) > 1]
        if merged:
            async with conn.transaction():
                await conn.execute(DELETE_ROWS, [i for g in merged for i in g.ids])
                await conn.executemany(
                    INSERT_ROW, [(g.vm_id, g.first_at, g.last_at, sorted(g.grams), g.last_seq) for g in merged]
                )
            gone += sum(len(g.ids) - 1 for g in merged)
        last = rows[-1]
        after = (last["vm_id"], last["first_at"], last["id"])
    return gone


async def delete_before(conn: asyncpg.Connection, start: datetime) -> None:
    """Forget the batches that ended before ``start`` (the oldest day kept)."""
    await conn.execute(DELETE_BEFORE, start)
