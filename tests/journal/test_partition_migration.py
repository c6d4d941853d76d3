"""The journal's migrations move a database with events (to day partitions, then to the compact
store): every query answers as a database that received the same entries through today's ingest,
each entry reads back byte for byte as it was sent, and seq goes on."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from support import old_journal
from support.journal_answers import answers, every_entry
from support.journal_files import wide_entries

from vmjournal.db import alembic_config
from vmjournal.journal import entries, ingest_store, store

BEFORE = "7a41c9d2e5f3"


def test_upgrade_keeps_every_answer(old_database: str, database_url: str) -> None:
    from alembic import command

    config = alembic_config(old_database)
    command.upgrade(config, BEFORE)  # type: ignore[arg-type]
    ids = [uuid.uuid4(), uuid.uuid4()]
    sent: list[tuple[uuid.UUID, list[dict[str, str]]]] = []
    for n, vm_id in enumerate(ids):
        for start in range(n * 90_000_000, n * 90_000_000 + 90_000_000, 30_000_000):
            # Batches far apart in time: three boots on three days.
            sent.append((vm_id, wide_entries(start, 2000, boot=uuid.uuid4().hex, units=["a.service", "b.service"])))

    async def load(url: str, old: bool) -> int:
        conn = await asyncpg.connect(url)
        try:
            for n, vm_id in enumerate(ids):
                await conn.execute(
                    "INSERT INTO vm (id, name, size, provider, status) VALUES ($1, $2, 'small', 'external', 'running')",
                    vm_id,
                    f"old-{n}",
                )
            for vm_id, batch in sent:
                async with conn.transaction():
                    if old:
                        await old_journal.insert(conn, vm_id, batch)
                    else:
                        assert await ingest_store.ingest(conn, vm_id, entries.to_rows(batch)) == len(batch)
            if old:
                await old_journal.summarize(conn, volume=True)
            return await store.last_seq(conn)
        finally:
            await conn.close()

    seq_before = asyncio.run(load(old_database, old=True))
    command.upgrade(config, "head")  # type: ignore[arg-type]
    assert asyncio.run(load(database_url, old=False)) == seq_before

    async def check() -> None:
        conn = await asyncpg.connect(old_database)
        fresh = await asyncpg.connect(database_url)
        try:
            assert await conn.fetchval("SELECT relkind FROM pg_class WHERE relname = 'journal_event'") == b"p"
            parts = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'journal_event'::regclass"
            assert await conn.fetchval(parts) >= 3
            assert await answers(conn, ids) == await answers(fresh, ids)
            for vm_id in ids:
                assert await every_entry(conn, vm_id) == [e for v, b in sent if v == vm_id for e in b]
            assert await store.last_seq(conn) == seq_before
            # Ingest goes on: resent entries are still known, new ones get seq above every old one.
            async with conn.transaction():
                assert await ingest_store.ingest(conn, ids[0], entries.to_rows(sent[0][1])) == 0
            new = wide_entries(500_000_000, 100, boot=uuid.uuid4().hex, units=["a.service"])
            async with conn.transaction():
                assert await ingest_store.ingest(conn, ids[0], entries.to_rows(new)) == 100
            assert (
                await conn.fetchval(
                    "SELECT min(seq) FROM journal_event WHERE ts >= $1",
                    entries.timestamp_from_us(int(new[0]["__REALTIME_TIMESTAMP"])),
                )
                > seq_before
            )
        finally:
            await conn.close()
            await fresh.close()

    asyncio.run(check())
