"""First-page latency of unit queries over HTTP with many events stored.

Loads N events (default 1 M; design target: 10 M) for one VM straight through the ingest store
(the same COPY path the HTTP ingest uses, without HTTP, to fill quickly), then times the first
page (100 events) of `/vm/{name}/boot/{unit}` for a busy unit, a rare unit, a unit with a
priority filter and the VM's whole journal, over HTTP, and prints p50/p99.
Target (design §5): p99 under 10 ms with 10 M events.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid

import asyncpg
import httpx
from common import enroll, running_service

from vmjournal.journal import entries, store

UNITS = [f"svc-{i}.service" for i in range(40)] + ["rare.service"]


def synthetic(count: int, start: int, boot: str, rng: random.Random) -> list[dict[str, str]]:
    out = []
    for i in range(start, start + count):
        unit = "rare.service" if i % 10_000 == 0 else UNITS[rng.randrange(40)]
        pid1 = i % 17 == 0
        out.append({
            "__CURSOR": f"s=bench;i={i:x};b={boot}", "__REALTIME_TIMESTAMP": str(1_764_000_000_000_000 + i * 100),
            "__MONOTONIC_TIMESTAMP": str(i * 100), "_BOOT_ID": boot, "_HOSTNAME": "bench",
            "_SYSTEMD_UNIT": "init.scope" if pid1 else unit, "_PID": "1" if pid1 else str(1000 + i % 5000),
            "UNIT": unit, "PRIORITY": str(i % 8), "SYSLOG_IDENTIFIER": unit.split(".")[0],
            "MESSAGE": f"request {i} served in {rng.randrange(1000)} ms", "_UID": "0", "_TRANSPORT": "stdout",
        })
    return out


async def load(database_url: str, vm_name: str, total: int) -> float:
    conn = await asyncpg.connect(database_url)
    vm_id = await conn.fetchval("SELECT id FROM vm WHERE name = $1", vm_name)
    rng = random.Random(1)
    boots = [uuid.uuid4().hex for _ in range(3)]
    start = time.perf_counter()
    step = 10_000
    for offset in range(0, total, step):
        rows = entries.to_rows(synthetic(min(step, total - offset), offset, boots[offset * 3 // total], rng))
        async with conn.transaction():
            await store.ingest(conn, vm_id, rows)
    seconds = time.perf_counter() - start
    await conn.execute("ANALYZE journal_event")
    await conn.close()
    return seconds


def timed(client: httpx.Client, path: str, params: dict[str, str], rounds: int) -> tuple[float, float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        response = client.get(path, params={"limit": "100", **params})
        samples.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    with running_service() as svc:
        enroll(svc.url, "bench")
        seconds = asyncio.run(load(svc.database_url, "bench", args.events))
        print(f"loaded {args.events:,} events in {seconds:.0f} s ({args.events / seconds:,.0f}/s through the store)")
        cases = [
            ("busy unit", "/vm/bench/boot/svc-7", {}),
            ("busy unit, newest first", "/vm/bench/boot/svc-7", {"order": "desc"}),
            ("rare unit", "/vm/bench/boot/rare", {}),
            ("unit, priority err", "/vm/bench/boot/svc-7", {"priority": "err"}),
            ("unit, current boot", "/vm/bench/boot/svc-7", {"boot": "0"}),
            ("whole VM", "/vm/bench/boot", {}),
        ]
        with httpx.Client(base_url=svc.url) as client:
            for label, path, params in cases:
                timed(client, path, params, 5)
                p50, p99 = timed(client, path, params, args.rounds)
                print(f"{label:28s} first page of 100: p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")


if __name__ == "__main__":
    main()
