"""Alembic environment: migrations run online against the configured server, one process at a time."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import context
from vmjournal import models  # noqa: F401  (registers every table)
from vmjournal.models import SQLModel

target_metadata = SQLModel.metadata

# Several service processes may start at once; the first migrates, the others wait and find nothing to do.
_MIGRATION_LOCK = 0x766D6A6F75726E


def _not_a_partition(name: str | None, type_: str, _parents: object) -> bool:
    # Day partitions of journal_event come and go with ingest and retention, outside migrations.
    return not (type_ == "table" and name is not None and name.startswith("journal_event_p"))


def _run(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
    try:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                          include_name=_not_a_partition)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
        connection.commit()


async def _online() -> None:
    engine = create_async_engine(context.config.get_main_option("sqlalchemy.url") or "")
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("vmjournal migrations run online only: vmjournal db upgrade")
asyncio.run(_online())
