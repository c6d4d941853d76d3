"""Live follow fan-out: delivery latency to many SSE followers, and database work per batch.

Opens N Server-Sent Events followers of one VM on the real service (embedded PostgreSQL), then
ingests small batches one after another and records, for every follower, the time from the
ingest request to the batch's last entry arriving. The followers use four distinct filters (a
unit, a unit glob with a priority, a PostgreSQL regex, none), matched in the one fan-out query.
Also prints the database queries per batch (the service's vmjournal_live_queries_total): with one
hub per process this stays at one per batch whatever N is.
Target (design §5): an entry visible to a follower well under 2 s (median).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
import orjson
from common import running_service
from support.api import enroll_sync


def batch(start: int, size: int) -> list[dict[str, str]]:
    now = int(time.time() * 1e6)
    return [
        {
            "__CURSOR": f"bench;{start + i}",
            "__REALTIME_TIMESTAMP": str(now + i),
            "_SYSTEMD_UNIT": "app.service",
            "PRIORITY": "6",
            "MESSAGE": f"entry {start + i}",
        }
        for i in range(size)
    ]


# Followers cycle through these: distinct filters (each one match column of the fan-out query),
# all of which select every entry the bench sends.
FILTERS: list[tuple[str, dict[str, str]]] = [
    ("/vm/bench/boot", {}),
    ("/vm/bench/boot/app", {}),
    ("/vm/bench/boot/ap*", {"priority": "info"}),
    ("/vm/bench/boot", {"grep": r"\mentry [[:digit:]]+"}),
]


async def follower(
    client: httpx.AsyncClient, index: int, ready: asyncio.Event, arrivals: dict[str, float], started: list[int]
) -> None:
    path, params = FILTERS[index % len(FILTERS)]
    async with client.stream(
        "GET", path, params={"limit": "1", **params}, headers={"Accept": "text/event-stream"}
    ) as response:
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "":
                message = orjson.loads(line[6:])["message"]
                arrivals.setdefault(message, time.perf_counter())
                arrivals[message] = max(arrivals[message], time.perf_counter())
            elif not line:
                if event == "live":
                    started[0] += 1
                    if started[0] == started[1]:
                        ready.set()
                event = ""


async def hub_queries(client: httpx.AsyncClient) -> float:
    """The service's count of fan-out queries (its /metrics)."""
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith("vmjournal_live_queries_total "):
            return float(line.split()[1])
    raise RuntimeError("no vmjournal_live_queries_total in /metrics")


async def run(url: str, token: str, followers: int, batches: int, size: int, first: int) -> None:
    limits = httpx.Limits(max_connections=followers + 10, max_keepalive_connections=followers + 10)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, read=None), limits=limits) as client:
        ready = asyncio.Event()
        arrivals_per: list[dict[str, float]] = [{} for _ in range(followers)]
        started = [0, followers]
        tasks = [asyncio.create_task(follower(client, i, ready, arrivals_per[i], started)) for i in range(followers)]
        await asyncio.wait_for(ready.wait(), 120)
        before = await hub_queries(client)
        sent: dict[str, float] = {}
        for b in range(batches):
            entries = batch(first + b * size, size)
            sent[entries[-1]["MESSAGE"]] = time.perf_counter()
            response = await client.post(
                "/vm/bench/boot", content=orjson.dumps(entries), headers={"Authorization": f"Bearer {token}"}
            )
            response.raise_for_status()
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)
        after = await hub_queries(client)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    latencies = [
        (arrivals[last] - t0) * 1000 for arrivals in arrivals_per for last, t0 in sent.items() if last in arrivals
    ]
    missing = followers * batches - len(latencies)
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1] if latencies else float("nan")
    per_batch = (after - before) / batches
    print(
        f"followers={followers:4d} batches={batches} size={size}: delivery latency ms "
        f"median={statistics.median(latencies):.1f} p95={p95:.1f} max={latencies[-1]:.1f} missing={missing}; "
        f"fan-out queries per batch={per_batch:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followers", type=int, nargs="+", default=[1, 100, 300])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--size", type=int, default=10)
    args = parser.parse_args()
    with running_service() as svc:
        token = enroll_sync(svc.url, "bench")
        for i, n in enumerate(args.followers):
            # Fresh cursors each round: a resent cursor is a duplicate and reaches nobody.
            asyncio.run(run(svc.url, token, n, args.batches, args.size, 1_000_000 * (i + 1)))


if __name__ == "__main__":
    main()
