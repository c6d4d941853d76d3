"""Agent authentication: which VM an ingest token belongs to. Ingest routes call these."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from vmjournal import tokens
from vmjournal.errors import Forbidden, Unauthorized
from vmjournal.vms import service, store


async def authenticate_agent(session: AsyncSession, name: str, authorization: str | None) -> UUID:
    """The VM's id, if the bearer token is this VM's. 401 without a token, 404 without the VM,
    403 with another token."""
    if authorization is None or not authorization.lower().startswith("bearer ") or not authorization[7:].strip():
        raise Unauthorized(
            "ingest needs the VM's token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    vm_id, token_hash = await service.get_agent_key(session, name)
    if not tokens.matches(authorization[7:].strip(), token_hash):
        raise Forbidden(f"this token is not valid for VM {name!r}", code="wrong_token")
    return vm_id


async def vm_for_token(session: AsyncSession, token: str) -> tuple[UUID, str]:
    """The id and name of the VM a token in a URL path belongs to (for systemd-journal-upload, which
    cannot send headers)."""
    found = await store.vm_id_by_token_hash(session, tokens.token_hash(token))
    if found is None:
        raise Forbidden("this token is not valid for any VM", code="wrong_token")
    return found
