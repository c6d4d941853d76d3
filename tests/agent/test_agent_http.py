"""The agent's HTTP behaviour against a scripted HTTP server on loopback: retries, Retry-After,
redirects, and services that refuse everything (where skipping entries would lose them all)."""

from __future__ import annotations

import gzip
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support.agent import AGENT, PYTHON
from support.journal_files import journal_json, sample_entries, write_journal


class Scripted(ThreadingHTTPServer):
    """Answers each POST with the next scripted (status, headers) and then 200; records what it got."""

    def __init__(self, script: list[tuple[int, dict[str, str]]], default: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script = list(script)
        self.default = default
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Scripted

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        srv = self.server
        status, headers = srv.script.pop(0) if srv.script else (srv.default, {})
        srv.requests.append(
            {
                "at": time.monotonic(),
                "path": self.path,
                "status": status,
                "auth": self.headers.get("Authorization"),
                "entries": json.loads(body),
            }
        )
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        payload = b'{"error": "scripted"}'
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return write_journal(sample_entries(30), tmp_path / "journal")


@contextmanager
def serve(script: list[tuple[int, dict[str, str]]], default: int = 200) -> Iterator[Scripted]:
    server = Scripted(script, default)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def run_agent(url: str, journal: Path, tmp: Path, *args: str) -> subprocess.Popen[str]:
    (tmp / "token").write_text("tok-abc\n")
    return subprocess.Popen(
        [
            PYTHON,
            str(AGENT),
            "--url",
            url,
            "--name",
            "vm x",
            "--token-file",
            str(tmp / "token"),
            "--state-file",
            str(tmp / "state"),
            "--file",
            str(journal),
            "--config",
            "/dev/null",
            "--once",
            "-v",
            "--batch-entries",
            "10",
            *args,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )


class TestRetries:
    def test_sends_gzip_json_with_bearer_to_the_boot_route(self, journal: Path, tmp_path: Path) -> None:
        with serve([]) as server:
            proc = run_agent(server.url, journal, tmp_path)
            assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
            assert {r["path"] for r in server.requests} == {"/vm/vm%20x/boot"}
            assert {r["auth"] for r in server.requests} == {"Bearer tok-abc"}
            assert [e for r in server.requests for e in r["entries"]] == journal_json(journal)
            assert [len(r["entries"]) for r in server.requests] == [10, 10, 10]

    def test_honours_retry_after_on_429_and_backs_off_on_503(self, journal: Path, tmp_path: Path) -> None:
        with serve([(429, {"Retry-After": "2"}), (503, {})]) as server:
            proc = run_agent(server.url, journal, tmp_path)
            assert proc.wait(60) == 0
            first, second, third = server.requests[:3]
            assert second["at"] - first["at"] >= 1.9
            assert first["entries"] == second["entries"] == third["entries"]
            assert len(server.requests) == 5  # the retried batch, then two more

    def test_honours_retry_after_on_503(self, journal: Path, tmp_path: Path) -> None:
        # The service answers 503 while its database is down; the batch waits, then goes again, whole.
        with serve([(503, {"Retry-After": "2"}), (503, {"Retry-After": "1"})]) as server:
            proc = run_agent(server.url, journal, tmp_path)
            assert proc.wait(60) == 0
            err = proc.stderr.read() if proc.stderr else ""
            first, second, third = server.requests[:3]
            assert second["at"] - first["at"] >= 1.9
            assert third["at"] - second["at"] >= 0.9
            assert first["entries"] == second["entries"] == third["entries"]
            assert [r["status"] for r in server.requests] == [503, 503, 200, 200, 200]
            assert "HTTP 503" in err and "retrying in 2.0 s" in err
            assert "tok-abc" not in err

    def test_redirect_is_not_followed(self, journal: Path, tmp_path: Path) -> None:
        with serve([(307, {"Location": "http://127.0.0.1:9/elsewhere"})]) as server:
            proc = run_agent(server.url, journal, tmp_path)
            time.sleep(2)
            proc.kill()
            err = proc.communicate()[1]
            assert "HTTP 307" in err and "retrying" in err
            assert len(server.requests) == 1


class TestRefusals:
    def test_service_refusing_everything_loses_nothing(self, journal: Path, tmp_path: Path) -> None:
        # A broken proxy answering 400 to every request: bisecting would blame and skip every entry.
        with serve([], default=400) as server:
            proc = run_agent(server.url, journal, tmp_path)
            time.sleep(4)
            proc.kill()
            err = proc.communicate()[1]
            assert "refuses every batch" in err
            assert "skipping" not in err
            assert "LAST_CURSOR" not in (tmp_path / "state").read_text()

    def test_wrong_token_is_retried_not_skipped(self, journal: Path, tmp_path: Path) -> None:
        with serve([], default=403) as server:
            proc = run_agent(server.url, journal, tmp_path)
            time.sleep(2)
            proc.kill()
            err = proc.communicate()[1]
            assert "HTTP 403" in err and "skipping" not in err
            assert len(server.requests) == 1
            assert "tok-abc" not in err
