"""Storing a Journal Export Format stream, such as stock ``systemd-journal-upload`` posts, as it arrives.

journal-upload sends its whole backlog (gigabytes, on a server that has run for a while) in one
POST and advances its saved cursor only after a 2xx. So the stream is committed batch by batch,
each in a transaction of its own: memory holds one batch, there is no cap on the total, and a
POST cut off midway keeps what it committed; the resent backlog then stores nothing twice
(idempotent by ``__CURSOR``). journal-upload cannot split a batch the way our agent does, so an
entry the service cannot store is skipped and reported (a log line naming the VM and the
entry's cursor, a metric, the VM record's last ingest problem) and the rest is stored.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vmjournal import metrics
from vmjournal.db import raw_connection, transaction
from vmjournal.errors import BadRequest
from vmjournal.journal import entries, ingest_store
from vmjournal.journal.export_format import Entry, ExportFormatError, ExportParser, SkippedEntry
from vmjournal.journal.service import IngestResult

log = logging.getLogger(__name__)

# A batch is flushed at this many bytes of the body even if it has fewer entries: parsed entries
# take a few times their export size in memory.
BATCH_BYTES = 4 * 1024 * 1024

# What the database raises for a value it cannot take (class 22 data exceptions, 54 limits);
# anything else (the database down, a bug) ends the request.
_REFUSED = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)


@dataclass(frozen=True)
class StreamLimits:
    batch_entries: int
    entry_bytes: int
    batch_bytes: int = BATCH_BYTES


class _Stream:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], vm_id: UUID, vm_name: str) -> None:
        self.sessions = sessions
        self.vm_id = vm_id
        self.vm_name = vm_name
        self.received = self.stored = self.skipped = 0
        self.last_problem: str | None = None

    def skip(self, index: int, cursor: str | None, problem: str, reason: str) -> None:
        self.skipped += 1
        metrics.ingest_skipped.labels(reason).inc()
        shown = repr(cursor[:200]) if cursor else "without __CURSOR"
        problem = problem[:300]
        log.warning(
            "VM %s: skipped journal entry %s (entry %d of an export stream): %s", self.vm_name, shown, index, problem
        )
        self.last_problem = f"entry {shown} skipped: {problem}"

    async def _store(self, rows: entries.Batch) -> int:
        async with transaction(self.sessions) as session:
            conn = await raw_connection(session)
            with metrics.ingest_seconds.time():
                return await ingest_store.ingest(conn, self.vm_id, rows)

    async def flush(self, items: list[Entry | SkippedEntry]) -> None:
        rows = entries.Batch()
        indexes: list[int] = []
        # The batch's own cursors, to name an entry the database refuses.
        cursors: list[str | None] = []
        for offset, item in enumerate(items, start=self.received):
            if isinstance(item, SkippedEntry):
                self.skip(item.index, item.cursor, item.problem, "too_large")
                continue
            try:
                rows.add(item)
                indexes.append(offset)
                cursors.append(_cursor(item))
            except entries.EntryProblem as exc:
                self.skip(offset, _cursor(item), str(exc), "bad_entry")
        self.received += len(items)
        try:
            stored = await self._store(rows)
        except _REFUSED:
            # One at a time, to find the entries the database refuses and store the others.
            stored = 0
            for position, index in enumerate(indexes):
                try:
                    stored += await self._store(rows.only(position))
                except _REFUSED as exc:
                    self.skip(index, cursors[position], f"the database refused it: {exc}", "database")
        self.stored += stored
        metrics.ingested.labels("stored").inc(stored)
        metrics.ingested.labels("duplicate").inc(len(rows) - stored)
        if self.last_problem is not None:
            async with transaction(self.sessions) as session:
                await ingest_store.record_ingest_error(await raw_connection(session), self.vm_id, self.last_problem)
            self.last_problem = None

    def result(self) -> IngestResult:
        return IngestResult(received=self.received, stored=self.stored, skipped=self.skipped)


def _cursor(entry: Any) -> str | None:
    cursor = entry.get("__CURSOR") if isinstance(entry, dict) else None
    return cursor if isinstance(cursor, str) else None


async def ingest_export(
    sessions: async_sessionmaker[AsyncSession],
    vm_id: UUID,
    vm_name: str,
    chunks: AsyncIterator[bytes],
    limits: StreamLimits,
) -> IngestResult:
    """Parse the body as it arrives and commit it batch by batch. Raises ``BadRequest`` (bad_export)
    if the body breaks the format; the batches committed before that stay, and the message says so."""
    stream = _Stream(sessions, vm_id, vm_name)
    parser = ExportParser(limits.entry_bytes)
    pending: list[Entry | SkippedEntry] = []
    flushed_at = 0
    try:
        async for data in chunks:
            pending += parser.feed(data)
            if len(pending) >= limits.batch_entries or parser.consumed - flushed_at >= limits.batch_bytes:
                while len(pending) > limits.batch_entries:
                    await stream.flush(pending[: limits.batch_entries])
                    del pending[: limits.batch_entries]
                await stream.flush(pending)
                pending = []
                flushed_at = parser.consumed
        pending += parser.close()
    except ExportFormatError as exc:
        done = (
            f"the {stream.received} entries before it were stored or skipped as reported"
            if stream.received
            else "nothing was stored"
        )
        raise BadRequest(f"{exc}; {done}", code="bad_export") from None
    if pending:
        await stream.flush(pending)
    return stream.result()
