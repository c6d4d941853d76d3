"""Live follow of several VMs: one stream made of one hub follower per VM (journal/live.py), all
feeding the stream's queue. The backlog or catch-up is read under every selected VM's ingest
lock, so each per-VM follower starts exactly where the snapshot ended. A stream whose VMs were
chosen by glob (or every VM) also takes in VMs created after it began, from their first entry;
one that names a boot keeps the VMs it started with (a new VM has no such boot)."""

from __future__ import annotations

from uuid import UUID

import asyncpg
from fastapi import Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.background import BackgroundTask

from vmjournal.journal import answers, fleet, fleet_answers, fleet_store, live, store
from vmjournal.journal.answers import DEFAULT_BACKLOG, get_hub


def source(fl: fleet.Fleet) -> live.Source:
    """The matching events of every selected VM, each tagged with its VM's name."""

    async def lock(conn: asyncpg.Connection) -> None:
        await fleet_store.lock_vms_ingest(conn, [t.vm_id for t in fl.targets])

    async def page(
        conn: asyncpg.Connection, limit: int, after: store.Position | None, descending: bool
    ) -> list[asyncpg.Record]:
        return await fleet_store.query_fleet(conn, fl.targets, limit=limit, after=after, descending=descending)

    return live.Source(lock, page, lambda row: fleet.fleet_event(fl, row))


async def follow_response(
    request: Request,
    sessions: async_sessionmaker[AsyncSession],
    fl: fleet.Fleet,
    *,
    mode: str,
    backlog: int | None,
    last_event_id: str | None,
) -> StreamingResponse:
    after = answers.resume_position(last_event_id)
    hub = get_hub(request)
    # Never registered with the hub itself: only the stream's queue.
    head = live.Follower(vm_id=UUID(int=0), filter=store.EventFilter())
    members: list[live.Follower] = []

    def join(vm_id: UUID, f: store.EventFilter, name: str) -> live.Follower:
        follower = hub.register(vm_id, f)
        follower.sink, follower.label = head, name
        members.append(follower)
        return follower

    def admit(vm_id: UUID, name: str) -> None:
        # A VM created after the stream began: everything it stores is new to the stream.
        fl.names[vm_id] = name
        hub.activate(join(vm_id, fl.base or store.EventFilter(), name), 0)

    watch = None
    if fl.boot in (None, "all") and (fl.patterns is None or any(fleet.is_glob(p) for p in fl.patterns)):
        watch = live.Watch(accepts=lambda name: fleet.matches(fl.patterns, name), admit=admit, known=set(fl.names))
        hub.watch(watch)

    def close() -> None:
        if watch is not None:
            hub.unwatch(watch)
        for follower in members:
            hub.unregister(follower)

    stream_source = source(fl)
    try:
        selected = [join(t.vm_id, t.filter, fl.names[t.vm_id]) for t in fl.targets]
        upto, rows = await live.snapshot(
            sessions, stream_source, backlog=DEFAULT_BACKLOG if backlog is None else backlog, after=after
        )
        for follower in selected:
            hub.activate(follower, upto)
    except BaseException:
        close()
        raise
    media, encode, keepalive = fleet_answers.fleet_encoder(mode)

    stream = answers.live_stream(
        mode, encode, keepalive, live.catch_up(sessions, stream_source, rows, upto, after is not None), head, close
    )

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type=media, headers=headers, background=BackgroundTask(close))
