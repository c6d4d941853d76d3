"""Real journal files for tests: export format -> systemd-journal-remote -> journalctl."""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

JOURNAL_REMOTE = next(
    (p for p in ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote") if Path(p).exists()),
    shutil.which("systemd-journal-remote") or "systemd-journal-remote",
)

Entry = Mapping[str, str | bytes]


def export_format(entries: Iterable[Entry]) -> bytes:
    """Entries as the Journal Export Format (binary-safe fields for anything with a newline or non-UTF-8)."""
    out = bytearray()
    for entry in entries:
        for key, value in entry.items():
            data = value if isinstance(value, bytes) else value.encode()
            if b"\n" in data or isinstance(value, bytes):
                out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
            else:
                out += key.encode() + b"=" + data + b"\n"
        out += b"\n"
    return bytes(out)


def write_journal(entries: Sequence[Entry], directory: Path, name: str = "test") -> Path:
    """Write the entries into a real journal file with systemd-journal-remote; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.journal"
    subprocess.run(
        [JOURNAL_REMOTE, f"--output={path}", "--split-mode=none", "--compress=no", "-"],
        input=export_format(entries),
        check=True,
        capture_output=True,
    )
    return path


def journal_json(path: Path, *args: str, env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """``journalctl --file PATH -o json --all ARGS`` as a list of entries."""
    done = subprocess.run(
        ["journalctl", f"--file={path}", "-o", "json", "--all", "--no-pager", *args],
        capture_output=True,
        env={**os.environ, **(env or {})},
    )
    # journalctl exits 1 when a --grep matches nothing.
    if done.returncode not in (0, 1) or (done.returncode == 1 and done.stdout):
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    out = done.stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def sample_entries(count: int, *, boots: int = 2, seed: int = 7, start_us: int = 1_764_000_000_000_000) -> list[Entry]:
    """A realistic mix: services' own output, PID 1 about units, root daemons about units, a coredump,
    several priorities and boots, multi-line and non-UTF-8 messages."""
    rng = random.Random(seed)
    boot_ids = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(boots)]
    machine = uuid.UUID(int=rng.getrandbits(128)).hex
    services = ["nginx.service", "ssh.service", "systemd-journald.service", "cron.service", "app@1.service"]
    entries: list[Entry] = []
    for i in range(count):
        boot = boot_ids[min(boots - 1, i * boots // max(count, 1))]
        ts = start_us + i * 1_000
        base: dict[str, str | bytes] = {
            "__REALTIME_TIMESTAMP": str(ts),
            "__MONOTONIC_TIMESTAMP": str(1_000_000 + i * 1_000),
            "_BOOT_ID": boot,
            "_MACHINE_ID": machine,
            "_HOSTNAME": "vm-test",
            "_TRANSPORT": "journal",
        }
        kind = rng.random()
        unit = rng.choice(services)
        if kind < 0.70:
            base |= {
                "_SYSTEMD_UNIT": unit,
                "_PID": str(100 + i % 900),
                "_UID": "0",
                "SYSLOG_IDENTIFIER": unit.split(".")[0],
                "PRIORITY": str(rng.randint(0, 7)),
                "MESSAGE": f"{unit} says hello {i}",
            }
        elif kind < 0.85:
            base |= {
                "_SYSTEMD_UNIT": "init.scope",
                "_PID": "1",
                "_UID": "0",
                "SYSLOG_IDENTIFIER": "systemd",
                "UNIT": unit,
                "PRIORITY": "6",
                "MESSAGE": f"Started {unit}.",
            }
        elif kind < 0.92:
            base |= {
                "_SYSTEMD_UNIT": "systemd-logind.service",
                "_PID": "400",
                "_UID": "0",
                "SYSLOG_IDENTIFIER": "systemd-logind",
                "OBJECT_SYSTEMD_UNIT": unit,
                "PRIORITY": "5",
                "MESSAGE": f"About {unit}: session {i}",
            }
        elif kind < 0.95:
            base |= {
                "_SYSTEMD_UNIT": unit,
                "_PID": str(100 + i % 900),
                "_UID": "0",
                "SYSLOG_IDENTIFIER": "multi",
                "PRIORITY": "4",
                "MESSAGE": f"line one of {i}\nline two\n\tindented three",
            }
        elif kind < 0.98:
            base |= {
                "_SYSTEMD_UNIT": unit,
                "_PID": str(100 + i % 900),
                "_UID": "1000",
                "SYSLOG_IDENTIFIER": "binary",
                "PRIORITY": "3",
                "MESSAGE": b"caf\xe9 not utf-8 \xff\xfe " + str(i).encode(),
            }
        else:
            base |= {
                "_SYSTEMD_UNIT": "systemd-coredump@0-1-0.service",
                "_PID": "600",
                "_UID": "0",
                "SYSLOG_IDENTIFIER": "systemd-coredump",
                "COREDUMP_UNIT": unit,
                "PRIORITY": "2",
                "MESSAGE_ID": "fc2e22bc6ee647b6b90729ab34a250b1",
                "MESSAGE": f"Process {i} dumped core.",
            }
        entries.append(base)
    return entries


def wide_entries(start: int, count: int, *, boot: str, units: Sequence[str]) -> list[dict[str, str]]:
    """``journalctl -o json`` entries as wide as a Debian guest writes them (about 29 fields, 1 kB),
    with cursors: entry ``i`` belongs to ``units[i % len(units)]``, and every 17th is PID 1's
    message about that unit. For loading many events straight through the store."""
    out = []
    for i in range(start, start + count):
        u = i % len(units)
        unit = units[u]
        stem = unit.split(".")[0].split("@")[0]
        ts = 1_764_000_000_000_000 + i * 1000
        mono = 1_000_000 + i * 1000
        entry = {
            "__CURSOR": f"s=8f2b1c9d0e7a4b3c9d8e7f6a5b4c3d2e;i={i:x};b={boot};m={mono:x};t={ts:x};x={i * 7919:x}",
            "__REALTIME_TIMESTAMP": str(ts),
            "__MONOTONIC_TIMESTAMP": str(mono),
            "_BOOT_ID": boot,
            "_MACHINE_ID": "5d2c8e1f9a7b4c3d8e6f1a2b3c4d5e6f",
            "_HOSTNAME": "web-prod-eu-west-03",
            "_TRANSPORT": "journal",
            "_UID": "0",
            "_GID": "0",
            "_COMM": stem,
            "_EXE": f"/usr/sbin/{stem}",
            "_CMDLINE": f"/usr/sbin/{stem} --config /etc/{stem}/{stem}.conf --log-level info --foreground",
            "_CAP_EFFECTIVE": "1ffffffffff",
            "_SELINUX_CONTEXT": "unconfined\n",
            "_SYSTEMD_CGROUP": f"/system.slice/{unit}",
            "_SYSTEMD_SLICE": "system.slice",
            "_SYSTEMD_UNIT": unit,
            # One process per unit: its trusted fields repeat, as a real service's do.
            "_SYSTEMD_INVOCATION_ID": f"{(u + 1) * 2654435761:032x}",
            "_SOURCE_REALTIME_TIMESTAMP": str(ts - 17),
            "_PID": str(1000 + u),
            "SYSLOG_FACILITY": "3",
            "SYSLOG_IDENTIFIER": stem,
            "PRIORITY": str(6 if i % 47 else 3),
            "CODE_FILE": f"src/{stem}/main.c",
            "CODE_LINE": str(100 + i % 900),
            "CODE_FUNC": "handle_request",
            "MESSAGE": f"request {i} from 10.0.{i % 256}.{i % 199}: GET /api/v1/items/{i % 9973} HTTP/1.1 200 "
            f"{i % 4096} bytes in {i % 997} ms",
        }
        if i % 17 == 0:
            entry |= {
                "_SYSTEMD_UNIT": "init.scope",
                "_PID": "1",
                "_COMM": "systemd",
                "SYSLOG_IDENTIFIER": "systemd",
                "UNIT": unit,
                "MESSAGE": f"Started {unit}.",
            }
        out.append(entry)
    return out


def odd_entries() -> list[Entry]:
    """Entries with the bytes real journals hold: NUL anywhere, invalid UTF-8, control characters,
    100 kB fields, very many fields, values out of range."""
    base: dict[str, str | bytes] = {
        "__MONOTONIC_TIMESTAMP": "1",
        "_BOOT_ID": "0f5e3c4b8a6d4e2f9b1c7d8e6f5a4b3c",
        "_HOSTNAME": "h",
        "_PID": "5",
        "_UID": "0",
        "PRIORITY": "6",
        "SYSLOG_IDENTIFIER": "id",
        "_SYSTEMD_UNIT": "a.service",
    }
    odd: list[dict[str, str | bytes]] = [
        {"MESSAGE": b"nul\x00inside foo"},
        {"MESSAGE": b"\x00"},
        {"MESSAGE": b"caf\xe9 bad utf8 foo"},
        {"MESSAGE": "ctl\x01char foo"},
        {"MESSAGE": "plain foo"},
        {"MESSAGE": "unit nul", "_SYSTEMD_UNIT": b"we\x00ird.service"},
        {"MESSAGE": "unit bad utf8", "_SYSTEMD_UNIT": b"we\xffird.service"},
        {"MESSAGE": "pid 1 about a nul unit", "_PID": "1", "_SYSTEMD_UNIT": "init.scope", "UNIT": b"b\x00.service"},
        {"MESSAGE": "pid 1 about b", "_PID": "1", "_SYSTEMD_UNIT": "init.scope", "UNIT": "b.service"},
        {"MESSAGE": "ident nul", "SYSLOG_IDENTIFIER": b"id\x00ent"},
        {"MESSAGE": "ident bad utf8", "SYSLOG_IDENTIFIER": b"id\xffent"},
        {"MESSAGE": "host nul", "_HOSTNAME": b"ho\x00st"},
        {"MESSAGE": "other field nul", "OTHER": b"o\x00ther", "EMPTY": ""},
        {"MESSAGE": "big field", "BIG": b"\x00\xff" * 50_000, "BIGTEXT": "t" * 100_000},
        {"MESSAGE": "repeated", "TAG": "a", "TAG2": b"\x00"},
        {"MESSAGE": "many fields", **{f"F{i}": f"v{i}" for i in range(200)}},
        {"MESSAGE": "priority out of range", "PRIORITY": "99", "_PID": "99999999999"},
        {"MESSAGE": "multi\nline foo"},
    ]
    entries: list[Entry] = []
    for i, fields in enumerate(odd):
        entries.append({"__REALTIME_TIMESTAMP": str(1_764_000_000_000_000 + i * 1000), **base, **fields})
    return entries
