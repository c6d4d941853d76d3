"""The journal_volume migration fills the summary from events stored before it; purge empties it."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from support import old_journal
from support.journal_files import wide_entries

from vmjournal.db import alembic_config
from vmjournal.journal import entries, ingest_store, store

BEFORE = "3c0f1e2a9b47"
VOLUME = """SELECT vm_id, minute, priority, entries FROM journal_volume ORDER BY 1, 2, 3"""
COUNTED = """
SELECT vm_id, date_bin('1 minute', ts, timestamptz 'epoch') AS minute, priority, count(*) AS entries
FROM journal_event GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""


def test_upgrade_fills_the_summary_from_existing_events(old_database: str) -> None:
    from alembic import command

    config = alembic_config(old_database)
    command.upgrade(config, BEFORE)  # type: ignore[arg-type]

    async def load() -> list[uuid.UUID]:
        conn = await asyncpg.connect(old_database)
        try:
            ids = [uuid.uuid4(), uuid.uuid4()]
            for n, vm_id in enumerate(ids):
                await conn.execute(
                    "INSERT INTO vm (id, name, size, provider, status) VALUES ($1, $2, 'small', 'external', 'running')",
                    vm_id,
                    f"old-{n}",
                )
                # The old schema's ingest: straight into journal_event (the old statement had no volume CTE).
                await old_journal.insert(
                    conn, vm_id, wide_entries(n * 50_000, 20_000, boot=uuid.uuid4().hex, units=["a.service"])
                )
            return ids
        finally:
            await conn.close()

    ids = asyncio.run(load())
    command.upgrade(config, "head")  # type: ignore[arg-type]

    async def check() -> None:
        conn = await asyncpg.connect(old_database)
        try:
            volume = [tuple(r) for r in await conn.fetch(VOLUME)]
            counted = [tuple(r) for r in await conn.fetch(COUNTED)]
            assert volume == counted
            assert sum(r[3] for r in volume) == 40_000 and len(volume) > 2
            # From now on ingest keeps it, and purge removes it with the VM's events.
            async with conn.transaction():
                extra = wide_entries(200_000, 500, boot=uuid.uuid4().hex, units=["b.service"])
                await ingest_store.ingest(conn, ids[0], entries.to_rows(extra))
            assert [tuple(r) for r in await conn.fetch(VOLUME)] == [tuple(r) for r in await conn.fetch(COUNTED)]
            async with conn.transaction():
                await store.purge(conn, ids[0])
            assert await conn.fetchval("SELECT count(*) FROM journal_volume WHERE vm_id = $1", ids[0]) == 0
            assert await conn.fetchval("SELECT count(*) FROM journal_volume WHERE vm_id = $1", ids[1]) > 0
        finally:
            await conn.close()

    asyncio.run(check())
