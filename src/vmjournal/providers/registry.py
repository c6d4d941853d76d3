"""Which providers a service offers, built from the settings in one place."""

from __future__ import annotations

from vmjournal.config import Settings
from vmjournal.providers.base import VMProvider
from vmjournal.providers.external import ExternalProvider
from vmjournal.providers.qemu.provider import QemuProvider


def build_provider(kind: str, settings: Settings) -> VMProvider:
    """One provider; raises ``ValueError`` for a kind this build does not know."""
    match kind:
        case "external":
            return ExternalProvider()
        case "qemu":
            return QemuProvider(settings)
        case "azure":
            from vmjournal.providers.azure.provider import AzureProvider  # the SDKs load only when used

            return AzureProvider(settings.azure)
        case _:
            raise ValueError(f"unknown provider {kind!r}")


def available_kinds(settings: Settings) -> list[str]:
    """Enrolled machines and local VMs always; Azure when a subscription is configured."""
    kinds = ["external", "qemu"]
    if settings.azure.subscription_id or settings.default_provider == "azure":
        kinds.append("azure")
    return kinds


def build_providers(settings: Settings) -> dict[str, VMProvider]:
    return {kind: build_provider(kind, settings) for kind in available_kinds(settings)}
