"""All SQL of the journal: batch ingest (COPY into a staging table) and the event queries.

Functions take an asyncpg connection inside the caller's transaction and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from vmjournal.journal.entries import ROW_COLUMNS, Row

# Session-local and emptied at commit, so concurrent batches on other connections never mix.
CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS journal_staging (
    cursor text, ts_us bigint, monotonic_us bigint, boot_id text, unit text, about_unit text,
    priority smallint, identifier text, pid integer, hostname text, message text, fields text
) ON COMMIT DELETE ROWS;
-- Emptied here too, in case a caller stores several batches in one transaction.
DELETE FROM journal_staging
"""

# One statement moves the batch, skips cursors already stored, keeps the boot and unit
# summaries and the VM's counters, and wakes live followers. Returns how many were new.
MERGE_STAGING = """
WITH ins AS (
    INSERT INTO journal_event (vm_id, cursor, ts, monotonic_us, boot_id, unit, about_unit, priority,
                               identifier, pid, hostname, message, fields)
    SELECT $1, cursor, timestamptz 'epoch' + ts_us * interval '1 microsecond', monotonic_us,
           boot_id::uuid, unit, about_unit, priority, identifier, pid, hostname, message, fields::json
    FROM journal_staging
    ON CONFLICT (vm_id, cursor) DO NOTHING
    RETURNING boot_id, ts, unit, about_unit
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
), counted AS (
    SELECT count(*) AS stored, max(ts) AS last_ts, min(ts) AS first_ts FROM ins
), vm_update AS (
    UPDATE vm SET event_count = event_count + counted.stored,
                  last_event_at = greatest(vm.last_event_at, counted.last_ts)
    FROM counted WHERE vm.id = $1 AND counted.stored > 0
)
SELECT stored, CASE WHEN stored > 0 THEN pg_notify(
    'vmjournal_events', $1::text || ' ' || (extract(epoch FROM first_ts) * 1000000)::bigint
) END AS notified
FROM counted
"""

# The VM record's last ingest problem: an entry skipped inside an export-format stream.
RECORD_INGEST_ERROR = "UPDATE vm SET last_ingest_error = $2, last_ingest_error_at = now() WHERE id = $1"

# Per-VM ingest lock: batches of one VM commit in the order their seq values were drawn, so a
# live follower that has seen seq N has seen everything of that VM up to N (journal/live.py).
LOCK_VM_INGEST = "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))"

# Highest seq drawn so far, across VMs (not transactional: it only grows).
SELECT_LAST_SEQ = "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('journal_event', 'seq')), 0)"

EVENT_COLUMNS = (
    "seq, cursor, ts, boot_id, unit, priority, identifier, pid, hostname, message, fields::text AS fields"
)

# New events of one VM for live followers: the notification's earliest timestamp bounds the
# (vm_id, ts, seq) index scan; seq orders them as they were committed.
SELECT_EVENTS_AFTER_SEQ = f"""
SELECT {EVENT_COLUMNS}, about_unit FROM journal_event
WHERE vm_id = $1 AND ts >= $2 AND seq > $3 ORDER BY seq LIMIT $4
"""

PURGE_VM = (
    "DELETE FROM journal_event WHERE vm_id = $1",
    "DELETE FROM journal_boot WHERE vm_id = $1",
    "DELETE FROM journal_unit WHERE vm_id = $1",
)

SELECT_BOOTS = """
SELECT boot_id, first_at, last_at, entries FROM journal_boot WHERE vm_id = $1 ORDER BY first_at, boot_id
"""

SELECT_UNITS = """
SELECT unit, entries, first_at, last_at FROM journal_unit WHERE vm_id = $1 ORDER BY unit
"""

SELECT_UNIT_NAMES_LIKE = """
SELECT unit FROM journal_unit WHERE vm_id = $1 AND unit LIKE $2 ORDER BY unit
"""


async def ingest(conn: asyncpg.Connection, vm_id: UUID, rows: Sequence[Row]) -> int:
    """Store the rows not stored yet; returns how many were new."""
    if not rows:
        return 0
    if not conn.is_in_transaction():
        # A session that has not run a statement yet has not begun its transaction: without one,
        # the staging rows would vanish at the COPY's own commit.
        async with conn.transaction():
            return await _ingest(conn, vm_id, rows)
    return await _ingest(conn, vm_id, rows)


async def _ingest(conn: asyncpg.Connection, vm_id: UUID, rows: Sequence[Row]) -> int:
    await conn.execute(LOCK_VM_INGEST, vm_id)
    await conn.execute(CREATE_STAGING)
    await conn.copy_records_to_table("journal_staging", records=rows, columns=ROW_COLUMNS)
    stored: int = await conn.fetchval(MERGE_STAGING, vm_id)
    return stored


async def record_ingest_error(conn: asyncpg.Connection, vm_id: UUID, problem: str) -> None:
    await conn.execute(RECORD_INGEST_ERROR, vm_id, problem)


@dataclass
class EventFilter:
    """journalctl-like selection; every field narrows the result."""

    units: list[str] | None = None
    priority_min: int = 0
    priority_max: int = 7
    since: datetime | None = None
    until: datetime | None = None
    boot_id: UUID | None = None
    boot_range: tuple[datetime, datetime] | None = None
    grep: str | None = None
    grep_case_sensitive: bool = True
    identifiers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Position:
    """Where a page ends: the keyset (timestamp, insertion sequence)."""

    ts: datetime
    seq: int


class _Query:
    def __init__(self, vm_id: UUID) -> None:
        self.args: list[Any] = [vm_id]

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


def _conditions(q: _Query, f: EventFilter, after: Position | None, descending: bool) -> list[str]:
    where = ["vm_id = $1"]
    if f.priority_max < 7 or f.priority_min > 0:
        where.append(f"priority BETWEEN {q.arg(f.priority_min)} AND {q.arg(f.priority_max)}")
    if f.since is not None:
        where.append(f"ts >= {q.arg(f.since)}")
    if f.until is not None:
        where.append(f"ts <= {q.arg(f.until)}")
    if f.boot_id is not None:
        where.append(f"boot_id = {q.arg(f.boot_id)}")
        if f.boot_range is not None:
            # The boot summary bounds the time range, so the (vm_id, ts) indexes do the work.
            where.append(f"ts BETWEEN {q.arg(f.boot_range[0])} AND {q.arg(f.boot_range[1])}")
    if f.grep is not None:
        op = "~" if f.grep_case_sensitive else "~*"
        where.append(f"message {op} {q.arg(f.grep)}")
    if f.identifiers:
        where.append(f"identifier = ANY({q.arg(f.identifiers)}::text[])")
    if after is not None:
        cmp = "<" if descending else ">"
        where.append(f"(ts, seq) {cmp} ({q.arg(after.ts)}, {q.arg(after.seq)})")
    return where


def _select(where: list[str], order: str, limit_arg: str) -> str:
    return (
        f"SELECT {EVENT_COLUMNS} FROM journal_event WHERE {' AND '.join(where)} "
        f"ORDER BY ts {order}, seq {order} LIMIT {limit_arg}"
    )


async def query_events(
    conn: asyncpg.Connection,
    vm_id: UUID,
    f: EventFilter,
    *,
    limit: int,
    after: Position | None = None,
    descending: bool = False,
) -> list[asyncpg.Record]:
    """One page of events in journal order (or reversed), after the given position."""
    q = _Query(vm_id)
    order = "DESC" if descending else "ASC"
    where = _conditions(q, f, after, descending)
    limit_arg = q.arg(limit)
    if f.units is None:
        sql = _select(where, order, limit_arg)
    else:
        # Two index-ordered scans merged: the unit's own output, and what PID 1 and others logged
        # about it. An OR of both would read every matching row and sort them.
        if len(f.units) == 1:
            # Plain equality keeps the scan in index order; = ANY(array) may not.
            one = q.arg(f.units[0])
            is_unit, is_about, not_unit = f"unit = {one}", f"about_unit = {one}", f"unit IS DISTINCT FROM {one}"
        else:
            many = q.arg(f.units)
            is_unit, is_about = f"unit = ANY({many}::text[])", f"about_unit = ANY({many}::text[])"
            not_unit = f"(unit IS NULL OR unit <> ALL({many}::text[]))"
        own = _select([*where, is_unit], order, limit_arg)
        about = _select([*where, is_about, not_unit], order, limit_arg)
        sql = (
            f"SELECT * FROM (({own}) UNION ALL ({about})) e "
            f"ORDER BY ts {order}, seq {order} LIMIT {limit_arg}"
        )
    return list(await conn.fetch(sql, *q.args))


async def lock_vm_ingest(conn: asyncpg.Connection, vm_id: UUID) -> None:
    """Wait for the VM's batch in flight, if any; held until the caller's transaction ends."""
    await conn.execute(LOCK_VM_INGEST, vm_id)


async def last_seq(conn: asyncpg.Connection) -> int:
    value: int = await conn.fetchval(SELECT_LAST_SEQ)
    return value


async def events_after_seq(
    conn: asyncpg.Connection, vm_id: UUID, *, after_seq: int, ts_from: datetime, limit: int
) -> list[asyncpg.Record]:
    """Events of the VM with seq above ``after_seq`` and timestamp from ``ts_from``, in seq order."""
    return list(await conn.fetch(SELECT_EVENTS_AFTER_SEQ, vm_id, ts_from, after_seq, limit))


async def list_boots(conn: asyncpg.Connection, vm_id: UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_BOOTS, vm_id))


async def list_units(conn: asyncpg.Connection, vm_id: UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_UNITS, vm_id))


async def units_like(conn: asyncpg.Connection, vm_id: UUID, pattern: str) -> list[str]:
    return [r["unit"] for r in await conn.fetch(SELECT_UNIT_NAMES_LIKE, vm_id, pattern)]


async def purge(conn: asyncpg.Connection, vm_id: UUID) -> None:
    for statement in PURGE_VM:
        await conn.execute(statement, vm_id)
