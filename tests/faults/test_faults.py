"""Faults under a running agent: PostgreSQL crashed mid-stream, PostgreSQL down for 20 s, the
service SIGKILLed mid-batch. Each ends with every entry stored once, and (for the database faults)
the same service process answering again, with no 500 and no traceback in its log.

Real parts throughout: the agent program (system python3, stdlib only) reading journal files that
systemd-journal-remote wrote, the service as its own process, and a PostgreSQL server the test
crashes, stops and starts (``support.pgserver``).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from conftest import LiveService, free_port
from journal_files import journal_json, sample_entries, write_journal
from support.pgserver import PgServer

AGENT = Path(__file__).resolve().parents[2] / "agent" / "vmjournal_agent.py"
PYTHON = "/usr/bin/python3"  # the system interpreter with nothing installed, as on a fresh VM

pytestmark = pytest.mark.usefixtures("journal_tools")


def stored_cursors(database_url: str, name: str) -> list[str]:
    async def query() -> list[str]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT e.cursor FROM journal_event e JOIN vm ON vm.id = e.vm_id WHERE vm.name = $1", name
            )
            return [r["cursor"] for r in rows]
        finally:
            await conn.close()

    return asyncio.run(query())


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.2)


def enroll(url: str, name: str) -> str:
    response = httpx.post(f"{url}/vm/{name}/small", params={"provider": "external"}, timeout=30)
    assert response.status_code == 202, response.text
    token: str = response.json()["token"]
    return token


class AgentProcess:
    """The real agent following a journal directory; its token only in its config file."""

    def __init__(self, tmp: Path, url: str, name: str, token: str, directory: Path, batch: int) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.log_path = tmp / "agent.log"
        config = tmp / "agent.conf"
        config.write_text(f"url = {url}\nname = {name}\ntoken = {token}\n")
        config.chmod(0o600)
        argv = [PYTHON, str(AGENT), "--config", str(config), "--state-file", str(tmp / "state"), "-v",
                "--directory", str(directory), "--batch-entries", str(batch), "--flush-seconds", "0.2"]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    made: list[AgentProcess] = []

    def start(url: str, name: str, token: str, directory: Path, batch: int = 200) -> AgentProcess:
        agent = AgentProcess(tmp_path / f"agent{len(made)}", url, name, token, directory, batch)
        made.append(agent)
        return agent

    yield start
    for agent in made:
        agent.stop()


@pytest.fixture
def own_pg() -> Iterator[PgServer]:
    server = PgServer()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def service_on(tmp_path: Path) -> Iterator[Callable[[str], LiveService]]:
    """The service as its own process on a given database (the fixture's own PostgreSQL)."""
    started: list[LiveService] = []

    def start(database_url: str) -> LiveService:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VMJOURNAL_")}
        env |= {"VMJOURNAL_DATABASE_URL": database_url, "VMJOURNAL_DATA_DIR": str(tmp_path / "data"),
                "VMJOURNAL_PORT": str(free_port()), "VMJOURNAL_PROVIDER": "test"}
        svc = LiveService(env, tmp_path / f"service-{len(started)}.log", slow_seconds=3.0)
        started.append(svc)
        return svc.start()

    yield start
    for svc in started:
        svc.stop()


class Prober:
    """Asks the service something that needs the database, every 0.3 s, and keeps every status."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                for path in ("/healthz", "/vm"):
                    response = client.get(path)
                    self.answers.append((response.status_code, response.headers.get("retry-after")))
                self._stop.wait(0.3)

    def stop(self) -> list[tuple[int, str | None]]:
        self._stop.set()
        self._thread.join(15)
        return self.answers


def assert_clean_log(log: str) -> None:
    """No traceback and no 500 anywhere in the service's log; the outage logged once each way."""
    assert "Traceback" not in log, log[-5000:]
    assert not re.search(r'HTTP/1\.1" 5\d\d(?<!503)', log), "a 5xx other than 503 was answered"
    assert log.count("database unavailable") == 1, log[-5000:]
    assert log.count("database is back") == 1, log[-5000:]


def expected_cursors(directory: Path) -> set[str]:
    out = subprocess.run(["journalctl", "-D", str(directory), "-o", "json", "--all", "--output-fields=__CURSOR"],
                         capture_output=True, check=True).stdout
    import json

    return {json.loads(line)["__CURSOR"] for line in out.splitlines()}


class TestDatabaseFaults:
    def test_postgres_crash_mid_stream(
        self, own_pg: PgServer, service_on: Callable[[str], LiveService], agents: Callable[..., AgentProcess],
        tmp_path: Path,
    ) -> None:
        started = time.monotonic()
        total = 30_000
        db_url = own_pg.url("vmjournal")
        svc = service_on(db_url)
        pid = svc.proc.pid if svc.proc else 0
        token = enroll(svc.url, "crash")
        directory = tmp_path / "journal"
        path = write_journal(sample_entries(total), directory)
        agent = agents(svc.url, "crash", token, directory, batch=200)

        wait_until(lambda: len(stored_cursors(db_url, "crash")) >= 2000, 60, "the first batches")
        before = len(stored_cursors(db_url, "crash"))
        own_pg.stop("immediate")  # a crash: no shutdown checkpoint, clients cut off mid-statement
        assert before < total, "the crash must land mid-stream"
        prober = Prober(svc.url)
        time.sleep(4)
        own_pg.start()  # crash recovery
        wait_until(lambda: len(stored_cursors(db_url, "crash")) >= total, 120, "every entry")
        answers = prober.stop()

        stored = stored_cursors(db_url, "crash")
        assert len(stored) == total and set(stored) == {e["__CURSOR"] for e in journal_json(path)}
        assert (503, "5") in answers and all(status in (200, 503) for status, _ in answers), answers
        assert svc.proc is not None and svc.proc.pid == pid and svc.proc.poll() is None
        assert httpx.get(f"{svc.url}/vm/crash", timeout=10).json()["event_count"] == total
        assert "HTTP 503" in agent.log() or "failed" in agent.log()
        assert_clean_log(svc.log())
        print(f"\nfault: PostgreSQL crash mid-stream: {time.monotonic() - started:.1f} s", file=sys.stderr)  # noqa: T201 - the duration goes in the report

    def test_postgres_down_20s_under_a_running_agent(
        self, own_pg: PgServer, service_on: Callable[[str], LiveService], agents: Callable[..., AgentProcess],
        tmp_path: Path,
    ) -> None:
        started = time.monotonic()
        db_url = own_pg.url("vmjournal")
        svc = service_on(db_url)
        pid = svc.proc.pid if svc.proc else 0
        token = enroll(svc.url, "down")
        directory = tmp_path / "journal"
        entries = sample_entries(3000)
        write_journal(entries, directory)
        agent = agents(svc.url, "down", token, directory, batch=200)
        wait_until(lambda: len(stored_cursors(db_url, "down")) >= 3000, 60, "the journal so far")

        own_pg.stop("fast")
        prober = Prober(svc.url)
        # Written while the database is down: the agent must keep them until it gets a 2xx.
        boot = entries[-1]["_BOOT_ID"]
        later = [{**e, "_BOOT_ID": boot, "__MONOTONIC_TIMESTAMP": str(90_000_000 + i)}
                 for i, e in enumerate(sample_entries(500, boots=1, seed=9, start_us=1_765_000_000_000_000))]
        write_journal(later, directory, "later")
        time.sleep(20)
        during = list(prober.answers)
        own_pg.start()
        wait_until(lambda: len(stored_cursors(db_url, "down")) >= 3500, 60, "the entries written during the outage")
        answers = prober.stop()

        stored = stored_cursors(db_url, "down")
        assert len(stored) == 3500 and set(stored) == expected_cursors(directory)
        assert len(during) >= 20 and all(a == (503, "5") for a in during), during
        assert all(status in (200, 503) for status, _ in answers) and answers[-1][0] == 200
        assert svc.proc is not None and svc.proc.pid == pid and svc.proc.poll() is None
        assert "HTTP 503" in agent.log() and "database_unavailable" in agent.log()
        assert_clean_log(svc.log())
        print(f"\nfault: PostgreSQL down 20 s: {time.monotonic() - started:.1f} s", file=sys.stderr)  # noqa: T201 - the duration goes in the report


class TestServiceFaults:
    def test_service_sigkilled_mid_batch_then_restarted(
        self, database_url: str, service_on: Callable[[str], LiveService], agents: Callable[..., AgentProcess],
        tmp_path: Path,
    ) -> None:
        started = time.monotonic()
        total = 30_000
        svc = service_on(database_url)
        token = enroll(svc.url, "killed")
        directory = tmp_path / "journal"
        path = write_journal(sample_entries(total), directory)
        # Large batches: the service spends most of its time inside one, so the kill lands mid-batch.
        agent = agents(svc.url, "killed", token, directory, batch=1000)

        wait_until(lambda: len(stored_cursors(database_url, "killed")) >= 3000, 60, "the first batches")
        svc.kill()
        before = len(stored_cursors(database_url, "killed"))
        assert before < total, "the kill must land mid-stream"
        time.sleep(2)  # the agent retries against a closed port
        svc.start()
        wait_until(lambda: len(stored_cursors(database_url, "killed")) >= total, 120, "every entry")

        stored = stored_cursors(database_url, "killed")
        assert len(stored) == total and set(stored) == {e["__CURSOR"] for e in journal_json(path)}
        assert agent.proc.poll() is None
        assert "Traceback" not in svc.log()
        print(f"\nfault: service SIGKILL mid-batch: {time.monotonic() - started:.1f} s", file=sys.stderr)  # noqa: T201 - the duration goes in the report
