"""How a fleet query is answered over HTTP: the same forms as a VM's (journal/answers.py), with
each event's VM: a JSON page, a stream (NDJSON, journalctl text with the VM's name where
journalctl shows the host, export format), or a live follow of every selected VM."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vmjournal.journal import answers, fleet, fleet_live, render, service
from vmjournal.journal.answers import DEFAULT_PAGE, STREAM_PAGE


def next_link(request: Request, token: str) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    return f'<{request.url.path}?{urlencode([*query, ("cursor", token)])}>; rel="next"'


def fleet_encoder(mode: str) -> tuple[str, Callable[[Mapping[str, Any]], bytes], bytes | None]:
    media, encode, keepalive = answers.encoder(mode)
    if media != render.TEXT:
        return media, encode, keepalive
    # journalctl -m shows each entry's host; the fleet shows the VM it came from.
    return media, lambda e: encode({**e, "hostname": e["vm"]}), keepalive


async def answer(
    request: Request,
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    fl: fleet.Fleet,
    *,
    unit: str | None,
    q: answers.Query,
) -> Response:
    mode = answers.mode_for(request, q.output)
    if mode == "sse" or q.follow:
        await session.commit()
        return await fleet_live.follow_response(
            request,
            sessions,
            fl,
            mode=mode,
            backlog=q.limit,
            last_event_id=request.headers.get("last-event-id") or q.cursor,
        )
    if mode == "page":
        page = await fleet.query_page(
            session, fl, limit=q.limit or DEFAULT_PAGE, after=q.cursor, descending=q.descending
        )
        headers = {"Link": next_link(request, page.next)} if page.next else {}
        body = {
            "vms": sorted(fl.names.values()),
            "unit": unit,
            "count": len(page.events),
            "next": page.next,
            "events": page.events,
        }
        return Response(orjson.dumps(body), media_type=render.JSON, headers=headers)
    first = await fleet.query_page(
        session, fl, limit=min(q.limit or STREAM_PAGE, STREAM_PAGE), after=q.cursor, descending=q.descending
    )
    await session.commit()
    media, encode, _ = fleet_encoder(mode)

    async def next_page(size: int, after: str) -> service.Page:
        # A short transaction per page: a slow reader must not hold a connection for the whole stream.
        async with sessions() as s:
            return await fleet.query_page(s, fl, limit=size, after=after, descending=q.descending)

    return StreamingResponse(answers.paged_stream(first, encode, q.limit, next_page), media_type=media)
