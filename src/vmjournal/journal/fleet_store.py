"""SQL of the fleet: one page of events merged across VMs, and per-VM summaries in one round trip.

A fleet page is the per-VM pages of journal/store.py (the same filter SQL, so every filter of
``/vm/{name}/boot`` works here too) joined by UNION ALL under one ``ORDER BY ts, seq LIMIT n``.
Each branch walks its VM's index in order and stops at the page's end, so PostgreSQL merges them
(Merge Append) and reads about one page in all, not one page per VM. ``seq`` is global, so the
keyset position (ts, seq) is one total order over every VM.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from vmjournal.journal import store

# Placeholders of a statement built for one VM, renumbered to sit in the fleet statement.
_PLACEHOLDER = re.compile(r"\$(\d+)\b")

SELECT_BOOTS_OF = """
SELECT vm_id, boot_id, first_at, last_at, entries FROM journal_boot
WHERE vm_id = ANY($1::uuid[]) ORDER BY vm_id, first_at, boot_id
"""

SELECT_UNIT_NAMES_LIKE_OF = """
SELECT vm_id, unit FROM journal_unit WHERE vm_id = ANY($1::uuid[]) AND unit LIKE $2 ORDER BY vm_id, unit
"""

# Every selected VM's ingest lock, always in the same order, so two fleet snapshots never deadlock
# (an ingest takes one lock only).
LOCK_VMS_INGEST = """
SELECT count(pg_advisory_xact_lock(hashtextextended(v::text, 0)))
FROM (SELECT DISTINCT unnest($1::uuid[]) AS v ORDER BY 1) s
"""


@dataclass(frozen=True)
class Target:
    """One VM of a fleet query, with its own filter (a unit glob or a boot offset resolve per VM)."""

    vm_id: UUID
    filter: store.EventFilter


def _shift(sql: str, offset: int) -> str:
    return _PLACEHOLDER.sub(lambda m: f"${int(m.group(1)) + offset}", sql)


def fleet_page_query(
    targets: Sequence[Target], *, limit: int, after: store.Position | None = None, descending: bool = False
) -> tuple[str, list[Any]]:
    """One page over several VMs: each row has ``vm_index``, the position of its VM in ``targets``."""
    args: list[Any] = []
    branches = []
    for index, target in enumerate(targets):
        sql, branch_args = store.page_query(
            target.vm_id, target.filter, limit=limit, after=after, descending=descending
        )
        branches.append(f"(SELECT {index} AS vm_index, p.* FROM ({_shift(sql, len(args))}) p)")
        args += branch_args
    if not branches:
        return "SELECT NULL::int AS vm_index WHERE false", []
    args.append(limit)
    order = "DESC" if descending else "ASC"
    union = " UNION ALL ".join(branches)
    return f"SELECT * FROM ({union}) f ORDER BY ts {order}, seq {order} LIMIT ${len(args)}", args


async def query_fleet(
    conn: asyncpg.Connection,
    targets: Sequence[Target],
    *,
    limit: int,
    after: store.Position | None = None,
    descending: bool = False,
) -> list[asyncpg.Record]:
    sql, args = fleet_page_query(targets, limit=limit, after=after, descending=descending)
    return await store._fetch_ordered(conn, sql, args)


async def explain_fleet(
    conn: asyncpg.Connection, targets: Sequence[Target], *, limit: int, analyze: bool = False
) -> Any:
    """The plan of a fleet page (JSON form), for tests and benches."""
    import orjson

    sql, args = fleet_page_query(targets, limit=limit)
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    rows = await store._fetch_ordered(conn, f"EXPLAIN ({options}) {sql}", args)
    plan = rows[0][0]
    return orjson.loads(plan) if isinstance(plan, str) else plan


async def boots_of(conn: asyncpg.Connection, vm_ids: Sequence[UUID]) -> dict[UUID, list[asyncpg.Record]]:
    """Each VM's boots, oldest first."""
    out: dict[UUID, list[asyncpg.Record]] = {vm_id: [] for vm_id in vm_ids}
    for row in await conn.fetch(SELECT_BOOTS_OF, list(vm_ids)):
        out[row["vm_id"]].append(row)
    return out


async def units_like_of(conn: asyncpg.Connection, vm_ids: Sequence[UUID], pattern: str) -> dict[UUID, list[str]]:
    out: dict[UUID, list[str]] = {vm_id: [] for vm_id in vm_ids}
    for row in await conn.fetch(SELECT_UNIT_NAMES_LIKE_OF, list(vm_ids), pattern):
        out[row["vm_id"]].append(row["unit"])
    return out


async def lock_vms_ingest(conn: asyncpg.Connection, vm_ids: Sequence[UUID]) -> None:
    """Wait for the VMs' batches in flight; held until the caller's transaction ends."""
    await conn.fetchval(LOCK_VMS_INGEST, list(vm_ids))
