"""The provisioning worker: claims durable jobs and drives providers through them.

Every service process runs one. A job is claimed with ``FOR UPDATE SKIP LOCKED`` and kept by
heart-beating; if its process dies, the heartbeat goes stale and another (or the restarted)
process claims it and calls the provider again with the state saved so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vmjournal import outage, tokens
from vmjournal.config import Settings
from vmjournal.db import transaction
from vmjournal.jobs import store
from vmjournal.journal import service as journal_service
from vmjournal.models import JobKind, JobStatus, VMStatus
from vmjournal.providers.base import AgentConfig, ProviderError, ProviderVM, VMProvider, VMSpec
from vmjournal.vms import store as vms_store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
# Only one process inspects running VMs at a time (it may restart local guests).
_MONITOR_LOCK = 0x766D6A6D6F6E


class LostJob(Exception):
    """Another worker took the job over (this one was presumed dead)."""


class JobRun:
    """A claimed job, as ``JobContext`` for its provider."""

    def __init__(
        self,
        worker: Worker,
        job_id: int,
        spec: VMSpec,
        state: dict[str, Any],
    ) -> None:
        self._worker = worker
        self.job_id = job_id
        self.spec = spec
        self._state = state

    @property
    def state(self) -> Mapping[str, Any]:
        return self._state

    async def save(self, *, step: str | None = None, **values: Any) -> None:
        async with transaction(self._worker.sessions) as session:
            if not await store.save_state(session, self.job_id, self._worker.id, step, values):
                raise LostJob(self.job_id)
            if step is not None:
                await vms_store.update_vm(session, self.spec.vm_id, step=step)
        self._state.update(values)

    async def issue_agent_config(self) -> AgentConfig:
        token = tokens.new_token()
        async with transaction(self._worker.sessions) as session:
            await vms_store.update_vm(session, self.spec.vm_id, token_hash=tokens.token_hash(token))
        return AgentConfig(url=self._worker.settings.ingest_url, name=self.spec.name, token=token)


class Worker:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        providers: Mapping[str, VMProvider],
        *,
        poll_seconds: float = 0.5,
        monitor_seconds: float = 30.0,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.providers = providers
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.poll_seconds = poll_seconds
        self.monitor_seconds = monitor_seconds
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._main = [asyncio.create_task(self._claim_loop()), asyncio.create_task(self._monitor_loop())]

    async def stop(self) -> None:
        for task in [*self._main, *self._tasks]:
            task.cancel()
        for task in [*self._main, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
                self._wake.clear()
                continue
            task = asyncio.create_task(self._run(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _claim(self) -> dict[str, Any] | None:
        async with transaction(self.sessions) as session:
            return await store.claim_next(session, self.id, self.settings.job_stale_seconds)

    async def _run(self, job: dict[str, Any]) -> None:
        beat = asyncio.create_task(self._heartbeat(job["id"]))
        try:
            await self._execute(job)
        except LostJob:
            log.warning("job %s was taken over by another worker", job["id"])
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s crashed", job["id"])
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

    async def _execute(self, job: dict[str, Any]) -> None:
        async with transaction(self.sessions) as session:
            vm = await vms_store.get_vm(session, job["vm_id"])
            if vm is None:
                await store.finish(session, job["id"], self.id, JobStatus.done, "VM record is gone")
                return
            if job["kind"] == JobKind.provision and vm.status in (VMStatus.deleting, VMStatus.deleted):
                await store.finish(session, job["id"], self.id, JobStatus.done, "cancelled: VM deleted")
                return
            status = VMStatus.provisioning if job["kind"] == JobKind.provision else VMStatus.deleting
            await vms_store.update_vm(session, vm.id, status=status, step=job["step"] or "started",
                                      error_code=None, error_message=None, error_details=[])
        spec = VMSpec(vm_id=vm.id, name=vm.name, size=vm.size)
        provider = self.providers.get(vm.provider)
        run = JobRun(self, job["id"], spec, dict(job["state"] or {}))
        log.info("job %s: %s %s on %s (attempt %s)", job["id"], job["kind"], vm.name, vm.provider, job["attempts"])
        try:
            if provider is None:
                raise ProviderError("ProviderUnavailable", f"provider {vm.provider!r} is not configured here")
            if job["kind"] == JobKind.provision:
                result = await provider.provision(spec, run)
                await self._provisioned(job, spec, result)
            else:
                await provider.deprovision(spec, run)
                await self._deprovisioned(job, spec)
        except LostJob:
            raise
        except ProviderError as err:
            await self._failed(job, spec, err)
        except Exception as exc:
            log.exception("job %s: provider raised", job["id"])
            await self._failed(job, spec, ProviderError("InternalError", str(exc) or type(exc).__name__,
                                                        retryable=True))

    async def _provisioned(self, job: dict[str, Any], spec: VMSpec, result: ProviderVM) -> None:
        async with transaction(self.sessions) as session:
            if not await store.finish(session, job["id"], self.id, JobStatus.done):
                raise LostJob(job["id"])
            vm = await vms_store.get_vm(session, spec.vm_id, for_update=True)
            if vm is None or vm.status != VMStatus.provisioning:
                return  # deleted while we worked: the deprovision job takes it from here
            if result.state == "running":
                await vms_store.update_vm(session, spec.vm_id, status=VMStatus.running, step="running",
                                          addresses=result.addresses, details=result.details)
            else:
                err = result.error or ProviderError("ProvisioningFailed", "the provider reported a failure")
                await vms_store.update_vm(session, spec.vm_id, status=VMStatus.failed, step="failed",
                                          error_code=err.code, error_message=err.message,
                                          error_details=err.details, details=result.details)

    async def _deprovisioned(self, job: dict[str, Any], spec: VMSpec) -> None:
        async with transaction(self.sessions) as session:
            if not await store.finish(session, job["id"], self.id, JobStatus.done):
                raise LostJob(job["id"])
            await vms_store.update_vm(session, spec.vm_id, status=VMStatus.deleted, step="deleted",
                                      token_hash=None, deleted_at=text("now()"))
            # Nothing can read a deleted VM's journal any more (its name may already be reused).
            await journal_service.purge(session, spec.vm_id)

    async def _failed(self, job: dict[str, Any], spec: VMSpec, err: ProviderError) -> None:
        log.warning("job %s: %s %s failed: %s", job["id"], job["kind"], spec.name, err)
        async with transaction(self.sessions) as session:
            if err.retryable and job["attempts"] < MAX_ATTEMPTS:
                delay = min(60.0, 2.0 ** job["attempts"])
                if not await store.requeue(session, job["id"], self.id, str(err), delay):
                    raise LostJob(job["id"])
                await vms_store.update_vm(session, spec.vm_id, error_code=err.code, error_message=err.message,
                                          error_details=err.details)
                return
            if not await store.finish(session, job["id"], self.id, JobStatus.failed, str(err)):
                raise LostJob(job["id"])
            vm = await vms_store.get_vm(session, spec.vm_id, for_update=True)
            if vm is None or (job["kind"] == JobKind.provision and vm.status != VMStatus.provisioning):
                return
            await vms_store.update_vm(session, spec.vm_id, status=VMStatus.failed, step=f"{job['kind']} failed",
                                      error_code=err.code, error_message=err.message, error_details=err.details)

    async def _monitor_loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.monitor_once()
            await asyncio.sleep(self.monitor_seconds)

    async def monitor_once(self) -> None:
        """Ask providers about running VMs; record failures, let local providers restart guests."""
        async with self.sessions() as session:
            locked = (await session.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _MONITOR_LOCK})).scalar()
            if not locked:
                return
            try:
                vms = await vms_store.list_vms_by_status(session, VMStatus.running)
                for vm in vms:
                    provider = self.providers.get(vm.provider)
                    if provider is None:
                        continue
                    state = await store.latest_state(session, vm.id, JobKind.provision)
                    try:
                        seen = await provider.inspect(VMSpec(vm.id, vm.name, vm.size), state)
                    except Exception:
                        log.exception("inspecting %s failed", vm.name)
                        continue
                    await self._record_inspection(session, vm.id, seen)
                    await session.commit()
            finally:
                await session.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MONITOR_LOCK})
                await session.commit()

    async def _record_inspection(self, session: AsyncSession, vm_id: uuid.UUID, seen: ProviderVM) -> None:
        if seen.state == "running":
            await vms_store.update_vm(session, vm_id, addresses=seen.addresses, details=seen.details)
            return
        err = seen.error or ProviderError("VMGone" if seen.state == "gone" else "VMFailed",
                                          "the provider no longer runs this VM")
        await vms_store.update_vm(session, vm_id, status=VMStatus.failed, step="lost", error_code=err.code,
                                  error_message=err.message, error_details=err.details)
