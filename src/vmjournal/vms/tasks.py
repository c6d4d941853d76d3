"""What the worker's jobs do to a VM: provision, deprovision, and the running-VM check.

The job queue (``jobs/``) claims, heart-beats and retries jobs without knowing what they are;
these tasks own every VM status transition after the request. main.py hands ``handlers()`` to
the worker by job kind and ``inspect_running`` to it as the periodic monitor.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vmjournal import outage, tokens
from vmjournal.db import transaction
from vmjournal.models import VM, JobKind, VMStatus
from vmjournal.providers.base import AgentConfig, ProviderError, ProviderVM, VMProvider, VMSpec
from vmjournal.vms import store
from vmjournal.vms.queue import JobQueue

log = logging.getLogger(__name__)

PurgeJournal = Callable[[AsyncSession, UUID], Awaitable[None]]


class ClaimedJob(Protocol):
    """A job as the worker claimed it (``jobs.store.ClaimedJob``)."""

    @property
    def id(self) -> int: ...
    @property
    def vm_id(self) -> UUID: ...
    @property
    def kind(self) -> str: ...
    @property
    def step(self) -> str | None: ...
    @property
    def state(self) -> Mapping[str, Any]: ...
    @property
    def attempts(self) -> int: ...


class JobRun(Protocol):
    """The queue's side of a claimed job (``jobs.worker.JobRun``).

    Each write takes the task's session, so the VM's transition commits with its job's; each
    raises (a ``BaseException``, which these tasks let through) once another worker owns the job.
    """

    @property
    def job(self) -> ClaimedJob: ...

    async def checkpoint(self, session: AsyncSession, *, step: str | None, values: Mapping[str, Any]) -> None: ...

    async def finish(self, session: AsyncSession, *, note: str | None = None) -> None: ...

    async def fail(self, session: AsyncSession, error: str) -> None: ...

    async def retry_later(self, session: AsyncSession, error: str) -> bool:
        """False, writing nothing, once the job has used its attempts."""
        ...


class ProviderJob:
    """A claimed job as its provider sees it (``providers.base.JobContext``)."""

    def __init__(self, tasks: VMTasks, run: JobRun, spec: VMSpec) -> None:
        self._tasks = tasks
        self._run = run
        self.spec = spec
        self._state = dict(run.job.state)

    @property
    def state(self) -> Mapping[str, Any]:
        return self._state

    async def save(self, *, step: str | None = None, **values: Any) -> None:
        async with transaction(self._tasks.sessions) as session:
            await self._run.checkpoint(session, step=step, values=values)
            if step is not None:
                await store.update_vm(session, self.spec.vm_id, step=step)
        self._state.update(values)

    async def issue_agent_config(self) -> AgentConfig:
        token = tokens.new_token()
        async with transaction(self._tasks.sessions) as session:
            await store.update_vm(session, self.spec.vm_id, token_hash=tokens.token_hash(token))
        return AgentConfig(url=self._tasks.ingest_url, name=self.spec.name, token=token)


class VMTasks:
    """The VM lifecycle as the worker drives it; only these tasks move a VM past ``pending``/``deleting``."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        providers: Mapping[str, VMProvider],
        queue: JobQueue,
        *,
        ingest_url: str,
        purge_journal: PurgeJournal,
    ) -> None:
        self.sessions = sessions
        self.providers = providers
        self.queue = queue
        self.ingest_url = ingest_url
        self._purge_journal = purge_journal

    def handlers(self) -> dict[str, Callable[[JobRun], Awaitable[None]]]:
        return {JobKind.provision: self.provision, JobKind.deprovision: self.deprovision}

    async def provision(self, run: JobRun) -> None:
        """Create the VM through its provider and record the result; a VM deleted meanwhile is left alone."""
        vm = await self._begin(run, VMStatus.provisioning)
        if vm is None:
            return
        spec = VMSpec(vm_id=vm.id, name=vm.name, size=vm.size)

        async def work() -> None:
            result = await self._provider(vm).provision(spec, ProviderJob(self, run, spec))
            await self._provisioned(run, spec, result)

        await self._guarded(run, spec, work)

    async def deprovision(self, run: JobRun) -> None:
        """Remove the VM through its provider, then mark it deleted and drop its journal."""
        vm = await self._begin(run, VMStatus.deleting)
        if vm is None:
            return
        spec = VMSpec(vm_id=vm.id, name=vm.name, size=vm.size)

        async def work() -> None:
            await self._provider(vm).deprovision(spec, ProviderJob(self, run, spec))
            await self._deprovisioned(run, spec)

        await self._guarded(run, spec, work)

    async def inspect_running(self) -> None:
        """One monitor pass: ask providers about every running VM and record what they report."""
        async with transaction(self.sessions) as session:
            vms = await store.list_vms_by_status(session, VMStatus.running)
        for vm in vms:
            await self.inspect(vm)

    async def inspect(self, vm: VM) -> None:
        """Record a running VM's provider state; a local provider may restart its guest here."""
        provider = self.providers.get(vm.provider)
        if provider is None:
            return
        async with transaction(self.sessions) as session:
            state = await self.queue.latest_state(session, vm.id, JobKind.provision)
        try:
            seen = await provider.inspect(VMSpec(vm.id, vm.name, vm.size), state)
        except Exception:
            log.exception("inspecting %s failed", vm.name)
            return
        async with transaction(self.sessions) as session:
            # Re-read under lock: a delete may have started while the provider was asked.
            current = await store.get_vm(session, vm.id, for_update=True)
            if current is None or current.status != VMStatus.running:
                return
            await self._record_inspection(session, vm.id, seen)

    def _provider(self, vm: VM) -> VMProvider:
        provider = self.providers.get(vm.provider)
        if provider is None:
            raise ProviderError("ProviderUnavailable", f"provider {vm.provider!r} is not configured here")
        return provider

    async def _begin(self, run: JobRun, status: VMStatus) -> VM | None:
        job = run.job
        async with transaction(self.sessions) as session:
            vm = await store.get_vm(session, job.vm_id)
            if vm is None:
                await run.finish(session, note="VM record is gone")
                return None
            if job.kind == JobKind.provision and vm.status in (VMStatus.deleting, VMStatus.deleted):
                await run.finish(session, note="cancelled: VM deleted")
                return None
            await store.update_vm(
                session,
                vm.id,
                status=status,
                step=job.step or "started",
                error_code=None,
                error_message=None,
                error_details=[],
            )
        log.info("job %s: %s %s on %s (attempt %s)", job.id, job.kind, vm.name, vm.provider, job.attempts)
        return vm

    async def _guarded(self, run: JobRun, spec: VMSpec, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work``; a provider's failure (or any crash) becomes a retry or the VM's error."""
        try:
            await work()
        except ProviderError as err:
            await self._failed(run, spec, err)
        except Exception as exc:
            if outage.is_unavailable(exc):
                raise  # not the provider's failure, and nothing can be recorded: the job is claimed again later
            log.exception("job %s: provider raised", run.job.id)
            await self._failed(
                run, spec, ProviderError("InternalError", str(exc) or type(exc).__name__, retryable=True)
            )

    async def _provisioned(self, run: JobRun, spec: VMSpec, result: ProviderVM) -> None:
        async with transaction(self.sessions) as session:
            await run.finish(session)
            vm = await store.get_vm(session, spec.vm_id, for_update=True)
            if vm is None or vm.status != VMStatus.provisioning:
                return  # deleted while we worked: the deprovision job takes it from here
            if result.state == "running":
                await store.update_vm(
                    session,
                    spec.vm_id,
                    status=VMStatus.running,
                    step="running",
                    addresses=result.addresses,
                    details=result.details,
                )
            else:
                err = result.error or ProviderError("ProvisioningFailed", "the provider reported a failure")
                await store.update_vm(
                    session,
                    spec.vm_id,
                    status=VMStatus.failed,
                    step="failed",
                    error_code=err.code,
                    error_message=err.message,
                    error_details=err.details,
                    details=result.details,
                )

    async def _deprovisioned(self, run: JobRun, spec: VMSpec) -> None:
        async with transaction(self.sessions) as session:
            await run.finish(session)
            await store.update_vm(
                session, spec.vm_id, status=VMStatus.deleted, step="deleted", token_hash=None, deleted_at=text("now()")
            )
            # Nothing can read a deleted VM's journal any more (its name may already be reused).
            await self._purge_journal(session, spec.vm_id)

    async def _failed(self, run: JobRun, spec: VMSpec, err: ProviderError) -> None:
        job = run.job
        log.warning("job %s: %s %s failed: %s", job.id, job.kind, spec.name, err)
        async with transaction(self.sessions) as session:
            if err.retryable and await run.retry_later(session, str(err)):
                await store.update_vm(
                    session, spec.vm_id, error_code=err.code, error_message=err.message, error_details=err.details
                )
                return
            await run.fail(session, str(err))
            vm = await store.get_vm(session, spec.vm_id, for_update=True)
            if vm is None or (job.kind == JobKind.provision and vm.status != VMStatus.provisioning):
                return
            await store.update_vm(
                session,
                spec.vm_id,
                status=VMStatus.failed,
                step=f"{job.kind} failed",
                error_code=err.code,
                error_message=err.message,
                error_details=err.details,
            )

    async def _record_inspection(self, session: AsyncSession, vm_id: UUID, seen: ProviderVM) -> None:
        if seen.state == "running":
            await store.update_vm(session, vm_id, addresses=seen.addresses, details=seen.details)
            return
        err = seen.error or ProviderError(
            "VMGone" if seen.state == "gone" else "VMFailed", "the provider no longer runs this VM"
        )
        await store.update_vm(
            session,
            vm_id,
            status=VMStatus.failed,
            step="lost",
            error_code=err.code,
            error_message=err.message,
            error_details=err.details,
        )
