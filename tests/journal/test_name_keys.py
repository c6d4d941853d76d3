"""Unit and identifier pages go through indexes keyed by a hash of (vm_id, name) (alembic
4a7c2e9b3d18): whatever path a filter takes, its pages equal a plain scan of the names, and another
VM's entries of the same names never appear."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from support.journal_files import wide_entries

from vmjournal.journal import entries, ingest_store, pages, store

VM, OTHER = uuid.uuid4(), uuid.uuid4()
UNITS = [f"svc-{i}.service" for i in range(20)]

SCAN = """
SELECT seq FROM journal_event
WHERE vm_id = $1 AND (unit = ANY($2::text[]) OR about_unit = ANY($2::text[]))
  AND ($3::text[] IS NULL OR identifier = ANY($3::text[]))
ORDER BY ts, seq
"""


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    for vm, name in ((VM, "keys"), (OTHER, "other")):
        await connection.execute(
            "INSERT INTO vm (id, name, size, provider, status) VALUES ($1, $2, 'small', 'external', 'running')",
            vm,
            name,
        )
    boot = uuid.uuid4().hex
    for vm in (VM, OTHER):
        for start in range(0, 4000, 1000):
            async with connection.transaction():
                await ingest_store.ingest(
                    connection, vm, entries.to_rows(wide_entries(start, 1000, boot=boot, units=UNITS))
                )
    yield connection
    await connection.close()


async def _paged(conn: asyncpg.Connection, f: store.EventFilter, descending: bool) -> list[int]:
    seqs: list[int] = []
    after = None
    while page := await pages.query_events(conn, VM, f, limit=50, after=after, descending=descending):
        seqs += [r["seq"] for r in page]
        after = store.Position(page[-1]["ts"], page[-1]["seq"])
    return seqs


@pytest.mark.parametrize(
    ("units", "identifiers"),
    [
        (UNITS[3:4], None),  # one unit: its own index-ordered scan
        (UNITS[:5], None),  # a few: each one's scan, merged
        (UNITS[: store.MERGED_UNITS_MAX + 2], None),  # many: one scan by an array of keys
        (UNITS, ["svc-1", "svc-2", "svc-13"]),  # every unit, three identifiers
        (UNITS, ["svc-7"]),
    ],
)
async def test_pages_by_name_equal_a_scan(
    conn: asyncpg.Connection, units: list[str], identifiers: list[str] | None
) -> None:
    expected = [r["seq"] for r in await conn.fetch(SCAN, VM, units, identifiers)]
    assert expected, "the filter selects entries"
    f = store.EventFilter(units=units, identifiers=identifiers or [])
    assert await _paged(conn, f, descending=False) == expected
    assert await _paged(conn, f, descending=True) == expected[::-1]
