"""Journal Export Format parsing speed (the systemd-journal-upload ingest path) against JSON.

Prints entries/s for ``parse_export`` on ``journalctl -o export`` of a sample journal, fed whole
and in 64 KiB chunks as a request body arrives, next to orjson parsing ``journalctl -o json`` of
the same entries (what the JSON ingest path does).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from support.journal_files import sample_entries, write_journal

from vmjournal.journal.export_format import ExportParser, parse_export


def best(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_journal(sample_entries(args.entries), Path(tmp))
        export = subprocess.run(
            ["journalctl", f"--file={path}", "-o", "export"], capture_output=True, check=True
        ).stdout
        json_lines = subprocess.run(
            ["journalctl", f"--file={path}", "-o", "json", "--all"], capture_output=True, check=True
        ).stdout.splitlines()
    n = args.entries
    assert len(parse_export(export)) == n

    def chunked() -> None:
        p = ExportParser()
        for i in range(0, len(export), 65536):
            p.feed(export[i : i + 65536])
        p.close()

    whole = best(3, lambda: parse_export(export))
    pieces = best(3, chunked)
    as_json = best(3, lambda: [orjson.loads(line) for line in json_lines])
    print(f"export body: {len(export) / 1e6:.0f} MB for {n} entries")
    print(f"parse_export, whole body:  {n / whole:,.0f} entries/s")
    print(f"parse_export, 64 KiB chunks: {n / pieces:,.0f} entries/s")
    print(f"orjson on -o json lines:   {n / as_json:,.0f} entries/s")


if __name__ == "__main__":
    main()
