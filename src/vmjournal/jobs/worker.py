"""The job worker: claims durable jobs and hands each to the handler of its kind.

Every service process runs one. A job is claimed with ``FOR UPDATE SKIP LOCKED`` and kept by
heart-beating; if its process dies, the heartbeat goes stale and another (or the restarted)
process claims it and runs its handler again with the state saved so far. The worker knows
nothing of what a job does: main.py gives it the handlers (the VM domain's tasks) by kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vmjournal import outage
from vmjournal.background import Wakeup, cancel_all
from vmjournal.config import Settings
from vmjournal.db import transaction
from vmjournal.jobs import store
from vmjournal.jobs.store import ClaimedJob
from vmjournal.models import JobStatus

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


class LostJob(BaseException):
    """Another worker took the job over (this one was presumed dead).

    A ``BaseException``, like ``asyncio.CancelledError``: it means "stop, the job is not yours
    any more", and no handler's or provider's ``except Exception`` may record it as a failure.
    """


class JobRun:
    """A claimed job and the writes its handler makes to it.

    Each write goes through the handler's session, so it commits together with the handler's
    own (a VM's status), and raises ``LostJob`` if this worker no longer owns the job.
    """

    def __init__(self, job: ClaimedJob, worker_id: str) -> None:
        self.job = job
        self._worker_id = worker_id

    async def checkpoint(self, session: AsyncSession, *, step: str | None, values: Mapping[str, Any]) -> None:
        if not await store.save_state(session, self.job.id, self._worker_id, step, values):
            raise LostJob(self.job.id)

    async def finish(self, session: AsyncSession, *, note: str | None = None) -> None:
        if not await store.finish(session, self.job.id, self._worker_id, JobStatus.done, note):
            raise LostJob(self.job.id)

    async def fail(self, session: AsyncSession, error: str) -> None:
        if not await store.finish(session, self.job.id, self._worker_id, JobStatus.failed, error):
            raise LostJob(self.job.id)

    async def retry_later(self, session: AsyncSession, error: str) -> bool:
        """Queue the job again after a backoff; False, writing nothing, once it has used its attempts."""
        if self.job.attempts >= MAX_ATTEMPTS:
            return False
        delay = min(60.0, 2.0**self.job.attempts)
        if not await store.requeue(session, self.job.id, self._worker_id, error, delay):
            raise LostJob(self.job.id)
        return True


Handler = Callable[[JobRun], Awaitable[None]]
Monitor = Callable[[], Awaitable[None]]


class Worker:
    """Runs queued jobs (up to ``worker_concurrency`` at once) and, periodically, the monitor."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        handlers: Mapping[str, Handler],
        *,
        monitor: Monitor | None = None,
        poll_seconds: float = 0.5,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.handlers = handlers
        self.monitor = monitor
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.poll_seconds = poll_seconds
        self._wake = Wakeup()
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._main = [asyncio.create_task(self._claim_loop())]
        if self.monitor is not None:
            self._main.append(asyncio.create_task(self._monitor_loop()))

    async def stop(self) -> None:
        await cancel_all([*self._main, *self._tasks], "job worker")
        # Hand unfinished jobs back now, so a restarted service need not wait for them to go stale.
        with contextlib.suppress(Exception):
            async with transaction(self.sessions) as session:
                await store.release_all(session, self.id)

    async def _claim_loop(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                job = await self._claim()
            except Exception as exc:
                if outage.is_unavailable(exc):
                    outage.unavailable(exc)  # one line per outage, not a traceback per poll
                elif outage.is_saturated(exc):
                    pass  # requests hold every connection: poll again later
                else:
                    log.exception("claiming a job failed")
                job = None
            if job is None:
                self._slots.release()
                await self._wake.wait(self.poll_seconds)
                continue
            task = asyncio.create_task(self._run(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _claim(self) -> ClaimedJob | None:
        async with transaction(self.sessions) as session:
            return await store.claim_next(session, self.id, self.settings.job_stale_seconds)

    async def _run(self, job: ClaimedJob) -> None:
        beat = asyncio.create_task(self._heartbeat(job.id))
        run = JobRun(job, self.id)
        try:
            handler = self.handlers.get(job.kind)
            if handler is None:
                async with transaction(self.sessions) as session:
                    await run.fail(session, f"no handler for job kind {job.kind!r} in this service")
            else:
                await handler(run)
        except LostJob:
            log.warning("job %s was taken over by another worker", job.id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Left running: once its heartbeat is stale, a worker claims it again.
            if outage.is_unavailable(exc):
                outage.unavailable(exc)
            else:
                log.exception("job %s crashed", job.id)
        finally:
            beat.cancel()
            self._slots.release()
            self._wake.set()

    async def _heartbeat(self, job_id: int) -> None:
        while True:
            await asyncio.sleep(self.settings.job_heartbeat_seconds)
            with contextlib.suppress(Exception):
                async with transaction(self.sessions) as session:
                    await store.heartbeat(session, job_id, self.id)

    async def _monitor_loop(self) -> None:
        while True:
            try:
                await self.monitor_once()
            except Exception as exc:
                log.warning("monitor pass failed: %s", exc)
            await asyncio.sleep(self.settings.monitor_seconds)

    async def monitor_once(self) -> bool:
        """Run the monitor unless another process is running it now; True if this one ran it."""
        if self.monitor is None:
            return False
        # The lock lives as long as this transaction: released on commit, rollback or a lost
        # connection, never left behind on a pooled one. The pass writes through its own
        # sessions; this one only holds the lock (idle in READ COMMITTED, it holds no snapshot).
        async with transaction(self.sessions) as session:
            if not await store.try_lock_monitor(session):
                return False
            await self.monitor()
            return True
