"""Journal routes: the agent's ingest, and journalctl-like queries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from vmjournal.deps import ApiKey, SessionDep, SessionsDep, SettingsDep
from vmjournal.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    responses,
)
from vmjournal.journal import live, service, upload
from vmjournal.journal.formats import OUTPUT_MODES, export_bytes, render
from vmjournal.journal.schemas import BootPublic, EventsPage, IngestResponse, UnitPublic
from vmjournal.journal.store import EventFilter
from vmjournal.vms import service as vms_service
from vmjournal.vms.schemas import VMName

router = APIRouter(prefix="/vm", tags=["journal"])

NDJSON = "application/x-ndjson"
EXPORT = "application/vnd.fdo.journal"
_STREAM_PAGE = 1000


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` (chunked bodies too)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit} bytes per request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes per request")
        chunks.append(chunk)
    return b"".join(chunks)


async def decoded_body(request: Request, limit: int) -> bytes:
    body = await read_body(request, limit)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        return service.inflate(body, limit)
    if encoding not in ("identity", ""):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; use gzip or none")
    return body


@router.post(
    "/{name}/boot",
    summary="Ingest journal entries (agent)",
    response_model=IngestResponse,
    responses=responses(BadRequest, Unauthorized, Forbidden, NotFound, PayloadTooLarge, UnsupportedMediaType),
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]},
        "example": [{"__CURSOR": "s=1;i=1;b=0f;m=1;t=1;x=1", "__REALTIME_TIMESTAMP": "1764000000000000",
                     "_BOOT_ID": "0f5e3c4b8a6d4e2f9b1c7d8e6f5a4b3c", "_SYSTEMD_UNIT": "nginx.service",
                     "PRIORITY": "6", "MESSAGE": "started"}]}}}},
)
async def ingest(
    name: VMName,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> IngestResponse:
    """A batch of `journalctl -o json` entries (array or one object, optionally gzip), with the VM's
    token as `Authorization: Bearer`. Atomic and idempotent by `__CURSOR`. The Journal Export Format
    (`Content-Type: application/vnd.fdo.journal`, as systemd-journal-upload sends it) is accepted too."""
    vm_id = await service.authenticate_agent(session, name, authorization)
    if upload.is_export(request):
        result = await upload.ingest_export(session, vm_id, request, settings)
        return IngestResponse(received=result.received, stored=result.stored, duplicates=result.duplicates)
    # Any other content type is read as JSON: the original design's agents posted with curl -d.
    body = await decoded_body(request, settings.max_body_bytes)
    batch = service.parse_json_batch(body, settings.max_batch_entries)
    result = await service.ingest_entries(session, vm_id, batch)
    return IngestResponse(received=result.received, stored=result.stored, duplicates=result.duplicates)


Order = Literal["asc", "desc"]


@dataclass
class QueryParams:
    priority: Annotated[str | None, Query(description="0-7 or a name (err, warning...): this level and more "
                                                      "severe; or a range FROM..TO.", examples=["err"])] = None
    since: Annotated[str | None, Query(description="ISO 8601, 'YYYY-MM-DD HH:MM:SS' (UTC), today, yesterday, "
                                                   "-1h, '2 hours ago'.", examples=["-1h"])] = None
    until: Annotated[str | None, Query(description="Same forms as since.")] = None
    boot: Annotated[str | None, Query(description="A boot id, or an offset: 0 current, -1 previous, 1 first; "
                                                  "'all' for every boot.", examples=["0"])] = None
    grep: Annotated[str | None, Query(description="A regular expression on MESSAGE; case-insensitive when it "
                                                  "has no upper-case letter.")] = None
    identifier: Annotated[list[str] | None, Query(description="SYSLOG_IDENTIFIER (repeatable).")] = None
    limit: Annotated[int | None, Query(ge=1, le=10_000, description="Events per page. Default 100 for JSON; "
                                                                    "streams (NDJSON, text) send all.")] = None
    order: Annotated[Order, Query(description="asc: oldest first (journalctl); desc: newest first.")] = "asc"
    cursor: Annotated[str | None, Query(description="Continue after this position (from the `next` link).")] = None
    output: Annotated[str | None, Query(description="Force an output mode: " + ", ".join(OUTPUT_MODES))] = None
    follow: Annotated[bool, Query(description="Keep the stream open and send new events as they are stored "
                                              "(NDJSON or text); `Accept: text/event-stream` always follows. "
                                              "`limit` is then the backlog sent first (default 10).")] = False


Params = Annotated[QueryParams, Depends()]


def _mode(request: Request, output: str | None) -> str:
    if output is not None:
        if output not in OUTPUT_MODES:
            raise BadRequest(f"unknown output {output!r}: use one of {', '.join(OUTPUT_MODES)}", code="bad_output")
        return output
    accept = request.headers.get("accept", "")
    if NDJSON in accept:
        return "ndjson"
    if EXPORT in accept:
        return "export"
    if "text/plain" in accept:
        return "short"
    return "page"


async def _events(
    request: Request, session: SessionDep, sessions: SessionsDep, name: str, unit: str | None, p: QueryParams
) -> Response:
    vm = await vms_service.get_vm(session, name)
    f = await service.build_filter(
        session, vm.id, unit=unit, priority=p.priority, since=p.since, until=p.until,
        boot=p.boot, grep=p.grep, identifiers=p.identifier,
    )
    mode = _mode(request, p.output)
    if "text/event-stream" in request.headers.get("accept", "") or p.follow:
        # Hand the request's connection back now: the session dependency would hold it for the whole stream.
        await session.commit()
        return await live.follow_response(
            request, sessions, vm.id, f, mode="sse" if "text/event-stream" in request.headers.get("accept", "")
            else mode, backlog=p.limit, last_event_id=request.headers.get("last-event-id") or p.cursor,
        )
    descending = p.order == "desc"
    if mode == "page":
        limit = p.limit or 100
        page = await service.query_page(session, vm.id, f, limit=limit, after=p.cursor, descending=descending)
        headers = {}
        if page.next:
            query = {k: v for k, v in request.query_params.multi_items() if k != "cursor"}
            link = f"{request.url.path}?{urlencode([*query.items(), ('cursor', page.next)])}"
            headers["Link"] = f'<{link}>; rel="next"'
        body = {"vm": name, "unit": unit, "count": len(page.events), "next": page.next, "events": page.events}
        return Response(orjson.dumps(body), media_type="application/json", headers=headers)
    # Validate the first page now, so bad input is a clean 400 and not a broken stream.
    first = await service.query_page(
        session, vm.id, f, limit=min(p.limit or _STREAM_PAGE, _STREAM_PAGE), after=p.cursor, descending=descending
    )
    stream = _stream(sessions, vm.id, f, first, p.limit, descending, mode)
    await session.commit()
    media = {"ndjson": NDJSON, "export": EXPORT, "json": NDJSON}.get(mode, "text/plain; charset=utf-8")
    return StreamingResponse(stream, media_type=media)


async def _stream(
    sessions: SessionsDep,
    vm_id: Any,
    f: EventFilter,
    page: service.Page,
    limit: int | None,
    descending: bool,
    mode: str,
) -> AsyncIterator[bytes]:
    sent = 0
    while True:
        for event in page.events:
            if mode in ("ndjson", "json"):
                yield orjson.dumps(event) + b"\n"
            elif mode == "export":
                yield export_bytes(event)
            else:
                yield (render(event, mode) + "\n").encode()
        sent += len(page.events)
        if page.next is None or (limit is not None and sent >= limit):
            return
        size = _STREAM_PAGE if limit is None else min(_STREAM_PAGE, limit - sent)
        # A fresh short transaction per page: a slow reader must not hold a connection for the whole stream.
        async with sessions() as session:
            page = await service.query_page(session, vm_id, f, limit=size, after=page.next, descending=descending)


_QUERY_DOC = (
    " Filters follow journalctl. `Accept: application/x-ndjson` streams NDJSON, `text/plain` journalctl's short"
    " format; JSON pages carry `next` and a `Link: rel=next` header. `Accept: text/event-stream` follows new"
    " events as Server-Sent Events (the `id` is the event's position; `Last-Event-ID` resumes after it)."
)


@router.get(
    "/{name}/boot", summary="A VM's journal", dependencies=[ApiKey], response_model=EventsPage,
    responses=responses(BadRequest, NotFound, Unauthorized), description="Every journal event of the VM." + _QUERY_DOC,
)
async def vm_events(
    name: VMName, request: Request, session: SessionDep, sessions: SessionsDep, params: Params
) -> Response:
    return await _events(request, session, sessions, name, None, params)


@router.get(
    "/{name}/boot/{unit}", summary="One unit's journal", dependencies=[ApiKey], response_model=EventsPage,
    responses=responses(BadRequest, NotFound, Unauthorized),
    description="The events `journalctl -u UNIT` selects: the unit's own output and systemd's messages about it."
    + _QUERY_DOC,
)
async def unit_events(
    name: VMName,
    unit: Annotated[str, Path(description="A unit name or glob; `nginx` means `nginx.service`.")],
    request: Request,
    session: SessionDep,
    sessions: SessionsDep,
    params: Params,
) -> Response:
    return await _events(request, session, sessions, name, unit, params)


@router.get("/{name}/boots", summary="A VM's boots", dependencies=[ApiKey], responses=responses(NotFound))
async def boots(name: VMName, session: SessionDep) -> list[BootPublic]:
    """Boots with their first and last entry times, like `journalctl --list-boots`."""
    vm = await vms_service.get_vm(session, name)
    return [BootPublic(**b) for b in await service.list_boots(session, vm.id)]


@router.get("/{name}/units", summary="A VM's units", dependencies=[ApiKey], responses=responses(NotFound))
async def units(name: VMName, session: SessionDep) -> list[UnitPublic]:
    """Units seen in the VM's journal, with the number of events `-u UNIT` would select."""
    vm = await vms_service.get_vm(session, name)
    return [UnitPublic(**u) for u in await service.list_units(session, vm.id)]
