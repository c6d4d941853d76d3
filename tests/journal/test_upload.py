"""Journal Export Format ingest: stock systemd-journal-upload, and export bodies on the agent's route."""

from __future__ import annotations

import gzip
import struct
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Service
from journal_files import journal_json, sample_entries, write_journal
from support.api import bearer, enroll

JOURNAL_UPLOAD = next(
    (p for p in ("/lib/systemd/systemd-journal-upload", "/usr/lib/systemd/systemd-journal-upload") if Path(p).exists()),
    "systemd-journal-upload",
)
EXPORT = {"Content-Type": "application/vnd.fdo.journal"}

pytestmark = pytest.mark.usefixtures("journal_tools")


def originals(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Stored events by cursor, without the derived lower-case keys."""
    return {e["__CURSOR"]: {k: v for k, v in e.items() if not k.islower()} for e in events}


def export_of(path: Path) -> bytes:
    return subprocess.run(
        ["journalctl", f"--file={path}", "-o", "export", "--no-pager"], check=True, capture_output=True
    ).stdout


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    entries = sample_entries(1500)
    entries.append(
        {
            **entries[0],
            "__REALTIME_TIMESTAMP": "1764000009000000",
            "MESSAGE": "big " + "y" * 70_000,
            "BLOB": bytes(range(256)) * 40,
        }
    )
    return write_journal(entries, tmp_path_factory.mktemp("upload"))


class TestJournalUpload:
    def test_stock_journal_upload_pushes_every_entry(
        self, live_service: Callable[..., Any], journal: Path, tmp_path: Path
    ) -> None:
        svc = live_service()
        response = httpx.post(f"{svc.url}/vm/up1/small", params={"provider": "external"}, timeout=30)
        token = response.json()["token"]
        state = tmp_path / "upload-state"
        argv = [
            JOURNAL_UPLOAD,
            f"--file={journal}",
            f"--url={svc.url}/ingest/{token}",
            "--follow=no",
            f"--save-state={state}",
        ]
        # The token must be in journal-upload's URL here; systemd < 258 has no other way.
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

        events = httpx.get(f"{svc.url}/vm/up1/boot", params={"limit": 10000}, timeout=30).json()["events"]
        assert originals(events) == {e["__CURSOR"]: e for e in journal_json(journal)}
        assert "LAST_CURSOR=" in state.read_text()

        # Without its state it sends everything again: all duplicates, nothing stored twice.
        subprocess.run(argv[:-1], check=True, capture_output=True, timeout=120)
        assert len(httpx.get(f"{svc.url}/vm/up1/boot", params={"limit": 10000}).json()["events"]) == 1501

        log = svc.log()
        assert "/ingest/***/upload" in log
        assert token not in log

    def test_wrong_token_is_refused(self, live_service: Callable[..., Any], journal: Path) -> None:
        svc = live_service()
        result = subprocess.run(
            [JOURNAL_UPLOAD, f"--file={journal}", f"--url={svc.url}/ingest/not-a-token", "--follow=no"],
            capture_output=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert "not-a-token" not in svc.log()


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


class TestExportOnBootRoute:
    async def test_chunked_export_with_bearer(self, service: Service, journal: Path) -> None:
        token = await enroll(service.client, "ex1")
        body = export_of(journal)
        response = await service.client.post(
            "/vm/ex1/boot", content=_chunks(body, 7000), headers=EXPORT | bearer(token)
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"received": 1501, "stored": 1501, "duplicates": 0}
        events = (await service.client.get("/vm/ex1/boot", params={"limit": 10000})).json()["events"]
        assert originals(events) == {e["__CURSOR"]: e for e in journal_json(journal)}

        again = await service.client.post(
            "/vm/ex1/boot", content=gzip.compress(body), headers=EXPORT | bearer(token) | {"Content-Encoding": "gzip"}
        )
        assert again.json() == {"received": 1501, "stored": 0, "duplicates": 1501}

    async def test_body_spanning_many_internal_batches_is_atomic(
        self, service_factory: Callable[..., Any], journal: Path
    ) -> None:
        async with service_factory(max_batch_entries=100) as svc:
            token = await enroll(svc.client, "ex2")
            good = export_of(journal)
            bad = good + b"MESSAGE=no cursor\n__REALTIME_TIMESTAMP=1764000000000000\n\n"
            response = await svc.client.post("/vm/ex2/boot", content=bad, headers=EXPORT | bearer(token))
            assert response.status_code == 400
            assert response.json()["error"] == "bad_entry"
            assert response.json()["message"].startswith("entry 1501: missing __CURSOR")
            assert (await svc.client.get("/vm/ex2")).json()["event_count"] == 0

            response = await svc.client.post("/vm/ex2/boot", content=good, headers=EXPORT | bearer(token))
            assert response.json() == {"received": 1501, "stored": 1501, "duplicates": 0}

    async def test_malformed_export_stores_nothing(self, service: Service) -> None:
        token = await enroll(service.client, "ex3")
        entry = b"__CURSOR=c1\n__REALTIME_TIMESTAMP=1764000000000000\nMESSAGE=ok\n\n"
        broken = entry + b"__CURSOR=c2\nMESSAGE\n" + struct.pack("<Q", 50) + b"short\n\n"
        response = await service.client.post("/vm/ex3/boot", content=broken, headers=EXPORT | bearer(token))
        assert response.status_code == 400
        body = response.json()
        assert body["error"] == "bad_export"
        assert "entry 1" in body["message"] and "ends inside an entry" in body["message"]
        assert (await service.client.get("/vm/ex3")).json()["event_count"] == 0

    async def test_upload_route_needs_export_content_type(self, service: Service) -> None:
        token = await enroll(service.client, "ex4")
        response = await service.client.post(f"/ingest/{token}/upload", json=[{"MESSAGE": "x"}])
        assert response.status_code == 415
        assert token not in response.text

    async def test_upload_route_wrong_token(self, service: Service) -> None:
        response = await service.client.post("/ingest/nope/upload", content=b"A=1\n\n", headers=EXPORT)
        assert response.status_code == 403
        assert response.json()["error"] == "wrong_token"
