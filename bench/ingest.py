"""Ingest throughput over HTTP into PostgreSQL, with dedupe, against systemd-journal-remote.

Prints events/s for 1000-entry batches (``--batch``) from 1, 2 and 4 VMs at once, each VM sending
one batch at a time (the agent keeps two in flight, of 2000 entries: ``bench/store.py`` sends as it
does, on realistic entries), a resend of everything (all duplicates), and
systemd-journal-remote writing the same entries to a journal file.
Target (design §5): faster than systemd-journal-remote on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from common import running_service
from support.api import enroll_sync
from support.journal_files import JOURNAL_REMOTE, export_format, journal_json, sample_entries, write_journal


async def post_all(url: str, name: str, token: str, batches: list[bytes]) -> int:
    """One VM's agent: batches one after another, like the real agent."""
    stored = 0
    async with httpx.AsyncClient(timeout=120) as http:
        for body in batches:
            response = await http.post(
                f"{url}/vm/{name}/boot",
                content=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                },
            )
            response.raise_for_status()
            stored += response.json()["stored"]
    return stored


async def agents(url: str, tokens: dict[str, str], batches: list[bytes]) -> tuple[float, int]:
    """Every VM sends the same batches concurrently (its own cursors, so all are stored)."""
    start = time.perf_counter()
    counts = await asyncio.gather(*(post_all(url, name, token, batches) for name, token in tokens.items()))
    return time.perf_counter() - start, sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    raw = sample_entries(args.entries, boots=2)
    with tempfile.TemporaryDirectory() as tmp:
        export = export_format(raw)
        start = time.perf_counter()
        subprocess.run(
            [JOURNAL_REMOTE, f"--output={tmp}/bench.journal", "--split-mode=none", "-"],
            input=export,
            check=True,
            capture_output=True,
        )
        remote_s = time.perf_counter() - start
        entries = journal_json(write_journal(raw, Path(tmp) / "j"))
    # The agent sends gzip; compress ahead so the figure is the service's, not this client's.
    batches = [gzip.compress(orjson.dumps(entries[i : i + args.batch]), 1) for i in range(0, len(entries), args.batch)]
    print(f"{len(entries)} entries, {len(batches)} batches of {args.batch}, {sum(map(len, batches)) / 1e6:.1f} MB gzip")
    print(f"systemd-journal-remote (export format -> journal file): {len(entries) / remote_s:,.0f} entries/s")
    with running_service() as svc:
        for vms in (1, 2, 4):
            tokens = {f"bench-{vms}-{i}": enroll_sync(svc.url, f"bench-{vms}-{i}") for i in range(vms)}
            seconds, stored = asyncio.run(agents(svc.url, tokens, batches))
            print(f"HTTP ingest, {vms} VM(s) at once: {stored / seconds:,.0f} entries/s ({stored} stored)")
        seconds, stored = asyncio.run(agents(svc.url, tokens, batches))
        print(
            f"resend of everything by 4 VMs (all duplicates): {len(entries) * 4 / seconds:,.0f} entries/s "
            f"({stored} stored)"
        )


if __name__ == "__main__":
    main()
