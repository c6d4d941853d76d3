"""Faults under a running agent: PostgreSQL crashed mid-stream, PostgreSQL down for 20 s, the
service SIGKILLed mid-batch. Each ends with every entry stored once, and (for the database faults)
the same service process answering again, with no 500 and no traceback in its log.

Real parts throughout: the agent program (system python3, stdlib only) reading journal files that
systemd-journal-remote wrote, the service as its own process, and a PostgreSQL server the test
crashes, stops and starts (``support.pgserver``).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
from support.agent import Agent
from support.api import enroll_sync, wait_until
from support.journal_files import journal_json, sample_entries, write_journal
from support.pgserver import PgServer
from support.service import LiveService

from vmjournal.journal import layout, store

pytestmark = pytest.mark.usefixtures("journal_tools")


def stored_cursors(database_url: str, name: str) -> list[str]:
    async def query() -> list[str]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                f"SELECT {store.EVENT_COLUMNS} FROM journal_event WHERE vm_id = (SELECT id FROM vm WHERE name = $1)",
                name,
            )
            return [layout.assemble(r)["__CURSOR"] for r in rows]
        finally:
            await conn.close()

    return asyncio.run(query())


def follow(agent: Agent, batch: int) -> Agent:
    """Start the agent following its journal directory, ``batch`` entries a request."""
    agent.start("--batch-entries", str(batch), "--flush-seconds", "0.2")
    return agent


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
    out = subprocess.run(
        ["journalctl", "-D", str(directory), "-o", "json", "--all", "--output-fields=__CURSOR"],
        capture_output=True,
        check=True,
    ).stdout
    return {json.loads(line)["__CURSOR"] for line in out.splitlines()}


class TestDatabaseFaults:
    def test_postgres_crash_mid_stream(
        self,
        own_pg: PgServer,
        live_service: Callable[..., LiveService],
        agent_factory: Callable[..., Agent],
        tmp_path: Path,
    ) -> None:
        started = time.monotonic()
        total = 30_000
        db_url = own_pg.url("vmjournal")
        svc = live_service(VMJOURNAL_DATABASE_URL=db_url)
        pid = svc.proc.pid if svc.proc else 0
        token = enroll_sync(svc.url, "crash")
        directory = tmp_path / "journal"
        path = write_journal(sample_entries(total), directory)
        agent = follow(agent_factory(svc.url, "crash", token, ["--directory", str(directory)]), batch=200)

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
        self,
        own_pg: PgServer,
        live_service: Callable[..., LiveService],
        agent_factory: Callable[..., Agent],
        tmp_path: Path,
    ) -> None:
        started = time.monotonic()
        db_url = own_pg.url("vmjournal")
        svc = live_service(VMJOURNAL_DATABASE_URL=db_url)
        pid = svc.proc.pid if svc.proc else 0
        token = enroll_sync(svc.url, "down")
        directory = tmp_path / "journal"
        entries = sample_entries(3000)
        write_journal(entries, directory)
        agent = follow(agent_factory(svc.url, "down", token, ["--directory", str(directory)]), batch=200)
        wait_until(lambda: len(stored_cursors(db_url, "down")) >= 3000, 60, "the journal so far")

        own_pg.stop("fast")
        prober = Prober(svc.url)
        # Written while the database is down: the agent must keep them until it gets a 2xx.
        boot = entries[-1]["_BOOT_ID"]
        later = [
            {**e, "_BOOT_ID": boot, "__MONOTONIC_TIMESTAMP": str(90_000_000 + i)}
            for i, e in enumerate(sample_entries(500, boots=1, seed=9, start_us=1_765_000_000_000_000))
        ]
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
        self,
        database_url: str,
        live_service: Callable[..., LiveService],
        agent_factory: Callable[..., Agent],
        tmp_path: Path,
    ) -> None:
        started = time.monotonic()
        total = 30_000
        svc = live_service()
        token = enroll_sync(svc.url, "killed")
        directory = tmp_path / "journal"
        path = write_journal(sample_entries(total), directory)
        # Large batches: the service spends most of its time inside one, so the kill lands mid-batch.
        agent = follow(agent_factory(svc.url, "killed", token, ["--directory", str(directory)]), batch=1000)

        wait_until(lambda: len(stored_cursors(database_url, "killed")) >= 3000, 60, "the first batches")
        svc.kill()
        before = len(stored_cursors(database_url, "killed"))
        assert before < total, "the kill must land mid-stream"
        time.sleep(2)  # the agent retries against a closed port
        svc.start()
        wait_until(lambda: len(stored_cursors(database_url, "killed")) >= total, 120, "every entry")

        stored = stored_cursors(database_url, "killed")
        assert len(stored) == total and set(stored) == {e["__CURSOR"] for e in journal_json(path)}
        assert agent.runs[0].poll() is None
        assert "Traceback" not in svc.log()
        print(f"\nfault: service SIGKILL mid-batch: {time.monotonic() - started:.1f} s", file=sys.stderr)  # noqa: T201 - the duration goes in the report
