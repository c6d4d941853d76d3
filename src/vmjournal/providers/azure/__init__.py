"""The Azure provider (a resource group per VM, async management SDKs).

Import ``provider.AzureProvider`` where it is needed: the SDKs take seconds to import, and a
service without Azure should not pay for them.
"""
