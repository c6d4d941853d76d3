"""Journal Export Format ingest: stock systemd-journal-upload, and export bodies on the agent's route."""

from __future__ import annotations

import gzip
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.api import bearer, enroll, enroll_sync
from support.journal_files import journal_json, sample_entries, write_journal
from support.service import Service, ServiceFactory

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

    def test_backlog_larger_than_the_request_limit(self, live_service: Callable[..., Any], tmp_path: Path) -> None:
        # Limits far below the journal's size: the stream commits batch by batch, with no cap on the total.
        journal = write_journal(sample_entries(3000, boots=3), tmp_path / "j")
        assert len(export_of(journal)) > 20 * 40_000
        svc = live_service(VMJOURNAL_MAX_BODY_BYTES="40000", VMJOURNAL_MAX_BATCH_ENTRIES="200")
        token = enroll_sync(svc.url, "big1")
        state = tmp_path / "state"
        run_upload(journal, svc.url, token, state)
        expected = {e["__CURSOR"]: e for e in journal_json(journal)}
        assert originals(all_events(svc.url, "big1")) == expected

        run_upload(journal, svc.url, token, state)  # from its saved cursor: nothing new
        run_upload(journal, svc.url, token, None)  # everything again: all duplicates
        vm = httpx.get(f"{svc.url}/vm/big1").json()
        assert vm["event_count"] == 3000 and vm["last_ingest_error"] is None

    def test_upload_killed_midway_and_restarted(self, live_service: Callable[..., Any], tmp_path: Path) -> None:
        journal = write_journal(sample_entries(20_000, boots=2), tmp_path / "j")
        svc = live_service(VMJOURNAL_MAX_BATCH_ENTRIES="100")
        token = enroll_sync(svc.url, "kill1")
        state = tmp_path / "state"
        proc = subprocess.Popen(
            upload_argv(journal, svc.url, token, state), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 60
            while event_count(svc.url, "kill1") == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            proc.kill()
        finally:
            proc.wait()
        at_kill = event_count(svc.url, "kill1")
        assert 0 < at_kill < 20_000, f"the kill should land mid-stream; {at_kill} were stored"
        assert not state.exists() or "LAST_CURSOR" not in state.read_text()

        run_upload(journal, svc.url, token, state)
        assert originals(all_events(svc.url, "kill1")) == {e["__CURSOR"]: e for e in journal_json(journal)}
        assert event_count(svc.url, "kill1") == 20_000

    def test_entry_over_the_entry_limit_is_skipped_and_reported(
        self, live_service: Callable[..., Any], journal: Path, tmp_path: Path
    ) -> None:
        # The module's journal holds one entry of about 80 kB; the limit for one entry is the request limit.
        svc = live_service(VMJOURNAL_MAX_BODY_BYTES="50000", VMJOURNAL_MAX_BATCH_ENTRIES="300")
        token = enroll_sync(svc.url, "skip1")
        run_upload(journal, svc.url, token, tmp_path / "state")
        expected = {e["__CURSOR"]: e for e in journal_json(journal)}
        big = next(c for c, e in expected.items() if str(e.get("MESSAGE", "")).startswith("big "))
        del expected[big]
        assert originals(all_events(svc.url, "skip1")) == expected

        vm = httpx.get(f"{svc.url}/vm/skip1").json()
        assert vm["event_count"] == 1500
        assert vm["last_ingest_error"] == f"entry {big!r} skipped: entry is longer than 50000 bytes"
        log = svc.log()
        assert f"VM skip1: skipped journal entry {big!r}" in log
        assert token not in log
        metrics = httpx.get(f"{svc.url}/metrics").text
        assert 'vmjournal_ingest_skipped_entries_total{reason="too_large"} 1.0' in metrics

    def test_wrong_token_is_refused(self, live_service: Callable[..., Any], journal: Path) -> None:
        svc = live_service()
        result = subprocess.run(
            [JOURNAL_UPLOAD, f"--file={journal}", f"--url={svc.url}/ingest/not-a-token", "--follow=no"],
            capture_output=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert "not-a-token" not in svc.log()


def upload_argv(journal: Path, url: str, token: str, state: Path | None) -> list[str]:
    argv = [JOURNAL_UPLOAD, f"--file={journal}", f"--url={url}/ingest/{token}", "--follow=no"]
    return argv + ([f"--save-state={state}"] if state else [])


def run_upload(journal: Path, url: str, token: str, state: Path | None) -> None:
    subprocess.run(upload_argv(journal, url, token, state), check=True, capture_output=True, timeout=300)


def event_count(url: str, name: str) -> int:
    count: int = httpx.get(f"{url}/vm/{name}", timeout=30).json()["event_count"]
    return count


def all_events(url: str, name: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"limit": 10_000}
    while True:
        page = httpx.get(f"{url}/vm/{name}/boot", params=params, timeout=60).json()
        events += page["events"]
        if not page["next"]:
            return events
        params["cursor"] = page["next"]


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

    async def test_entry_that_cannot_be_stored_is_skipped_and_reported(
        self, service_factory: ServiceFactory, journal: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        # journal-upload cannot split a batch: one bad entry must not keep the rest out forever.
        async with service_factory(max_batch_entries=100) as svc:
            token = await enroll(svc.client, "ex2")
            good = export_of(journal)
            bad = good + b"MESSAGE=no cursor\n__REALTIME_TIMESTAMP=1764000000000000\n\n"
            response = await svc.client.post("/vm/ex2/boot", content=bad, headers=EXPORT | bearer(token))
            assert response.status_code == 200, response.text
            assert response.json() == {"received": 1502, "stored": 1501, "duplicates": 0, "skipped": 1}
            vm = (await svc.client.get("/vm/ex2")).json()
            assert vm["event_count"] == 1501
            assert vm["last_ingest_error"].startswith("entry without __CURSOR skipped: missing __CURSOR")
            assert vm["last_ingest_error_at"] is not None
            assert "VM ex2: skipped journal entry without __CURSOR (entry 1501" in caplog.text
            assert token not in caplog.text

            response = await svc.client.post("/vm/ex2/boot", content=good, headers=EXPORT | bearer(token))
            assert response.json() == {"received": 1501, "stored": 0, "duplicates": 1501}

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
