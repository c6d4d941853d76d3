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

# For the batch whose first entry has this cursor: its next answers, as (status, headers, seconds to wait).
ByBatch = dict[str, list[tuple[int, dict[str, str], float]]]


class Scripted(ThreadingHTTPServer):
    """Answers each POST with the next scripted (status, headers) and then 200; records what it got.

    ``by_batch`` scripts the answers to one batch, whatever order the agent's requests arrive in."""

    def __init__(
        self, script: list[tuple[int, dict[str, str]]], default: int = 200, by_batch: ByBatch | None = None
    ) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script = list(script)
        self.default = default
        self.by_batch = by_batch or {}
        self.lock = threading.Lock()
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
        srv, entries, at = self.server, json.loads(body), time.monotonic()
        with srv.lock:
            scripted = srv.by_batch.get(entries[0]["__CURSOR"]) if entries else None
            if scripted:
                status, headers, wait = scripted.pop(0)
            else:
                (status, headers), wait = srv.script.pop(0) if srv.script else (srv.default, {}), 0.0
        time.sleep(wait)
        request = {"at": at, "path": self.path, "status": status, "auth": self.headers.get("Authorization")}
        with srv.lock:
            # "done": before the answer is written, so before the agent can act on it.
            srv.requests.append(request | {"entries": entries, "done": time.monotonic()})
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
def serve(
    script: list[tuple[int, dict[str, str]]], default: int = 200, by_batch: ByBatch | None = None
) -> Iterator[Scripted]:
    server = Scripted(script, default, by_batch)
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
            # The scripts below answer requests in the order they come: one batch at a time. The
            # tests of several batches in flight pass --in-flight again (the last one counts).
            "--in-flight",
            "1",
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


class StateWatcher:
    """Reads the agent's state file every 10 ms and keeps (when it was read, the cursor it named)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples: list[tuple[float, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.01)

    def _sample(self) -> None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            text = ""
        cursor = next((line[12:] for line in text.splitlines() if line.startswith("LAST_CURSOR=")), None)
        self.samples.append((time.monotonic(), cursor))

    def stop(self) -> list[tuple[float, str | None]]:
        """The samples, ending with the file as the agent left it (a loaded machine may not have let
        the thread read it since the agent's last write)."""
        self._stop.set()
        self._thread.join(5)
        self._sample()
        return self.samples


def assert_saved_in_order(
    samples: list[tuple[float, str | None]], requests: list[dict[str, Any]], order: list[str]
) -> None:
    """Every cursor the state file named was the last entry of a batch answered 200 before it was read,
    with every entry before it answered 200 too."""
    position = {cursor: i for i, cursor in enumerate(order)}
    for read_at, cursor in samples:
        if cursor is None:
            continue
        answered = [r for r in requests if r["status"] == 200 and r["done"] < read_at]
        assert any(r["entries"][-1]["__CURSOR"] == cursor for r in answered), cursor
        acknowledged = {e["__CURSOR"] for r in answered for e in r["entries"]}
        assert set(order[: position[cursor] + 1]) <= acknowledged, f"saved {cursor} ahead of an unanswered batch"


def run_watched(server: Scripted, journal: Path, tmp: Path, *args: str) -> tuple[list[tuple[float, str | None]], str]:
    watcher = StateWatcher(tmp / "state")
    proc = run_agent(server.url, journal, tmp, *args)
    err = proc.communicate(timeout=60)[1]
    samples = watcher.stop()
    assert proc.returncode == 0, err
    return samples, err


class TestInFlight:
    @pytest.mark.parametrize("in_flight", [2, 3])
    def test_batches_overlap_up_to_the_window(self, in_flight: int, tmp_path: Path) -> None:
        journal = write_journal(sample_entries(60), tmp_path / "journal")
        order = [e["__CURSOR"] for e in journal_json(journal)]
        slow: ByBatch = {order[i]: [(200, {}, 0.4)] for i in range(0, 60, 10)}
        with serve([], by_batch=slow) as server:
            samples, _ = run_watched(server, journal, tmp_path, "--in-flight", str(in_flight))
        requests = server.requests
        assert sorted(e["__CURSOR"] for r in requests for e in r["entries"]) == sorted(order)  # each once
        most = max(sum(1 for o in requests if o["at"] <= r["at"] < o["done"]) for r in requests)
        assert most == in_flight
        assert_saved_in_order(samples, requests, order)
        assert samples[-1][1] == order[-1]

    def test_cursor_waits_for_an_older_batch_answered_late(self, journal: Path, tmp_path: Path) -> None:
        order = [e["__CURSOR"] for e in journal_json(journal)]
        with serve([], by_batch={order[0]: [(200, {}, 1.5)]}) as server:
            samples, _ = run_watched(server, journal, tmp_path, "--in-flight", "2")
        first, second, third = sorted(server.requests, key=lambda r: order.index(r["entries"][0]["__CURSOR"]))
        assert second["done"] < first["done"] - 1  # the second batch was acknowledged first
        # Its cursor was not saved meanwhile, and its slot stayed taken: the third batch waited.
        meanwhile = [cursor for read_at, cursor in samples if second["done"] < read_at < first["done"]]
        assert meanwhile and set(meanwhile) == {None}
        assert third["at"] > first["done"]
        assert_saved_in_order(samples, server.requests, order)
        assert samples[-1][1] == order[-1]

    def test_a_refused_batch_holds_the_window_and_its_retry_after(self, journal: Path, tmp_path: Path) -> None:
        order = [e["__CURSOR"] for e in journal_json(journal)]
        with serve([], by_batch={order[0]: [(503, {"Retry-After": "2"}, 0.0)]}) as server:
            samples, err = run_watched(server, journal, tmp_path, "--in-flight", "2")
        refused = next(r for r in server.requests if r["status"] == 503)
        others = [r for r in server.requests if r is not refused]
        # Nothing goes out while the first batch waits out its Retry-After but the second batch's first
        # attempt, if it was on its way before the agent read the 503.
        waiting = [r for r in others if refused["done"] <= r["at"] < refused["done"] + 1.9]
        assert len(waiting) <= 1 and all(r["entries"][0]["__CURSOR"] == order[10] for r in waiting), waiting
        retried = next(r for r in others if r["entries"] == refused["entries"])
        assert all(r["at"] >= retried["done"] for r in others if r["entries"][0]["__CURSOR"] == order[20])
        assert sorted(e["__CURSOR"] for r in others for e in r["entries"]) == sorted(order)  # each once
        assert_saved_in_order(samples, server.requests, order)
        assert samples[-1][1] == order[-1]
        assert "HTTP 503" in err and "retrying in 2.0 s" in err
