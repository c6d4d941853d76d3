"""Journal retention: which day partitions go, dropped one at a time; and the partitions made ahead.

A pass runs in one process at a time (a transaction-level advisory lock held by a session that
does nothing else). Each day goes in two transactions: a short one detaches it (ingest waits for
that only), the next takes it out of the summaries and drops it while ingest goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vmjournal.config import Settings
from vmjournal.db import raw_connection, transaction
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
    async with transaction(sessions) as holder:
        if not await partition_store.try_lock_prune(await raw_connection(holder)):
            return None
        async with transaction(sessions) as session:
            conn = await raw_connection(session)
            first = int(now.timestamp()) // 86_400
            await partition_store.create_days(conn, range(first, first + DAYS_AHEAD + 1))
            parts = await partition_store.partitions(conn)
            total = await partition_store.journal_bytes(conn)
            leftovers = await partition_store.detached(conn)
        for leftover in leftovers:
            async with transaction(sessions) as session:
                await partition_store.settle(await raw_connection(session), leftover)
            log.info("retention finished dropping %s, detached by an earlier pass", leftover)
        other = total - sum(p.bytes for p in parts)
        dropped = []
        for partition, reason in choose(
            parts, now=now, days=settings.retention_days, max_bytes=settings.retention_max_bytes, other_bytes=other
        ):
            # Detaching is short and blocks ingest; settling the summaries and dropping do not.
            async with transaction(sessions) as session:
                name = await partition_store.detach(await raw_connection(session), partition)
            if name is None:
                continue
            async with transaction(sessions) as session:
                entries = await partition_store.settle(await raw_connection(session), name)
            log.info(
                "retention dropped %s (%d entries, %d bytes): %s", partition.name, entries, partition.bytes, reason
            )
            dropped.append(Dropped(partition, entries, reason))
        await _compact_closed_days(sessions, now)
        async with transaction(sessions) as session:
            merged = await trigram_store.merge_small(await raw_connection(session))
        if merged:
            log.info("retention merged %d rows of small batches' trigrams", merged)
        return dropped


async def _compact_closed_days(sessions: async_sessionmaker[AsyncSession], now: datetime) -> None:
    """Rebuild the indexes of the days before today once, packed (entries still arriving for them
    are stored meanwhile, and after)."""
    today = partition_store.day_name(int(now.timestamp()) // 86_400)
    engine = sessions.kw["bind"]
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        conn = (await autocommit.get_raw_connection()).driver_connection
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
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await prune_pass(self.sessions, self.settings)
            except Exception as exc:
                log.warning("retention pass failed: %s", exc)
            await asyncio.sleep(self.settings.retention_check_seconds)
