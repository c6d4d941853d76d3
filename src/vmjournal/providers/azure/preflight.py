"""Checks before anything is created: the size is offered in the location, and the quota has room.

ARM would refuse either at the VM's PUT, after the network resources exist; asking first
fails the job with a message that names the setting to change, and leaves nothing behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmjournal.config import AzureSettings
from vmjournal.providers.base import ProviderError, VMSpec

if TYPE_CHECKING:
    from azure.mgmt.compute.aio import ComputeManagementClient
    from azure.mgmt.compute.models import ResourceSku


async def check_capacity(compute: ComputeManagementClient, settings: AzureSettings, spec: VMSpec) -> None:
    """Raise ``ProviderError`` when the VM size is not offered to us in the location or the quota is short."""
    sku = await offered_sku(compute, settings, spec)
    await check_quota(compute, settings, sku)


async def offered_sku(compute: ComputeManagementClient, settings: AzureSettings, spec: VMSpec) -> ResourceSku:
    """The VM size ``spec.size`` maps to, as offered in the location without restrictions."""
    location = settings.location
    size = settings.sku_for(spec.size)
    setting = f"VMJOURNAL_AZURE_SIZE_{spec.size.upper()}"
    found: ResourceSku | None = None
    async for candidate in compute.resource_skus.list(filter=f"location eq '{location}'"):
        if candidate.resource_type == "virtualMachines" and (candidate.name or "").lower() == size.lower():
            found = candidate
            break
    if found is None:
        raise ProviderError(
            "SkuNotAvailable",
            f"The VM size {size} (size '{spec.size}') is not offered in location '{location}'. "
            f"Choose another size with {setting} or another location.",
            details=["NotOfferedInLocation"],
        )
    for restriction in found.restrictions or []:
        if restriction.type == "Location":
            reason = str(restriction.reason_code or "Restricted")
            raise ProviderError(
                "SkuNotAvailable",
                f"The VM size {size} (size '{spec.size}') is not available to this subscription in "
                f"location '{location}' ({reason}). Choose another size with {setting} or another location.",
                details=[reason],
            )
    return found


async def check_quota(compute: ComputeManagementClient, settings: AzureSettings, sku: ResourceSku) -> None:
    """Room for one more VM of ``sku`` in both its family's vCPU quota and the regional total."""
    location = settings.location
    vcpus = next((int(capability.value or 0) for capability in sku.capabilities or [] if capability.name == "vCPUs"), 0)
    usages = {(usage.name.value or "").lower(): usage async for usage in compute.usage.list(location)}
    for quota, label in ((sku.family or "", f"{sku.family} vCPU"), ("cores", "Total Regional vCPUs")):
        usage = usages.get(quota.lower())
        if usage is not None and usage.current_value + vcpus > usage.limit:
            raise ProviderError(
                "OperationNotAllowed",
                f"Creating a {sku.name} ({vcpus} vCPUs) would exceed the {label} quota in '{location}': "
                f"{usage.current_value} of {usage.limit} in use. Request a quota increase or pick a "
                "smaller size.",
                details=["QuotaExceeded"],
            )
