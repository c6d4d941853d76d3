"""Entries of a server up for more than 28 hours were stored with their cursor whole (ingest read a
12-digit __MONOTONIC_TIMESTAMP as no number). The upgrade splits them as ingest now does: they read
back the same, take the compact form, and a batch sent again after the upgrade is not stored twice."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
from support.journal_answers import every_entry

from vmjournal.db import alembic_config
from vmjournal.journal import entries, ingest_store, layout

BEFORE = "3c1d7e9a5b20"
MONTH_US = 30 * 86_400 * 1_000_000
START_US = 1_764_200_000_000_000


def journald_entries(boot: str, monotonic_start: int, n: int) -> list[dict[str, Any]]:
    seqnum_id = uuid.uuid4().hex
    # journald's x= hashes the entry's data: entries of two boots never share one.
    xor_base = int(boot[:8], 16)
    out = []
    for i in range(n):
        realtime, monotonic, xor = START_US + i * 1000, monotonic_start + i * 1000, xor_base + i * 7919
        out.append(
            {
                "__CURSOR": f"s={seqnum_id};i={i + 1:x};b={boot};m={monotonic:x};t={realtime:x};x={xor:x}",
                "__REALTIME_TIMESTAMP": str(realtime),
                "__MONOTONIC_TIMESTAMP": str(monotonic),
                "__SEQNUM": str(i + 1),
                "_BOOT_ID": boot,
                "_PID": str(400 + i % 3),
                "_SYSTEMD_UNIT": "nginx.service",
                "SYSLOG_IDENTIFIER": "nginx",
                "_HOSTNAME": "web-1",
                "PRIORITY": "6",
                "MESSAGE": f"GET /items/{i} HTTP/1.1",
            }
        )
    return out


def relayed(n: int) -> list[dict[str, Any]]:
    """Another sender's cursors (kept whole and hashed, before and after), with a long uptime too."""
    return [
        {
            "__CURSOR": f"relay;{i}",
            "__REALTIME_TIMESTAMP": str(START_US + 500 + i * 1000),
            "__MONOTONIC_TIMESTAMP": str(MONTH_US + i),
            "MESSAGE": f"relayed {i}",
        }
        for i in range(n)
    ]


def as_before(batch: list[dict[str, Any]]) -> entries.Batch:
    """The rows the previous ingest made: no monotonic clock above 11 digits, so no split cursor."""
    old = entries.Batch()
    for entry in batch:
        row, _ = entries.to_row(entry)
        monotonic = row[3] if row[3] is not None and row[3] < 10**11 else None
        message, priority = row[entries.MESSAGE], row[8]
        seqnum, xor, context_id, context, rest = layout.split(entry, row[entries.TS_US], monotonic, message, priority)
        old._append((seqnum, xor, row[entries.TS_US], monotonic, context_id, *row[5:13], rest), context)
    return old


WHOLE = "SELECT count(*) FROM journal_event WHERE vm_id = $1 AND rest->>'__CURSOR' IS NOT NULL"
WITHOUT_CONTEXT = """
SELECT count(*) FROM journal_event e
WHERE NOT EXISTS (SELECT FROM journal_context c WHERE c.vm_id = e.vm_id AND c.id = e.context_id)
"""


def test_upgrade_splits_the_cursors_of_long_uptime_entries(old_database: str) -> None:
    from alembic import command

    config = alembic_config(old_database)
    command.upgrade(config, BEFORE)  # type: ignore[arg-type]
    up_a_month = journald_entries(uuid.uuid4().hex, MONTH_US, 300)
    just_booted = journald_entries(uuid.uuid4().hex, 5_000_000, 100)
    others = relayed(20)
    vm_id = uuid.uuid4()

    async def load() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(old_database)
        try:
            await conn.execute(
                "INSERT INTO vm (id, name, size, provider, status) VALUES ($1, 'up', 'small', 'external', 'running')",
                vm_id,
            )
            async with conn.transaction():
                await ingest_store.ingest(conn, vm_id, as_before(up_a_month + just_booted + others))
            # The old form: the long uptime's cursors and the relayed ones are stored whole.
            assert await conn.fetchval(WHOLE, vm_id) == 320
            return await every_entry(conn, vm_id)
        finally:
            await conn.close()

    before = asyncio.run(load())
    command.upgrade(config, "head")  # type: ignore[arg-type]

    async def check() -> None:
        conn = await asyncpg.connect(old_database)
        try:
            assert await every_entry(conn, vm_id) == before
            # Only the other sender's cursors stay whole; the long uptime's are numbers now.
            assert await conn.fetchval(WHOLE, vm_id) == 20
            assert await conn.fetchval(WITHOUT_CONTEXT) == 0
            # A batch sent again after the upgrade meets its first copies, and ingest stores the rows
            # the upgrade made.
            for batch in (up_a_month, just_booted, others):
                async with conn.transaction():
                    assert await ingest_store.ingest(conn, vm_id, entries.to_rows(batch)) == 0
            count = await conn.fetchval("SELECT event_count FROM vm WHERE id = $1", vm_id)
            assert count == len(before) == 420
        finally:
            await conn.close()

    asyncio.run(check())
