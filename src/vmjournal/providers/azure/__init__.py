"""The Azure provider (resource group per VM, async management SDKs)."""

from vmjournal.providers.azure.provider import AzureProvider

__all__ = ["AzureProvider"]
