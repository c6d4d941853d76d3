"""SQL of log volume: events per time bucket and priority, from the minute summary or the events.

``journal_volume`` holds events per VM, minute and priority; ingest keeps it (the merge statements in
journal/ingest_store.py). A histogram whose step is whole minutes reads it for every whole minute
inside the range and counts events only in the partial minutes at the edges, through the
(vm_id, ts) index. Filters the summary cannot answer (unit, grep, boot, identifier, ...) count
events with the same conditions a page uses, so the totals equal what the pages return.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from vmjournal.journal import store

SELECT_VOLUME_RANGE = """
SELECT min(minute) AS first, max(minute) + interval '1 minute' AS last FROM journal_volume
WHERE vm_id = ANY($1::uuid[])
"""

SELECT_VOLUME_SUMMARY = """
SELECT date_bin($2::interval, minute, timestamptz 'epoch') AS bucket, priority, sum(entries)::bigint AS n
FROM journal_volume
WHERE vm_id = ANY($1::uuid[]) AND minute >= $3 AND minute < $4 AND priority BETWEEN $5 AND $6
GROUP BY 1, 2
"""

# Conditions are filled in by ``count_events``: the page's own filter conditions.
COUNT_EVENTS = """
SELECT date_bin({step}::interval, ts, timestamptz 'epoch') AS bucket, coalesce(priority, 7) AS priority,
       count(*) AS n
FROM journal_event WHERE {where} GROUP BY 1, 2
"""


async def volume_range(conn: asyncpg.Connection, vm_ids: Sequence[UUID]) -> tuple[datetime | None, datetime | None]:
    """The first minute with events and the end of the last one, over these VMs."""
    row = await conn.fetchrow(SELECT_VOLUME_RANGE, list(vm_ids))
    return row["first"], row["last"]


async def summary_counts(
    conn: asyncpg.Connection,
    vm_ids: Sequence[UUID],
    *,
    step: timedelta,
    start: datetime,
    end: datetime,
    priorities: tuple[int, int],
) -> list[asyncpg.Record]:
    """(bucket, priority, n) from the summary, for the whole minutes in [start, end)."""
    return list(await conn.fetch(SELECT_VOLUME_SUMMARY, list(vm_ids), step, start, end, *priorities))


async def count_events(
    conn: asyncpg.Connection,
    vm_ids: Sequence[UUID],
    f: store.EventFilter,
    *,
    step: timedelta,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[asyncpg.Record]:
    """(bucket, priority, n) counted from the events that ``f`` selects, within [start, end)."""
    if f.units == []:
        return []
    # The page's own conditions, so the counts equal what the pages return.
    q = store._Query(UUID(int=0))
    q.args = [list(vm_ids)]
    where = ["vm_id = ANY($1::uuid[])", *store._filter_conditions(q, f, live=False)]
    if f.units is not None:
        many = q.arg(f.units)
        where.append(f"(unit = ANY({many}::text[]) OR about_unit = ANY({many}::text[]))")
    if start is not None:
        where.append(f"ts >= {q.arg(start)}")
    if end is not None:
        where.append(f"ts < {q.arg(end)}")
    sql = COUNT_EVENTS.format(step=q.arg(step), where=" AND ".join(where))
    args: list[Any] = q.args
    return list(await conn.fetch(sql, *args))
