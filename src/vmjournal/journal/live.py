"""Live follow: one place per process learns of new journal events and fans them out.

Ingest NOTIFYs ``vmjournal_events`` after each batch that stored something, with the VM id and
the batch's earliest timestamp (journal/ingest_store.py). One ``LiveHub`` per process LISTENs on one
dedicated connection; when a VM with followers has news, it runs ONE query for that VM (events
with seq above the lowest seq its followers have seen, bounded below by the notified timestamp
so the primary key (vm_id, ts, ...) does the work) and hands each follower the rows its filter
matches. A thousand followers of a VM cost one query per batch, not a poll each.

Ingest takes a per-VM lock, so a VM's batches commit in seq order: a follower that has seen seq
N has seen every event of that VM up to N. A new follower takes the same lock for an instant to
read a consistent "everything up to S" snapshot (its backlog, or its catch-up after a
Last-Event-ID), and the hub delivers only seq above S to it: no gap, no duplicate.

The query decides what each follower gets with the same SQL conditions as pages
(journal/store.py): one ``matched`` array per row lists the distinct filters it matches, so a
PostgreSQL regex or a unit glob selects the same events live as in a page. A follower that falls
more than ``QUEUE_EVENTS`` behind is closed; it resumes with its last event id. The HTTP streams
built on this are in journal/answers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vmjournal import metrics
from vmjournal.background import cancel_all
from vmjournal.db import raw_connection
from vmjournal.journal import pages, store
from vmjournal.journal.entries import timestamp_from_us
from vmjournal.journal.events import event_from_record
from vmjournal.vms import service as vms_service

log = logging.getLogger(__name__)

CHANNEL = "vmjournal_events"
QUEUE_EVENTS = 10_000
FETCH_ROWS = 1000
_NO_LOWER_BOUND = datetime(1, 1, 1, tzinfo=UTC)

# Called with each notified VM and its batch's earliest timestamp; (None, None) when some were lost.
Subscriber = Callable[[UUID | None, datetime | None], None]


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
    match_key: Hashable = field(init=False)
    # A fleet stream's per-VM followers hand their events, tagged with the VM's name, to the
    # stream's one queue (journal/fleet_live.py).
    sink: Follower | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        self.match_key = self.filter.live_key()

    def push(self, events: list[dict[str, Any]]) -> None:
        if self.sink is not None:
            self.sink.push([{"vm": self.label, **event} for event in events])
            return
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
            async with asyncio.timeout(timeout):  # not wait_for: see vmjournal.background
                batch = await self.queue.get()
        except TimeoutError:
            return []
        if batch is not None:
            self.queued -= len(batch)
        return batch


@dataclass(eq=False)
class Watch:
    """A fleet stream selected by globs: VMs it has not seen yet are offered to it as they first
    log, and ``admit`` adds those whose name ``accepts``."""

    accepts: Callable[[str], bool]
    admit: Callable[[UUID, str], None]
    known: set[UUID] = field(default_factory=set)


class LiveHub:
    """The per-process fan-out: one LISTEN connection, one query per VM with news and followers."""

    def __init__(self, dsn: str, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._dsn = dsn
        self._sessions = sessions
        self._followers: dict[UUID, set[Follower]] = {}
        # VM id -> earliest event timestamp notified since its last delivery.
        self._pending: dict[UUID, datetime] = {}
        self._watches: set[Watch] = set()
        # VMs with news that some watch has not seen yet: their names are looked up once.
        self._unknown: set[UUID] = set()
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribers: list[Subscriber] = []
        self.queries = 0  # deliveries run, for tests and metrics

    def subscribe(self, subscriber: Subscriber) -> None:
        """Tell ``subscriber`` of every VM with new events (and the batch's earliest timestamp),
        followed or not; ``(None, None)`` after a lost LISTEN connection: notifications were missed."""
        self._subscribers.append(subscriber)

    async def start(self) -> None:
        await self._listen()
        self._tasks = [asyncio.create_task(self._deliver_loop()), asyncio.create_task(self._watch_listener())]

    async def stop(self) -> None:
        await cancel_all(self._tasks, "live hub")
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
            for subscriber in self._subscribers:
                subscriber(None, None)
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
        for subscriber in self._subscribers:
            subscriber(vm_id, first)
        self._mark(vm_id, first)

    def _mark(self, vm_id: UUID, first: datetime) -> None:
        followers = self._followers.get(vm_id)
        if not followers:
            if not any(vm_id not in w.known for w in self._watches):
                return
            self._unknown.add(vm_id)
        for follower in followers or ():
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

    def watch(self, w: Watch) -> None:
        self._watches.add(w)

    def unwatch(self, w: Watch) -> None:
        self._watches.discard(w)

    async def _admit(self) -> None:
        """Offer VMs that logged for the first time since a watch began to the watches."""
        unknown, self._unknown = self._unknown, set()
        async with self._sessions() as session:
            names = await vms_service.names_by_id(session, list(unknown))
        for w in list(self._watches):
            for vm_id in unknown:
                if vm_id in w.known:
                    continue
                w.known.add(vm_id)
                name = names.get(vm_id)
                if name is not None and w.accepts(name):
                    w.admit(vm_id, name)

    def follower_count(self, vm_id: UUID | None = None) -> int:
        if vm_id is not None:
            return len(self._followers.get(vm_id, ()))
        return sum(len(f) for f in self._followers.values())

    async def _deliver_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._unknown:
                try:
                    await self._admit()
                except (TimeoutError, OSError, asyncpg.PostgresError, SQLAlchemyError) as exc:
                    log.warning("live follow could not look up new VMs: %s", exc)
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
            # One match column per distinct filter, however many followers share it.
            distinct: dict[Hashable, store.EventFilter] = {}
            for follower in followers:
                distinct.setdefault(follower.match_key, follower.filter)
            columns = {key: i for i, key in enumerate(distinct)}
            async with self._sessions() as session:
                conn = await raw_connection(session)
                rows = await store.live_batch(
                    conn, vm_id, list(distinct.values()), after_seq=after, ts_from=first, limit=FETCH_ROWS
                )
                await session.commit()
            self.queries += 1
            metrics.live_queries.inc()
            if not rows:
                return
            matched = [set(row["matched"]) for row in rows]
            events: dict[int, dict[str, Any]] = {}
            for follower in followers:
                column = columns[follower.match_key]
                batch = []
                for row, hits in zip(rows, matched, strict=True):
                    if row["seq"] > follower.seen_seq and column in hits:
                        event = events.get(row["seq"])
                        if event is None:
                            event = events[row["seq"]] = event_from_record(row)
                        batch.append(event)
                follower.seen_seq = max(follower.seen_seq, rows[-1]["seq"])
                follower.push(batch)
            if len(rows) < FETCH_ROWS:
                return


# A page of a follow's events in (ts, seq) order: (connection, limit, after, descending) -> rows.
PageQuery = Callable[[asyncpg.Connection, int, store.Position | None, bool], Awaitable[list[asyncpg.Record]]]


@dataclass(frozen=True, slots=True)
class Source:
    """What a follow stream reads: the ingest lock (one VM's or several) that makes its snapshot
    consistent, its pages, and the event each row becomes."""

    lock: Callable[[asyncpg.Connection], Awaitable[None]]
    page: PageQuery
    event: Callable[[asyncpg.Record], dict[str, Any]]


def vm_source(vm_id: UUID, f: store.EventFilter) -> Source:
    """The events of one VM that match ``f``."""

    async def lock(conn: asyncpg.Connection) -> None:
        await store.lock_vm_ingest(conn, vm_id)

    async def page(
        conn: asyncpg.Connection, limit: int, after: store.Position | None, descending: bool
    ) -> list[asyncpg.Record]:
        if f.units == []:  # a unit pattern that named no unit: nothing to read, as in pages
            return []
        return await pages.query_events(conn, vm_id, f, limit=limit, after=after, descending=descending)

    return Source(lock, page, event_from_record)


async def snapshot(
    sessions: async_sessionmaker[AsyncSession],
    source: Source,
    *,
    backlog: int,
    after: store.Position | None,
) -> tuple[int, list[asyncpg.Record]]:
    """Everything up to S (the last seq drawn, with no batch of the source's VMs in flight), and the first
    rows to send."""
    async with sessions() as session:
        conn = await raw_connection(session)
        # A transaction of our own (a savepoint if the session began one): the ingest lock must
        # last until the snapshot is read, and the session may not have begun on this connection.
        async with conn.transaction():
            await source.lock(conn)
            upto = await store.last_seq(conn)
            if after is not None:
                rows = await source.page(conn, FETCH_ROWS, after, False)
            elif backlog > 0:
                rows = list(reversed(await source.page(conn, backlog, None, True)))
            else:
                rows = []
        await session.commit()
    return upto, rows


async def catch_up(
    sessions: async_sessionmaker[AsyncSession],
    source: Source,
    rows: list[asyncpg.Record],
    upto: int,
    resuming: bool,
) -> AsyncIterator[dict[str, Any]]:
    """The backlog, or every matching event after the resume position up to S, page by page."""
    while True:
        for row in rows:
            if row["seq"] <= upto:
                yield source.event(row)
        if not resuming or len(rows) < FETCH_ROWS:
            return
        last = rows[-1]
        async with sessions() as session:
            conn = await raw_connection(session)
            rows = await source.page(conn, FETCH_ROWS, store.Position(last["ts"], last["seq"]), False)
            await session.commit()
