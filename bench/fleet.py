"""Fleet first page and log volume over HTTP, with many VMs and events stored.

Loads N realistic events (about 29 fields and 1 kB each) spread over 100 VMs, their times in the
last two hours (one error in 47), plus M events in one more VM ("big"), straight through the
ingest store (the COPY path HTTP ingest uses). Then ANALYZE, and times over HTTP:

- the fleet's first page `/journal?priority=err&since=-1h` (100 VMs merged), and with ``--explain``
  what its two statements (the probe of each VM's first rows, then the bounded page) read;
- the fleet's grep of a word no entry has (`/journal?grep=xylophone`);
- the histogram of the big VM's whole journal (`/vm/big/histogram`, from the minute summary).

Targets (issue 12): p99 < 50 ms and < 200 ms at 10 M events. Run at a smaller size here; the
sizes are printed next to the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from common import running_service
from support.api import enroll_sync
from support.journal_files import wide_entries

from vmjournal.journal import entries, fleet_store, ingest_store, store

UNITS = ["nginx.service"] * 4 + [f"svc-{i}.service" for i in range(20)]


def shifted(start: int, count: int, boot: str, first_us: int, spacing_us: int) -> list[dict[str, str]]:
    out = wide_entries(start, count, boot=boot, units=UNITS)
    for i, e in enumerate(out, start):
        e["__REALTIME_TIMESTAMP"] = str(first_us + i * spacing_us)
    return out


async def load(database_url: str, vms: int, per_vm: int, big: int) -> float:
    conn = await asyncpg.connect(database_url)
    ids = {r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM vm")}
    now_us = int(time.time() * 1e6)
    started = time.perf_counter()
    # The fleet: each VM's events evenly over the last two hours.
    span_us = 2 * 3600 * 1_000_000
    for n in range(vms):
        boot = uuid.uuid4().hex
        rows = shifted(0, per_vm, boot, now_us - span_us + n * 997, span_us // max(per_vm, 1))
        for offset in range(0, per_vm, 5000):
            async with conn.transaction():
                await ingest_store.ingest(conn, ids[f"vm-{n:03}"], entries.to_rows(rows[offset : offset + 5000]))
    # The big VM: spread over about three hours, as 10 M events at 1 kHz would be.
    boot = uuid.uuid4().hex
    for offset in range(0, big, 5000):
        spacing = 3 * 3600 * 1_000_000 // big
        rows = shifted(offset, min(5000, big - offset), boot, now_us - big * spacing, spacing)
        async with conn.transaction():
            await ingest_store.ingest(conn, ids["big"], entries.to_rows(rows))
    await conn.execute("ANALYZE")
    await conn.close()
    return time.perf_counter() - started


def _summary(plan: dict[str, Any]) -> str:
    top = plan["Plan"]
    hit, read = top.get("Shared Hit Blocks", 0), top.get("Shared Read Blocks", 0)
    return (
        f"planning {plan['Planning Time']:.2f} ms, execution {plan['Execution Time']:.2f} ms, "
        f"buffers hit {hit} read {read}, {top['Actual Rows']:.0f} rows out"
    )


async def explain(database_url: str) -> None:
    """The plans of the fleet's first page as the service builds it (every fleet VM, err, last hour)."""
    conn = await asyncpg.connect(database_url)
    try:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM vm WHERE name LIKE 'vm-%' ORDER BY name")]
        f = store.EventFilter(priority_max=3, since=datetime.now(UTC) - timedelta(hours=1))
        targets = [fleet_store.Target(i, f) for i in ids]
        for _ in range(2):  # the second, warm
            probe, page = await fleet_store.explain_fleet(conn, targets, limit=100, analyze=True)
        print(f"  probe: {_summary(probe[0])}")
        print(f"  page:  {_summary(page[0])}")
    finally:
        await conn.close()


def timed(client: httpx.Client, path: str, params: dict[str, str], runs: int) -> tuple[float, float, int]:
    times = []
    body = None
    for _ in range(runs):
        t = time.perf_counter()
        response = client.get(path, params=params)
        times.append((time.perf_counter() - t) * 1000)
        response.raise_for_status()
        body = response.json()
    assert body is not None
    size = body["count"] if "count" in body else sum(b["total"] for b in body["buckets"])
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--events", type=int, default=500_000, help="events over the fleet's VMs")
    parser.add_argument("--big", type=int, default=500_000, help="events of the one big VM")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--explain", action="store_true", help="print what the fleet page's statements read")
    args = parser.parse_args()
    with running_service() as svc:
        for n in range(args.vms):
            enroll_sync(svc.url, f"vm-{n:03}")
        enroll_sync(svc.url, "big")
        seconds = asyncio.run(load(svc.database_url, args.vms, args.events // args.vms, args.big))
        print(f"loaded {args.events} events in {args.vms} VMs and {args.big} in one VM in {seconds:.0f} s")
        with httpx.Client(base_url=svc.url, timeout=60) as client:
            cases = [
                ("fleet first page, priority=err since=-1h", "/journal", {"priority": "err", "since": "-1h"}, 50),
                # Every VM read nothing but its batches' trigrams (journal/trigrams.py).
                ("fleet grep of an absent word", "/journal", {"grep": "xylophone"}, 100),
                ("histogram, big VM's whole journal", "/vm/big/histogram", {}, 200),
                ("histogram, fleet, last hour by minute", "/journal/histogram", {"since": "-1h", "step": "1m"}, 200),
            ]
            for label, path, params, target in cases:
                timed(client, path, params, 5)
                p50, p99, size = timed(client, path, params, args.runs)
                print(
                    f"{label:45} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  (target p99 < {target} ms at 10 M events; "
                    f"{size} events in the answer)"
                )
                if args.explain and path == "/journal":
                    asyncio.run(explain(svc.database_url))


if __name__ == "__main__":
    main()
