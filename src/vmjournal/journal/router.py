"""Journal routes: the agent's ingest, and journalctl-like queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response

from vmjournal.db import transaction
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
from vmjournal.journal import answers, bodies, listing, render, row_workers, service, store, upload
from vmjournal.journal.render import OUTPUT_MODES
from vmjournal.journal.schemas import BootPublic, EventsPage, IngestResponse, UnitPublic
from vmjournal.vms import auth as vms_auth
from vmjournal.vms import service as vms_service
from vmjournal.vms.schemas import VMName

router = APIRouter(prefix="/vm", tags=["journal"])


@router.post(
    "/{name}/boot",
    summary="Ingest journal entries (agent)",
    response_model=IngestResponse,
    response_model_exclude_none=True,
    responses=responses(BadRequest, Unauthorized, Forbidden, NotFound, PayloadTooLarge, UnsupportedMediaType),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]},
                    "example": [
                        {
                            "__CURSOR": "s=1;i=1;b=0f;m=1;t=1;x=1",
                            "__REALTIME_TIMESTAMP": "1764000000000000",
                            "_BOOT_ID": "0f5e3c4b8a6d4e2f9b1c7d8e6f5a4b3c",
                            "_SYSTEMD_UNIT": "nginx.service",
                            "PRIORITY": "6",
                            "MESSAGE": "started",
                        }
                    ],
                }
            },
        }
    },
)
async def ingest(
    name: VMName,
    request: Request,
    response: Response,
    sessions: SessionsDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> IngestResponse:
    """A batch of `journalctl -o json` entries (array or one object; zstd, xz, lz4 or gzip), with the VM's
    token as `Authorization: Bearer`. Atomic and idempotent by `__CURSOR`. The Journal Export Format
    (`Content-Type: application/vnd.fdo.journal`, as systemd-journal-upload sends it) is accepted too,
    stored as it streams like on `/ingest/{token}/upload`."""
    # Transactions of their own: no database connection is held while the body arrives.
    async with transaction(sessions) as session:
        vm_id = await vms_auth.authenticate_agent(session, name, authorization)
    response.headers["Accept-Encoding"] = bodies.ACCEPT_ENCODING
    if upload.is_export(request):
        return await upload.store_export(request, sessions, settings, vm_id, name)
    # Any other content type is read as JSON: the original design's agents posted with curl -d.
    # Inflated in the row worker, which then gets a fifth of the bytes.
    body, encoding = await bodies.read_as_sent(request, settings.max_body_bytes)
    limits = row_workers.Limits(body_bytes=settings.max_body_bytes, entries=settings.max_batch_entries)
    packed = await service.build_rows(request.state.rows, body, encoding, vm_id, limits)
    async with transaction(sessions) as session:
        result = await service.ingest_entries(session, vm_id, packed)
    return IngestResponse.of(result)


Order = Literal["asc", "desc"]


@dataclass
class QueryParams:
    priority: Annotated[
        str | None,
        Query(
            description="0-7 or a name (err, warning...): this level and more severe; or a range FROM..TO.",
            examples=["err"],
        ),
    ] = None
    since: Annotated[
        str | None,
        Query(
            description="ISO 8601, 'YYYY-MM-DD HH:MM:SS' (UTC), today, yesterday, -1h, '2 hours ago'.", examples=["-1h"]
        ),
    ] = None
    until: Annotated[str | None, Query(description="Same forms as since.")] = None
    boot: Annotated[
        str | None,
        Query(
            description="A boot id, or an offset: 0 current, -1 previous, 1 first; 'all' for every boot.",
            examples=["0"],
        ),
    ] = None
    grep: Annotated[
        str | None,
        Query(description="A regular expression on MESSAGE; case-insensitive when it has no upper-case letter."),
    ] = None
    identifier: Annotated[
        list[str] | None, Query(description="SYSLOG_IDENTIFIER (repeatable, ORed), like journalctl -t.")
    ] = None
    match: Annotated[
        list[str] | None,
        Query(
            description="FIELD=VALUE, as journalctl takes it: repeatable, values of one field ORed, different fields "
            "ANDed; a value matches any of a repeated field's values, byte for byte (percent-encode "
            "other bytes).",
            examples=["_SYSTEMD_UNIT=nginx.service"],
        ),
    ] = None
    kernel: Annotated[
        bool,
        Query(
            description="journalctl -k: kernel messages (_TRANSPORT=kernel) of the current boot, or of `boot` if given."
        ),
    ] = False
    limit: Annotated[
        int | None,
        Query(ge=1, le=10_000, description="Events per page. Default 100 for JSON; streams (NDJSON, text) send all."),
    ] = None
    order: Annotated[Order, Query(description="asc: oldest first (journalctl); desc: newest first.")] = "asc"
    cursor: Annotated[str | None, Query(description="Continue after this position (from the `next` link).")] = None
    output: Annotated[str | None, Query(description="Force an output mode: " + ", ".join(OUTPUT_MODES))] = None
    follow: Annotated[
        bool,
        Query(
            description="Keep the stream open and send new events as they are stored "
            "(NDJSON or text); `Accept: text/event-stream` always follows. "
            "`limit` is then the backlog sent first (default 10)."
        ),
    ] = False


Params = Annotated[QueryParams, Depends()]


def raw_matches(request: Request) -> list[str]:
    """The ``match`` parameters with their bytes kept: a value that is not UTF-8 (journalctl matches
    bytes) comes as surrogate escapes, where the parsed query would have replaced it."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    return [
        value.encode("latin-1").decode("utf-8", "surrogateescape")
        for key, value in parse_qsl(query, keep_blank_values=True, encoding="latin-1")
        if key == "match"
    ]


async def filter_for(
    request: Request, session: SessionDep, vm_id: UUID, unit: str | None, p: QueryParams
) -> store.EventFilter:
    """The query parameters as a filter: one place, shared by the VM routes and the fleet's."""
    return await service.build_filter(
        session,
        vm_id,
        unit=unit,
        priority=p.priority,
        since=p.since,
        until=p.until,
        boot=p.boot,
        grep=p.grep,
        identifiers=p.identifier,
        match=raw_matches(request) if p.match else None,
        kernel=p.kernel,
    )


async def _events(
    request: Request, session: SessionDep, sessions: SessionsDep, name: str, unit: str | None, p: QueryParams
) -> Response:
    vm = await vms_service.get_vm(session, name)
    f = await filter_for(request, session, vm.id, unit, p)
    query = answers.Query(
        limit=p.limit, descending=p.order == "desc", cursor=p.cursor, output=p.output, follow=p.follow
    )
    return await answers.answer(request, session, sessions, vm_name=name, vm_id=vm.id, unit=unit, f=f, q=query)


_QUERY_DOC = (
    " Filters follow journalctl. `Accept: application/x-ndjson` streams NDJSON, `text/plain` journalctl's short"
    " format; JSON pages carry `next` and a `Link: rel=next` header. `Accept: text/event-stream` follows new"
    " events as Server-Sent Events (the `id` is the event's position; `Last-Event-ID` resumes after it)."
)


# The same events in the other media types a query answers (by Accept or `output`), besides JSON pages.
EVENT_STREAMS: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            render.NDJSON: {"schema": {"type": "string", "description": "One event object per line."}},
            render.JSON_SEQ: {"schema": {"type": "string", "description": "json-seq: RFC 7464 records."}},
            "text/plain": {"schema": {"type": "string", "description": "journalctl's output modes (short, cat...)."}},
            render.EXPORT: {"schema": {"type": "string", "format": "binary", "description": "Journal Export Format."}},
            render.SSE: {"schema": {"type": "string", "description": "Server-Sent Events: the live follow."}},
        }
    }
}
EVENT_RESPONSES = {**EVENT_STREAMS, **responses(BadRequest, NotFound, Unauthorized)}
# A listing that also answers as text (journalctl's table, or one value per line).
_ALSO_TEXT: dict[int | str, dict[str, Any]] = {200: {"content": {"text/plain": {"schema": {"type": "string"}}}}}


@router.get(
    "/{name}/boot",
    summary="A VM's journal",
    dependencies=[ApiKey],
    response_model=EventsPage,
    responses=EVENT_RESPONSES,
    description="Every journal event of the VM." + _QUERY_DOC,
)
async def vm_events(
    name: VMName, request: Request, session: SessionDep, sessions: SessionsDep, params: Params
) -> Response:
    return await _events(request, session, sessions, name, None, params)


@router.get(
    "/{name}/boot/{unit}",
    summary="One unit's journal",
    dependencies=[ApiKey],
    response_model=EventsPage,
    responses=EVENT_RESPONSES,
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


@router.get(
    "/{name}/boots",
    summary="A VM's boots",
    dependencies=[ApiKey],
    response_model=list[BootPublic],
    responses={**_ALSO_TEXT, **responses(BadRequest, NotFound, Unauthorized)},
)
async def boots(
    name: VMName,
    session: SessionDep,
    output: Annotated[
        Literal["json", "short"], Query(description="short: the table `TZ=UTC journalctl --list-boots` prints.")
    ] = "json",
) -> Response:
    """Boots with their first and last entry times, like `journalctl --list-boots`."""
    vm = await vms_service.get_vm(session, name)
    listed = [BootPublic(**b) for b in await service.list_boots(session, vm.id)]
    if output == "short":
        return Response(listing.boots_table([b.model_dump() for b in listed], tz=UTC), media_type=render.TEXT)
    return Response(orjson.dumps([b.model_dump(mode="json") for b in listed]), media_type=render.JSON)


@router.get(
    "/{name}/fields/{field}",
    summary="A field's values",
    dependencies=[ApiKey],
    response_model=list[str | list[int]],
    responses={**_ALSO_TEXT, **responses(BadRequest, NotFound, Unauthorized)},
)
async def field_values(
    name: VMName,
    field: Annotated[str, Path(description="A journal field name, e.g. _SYSTEMD_UNIT.")],
    request: Request,
    session: SessionDep,
) -> Response:
    """Distinct values of a field in the VM's journal, like `journalctl -F FIELD` (and gatewayd's
    `/fields`): a JSON array (a value that is not text as a list of byte numbers), or with `Accept:
    text/plain` one value per line."""
    vm = await vms_service.get_vm(session, name)
    values = await service.field_values(session, vm.id, field)
    if "text/plain" in request.headers.get("accept", ""):
        return Response(listing.values_text(values), media_type=render.TEXT)
    return Response(orjson.dumps([list(v) if isinstance(v, bytes) else v for v in values]), media_type=render.JSON)


@router.get("/{name}/units", summary="A VM's units", dependencies=[ApiKey], responses=responses(NotFound, Unauthorized))
async def units(name: VMName, session: SessionDep) -> list[UnitPublic]:
    """Units seen in the VM's journal, with the number of events `-u UNIT` would select."""
    vm = await vms_service.get_vm(session, name)
    return [UnitPublic(**u) for u in await service.list_units(session, vm.id)]
