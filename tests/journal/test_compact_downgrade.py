"""The compact store's migration (9b3e4f6a1c27) goes back: a downgraded database holds the layout of
the revision before it, with every entry's fields as they were sent, the same cursors, seq, summaries
and schema, and upgrading it again answers every query as before the round trip."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from support import old_journal
from support.journal_answers import answers, every_entry
from support.journal_files import journal_json, odd_entries, sample_entries, wide_entries, write_journal

from vmjournal.db import alembic_config
from vmjournal.journal import entries, ingest_store, partition_store

pytestmark = pytest.mark.usefixtures("journal_tools")

PREVIOUS = "5dc5281c8ab3"

# The schema as the catalogue sees it: a downgrade must leave no table, index or name behind. NOT NULL
# constraints (named in PostgreSQL 18 after what the schema held when they were made) are left to the
# columns' is_nullable.
SCHEMA = (
    """SELECT table_name, column_name, ordinal_position, data_type, is_nullable, collation_name, is_identity,
              identity_generation, column_default
       FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 3""",
    "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2",
    """SELECT conrelid::regclass::text AS rel, conname, pg_get_constraintdef(oid) FROM pg_constraint
       WHERE connamespace = 'public'::regnamespace AND contype <> 'n' ORDER BY 1, 2""",
    """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
       WHERE i.inhparent = 'journal_event'::regclass ORDER BY 1""",
    "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1",
    "SELECT pg_get_serial_sequence('journal_event', 'seq')",
    "SELECT version_num FROM alembic_version",
)
EVENTS = """
SELECT vm_id, cursor, seq, ts, monotonic_us, boot_id, unit, about_unit, priority, identifier, pid, hostname, message,
       fields::text AS fields
FROM journal_event ORDER BY seq
"""
SUMMARIES = (
    "SELECT * FROM journal_boot ORDER BY vm_id, boot_id",
    "SELECT * FROM journal_unit ORDER BY vm_id, unit",
    "SELECT * FROM journal_volume ORDER BY vm_id, minute, priority",
    "SELECT id, event_count, last_event_at FROM vm ORDER BY id",
)


def relayed_entries() -> list[dict[str, Any]]:
    """Entries from a sender that is not journald: cursors of another shape, no boot, repeated fields."""
    return [
        {
            "__CURSOR": f"relay;{i}",
            "__REALTIME_TIMESTAMP": str(1_764_200_000_000_000 + i * 1000),
            "MESSAGE": f"relayed {i}",
            "PRIORITY": "5",
            "TAG": ["one", "two"],
            "SYSLOG_IDENTIFIER": "relay",
        }
        for i in range(20)
    ]


async def snapshot(url: str) -> dict[str, Any]:
    """The database's schema, every event (fields parsed: their order is the store's) and summaries."""
    conn = await asyncpg.connect(url)
    try:
        events = [(*r[:-1], orjson.loads(r["fields"])) for r in await conn.fetch(EVENTS)]
        return {
            "schema": [[tuple(r) for r in await conn.fetch(q)] for q in SCHEMA],
            "events": events,
            "summaries": [[tuple(r) for r in await conn.fetch(q)] for q in SUMMARIES],
        }
    finally:
        await conn.close()


async def at_head(url: str, ids: list[uuid.UUID]) -> tuple[list[Any], list[list[dict[str, Any]]]]:
    conn = await asyncpg.connect(url)
    try:
        return await answers(conn, ids), [await every_entry(conn, vm_id) for vm_id in ids]
    finally:
        await conn.close()


async def recomputed_summaries(url: str) -> list[Any]:
    """The summaries as the old revision's ingest would have kept them for the stored events."""
    conn = await asyncpg.connect(url)
    try:
        tx = conn.transaction()
        await tx.start()
        try:
            await old_journal.summarize(conn, volume=True)
            return [[tuple(r) for r in await conn.fetch(q)] for q in SUMMARIES]
        finally:
            await tx.rollback()
    finally:
        await conn.close()


def test_downgrade_gives_back_the_old_layout(old_database: str, tmp_path: Path) -> None:
    from alembic import command

    config = alembic_config(old_database)
    command.upgrade(config, PREVIOUS)  # type: ignore[arg-type]
    ids = [uuid.uuid4(), uuid.uuid4()]
    journal = write_journal([*odd_entries(), *sample_entries(600, start_us=1_764_050_000_000_000)], tmp_path)
    sent: dict[uuid.UUID, list[dict[str, Any]]] = {
        # Two boots on two days, as the agent sends them.
        ids[0]: [
            *wide_entries(0, 1500, boot=uuid.uuid4().hex, units=["a.service", "b.service"]),
            *wide_entries(90_000_000, 1500, boot=uuid.uuid4().hex, units=["a.service", "b.service"]),
        ],
        # A real journal's JSON (byte arrays, odd values), then a relay's entries on a third day.
        ids[1]: [*journal_json(journal), *relayed_entries()],
    }

    async def load() -> None:
        conn = await asyncpg.connect(old_database)
        try:
            for n, vm_id in enumerate(ids):
                await conn.execute(
                    "INSERT INTO vm (id, name, size, provider, status) VALUES ($1, $2, 'small', 'external', 'running')",
                    vm_id,
                    f"old-{n}",
                )
                for start in range(0, len(sent[vm_id]), 1000):
                    batch = sent[vm_id][start : start + 1000]
                    # That revision's ingest made each day's partition before its entries.
                    await partition_store.create_days(conn, entries.to_rows(batch).days())
                    await old_journal.insert(conn, vm_id, batch)
            await old_journal.summarize(conn, volume=True)
        finally:
            await conn.close()

    asyncio.run(load())
    before = asyncio.run(snapshot(old_database))
    assert len(before["events"]) == sum(len(b) for b in sent.values())
    command.upgrade(config, "head")  # type: ignore[arg-type]
    first = asyncio.run(at_head(old_database, ids))

    command.downgrade(config, PREVIOUS)  # type: ignore[arg-type]
    after = asyncio.run(snapshot(old_database))
    assert after["schema"] == before["schema"]
    assert after["summaries"] == before["summaries"]
    assert after["events"] == before["events"]
    for vm_id in ids:
        stored = [e for e in after["events"] if e[0] == vm_id]
        assert [e[-1] for e in stored] == sent[vm_id]
        assert [e[1] for e in stored] == [e["__CURSOR"] for e in sent[vm_id]]

    command.upgrade(config, "head")  # type: ignore[arg-type]
    assert asyncio.run(at_head(old_database, ids)) == first

    # Entries that today's ingest stored go back as well, with the summaries it kept.
    new = wide_entries(300_000_000, 500, boot=uuid.uuid4().hex, units=["a.service", "c.service"])

    async def ingest() -> None:
        conn = await asyncpg.connect(old_database)
        try:
            async with conn.transaction():
                assert await ingest_store.ingest(conn, ids[0], entries.to_rows(sent[ids[0]][:100])) == 0
            async with conn.transaction():
                assert await ingest_store.ingest(conn, ids[0], entries.to_rows(new)) == len(new)
        finally:
            await conn.close()

    asyncio.run(ingest())
    second = asyncio.run(at_head(old_database, ids[:1]))
    assert second[1][0] == [*sent[ids[0]], *new]
    command.downgrade(config, PREVIOUS)  # type: ignore[arg-type]
    after = asyncio.run(snapshot(old_database))
    assert [e[-1] for e in after["events"] if e[0] == ids[0]] == [*sent[ids[0]], *new]
    assert after["summaries"] == asyncio.run(recomputed_summaries(old_database))
    last_seq = max(e[2] for e in after["events"])
    assert ("journal_event_seq_seq", last_seq) in after["schema"][4]
    more = wide_entries(400_000_000, 10, boot=uuid.uuid4().hex, units=["a.service"])

    async def insert_old() -> None:
        # The old revision's ingest goes on from the same seq.
        conn = await asyncpg.connect(old_database)
        try:
            await partition_store.create_days(conn, entries.to_rows(more).days())
            await old_journal.insert(conn, ids[1], more)
            first_new = await conn.fetchval("SELECT seq FROM journal_event WHERE cursor = $1", more[0]["__CURSOR"])
            assert first_new == last_seq + 1
        finally:
            await conn.close()

    asyncio.run(insert_old())
    command.upgrade(config, "head")  # type: ignore[arg-type]
    assert asyncio.run(at_head(old_database, ids[:1])) == second
    assert asyncio.run(at_head(old_database, ids[1:]))[1] == [[*sent[ids[1]], *more]]
