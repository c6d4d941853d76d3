"""The ``vmjournal`` command as a user runs it: a subprocess against the service running as its own
process, with the test provider. Output is piped here, so it must be plain; one test uses a pty."""

from __future__ import annotations

import json
import os
import pty
import queue
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.api import bearer, enroll_sync
from support.journal_files import journal_json, sample_entries, write_journal
from support.service import LiveService

VMJOURNAL = Path(sys.executable).parent / "vmjournal"
ANSI = b"\x1b["


def cli_env(svc: LiveService | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMJOURNAL_") and k != "NO_COLOR"}
    return env | {"TZ": "UTC"} | ({"VMJOURNAL_URL": svc.url} if svc else {}) | extra


def run(svc: LiveService | None, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(VMJOURNAL), *args], env=cli_env(svc, **env), capture_output=True, timeout=timeout)


def ingest(svc: LiveService, name: str, token: str, entries: Sequence[Mapping[str, Any]]) -> None:
    response = httpx.post(f"{svc.url}/vm/{name}/boot", json=list(entries), headers=bearer(token), timeout=30)
    assert response.status_code == 200, response.text


def entry(i: int, message: str, unit: str = "ssh.service", priority: int = 6) -> dict[str, str]:
    return {
        "__CURSOR": f"s=cli;i={i}",
        "__REALTIME_TIMESTAMP": str(int(time.time() * 1e6) + i),
        "_BOOT_ID": "0f5e3c4b8a6d4e2f9b1c7d8e6f5a4b3c",
        "_SYSTEMD_UNIT": unit,
        "PRIORITY": str(priority),
        "SYSLOG_IDENTIFIER": unit.split(".")[0],
        "_PID": "42",
        "_HOSTNAME": "guest",
        "MESSAGE": message,
    }


class Lines:
    """A running CLI whose stdout lines can be awaited with a timeout."""

    def __init__(self, svc: LiveService, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(VMJOURNAL), *args], env=cli_env(svc), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.seen: list[bytes] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, predicate: Callable[[bytes], bool], timeout: float = 20) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no matching line in {timeout}s; saw {self.seen!r}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def svc(live_service: Callable[..., LiveService]) -> LiveService:
    return live_service(slow_seconds=0.6)


class TestVMCommands:
    def test_create_shows_progress_and_first_lines_then_list_show_delete(self, svc: LiveService) -> None:
        create = subprocess.Popen(
            [str(VMJOURNAL), "vm", "create", "slow-web", "--size", "small", "--poll", "0.2", "--lines-wait", "30"],
            env=cli_env(svc),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # The test provider hands the agent its token at its last step, as a config drive would.
        token_file = svc.provider.token_file("slow-web")
        deadline = time.monotonic() + 30
        while not token_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        ingest(svc, "slow-web", token_file.read_text(), [entry(1, "Server listening on 0.0.0.0 port 22.")])
        out, err = create.communicate(timeout=60)
        assert create.returncode == 0, err
        text = out.decode()
        assert ANSI not in out
        order = [
            "slow-web: requested (small, test)",
            "slow-web: provisioning (allocate)",
            "slow-web: provisioning (boot)",
            "slow-web: provisioning (install-agent)",
            "slow-web: running",
            "guest ssh[42]: Server listening on 0.0.0.0 port 22.",
            "slow-web is running (loopback 127.0.0.1)",
        ]
        positions = [text.find(s) for s in order]
        assert all(p >= 0 for p in positions) and positions == sorted(positions), text

        listed = run(svc, "vm", "list")
        assert listed.returncode == 0 and ANSI not in listed.stdout
        header, row = listed.stdout.decode().splitlines()
        assert header.split() == ["NAME", "STATUS", "SIZE", "PROVIDER", "EVENTS", "LAST_EVENT", "CREATED"]
        assert row.split()[:5] == ["slow-web", "running", "small", "test", "1"]
        as_json = json.loads(run(svc, "vm", "list", "--json").stdout)
        assert [vm["name"] for vm in as_json] == ["slow-web"]

        shown = run(svc, "vm", "show", "slow-web")
        assert shown.returncode == 0 and ANSI not in shown.stdout
        fields = dict(line.split(": ", 1) for line in shown.stdout.decode().splitlines())
        assert fields["status"] == "running" and fields["event_count"] == "1" and fields["provider"] == "test"
        assert json.loads(run(svc, "vm", "show", "slow-web", "--json").stdout)["addresses"] == {"loopback": "127.0.0.1"}

        deleted = run(svc, "vm", "delete", "slow-web", "--poll", "0.2")
        assert deleted.returncode == 0, deleted.stderr
        assert "slow-web: deleting" in deleted.stdout.decode() and "slow-web: deleted" in deleted.stdout.decode()
        gone = run(svc, "vm", "show", "slow-web")
        assert gone.returncode == 3 and b"no VM named 'slow-web'" in gone.stderr

    def test_exit_codes(self, svc: LiveService) -> None:
        failed = run(svc, "vm", "create", "fail-db", "--poll", "0.2")
        assert failed.returncode == 4
        assert b"VM fail-db failed: TestBootFailure: the guest did not boot (details: NoBootDevice)" in failed.stderr
        assert run(svc, "vm", "create", "fail-db").returncode == 7
        assert run(svc, "vm", "show", "nope").returncode == 3
        assert run(svc, "logs", "nope").returncode == 3
        assert run(svc, "logs", "fail-db", "-o", "xml").returncode == 2
        unreachable = run(None, "vm", "list", "--url", "http://127.0.0.1:9")
        assert unreachable.returncode == 5 and b"cannot reach the vmjournal service" in unreachable.stderr
        help_text = run(None, "--help").stdout.decode()
        assert "Exit codes: 0 success" in help_text and "5 service unreachable" in help_text

    def test_api_key_from_the_environment(self, live_service: Callable[..., LiveService]) -> None:
        svc = live_service(VMJOURNAL_API_KEYS="k-one,k-two")
        refused = run(svc, "vm", "list")
        assert refused.returncode == 6 and b"VMJOURNAL_API_KEY" in refused.stderr
        assert run(svc, "vm", "list", VMJOURNAL_API_KEY="wrong").returncode == 6
        assert run(svc, "vm", "list", VMJOURNAL_API_KEY="k-two").returncode == 0


def parse_export(data: bytes) -> list[dict[str, tuple[str, bytes]]]:
    """Journal Export Format into entries of field -> (form, value); field order is not significant."""
    entries: list[dict[str, tuple[str, bytes]]] = []
    current: dict[str, tuple[str, bytes]] = {}
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        if not line:
            entries.append(current)
            current = {}
            pos = end + 1
        elif b"=" in line:
            name, value = line.split(b"=", 1)
            current[name.decode()] = ("text", value)
            pos = end + 1
        else:
            (size,) = struct.unpack("<Q", data[end + 1 : end + 9])
            current[line.decode()] = ("binary", data[end + 9 : end + 9 + size])
            pos = end + 9 + size + 1
    return entries


JOURNALCTL_CASES = [
    ["-o", "short"],
    ["-o", "short-iso"],
    ["-o", "cat"],
    ["-u", "nginx"],
    ["-u", "nginx", "-p", "warning", "-o", "short-iso"],
    ["-p", "err", "-b", "-1"],
    ["-b", "-n", "5"],
    ["-S", "2025-11-24 16:00:00.2", "-U", "2025-11-24 16:00:00.25"],
    ["-g", "hello 1[0-9]", "-o", "cat"],
    ["-r", "-n", "7"],
    ["-u", "ssh", "-n", "3", "-r", "-o", "short-iso"],
]


class TestLogs:
    def test_output_matches_journalctl_on_the_same_journal(
        self, svc: LiveService, tmp_path: Path, journal_tools: None
    ) -> None:
        # More entries than one server page (1000), so paging cannot hide behind the comparison.
        journal = write_journal(sample_entries(1500, boots=2), tmp_path / "journal", "guest")
        # Pushed into the service the way the agent does it.
        ingest(svc, "guest", enroll_sync(svc.url, "guest"), journal_json(journal))
        for args in JOURNALCTL_CASES:
            expected = subprocess.run(
                ["journalctl", f"--file={journal}", "--no-pager", *args],
                env=cli_env(None),
                capture_output=True,
                check=True,
            ).stdout
            got = run(svc, "logs", "guest", *args)
            assert got.returncode == 0, (args, got.stderr)
            assert expected.count(b"\n") > 1, args
            assert got.stdout == expected, args

        # journalctl's own field order changes from run to run, so entries are compared as mappings.
        for args in (["-u", "nginx"], ["-p", "err"]):
            want = subprocess.run(
                ["journalctl", f"--file={journal}", "-o", "json", *args], capture_output=True, check=True
            ).stdout
            got = run(svc, "logs", "guest", "-o", "json", *args)
            assert [json.loads(x) for x in got.stdout.splitlines()] == [json.loads(x) for x in want.splitlines()]
            want_export = subprocess.run(
                ["journalctl", f"--file={journal}", "-o", "export", *args], capture_output=True, check=True
            ).stdout
            got_export = run(svc, "logs", "guest", "-o", "export", *args).stdout
            assert got_export.startswith(b"__CURSOR=")
            assert parse_export(got_export) == parse_export(want_export)
            assert any(form == "binary" for e in parse_export(got_export) for form, _ in e.values())

    def test_follow_prints_an_entry_ingested_after_it_started(self, svc: LiveService) -> None:
        token = enroll_sync(svc.url, "tail")
        ingest(svc, "tail", token, [entry(i, f"old {i}") for i in range(5)])
        follower = Lines(svc, "logs", "tail", "-f", "-n", "2", "-u", "ssh")
        try:
            follower.wait_for(lambda line: b"old 4" in line)
            assert [line.split(b": ", 1)[1] for line in follower.seen] == [b"old 3\n", b"old 4\n"]
            ingest(svc, "tail", token, [entry(10, "nginx news", unit="nginx.service"), entry(11, "ssh news")])
            line = follower.wait_for(lambda line: b"news" in line)
            assert line.endswith(b"guest ssh[42]: ssh news\n") and ANSI not in line
        finally:
            follower.stop()

        # On a terminal the same command colours by priority, as journalctl does.
        ingest(svc, "tail", token, [entry(12, "broken", priority=3)])
        primary, secondary = pty.openpty()
        proc = subprocess.Popen(
            [str(VMJOURNAL), "logs", "tail", "-n", "1"],
            env=cli_env(svc, TERM="xterm"),
            stdout=secondary,
            stderr=subprocess.PIPE,
        )
        os.close(secondary)
        out = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(primary)
        assert proc.wait(10) == 0
        assert b"\x1b[1;31m" in out and b"broken" in out
