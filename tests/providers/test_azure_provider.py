"""The Azure provider driven directly against the fake ARM (the real SDK over HTTP)."""

from __future__ import annotations

import uuid

import pytest

from tests.fake_arm import FakeARM
from tests.fake_arm.server import kind_of
from tests.providers.azure_support import MemoryJob, azure_settings, extension_script, fake_arm  # noqa: F401
from vmjournal.providers.azure import AzureProvider
from vmjournal.providers.base import ProviderError, VMSpec


def spec(name: str = "web1", size: str = "small") -> VMSpec:
    return VMSpec(vm_id=uuid.uuid4(), name=name, size=size)


async def test_create(fake_arm: FakeARM) -> None:
    provider = AzureProvider(azure_settings(fake_arm))
    s = spec()
    job = MemoryJob(s.name)
    try:
        vm = await provider.provision(s, job)
    finally:
        await provider.aclose()
    assert vm.state == "running"
    assert vm.addresses["private"] == "10.0.0.4"
    assert vm.addresses["public"].startswith("20.50.")
    puts = [kind_of(r.path) for r in fake_arm.requests if r.method == "PUT"]
    assert puts == ["resourcegroups", "networksecuritygroups", "virtualnetworks", "publicipaddresses",
                    "networkinterfaces", "virtualmachines", "extensions"]
    t0 = fake_arm.requests[0].at
    print([(r.method, kind_of(r.path) or r.path[-30:], round(r.at - t0, 2)) for r in fake_arm.requests])
    ext = fake_arm.calls("PUT", "extensions")[0].body
    assert job.tokens[0] in extension_script(ext)
    assert job.tokens[0] not in str(ext["properties"]["settings"])


async def test_preflight_sku(fake_arm: FakeARM) -> None:
    fake_arm.skus[0].restricted = True
    provider = AzureProvider(azure_settings(fake_arm))
    with pytest.raises(ProviderError) as info:
        await provider.provision(spec(), MemoryJob("x"))
    await provider.aclose()
    assert info.value.code == "SkuNotAvailable"
    assert not [r for r in fake_arm.requests if r.method == "PUT"]
