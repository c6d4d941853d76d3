"""SQL of the journal's day partitions: creating them before entries need them, and dropping the
oldest for retention with the boot, unit and volume summaries and the VM counters kept true.

``journal_event`` is range-partitioned on ``ts``, one partition per UTC day named
``journal_event_pYYYYMMDD``. Days are numbered from the epoch (ts_us // DAY_US), as ingest sees them.

Locks: every ingest holds PARTITIONS_LOCK shared for its transaction. A drop detaches the day in
a short transaction holding it exclusively (so no batch is between "its day's partition exists"
and its insert), renamed out of the way; what the detached table held is then taken out of the
summaries and the table dropped in a second transaction, while ingest and queries go on. A pass
interrupted between the two finds the detached table and finishes it. Creating a partition is
serialized by its own lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from vmjournal.journal import trigram_store

_EPOCH_DAY = date(1970, 1, 1)
PREFIX = "journal_event_p"

PARTITIONS_LOCK = 0x766D6A7061727473
CREATE_LOCK = 0x766D6A63726561
# One process at a time runs the retention pass (across replicas).
PRUNE_LOCK = 0x766D6A7072756E

# Of the given day numbers, those without a partition; the VM's ingest lock and the shared
# partitions lock are taken first (a materialized CTE runs before the select list).
LOCK_INGEST_MISSING_DAYS = f"""
WITH locked AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0)),
           pg_advisory_xact_lock_shared({PARTITIONS_LOCK})
)
SELECT ARRAY(SELECT d FROM unnest($2::int[]) d
             WHERE to_regclass('{PREFIX}' || to_char(date '1970-01-01' + d, 'YYYYMMDD')) IS NULL)
FROM locked
"""

LOCK_CREATE = f"SELECT pg_advisory_xact_lock({CREATE_LOCK})"
# Read from pg_class under the statement's snapshot, after the lock: to_regclass answers from this
# session's catalog cache, which can still say "no such table" after another session created it
# and committed (an advisory lock does not make a session read the invalidations).
EXISTS = """
SELECT EXISTS (SELECT FROM pg_class WHERE relname = $1
               AND relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'journal_event'::regclass))
"""
# Created apart and attached: ATTACH takes SHARE UPDATE EXCLUSIVE on journal_event, so reads and
# other batches go on, where CREATE TABLE ... PARTITION OF would wait for and block them all.
CREATE_DAY = """
CREATE TABLE {name} (LIKE journal_event INCLUDING DEFAULTS);
ALTER TABLE journal_event ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')
"""

TRY_PRUNE_LOCK = f"SELECT pg_try_advisory_xact_lock({PRUNE_LOCK})"
LOCK_PARTITIONS = f"SELECT pg_advisory_xact_lock({PARTITIONS_LOCK})"
# A drop waits this long for queries reading the journal, then gives up until the next pass.
DROP_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '10s'"

SELECT_PARTITIONS = f"""
SELECT c.relname AS name, pg_total_relation_size(c.oid) AS bytes
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'journal_event'::regclass AND c.relname LIKE '{PREFIX}%'
ORDER BY c.relname
"""

# Every journal table and index: the partitions (with their indexes and TOAST) and the summaries.
SELECT_JOURNAL_BYTES = """
SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0)::bigint
     + pg_total_relation_size('journal_boot') + pg_total_relation_size('journal_unit')
     + pg_total_relation_size('journal_volume') + pg_total_relation_size('journal_context')
     + pg_total_relation_size('journal_trigrams')
FROM pg_inherits i WHERE i.inhparent = 'journal_event'::regclass
"""

# Every entry journald writes carries _BOOT_ID, so the boots' summary knows the oldest one.
SELECT_OLDEST = "SELECT min(first_at) FROM journal_boot"

DETACHED_SUFFIX = "_detached"
DETACH = "ALTER TABLE journal_event DETACH PARTITION {name}; ALTER TABLE {name} RENAME TO {name}" + DETACHED_SUFFIX
SELECT_DETACHED = f"""
SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE '{PREFIX}%{DETACHED_SUFFIX}' ORDER BY relname
"""

# A closed day's indexes are rebuilt once, packed: while a day is written, each VM inserts in the
# middle of the day's indexes, whose pages split in half and stay about two thirds full.
COMPACTED = "vmjournal: compacted"
SELECT_UNCOMPACTED = f"""
SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'journal_event'::regclass AND c.relname LIKE '{PREFIX}%'
  AND obj_description(c.oid, 'pg_class') IS DISTINCT FROM '{COMPACTED}'
ORDER BY c.relname
"""
# What a rebuild that failed half-way leaves: invalid copies of the indexes.
SELECT_INVALID_INDEXES = """
SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = $1::regclass AND NOT x.indisvalid
"""
DROP_INDEX = "DROP INDEX CONCURRENTLY IF EXISTS {name}"
REINDEX = "REINDEX TABLE CONCURRENTLY {name}"
MARK_COMPACTED = f"COMMENT ON TABLE {{name}} IS '{COMPACTED}'"

# What a detached day held, taken out of the summaries before its table is dropped.
COUNT_BOOTS = "SELECT vm_id, boot_id, count(*) AS n FROM {name} WHERE boot_id IS NOT NULL GROUP BY 1, 2"
COUNT_UNITS = """
SELECT vm_id, name AS unit, count(*) AS n FROM (
    SELECT vm_id, unit AS name FROM {name} WHERE unit IS NOT NULL
    UNION ALL
    SELECT vm_id, about_unit FROM {name} WHERE about_unit IS NOT NULL AND about_unit IS DISTINCT FROM unit
) u GROUP BY 1, 2
"""
COUNT_VOLUME = """
SELECT vm_id, date_bin('1 minute', ts, timestamptz 'epoch') AS minute, coalesce(priority, 7) AS priority, count(*) AS n
FROM {name} GROUP BY 1, 2, 3
"""
COUNT_VMS = "SELECT vm_id, count(*) AS n FROM {name} GROUP BY 1"
DROP_TABLE = "DROP TABLE {name}"

SUBTRACT_BOOTS = """
UPDATE journal_boot b SET entries = b.entries - g.n
FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) g(vm_id, boot_id, n)
WHERE b.vm_id = g.vm_id AND b.boot_id = g.boot_id
"""
# A summary row counts at least one entry; none other is ever at zero.
DELETE_EMPTY_BOOTS = "DELETE FROM journal_boot WHERE entries <= 0"
_BOOT_EDGE = """(SELECT e.ts FROM journal_event e WHERE e.vm_id = b.vm_id AND e.boot_id = b.boot_id
               ORDER BY e.ts {o} LIMIT 1)"""
RESET_BOOT_BOUNDS = f"""
UPDATE journal_boot b SET
    first_at = CASE WHEN b.first_at < $3 THEN {_BOOT_EDGE.format(o="ASC")} ELSE b.first_at END,
    last_at = CASE WHEN b.last_at < $3 THEN {_BOOT_EDGE.format(o="DESC")} ELSE b.last_at END
FROM unnest($1::uuid[], $2::uuid[]) g(vm_id, boot_id)
WHERE b.vm_id = g.vm_id AND b.boot_id = g.boot_id
"""
SUBTRACT_UNITS = """
UPDATE journal_unit u SET entries = u.entries - g.n
FROM unnest($1::uuid[], $2::text[], $3::bigint[]) g(vm_id, unit, n)
WHERE u.vm_id = g.vm_id AND u.unit = g.unit
"""
DELETE_EMPTY_UNITS = "DELETE FROM journal_unit WHERE entries <= 0"
_UNIT_EDGE = """{f}(
    (SELECT e.ts FROM journal_event e WHERE e.vm_id = u.vm_id AND e.unit = u.unit ORDER BY e.ts {o} LIMIT 1),
    (SELECT e.ts FROM journal_event e WHERE e.vm_id = u.vm_id AND e.about_unit = u.unit
     ORDER BY e.ts {o} LIMIT 1))"""
RESET_UNIT_BOUNDS = f"""
UPDATE journal_unit u SET
    first_at = CASE WHEN u.first_at < $3 THEN {_UNIT_EDGE.format(f="least", o="ASC")} ELSE u.first_at END,
    last_at = CASE WHEN u.last_at < $3 THEN {_UNIT_EDGE.format(f="greatest", o="DESC")} ELSE u.last_at END
FROM unnest($1::uuid[], $2::text[]) g(vm_id, unit)
WHERE u.vm_id = g.vm_id AND u.unit = g.unit
"""
SUBTRACT_VOLUME = """
UPDATE journal_volume v SET entries = v.entries - g.n
FROM unnest($1::uuid[], $2::timestamptz[], $3::smallint[], $4::bigint[]) g(vm_id, minute, priority, n)
WHERE v.vm_id = g.vm_id AND v.minute = g.minute AND v.priority = g.priority
"""
DELETE_EMPTY_VOLUME = "DELETE FROM journal_volume WHERE entries <= 0"
# A context is kept while a day it was last used on (or a later one) is.
DELETE_OLD_CONTEXTS = "DELETE FROM journal_context WHERE last_day < $1"
SUBTRACT_VMS = """
UPDATE vm SET event_count = greatest(vm.event_count - g.n, 0)
FROM unnest($1::uuid[], $2::bigint[]) g(vm_id, n) WHERE vm.id = g.vm_id
"""


@dataclass(frozen=True)
class Partition:
    name: str
    day: date
    bytes: int

    @property
    def start(self) -> datetime:
        return datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=1)


@dataclass(frozen=True)
class Dropped:
    partition: Partition
    entries: int
    reason: str


def _day_of(name: str) -> date:
    """The day of a partition's (or a detached day's) name."""
    stamp = name[len(PREFIX) :]
    return date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]))


def day_name(day: int) -> str:
    return f"{PREFIX}{(_EPOCH_DAY + timedelta(days=day)):%Y%m%d}"


async def lock_ingest(conn: asyncpg.Connection, vm_id: object, days: Iterable[int]) -> None:
    """Take the VM's ingest lock and the shared partitions lock, and create the days still missing."""
    missing: list[int] = await conn.fetchval(LOCK_INGEST_MISSING_DAYS, vm_id, list(days))
    if missing:
        await create_days(conn, missing)


async def create_days(conn: asyncpg.Connection, days: Iterable[int]) -> list[str]:
    """Create the partitions of these days (epoch day numbers) that do not exist; returns their names."""
    created = []
    await conn.execute(LOCK_CREATE)
    for day in sorted(set(days)):
        name = day_name(day)
        if await conn.fetchval(EXISTS, name):
            continue
        lo = _EPOCH_DAY + timedelta(days=day)
        # The last day Python and journald entries reach ends in year 10000, which only SQL spells.
        hi = "10000-01-01" if lo == date.max else f"{lo + timedelta(days=1)}"
        await conn.execute(CREATE_DAY.format(name=name, lo=f"{lo} 00:00+00", hi=f"{hi} 00:00+00"))
        created.append(name)
    return created


async def partitions(conn: asyncpg.Connection) -> list[Partition]:
    """The day partitions, oldest first, with their bytes on disk."""
    found = []
    for r in await conn.fetch(SELECT_PARTITIONS):
        found.append(Partition(r["name"], _day_of(r["name"]), r["bytes"]))
    return found


async def uncompacted(conn: asyncpg.Connection) -> list[str]:
    """The day partitions whose indexes were not rebuilt since they were made."""
    return [r["name"] for r in await conn.fetch(SELECT_UNCOMPACTED)]


async def compact(conn: asyncpg.Connection, name: str) -> None:
    """Rebuild a day's indexes packed, while ingest and queries go on. ``conn`` must be outside any
    transaction (a concurrent rebuild is several)."""
    for r in await conn.fetch(SELECT_INVALID_INDEXES, name):
        await conn.execute(DROP_INDEX.format(name=r["relname"]))
    await conn.execute(REINDEX.format(name=name))
    await conn.execute(MARK_COMPACTED.format(name=name))


async def try_lock_prune(conn: asyncpg.Connection) -> bool:
    locked: bool = await conn.fetchval(TRY_PRUNE_LOCK)
    return locked


async def journal_bytes(conn: asyncpg.Connection) -> int:
    value: int = await conn.fetchval(SELECT_JOURNAL_BYTES)
    return value


async def oldest_entry(conn: asyncpg.Connection) -> datetime | None:
    value: datetime | None = await conn.fetchval(SELECT_OLDEST)
    return value


async def detach(conn: asyncpg.Connection, partition: Partition) -> str | None:
    """Take a day out of journal_event, renamed out of the way; returns the detached table's name
    (None if the day is gone already). Runs in the caller's short transaction, which blocks ingest
    until it ends: it should hold nothing else."""
    await conn.execute(DROP_LOCK_TIMEOUT)
    await conn.execute(LOCK_PARTITIONS)
    if not await conn.fetchval(EXISTS, partition.name):
        return None
    await conn.execute(DETACH.format(name=partition.name))
    return partition.name + DETACHED_SUFFIX


async def detached(conn: asyncpg.Connection) -> list[str]:
    """Days detached by a pass that stopped before settling them."""
    return [r["relname"] for r in await conn.fetch(SELECT_DETACHED)]


async def settle(conn: asyncpg.Connection, name: str) -> int:
    """Take what a detached day held out of the summaries, and drop it; returns its entry count.
    Ingest and queries go on meanwhile."""
    day = _day_of(name)
    end = Partition(name, day, 0).end
    boots = await conn.fetch(COUNT_BOOTS.format(name=name))
    units = await conn.fetch(COUNT_UNITS.format(name=name))
    volume = await conn.fetch(COUNT_VOLUME.format(name=name))
    vms = await conn.fetch(COUNT_VMS.format(name=name))
    await conn.execute(DROP_TABLE.format(name=name))
    if boots:
        vm_ids, boot_ids, counts = ([r[k] for r in boots] for k in ("vm_id", "boot_id", "n"))
        await conn.execute(SUBTRACT_BOOTS, vm_ids, boot_ids, counts)
        await conn.execute(DELETE_EMPTY_BOOTS)
        await conn.execute(RESET_BOOT_BOUNDS, vm_ids, boot_ids, end)
    if units:
        vm_ids, names, counts = ([r[k] for r in units] for k in ("vm_id", "unit", "n"))
        await conn.execute(SUBTRACT_UNITS, vm_ids, names, counts)
        await conn.execute(DELETE_EMPTY_UNITS)
        await conn.execute(RESET_UNIT_BOUNDS, vm_ids, names, end)
    if volume:
        await conn.execute(SUBTRACT_VOLUME, *([r[k] for r in volume] for k in ("vm_id", "minute", "priority", "n")))
        await conn.execute(DELETE_EMPTY_VOLUME)
    await conn.execute(SUBTRACT_VMS, [r["vm_id"] for r in vms], [r["n"] for r in vms])
    oldest = min((p.day for p in await partitions(conn)), default=day + timedelta(days=1))
    await conn.execute(DELETE_OLD_CONTEXTS, oldest)
    await trigram_store.delete_before(conn, Partition(name, oldest, 0).start)
    return sum(r["n"] for r in vms)
