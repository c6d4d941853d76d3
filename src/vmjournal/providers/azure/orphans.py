"""Finding Azure resources that are ours but belong to no VM the service still knows.

Every resource group the provider creates is tagged ``managed-by: vmjournal`` with the VM's
id and name. A group whose VM record is gone (deleted from the database, a delete that never
finished, a test run against a real subscription) keeps costing money until someone removes it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING
from uuid import UUID

from vmjournal.providers.azure import arm_bodies
from vmjournal.providers.base import Orphan

if TYPE_CHECKING:
    from azure.mgmt.resource.resources.aio import ResourceManagementClient


async def list_orphans(
    client: ResourceManagementClient, live_vm_ids: Collection[UUID], live_names: Collection[str]
) -> list[Orphan]:
    """Our resource groups whose VM (by the id tag, else by the name tag) is not live."""
    ids = {str(i) for i in live_vm_ids}
    names = set(live_names)
    tag_filter = f"tagName eq '{arm_bodies.TAG_MANAGED_BY}' and tagValue eq '{arm_bodies.MANAGED_BY}'"
    orphans: list[Orphan] = []
    async for group in client.resource_groups.list(filter=tag_filter):
        tags = group.tags or {}
        if tags.get(arm_bodies.TAG_MANAGED_BY) != arm_bodies.MANAGED_BY:
            continue
        state = (group.properties.provisioning_state if group.properties else None) or ""
        if state == "Deleting":
            continue
        vm_id, vm_name = tags.get(arm_bodies.TAG_VM_ID, ""), tags.get(arm_bodies.TAG_VM_NAME, "")
        if (vm_id in ids) if vm_id else (vm_name in names):
            continue
        orphans.append(Orphan(group.name or "", vm_name, vm_id, group.location, state))
    return sorted(orphans, key=lambda o: o.resource_group)
