"""Ingest and query decisions: batch limits, journalctl filter semantics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from vmjournal import metrics
from vmjournal.db import raw_connection
from vmjournal.errors import BadRequest, NotFound, PayloadTooLarge
from vmjournal.journal import (
    field_store,
    filters,
    inflate,
    ingest_store,
    matches,
    packing,
    pages,
    partition_store,
    row_workers,
    store,
)
from vmjournal.journal.events import event_from_record, parse_position, position_token


@dataclass(frozen=True)
class IngestResult:
    received: int
    stored: int
    skipped: int = 0

    @property
    def duplicates(self) -> int:
        return self.received - self.stored - self.skipped


async def build_rows(
    builder: row_workers.RowBuilder, body: bytes, encoding: str | None, vm_id: UUID, limits: row_workers.Limits
) -> packing.Packed:
    """A JSON batch (an array of entries, or one; compressed with ``encoding``, or not) as rows;
    400 or 413 naming what is wrong."""
    try:
        return await builder.build(body, encoding, vm_id, limits)
    except inflate.BadBody as exc:
        raise BadRequest(exc.message, code=exc.code) from None
    except inflate.TooLarge as exc:
        raise PayloadTooLarge(exc.message) from None
    except row_workers.BadJson as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="bad_json") from None
    except row_workers.TooManyEntries as exc:
        raise PayloadTooLarge(
            f"the batch has {exc.args[0]} entries; the limit is {limits.entries} per request", code="batch_too_large"
        ) from None


async def ingest_entries(session: AsyncSession, vm_id: UUID, batch: packing.Packed) -> IngestResult:
    """Store a batch atomically; entries already stored (same ``__CURSOR``) are counted, not stored again."""
    conn = await raw_connection(session)
    with metrics.ingest_seconds.time():
        stored = await ingest_store.ingest(conn, vm_id, batch)
    metrics.ingested.labels("stored").inc(stored)
    metrics.ingested.labels("duplicate").inc(batch.size - stored)
    return IngestResult(received=batch.size, stored=stored)


@dataclass
class Page:
    events: list[dict[str, Any]]
    next: str | None


async def _resolve_boot(conn: asyncpg.Connection, vm_id: UUID, spec: str, f: store.EventFilter) -> None:
    record = choose_boot(await store.list_boots(conn, vm_id), filters.parse_boot(spec))
    f.boot_id = record["boot_id"]
    f.boot_range = (record["first_at"], record["last_at"])


def choose_boot(boots: Sequence[Mapping[str, Any]], boot: str | int) -> Mapping[str, Any]:
    """The boot an id or offset names among a VM's boots (oldest first); 404 if none."""
    if isinstance(boot, int):
        # journalctl: 0 is the current boot, -1 the one before; 1 is the first boot, 2 the second.
        index = len(boots) - 1 + boot if boot <= 0 else boot - 1
        if not 0 <= index < len(boots):
            raise NotFound(f"no boot at offset {boot}: this VM has {len(boots)} boots", code="boot_not_found")
        record = boots[index]
    else:
        matching = [b for b in boots if b["boot_id"].hex == boot]
        if not matching:
            raise NotFound(f"no boot {boot} in this VM's journal", code="boot_not_found")
        record = matching[0]
    return record


async def build_filter(
    db: AsyncSession | asyncpg.Connection,
    vm_id: UUID,
    *,
    unit: str | None,
    priority: str | None,
    since: str | None,
    until: str | None,
    boot: str | None,
    grep: str | None,
    identifiers: list[str] | None = None,
    match: Sequence[str] | None = None,
    kernel: bool = False,
) -> store.EventFilter:
    """``match`` holds journalctl's ``FIELD=VALUE`` terms (non-UTF-8 bytes as surrogate escapes);
    ``kernel`` is ``-k``: ``_TRANSPORT=kernel`` and, unless ``boot`` says otherwise, the current boot.
    ``db``: a request's session, or a connection the caller holds (alert evaluation, for a pass)."""
    conn = db if isinstance(db, asyncpg.Connection) else await raw_connection(db)
    f = store.EventFilter(identifiers=identifiers or [])
    for spec in [*(match or ()), *(["_TRANSPORT=kernel"] if kernel else [])]:
        name, value = matches.parse(spec)
        f.matches.setdefault(name, []).append(value)
    if kernel and boot is None:
        boot = "0"
    if unit is not None:
        name = filters.unit_name(unit)
        if filters.is_glob(name):
            f.unit_pattern = filters.glob_to_like(name)
            f.units = await store.units_like(conn, vm_id, f.unit_pattern)
        else:
            f.units = [name]
    if priority:
        f.priority_min, f.priority_max = filters.parse_priority(priority)
    if since:
        f.since = filters.parse_time(since)
    if until:
        f.until = filters.parse_time(until)
    if boot is not None and boot != "all":
        await _resolve_boot(conn, vm_id, boot, f)
    if grep:
        f.grep = grep
        f.grep_case_sensitive = filters.smart_case(grep)
        try:
            await store.check_grep(conn, f.grep, f.grep_case_sensitive)
        except asyncpg.InvalidRegularExpressionError as exc:
            raise BadRequest(f"invalid grep pattern: {exc}", code="bad_grep") from None
    return f


async def query_page(
    session: AsyncSession,
    vm_id: UUID,
    f: store.EventFilter,
    *,
    limit: int,
    after: str | None,
    descending: bool,
) -> Page:
    position = None
    if after:
        parsed = parse_position(after)
        if parsed is None:
            raise BadRequest("invalid cursor: pass the value of a previous page's next link", code="bad_cursor")
        position = store.Position(*parsed)
    if f.units == []:
        return Page(events=[], next=None)
    conn = await raw_connection(session)
    records = await pages.query_events(conn, vm_id, f, limit=limit, after=position, descending=descending)
    events = [event_from_record(r) for r in records]
    nxt = position_token(records[-1]["ts"], records[-1]["seq"]) if len(records) == limit else None
    return Page(events=events, next=nxt)


async def list_boots(session: AsyncSession, vm_id: UUID) -> list[Mapping[str, Any]]:
    conn = await raw_connection(session)
    boots = await store.list_boots(conn, vm_id)
    count = len(boots)
    return [
        {
            "offset": i - count + 1,
            "index": i + 1,
            "boot_id": b["boot_id"].hex,
            "first_at": b["first_at"],
            "last_at": b["last_at"],
            "entries": b["entries"],
        }
        for i, b in enumerate(boots)
    ]


async def list_units(session: AsyncSession, vm_id: UUID) -> list[Mapping[str, Any]]:
    conn = await raw_connection(session)
    return [dict(r) for r in await store.list_units(conn, vm_id)]


async def field_values(session: AsyncSession, vm_id: UUID, field: str) -> list[str | bytes]:
    """Distinct values of a journal field (journalctl -F): text, or bytes for a value that is not."""
    if not matches.valid_field(field):
        raise BadRequest(f"invalid field name {field[:80]!r}: use upper-case letters, digits and _", code="bad_field")
    values: list[str | bytes] = []
    for text in await field_store.field_values(await raw_connection(session), vm_id, field):
        value = orjson.loads(text)
        values.append(bytes(value) if isinstance(value, list) else str(value))
    return values


async def purge(session: AsyncSession, vm_id: UUID) -> None:
    """Remove every event of a VM and its summaries."""
    await store.purge(await raw_connection(session), vm_id)


async def storage(session: AsyncSession) -> tuple[int, datetime | None]:
    """The journal's bytes on disk (every partition, summary and index) and its oldest entry's time."""
    conn = await raw_connection(session)
    return await partition_store.journal_bytes(conn), await partition_store.oldest_entry(conn)
