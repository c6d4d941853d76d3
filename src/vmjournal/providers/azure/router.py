"""``GET /azure/orphans``: Azure resources of ours that no live VM record accounts for."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from vmjournal.deps import ApiKey, ProvidersDep, SessionDep
from vmjournal.errors import AppError, Conflict, Unauthorized, responses
from vmjournal.providers.azure.orphans import Orphan
from vmjournal.providers.base import ProviderError
from vmjournal.vms import store as vms_store


class AzureUnavailable(AppError):
    """Azure Resource Manager refused or did not answer."""

    status_code = 502


class FindsOrphans(Protocol):
    async def find_orphans(self, live_vm_ids: Collection[UUID], live_names: Collection[str]) -> list[Orphan]: ...


class OrphanPublic(BaseModel):
    resource_group: str = Field(description="Delete it (az group delete -n NAME) if nothing else uses it.")
    vm_name: str = Field(description="The VM it was created for (tag vmjournal-vm).")
    vm_id: str
    location: str
    provisioning_state: str


class OrphansPublic(BaseModel):
    orphans: list[OrphanPublic]
    count: int


router = APIRouter(prefix="/azure", tags=["azure"], dependencies=[ApiKey])


@router.get("/orphans", response_model=OrphansPublic, responses=responses(Conflict, AzureUnavailable, Unauthorized))
async def list_orphans(session: SessionDep, providers: ProvidersDep) -> OrphansPublic:
    """Resource groups tagged `managed-by: vmjournal` whose VM is deleted or unknown here: they may still
    cost money."""
    provider = providers.get("azure")
    if provider is None or not hasattr(provider, "find_orphans"):
        raise Conflict(
            "the azure provider is not configured (VMJOURNAL_AZURE_SUBSCRIPTION_ID)", code="azure_not_configured"
        )
    finder: FindsOrphans = provider  # type: ignore[assignment]
    live = await vms_store.list_vms(session)
    try:
        found = await finder.find_orphans([vm.id for vm in live], [vm.name for vm in live])
    except ProviderError as e:
        raise AzureUnavailable(e.message, code=e.code) from e
    items = [OrphanPublic(**vars(o)) for o in found]
    return OrphansPublic(orphans=items, count=len(items))
