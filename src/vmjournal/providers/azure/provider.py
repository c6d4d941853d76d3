"""The Azure provider: one resource group per VM, built step by step by the durable worker.

Steps: pre-flight (the size is offered in the location, the quota has room), resource group,
NSG, VNet with its subnet, Standard static public IP, NIC, VM, and the CustomScript extension
that installs the agent. Each long-running step saves its continuation token in the job
before waiting on it, so a service killed mid-step resumes the same operation after a restart
instead of sending the PUT again. A token that no longer works (another azure-core version, an
operation ARM has forgotten) falls back to a GET of the resource: the PUTs are idempotent, so
a step can always be reconciled from what exists.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.core.polling import AsyncLROPoller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vmjournal.agent_bundle import render_bootstrap_script
from vmjournal.config import AzureSettings
from vmjournal.providers.azure import bodies
from vmjournal.providers.azure.auth import Clients, build_clients
from vmjournal.providers.azure.errors import to_provider_error
from vmjournal.providers.azure.orphans import Orphan, list_orphans
from vmjournal.providers.base import JobContext, ProviderError, ProviderVM, VMSpec

log = logging.getLogger(__name__)
# The SDK logs every request and response (headers included) at INFO: noise in the service's
# log, and request bodies are one logging-config change away from leaking protectedSettings.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
logging.getLogger("azure.identity").setLevel(logging.WARNING)

JSON = dict[str, Any]
Begin = Callable[..., Awaitable[AsyncLROPoller[Any]]]
Get = Callable[[], Awaitable[Any]]
BodyFactory = Callable[[], Awaitable[JSON]]

# How long a step reconciled by GET may stay in progress: CRP itself gives up after 90 minutes.
_RECONCILE_DEADLINE = 100 * 60.0


@dataclass(frozen=True)
class _Step:
    name: str
    begin: Begin
    get: Get
    body: BodyFactory


def _provisioning_state(resource: Any) -> str:
    props = resource.get("properties") if isinstance(resource, Mapping) else None
    return str(props.get("provisioningState", "")) if isinstance(props, Mapping) else ""


class AzureProvider:
    """VMs on Azure through the async management SDKs."""

    name = "azure"

    def __init__(
        self, settings: AzureSettings, *, polling_interval: float = 30.0, reconcile_interval: float = 10.0
    ) -> None:
        self._settings = settings
        self._polling_interval = polling_interval
        self._reconcile_interval = reconcile_interval
        self._clients: Clients | None = None

    def _c(self) -> Clients:
        if self._clients is None:
            if not self._settings.subscription_id:
                raise ProviderError("AzureNotConfigured", "Set VMJOURNAL_AZURE_SUBSCRIPTION_ID to create VMs on Azure.")
            try:
                self._clients = build_clients(self._settings, polling_interval=self._polling_interval)
            except ValueError as e:
                raise ProviderError("AzureMisconfigured", str(e)) from None
        return self._clients

    def _names(self, spec: VMSpec) -> bodies.Names:
        return bodies.Names.for_spec(spec, self._settings.subscription_id)

    async def aclose(self) -> None:
        if self._clients is not None:
            clients, self._clients = self._clients, None
            await clients.close()

    # -- provision ------------------------------------------------------------------------------

    async def provision(self, spec: VMSpec, job: JobContext) -> ProviderVM:
        try:
            return await self._provision(spec, job)
        except AzureError as e:
            raise to_provider_error(e) from e
        except ValueError as e:
            # A setting ARM would refuse (image syntax, script too large): say so before any PUT.
            raise ProviderError("InvalidConfiguration", str(e)) from e

    async def _provision(self, spec: VMSpec, job: JobContext) -> ProviderVM:
        s = self._settings
        c = self._c()
        n = self._names(spec)
        rg = n.resource_group
        done: list[str] = list(job.state.get("azure_done", []))
        if not done and not job.state.get("azure_token"):
            await self._preflight(spec)
            await job.save(step="azure:resource_group")
        if "resource_group" not in done:
            await c.resources.resource_groups.create_or_update(rg, bodies.resource_group(spec, s))
            done.append("resource_group")
            await job.save(azure_done=list(done), azure_resource_group=rg)
        net, cmp = c.network, c.compute

        async def vm_body() -> JSON:
            return bodies.vm(spec, s, n, await self._ssh_key(job))

        async def extension_body() -> JSON:
            # Minted only now, right before delivery: the plaintext token goes into this body alone.
            config = await job.issue_agent_config()
            return bodies.extension(spec, s, render_bootstrap_script(config))

        def const(body: JSON) -> BodyFactory:
            async def factory() -> JSON:
                return body

            return factory

        steps = [
            _Step(
                "nsg",
                lambda b, **kw: net.network_security_groups.begin_create_or_update(rg, n.nsg, b, **kw),
                lambda: net.network_security_groups.get(rg, n.nsg),
                const(bodies.nsg(spec, s)),
            ),
            _Step(
                "vnet",
                lambda b, **kw: net.virtual_networks.begin_create_or_update(rg, n.vnet, b, **kw),
                lambda: net.virtual_networks.get(rg, n.vnet),
                const(bodies.vnet(spec, s, n)),
            ),
            _Step(
                "public_ip",
                lambda b, **kw: net.public_ip_addresses.begin_create_or_update(rg, n.public_ip, b, **kw),
                lambda: net.public_ip_addresses.get(rg, n.public_ip),
                const(bodies.public_ip(spec, s)),
            ),
            _Step(
                "nic",
                lambda b, **kw: net.network_interfaces.begin_create_or_update(rg, n.nic, b, **kw),
                lambda: net.network_interfaces.get(rg, n.nic),
                const(bodies.nic(spec, s, n)),
            ),
            _Step(
                "vm",
                lambda b, **kw: cmp.virtual_machines.begin_create_or_update(rg, n.vm, b, **kw),
                lambda: cmp.virtual_machines.get(rg, n.vm),
                vm_body,
            ),
            _Step(
                "extension",
                lambda b, **kw: cmp.virtual_machine_extensions.begin_create_or_update(rg, n.vm, n.extension, b, **kw),
                lambda: cmp.virtual_machine_extensions.get(rg, n.vm, n.extension),
                extension_body,
            ),
        ]
        for step in steps:
            if step.name in done:
                continue
            await self._run_step(job, step)
            done.append(step.name)
            await job.save(azure_done=list(done), azure_op=None, azure_token=None)
        addresses = await self._addresses(n)
        # Kept for inspect(): the public IP is static, so a periodic check needs one GET, not three.
        await job.save(azure_addresses=addresses)
        return ProviderVM(state="running", addresses=addresses, details=self._details(spec, n))

    async def _run_step(self, job: JobContext, step: _Step) -> None:
        token = job.state.get("azure_token") if job.state.get("azure_op") == step.name else None
        if not token:
            await self._start(job, step)
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
                await job.save(azure_op=None, azure_token=None)
                raise
            log.warning("operation of step %s is gone (404); reconciling by GET", step.name)
        await self._reconcile(job, step)

    async def _start(self, job: JobContext, step: _Step) -> None:
        poller = await step.begin(await step.body())
        # Saved before waiting: a restart from here resumes this operation instead of a second PUT.
        await job.save(step=f"azure:{step.name}", azure_op=step.name, azure_token=poller.continuation_token())
        try:
            await poller.result()
        except HttpResponseError:
            # The operation ended (failed, or its resource vanished): a retry starts the step afresh.
            await job.save(azure_op=None, azure_token=None)
            raise

    async def _reconcile(self, job: JobContext, step: _Step) -> None:
        deadline = time.monotonic() + _RECONCILE_DEADLINE
        while True:
            try:
                resource = await step.get()
            except ResourceNotFoundError:
                await self._start(job, step)
                return
            state = _provisioning_state(resource)
            if state == "Succeeded":
                return
            if state in ("Failed", "Canceled"):
                # ARM retries a failed resource on an identical PUT; its errors then arrive as usual.
                await self._start(job, step)
                return
            if time.monotonic() > deadline:
                raise ProviderError("OperationTimedOut", f"Azure step {step.name} stayed {state!r} too long.")
            await asyncio.sleep(self._reconcile_interval)

    async def _ssh_key(self, job: JobContext) -> str:
        configured = self._settings.ssh_public_key.strip()
        if configured:
            path = Path(configured).expanduser()
            if not configured.startswith(("ssh-", "ecdsa-", "sk-")) and path.is_file():
                return path.read_text().strip()
            return configured
        saved = job.state.get("azure_ssh_key")
        if isinstance(saved, str) and saved:
            return saved
        # Azure wants a key or a password; with none configured nobody may log in: a key whose
        # private half is never kept. Saved so a re-sent PUT carries the same one.
        key = (
            Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
            + " vmjournal-no-login"
        )
        await job.save(azure_ssh_key=key)
        return key

    async def _preflight(self, spec: VMSpec) -> None:
        """Fail before creating anything when the size is not offered or the quota is short."""
        loc = self._settings.location
        size = self._settings.sku_for(spec.size)
        setting = f"VMJOURNAL_AZURE_SIZE_{spec.size.upper()}"
        compute = self._c().compute
        sku = None
        async for candidate in compute.resource_skus.list(filter=f"location eq '{loc}'"):
            if candidate.resource_type == "virtualMachines" and (candidate.name or "").lower() == size.lower():
                sku = candidate
                break
        if sku is None:
            raise ProviderError(
                "SkuNotAvailable",
                f"The VM size {size} (size '{spec.size}') is not offered in location '{loc}'. "
                f"Choose another size with {setting} or another location.",
                details=["NotOfferedInLocation"],
            )
        for restriction in sku.restrictions or []:
            if restriction.type == "Location":
                reason = str(restriction.reason_code or "Restricted")
                raise ProviderError(
                    "SkuNotAvailable",
                    f"The VM size {size} (size '{spec.size}') is not available to this subscription in "
                    f"location '{loc}' ({reason}). Choose another size with {setting} or another location.",
                    details=[reason],
                )
        vcpus = next((int(cap.value or 0) for cap in sku.capabilities or [] if cap.name == "vCPUs"), 0)
        usages = {(u.name.value or "").lower(): u async for u in compute.usage.list(loc)}
        for family, label in ((sku.family or "", f"{sku.family} vCPU"), ("cores", "Total Regional vCPUs")):
            usage = usages.get(family.lower())
            if usage is not None and usage.current_value + vcpus > usage.limit:
                raise ProviderError(
                    "OperationNotAllowed",
                    f"Creating a {size} ({vcpus} vCPUs) would exceed the {label} quota in '{loc}': "
                    f"{usage.current_value} of {usage.limit} in use. Request a quota increase or pick a "
                    "smaller size.",
                    details=["QuotaExceeded"],
                )

    async def _addresses(self, n: bodies.Names) -> dict[str, str]:
        c = self._c()
        addresses: dict[str, str] = {}
        pip = await c.network.public_ip_addresses.get(n.resource_group, n.public_ip)
        if pip.properties is not None and pip.properties.ip_address:
            addresses["public"] = pip.properties.ip_address
        nic = await c.network.network_interfaces.get(n.resource_group, n.nic)
        for cfg in (nic.properties.ip_configurations if nic.properties else None) or []:
            if cfg.properties is not None and cfg.properties.private_ip_address:
                addresses["private"] = cfg.properties.private_ip_address
                break
        return addresses

    def _details(self, spec: VMSpec, n: bodies.Names) -> dict[str, str]:
        return {
            "resource_group": n.resource_group,
            "azure_vm": n.vm,
            "location": self._settings.location,
            "vm_size": self._settings.sku_for(spec.size),
        }

    # -- inspect, deprovision, orphans ----------------------------------------------------------

    async def inspect(self, spec: VMSpec, state: Mapping[str, Any]) -> ProviderVM:
        n = self._names(spec)
        try:
            vm = await self._c().compute.virtual_machines.get(n.resource_group, n.vm)
            provisioning = _provisioning_state(vm)
            if provisioning == "Failed":
                error = ProviderError("VMProvisioningFailed", f"Azure reports VM {n.vm} as Failed.")
                return ProviderVM(state="failed", details=self._details(spec, n), error=error)
            if provisioning == "Deleting":
                return ProviderVM(state="gone", details=self._details(spec, n))
            saved = state.get("azure_addresses")
            addresses = dict(saved) if isinstance(saved, Mapping) and saved else await self._addresses(n)
            return ProviderVM(state="running", addresses=addresses, details=self._details(spec, n))
        except ResourceNotFoundError:
            return ProviderVM(state="gone")
        except AzureError as e:
            raise to_provider_error(e) from e

    async def deprovision(self, spec: VMSpec, job: JobContext) -> None:
        try:
            await self._deprovision(spec, job)
        except AzureError as e:
            raise to_provider_error(e) from e

    async def _deprovision(self, spec: VMSpec, job: JobContext) -> None:
        groups = self._c().resources.resource_groups
        rg = self._names(spec).resource_group
        token = job.state.get("azure_delete_token")
        if token:
            try:
                await (await groups.begin_delete(rg, continuation_token=token)).result()
                return
            except ValueError:
                log.warning("delete token of %s is unusable here; deleting again", rg)
            except HttpResponseError as e:
                if e.status_code != 404:
                    raise
                # The operation is gone (or the group is): a second DELETE tells which.
        try:
            poller = await groups.begin_delete(
                rg,
                force_deletion_types="Microsoft.Compute/virtualMachines,Microsoft.Compute/virtualMachineScaleSets",
            )
        except ResourceNotFoundError:
            return
        await job.save(step="azure:delete", azure_delete_token=poller.continuation_token())
        await poller.result()

    async def find_orphans(self, live_vm_ids: Collection[UUID], live_names: Collection[str]) -> list[Orphan]:
        """Resource groups tagged as ours that belong to no live VM record (they may still cost money)."""
        try:
            return await list_orphans(self._c().resources, live_vm_ids, live_names)
        except AzureError as e:
            raise to_provider_error(e) from e
