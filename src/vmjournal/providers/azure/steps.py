"""The step engine: create Azure resources one by one, resumable across a service restart.

Each step is one resource made by a long-running PUT. Its continuation token is saved in the
job before waiting on it, so a service killed mid-step resumes the same operation after a
restart instead of sending the PUT again. A token that no longer works (another azure-core
version, an operation ARM has forgotten) falls back to a GET of the resource: the PUTs are
idempotent, so a step can always be reconciled from what exists.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.polling import AsyncLROPoller

from vmjournal.providers.base import JobContext, ProviderError

log = logging.getLogger(__name__)

JSON = dict[str, Any]
BodyFactory = Callable[[], Awaitable[JSON]]

# How long a step reconciled by GET may stay in progress: CRP itself gives up after 90 minutes.
RECONCILE_DEADLINE = 100 * 60.0


class ResourceOperations(Protocol):
    """An SDK operation group (``virtual_networks``, ``virtual_machines``, ...): its PUT and GET
    take the resource's path (resource group first), and the PUT a body."""

    async def begin_create_or_update(self, *args: Any, **kwargs: Any) -> AsyncLROPoller[Any]: ...

    def get(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...


@dataclass(frozen=True)
class Step:
    """One resource: its name in the job state, the operations that make it, where, with what body.

    The body is built only when the PUT is sent: the extension's carries a freshly minted token.
    """

    name: str
    operations: ResourceOperations
    path: tuple[str, ...]
    body: BodyFactory

    async def begin(self, body: JSON | None, **options: Any) -> AsyncLROPoller[Any]:
        return await self.operations.begin_create_or_update(*self.path, body, **options)

    async def get(self) -> Any:
        return await self.operations.get(*self.path)


def fixed_body(body: JSON) -> BodyFactory:
    """A body known before the step starts."""

    async def factory() -> JSON:
        return body

    return factory


def provisioning_state(resource: Any) -> str:
    """``properties.provisioningState`` of a resource as the SDK returns it, or ``""``."""
    props = resource.get("properties") if isinstance(resource, Mapping) else None
    return str(props.get("provisioningState", "")) if isinstance(props, Mapping) else ""


class StepRunner:
    """Runs steps for one job, recording in its state which are done and which operation is in flight."""

    def __init__(self, job: JobContext, *, reconcile_interval: float) -> None:
        self._job = job
        self._reconcile_interval = reconcile_interval

    async def run_all(self, steps: Sequence[Step], done: list[str]) -> None:
        """Run the steps not in ``done``, in order, appending each to ``done`` as it ends."""
        for step in steps:
            if step.name in done:
                continue
            await self._run(step)
            done.append(step.name)
            await self._job.save(azure_done=list(done), azure_op=None, azure_token=None)

    async def _run(self, step: Step) -> None:
        state = self._job.state
        token = state.get("azure_token") if state.get("azure_op") == step.name else None
        if not token:
            await self._start(step)
            return
        log.info("resuming Azure step %s from its continuation token", step.name)
        try:
            poller = await step.begin(None, continuation_token=token)
            await poller.result()
            return
        except ValueError:
            log.warning("continuation token of step %s is unusable here; reconciling by GET", step.name)
        except HttpResponseError as e:
            if e.status_code != 404:
                await self._job.save(azure_op=None, azure_token=None)
                raise
            log.warning("operation of step %s is gone (404); reconciling by GET", step.name)
        await self._reconcile(step)

    async def _start(self, step: Step) -> None:
        poller = await step.begin(await step.body())
        # Saved before waiting: a restart from here resumes this operation instead of a second PUT.
        await self._job.save(step=f"azure:{step.name}", azure_op=step.name, azure_token=poller.continuation_token())
        try:
            await poller.result()
        except HttpResponseError:
            # The operation ended (failed, or its resource vanished): a retry starts the step afresh.
            await self._job.save(azure_op=None, azure_token=None)
            raise

    async def _reconcile(self, step: Step) -> None:
        deadline = time.monotonic() + RECONCILE_DEADLINE
        while True:
            try:
                resource = await step.get()
            except ResourceNotFoundError:
                await self._start(step)
                return
            state = provisioning_state(resource)
            if state == "Succeeded":
                return
            if state in ("Failed", "Canceled"):
                # ARM retries a failed resource on an identical PUT; its errors then arrive as usual.
                await self._start(step)
                return
            if time.monotonic() > deadline:
                raise ProviderError("OperationTimedOut", f"Azure step {step.name} stayed {state!r} too long.")
            await asyncio.sleep(self._reconcile_interval)
