"""What Citus requires of the migrated schema (docs/scale-out.md): the journal tables are
distributed by vm_id, so every primary key and unique index of theirs includes vm_id, and no
foreign key joins two distributed tables without it."""

from __future__ import annotations

import asyncpg

DISTRIBUTED = ("journal_event", "journal_context", "journal_boot", "journal_unit", "journal_volume", "journal_trigrams")
# Every journal table but the day partitions (which follow their parent).
JOURNAL_TABLES = """
SELECT relname FROM pg_class WHERE relname LIKE 'journal\\_%' AND relkind IN ('r', 'p') AND NOT relispartition
"""

UNIQUE_INDEXES = """
SELECT c.relname AS table_name, i.relname AS index_name,
       ARRAY(SELECT a.attname::text FROM unnest(x.indkey) k JOIN pg_attribute a
             ON a.attrelid = x.indrelid AND a.attnum = k) AS columns
FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indisunique AND c.relname = ANY($1::text[])
"""

FOREIGN_KEYS = """
SELECT c.conname, src.relname AS source, dst.relname AS target,
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) k JOIN pg_attribute a
             ON a.attrelid = c.conrelid AND a.attnum = k) AS columns
FROM pg_constraint c JOIN pg_class src ON src.oid = c.conrelid JOIN pg_class dst ON dst.oid = c.confrelid
WHERE c.contype = 'f' AND src.relname = ANY($1::text[])
"""


async def test_distributed_tables_fit_citus(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        uniques = await conn.fetch(UNIQUE_INDEXES, list(DISTRIBUTED))
        keys = await conn.fetch(FOREIGN_KEYS, list(DISTRIBUTED))
        partitioned = await conn.fetchval("SELECT relkind FROM pg_class WHERE relname = 'journal_event'")
        tables = {r["relname"] for r in await conn.fetch(JOURNAL_TABLES)}
    finally:
        await conn.close()
    assert tables == set(DISTRIBUTED), "a new journal table: decide how it is distributed (docs/scale-out.md)"
    # Every distributed table has its primary key, and each unique index holds the distribution column.
    assert {r["table_name"] for r in uniques} == set(DISTRIBUTED)
    for r in uniques:
        assert "vm_id" in r["columns"], (r["table_name"], r["index_name"], r["columns"])
    # Time partitions: the partition key is in the primary key too.
    assert partitioned == b"p"
    assert any(r["table_name"] == "journal_event" and "ts" in r["columns"] for r in uniques)
    # Foreign keys: to the reference table vm only, or between distributed tables through vm_id.
    for r in keys:
        assert r["target"] == "vm" or (r["target"] in DISTRIBUTED and "vm_id" in r["columns"]), tuple(r)
