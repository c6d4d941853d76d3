"""Running one VM's page: plans that follow an index's order, and a grep read through the batches'
letter trigrams (journal/trigrams.py) instead of the VM's whole journal."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from vmjournal.journal import store, trigram_store, trigrams

# Every page has an index that yields its order (the primary key (vm_id, ts, ...) at least), and walking it stops
# at the page's end. Without statistics (a VM's first catch-up, before autoanalyze) the planner
# guessed a handful of rows for a unit and chose a bitmap scan of all of them plus a sort: 30 times
# slower at 200 k events, and it grows with the VM. So a page's statement runs with those plans
# off, inside a savepoint rolled back at once, so the settings end with the statement. And it is
# planned for its own values each time: after five runs PostgreSQL may keep one generic plan for
# every unit, which after a busy unit's pages walked a 2 M-event journal for a rare one (300 ms, not 7).
ORDERED_PLANS = (
    "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off; SET LOCAL plan_cache_mode = force_custom_plan"
)


async def fetch_ordered(conn: asyncpg.Connection, sql: str, args: Sequence[Any]) -> list[asyncpg.Record]:
    scope = conn.transaction()
    await scope.start()
    try:
        await conn.execute(ORDERED_PLANS)
        return list(await conn.fetch(sql, *args))
    finally:
        await scope.rollback()


async def query_events(
    conn: asyncpg.Connection,
    vm_id: UUID,
    f: store.EventFilter,
    *,
    limit: int,
    after: store.Position | None = None,
    descending: bool = False,
) -> list[asyncpg.Record]:
    """One page of events in journal order (or reversed), after the given position."""
    if f.grep is not None:
        grams = trigrams.of_pattern(vm_id, f.grep)
        if grams is not None:
            lo, hi = _time_bounds(f, after, descending)
            within = await trigram_store.ranges(conn, vm_id, grams, lo, hi)
            if within is not None:
                return await _grep_page(conn, vm_id, f, within, limit=limit, after=after, descending=descending)
    sql, args = store.page_query(vm_id, f, limit=limit, after=after, descending=descending)
    return await fetch_ordered(conn, sql, args)


def _time_bounds(
    f: store.EventFilter, after: store.Position | None, descending: bool
) -> tuple[datetime | None, datetime | None]:
    """The page's time bounds, to leave out the ranges outside them."""
    lo, hi = f.since, f.until
    if f.boot_range is not None:
        lo = max(lo or f.boot_range[0], f.boot_range[0])
        hi = min(hi or f.boot_range[1], f.boot_range[1])
    if after is not None:
        if descending:
            hi = min(hi or after.ts, after.ts)
        else:
            lo = max(lo or after.ts, after.ts)
    return lo, hi


# A grep's ranges are read a window at a time, in page order, until the page is full. Each range of
# a window is read whole unless it fills the page, so the windows are sized by the matches per range
# seen so far: a common word fills the page from the first window; a word in 1 entry of 10 000 (about
# one match per range holding it) reads the hundred or so ranges it needs, not the 336 of fixed 16,
# 64, 256 windows.
FIRST_WINDOW = 16
MAX_WINDOW = 256
WINDOW_MARGIN = 1.25


def next_window(previous: int, read: int, found: int, wanted: int) -> int:
    """How many ranges the next window reads, after ``read`` ranges gave ``found`` of ``wanted`` rows."""
    if read == 0:
        return FIRST_WINDOW
    if found == 0:
        return min(previous * 4, MAX_WINDOW)
    needed = math.ceil((wanted - found) * read / found * WINDOW_MARGIN)
    return max(FIRST_WINDOW, min(needed, MAX_WINDOW))


async def _grep_page(
    conn: asyncpg.Connection,
    vm_id: UUID,
    f: store.EventFilter,
    within: list[trigram_store.Range],
    *,
    limit: int,
    after: store.Position | None,
    descending: bool,
) -> list[asyncpg.Record]:
    ordered = within[::-1] if descending else within
    rows: list[asyncpg.Record] = []
    start = step = 0
    while start < len(ordered) and len(rows) < limit:
        step = next_window(step, start, len(rows), limit)
        # Ranges are disjoint and in page order: each window's entries all come after the last one's.
        sql, args = store.page_query(
            vm_id, f, limit=limit - len(rows), after=after, descending=descending, within=ordered[start : start + step]
        )
        rows += await fetch_ordered(conn, sql, args)
        start += step
    return rows


async def explain_page(
    conn: asyncpg.Connection, vm_id: UUID, f: store.EventFilter, *, limit: int, descending: bool = False
) -> Any:
    """The plan a page gets (EXPLAIN, JSON form): for tests and benches that check index order."""
    sql, args = store.page_query(vm_id, f, limit=limit, descending=descending)
    rows = await fetch_ordered(conn, f"EXPLAIN (FORMAT JSON) {sql}", args)
    plan = rows[0][0]
    # A connection set up by SQLAlchemy decodes json itself; a plain asyncpg one gives text.
    return orjson.loads(plan) if isinstance(plan, str) else plan
