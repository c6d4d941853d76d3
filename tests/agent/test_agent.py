"""The real agent program (run by the system's python3, stdlib only) against the real service process,
reading real journal files written by systemd-journal-remote."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.agent import AGENT, PYTHON, Agent
from support.api import enroll_sync, wait_until
from support.journal_files import journal_json, sample_entries, write_journal

pytestmark = pytest.mark.usefixtures("journal_tools")


def stored_events(url: str, name: str) -> list[dict[str, Any]]:
    """Every stored event of the VM, as the original journal fields (derived lower-case keys dropped)."""
    events: list[dict[str, Any]] = []
    next_url: str | None = f"{url}/vm/{name}/boot?limit=10000"
    while next_url:
        response = httpx.get(next_url, timeout=30)
        assert response.status_code == 200, response.text
        events += response.json()["events"]
        link = response.headers.get("link")
        next_url = url + link[1 : link.index(">")] if link else None
    return [{k: v for k, v in e.items() if not k.islower()} for e in events]


def event_count(url: str, name: str) -> int:
    return len(stored_events(url, name))


def odd_entries(start: int) -> list[dict[str, str | bytes]]:
    base = {"_BOOT_ID": "0123456789abcdef0123456789abcdef", "_SYSTEMD_UNIT": "odd.service", "PRIORITY": "6"}
    rng = random.Random(3)
    odd: list[dict[str, str | bytes]] = [
        {"MESSAGE": "multi\nline\n\twith tab"},
        {"MESSAGE": b"latin-1 \xe9t\xe9 \xff"},
        {"MESSAGE": "long " + "x" * 6000, "BIG_FIELD": bytes(rng.getrandbits(8) for _ in range(9000))},
        {"MESSAGE": "repeated", "TAG": "a"},
    ]
    return [base | e | {"__REALTIME_TIMESTAMP": str(1_764_100_000_000_000 + start + i)} for i, e in enumerate(odd)]


def by_cursor(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {e["__CURSOR"]: e for e in entries}
    assert len(out) == len(entries), "duplicate cursors"
    return out


class TestOneShot:
    def test_every_entry_arrives_once_and_intact(
        self, live_service: Callable[..., Any], agent_factory: Callable[..., Agent], tmp_path: Path
    ) -> None:
        svc = live_service()
        token = enroll_sync(svc.url, "vm1")
        path = write_journal([*sample_entries(2500), *odd_entries(0)], tmp_path / "journal")
        expected = journal_json(path)
        agent = agent_factory(svc.url, "vm1", token, ["--file", str(path)])

        out = agent.once("--batch-entries", "300")
        assert "done: 2504 entries sent, 0 rejected" in out
        assert by_cursor(stored_events(svc.url, "vm1")) == by_cursor(expected)
        answers = agent.responses()
        assert sum(a["stored"] for a in answers) == 2504
        assert sum(a["duplicates"] for a in answers) == 0  # exactly once, not just deduplicated

        # A second run resumes after the saved cursor: nothing is sent again.
        out = agent.once()
        assert "done: 0 entries sent" in out
        assert len(agent.responses()) == len(answers)
        assert token not in out

    def test_bad_entry_is_reported_and_skipped(
        self, live_service: Callable[..., Any], agent_factory: Callable[..., Agent], tmp_path: Path
    ) -> None:
        # The service refuses bodies over 100 kB: one entry alone exceeds that, the rest must still arrive.
        svc = live_service(VMJOURNAL_MAX_BODY_BYTES="100000")
        token = enroll_sync(svc.url, "vm2")
        rng = random.Random(5)
        huge = {
            **sample_entries(1)[0],
            "MESSAGE": rng.randbytes(120_000).hex(),
            "__REALTIME_TIMESTAMP": "1764000000050500",
        }
        entries = sample_entries(100)
        path = write_journal([*entries[:50], huge, *entries[50:]], tmp_path / "journal")
        agent = agent_factory(svc.url, "vm2", token, ["--file", str(path)])

        out = agent.once("--batch-entries", "40")
        assert "done: 100 entries sent, 1 rejected" in out
        assert re.search(r"service rejected entry s=\S+ \(HTTP 413", out), out
        stored = stored_events(svc.url, "vm2")
        assert len(stored) == 100
        assert all(len(e["MESSAGE"]) < 1000 for e in stored)


class TestFollow:
    def test_service_outage_mid_stream(
        self, live_service: Callable[..., Any], agent_factory: Callable[..., Agent], tmp_path: Path
    ) -> None:
        svc = live_service()
        token = enroll_sync(svc.url, "vm3")
        directory = tmp_path / "journal"
        entries = sample_entries(4000)
        write_journal(entries, directory)
        agent = agent_factory(svc.url, "vm3", token, ["--directory", str(directory)])
        agent.start("--batch-entries", "100", "--flush-seconds", "0.2")

        wait_until(lambda: event_count(svc.url, "vm3") >= 200, 60, "the first batches")
        svc.stop()
        time.sleep(3)  # the agent keeps retrying against a closed port
        svc.start()
        wait_until(lambda: event_count(svc.url, "vm3") >= 4000, 90, "all 4000 entries")

        # Entries written later, into a new file as after a rotation, arrive too (same boot, later times).
        boot = entries[-1]["_BOOT_ID"]
        later = [
            {**e, "_BOOT_ID": boot, "__MONOTONIC_TIMESTAMP": str(90_000_000 + i)}
            for i, e in enumerate(sample_entries(50, boots=1, seed=9, start_us=1_765_000_000_000_000))
        ]
        write_journal(later, directory, "more")
        out = subprocess.run(
            ["journalctl", "-D", str(directory), "-o", "json", "--all"], capture_output=True, check=True
        ).stdout
        expected = [json.loads(line) for line in out.splitlines()]
        wait_until(lambda: event_count(svc.url, "vm3") >= 4050, 30, "entries written later")
        assert by_cursor(stored_events(svc.url, "vm3")) == by_cursor(expected)
        log = agent.logs[0].read_text()
        assert "sending 100 entries failed" in log or "failed" in log
        assert agent.runs[0].poll() is None
        agent.runs[0].send_signal(signal.SIGTERM)
        assert agent.runs[0].wait(10) == 0

    @pytest.mark.parametrize("in_flight", [1, 2])
    def test_sigkill_mid_batch_then_restart(
        self, in_flight: int, live_service: Callable[..., Any], agent_factory: Callable[..., Agent], tmp_path: Path
    ) -> None:
        # Enough entries that the kill lands mid-stream even on a fast, idle machine.
        TOTAL = 20_000  # noqa: N806
        svc = live_service()
        token = enroll_sync(svc.url, "vm4")
        directory = tmp_path / "journal"
        path = write_journal(sample_entries(TOTAL), directory)
        agent = agent_factory(svc.url, "vm4", token, ["--directory", str(directory)])
        batch = 250
        args = ("--batch-entries", str(batch), "--flush-seconds", "0.2", "--in-flight", str(in_flight))
        first = agent.start(*args)

        wait_until(lambda: event_count(svc.url, "vm4") >= 500, 60, "the first batches")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert 500 <= event_count(svc.url, "vm4") < TOTAL, "the kill must land mid-stream"
        agent.start(*args)
        wait_until(lambda: event_count(svc.url, "vm4") >= TOTAL, 120, "every entry")
        time.sleep(1)

        expected = {e["__CURSOR"] for e in journal_json(path)}
        assert set(by_cursor(stored_events(svc.url, "vm4"))) == expected
        # At-least-once across a crash: at most the batches in flight are sent twice (and not stored
        # twice); their answers may have been lost with the killed agent.
        answers = agent.responses()
        assert TOTAL - in_flight * batch <= sum(a["stored"] for a in answers) <= TOTAL
        assert sum(a["duplicates"] for a in answers) <= in_flight * batch


def stored_count(url: str, name: str) -> int:
    count: int = httpx.get(f"{url}/vm/{name}", timeout=30).json()["event_count"]
    return count


def saved_cursor(agent: Agent) -> str | None:
    lines = agent.state.read_text().splitlines() if agent.state.exists() else []
    return next((line[len("LAST_CURSOR=") :] for line in lines if line.startswith("LAST_CURSOR=")), None)


def assert_cursor_behind_acknowledged(cursor: str | None, order: list[str], stored: set[str], window: int) -> None:
    """The saved cursor names an entry with every entry up to it stored, and at most ``window``
    entries stored after it (the batches acknowledged, or stored with their answer lost, but not saved)."""
    upto = order.index(cursor) + 1 if cursor else 0
    assert set(order[:upto]) <= stored, "the saved cursor ran ahead of an unacknowledged batch"
    assert len(stored - set(order[:upto])) <= window


class TestInFlight:
    """Two batches in flight (the default) against the real service."""

    def test_every_entry_is_stored_once(
        self, live_service: Callable[..., Any], agent_factory: Callable[..., Agent], tmp_path: Path
    ) -> None:
        svc = live_service()
        token = enroll_sync(svc.url, "pipe1")
        path = write_journal([*sample_entries(6000), *odd_entries(0)], tmp_path / "journal")
        agent = agent_factory(svc.url, "pipe1", token, ["--file", str(path)])

        out = agent.once("--batch-entries", "200", "--in-flight", "2")
        assert "done: 6004 entries sent, 0 rejected" in out
        assert "(2 batches in flight)" in out and "(3 batches in flight)" not in out
        assert by_cursor(stored_events(svc.url, "pipe1")) == by_cursor(journal_json(path))
        answers = agent.responses()
        assert sum(a["stored"] for a in answers) == 6004
        assert sum(a["duplicates"] for a in answers) == 0
        assert saved_cursor(agent) == journal_json(path)[-1]["__CURSOR"]

    def test_cursor_stays_behind_when_the_service_is_killed(
        self, live_service: Callable[..., Any], agent_factory: Callable[..., Agent], tmp_path: Path
    ) -> None:
        total, batch = 20_000, 250
        svc = live_service()
        token = enroll_sync(svc.url, "pipe2")
        path = write_journal(sample_entries(total), tmp_path / "journal")
        order = [e["__CURSOR"] for e in journal_json(path)]
        agent = agent_factory(svc.url, "pipe2", token, ["--directory", str(path.parent)])
        proc = agent.start("--batch-entries", str(batch), "--flush-seconds", "0.2", "--in-flight", "2")

        wait_until(lambda: stored_count(svc.url, "pipe2") >= 2000, 60, "the first batches")
        svc.kill()
        time.sleep(1.5)  # every request in flight fails; nothing can be acknowledged any more
        proc.send_signal(signal.SIGSTOP)  # frozen while the service comes back to be asked what it holds
        try:
            cursor = saved_cursor(agent)
            svc.start()
            stored = set(by_cursor(stored_events(svc.url, "pipe2")))
        finally:
            proc.send_signal(signal.SIGCONT)
        assert len(stored) < total, "the kill must land mid-stream"
        assert_cursor_behind_acknowledged(cursor, order, stored, 2 * batch)

        wait_until(lambda: stored_count(svc.url, "pipe2") >= total, 120, "every entry")
        assert set(by_cursor(stored_events(svc.url, "pipe2"))) == set(order)
        assert sum(a["duplicates"] for a in agent.responses()) <= 2 * batch
        wait_until(lambda: saved_cursor(agent) == order[-1], 30, "the last cursor saved")

    def test_cursor_stays_behind_when_the_token_is_revoked(
        self, live_service: Callable[..., Any], agent_factory: Callable[..., Agent], tmp_path: Path
    ) -> None:
        total, batch = 20_000, 250
        svc = live_service()
        token = enroll_sync(svc.url, "pipe3")
        path = write_journal(sample_entries(total), tmp_path / "journal")
        order = [e["__CURSOR"] for e in journal_json(path)]
        agent = agent_factory(svc.url, "pipe3", token, ["--directory", str(path.parent)])
        args = ("--batch-entries", str(batch), "--flush-seconds", "0.2", "--in-flight", "2")
        proc = agent.start(*args)

        wait_until(lambda: stored_count(svc.url, "pipe3") >= 1000, 60, "the first batches")
        rotated = httpx.post(f"{svc.url}/vm/pipe3/token", timeout=30)
        assert rotated.status_code == 200, rotated.text
        wait_until(lambda: re.search(r"HTTP 40[13]", agent.log()) is not None, 30, "the agent refused")
        time.sleep(2)  # the other batch in flight gets its answer too; then the agent waits 30-60 s
        cursor = saved_cursor(agent)
        stored = set(by_cursor(stored_events(svc.url, "pipe3")))
        assert len(stored) < total, "the revocation must land mid-stream"
        assert_cursor_behind_acknowledged(cursor, order, stored, 2 * batch)

        # The new token in its config and a restart, as an operator would: the rest arrives, once.
        agent.config.write_text(f"url = {svc.url}\nname = pipe3\ntoken = {rotated.json()['token']}\n")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert saved_cursor(agent) == cursor
        agent.start(*args)
        wait_until(lambda: stored_count(svc.url, "pipe3") >= total, 120, "every entry")
        assert set(by_cursor(stored_events(svc.url, "pipe3"))) == set(order)
        answers = agent.responses()
        assert sum(a["stored"] for a in answers) == total  # no answer was lost: each entry stored once
        assert sum(a["duplicates"] for a in answers) <= 2 * batch


class TestReboot:
    def test_end_of_previous_boot_is_not_lost(
        self, live_service: Callable[..., Any], agent_factory: Callable[..., Agent], tmp_path: Path
    ) -> None:
        # Boot A is shipped up to some point; then A's last entries (shutdown) and a whole new boot B
        # are written while no agent runs. The agent started in boot B must send both.
        svc = live_service()
        token = enroll_sync(svc.url, "vm5")
        directory = tmp_path / "journal"
        boot_a, boot_b = "a" * 32, "b" * 32

        def entries(boot: str, start: int, count: int, realtime: int) -> list[dict[str, str | bytes]]:
            return [
                {
                    **e,
                    "_BOOT_ID": boot,
                    "__MONOTONIC_TIMESTAMP": str(1_000_000 + (start + i) * 1000),
                    "__REALTIME_TIMESTAMP": str(realtime + (start + i) * 1000),
                }
                for i, e in enumerate(sample_entries(count, boots=1, seed=start + len(boot)))
            ]

        write_journal(entries(boot_a, 0, 100, 1_764_000_000_000_000), directory, "a1")
        agent = agent_factory(svc.url, "vm5", token, ["--directory", str(directory)])
        agent.once()
        assert event_count(svc.url, "vm5") == 100

        write_journal(entries(boot_a, 100, 40, 1_764_000_000_000_000), directory, "a2")
        write_journal(entries(boot_b, 0, 60, 1_764_100_000_000_000), directory, "b")
        agent.start("--flush-seconds", "0.2")
        wait_until(lambda: event_count(svc.url, "vm5") >= 200, 30, "the rest of boot A and boot B")
        time.sleep(1)
        stored = stored_events(svc.url, "vm5")
        assert len(by_cursor(stored)) == 200
        assert sum(1 for e in stored if e["_BOOT_ID"] == boot_a) == 140
        assert sum(a["duplicates"] for a in agent.responses()) == 0


class TestConfig:
    def test_help_documents_every_option(self) -> None:
        out = subprocess.run([PYTHON, str(AGENT), "--help"], capture_output=True, text=True, check=True).stdout
        for option in (
            "--url",
            "--name",
            "--token-file",
            "--state-file",
            "--directory",
            "--file",
            "--once",
            "--batch-entries",
            "--batch-bytes",
            "--flush-seconds",
            "-v",
            "--config",
        ):
            assert option in out

    def test_missing_token_is_a_clear_error(self, tmp_path: Path) -> None:
        result = subprocess.run(
            [
                PYTHON,
                str(AGENT),
                "--url",
                "http://127.0.0.1:9",
                "--name",
                "x",
                "--state-file",
                str(tmp_path / "s"),
                "--config",
                os.devnull,
                "--once",
            ],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2
        assert "no token" in result.stderr

    def test_token_file_and_state_lock(self, tmp_path: Path) -> None:
        token = tmp_path / "token"
        token.write_text("secret\n")
        argv = [
            PYTHON,
            str(AGENT),
            "--url",
            "http://127.0.0.1:9",
            "--name",
            "x",
            "--token-file",
            str(token),
            "--state-file",
            str(tmp_path / "s"),
            "--config",
            os.devnull,
            "--file",
            str(tmp_path / "none"),
        ]
        first = subprocess.Popen(argv, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: (tmp_path / "s").exists(), 10, "the state file")
            second = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            assert second.returncode == 2
            assert "another agent is using" in second.stderr
        finally:
            first.kill()
            first.wait()
