"""The journal's layout before the compact store (up to revision 5dc5281c8ab3): a raw copy of each
entry in ``fields`` next to the filter columns, keyed by the cursor. Migration tests fill a
database at an old revision with it, as that revision's ingest did."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import orjson

from vmjournal.journal import entries

COLUMNS = (
    "vm_id",
    "cursor",
    "ts",
    "monotonic_us",
    "boot_id",
    "unit",
    "about_unit",
    "priority",
    "identifier",
    "pid",
    "hostname",
    "message",
    "fields",
)

# The summaries that revision's ingest kept, recomputed from the events.
SUMMARIES = (
    "DELETE FROM journal_boot",
    "DELETE FROM journal_unit",
    """INSERT INTO journal_boot (vm_id, boot_id, first_at, last_at, entries)
       SELECT vm_id, boot_id, min(ts), max(ts), count(*) FROM journal_event WHERE boot_id IS NOT NULL GROUP BY 1, 2""",
    """INSERT INTO journal_unit (vm_id, unit, entries, first_at, last_at)
       SELECT vm_id, name, count(*), min(ts), max(ts) FROM (
           SELECT vm_id, unit AS name, ts FROM journal_event WHERE unit IS NOT NULL
           UNION ALL
           SELECT vm_id, about_unit, ts FROM journal_event
           WHERE about_unit IS NOT NULL AND about_unit IS DISTINCT FROM unit) n
       GROUP BY 1, 2""",
    """UPDATE vm SET event_count = n, last_event_at = last
       FROM (SELECT vm_id, count(*) AS n, max(ts) AS last FROM journal_event GROUP BY 1) e WHERE vm.id = e.vm_id""",
)
VOLUME = (
    "DELETE FROM journal_volume",
    """INSERT INTO journal_volume (vm_id, minute, priority, entries)
       SELECT vm_id, date_bin('1 minute', ts, timestamptz 'epoch'), coalesce(priority, 7), count(*)
       FROM journal_event GROUP BY 1, 2, 3""",
)


def rows(vm_id: uuid.UUID, batch: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """The batch as rows of the old journal_event: the columns as ingest derives them, and the raw entry."""
    out = []
    for row, entry in zip(entries.to_rows(batch).rows, batch, strict=True):
        boot_id = row[5]
        out.append(
            (
                vm_id,
                entry["__CURSOR"],
                entries.timestamp_from_us(row[entries.TS_US]),
                row[3],
                uuid.UUID(boot_id) if boot_id else None,
                *row[6:13],
                orjson.dumps(entry).decode(),
            )
        )
    return out


async def insert(conn: asyncpg.Connection, vm_id: uuid.UUID, batch: Sequence[Mapping[str, Any]]) -> None:
    await conn.copy_records_to_table("journal_event", records=rows(vm_id, batch), columns=COLUMNS)


async def summarize(conn: asyncpg.Connection, *, volume: bool) -> None:
    """Fill the summaries as that revision's ingest would have (``volume``: the revision has journal_volume)."""
    for statement in (*SUMMARIES, *(VOLUME if volume else ())):
        await conn.execute(statement)
