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
    """Enrolled machines always work; the default provider is offered when it can be built."""
    kinds = ["external"]
    for kind in ("qemu", "azure"):
        if kind == settings.default_provider or (kind == "azure" and settings.azure.subscription_id):
            kinds.append(kind)
    return kinds


def build_providers(settings: Settings) -> dict[str, VMProvider]:
    providers: dict[str, VMProvider] = {}
    for kind in available_kinds(settings):
        try:
            providers[kind] = build_provider(kind, settings)
        except ValueError:
            continue
    return providers
