"""Which providers a service offers, built from the settings in one place."""

from __future__ import annotations

from vmjournal.config import Settings
from vmjournal.providers.base import ProviderKind, VMProvider
from vmjournal.providers.external import ExternalProvider
from vmjournal.providers.qemu.provider import QemuProvider


def build_provider(kind: ProviderKind, settings: Settings) -> VMProvider:
    """One provider of a kind this build ships."""
    match kind:
        case ProviderKind.external:
            return ExternalProvider()
        case ProviderKind.qemu:
            return QemuProvider(settings)
        case ProviderKind.azure:
            from vmjournal.providers.azure.provider import AzureProvider  # the SDKs load only when used

            return AzureProvider(settings.azure)


def available_kinds(settings: Settings) -> list[ProviderKind]:
    """Enrolled machines and local VMs always; Azure when a subscription is configured."""
    kinds = [ProviderKind.external, ProviderKind.qemu]
    if settings.azure.subscription_id or settings.default_provider == ProviderKind.azure:
        kinds.append(ProviderKind.azure)
    return kinds


def build_providers(settings: Settings) -> dict[str, VMProvider]:
    """Keyed by the kind's string, the value ``vm.provider`` holds."""
    return {kind: build_provider(kind, settings) for kind in available_kinds(settings)}
