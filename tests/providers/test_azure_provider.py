"""The Azure provider driven directly against the fake ARM (the real SDK over HTTP).

The service-level tests (test_azure.py) show the same paths through the API; these cover
what is awkward to reach from outside: a token from another azure-core, the orphan list, and
the fake's own refusal of wrongly shaped bodies.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from fake_arm import FakeARM, kind_of
from support.azure import ARM_TOKEN, azure_settings, extension_script, running_fake_arm, unpack
from support.provider import MemoryJob

from vmjournal.providers.azure.provider import AzureProvider
from vmjournal.providers.base import ProviderError, VMSpec

NETWORK_AND_VM = [
    "resourcegroups",
    "networksecuritygroups",
    "virtualnetworks",
    "publicipaddresses",
    "networkinterfaces",
    "virtualmachines",
    "extensions",
]


def new_spec(name: str = "web1", size: str = "small") -> VMSpec:
    return VMSpec(vm_id=uuid.uuid4(), name=name, size=size)


@pytest.fixture
def fake_arm() -> Iterator[FakeARM]:
    with running_fake_arm() as fake:
        yield fake


@pytest.fixture
async def provider(fake_arm: FakeARM) -> AsyncIterator[AzureProvider]:
    p = AzureProvider(azure_settings(fake_arm), polling_interval=1, reconcile_interval=0.2)
    yield p
    await p.aclose()


def puts(fake: FakeARM) -> list[str]:
    return [kind_of(r.path) for r in fake.requests if r.method == "PUT"]


class TestProvision:
    async def test_creates_every_resource_in_order(self, fake_arm: FakeARM, provider: AzureProvider) -> None:
        spec = new_spec()
        job = MemoryJob(spec.name)
        vm = await provider.provision(spec, job)
        assert vm.state == "running"
        assert vm.addresses["private"] == "10.0.0.4"
        assert vm.addresses["public"].startswith("20.50.")
        assert vm.details["resource_group"] == f"{spec.resource_name}-rg"
        assert puts(fake_arm) == NETWORK_AND_VM
        assert len(job.tokens) == 1
        ext = fake_arm.calls("PUT", "extensions")[0].body
        assert f"token = {job.tokens[0]}" in unpack(extension_script(ext))["agent.conf"].decode()
        assert job.tokens[0] not in str(ext["properties"]["settings"])
        # Every resource can be found again by its tags.
        for r in fake_arm.requests:
            if r.method == "PUT":
                assert r.body["tags"]["managed-by"] == "vmjournal"
                assert r.body["tags"]["vmjournal-vm"] == "web1"

    async def test_no_inbound_rule_unless_ssh_range(self, fake_arm: FakeARM) -> None:
        p = AzureProvider(azure_settings(fake_arm, ssh_source_range="203.0.113.0/24"))
        try:
            await p.provision(new_spec(), MemoryJob("a"))
        finally:
            await p.aclose()
        rules = fake_arm.calls("PUT", "networksecuritygroups")[0].body["properties"]["securityRules"]
        assert [r["properties"]["sourceAddressPrefix"] for r in rules] == ["203.0.113.0/24"]

    async def test_vm_is_ssh_key_only(self, fake_arm: FakeARM, provider: AzureProvider) -> None:
        await provider.provision(new_spec(), MemoryJob("a"))
        body = fake_arm.calls("PUT", "virtualmachines")[0].body
        os_profile = body["properties"]["osProfile"]
        assert "adminPassword" not in os_profile
        assert os_profile["linuxConfiguration"]["disablePasswordAuthentication"] is True
        nsg = fake_arm.calls("PUT", "networksecuritygroups")[0].body
        assert nsg["properties"]["securityRules"] == []


class TestInspect:
    async def test_running_vm_costs_one_get(self, fake_arm: FakeARM, provider: AzureProvider) -> None:
        spec = new_spec()
        job = MemoryJob(spec.name)
        created = await provider.provision(spec, job)
        before = len(fake_arm.requests)
        seen = await provider.inspect(spec, job.state)
        assert (seen.state, seen.addresses) == ("running", created.addresses)
        assert [kind_of(r.path) for r in fake_arm.requests[before:]] == ["virtualmachines"]

    async def test_vm_removed_outside_is_gone(self, fake_arm: FakeARM, provider: AzureProvider) -> None:
        assert (await provider.inspect(new_spec(), {})).state == "gone"


class TestPreflight:
    async def test_restricted_sku_fails_before_any_put(self, fake_arm: FakeARM, provider: AzureProvider) -> None:
        fake_arm.skus[0].restricted = True
        with pytest.raises(ProviderError) as info:
            await provider.provision(new_spec(), MemoryJob("x"))
        assert info.value.code == "SkuNotAvailable"
        assert "Standard_B2ats_v2" in info.value.message and "VMJOURNAL_AZURE_SIZE_SMALL" in info.value.message
        assert puts(fake_arm) == []

    async def test_quota_short_fails_before_any_put(self, fake_arm: FakeARM, provider: AzureProvider) -> None:
        fake_arm.usage["cores"] = (19, 20)
        with pytest.raises(ProviderError) as info:
            await provider.provision(new_spec(), MemoryJob("x"))
        assert (info.value.code, info.value.details) == ("OperationNotAllowed", ["QuotaExceeded"])
        assert "19 of 20" in info.value.message
        assert puts(fake_arm) == []


class TestResume:
    async def test_unusable_token_is_reconciled_by_get(self, fake_arm: FakeARM, provider: AzureProvider) -> None:
        spec = new_spec()
        job = MemoryJob(spec.name)
        fake_arm.fail_operation("virtualMachines", code="InternalServerError", message="boom")
        with pytest.raises(ProviderError):
            await provider.provision(spec, job)
        # As if an older azure-core had written the token: the SDK refuses it with ValueError.
        await job.save(azure_op="vm", azure_token="gASVrAAAAAAAAACMF2F6dXJlLmNvcmUucGlwZWxpbmUu")
        vm = await provider.provision(spec, job)
        assert vm.state == "running"
        vm_calls = [r.method for r in fake_arm.requests if kind_of(r.path) == "virtualmachines"]
        # PUT (failed), then GET finds it Failed, so one identical PUT to let ARM retry.
        assert vm_calls[:1] == ["PUT"] and "GET" in vm_calls and vm_calls.count("PUT") == 2


class TestDelete:
    async def test_deletes_the_resource_group(self, fake_arm: FakeARM, provider: AzureProvider) -> None:
        spec = new_spec()
        await provider.provision(spec, MemoryJob(spec.name))
        fake_arm.polls_per_operation = 1
        job = MemoryJob(spec.name)
        await provider.deprovision(spec, job)
        assert fake_arm.resource_groups() == []
        assert job.state["azure_delete_token"]
        # Already gone is not an error.
        await provider.deprovision(spec, MemoryJob(spec.name))
        assert (await provider.inspect(spec, {})).state == "gone"

    async def test_interrupted_delete_resumes_from_token(self, fake_arm: FakeARM, provider: AzureProvider) -> None:
        spec = new_spec()
        await provider.provision(spec, MemoryJob(spec.name))
        job = MemoryJob(spec.name)
        fake_arm.hold("resourceGroups")
        first = AzureProvider(azure_settings(fake_arm))
        task = asyncio.create_task(first.deprovision(spec, job))
        while fake_arm.polled("resourceGroups") < 1:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await first.aclose()
        fake_arm.release("resourceGroups")
        await provider.deprovision(spec, job)
        assert fake_arm.resource_groups() == []
        assert len([r for r in fake_arm.requests if r.method == "DELETE"]) == 1


class TestOrphans:
    async def test_lists_groups_without_live_vm(self, fake_arm: FakeARM, provider: AzureProvider) -> None:
        kept, orphaned = new_spec("kept"), new_spec("orphaned")
        await provider.provision(kept, MemoryJob("kept"))
        await provider.provision(orphaned, MemoryJob("orphaned"))
        found = await provider.find_orphans([kept.vm_id], ["kept"])
        assert [(o.vm_name, o.resource_group) for o in found] == [("orphaned", f"{orphaned.resource_name}-rg")]


class TestCredentials:
    async def test_wrong_token_is_reported_without_the_token(self, fake_arm: FakeARM) -> None:
        wrong = "not-the-token-" + "y" * 20
        p = AzureProvider(azure_settings(fake_arm, static_token=wrong))
        try:
            with pytest.raises(ProviderError) as info:
                await p.provision(new_spec(), MemoryJob("x"))
        finally:
            await p.aclose()
        assert info.value.code == "AuthenticationFailed" and not info.value.retryable
        assert wrong not in str(info.value) and ARM_TOKEN not in str(info.value)

    @pytest.mark.parametrize("endpoint", ["http://arm.example.com", "ftp://127.0.0.1"])
    async def test_plain_http_only_on_loopback(self, fake_arm: FakeARM, endpoint: str) -> None:
        p = AzureProvider(azure_settings(fake_arm, arm_endpoint=endpoint))
        with pytest.raises(ProviderError) as info:
            await p.provision(new_spec(), MemoryJob("x"))
        assert info.value.code == "AzureMisconfigured"
        assert fake_arm.requests == []


class TestFakeRefusesWrongShapes:
    async def test_snake_case_body_is_refused(self, fake_arm: FakeARM, provider: AzureProvider) -> None:
        spec = new_spec()
        await provider.provision(spec, MemoryJob("x"))
        compute = provider.clients().compute
        # A raw JSON body, which the SDK sends as it is (its type hints list only models and streams).
        snake_case: Any = {"location": "westeurope", "hardware_profile": {"vm_size": "Standard_B2ats_v2"}}
        with pytest.raises(HttpResponseError) as info:
            await compute.virtual_machines.begin_create_or_update(
                f"{spec.resource_name}-rg",
                "vm2",
                snake_case,
            )
        assert info.value.status_code == 400 and info.value.error is not None
        assert info.value.error.code == "InvalidRequestContent"
