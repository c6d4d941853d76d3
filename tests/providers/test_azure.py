"""The whole service with VMJOURNAL_PROVIDER=azure, against a fake ARM on loopback.

The service runs as its own process (the real app, the real Azure SDK, the durable worker on
the embedded PostgreSQL); the fake ARM runs in this process and records every request, so the
tests assert on what reached "Azure" as well as on what users see through the API.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from fake_arm import FakeARM
from support.api import wait_for_status_sync, wait_until
from support.azure import ARM_TOKEN, SUBSCRIPTION, extension_script, running_fake_arm, unpack
from support.service import LiveService

from vmjournal.agent_bundle import agent_files


@pytest.fixture
def fake_arm() -> Iterator[FakeARM]:
    with running_fake_arm() as fake:
        yield fake


@pytest.fixture
def azure_service(fake_arm: FakeARM, live_service: Callable[..., LiveService]) -> Callable[[], LiveService]:
    """Start (or restart) the service with the Azure provider pointed at the fake."""

    def start() -> LiveService:
        return live_service(
            VMJOURNAL_PROVIDER="azure",
            VMJOURNAL_AZURE_SUBSCRIPTION_ID=SUBSCRIPTION,
            VMJOURNAL_AZURE_LOCATION=fake_arm.location,
            VMJOURNAL_AZURE_ARM_ENDPOINT=fake_arm.endpoint,
            VMJOURNAL_AZURE_STATIC_TOKEN=ARM_TOKEN,
        )

    return start


def create(svc: LiveService, name: str, size: str = "small") -> None:
    response = httpx.post(f"{svc.url}/vm/{name}/{size}", timeout=10)
    assert response.status_code == 202, response.text


class TestCreate:
    def test_create_delivers_the_agent_in_protected_settings(
        self, fake_arm: FakeARM, azure_service: Callable[[], LiveService]
    ) -> None:
        svc = azure_service()
        create(svc, "web-1")
        vm = wait_for_status_sync(svc, "web-1", "running")
        assert vm["provider"] == "azure" and vm["error"] is None
        assert vm["addresses"]["private"] == "10.0.0.4"
        assert vm["details"]["resource_group"].endswith("-rg")

        (put,) = fake_arm.calls("PUT", "extensions")
        # The script installs exactly the agent files and unit the local provider installs.
        files = unpack(extension_script(put.body))
        config = files.pop("agent.conf").decode()
        assert files == agent_files()
        match = re.search(r"^token = (\S+)$", config, re.M)
        assert match, config
        token = match.group(1)
        assert "name = web-1" in config and f"url = {svc.url}" in config
        # The token is the VM's live ingest token, and it travels nowhere but protectedSettings.
        entry = {"__CURSOR": "s=1;i=1", "__REALTIME_TIMESTAMP": "1764000000000000", "MESSAGE": "hello"}
        ingest = httpx.post(f"{svc.url}/vm/web-1/boot", json=[entry], headers={"Authorization": f"Bearer {token}"})
        assert ingest.status_code == 200, ingest.text
        public = {k: v for k, v in put.body["properties"].items() if k != "protectedSettings"}
        for r in fake_arm.requests:
            assert token not in repr(r.body if r is not put else public)
        assert token not in svc.log() and ARM_TOKEN not in svc.log()
        assert token not in httpx.get(f"{svc.url}/vm/web-1").text


class TestFailures:
    def test_arm_errors_reach_the_vm_record(self, fake_arm: FakeARM, azure_service: Callable[[], LiveService]) -> None:
        sku = (
            "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: "
            "Standard_B2ats_v2' is currently not available in location 'westeurope'."
        )
        quota = (
            "Operation could not be completed as it results in exceeding approved standardBasv2Family "
            "Cores quota. Current Limit: 10, Current Usage: 10, Additional Required: 2."
        )
        extension = (
            "VM has reported a failure when processing extension 'vmjournal-agent'. Error message: "
            '"Enable failed: failed to execute command: command terminated with exit status=1".'
        )
        svc = azure_service()
        # Both refusals arrive as 409 on the VM's PUT; the extension's failure ends its operation
        # (the poll itself answers 200). One VM at a time, so each meets its own failure.
        fake_arm.fail_next("PUT", "virtualMachines", status=409, code="SkuNotAvailable", message=sku)
        create(svc, "vm-sku")
        seen = {"vm-sku": wait_for_status_sync(svc, "vm-sku", "failed")}
        fake_arm.fail_next("PUT", "virtualMachines", status=409, code="OperationNotAllowed", message=quota)
        create(svc, "vm-quota")
        seen["vm-quota"] = wait_for_status_sync(svc, "vm-quota", "failed")
        fake_arm.fail_operation("extensions", code="VMExtensionProvisioningError", message=extension)
        create(svc, "vm-ext")
        seen["vm-ext"] = wait_for_status_sync(svc, "vm-ext", "failed")

        # Pre-flight: a quota without room fails before anything is created, details[] included.
        fake_arm.usage["cores"] = (20, 20)
        create(svc, "vm-full")
        full = wait_for_status_sync(svc, "vm-full", "failed")["error"]
        assert (full["code"], full["details"]) == ("OperationNotAllowed", ["QuotaExceeded"])
        assert "Total Regional vCPUs quota in 'westeurope': 20 of 20 in use" in full["message"]
        assert len(fake_arm.resource_groups()) == 3

        errors = {name: (vm["error"]["code"], vm["error"]["message"]) for name, vm in seen.items()}
        assert errors == {
            "vm-sku": ("SkuNotAvailable", sku),
            "vm-quota": ("OperationNotAllowed", quota),
            "vm-ext": ("VMExtensionProvisioningError", extension),
        }
        # Neither is retried: the same request would fail the same way.
        assert len(fake_arm.calls("PUT", "virtualmachines")) == 3
        assert len(fake_arm.calls("PUT", "extensions")) == 1

    def test_throttling_is_retried_after_retry_after(
        self, fake_arm: FakeARM, azure_service: Callable[[], LiveService]
    ) -> None:
        fake_arm.fail_next(
            "PUT",
            "publicIPAddresses",
            status=429,
            code="TooManyRequests",
            message="The request is being throttled.",
            headers={"Retry-After": "2"},
        )
        svc = azure_service()
        create(svc, "web-1")
        vm = wait_for_status_sync(svc, "web-1", "running")
        assert vm["error"] is None
        first, second = fake_arm.calls("PUT", "publicipaddresses")
        assert (first.status, second.status) == (429, 201)
        assert second.at - first.at >= 1.9


class TestRestart:
    def test_sigkill_during_vm_operation_resumes_from_token(
        self, fake_arm: FakeARM, azure_service: Callable[[], LiveService]
    ) -> None:
        fake_arm.hold("virtualMachines")
        first = azure_service()
        create(first, "web-1")
        # Polls happen only after the token was committed.
        wait_until(lambda: fake_arm.polled("virtualMachines") >= 1, 30, "the VM operation to be polled", 0.05)
        assert httpx.get(f"{first.url}/vm/web-1").json()["step"] == "azure:vm"
        first.kill()
        polled = fake_arm.polled("virtualMachines")

        second = azure_service()
        wait_until(lambda: fake_arm.polled("virtualMachines") > polled, 60, "the restarted service to poll", 0.05)
        fake_arm.release("virtualMachines")
        vm = wait_for_status_sync(second, "web-1", "running")
        assert vm["error"] is None
        assert len(fake_arm.calls("PUT", "virtualmachines")) == 1
        assert len(fake_arm.calls("PUT", "extensions")) == 1

    def test_token_that_no_longer_works_is_reconciled_by_get(
        self, fake_arm: FakeARM, azure_service: Callable[[], LiveService]
    ) -> None:
        fake_arm.hold("virtualMachines")
        first = azure_service()
        create(first, "web-1")
        wait_until(lambda: fake_arm.polled("virtualMachines") >= 1, 30, "the VM operation to be polled", 0.05)
        first.kill()
        # Meanwhile the VM finished and ARM forgot the operation: its URL now answers 404.
        fake_arm.expire_operations()
        fake_arm.finish_expired()

        second = azure_service()
        vm = wait_for_status_sync(second, "web-1", "running")
        assert vm["error"] is None
        assert len(fake_arm.calls("PUT", "virtualmachines")) == 1
        assert [r for r in fake_arm.requests if "/operations/" in r.path and r.status == 404]
        assert fake_arm.calls("GET", "virtualmachines")


class TestDeleteAndOrphans:
    def test_delete_removes_the_resource_group(
        self, fake_arm: FakeARM, azure_service: Callable[[], LiveService]
    ) -> None:
        svc = azure_service()
        create(svc, "web-1")
        rg = wait_for_status_sync(svc, "web-1", "running")["details"]["resource_group"]
        assert fake_arm.resource_groups() == [rg]
        stray = {"managed-by": "vmjournal", "vmjournal-vm": "old-1", "vmjournal-vm-id": str(uuid.uuid4())}
        fake_arm.add_resource_group("vmj-0123456789ab-rg", stray)
        fake_arm.add_resource_group("someone-elses-rg", {})
        orphans = httpx.get(f"{svc.url}/azure/orphans").json()
        assert [(o["resource_group"], o["vm_name"]) for o in orphans["orphans"]] == [("vmj-0123456789ab-rg", "old-1")]
        fake_arm.polls_per_operation = 1
        assert httpx.delete(f"{svc.url}/vm/web-1").status_code in (200, 202)
        # A deleted VM is no longer listed.
        wait_until(lambda: httpx.get(f"{svc.url}/vm/web-1").status_code == 404, 30, "the VM to be deleted", 0.05)
        assert sorted(fake_arm.resource_groups()) == ["someone-elses-rg", "vmj-0123456789ab-rg"]
        assert httpx.get(f"{svc.url}/azure/orphans").json()["count"] == 1
        (delete,) = [r for r in fake_arm.requests if r.method == "DELETE"]
        assert delete.path.lower().endswith(f"/resourcegroups/{rg.lower()}") and delete.status == 202
        assert [r.status for r in fake_arm.requests if "/operationresults/" in r.path] == [202, 200]

    def test_orphans_when_arm_refuses(self, fake_arm: FakeARM, live_service: Callable[..., LiveService]) -> None:
        wrong = "not-the-arm-token-" + "z" * 16
        svc = live_service(
            VMJOURNAL_PROVIDER="azure",
            VMJOURNAL_AZURE_SUBSCRIPTION_ID=SUBSCRIPTION,
            VMJOURNAL_AZURE_LOCATION=fake_arm.location,
            VMJOURNAL_AZURE_ARM_ENDPOINT=fake_arm.endpoint,
            VMJOURNAL_AZURE_STATIC_TOKEN=wrong,
        )
        response = httpx.get(f"{svc.url}/azure/orphans")
        assert response.status_code == 502
        assert response.json()["error"] == "AuthenticationFailed"
        assert wrong not in response.text and wrong not in svc.log()
