"""``vmjournal logs`` over several VMs and ``vmjournal stats``, run as a user runs them."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.api import enroll_sync
from support.journal_files import journal_json, sample_entries, write_journal
from support.service import LiveService
from test_cli import cli_env, ingest, run


@pytest.fixture
def svc(live_service: Callable[..., LiveService]) -> Iterator[LiveService]:
    yield live_service()


def hosted(name: str, offset_us: int) -> list[dict[str, str | bytes]]:
    return [
        {**e, "_HOSTNAME": name, "__REALTIME_TIMESTAMP": str(1_764_000_000_000_000 + offset_us + i * 40_000)}
        for i, e in enumerate(sample_entries(400, boots=1, seed=len(name)))
    ]


class TestFleetCommands:
    def test_logs_with_a_glob_and_stats(self, svc: LiveService, tmp_path: Path, journal_tools: None) -> None:
        paths = []
        for n, name in enumerate(["web-1", "web-22", "db-1"]):
            path = write_journal(hosted(name, n * 13_000), tmp_path / name)
            ingest(svc, name, enroll_sync(svc.url, name), journal_json(path))
            paths.append(path)
        expected = subprocess.run(
            ["journalctl", f"--file={paths[0]}", f"--file={paths[1]}", "--no-pager", "-q", "-p", "err"],
            env=cli_env(None),
            capture_output=True,
            check=True,
        ).stdout
        got = run(svc, "logs", "web-*", "-p", "err")
        assert got.returncode == 0, got.stderr
        assert expected.count(b"\n") > 5 and got.stdout == expected
        # Two names read the same merge.
        assert run(svc, "logs", "web-1", "web-22", "-p", "err").stdout == expected
        # The last 3 of the fleet.
        assert run(svc, "logs", "web-*", "-p", "err", "-n", "3").stdout == b"".join(expected.splitlines(True)[-3:])

        piped = run(svc, "stats", "web-*", "--step", "1m")
        assert piped.returncode == 0, piped.stderr
        lines = piped.stdout.decode().splitlines()
        assert lines[0].split("\t") == [
            "start",
            "total",
            "emerg",
            "alert",
            "crit",
            "err",
            "warning",
            "notice",
            "info",
            "debug",
        ]
        rows = [line.split("\t") for line in lines[1:]]
        assert sum(int(r[1]) for r in rows) == 800
        assert all(int(r[1]) == sum(int(c) for c in r[2:]) for r in rows)
        errors = run(svc, "stats", "db-1", "-p", "err").stdout.decode().splitlines()[1:]
        assert sum(int(r.split("\t")[1]) for r in errors) == len(journal_json(paths[2], "-p", "err"))
        assert run(svc, "stats", "nope").returncode == 3
