"""All SQL of the job queue: enqueue, claim (FOR UPDATE SKIP LOCKED), heartbeat, checkpoint, finish.

``enqueue``, ``cancel_queued`` and ``latest_state`` are also the VM domain's ``JobQueue``
(vms/queue.py): main.py hands this module to it, so neither package imports the other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from vmjournal.models import Job, JobStatus

# A job is claimable when queued and due, or when its worker stopped heart-beating (it died).
# Never while another job of the same VM runs: a delete waits for the create to let go.
CLAIM_NEXT_JOB = sa.text("""
UPDATE job SET status = 'running', locked_by = :worker, heartbeat_at = now(), updated_at = now(),
               attempts = attempts + 1
WHERE id = (
    SELECT j.id FROM job j
    WHERE ((j.status = 'queued' AND j.run_after <= now())
           OR (j.status = 'running' AND j.heartbeat_at < now() - make_interval(secs => :stale)))
      AND NOT EXISTS (
          SELECT 1 FROM job o WHERE o.vm_id = j.vm_id AND o.id <> j.id AND o.status = 'running'
            AND o.heartbeat_at >= now() - make_interval(secs => :stale))
    ORDER BY j.run_after, j.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING id, vm_id, kind, step, state, attempts
""")

HEARTBEAT = sa.text("""
UPDATE job SET heartbeat_at = now() WHERE id = :id AND locked_by = :worker AND status = 'running'
""")

SAVE_STATE = sa.text("""
UPDATE job SET state = state || CAST(:state AS jsonb), step = coalesce(:step, step),
               heartbeat_at = now(), updated_at = now()
WHERE id = :id AND locked_by = :worker AND status = 'running'
""")

FINISH = sa.text("""
UPDATE job SET status = :status, last_error = :error, locked_by = NULL, updated_at = now()
WHERE id = :id AND locked_by = :worker
""")

REQUEUE = sa.text("""
UPDATE job SET status = 'queued', last_error = :error, locked_by = NULL, updated_at = now(),
               run_after = now() + make_interval(secs => :delay)
WHERE id = :id AND locked_by = :worker
""")

RELEASE_ALL = sa.text("""
UPDATE job SET status = 'queued', locked_by = NULL, updated_at = now()
WHERE locked_by = :worker AND status = 'running'
""")

CANCEL_QUEUED = sa.text("""
UPDATE job SET status = 'done', last_error = 'cancelled', updated_at = now()
WHERE vm_id = :vm_id AND kind = :kind AND status = 'queued'
""")

LATEST_STATE = sa.text("""
SELECT state FROM job WHERE vm_id = :vm_id AND kind = :kind ORDER BY id DESC LIMIT 1
""")

# Transaction-level, so it goes away with the transaction that took it: a session-level lock
# outlives a commit on a pooled connection and can only be released on that same connection.
COUNT_UNFINISHED = sa.text(
    "SELECT kind, status, count(*) FROM job WHERE status IN ('queued', 'running') GROUP BY kind, status"
)

TRY_MONITOR_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(:key)")
# Only one process runs the periodic monitor at a time (it may restart local guests).
MONITOR_LOCK_KEY = 0x766D6A6D6F6E


@dataclass(frozen=True)
class ClaimedJob:
    """A job as a worker claimed it: what to do (``kind``) to which VM, and what earlier runs saved."""

    id: int
    vm_id: UUID
    kind: str
    step: str | None
    state: Mapping[str, Any]
    attempts: int


def enqueue(session: AsyncSession, vm_id: UUID, kind: str) -> None:
    session.add(Job(vm_id=vm_id, kind=kind, status=JobStatus.queued))


async def claim_next(session: AsyncSession, worker: str, stale_seconds: float) -> ClaimedJob | None:
    row = (await session.execute(CLAIM_NEXT_JOB, {"worker": worker, "stale": stale_seconds})).mappings().first()
    if row is None:
        return None
    return ClaimedJob(
        id=row["id"],
        vm_id=row["vm_id"],
        kind=row["kind"],
        step=row["step"],
        state=MappingProxyType(dict(row["state"] or {})),
        attempts=row["attempts"],
    )


async def heartbeat(session: AsyncSession, job_id: int, worker: str) -> bool:
    result = await session.execute(HEARTBEAT, {"id": job_id, "worker": worker})
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def save_state(
    session: AsyncSession, job_id: int, worker: str, step: str | None, state: Mapping[str, Any]
) -> bool:
    params = {"id": job_id, "worker": worker, "step": step, "state": json.dumps(dict(state))}
    result = await session.execute(SAVE_STATE, params)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def finish(session: AsyncSession, job_id: int, worker: str, status: str, error: str | None = None) -> bool:
    result = await session.execute(FINISH, {"id": job_id, "worker": worker, "status": status, "error": error})
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def requeue(session: AsyncSession, job_id: int, worker: str, error: str, delay: float) -> bool:
    params = {"id": job_id, "worker": worker, "error": error, "delay": delay}
    result = await session.execute(REQUEUE, params)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release_all(session: AsyncSession, worker: str) -> None:
    await session.execute(RELEASE_ALL, {"worker": worker})


async def cancel_queued(session: AsyncSession, vm_id: UUID, kind: str) -> None:
    await session.execute(CANCEL_QUEUED, {"vm_id": vm_id, "kind": kind})


async def latest_state(session: AsyncSession, vm_id: UUID, kind: str) -> dict[str, Any]:
    state = (await session.execute(LATEST_STATE, {"vm_id": vm_id, "kind": kind})).scalar_one_or_none()
    return dict(state or {})


async def try_lock_monitor(session: AsyncSession) -> bool:
    """Take the monitor lock until the session's transaction ends; False if another process holds it."""
    return bool((await session.execute(TRY_MONITOR_LOCK, {"key": MONITOR_LOCK_KEY})).scalar())


async def count_unfinished(session: AsyncSession) -> list[tuple[str, str, int]]:
    return [(k, s, n) for k, s, n in (await session.execute(COUNT_UNFINISHED)).all()]
