"""Journal retention: which day partitions go, dropped together; and the partitions made ahead.

A pass runs in one process at a time (a session-level advisory lock held by a connection that
does nothing else). The days go in one short transaction that detaches them all (ingest waits for
that only), then one that takes them out of the summaries (the days' VMs' batches wait for its
last statements), then each is dropped on its own while ingest goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vmjournal.background import cancel_all
from vmjournal.config import Settings
from vmjournal.db import autocommit_connection, driver_transaction
from vmjournal.journal import partition_store, trigram_store
from vmjournal.journal.partition_store import Dropped, Partition

__all__ = ["Dropped", "Pruner", "choose", "prune_pass"]

log = logging.getLogger(__name__)

# Today's and the next days' partitions exist before their first entry arrives.
DAYS_AHEAD = 2


def choose(
    partitions: Sequence[Partition], *, now: datetime, days: int, max_bytes: int | None, other_bytes: int = 0
) -> list[tuple[Partition, str]]:
    """The partitions to drop, oldest first, each with why: whole days older than ``days``, then the
    oldest days while the journal is over ``max_bytes``. Today's and later days never go."""
    today = now.astimezone(UTC).date()
    chosen: list[tuple[Partition, str]] = []
    kept = []
    for p in partitions:
        if days and p.day < today - timedelta(days=days):
            chosen.append((p, "age"))
        else:
            kept.append(p)
    if max_bytes is not None:
        total = other_bytes + sum(p.bytes for p in kept)
        for p in kept:
            if total <= max_bytes or p.day >= today:
                break
            chosen.append((p, "size"))
            total -= p.bytes
    return chosen


async def prune_pass(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, *, now: datetime | None = None
) -> list[Dropped] | None:
    """Create the coming days' partitions, drop what retention says, compact the closed days and
    merge small batches' trigrams; None if another process is running a pass now."""
    now = now or datetime.now(UTC)
    async with autocommit_connection(sessions) as holder:
        if not await partition_store.try_lock_prune(holder):
            return None
        try:
            return await _pass(sessions, settings, now)
        finally:
            await partition_store.unlock_prune(holder)


async def _settle_and_drop(sessions: async_sessionmaker[AsyncSession], detached: list[str]) -> list[int]:
    """Take detached days out of the summaries in one transaction, then drop every settled table,
    each on its own (a drop unlinks files at commit); how many entries each day held."""
    counts: list[int] = []
    if detached:
        async with driver_transaction(sessions) as conn:
            counts = await partition_store.settle(conn, detached)
    async with autocommit_connection(sessions) as conn:
        await partition_store.drop_settled(conn)
    return counts


async def _pass(sessions: async_sessionmaker[AsyncSession], settings: Settings, now: datetime) -> list[Dropped]:
    # What a stopped pass left goes first: a day made again by late entries and dropped again must
    # not meet its old detached or settled table's name.
    async with driver_transaction(sessions) as conn:
        leftovers = await partition_store.detached(conn)
    await _settle_and_drop(sessions, leftovers)
    for leftover in leftovers:
        log.info("retention finished dropping %s, detached by an earlier pass", leftover)
    async with driver_transaction(sessions) as conn:
        first = int(now.timestamp()) // 86_400
        await partition_store.create_days(conn, range(first, first + DAYS_AHEAD + 1))
        parts = await partition_store.partitions(conn)
        total = await partition_store.journal_bytes(conn)
    other = total - sum(p.bytes for p in parts)
    chosen = choose(
        parts, now=now, days=settings.retention_days, max_bytes=settings.retention_max_bytes, other_bytes=other
    )
    # Detaching blocks ingest: every chosen day goes in one short transaction. Then one more takes
    # them out of the summaries; they are dropped after it.
    names: set[str] = set()
    if chosen:
        async with driver_transaction(sessions) as conn:
            names.update(await partition_store.detach(conn, [p for p, _ in chosen]))
    gone = [(p, reason) for p, reason in chosen if p.name + partition_store.DETACHED_SUFFIX in names]
    dropped = []
    if gone:
        counts = await _settle_and_drop(sessions, [p.name + partition_store.DETACHED_SUFFIX for p, _ in gone])
        for (partition, reason), entries in zip(gone, counts, strict=True):
            log.info(
                "retention dropped %s (%d entries, %d bytes): %s", partition.name, entries, partition.bytes, reason
            )
            dropped.append(Dropped(partition, entries, reason))
    await _compact_closed_days(sessions, now)
    async with autocommit_connection(sessions) as conn:
        # Each merge is a transaction of its own (trigram_store), not one for them all.
        merged = await trigram_store.merge_small(conn)
    if merged:
        log.info("retention merged %d rows of small batches' trigrams", merged)
    return dropped


async def _compact_closed_days(sessions: async_sessionmaker[AsyncSession], now: datetime) -> None:
    """Rebuild the indexes of the days before today once, packed (entries still arriving for them
    are stored meanwhile, and after)."""
    today = partition_store.day_name(int(now.timestamp()) // 86_400)
    async with autocommit_connection(sessions) as conn:
        for name in await partition_store.uncompacted(conn):
            if name >= today:
                break
            started = time.monotonic()
            try:
                await partition_store.compact(conn, name)
            except asyncpg.PostgresError as exc:
                log.warning("retention could not compact %s (next pass tries again): %s", name, exc)
                return
            log.info("retention compacted %s in %.1f s", name, time.monotonic() - started)


class Pruner:
    """Runs a retention pass every ``retention_check_seconds`` in the service."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        await cancel_all([self._task], "retention")

    async def _loop(self) -> None:
        while True:
            try:
                await prune_pass(self.sessions, self.settings)
            except Exception as exc:
                log.warning("retention pass failed: %s", exc)
            await asyncio.sleep(self.settings.retention_check_seconds)
