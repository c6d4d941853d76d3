"""Batches stored before numbers had keys hold letter trigrams only. The upgrade marks them, and a
grep that needs a number still reads them: no entry stored before the upgrade goes missing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from vmjournal.db import alembic_config
from vmjournal.journal import entries, ingest_store, pages, store, trigram_store, trigrams

BEFORE = "4a7c2e9b3d18"
START_US = 1_764_200_000_000_000
PATTERN = "items/4242 "
NEWEST_ROW = "SELECT grams FROM journal_trigrams WHERE vm_id = $1 ORDER BY id DESC LIMIT 1"


def batch(first: int, n: int, *, hash_base: int = 0) -> list[dict[str, Any]]:
    boot = uuid.uuid4().hex
    return [
        {
            "__CURSOR": f"s={boot};i={i + 1:x};b={boot};m={i:x};t={START_US + i * 1000:x};x={hash_base + i:x}",
            "__REALTIME_TIMESTAMP": str(START_US + i * 1000),
            "__MONOTONIC_TIMESTAMP": str(i),
            "_BOOT_ID": boot,
            "SYSLOG_IDENTIFIER": "nginx",
            "MESSAGE": f"GET /items/{i} HTTP/1.1",
        }
        for i in range(first, first + n)
    ]


def letters_only(vm_id: uuid.UUID, keys: list[int]) -> list[int]:
    """The keys the previous ingest stored: trigram values only."""
    salt = trigrams._salt(vm_id)
    return [k for k in keys if 0 <= k - salt < trigrams._NUMBERS_FROM]


async def grep(conn: asyncpg.Connection, vm_id: uuid.UUID) -> list[str]:
    f = store.EventFilter(grep=PATTERN)
    return [r["message"] for r in await pages.query_events(conn, vm_id, f, limit=100)]


def test_upgrade_marks_the_rows_of_letters_only(old_database: str) -> None:
    from alembic import command

    config = alembic_config(old_database)
    command.upgrade(config, BEFORE)  # type: ignore[arg-type]
    vm_id, other = uuid.uuid4(), uuid.uuid4()
    needed = trigrams.of_pattern(vm_id, PATTERN)
    assert needed is not None and needed.old is not None, "the pattern needs a number"

    async def load() -> None:
        conn = await asyncpg.connect(old_database)
        try:
            for vm, name in ((vm_id, "old"), (other, "other")):
                await conn.execute(
                    "INSERT INTO vm (id, name, size, provider, status) VALUES ($1, $2, 'small', 'external', 'running')",
                    vm,
                    name,
                )
            # Ten batches, the word in one; stored as the previous ingest stored them.
            for first in range(0, 10_000, 1000):
                async with conn.transaction():
                    await ingest_store.ingest(conn, vm_id, entries.to_rows(batch(first, 1000)))
            async with conn.transaction():
                await ingest_store.ingest(conn, other, entries.to_rows(batch(0, 10)))
            for row in await conn.fetch("SELECT id, vm_id, grams FROM journal_trigrams"):
                old = letters_only(row["vm_id"], row["grams"])
                await conn.execute("UPDATE journal_trigrams SET grams = $2 WHERE id = $1", row["id"], old)
            # Without the mark, the number's key is in no row: the grep would find nothing.
            assert await trigram_store.ranges(conn, vm_id, trigrams.Needed(needed.keys), None, None) == []
        finally:
            await conn.close()

    asyncio.run(load())
    command.upgrade(config, "head")  # type: ignore[arg-type]

    async def check() -> None:
        conn = await asyncpg.connect(old_database)
        try:
            # Each row holds its own VM's mark, as trigrams.py computes it.
            for row in await conn.fetch("SELECT vm_id, grams FROM journal_trigrams"):
                assert row["grams"][-1] == trigrams._salt(row["vm_id"]) + trigrams.LETTERS_ONLY
                assert row["grams"] == sorted(row["grams"])
            assert await grep(conn, vm_id) == ["GET /items/4242 HTTP/1.1"]
            # A batch stored after the upgrade has the number's key, and no mark.
            async with conn.transaction():
                await ingest_store.ingest(conn, vm_id, entries.to_rows(batch(4242, 1, hash_base=1)))
            new = await conn.fetchval(NEWEST_ROW, vm_id)
            assert set(needed.keys) <= set(new) and trigrams._salt(vm_id) + trigrams.LETTERS_ONLY not in new
            assert await grep(conn, vm_id) == ["GET /items/4242 HTTP/1.1"] * 2
        finally:
            await conn.close()

    asyncio.run(check())
