"""Live follow: one place per process learns of new journal events and fans them out.

Ingest NOTIFYs ``vmjournal_events`` after each batch that stored something, with the VM id and
the batch's earliest timestamp (journal/store.py). One ``LiveHub`` per process LISTENs on one
dedicated connection; when a VM with followers has news, it runs ONE query for that VM (events
with seq above the lowest seq its followers have seen, bounded below by the notified timestamp
so the (vm_id, ts, seq) index does the work) and hands each follower the rows its filter
matches. A thousand followers of a VM cost one query per batch, not a poll each.

Ingest takes a per-VM lock, so a VM's batches commit in seq order: a follower that has seen seq
N has seen every event of that VM up to N. A new follower takes the same lock for an instant to
read a consistent "everything up to S" snapshot (its backlog, or its catch-up after a
Last-Event-ID), and the hub delivers only seq above S to it: no gap, no duplicate.

Streams: Server-Sent Events (``id`` is the event's opaque position, so ``Last-Event-ID``
resumes; an ``event: live`` message marks the end of the backlog), or NDJSON / journalctl text
with ``?follow=true``. A follower that falls more than ``QUEUE_EVENTS`` behind is told so and
closed; it resumes with its last event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson
from fastapi import Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.background import BackgroundTask

from vmjournal import metrics
from vmjournal.db import raw_connection
from vmjournal.errors import BadRequest
from vmjournal.journal import store
from vmjournal.journal.entries import timestamp_from_us
from vmjournal.journal.formats import event_from_record, parse_position, render_export, render_text

log = logging.getLogger(__name__)

CHANNEL = "vmjournal_events"
QUEUE_EVENTS = 10_000
FETCH_ROWS = 1000
KEEPALIVE_SECONDS = 15.0
DEFAULT_BACKLOG = 10
_NO_LOWER_BOUND = datetime(1, 1, 1, tzinfo=UTC)


@dataclass(eq=False)
class Follower:
    """One open follow stream: its filter, what it has seen, and its queue of event batches."""

    vm_id: UUID
    filter: store.EventFilter
    seen_seq: int = -1
    ready: bool = False
    # Earliest timestamp notified while the follower was taking its snapshot.
    missed_from: datetime | None = None
    queue: asyncio.Queue[list[dict[str, Any]] | None] = field(default_factory=asyncio.Queue)
    queued: int = 0
    overflowed: bool = False
    _grep: re.Pattern[str] | None = None

    def __post_init__(self) -> None:
        f = self.filter
        if f.grep is not None:
            try:
                self._grep = re.compile(f.grep, 0 if f.grep_case_sensitive else re.IGNORECASE)
            except re.error as exc:
                raise BadRequest(f"invalid grep pattern: {exc}", code="bad_grep") from None

    def matches(self, row: Mapping[str, Any]) -> bool:
        """The same selection as store._conditions, on a row."""
        f = self.filter
        if f.units is not None and row["unit"] not in f.units and row["about_unit"] not in f.units:
            return False
        if (f.priority_max < 7 or f.priority_min > 0) and (
            row["priority"] is None or not f.priority_min <= row["priority"] <= f.priority_max
        ):
            return False
        if f.since is not None and row["ts"] < f.since:
            return False
        if f.until is not None and row["ts"] > f.until:
            return False
        if f.boot_id is not None and row["boot_id"] != f.boot_id:
            return False
        if f.identifiers and row["identifier"] not in f.identifiers:
            return False
        return self._grep is None or (row["message"] is not None and self._grep.search(row["message"]) is not None)

    def push(self, events: list[dict[str, Any]]) -> None:
        if self.overflowed or not events:
            return
        if self.queued + len(events) > QUEUE_EVENTS:
            # A reader this far behind is closed rather than let it grow our memory without bound.
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queued += len(events)
        self.queue.put_nowait(events)

    async def next_batch(self, timeout: float) -> list[dict[str, Any]] | None:
        """The next events; [] on timeout; None once the follower has overflowed."""
        try:
            batch = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return []
        if batch is not None:
            self.queued -= len(batch)
        return batch


class LiveHub:
    """The per-process fan-out: one LISTEN connection, one query per VM with news and followers."""

    def __init__(self, dsn: str, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._dsn = dsn
        self._sessions = sessions
        self._followers: dict[UUID, set[Follower]] = {}
        # VM id -> earliest event timestamp notified since its last delivery.
        self._pending: dict[UUID, datetime] = {}
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.queries = 0  # deliveries run, for tests and metrics

    async def start(self) -> None:
        await self._listen()
        self._tasks = [asyncio.create_task(self._deliver_loop()), asyncio.create_task(self._watch_listener())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for followers in self._followers.values():
            for follower in followers:
                follower.queue.put_nowait(None)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        conn.add_termination_listener(lambda _c: self._lost.set())
        await conn.add_listener(CHANNEL, self._on_notify)
        self._listener = conn

    async def _watch_listener(self) -> None:
        while True:
            await self._lost.wait()
            self._lost.clear()
            log.warning("live follow lost its LISTEN connection; reconnecting")
            while True:
                try:
                    await self._listen()
                    break
                except (OSError, asyncpg.PostgresError):
                    await asyncio.sleep(1.0)
            # Notifications sent while we were away are lost: look at every followed VM, unbounded.
            for vm_id in self._followers:
                self._mark(vm_id, _NO_LOWER_BOUND)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            vm_text, _, ts_text = payload.partition(" ")
            vm_id = UUID(vm_text)
            first = timestamp_from_us(int(ts_text)) if ts_text else _NO_LOWER_BOUND
        except ValueError:
            log.warning("ignoring malformed %s notification %r", CHANNEL, payload)
            return
        self._mark(vm_id, first)

    def _mark(self, vm_id: UUID, first: datetime) -> None:
        followers = self._followers.get(vm_id)
        if not followers:
            return
        for follower in followers:
            if not follower.ready:
                follower.missed_from = min(follower.missed_from or first, first)
        self._pending[vm_id] = min(self._pending.get(vm_id, first), first)
        self._wake.set()

    def register(self, vm_id: UUID, f: store.EventFilter) -> Follower:
        """Start listening for the VM before the follower takes its snapshot, so nothing falls between."""
        follower = Follower(vm_id=vm_id, filter=f)
        self._followers.setdefault(vm_id, set()).add(follower)
        metrics.live_followers.inc()
        return follower

    def activate(self, follower: Follower, seen_seq: int) -> None:
        """The follower has everything up to ``seen_seq``; deliver what comes after."""
        follower.seen_seq = seen_seq
        follower.ready = True
        if follower.missed_from is not None:
            self._mark(follower.vm_id, follower.missed_from)
            follower.missed_from = None

    def unregister(self, follower: Follower) -> None:
        followers = self._followers.get(follower.vm_id)
        if followers is not None and follower in followers:
            followers.discard(follower)
            metrics.live_followers.dec()
            if not followers:
                del self._followers[follower.vm_id]

    def follower_count(self, vm_id: UUID | None = None) -> int:
        if vm_id is not None:
            return len(self._followers.get(vm_id, ()))
        return sum(len(f) for f in self._followers.values())

    async def _deliver_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, {}
            for vm_id, first in pending.items():
                try:
                    await self._deliver(vm_id, first)
                except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                    # Try again on the next wake-up; followers keep their place.
                    log.warning("live follow query for VM %s failed: %s", vm_id, exc)
                    self._pending[vm_id] = min(self._pending.get(vm_id, first), first)
                    await asyncio.sleep(0.5)
                    self._wake.set()

    async def _deliver(self, vm_id: UUID, first: datetime) -> None:
        while True:
            followers = [f for f in self._followers.get(vm_id, ()) if f.ready and not f.overflowed]
            if not followers:
                return
            after = min(f.seen_seq for f in followers)
            async with self._sessions() as session:
                conn = await raw_connection(session)
                rows = await store.events_after_seq(conn, vm_id, after_seq=after, ts_from=first, limit=FETCH_ROWS)
                await session.commit()
            self.queries += 1
            metrics.live_queries.inc()
            if not rows:
                return
            events: dict[int, dict[str, Any]] = {}
            for follower in followers:
                batch = []
                for row in rows:
                    if row["seq"] > follower.seen_seq and follower.matches(row):
                        event = events.get(row["seq"])
                        if event is None:
                            event = events[row["seq"]] = event_from_record(row)
                        batch.append(event)
                follower.seen_seq = max(follower.seen_seq, rows[-1]["seq"])
                follower.push(batch)
            if len(rows) < FETCH_ROWS:
                return


async def _snapshot(
    sessions: async_sessionmaker[AsyncSession],
    vm_id: UUID,
    f: store.EventFilter,
    *,
    backlog: int,
    after: store.Position | None,
) -> tuple[int, list[asyncpg.Record]]:
    """Everything up to S (the last seq drawn, with no batch of this VM in flight), and the first rows to send."""
    async with sessions() as session:
        conn = await raw_connection(session)
        await store.lock_vm_ingest(conn, vm_id)
        upto = await store.last_seq(conn)
        if f.units == []:
            rows: list[asyncpg.Record] = []
        elif after is not None:
            rows = await store.query_events(conn, vm_id, f, limit=FETCH_ROWS, after=after)
        elif backlog > 0:
            rows = list(reversed(await store.query_events(conn, vm_id, f, limit=backlog, descending=True)))
        else:
            rows = []
        await session.commit()
    return upto, rows


async def _catch_up(
    sessions: async_sessionmaker[AsyncSession],
    vm_id: UUID,
    f: store.EventFilter,
    rows: list[asyncpg.Record],
    upto: int,
    resuming: bool,
) -> AsyncIterator[dict[str, Any]]:
    """The backlog, or every matching event after the resume position up to S, page by page."""
    while True:
        for row in rows:
            if row["seq"] <= upto:
                yield event_from_record(row)
        if not resuming or len(rows) < FETCH_ROWS:
            return
        last = rows[-1]
        async with sessions() as session:
            conn = await raw_connection(session)
            rows = await store.query_events(
                conn, vm_id, f, limit=FETCH_ROWS, after=store.Position(last["ts"], last["seq"])
            )
            await session.commit()


def _sse(event: Mapping[str, Any]) -> bytes:
    return b"id: " + str(event["position"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def encoder(mode: str) -> tuple[str, Callable[[Mapping[str, Any]], bytes], bytes | None]:
    """Media type, per-event encoder and keepalive bytes of a follow stream."""
    if mode == "sse":
        return "text/event-stream", _sse, b": keepalive\n\n"
    if mode in ("ndjson", "json", "page"):
        return "application/x-ndjson", lambda e: orjson.dumps(e) + b"\n", None
    if mode == "export":
        return "application/vnd.fdo.journal", render_export, None
    return "text/plain; charset=utf-8", lambda e: render_text(e, mode, tz=UTC), None


def get_hub(request: Request) -> LiveHub:
    hub: LiveHub = request.state.live
    return hub


async def follow_response(
    request: Request,
    sessions: async_sessionmaker[AsyncSession],
    vm_id: UUID,
    f: store.EventFilter,
    *,
    mode: str,
    backlog: int | None,
    last_event_id: str | None,
) -> StreamingResponse:
    """A stream of the VM's matching events: the last ``backlog`` (default 10, like journalctl -f) or
    everything after ``last_event_id``, then each new one as it is stored."""
    after = None
    if last_event_id:
        parsed = parse_position(last_event_id.strip())
        if parsed is None:
            raise BadRequest("invalid Last-Event-ID: pass the id of an event this stream sent", code="bad_cursor")
        after = store.Position(*parsed)
    hub = get_hub(request)
    follower = hub.register(vm_id, f)
    try:
        upto, rows = await _snapshot(
            sessions, vm_id, f, backlog=DEFAULT_BACKLOG if backlog is None else backlog, after=after
        )
        hub.activate(follower, upto)
    except BaseException:
        hub.unregister(follower)
        raise
    media, encode, keepalive = encoder(mode)

    async def stream() -> AsyncIterator[bytes]:
        try:
            if mode == "sse":
                yield b"retry: 2000\n\n"
            async for event in _catch_up(sessions, vm_id, f, rows, upto, after is not None):
                yield encode(event)
            if mode == "sse":
                # Marks the end of the backlog: what follows was stored after the stream began.
                yield b"event: live\ndata: {}\n\n"
            while True:
                batch = await follower.next_batch(KEEPALIVE_SECONDS)
                if batch is None:
                    if mode == "sse":
                        yield b'event: overflow\ndata: {"error": "too_slow", "message": "this reader fell ' \
                              b'too far behind; reconnect with Last-Event-ID"}\n\n'
                    return
                if not batch:
                    if keepalive:
                        yield keepalive
                    continue
                yield b"".join(encode(event) for event in batch)
        finally:
            hub.unregister(follower)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    # The background task also unregisters a follower whose client left before the stream began.
    return StreamingResponse(
        stream(), media_type=media, headers=headers, background=BackgroundTask(hub.unregister, follower)
    )
