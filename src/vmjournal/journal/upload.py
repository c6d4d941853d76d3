"""Journal Export Format ingest, for stock ``systemd-journal-upload`` and anything else that speaks it.

``systemd-journal-upload --url=<service>/ingest/<token>`` posts to ``/ingest/<token>/upload``
(it appends ``/upload``; the systemd of Debian 12 and Ubuntu 22.04/24.04 cannot send headers,
so the token rides in the path and is masked in the access log). From systemd 258 on,
``Header=Authorization: Bearer <token>`` lets it post to ``/vm/<name>/boot`` like the agent.

journal-upload streams everything available in one chunked POST, possibly hundreds of
megabytes, so the body is parsed as it arrives and handed to the JSON path's
``service.ingest_entries`` in batches of ``max_batch_entries``, all in the request's one
transaction: memory stays bounded, and a malformed entry anywhere stores nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from vmjournal.config import Settings
from vmjournal.deps import SessionDep, SettingsDep
from vmjournal.errors import BadRequest, Forbidden, PayloadTooLarge, UnsupportedMediaType, responses
from vmjournal.journal import bodies, entries, service
from vmjournal.journal.export_format import ExportFormatError, ExportParser
from vmjournal.journal.schemas import IngestResponse

EXPORT_MEDIA_TYPE = "application/vnd.fdo.journal"
# journal-upload's first POST from a VM is its whole journal; the JSON path's per-request limit
# is for the agent's small batches.
EXPORT_BODY_FACTOR = 16

router = APIRouter(tags=["journal"])


def is_export(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == EXPORT_MEDIA_TYPE


async def ingest_export(
    session: AsyncSession, vm_id: Any, request: Request, settings: Settings
) -> service.IngestResult:
    """Parse an export-format body as it streams in and store it like a JSON batch, atomically."""
    parser = ExportParser()
    pending: list[dict[str, Any]] = []
    received = stored = 0
    step = settings.max_batch_entries

    async def store(batch: list[dict[str, Any]]) -> None:
        nonlocal received, stored
        try:
            result = await service.ingest_entries(session, vm_id, batch)
        except entries.BadEntry as exc:
            # Count entries across the whole body, not within this internal batch.
            raise entries.BadEntry(received + exc.index, exc.problem) from None
        received += result.received
        stored += result.stored

    try:
        async for data in bodies.decoded_chunks(request, settings.max_body_bytes * EXPORT_BODY_FACTOR):
            pending += parser.feed(data)
            while len(pending) >= step:
                await store(pending[:step])
                del pending[:step]
        pending += parser.close()
    except ExportFormatError as exc:
        raise BadRequest(f"{exc}; nothing was stored", code="bad_export") from None
    if pending:
        await store(pending)
    return service.IngestResult(received=received, stored=stored)


@router.post(
    "/ingest/{token}/upload",
    summary="Ingest from systemd-journal-upload",
    response_model=IngestResponse,
    responses=responses(BadRequest, Forbidden, PayloadTooLarge, UnsupportedMediaType),
    openapi_extra={"requestBody": {"required": True, "content": {EXPORT_MEDIA_TYPE: {}}}},
)
async def upload(
    token: Annotated[str, Path(description="The VM's ingest token.")],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> IngestResponse:
    """Journal Export Format, as `systemd-journal-upload --url=<service>/ingest/<token>` sends it
    (the URL needs an explicit port). Atomic and idempotent by `__CURSOR`, like the JSON ingest."""
    vm_id = await service.vm_for_token(session, token)
    if not is_export(request):
        raise UnsupportedMediaType(
            f"this route takes Content-Type: {EXPORT_MEDIA_TYPE}; JSON batches go to POST /vm/{{name}}/boot"
        )
    result = await ingest_export(session, vm_id, request, settings)
    return IngestResponse.of(result)
