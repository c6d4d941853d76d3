"""Cloud resources of ours that no VM record accounts for: they may still cost money."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from vmjournal.errors import AppError, Conflict
from vmjournal.providers.base import ListsOrphans, ProviderError, ProviderKind, VMProvider
from vmjournal.vms import store
from vmjournal.vms.schemas import OrphanPublic, OrphansPublic


class AzureUnavailable(AppError):
    """Azure Resource Manager refused or did not answer."""

    status_code = 502
    default_code = "azure_unavailable"


async def list_azure_orphans(session: AsyncSession, providers: Mapping[str, VMProvider]) -> OrphansPublic:
    """Resource groups the Azure provider tagged as ours whose VM is deleted or unknown here.

    Raises ``Conflict`` when this service has no Azure provider, ``AzureUnavailable`` when ARM
    does not answer.
    """
    provider = providers.get(ProviderKind.azure)
    if not isinstance(provider, ListsOrphans):
        raise Conflict(
            "the azure provider is not configured (VMJOURNAL_AZURE_SUBSCRIPTION_ID)", code="azure_not_configured"
        )
    live = await store.list_vms(session)
    try:
        found = await provider.find_orphans([vm.id for vm in live], [vm.name for vm in live])
    except ProviderError as e:
        raise AzureUnavailable(e.message, code=e.code) from e
    items = [OrphanPublic(**vars(orphan)) for orphan in found]
    return OrphansPublic(orphans=items, count=len(items))
