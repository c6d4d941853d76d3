"""``vmjournal logs`` with journalctl's matches, -k, -t, -F, --list-boots and output modes, and
``vmjournal wait``: the CLI as a subprocess against the service as its own process."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.api import enroll_sync
from support.habits import BLOB, journalctl, write_habits
from support.journal_files import journal_json
from support.service import LiveService
from test_cli import VMJOURNAL, cli_env, entry, ingest, run


@pytest.fixture
def svc(live_service: Callable[..., LiveService]) -> LiveService:
    return live_service(slow_seconds=0.6)


@pytest.fixture
def loaded(svc: LiveService, tmp_path: Path, journal_tools: None) -> tuple[LiveService, Path]:
    path = write_habits(tmp_path / "j")
    ingest(svc, "guest", enroll_sync(svc.url, "guest"), journal_json(path))
    return svc, path


CASES: list[list[str | bytes]] = [
    ["_SYSTEMD_UNIT=nginx.service", "_SYSTEMD_UNIT=cron.service", "PRIORITY=3"],
    ["TAG=two"],
    [b"BLOB=" + BLOB],
    ["-k"],
    ["-k", "-b", "-1", "-o", "short-monotonic"],
    ["-t", "nginx", "-t", "multi", "-o", "with-unit"],
    ["-o", "short-precise"],
    ["-o", "short-unix", "-r"],
    ["-o", "short-full", "-n", "30"],
    ["-o", "with-unit", "-u", "cron"],
    ["-o", "short"],
]


class TestLogsHabits:
    def test_same_output_as_journalctl(self, loaded: tuple[LiveService, Path]) -> None:
        svc, path = loaded
        for args in CASES:
            expected = journalctl(path, *args)
            assert expected.count(b"\n") > 1, args
            got = subprocess.run(
                [str(VMJOURNAL), "logs", "guest", *args], env=cli_env(svc), capture_output=True, timeout=60
            )
            assert got.returncode == 0, (args, got.stderr)
            assert got.stdout == expected, args
        # Both boots in one listing: journalctl's boot line between them.
        assert b"-- Boot " in run(svc, "logs", "guest").stdout

    def test_json_modes(self, loaded: tuple[LiveService, Path]) -> None:
        svc, path = loaded
        want = journalctl(path, "-o", "json-seq", "-u", "nginx")
        got = run(svc, "logs", "guest", "-o", "json-seq", "-u", "nginx").stdout
        assert [json.loads(r) for r in got.split(b"\x1e")[1:]] == [json.loads(r) for r in want.split(b"\x1e")[1:]]
        pretty = run(svc, "logs", "guest", "-o", "json-pretty", "-n", "2").stdout
        assert pretty.startswith(b'{\n\t"') and pretty.count(b"\n}\n") == 2
        verbose = run(svc, "logs", "guest", "-o", "verbose", "-n", "1").stdout.decode()
        assert verbose.splitlines()[0] == journalctl(path, "-o", "verbose", "-n", "1").decode().splitlines()[0]

    def test_fields_and_boots(self, loaded: tuple[LiveService, Path]) -> None:
        svc, path = loaded
        for field in ("_SYSTEMD_UNIT", "BLOB"):
            got = run(svc, "logs", "guest", "-F", field)
            assert got.returncode == 0
            assert sorted(got.stdout.splitlines()) == sorted(journalctl(path, "-F", field).splitlines())
        boots = run(svc, "logs", "guest", "--list-boots")
        assert boots.stdout == journalctl(path, "--list-boots")
        # In another time zone too, as journalctl prints it there.
        berlin = run(svc, "logs", "guest", "--list-boots", TZ="Europe/Berlin")
        assert b" CET " in berlin.stdout
        assert (
            berlin.stdout
            == subprocess.run(
                ["journalctl", f"--file={path}", "--no-pager", "--list-boots"],
                capture_output=True,
                env=cli_env(None, TZ="Europe/Berlin"),
                check=True,
            ).stdout
        )

    def test_bad_match(self, loaded: tuple[LiveService, Path]) -> None:
        svc, _ = loaded
        bad = run(svc, "logs", "guest", "lower=x")
        assert bad.returncode == 1 and b"FIELD=VALUE" in bad.stderr
        # A word without '=' is another VM's name (several VMs read the fleet): there is none of that name.
        unknown = run(svc, "logs", "guest", "plainword")
        assert unknown.returncode == 3 and b"plainword" in unknown.stderr


class TestWait:
    def test_prints_an_entry_stored_after_it_started(self, svc: LiveService) -> None:
        token = enroll_sync(svc.url, "ci")
        ingest(svc, "ci", token, [entry(1, "nginx ready (old)", unit="nginx.service")])
        waiter = subprocess.Popen(
            [str(VMJOURNAL), "wait", "ci", "-u", "nginx", "SYSLOG_IDENTIFIER=nginx", "-g", "ready", "--timeout", "60"],
            env=cli_env(svc),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            # The old entry matches but was stored before; the waiter must not take it.
            time.sleep(2)
            assert waiter.poll() is None
            ingest(
                svc,
                "ci",
                token,
                [
                    entry(2, "nginx ready (other unit)", unit="ssh.service"),
                    entry(3, "nginx ready", unit="nginx.service"),
                ],
            )
            out, err = waiter.communicate(timeout=30)
        finally:
            if waiter.poll() is None:
                waiter.kill()
        assert waiter.returncode == 0, err
        assert out.endswith(b"guest nginx[42]: nginx ready\n") and out.count(b"\n") == 1

    def test_since_takes_an_entry_already_stored(self, svc: LiveService) -> None:
        token = enroll_sync(svc.url, "ci2")
        ingest(svc, "ci2", token, [entry(i, f"boot step {i}") for i in range(3)])
        done = run(svc, "wait", "ci2", "-S", "-1h", "-g", "step", "--timeout", "20", "-o", "cat")
        assert done.returncode == 0, done.stderr
        assert done.stdout == b"boot step 0\n"

    def test_exits_8_at_the_timeout(self, svc: LiveService) -> None:
        token = enroll_sync(svc.url, "quiet")
        ingest(svc, "quiet", token, [entry(1, "nothing to see")])
        started = time.monotonic()
        done = run(svc, "wait", "quiet", "MESSAGE=never", "--timeout", "2")
        assert done.returncode == 8, done.stderr
        assert 2 <= time.monotonic() - started < 30
        assert b"within 2s" in done.stderr and done.stdout == b""
        assert run(svc, "wait", "nope", "--timeout", "5").returncode == 3


def test_help_lists_wait() -> None:
    assert (
        b"wait" in subprocess.run([str(VMJOURNAL), "--help"], capture_output=True, check=True, env=cli_env(None)).stdout
    )
