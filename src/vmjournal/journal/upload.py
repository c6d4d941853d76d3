"""The route for stock ``systemd-journal-upload``, which speaks the Journal Export Format.

``systemd-journal-upload --url=<service>/ingest/<token>`` posts to ``/ingest/<token>/upload``
(it appends ``/upload``; the systemd of Debian 12 and Ubuntu 22.04/24.04 cannot send headers,
so the token rides in the path and is masked in the access log). From systemd 258 on,
``Header=Authorization: Bearer <token>`` lets it post to ``/vm/<name>/boot`` like the agent.
The stream is stored as it arrives by ``export_ingest``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Request, Response
from starlette.requests import ClientDisconnect

from vmjournal.config import Settings
from vmjournal.db import transaction
from vmjournal.deps import SessionsDep, SettingsDep
from vmjournal.errors import BadRequest, Forbidden, UnsupportedMediaType, responses
from vmjournal.journal import bodies, export_ingest
from vmjournal.journal.render import EXPORT as EXPORT_MEDIA_TYPE
from vmjournal.journal.schemas import IngestResponse
from vmjournal.vms import auth as vms_auth

log = logging.getLogger(__name__)

router = APIRouter(tags=["journal"])


def is_export(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == EXPORT_MEDIA_TYPE


async def store_export(
    request: Request, sessions: SessionsDep, settings: Settings, vm_id: UUID, vm_name: str
) -> IngestResponse:
    """An export-format body, committed as it streams (shared by both ingest routes)."""
    # No cap on the whole body: only one entry (at most the per-request limit) is ever held.
    chunks: AsyncIterator[bytes] = bodies.decoded_chunks(request, None)
    limits = export_ingest.StreamLimits(batch_entries=settings.max_batch_entries, entry_bytes=settings.max_body_bytes)
    try:
        result = await export_ingest.ingest_export(sessions, vm_id, vm_name, chunks, limits)
    except ClientDisconnect:
        # What was committed stays; the sender resends from its last acknowledged cursor.
        log.info("VM %s: an export-format upload was cut off by the client", vm_name)
        raise BadRequest("the client went away before the body ended", code="client_disconnect") from None
    return IngestResponse.of(result)


@router.post(
    "/ingest/{token}/upload",
    summary="Ingest from systemd-journal-upload",
    response_model=IngestResponse,
    response_model_exclude_none=True,
    responses=responses(BadRequest, Forbidden, UnsupportedMediaType),
    openapi_extra={"requestBody": {"required": True, "content": {EXPORT_MEDIA_TYPE: {}}}},
)
async def upload(
    token: Annotated[str, Path(description="The VM's ingest token.")],
    request: Request,
    response: Response,
    sessions: SessionsDep,
    settings: SettingsDep,
) -> IngestResponse:
    """Journal Export Format, as `systemd-journal-upload --url=<service>/ingest/<token>` sends it
    (the URL needs an explicit port). Stored as it streams, in batches that commit on their own;
    idempotent by `__CURSOR`, so a cut-off upload sent again stores nothing twice. An entry that
    cannot be stored is skipped and reported in the VM's `last_ingest_error`."""
    async with transaction(sessions) as session:
        vm_id, vm_name = await vms_auth.vm_for_token(session, token)
    # systemd-journal-upload 258 compresses its next uploads with the first of these it supports.
    response.headers["Accept-Encoding"] = bodies.ACCEPT_ENCODING
    if not is_export(request):
        raise UnsupportedMediaType(
            f"this route takes Content-Type: {EXPORT_MEDIA_TYPE}; JSON batches go to POST /vm/{{name}}/boot"
        )
    return await store_export(request, sessions, settings, vm_id, vm_name)
