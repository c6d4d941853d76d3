"""A real journal file with what journalctl's matches and output modes care about: two boots, kernel
messages, repeated fields, binary and control-character values, source timestamps, user units."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from support.journal_files import JOURNAL_REMOTE, Entry, export_format, sample_entries

# Values of entries with a field repeated: journal-remote keeps every occurrence.
REPEATED: dict[int, list[tuple[str, str | bytes]]] = {
    5: [("TAG", "one"), ("TAG", "two")],
    9: [("TAG", "two"), ("TAG", b"\xff\x01")],
    # A client's PRIORITY twice: the column holds the first.
    13: [("PRIORITY", "3")],
}
BLOB = b"bin\xffval"
CONTROL = "a\x01b"


def habit_entries(count: int = 400) -> list[dict[str, str | bytes]]:
    entries = [dict(e) for e in sample_entries(count, boots=2, seed=11)]
    for i, entry in enumerate(entries):
        if i % 37 == 3:
            entry |= {
                "_TRANSPORT": "kernel",
                "SYSLOG_IDENTIFIER": "kernel",
                "MESSAGE": f"kernel line {i}",
                "_SOURCE_MONOTONIC_TIMESTAMP": str(5000 + i),
            }
        if i % 11 == 4:
            # journalctl shows the source time, seventeen microseconds before the journal's.
            entry["_SOURCE_REALTIME_TIMESTAMP"] = str(int(str(entry["__REALTIME_TIMESTAMP"])) - 17)
        if i % 13 == 6:
            entry["_SYSTEMD_USER_UNIT"] = "user-app.service"
        if i % 19 == 7:
            entry |= {"BLOB": BLOB, "CTL": CONTROL}
        if i % 23 == 8:
            entry["NOTE"] = "first\nsecond\n"
    return entries


def write_habits(directory: Path, entries: Sequence[Entry] | None = None) -> Path:
    """The entries (and the repeated fields above) as a journal file written by systemd-journal-remote."""
    entries = list(entries) if entries is not None else habit_entries()
    raw = bytearray()
    for i, entry in enumerate(entries):
        block = export_format([entry])[:-1]  # without the blank line that ends the entry
        for name, value in REPEATED.get(i, []):
            block += export_format([{name: value}])[:-1]
        raw += block + b"\n"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "habits.journal"
    subprocess.run(
        [JOURNAL_REMOTE, f"--output={path}", "--split-mode=none", "--compress=no", "-"],
        input=bytes(raw),
        check=True,
        capture_output=True,
    )
    return path


def journalctl(path: Path, *args: str | bytes) -> bytes:
    """``TZ=UTC journalctl --file PATH ARGS`` output; exit status 1 with no output is 'nothing matched'."""
    done = subprocess.run(
        ["journalctl", f"--file={path}", "--no-pager", *args], capture_output=True, env={**os.environ, "TZ": "UTC"}
    )
    if done.returncode not in (0, 1) or (done.returncode == 1 and done.stdout):
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    return done.stdout


def cursors_of(path: Path, *args: str | bytes) -> list[str]:
    """The cursors of the entries ``journalctl ARGS`` selects."""
    out = journalctl(path, "-o", "json", "--all", *args)
    return [json.loads(line)["__CURSOR"] for line in out.splitlines() if line.strip()]
