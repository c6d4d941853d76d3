"""What the VM domain needs from the durable job queue, and what it may rely on.

``jobs.store`` implements it; main.py and deps.py hand it in, so the VM domain never imports the
queue and the queue never imports the VM domain.
"""

from __future__ import annotations

from typing import Any, Protocol
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession


class JobQueue(Protocol):
    """Job rows, written through the caller's session: a VM and its job commit together or not at all."""

    def enqueue(self, session: AsyncSession, vm_id: UUID, kind: str) -> None:
        """Queue a job of ``kind`` for the VM; a worker runs it once the session commits."""
        ...

    async def cancel_queued(self, session: AsyncSession, vm_id: UUID, kind: str) -> None:
        """Drop the VM's jobs of ``kind`` that no worker has started; one in flight runs on."""
        ...

    async def latest_state(self, session: AsyncSession, vm_id: UUID, kind: str) -> dict[str, Any]:
        """What the VM's latest job of ``kind`` saved (empty if none): the provider's own record."""
        ...
