"""How a journal query is answered over HTTP: a JSON page with a ``Link`` header, a stream of
every matching event (NDJSON, journalctl text, export format), or a live follow stream.

Follow streams: Server-Sent Events (``id`` is the event's opaque position, so ``Last-Event-ID``
resumes; an ``event: live`` message marks the end of the backlog), or NDJSON / journalctl text
with ``?follow=true``. The events come from the process's live hub (journal/live.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import orjson
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.background import BackgroundTask

from vmjournal.errors import BadRequest
from vmjournal.journal import live, render, service, store
from vmjournal.journal.events import parse_position
from vmjournal.journal.render import OUTPUT_MODES, render_export

STREAM_PAGE = 1000
DEFAULT_PAGE = 100
DEFAULT_BACKLOG = 10
KEEPALIVE_SECONDS = 15.0

# One event as the bytes of a stream.
Encode = Callable[[Mapping[str, Any]], bytes]


@dataclass
class Query:
    """What the client asked for, beyond the filter."""

    limit: int | None
    descending: bool
    cursor: str | None
    output: str | None
    follow: bool


def mode_for(request: Request, output: str | None) -> str:
    """``page`` (JSON), ``sse``, or a stream mode, from ``?output=`` or the Accept header."""
    if output is not None:
        if output not in OUTPUT_MODES:
            raise BadRequest(f"unknown output {output!r}: use one of {', '.join(OUTPUT_MODES)}", code="bad_output")
        return output
    accept = request.headers.get("accept", "")
    if render.SSE in accept:
        return "sse"
    if render.NDJSON in accept:
        return "ndjson"
    if render.EXPORT in accept:
        return "export"
    if render.JSON_SEQ in accept:
        return "json-seq"
    if "text/plain" in accept:
        return "short"
    return "page"


def _sse(event: Mapping[str, Any]) -> bytes:
    return b"id: " + str(event["position"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def encoder(mode: str) -> tuple[str, Callable[[Mapping[str, Any]], bytes], bytes | None]:
    """Media type, per-event encoder and keepalive bytes of a stream."""
    if mode == "sse":
        return render.SSE, _sse, b": keepalive\n\n"
    if mode in ("ndjson", "json", "page"):
        return render.NDJSON, lambda e: orjson.dumps(e) + b"\n", None
    if mode == "export":
        return render.EXPORT, render_export, None
    # A renderer per stream: it remembers the boot of the last entry, for journalctl's boot line.
    renderer = render.TextRenderer(mode, tz=UTC)
    return render.JSON_SEQ if mode == "json-seq" else render.TEXT, renderer, None


async def answer(
    request: Request,
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    *,
    vm_name: str,
    vm_id: UUID,
    unit: str | None,
    f: store.EventFilter,
    q: Query,
) -> Response:
    mode = mode_for(request, q.output)
    if mode == "sse" or q.follow:
        # Hand the request's connection back now: the session would otherwise be held for the whole stream.
        await session.commit()
        return await follow_response(
            request,
            sessions,
            vm_id,
            f,
            mode=mode,
            backlog=q.limit,
            last_event_id=request.headers.get("last-event-id") or q.cursor,
        )
    if mode == "page":
        page = await service.query_page(
            session, vm_id, f, limit=q.limit or DEFAULT_PAGE, after=q.cursor, descending=q.descending
        )
        headers = {}
        if page.next:
            query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
            headers["Link"] = f'<{request.url.path}?{urlencode([*query, ("cursor", page.next)])}>; rel="next"'
        body = {"vm": vm_name, "unit": unit, "count": len(page.events), "next": page.next, "events": page.events}
        return Response(orjson.dumps(body), media_type=render.JSON, headers=headers)
    # The first page is read now, so bad input is a clean 400 and not a broken stream.
    first = await service.query_page(
        session, vm_id, f, limit=min(q.limit or STREAM_PAGE, STREAM_PAGE), after=q.cursor, descending=q.descending
    )
    await session.commit()
    media, encode, _ = encoder(mode)

    async def next_page(size: int, after: str) -> service.Page:
        # A short transaction per page: a slow reader must not hold a connection for the whole stream.
        async with sessions() as s:
            return await service.query_page(s, vm_id, f, limit=size, after=after, descending=q.descending)

    return StreamingResponse(paged_stream(first, encode, q.limit, next_page), media_type=media)


async def paged_stream(
    first: service.Page, encode: Encode, limit: int | None, next_page: Callable[[int, str], Awaitable[service.Page]]
) -> AsyncIterator[bytes]:
    """Pages encoded one after another until ``limit`` events or the last page."""
    page, sent = first, 0
    while True:
        yield b"".join(encode(event) for event in page.events)
        sent += len(page.events)
        if page.next is None or (limit is not None and sent >= limit):
            return
        page = await next_page(STREAM_PAGE if limit is None else min(STREAM_PAGE, limit - sent), page.next)


async def live_stream(
    mode: str,
    encode: Encode,
    keepalive: bytes | None,
    backlog: AsyncIterator[Mapping[str, Any]],
    follower: live.Follower,
    close: Callable[[], None],
) -> AsyncIterator[bytes]:
    """A follow stream: the backlog, the ``live`` marker (SSE), then each batch the follower gets;
    an ``overflow`` event ends it when the reader fell too far behind. ``close`` runs at the end."""
    try:
        if mode == "sse":
            yield b"retry: 2000\n\n"
        async for event in backlog:
            yield encode(event)
        if mode == "sse":
            # Marks the end of the backlog: what follows was stored after the stream began.
            yield b"event: live\ndata: {}\n\n"
        while True:
            batch = await follower.next_batch(KEEPALIVE_SECONDS)
            if batch is None:
                if mode == "sse":
                    yield (
                        b'event: overflow\ndata: {"error": "too_slow", "message": "this reader fell '
                        b'too far behind; reconnect with Last-Event-ID"}\n\n'
                    )
                return
            if not batch:
                if keepalive:
                    yield keepalive
                continue
            yield b"".join(encode(event) for event in batch)
    finally:
        close()


def resume_position(last_event_id: str | None) -> store.Position | None:
    """Where a follow stream resumes: after the event its client saw last (the Last-Event-ID header)."""
    if not last_event_id:
        return None
    parsed = parse_position(last_event_id.strip())
    if parsed is None:
        raise BadRequest("invalid Last-Event-ID: pass the id of an event this stream sent", code="bad_cursor")
    return store.Position(*parsed)


def get_hub(request: Request) -> live.LiveHub:
    hub: live.LiveHub = request.state.live
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
    everything after ``last_event_id``, then each new one as it is stored. A reader that falls too
    far behind gets an ``overflow`` event (SSE) and the end of the stream."""
    after = resume_position(last_event_id)
    hub = get_hub(request)
    follower = hub.register(vm_id, f)
    source = live.vm_source(vm_id, f)
    try:
        upto, rows = await live.snapshot(
            sessions, source, backlog=DEFAULT_BACKLOG if backlog is None else backlog, after=after
        )
        hub.activate(follower, upto)
    except BaseException:
        hub.unregister(follower)
        raise
    media, encode, keepalive = encoder(mode)

    backlog_events = live.catch_up(sessions, source, rows, upto, after is not None)
    stream = live_stream(mode, encode, keepalive, backlog_events, follower, lambda: hub.unregister(follower))
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    # The background task also unregisters a follower whose client left before the stream began.
    return StreamingResponse(
        stream, media_type=media, headers=headers, background=BackgroundTask(hub.unregister, follower)
    )
