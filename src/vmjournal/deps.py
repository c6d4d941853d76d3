"""Request dependencies: the session (committed once on success), settings, providers, the job queue, auth."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vmjournal.config import Settings
from vmjournal.db import transaction
from vmjournal.errors import Unauthorized
from vmjournal.providers.base import VMProvider
from vmjournal.vms.queue import JobQueue

# Dependencies are coroutines even where they do not wait: FastAPI runs a plain function in its
# thread pool, a hop to another thread and back for each (5 % of the event loop's CPU in ingest).


async def get_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.state.sessions
    return sessions


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with transaction(request.state.sessions) as session:
        yield session


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


async def get_providers(request: Request) -> dict[str, VMProvider]:
    providers: dict[str, VMProvider] = request.state.providers
    return providers


async def get_jobs(request: Request) -> JobQueue:
    jobs: JobQueue = request.state.jobs
    return jobs


# scope="function": commit before the response is sent, so a client that saw 202 can read what it made.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessions)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ProvidersDep = Annotated[dict[str, VMProvider], Depends(get_providers)]
JobsDep = Annotated[JobQueue, Depends(get_jobs)]

_bearer = HTTPBearer(auto_error=False, description="An API key from VMJOURNAL_API_KEYS.")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from VMJOURNAL_API_KEYS.")


async def require_api_key(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> None:
    """Management routes need a key when keys are configured (always, off loopback)."""
    if not settings.api_keys:
        return
    given = header or (bearer.credentials if bearer else None)
    if given and any(hmac.compare_digest(given.encode(), k.get_secret_value().encode()) for k in settings.api_keys):
        return
    raise Unauthorized(
        "this route needs an API key: Authorization: Bearer <key> or X-API-Key: <key>",
        code="api_key_required",
        headers={"WWW-Authenticate": "Bearer"},
    )


ApiKey = Depends(require_api_key)
