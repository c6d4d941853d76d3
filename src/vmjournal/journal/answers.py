"""How a journal query is answered: a JSON page with a ``Link`` header, a stream of every
matching event (NDJSON, journalctl text, export format), or a live follow stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlencode
from uuid import UUID

import orjson
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vmjournal.errors import BadRequest
from vmjournal.journal import live, service
from vmjournal.journal.formats import OUTPUT_MODES
from vmjournal.journal.store import EventFilter

NDJSON = "application/x-ndjson"
EXPORT = "application/vnd.fdo.journal"
SSE = "text/event-stream"
STREAM_PAGE = 1000
DEFAULT_PAGE = 100


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
    if SSE in accept:
        return "sse"
    if NDJSON in accept:
        return "ndjson"
    if EXPORT in accept:
        return "export"
    if "text/plain" in accept:
        return "short"
    return "page"


async def answer(
    request: Request,
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    *,
    vm_name: str,
    vm_id: UUID,
    unit: str | None,
    f: EventFilter,
    q: Query,
) -> Response:
    mode = mode_for(request, q.output)
    if mode == "sse" or q.follow:
        # Hand the request's connection back now: the session would otherwise be held for the whole stream.
        await session.commit()
        return await live.follow_response(
            request, sessions, vm_id, f, mode=mode, backlog=q.limit,
            last_event_id=request.headers.get("last-event-id") or q.cursor,
        )
    if mode == "page":
        page = await service.query_page(session, vm_id, f, limit=q.limit or DEFAULT_PAGE, after=q.cursor,
                                        descending=q.descending)
        headers = {}
        if page.next:
            query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
            headers["Link"] = f'<{request.url.path}?{urlencode([*query, ("cursor", page.next)])}>; rel="next"'
        body = {"vm": vm_name, "unit": unit, "count": len(page.events), "next": page.next, "events": page.events}
        return Response(orjson.dumps(body), media_type="application/json", headers=headers)
    # The first page is read now, so bad input is a clean 400 and not a broken stream.
    first = await service.query_page(session, vm_id, f, limit=min(q.limit or STREAM_PAGE, STREAM_PAGE),
                                     after=q.cursor, descending=q.descending)
    await session.commit()
    media, encode, _ = live.encoder(mode)

    async def stream() -> AsyncIterator[bytes]:
        page, sent = first, 0
        while True:
            yield b"".join(encode(event) for event in page.events)
            sent += len(page.events)
            if page.next is None or (q.limit is not None and sent >= q.limit):
                return
            size = STREAM_PAGE if q.limit is None else min(STREAM_PAGE, q.limit - sent)
            # A short transaction per page: a slow reader must not hold a connection for the whole stream.
            async with sessions() as s:
                page = await service.query_page(s, vm_id, f, limit=size, after=page.next, descending=q.descending)

    return StreamingResponse(stream(), media_type=media)
