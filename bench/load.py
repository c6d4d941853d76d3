"""Many agents at once against one service process: does it stay up, answer 2xx, and hold its memory?

50 agents (by default) ship for 2 minutes to ``vmjournal serve`` on its embedded PostgreSQL. Each
sends as the real agent does: gzip JSON arrays of ``journalctl -o json`` entries to
``POST /vm/<name>/boot`` with its VM's token, one request in flight, the same batch again after
``Retry-After`` on 408/429/5xx. Each VM writes ``--rate`` entries/s; a batch takes what piled up
since the last one (at most 2000 entries, the agent's default), so a slow service gets bigger
batches, not more requests.

Prints the service's RSS (start, peak, end), open database connections (peak, end), p50/p99 ingest
latency, answers by status (429 counted apart: the service's "saturated, come back"), and checks
that every entry sent was stored once. Target: 0 non-2xx, RSS flat.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import orjson
from common import running_service
from support.api import enroll_sync
from support.journal_files import journal_json, sample_entries, write_journal

MAX_BATCH = 2000  # the agent's --batch-entries default
BOOT_ID = "4f0c5b8a9d2e4c1f8a7b6c5d4e3f2a1b"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def templates(count: int) -> list[bytes]:
    """Real ``journalctl -o json`` entries (via journal files), without cursor and time: ``{...`` tails."""
    with tempfile.TemporaryDirectory() as tmp:
        entries = journal_json(write_journal(sample_entries(count, boots=1), Path(tmp) / "j"))
    tails = []
    for e in entries:
        rest = {k: v for k, v in e.items() if k not in ("__CURSOR", "__REALTIME_TIMESTAMP", "_BOOT_ID")}
        tails.append(orjson.dumps(rest)[1:])
    return tails


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    stored: int = 0


async def agent(
    url: str, name: str, token: str, tails: list[bytes], rate: float, until: float, results: Results
) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Content-Encoding": "gzip"}
    start = time.monotonic()
    seq = 0
    async with httpx.AsyncClient(timeout=30) as http:
        while time.monotonic() < until:
            await asyncio.sleep(1.0)  # the agent's --flush-seconds default
            due = min(MAX_BATCH, int((time.monotonic() - start) * rate) - seq)
            if due <= 0:
                continue
            lines = []
            for i in range(seq, seq + due):
                ts = 1_764_000_000_000_000 + i * 1000
                head = f'{{"__CURSOR":"s={name};i={i:x}","__REALTIME_TIMESTAMP":"{ts}","_BOOT_ID":"{BOOT_ID}",'
                lines.append(head.encode() + tails[i % len(tails)])
            body = gzip.compress(b"[" + b",".join(lines) + b"]", compresslevel=3)
            attempt = 0
            while True:
                t0 = time.monotonic()
                try:
                    response = await http.post(f"{url}/vm/{name}/boot", content=body, headers=headers)
                except httpx.HTTPError as exc:
                    results.errors[type(exc).__name__] += 1
                    wait = min(60.0, 0.5 * 2**attempt)
                else:
                    results.latencies.append(time.monotonic() - t0)
                    results.statuses[response.status_code] += 1
                    if response.is_success:
                        results.stored += response.json()["stored"]
                        break
                    after = response.headers.get("retry-after")
                    wait = float(after) if after else min(60.0, 0.5 * 2**attempt)
                attempt += 1
                await asyncio.sleep(wait)
            seq += due
            results.sent += due


async def sample(pid: int, database_url: str, until: float, rss: list[int], conns: list[int]) -> None:
    watcher = await asyncpg.connect(database_url)
    try:
        while time.monotonic() < until:
            rss.append(rss_kib(pid))
            conns.append(
                await watcher.fetchval(
                    "SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend'"
                )
            )
            await asyncio.sleep(1.0)
    finally:
        await watcher.close()


async def run(
    url: str, pid: int, database_url: str, tokens: dict[str, str], tails: list[bytes], args: argparse.Namespace
) -> tuple[Results, list[int], list[int]]:
    results, rss, conns = Results(), [rss_kib(pid)], list[int]()
    until = time.monotonic() + args.seconds
    sampler = asyncio.create_task(sample(pid, database_url, until + 5, rss, conns))
    await asyncio.gather(*(agent(url, name, token, tails, args.rate, until, results) for name, token in tokens.items()))
    await asyncio.sleep(3)  # let the service settle before the end figures
    await sampler
    return results, rss, conns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rate", type=float, default=100.0, help="entries/s each VM writes")
    args = parser.parse_args()

    tails = templates(2000)
    with running_service() as svc:
        tokens = {f"load-{i}": enroll_sync(svc.url, f"load-{i}") for i in range(args.agents)}
        print(
            f"{args.agents} agents, {args.rate:.0f} entries/s each, {args.seconds:.0f} s, "
            f"against one service process (pid {svc.pid})"
        )
        results, rss, conns = asyncio.run(run(svc.url, svc.pid, svc.database_url, tokens, tails, args))
        counts = [httpx.get(f"{svc.url}/vm/{name}", timeout=30).json()["event_count"] for name in tokens]

    lat = sorted(results.latencies)
    p50 = statistics.median(lat) * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    ok = sum(n for status, n in results.statuses.items() if 200 <= status < 300)
    saturated = results.statuses.get(429, 0)
    other = sum(n for status, n in results.statuses.items() if not 200 <= status < 300 and status != 429)
    third = len(rss) // 3
    print(
        f"requests: {len(lat)} answered, {ok} 2xx, {saturated} 429 (saturated), {other} other non-2xx "
        f"{dict(results.statuses)}, transport errors {dict(results.errors) or 0}"
    )
    print(
        f"entries: {results.sent} sent ({results.sent / args.seconds:,.0f}/s), {results.stored} stored, "
        f"{sum(counts)} in the database (once each: {sum(counts) == results.sent})"
    )
    print(f"ingest latency: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {lat[-1] * 1000:.0f} ms")
    print(
        f"service RSS: start {rss[0] / 1024:.0f} MiB, peak {max(rss) / 1024:.0f} MiB, end {rss[-1] / 1024:.0f} MiB "
        f"(mean of first third {statistics.mean(rss[:third]) / 1024:.0f} MiB, "
        f"last third {statistics.mean(rss[-third:]) / 1024:.0f} MiB)"
    )
    print(f"database connections (client backends): peak {max(conns)}, end {conns[-1]}")


if __name__ == "__main__":
    main()
