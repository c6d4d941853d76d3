"""Ingest through HTTP: auth, atomic idempotent batches, gzip, and every kind of bad input."""

from __future__ import annotations

import asyncio
import gzip
import json
import multiprocessing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support.api import bearer, enroll
from support.journal_files import journal_json, sample_entries, write_journal
from support.service import Service, ServiceFactory


def entry(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "__CURSOR": f"s=x;i={i}",
        "__REALTIME_TIMESTAMP": str(1_764_000_000_000_000 + i),
        "MESSAGE": f"m{i}",
        "_BOOT_ID": "0f5e3c4b8a6d4e2f9b1c7d8e6f5a4b3c",
        **extra,
    }


async def count_events(service: Service) -> int:
    conn = await asyncpg.connect(service.database_url)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM journal_event")
        return count
    finally:
        await conn.close()


class TestIngestAuth:
    async def test_no_token_is_401(self, service: Service) -> None:
        await enroll(service.client, "vm1")
        response = await service.client.post("/vm/vm1/boot", json=[entry(1)])
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"

    async def test_other_vms_token_is_403(self, service: Service) -> None:
        await enroll(service.client, "vm1")
        other = await enroll(service.client, "vm2")
        response = await service.client.post("/vm/vm1/boot", json=[entry(1)], headers=bearer(other))
        assert response.status_code == 403
        assert await count_events(service) == 0

    async def test_unknown_vm_is_404(self, service: Service) -> None:
        token = await enroll(service.client, "vm1")
        response = await service.client.post("/vm/nope/boot", json=[entry(1)], headers=bearer(token))
        assert response.status_code == 404

    async def test_deleted_vms_token_stops_working(self, service: Service) -> None:
        token = await enroll(service.client, "vm1")
        await service.client.delete("/vm/vm1")
        response = await service.client.post("/vm/vm1/boot", json=[entry(1)], headers=bearer(token))
        assert response.status_code in (403, 404)


class TestIngestBatch:
    async def test_array_and_single_object(self, service: Service) -> None:
        token = await enroll(service.client, "vm1")
        response = await service.client.post("/vm/vm1/boot", json=[entry(1), entry(2)], headers=bearer(token))
        assert response.json() == {"received": 2, "stored": 2, "duplicates": 0}
        response = await service.client.post("/vm/vm1/boot", json=entry(3), headers=bearer(token))
        assert response.json() == {"received": 1, "stored": 1, "duplicates": 0}
        vm = (await service.client.get("/vm/vm1")).json()
        assert vm["event_count"] == 3 and vm["last_event_at"] == "2025-11-24T16:00:00.000003Z"

    async def test_resend_stores_nothing_twice(self, service: Service) -> None:
        token = await enroll(service.client, "vm1")
        batch = [entry(i) for i in range(50)]
        await service.client.post("/vm/vm1/boot", json=batch, headers=bearer(token))
        response = await service.client.post("/vm/vm1/boot", json=batch + [entry(50)], headers=bearer(token))
        assert response.json() == {"received": 51, "stored": 1, "duplicates": 50}
        assert await count_events(service) == 51
        assert (await service.client.get("/vm/vm1")).json()["event_count"] == 51

    async def test_a_stored_entry_last_in_a_batch_counts_every_entry_once(self, service: Service) -> None:
        # The batch is first inserted as all new and fails on its last entry: the summaries of the
        # entries before it must not be kept from that attempt.
        token = await enroll(service.client, "vm1")
        unit = {"_SYSTEMD_UNIT": "web.service"}
        await service.client.post("/vm/vm1/boot", json=[entry(99, **unit)], headers=bearer(token))
        batch = [entry(i, **unit) for i in range(5)] + [entry(99, **unit)]
        response = await service.client.post("/vm/vm1/boot", json=batch, headers=bearer(token))
        assert response.json() == {"received": 6, "stored": 5, "duplicates": 1}
        units = (await service.client.get("/vm/vm1/units")).json()
        assert [(u["unit"], u["entries"]) for u in units] == [("web.service", 6)]
        boots = (await service.client.get("/vm/vm1/boots")).json()
        assert [b["entries"] for b in boots] == [6]
        assert (await service.client.get("/vm/vm1")).json()["event_count"] == 6
        assert await count_events(service) == 6

    async def test_duplicate_within_one_batch(self, service: Service) -> None:
        token = await enroll(service.client, "vm1")
        response = await service.client.post("/vm/vm1/boot", json=[entry(1), entry(1)], headers=bearer(token))
        assert response.json() == {"received": 2, "stored": 1, "duplicates": 1}

    async def test_same_cursor_on_two_vms_is_two_events(self, service: Service) -> None:
        t1, t2 = await enroll(service.client, "vm1"), await enroll(service.client, "vm2")
        for name, token in (("vm1", t1), ("vm2", t2)):
            response = await service.client.post(f"/vm/{name}/boot", json=[entry(1)], headers=bearer(token))
            assert response.json()["stored"] == 1

    async def test_gzip(self, service: Service) -> None:
        token = await enroll(service.client, "vm1")
        body = gzip.compress(json.dumps([entry(i) for i in range(100)]).encode())
        response = await service.client.post(
            "/vm/vm1/boot",
            content=body,
            headers={**bearer(token), "Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        assert response.json()["stored"] == 100

    async def test_curl_form_content_type_is_read_as_json(self, service: Service) -> None:
        token = await enroll(service.client, "vm1")
        response = await service.client.post(
            "/vm/vm1/boot",
            content=json.dumps(entry(1)),
            headers={**bearer(token), "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.json()["stored"] == 1


class TestIngestBadInput:
    async def post(self, service: Service, body: bytes, **headers: str) -> Any:
        token = await enroll(service.client, "vm1")
        response = await service.client.post("/vm/vm1/boot", content=body, headers={**bearer(token), **headers})
        assert await count_events(service) == 0, "nothing may be written"
        return response

    async def test_malformed_json(self, service: Service) -> None:
        response = await self.post(service, b'[{"__CURSOR": "a",')
        assert response.status_code == 400 and response.json()["error"] == "bad_json"

    @pytest.mark.parametrize(
        ("bad", "problem"),
        [
            ({"__REALTIME_TIMESTAMP": "1"}, "entry 1: missing __CURSOR"),
            ({"__CURSOR": "c"}, "entry 1: missing or invalid __REALTIME_TIMESTAMP"),
            ({"__CURSOR": "c", "__REALTIME_TIMESTAMP": "yesterday"}, "entry 1: missing or invalid"),
            ({"__CURSOR": "c", "__REALTIME_TIMESTAMP": "1", "_BOOT_ID": "nope"}, "entry 1: _BOOT_ID"),
            ("a string", "entry 1: not a JSON object"),
        ],
    )
    async def test_bad_entry_names_it_and_stores_nothing(self, service: Service, bad: Any, problem: str) -> None:
        response = await self.post(service, json.dumps([entry(0), bad, entry(2)]).encode())
        assert response.status_code == 400
        assert response.json()["error"] == "bad_entry"
        assert response.json()["message"].startswith(problem)

    async def test_too_many_entries(self, service_factory: ServiceFactory) -> None:
        async with service_factory(max_batch_entries=10) as svc:
            response = await self.post(svc, json.dumps([entry(i) for i in range(11)]).encode())
            assert response.status_code == 413
            assert "limit is 10" in response.json()["message"]

    async def test_body_too_large(self, service_factory: ServiceFactory) -> None:
        async with service_factory(max_body_bytes=1000) as svc:
            response = await self.post(svc, json.dumps([entry(i) for i in range(50)]).encode())
            assert response.status_code == 413
            assert "1000 bytes" in response.json()["message"]

    async def test_chunked_body_too_large(self, service_factory: ServiceFactory) -> None:
        async with service_factory(max_body_bytes=1000) as svc:
            token = await enroll(svc.client, "vm1")

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(20):
                    yield b" " * 100

            response = await svc.client.post("/vm/vm1/boot", content=chunks(), headers=bearer(token))
            assert response.status_code == 413

    async def test_gzip_bomb(self, service_factory: ServiceFactory) -> None:
        async with service_factory(max_body_bytes=100_000) as svc:
            bomb = gzip.compress(b"[" + b" " * 10_000_000 + b"]")
            assert len(bomb) < 100_000
            response = await self.post(svc, bomb, **{"Content-Encoding": "gzip"})
            assert response.status_code == 413
            assert "inflates past the limit of 100000 bytes" in response.json()["message"]

    async def test_not_gzip(self, service: Service) -> None:
        response = await self.post(service, b"plain", **{"Content-Encoding": "gzip"})
        assert response.status_code == 400 and response.json()["error"] == "bad_gzip"

    async def test_unknown_encoding(self, service: Service) -> None:
        response = await self.post(service, b"[]", **{"Content-Encoding": "br"})
        assert response.status_code == 415


class TestIngestRealJournal:
    async def test_every_field_kept(self, service: Service, tmp_path: Path, journal_tools: None) -> None:
        path = write_journal(sample_entries(500), tmp_path / "j")
        original = journal_json(path)
        token = await enroll(service.client, "vm1")
        response = await service.client.post("/vm/vm1/boot", json=original, headers=bearer(token))
        assert response.json() == {"received": 500, "stored": 500, "duplicates": 0}
        page = (await service.client.get("/vm/vm1/boot", params={"limit": 500})).json()
        assert [e["__CURSOR"] for e in page["events"]] == [e["__CURSOR"] for e in original]
        for stored, sent in zip(page["events"], original, strict=True):
            assert {k: v for k, v in stored.items() if k in sent} == sent
        binary = next(e for e in page["events"] if e["SYSLOG_IDENTIFIER"] == "binary")
        assert isinstance(binary["MESSAGE"], list)  # the raw bytes are kept ...
        assert binary["message"].startswith("caf\ufffd not utf-8")  # ... and the text is decoded with U+FFFD
        multi = next(e for e in page["events"] if e["SYSLOG_IDENTIFIER"] == "multi")
        assert multi["message"].count("\n") == 2


@pytest.mark.parametrize("processes", [0, 2])
async def test_rows_built_in_worker_processes_or_in_the_loop_answer_alike(
    service_factory: ServiceFactory, processes: int
) -> None:
    """Every answer, good or bad, is the same whichever builds the rows (journal/row_workers.py)."""
    async with service_factory(ingest_processes=processes) as service:
        token = await enroll(service.client, "vm1")

        async def post(body: Any) -> tuple[int, Any]:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            response = await service.client.post("/vm/vm1/boot", content=content, headers=bearer(token))
            return response.status_code, response.json()

        assert await post([entry(i) for i in range(50)]) == (200, {"received": 50, "stored": 50, "duplicates": 0})
        assert await post([entry(i) for i in range(60)]) == (200, {"received": 60, "stored": 10, "duplicates": 50})
        status, body = await post([entry(100), {"MESSAGE": "no cursor"}])
        assert status == 400 and body["error"] == "bad_entry" and body["message"].startswith("entry 1: ")
        status, body = await post(b"[{")
        assert status == 400 and body["error"] == "bad_json"
        status, body = await post([entry(200 + i) for i in range(service.settings.max_batch_entries + 1)])
        assert status == 413 and body["error"] == "batch_too_large"
        assert await count_events(service) == 60
        # Concurrent batches are each built once and stored once.
        batches = [[entry(1000 + 100 * b + i) for i in range(100)] for b in range(6)]
        answers = await asyncio.gather(*(post(b) for b in batches))
        assert all(status == 200 and body["stored"] == 100 for status, body in answers)
        assert await count_events(service) == 660
        if processes:
            assert multiprocessing.active_children(), "the rows were built in worker processes"
