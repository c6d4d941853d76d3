"""The Azure provider: one resource group per VM, built step by step by the durable worker.

Steps: pre-flight (``preflight``), the resource group, then NSG, VNet with its subnet, Standard
static public IP, NIC, VM, and the CustomScript extension that installs the agent, each run by
the resumable step engine (``steps``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vmjournal.agent_bundle import render_bootstrap_script
from vmjournal.config import AzureSettings
from vmjournal.providers.azure import arm_bodies
from vmjournal.providers.azure.auth import Clients, build_clients
from vmjournal.providers.azure.errors import to_provider_error
from vmjournal.providers.azure.orphans import list_orphans
from vmjournal.providers.azure.preflight import check_capacity
from vmjournal.providers.azure.steps import JSON, Step, StepRunner, fixed_body, provisioning_state
from vmjournal.providers.base import JobContext, Orphan, ProviderError, ProviderKind, ProviderVM, VMSpec

log = logging.getLogger(__name__)
# The SDK logs every request and response (headers included) at INFO: noise in the service's
# log, and request bodies are one logging-config change away from leaking protectedSettings.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
logging.getLogger("azure.identity").setLevel(logging.WARNING)


class AzureProvider:
    """VMs on Azure through the async management SDKs."""

    name = ProviderKind.azure

    def __init__(
        self, settings: AzureSettings, *, polling_interval: float = 30.0, reconcile_interval: float = 10.0
    ) -> None:
        self._settings = settings
        self._polling_interval = polling_interval
        self._reconcile_interval = reconcile_interval
        self._clients: Clients | None = None

    def clients(self) -> Clients:
        """The ARM clients, built on first use; ``ProviderError`` when the settings cannot make them."""
        if self._clients is None:
            if not self._settings.subscription_id:
                raise ProviderError("AzureNotConfigured", "Set VMJOURNAL_AZURE_SUBSCRIPTION_ID to create VMs on Azure.")
            try:
                self._clients = build_clients(self._settings, polling_interval=self._polling_interval)
            except ValueError as e:
                raise ProviderError("AzureMisconfigured", str(e)) from None
        return self._clients

    def _names(self, spec: VMSpec) -> arm_bodies.ResourceNames:
        return arm_bodies.ResourceNames.for_spec(spec, self._settings.subscription_id)

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
        clients = self.clients()
        names = self._names(spec)
        done: list[str] = list(job.state.get("azure_done", []))
        if not done and not job.state.get("azure_token"):
            await check_capacity(clients.compute, self._settings, spec)
            await job.save(step="azure:resource_group")
        if "resource_group" not in done:
            body = arm_bodies.resource_group(spec, self._settings)
            await clients.resources.resource_groups.create_or_update(names.resource_group, body)
            done.append("resource_group")
            await job.save(azure_done=list(done), azure_resource_group=names.resource_group)
        steps = self._resource_steps(spec, job, clients, names)
        await StepRunner(job, reconcile_interval=self._reconcile_interval).run_all(steps, done)
        addresses = await self._addresses(names)
        # Kept for inspect(): the public IP is static, so a periodic check needs one GET, not three.
        await job.save(azure_addresses=addresses)
        return ProviderVM(state="running", addresses=addresses, details=self._details(spec, names))

    def _resource_steps(
        self, spec: VMSpec, job: JobContext, clients: Clients, names: arm_bodies.ResourceNames
    ) -> list[Step]:
        """The resources inside the group, in the order their references need."""
        settings, group = self._settings, names.resource_group
        network, compute = clients.network, clients.compute

        async def vm_body() -> JSON:
            return arm_bodies.vm(spec, settings, names, await self._ssh_key(job))

        async def extension_body() -> JSON:
            # Minted only now, right before delivery: the plaintext token goes into this body alone.
            config = await job.issue_agent_config()
            return arm_bodies.extension(spec, settings, render_bootstrap_script(config))

        return [
            Step(
                "nsg", network.network_security_groups, (group, names.nsg), fixed_body(arm_bodies.nsg(spec, settings))
            ),
            Step(
                "vnet",
                network.virtual_networks,
                (group, names.vnet),
                fixed_body(arm_bodies.vnet(spec, settings, names)),
            ),
            Step(
                "public_ip",
                network.public_ip_addresses,
                (group, names.public_ip),
                fixed_body(arm_bodies.public_ip(spec, settings)),
            ),
            Step(
                "nic", network.network_interfaces, (group, names.nic), fixed_body(arm_bodies.nic(spec, settings, names))
            ),
            Step("vm", compute.virtual_machines, (group, names.vm), vm_body),
            Step("extension", compute.virtual_machine_extensions, (group, names.vm, names.extension), extension_body),
        ]

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

    async def _addresses(self, names: arm_bodies.ResourceNames) -> dict[str, str]:
        network = self.clients().network
        addresses: dict[str, str] = {}
        public_ip = await network.public_ip_addresses.get(names.resource_group, names.public_ip)
        if public_ip.properties is not None and public_ip.properties.ip_address:
            addresses["public"] = public_ip.properties.ip_address
        nic = await network.network_interfaces.get(names.resource_group, names.nic)
        for ip_config in (nic.properties.ip_configurations if nic.properties else None) or []:
            if ip_config.properties is not None and ip_config.properties.private_ip_address:
                addresses["private"] = ip_config.properties.private_ip_address
                break
        return addresses

    def _details(self, spec: VMSpec, names: arm_bodies.ResourceNames) -> dict[str, str]:
        return {
            "resource_group": names.resource_group,
            "azure_vm": names.vm,
            "location": self._settings.location,
            "vm_size": self._settings.sku_for(spec.size),
        }

    # -- inspect, deprovision, orphans ----------------------------------------------------------

    async def inspect(self, spec: VMSpec, state: Mapping[str, Any]) -> ProviderVM:
        names = self._names(spec)
        try:
            vm = await self.clients().compute.virtual_machines.get(names.resource_group, names.vm)
            provisioning = provisioning_state(vm)
            if provisioning == "Failed":
                error = ProviderError("VMProvisioningFailed", f"Azure reports VM {names.vm} as Failed.")
                return ProviderVM(state="failed", details=self._details(spec, names), error=error)
            if provisioning == "Deleting":
                return ProviderVM(state="gone", details=self._details(spec, names))
            saved = state.get("azure_addresses")
            addresses = dict(saved) if isinstance(saved, Mapping) and saved else await self._addresses(names)
            return ProviderVM(state="running", addresses=addresses, details=self._details(spec, names))
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
        groups = self.clients().resources.resource_groups
        group = self._names(spec).resource_group
        token = job.state.get("azure_delete_token")
        if token:
            try:
                await (await groups.begin_delete(group, continuation_token=token)).result()
                return
            except ValueError:
                log.warning("delete token of %s is unusable here; deleting again", group)
            except HttpResponseError as e:
                if e.status_code != 404:
                    raise
                # The operation is gone (or the group is): a second DELETE tells which.
        try:
            poller = await groups.begin_delete(
                group,
                force_deletion_types="Microsoft.Compute/virtualMachines,Microsoft.Compute/virtualMachineScaleSets",
            )
        except ResourceNotFoundError:
            return
        await job.save(step="azure:delete", azure_delete_token=poller.continuation_token())
        await poller.result()

    async def find_orphans(self, live_vm_ids: Collection[UUID], live_names: Collection[str]) -> list[Orphan]:
        """Resource groups tagged as ours that belong to no live VM record (they may still cost money)."""
        try:
            return await list_orphans(self.clients().resources, live_vm_ids, live_names)
        except AzureError as e:
            raise to_provider_error(e) from e
