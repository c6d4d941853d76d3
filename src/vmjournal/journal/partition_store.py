"""SQL of the journal's day partitions: creating them before entries need them, and dropping the
oldest for retention with the boot, unit and volume summaries and the VM counters kept true.

``journal_event`` is range-partitioned on ``ts``, one partition per UTC day named
``journal_event_pYYYYMMDD``. Days are numbered from the epoch (ts_us // DAY_US), as ingest sees them.

Locks: every ingest holds PARTITIONS_LOCK shared for its transaction, and its VM's lock. A drop
detaches the days in a short transaction holding PARTITIONS_LOCK exclusively (so no batch is
between "its day's partition exists" and its insert), each renamed out of the way. A second
transaction takes what the detached tables held out of the summaries (it takes the days' VMs'
locks for its last updates) and renames them again, settled; only then are they dropped, each
alone: a drop unlinks every file of the table at its commit, which must not hold the VMs' locks.
Ingest and queries go on throughout but for the first transaction. A pass interrupted anywhere
finds the detached or settled tables and finishes them. Creating a partition is serialized by
its own lock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

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

# The same VMs' ingest locks, in the order given (a sorted list): for the retention pass.
LOCK_VMS = """
SELECT count(pg_advisory_xact_lock(hashtextextended(v::text, 0)))
FROM (SELECT v FROM unnest($1::uuid[]) WITH ORDINALITY u(v, i) ORDER BY i) s
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

# Held by a session outside any transaction: REINDEX CONCURRENTLY (compaction, in the pass) waits
# for every transaction open when it starts, the holder's too.
TRY_PRUNE_LOCK = f"SELECT pg_try_advisory_lock({PRUNE_LOCK})"
UNLOCK_PRUNE = f"SELECT pg_advisory_unlock({PRUNE_LOCK})"
LOCK_PARTITIONS = f"SELECT pg_advisory_xact_lock({PARTITIONS_LOCK})"
# A drop waits this long for queries reading the journal, then gives up until the next pass.
DROP_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '10s'"

SELECT_OLDEST_PARTITION = f"""
SELECT min(c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'journal_event'::regclass AND c.relname LIKE '{PREFIX}%'
"""
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
SETTLED_SUFFIX = "_settled"
DETACH = "ALTER TABLE journal_event DETACH PARTITION {name}; ALTER TABLE {name} RENAME TO {name}" + DETACHED_SUFFIX
SELECT_LEFT = """
SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE $1 ORDER BY relname
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

# Retention's scans and rebuilds run beside ingest, on one core each: by default PostgreSQL rebuilds
# a day's indexes with a parallel worker beside it (and would count a day of some GB with two),
# which on a two-core machine leaves no core to the batches arriving meanwhile.
ONE_CORE = "SET LOCAL max_parallel_workers_per_gather = 0"
ONE_CORE_REBUILDS = "SET max_parallel_maintenance_workers = 0"
RESET_REBUILDS = "RESET max_parallel_maintenance_workers"

# What a detached day held, in one pass over it: the boots, units and VM counters follow from these
# groups (a handful per process and boot).
COUNT_DAY = "SELECT vm_id, boot_id, unit, about_unit, count(*) AS n FROM {name} GROUP BY 1, 2, 3, 4"
SETTLED = "ALTER TABLE {name} RENAME TO {settled}"
DROP_TABLE = "DROP TABLE IF EXISTS {name}"

SUBTRACT_BOOTS = """
UPDATE journal_boot b SET entries = b.entries - g.n
FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) g(vm_id, boot_id, n)
WHERE b.vm_id = g.vm_id AND b.boot_id = g.boot_id
"""
# A summary row counts at least one entry; none other is ever at zero.
DELETE_EMPTY_BOOTS = """
DELETE FROM journal_boot b USING unnest($1::uuid[], $2::uuid[]) g(vm_id, boot_id)
WHERE b.vm_id = g.vm_id AND b.boot_id = g.boot_id AND b.entries <= 0
"""
# A bound left in a dropped day moves to the first (last) entry kept. (A boot with none kept has
# no row left by then; if its count was off, the bound stays rather than fail every pass.)
_BOOT_EDGE = """coalesce((SELECT e.ts FROM journal_event e WHERE e.vm_id = b.vm_id AND e.boot_id = b.boot_id
               ORDER BY e.ts {o} LIMIT 1), b.{bound})"""
RESET_BOOT_BOUNDS = f"""
UPDATE journal_boot b SET
    first_at = CASE WHEN b.first_at < $3 THEN {_BOOT_EDGE.format(o="ASC", bound="first_at")} ELSE b.first_at END,
    last_at = CASE WHEN b.last_at < $3 THEN {_BOOT_EDGE.format(o="DESC", bound="last_at")} ELSE b.last_at END
FROM unnest($1::uuid[], $2::uuid[]) g(vm_id, boot_id)
WHERE b.vm_id = g.vm_id AND b.boot_id = g.boot_id
"""
SUBTRACT_UNITS = """
UPDATE journal_unit u SET entries = u.entries - g.n
FROM unnest($1::uuid[], $2::text[], $3::bigint[]) g(vm_id, unit, n)
WHERE u.vm_id = g.vm_id AND u.unit = g.unit
"""
DELETE_EMPTY_UNITS = """
DELETE FROM journal_unit u USING unnest($1::uuid[], $2::text[]) g(vm_id, unit)
WHERE u.vm_id = g.vm_id AND u.unit = g.unit AND u.entries <= 0
"""
_UNIT_EDGE = """coalesce({f}(
    (SELECT e.ts FROM journal_event e WHERE e.vm_id = u.vm_id AND e.unit = u.unit ORDER BY e.ts {o} LIMIT 1),
    (SELECT e.ts FROM journal_event e WHERE e.vm_id = u.vm_id AND e.about_unit = u.unit
     ORDER BY e.ts {o} LIMIT 1)), u.{bound})"""
RESET_UNIT_BOUNDS = f"""
UPDATE journal_unit u SET
    first_at = CASE WHEN u.first_at < $3 THEN {_UNIT_EDGE.format(f="least", o="ASC", bound="first_at")}
                    ELSE u.first_at END,
    last_at = CASE WHEN u.last_at < $3 THEN {_UNIT_EDGE.format(f="greatest", o="DESC", bound="last_at")}
                   ELSE u.last_at END
FROM unnest($1::uuid[], $2::text[]) g(vm_id, unit)
WHERE u.vm_id = g.vm_id AND u.unit = g.unit
"""
# A day's minutes are that day's entries only: its volume goes whole, without counting it. (An
# entry of the day resent meanwhile makes the day again, whose volume a later pass takes.)
DELETE_VOLUME = """
DELETE FROM journal_volume v USING unnest($2::timestamptz[], $3::timestamptz[]) d(lo, hi)
WHERE v.vm_id = ANY($1::uuid[]) AND v.minute >= d.lo AND v.minute < d.hi
"""
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
    # A rebuild that fails leaves the setting on this pooled connection, where it only limits
    # rebuilds: no statement awaited in a ``finally``, which a cancelled pass would run mid-cancel.
    await conn.execute(ONE_CORE_REBUILDS)
    await conn.execute(REINDEX.format(name=name))
    await conn.execute(RESET_REBUILDS)
    await conn.execute(MARK_COMPACTED.format(name=name))


async def try_lock_prune(conn: asyncpg.Connection) -> bool:
    """Take the retention pass's session-level lock, if no other session has it."""
    locked: bool = await conn.fetchval(TRY_PRUNE_LOCK)
    return locked


async def unlock_prune(conn: asyncpg.Connection) -> None:
    await conn.execute(UNLOCK_PRUNE)


async def journal_bytes(conn: asyncpg.Connection) -> int:
    value: int = await conn.fetchval(SELECT_JOURNAL_BYTES)
    return value


async def oldest_entry(conn: asyncpg.Connection) -> datetime | None:
    value: datetime | None = await conn.fetchval(SELECT_OLDEST)
    return value


async def detach(conn: asyncpg.Connection, days: Sequence[Partition]) -> list[str]:
    """Take these days out of journal_event, each renamed out of the way; returns the detached
    tables' names (none for a day gone already). Runs in the caller's short transaction, which
    blocks ingest until it ends: it should hold nothing else."""
    await conn.execute(DROP_LOCK_TIMEOUT)
    await conn.execute(LOCK_PARTITIONS)
    names = []
    for day in days:
        if await conn.fetchval(EXISTS, day.name):
            await conn.execute(DETACH.format(name=day.name))
            names.append(day.name + DETACHED_SUFFIX)
    return names


async def _left(conn: asyncpg.Connection, suffix: str) -> list[str]:
    pattern = PREFIX.replace("_", r"\_") + "%" + suffix.replace("_", r"\_")
    return [r["relname"] for r in await conn.fetch(SELECT_LEFT, pattern)]


async def detached(conn: asyncpg.Connection) -> list[str]:
    """Days detached by a pass that stopped before settling them."""
    return await _left(conn, DETACHED_SUFFIX)


async def settle(conn: asyncpg.Connection, names: Sequence[str]) -> list[int]:
    """Take what detached days held out of the summaries, in the caller's transaction, and mark
    them settled (``drop_settled`` drops them); returns each day's entry count. Ingest and queries
    go on meanwhile, but for the days' VMs' batches: they wait for the last few statements, after
    the counting."""
    days = [Partition(name, _day_of(name), 0) for name in names]
    boots: Counter[tuple[UUID, UUID]] = Counter()
    units: Counter[tuple[UUID, str]] = Counter()
    vms: Counter[UUID] = Counter()
    counts = []
    await conn.execute(ONE_CORE)
    for name in names:
        count = 0
        for vm_id, boot_id, unit, about_unit, n in await conn.fetch(COUNT_DAY.format(name=name)):
            count += n
            vms[vm_id] += n
            if boot_id is not None:
                boots[vm_id, boot_id] += n
            if unit is not None:
                units[vm_id, unit] += n
            if about_unit is not None and about_unit != unit:
                units[vm_id, about_unit] += n
        counts.append(count)
        settled = name.removesuffix(DETACHED_SUFFIX) + SETTLED_SUFFIX
        await conn.execute(SETTLED.format(name=name, settled=settled))
    if not days:
        return counts
    # A batch updates its VM's summary rows in an order of its own: holding the VM's ingest lock
    # first makes these updates wait for it, or it for them, never both.
    await conn.execute(LOCK_VMS, sorted(vms))
    end = max(d.end for d in days)
    if boots:
        vm_ids, boot_ids = zip(*boots, strict=True)
        await conn.execute(SUBTRACT_BOOTS, vm_ids, boot_ids, list(boots.values()))
        await conn.execute(DELETE_EMPTY_BOOTS, vm_ids, boot_ids)
        await conn.execute(RESET_BOOT_BOUNDS, vm_ids, boot_ids, end)
    if units:
        vm_ids, unit_names = zip(*units, strict=True)
        await conn.execute(SUBTRACT_UNITS, vm_ids, unit_names, list(units.values()))
        await conn.execute(DELETE_EMPTY_UNITS, vm_ids, unit_names)
        await conn.execute(RESET_UNIT_BOUNDS, vm_ids, unit_names, end)
    await conn.execute(DELETE_VOLUME, list(vms), [d.start for d in days], [d.end for d in days])
    await conn.execute(SUBTRACT_VMS, list(vms), list(vms.values()))
    return counts


async def drop_settled(conn: asyncpg.Connection) -> list[str]:
    """Drop the settled days, each in a statement of its own (``conn`` outside any transaction),
    then the contexts and trigram rows that no day kept uses; returns the dropped tables' names."""
    names = await _left(conn, SETTLED_SUFFIX)
    for name in names:
        await conn.execute(DROP_TABLE.format(name=name))
    if names:
        oldest_name = await conn.fetchval(SELECT_OLDEST_PARTITION)
        oldest = _day_of(oldest_name) if oldest_name else max(map(_day_of, names)) + timedelta(days=1)
        await conn.execute(DELETE_OLD_CONTEXTS, oldest)
        await trigram_store.delete_before(conn, datetime(oldest.year, oldest.month, oldest.day, tzinfo=UTC))
    return names
