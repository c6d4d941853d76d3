"""First-page latency of journal queries over HTTP with many events stored, cold and warm.

Loads N realistic events (about 29 fields and 1 kB each, as a Debian guest writes them; default
200 k, design target 10 M) for one VM straight through the ingest store (the statement the HTTP
ingest runs, without HTTP, to fill quickly), then times the first page (100 events) of
`/vm/{name}/boot[/{unit}]` for a busy unit, a small one, a rare one, a unit with a priority or boot
filter, an identifier, the VM's whole journal and three greps (letters every batch holds, a word in
1 entry of 100 000, an absent word), over HTTP, and prints p50/p99 twice:

- cold: right after loading, before any statistics exist (what a user sees during a VM's first
  catch-up; autovacuum is held off on journal_event so that autoanalyze cannot start meanwhile);
- warm: after ANALYZE.

Target (design §5): p99 under 20 ms with 10 M events.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
from common import running_service
from support.api import enroll_sync
from support.journal_files import wide_entries

from vmjournal.journal import entries, ingest_store, partition_store

# nginx is a fifth of the journal; 40 other services share the rest; rare.service is 1 in 10 000.
FIRST_US = 1_764_000_000_000_000  # wide_entries' first timestamp
UNITS = ["nginx.service"] * 10 + [f"svc-{i}.service" for i in range(40)]
CASES = [
    ("busy unit (20%)", "/vm/bench/boot/nginx", {}),
    ("busy unit, newest first", "/vm/bench/boot/nginx", {"order": "desc"}),
    ("unit (1.25%)", "/vm/bench/boot/svc-7", {}),
    ("rare unit (1 in 10 000)", "/vm/bench/boot/rare", {}),
    ("unit, priority err", "/vm/bench/boot/svc-7", {"priority": "err"}),
    ("unit, current boot", "/vm/bench/boot/svc-7", {"boot": "0"}),
    ("identifier", "/vm/bench/boot", {"identifier": "svc-7"}),
    ("whole VM", "/vm/bench/boot", {}),
    ("priority crit (none)", "/vm/bench/boot", {"priority": "crit"}),
    ("priority err (2%)", "/vm/bench/boot", {"priority": "err"}),
    ("previous boot", "/vm/bench/boot", {"boot": "-1"}),
    # Letters every batch holds: read in journal order until the page is full.
    ("grep, present word", "/vm/bench/boot", {"grep": "items/4242 "}),
    # A word in 1 entry of 10 000: a tenth of the batches hold it, so the page reads a hundred of them.
    ("grep, word in 1 of 10 000", "/vm/bench/boot", {"grep": "quota"}),
    # A word in 1 entry of 100 000: only its batches' time ranges are read.
    ("grep, rare word", "/vm/bench/boot", {"grep": "watchdog"}),
    ("grep, absent word", "/vm/bench/boot", {"grep": "xylophone"}),
]


def window(events: int) -> dict[str, str]:
    """A minute in the middle of the loaded journal (entries are 1 ms apart from FIRST_US)."""
    mid = FIRST_US + events // 2 * 1000
    return {"since": iso(mid), "until": iso(mid + 60_000_000)}


def iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def batch(start: int, count: int, boot: str) -> list[dict[str, str]]:
    out = wide_entries(start, count, boot=boot, units=UNITS)
    for i, e in enumerate(out, start):
        if i % 10_000 == 5:
            e |= {"_SYSTEMD_UNIT": "rare.service", "SYSLOG_IDENTIFIER": "rare", "_COMM": "rare"}
        if i % 10_000 == 33:
            e["MESSAGE"] += " (upstream over quota)"
        if i % 100_000 == 77:
            e["MESSAGE"] += " (watchdog: slow upstream)"
    return out


async def load(database_url: str, vm_name: str, total: int) -> float:
    conn = await asyncpg.connect(database_url)
    vm_id = await conn.fetchval("SELECT id FROM vm WHERE name = $1", vm_name)
    # The days' partitions made first, without autovacuum, so no statistics appear while loading.
    last_us = FIRST_US + total * 1000
    async with conn.transaction():
        await partition_store.create_days(conn, range(FIRST_US // entries.DAY_US, last_us // entries.DAY_US + 1))
    await autovacuum(conn, "SET (autovacuum_enabled = off)")
    boots = [uuid.uuid4().hex for _ in range(3)]
    start = time.perf_counter()
    step = 5000
    for offset in range(0, total, step):
        rows = entries.to_rows(batch(offset, min(step, total - offset), boots[offset * 3 // total]))
        async with conn.transaction():
            await ingest_store.ingest(conn, vm_id, rows)
    seconds = time.perf_counter() - start
    await conn.close()
    return seconds


async def autovacuum(conn: asyncpg.Connection, change: str) -> None:
    for p in await partition_store.partitions(conn):
        await conn.execute(f"ALTER TABLE {p.name} {change}")


async def analyze(database_url: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        stats = await conn.fetchval("SELECT count(*) FROM pg_stats WHERE tablename LIKE 'journal_event%'")
        await conn.execute("ANALYZE journal_event")
        await autovacuum(conn, "RESET (autovacuum_enabled)")
        return f"statistics rows before ANALYZE: {stats}"
    finally:
        await conn.close()


def timed(client: httpx.Client, path: str, params: dict[str, str], rounds: int) -> tuple[float, float, float]:
    """First request, p50 and p99 in ms."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        response = client.get(path, params={"limit": "100", **params})
        samples.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
        # Only the cases meant to find nothing may come back empty.
        assert response.json()["count"] > 0 or "xylophone" in str(params) or "crit" in str(params), (path, params)
    first = samples[0]
    samples.sort()
    return first, statistics.median(samples), samples[max(0, int(len(samples) * 0.99) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    # No retention pass after the first: its compaction of the loaded days would rebuild their
    # indexes under the timings (and a concurrent REINDEX and the bench's ANALYZE can deadlock).
    with running_service(VMJOURNAL_RETENTION_CHECK_SECONDS="86400") as svc:
        enroll_sync(svc.url, "bench")
        seconds = asyncio.run(load(svc.database_url, "bench", args.events))
        print(f"loaded {args.events:,} events in {seconds:.0f} s ({args.events / seconds:,.0f}/s through the store)")
        results: dict[str, dict[str, tuple[float, float, float]]] = {}
        with httpx.Client(base_url=svc.url, timeout=60) as client:
            for phase in ("cold", "warm"):
                if phase == "warm":
                    print(asyncio.run(analyze(svc.database_url)))
                for label, path, params in [*CASES, ("since/until, one minute", "/vm/bench/boot", window(args.events))]:
                    # A grep reads the VM's whole journal: seconds at 10 M, so fewer rounds.
                    rounds = max(3, args.rounds // 20) if "grep" in params else args.rounds
                    results.setdefault(label, {})[phase] = timed(client, path, params, rounds)
        print(
            f"first page of 100, ms ({args.rounds} requests each, greps {max(3, args.rounds // 20)}; "
            "cold = no statistics, warm = after ANALYZE)"
        )
        print(f"{'':26s} {'cold first':>10s} {'p50':>7s} {'p99':>7s}   {'warm first':>10s} {'p50':>7s} {'p99':>7s}")
        for label, by_phase in results.items():
            cells = "   ".join(
                " ".join(f"{v:{w}.2f}" for v, w in zip(by_phase[p], (10, 7, 7), strict=True)) for p in ("cold", "warm")
            )
            print(f"{label:26s} {cells}")


if __name__ == "__main__":
    main()
