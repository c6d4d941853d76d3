"""The service's logs, from the real entry point (``vmjournal serve``) as a separate process: time
and level on every line, the access log kept, JSON lines on request, and no secret in any of it."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support.api import bearer
from support.journal_files import export_format, sample_entries
from support.service import free_port

EXPORT = {"Content-Type": "application/vnd.fdo.journal"}


class Serve:
    """``python -m vmjournal serve`` with its output captured in a file."""

    def __init__(self, database_url: str, data_dir: Path, log_path: Path, **env: str) -> None:
        self.url = ""
        self.log_path = log_path
        port = free_port()
        values = {k: v for k, v in os.environ.items() if not k.startswith("VMJOURNAL_")}
        values |= {
            "VMJOURNAL_DATABASE_URL": database_url,
            "VMJOURNAL_DATA_DIR": str(data_dir),
            "VMJOURNAL_PORT": str(port),
            "VMJOURNAL_PROVIDER": "external",
            **env,
        }
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vmjournal", "serve"], env=values, stdout=out, stderr=subprocess.STDOUT
            )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, self.log()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        return self.log()


@pytest.fixture
def serve(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(**env: str) -> Serve:
        svc = Serve(database_url, tmp_path / "data", tmp_path / f"service-{len(started)}.log", **env)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


def journal_body(seed: int) -> bytes:
    return export_format([{**e, "__CURSOR": f"s=log;i={seed}-{i}"} for i, e in enumerate(sample_entries(3, seed=seed))])


class TestSecrets:
    def test_no_key_or_token_reaches_the_log(self, serve: Callable[..., Serve]) -> None:
        keys = [secrets.token_urlsafe(24), secrets.token_urlsafe(24)]
        svc = serve(VMJOURNAL_LOG_LEVEL="DEBUG", VMJOURNAL_API_KEYS=",".join(keys))
        wrong_key = secrets.token_urlsafe(24)
        issued: list[str] = [*keys, wrong_key]
        with httpx.Client(base_url=svc.url, timeout=30) as client:
            assert client.get("/vm", headers=bearer(wrong_key)).status_code == 401
            created = client.post("/vm/vm1/small", params={"provider": "external"}, headers=bearer(keys[0]))
            assert created.status_code == 202, created.text
            token = created.json()["token"]
            issued.append(token)
            assert client.get("/vm", headers={"X-API-Key": keys[1]}).status_code == 200

            # The agent's route, and journal-upload's route with the token in the path.
            entry = {"__CURSOR": "s=a;i=1", "__REALTIME_TIMESTAMP": "1764000000000001", "MESSAGE": "hello"}
            assert client.post("/vm/vm1/boot", json=[entry], headers=bearer(token)).status_code == 200
            assert client.post(f"/ingest/{token}/upload", content=journal_body(1), headers=EXPORT).status_code == 200

            rotated = client.post("/vm/vm1/token", headers=bearer(keys[1]))
            assert rotated.status_code == 200, rotated.text
            new_token = rotated.json()["token"]
            issued.append(new_token)
            assert client.post("/vm/vm1/boot", json=[entry], headers=bearer(token)).status_code == 403
            assert client.post(f"/ingest/{token}/upload", content=journal_body(2), headers=EXPORT).status_code == 403
            assert client.post("/vm/vm1/boot", json=[entry], headers=bearer(new_token)).status_code == 200
            upload = client.post(f"/ingest/{new_token}/upload?x=1", content=journal_body(3), headers=EXPORT)
            assert upload.status_code == 200
        log = svc.stop()

        assert token != new_token and len(set(issued)) == len(issued)
        # The log holds the requests, so a secret in it would have been seen.
        assert '"POST /vm/vm1/boot HTTP/1.1" 200' in log
        assert '"POST /vm/vm1/boot HTTP/1.1" 403' in log
        assert '"POST /ingest/***/upload HTTP/1.1" 200' in log
        assert '"POST /ingest/***/upload?x=1 HTTP/1.1" 200' in log
        assert '"POST /vm/vm1/token HTTP/1.1" 200' in log
        assert "vmjournal.main: vmjournal" in log and "ready" in log
        leaked = [s for s in issued if s in log or s[:12] in log]
        assert leaked == [], "secrets in the service's log"


class TestFormat:
    def test_text_lines_carry_time_and_level(self, serve: Callable[..., Serve]) -> None:
        svc = serve()
        httpx.get(f"{svc.url}/", timeout=10)
        lines = [line for line in svc.stop().splitlines() if line.strip()]
        # "2026-11-30 01:02:03.456 INFO vmjournal.main: vmjournal 0.1.0 ready; providers: external"
        ready = [line for line in lines if " vmjournal.main: " in line and "ready" in line]
        assert len(ready) == 1
        assert ready[0].split(" ")[2] == "INFO"
        time.strptime(" ".join(ready[0].split(" ")[:2]).split(".")[0], "%Y-%m-%d %H:%M:%S")
        assert any('"GET / HTTP/1.1" 200' in line and " INFO uvicorn.access: " in line for line in lines)

    def test_json_lines(self, serve: Callable[..., Serve]) -> None:
        svc = serve(VMJOURNAL_LOG_FORMAT="json", VMJOURNAL_LOG_LEVEL="debug")
        httpx.get(f"{svc.url}/vm/none", timeout=10)
        lines = [line for line in svc.stop().splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]  # every line, from startup to shutdown
        assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
        assert any(r["logger"] == "vmjournal.main" and "ready" in r["message"] for r in records)
        access = [r for r in records if r["logger"] == "uvicorn.access"]
        assert any(r["method"] == "GET" and r["path"] == "/vm/none" and r["status"] == 404 for r in access), access
        assert any(r["message"].startswith("Started server process") for r in records)
