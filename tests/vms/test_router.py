"""The VM routes through HTTP against the real service and PostgreSQL, with the test provider."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from support.api import enroll, wait_for_status
from support.service import Service, ServiceFactory


class TestRoot:
    async def test_identity(self, service: Service) -> None:
        response = await service.client.get("/")
        assert response.json() == {"application": "vmjournal", "version": "0.1.0"}

    async def test_healthz(self, service: Service) -> None:
        assert (await service.client.get("/healthz")).json() == {"status": "ok"}

    async def test_openapi_documents_every_route(self, service: Service) -> None:
        paths = (await service.client.get("/openapi.json")).json()["paths"]
        for path in (
            "/",
            "/vm",
            "/vm/{name}",
            "/vm/{name}/{size}",
            "/vm/{name}/boot",
            "/vm/{name}/boot/{unit}",
            "/vm/{name}/units",
            "/vm/{name}/boots",
            "/vm/{name}/token",
            "/healthz",
        ):
            assert path in paths, path
        assert "409" in paths["/vm/{name}/{size}"]["post"]["responses"]


class TestCreateVM:
    async def test_lifecycle_to_running(self, service: Service) -> None:
        response = await service.client.post("/vm/web-1/small")
        assert response.status_code == 202
        body = response.json()
        assert body["status"] == "pending" and body["provider"] == "test" and "token" not in body
        vm = await wait_for_status(service.client, "web-1", "running")
        assert vm["addresses"] == {"loopback": "127.0.0.1"}
        assert vm["error"] is None and vm["event_count"] == 0
        assert [c[1] for c in service.provider.calls()] == ["allocate", "boot", "install-agent"]

    async def test_provider_failure_reaches_the_record(self, service: Service) -> None:
        await service.client.post("/vm/fail-1/medium")
        vm = await wait_for_status(service.client, "fail-1", "failed")
        assert vm["error"] == {
            "code": "TestBootFailure",
            "message": "the guest did not boot",
            "details": ["NoBootDevice"],
        }

    async def test_retryable_failure_is_retried(self, service: Service) -> None:
        await service.client.post("/vm/flaky-1/small")
        vm = await wait_for_status(service.client, "flaky-1", "running", timeout=20)
        assert vm["error"] is None
        assert [c[1] for c in service.provider.calls()].count("boot") == 2

    @pytest.mark.parametrize("name", ["-bad", "bad-", "has_underscore", "dot.name", "x" * 65, "sp ace"])
    async def test_invalid_name(self, service: Service, name: str) -> None:
        response = await service.client.post(f"/vm/{name}/small")
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_name"
        assert "1-64 characters" in response.json()["message"]
        assert (await service.client.get("/vm")).json()["count"] == 0

    async def test_unknown_size_lists_valid_ones(self, service: Service) -> None:
        response = await service.client.post("/vm/web-1/huge")
        assert response.status_code == 400
        assert response.json() == {
            "error": "invalid_size",
            "message": "unknown size 'huge': use one of small, medium, large",
        }

    async def test_unknown_provider(self, service: Service) -> None:
        response = await service.client.post("/vm/web-1/small", params={"provider": "gcp"})
        assert response.status_code == 400
        assert "external, test" in response.json()["message"]

    async def test_duplicate_name_conflicts(self, service: Service) -> None:
        assert (await service.client.post("/vm/web-1/small")).status_code == 202
        response = await service.client.post("/vm/web-1/large")
        assert response.status_code == 409
        assert response.json()["error"] == "name_taken"
        assert (await service.client.get("/vm")).json()["count"] == 1


class TestReadVMs:
    async def test_unknown_vm_is_404(self, service: Service) -> None:
        response = await service.client.get("/vm/nope")
        assert response.status_code == 404
        assert response.json() == {"error": "vm_not_found", "message": "no VM named 'nope'"}

    async def test_list(self, service: Service) -> None:
        for name in ("a-1", "b-2"):
            await service.client.post(f"/vm/{name}/small")
        body = (await service.client.get("/vm")).json()
        assert body["count"] == 2 and {v["name"] for v in body["vms"]} == {"a-1", "b-2"}


class TestDeleteVM:
    async def test_delete_deprovisions(self, service: Service) -> None:
        await service.client.post("/vm/web-1/small")
        await wait_for_status(service.client, "web-1", "running")
        token = service.provider.token_file("web-1").read_text()
        entry = {"__CURSOR": "c1", "__REALTIME_TIMESTAMP": "1764000000000000", "_BOOT_ID": "0" * 32}
        ingested = await service.client.post("/vm/web-1/boot", json=entry, headers={"Authorization": f"Bearer {token}"})
        assert ingested.json()["stored"] == 1
        response = await service.client.delete("/vm/web-1")
        assert response.status_code == 202 and response.json()["status"] == "deleting"
        for _ in range(100):
            if (await service.client.get("/vm/web-1")).status_code == 404:
                break
            await __import__("asyncio").sleep(0.1)
        listed = (await service.client.get("/vm", params={"include_deleted": True})).json()["vms"]
        assert [(v["name"], v["status"]) for v in listed] == [("web-1", "deleted")]
        assert listed[0]["deleted_at"] is not None
        assert ("web-1", "deprovision") in [c[:2] for c in service.provider.calls()]
        conn = await asyncpg.connect(service.database_url)
        try:
            counts = [await conn.fetchval(f"SELECT count(*) FROM {t}") for t in ("journal_event", "journal_boot")]
        finally:
            await conn.close()
        assert counts == [0, 0], "a deleted VM's journal is purged"
        # The name is free again.
        assert (await service.client.post("/vm/web-1/small")).status_code == 202

    async def test_delete_unknown_is_404(self, service: Service) -> None:
        assert (await service.client.delete("/vm/nope")).status_code == 404


class TestEnrollExternal:
    async def test_enroll_returns_token_once(self, service: Service) -> None:
        response = await service.client.post("/vm/laptop/small", params={"provider": "external"})
        assert response.status_code == 202
        body = response.json()
        assert body["token"].startswith("vmj_")
        assert "curl" in body["install_command"] and body["token"] in body["install_command"]
        vm = await wait_for_status(service.client, "laptop", "running")
        assert "token" not in vm
        listed = (await service.client.get("/vm")).text
        assert body["token"] not in listed

    async def test_token_is_stored_hashed(self, service: Service) -> None:
        token = await enroll(service.client, "laptop")
        conn = await asyncpg.connect(service.database_url)
        try:
            stored = await conn.fetchval("SELECT token_hash FROM vm WHERE name = 'laptop'")
            names = await conn.fetch("SELECT name, status, token_hash FROM vm")
        finally:
            await conn.close()
        assert stored and token not in stored and len(stored) == 64, names

    async def test_rotate_token(self, service: Service) -> None:
        old = await enroll(service.client, "laptop")
        response = await service.client.post("/vm/laptop/token")
        assert response.status_code == 200
        new = response.json()["token"]
        assert new != old
        entry = [{"__CURSOR": "c1", "__REALTIME_TIMESTAMP": "1764000000000000", "MESSAGE": "hi"}]
        assert (
            await service.client.post("/vm/laptop/boot", json=entry, headers={"Authorization": f"Bearer {old}"})
        ).status_code == 403
        assert (
            await service.client.post("/vm/laptop/boot", json=entry, headers={"Authorization": f"Bearer {new}"})
        ).status_code == 200

    async def test_rotate_unknown_is_404(self, service: Service) -> None:
        assert (await service.client.post("/vm/nope/token")).status_code == 404


class TestApiKeys:
    async def test_keys_required_when_configured(self, service_factory: ServiceFactory) -> None:
        async with service_factory(api_keys=["k-secret-1"]) as svc:
            assert (await svc.client.get("/vm")).status_code == 401
            assert (await svc.client.get("/vm", headers={"Authorization": "Bearer wrong"})).status_code == 401
            assert (await svc.client.get("/vm", headers={"Authorization": "Bearer k-secret-1"})).status_code == 200
            assert (await svc.client.get("/vm", headers={"X-API-Key": "k-secret-1"})).status_code == 200
            assert (await svc.client.get("/healthz")).status_code == 200

    def test_refuses_public_binding_without_keys(self) -> None:
        from vmjournal.config import Settings
        from vmjournal.main import InsecureBinding, create_app

        with pytest.raises(InsecureBinding, match="VMJOURNAL_API_KEYS"):
            create_app(Settings(_env_file=None, host="0.0.0.0"))
        create_app(Settings(_env_file=None, host="0.0.0.0", api_keys=["k"]))


class TestMetrics:
    async def test_counts(self, service: Service) -> None:
        token = await enroll(service.client, "laptop")
        await wait_for_status(service.client, "laptop", "running")
        batch = [{"__CURSOR": f"c{i}", "__REALTIME_TIMESTAMP": "1764000000000000"} for i in range(3)]
        for _ in range(2):
            await service.client.post("/vm/laptop/boot", json=batch, headers={"Authorization": f"Bearer {token}"})
        text = (await service.client.get("/metrics")).text
        assert 'vmjournal_vms{provider="external",status="running"} 1.0' in text
        assert 'vmjournal_ingest_entries_total{result="duplicate"}' in text
        assert "vmjournal_ingest_batch_seconds_count" in text


class TestEnrollInstallCommand:
    async def test_served_script_installs_with_token_from_stdin(self, service: Service, tmp_path: Path) -> None:
        import shlex
        import subprocess

        response = await service.client.post("/vm/laptop/small", params={"provider": "external"})
        body = response.json()
        command = body["install_command"]
        # The token travels on stdin (printf is a shell builtin), never as an argument of a process.
        head, _, tail = command.partition(" | ")
        assert body["token"] not in tail and body["token"] not in head.split("&&")[0]
        script = (await service.client.get("/agent/bootstrap.sh")).text
        assert body["token"] not in script
        (tmp_path / "bootstrap.sh").write_text(script)
        args = shlex.split(tail.replace("sudo ", ""))[1:]  # sh vmjournal-bootstrap.sh --url U --name N
        env = {"DESTDIR": str(tmp_path / "root"), "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            ["sh", str(tmp_path / "bootstrap.sh"), *args[1:]],
            input=body["token"] + "\n",
            text=True,
            capture_output=True,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        conf = (tmp_path / "root/etc/vmjournal-agent/agent.conf").read_text()
        assert f"url = {service.settings.ingest_url}\n" in conf
        assert "name = laptop\n" in conf and f"token = {body['token']}\n" in conf
        assert (tmp_path / "root/usr/local/lib/vmjournal-agent/vmjournal_agent.py").exists()
