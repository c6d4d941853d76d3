"""The journal store against systemd-journal-remote on realistic entries: ingest, size, first pages, prune.

Builds its corpora itself (``support.realistic``: a Debian server guest's journal, about 1 kB of
JSON per entry), writes each with systemd-journal-remote and reads it back with
``journalctl -o json --all``, which is what the service is fed, as the agent sends it (gzip JSON
arrays, batched and in flight as the agent program's own defaults say, read from it). Everything
goes through public paths: HTTP for ingest and pages, the retention pass for pruning, SQL only to
measure the journal's size.

1. the corpus: fields and JSON bytes per entry;
2. the peer: systemd-journal-remote writing the same entries (export format on stdin,
   --split-mode=none, its default --compress=yes), entries/s and its file's bytes per entry;
3. HTTP ingest with dedupe in ``--repeats`` rounds, each on new VMs: the peer again, then one VM
   as the agent sends, then four VMs at once (each its own machine's
   corpus). Each ratio is to the peer's run of its own round, and the median ratio is compared
   with the target: the machine's speed drifts by 10-15 % between phases here, which decided
   ratios when every peer run came first. Then one VM sending one batch at a time, once, and one
   VM and four VMs in 1000-entry batches, once (this bench's batches before the twelfth session);
4. bytes on disk per stored entry: every relation named journal_* and its partition tree
   (partitions, indexes, TOAST), after VACUUM ANALYZE and CHECKPOINT;
5. first page (100 events) p50/p99 over HTTP with --page-events in one VM beside the others;
6. ingest rate of one VM without a prune and while retention passes drop its old days, one day
   per pass, three passes, each day as full as a corpus machine's (closed days compacted by
   ``vmjournal db prune`` first, so the passes measured only drop).

Targets from the store issue; figures are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from common import RunningService, running_service
from support.agent import AGENT
from support.api import enroll_sync
from support.journal_files import JOURNAL_REMOTE, export_format
from support.realistic import DebianGuest, Entry, journal

from vmjournal import db
from vmjournal.config import Settings
from vmjournal.journal import retention
from vmjournal.journal.partition_store import Dropped

DAY_US = 86_400_000_000
RETENTION_DAYS = 30
# Days of the prune VM beyond retention, one dropped by each measured pass, each as full as a day
# of a corpus machine (--prune-day-entries): a pass over a day of a few thousand entries lasts
# about one batch, and its figure is mostly where its window falls between acknowledgements.
OLD_DAYS = 3
# Between two measured passes, so that each meets ingest at its usual rate.
PASS_GAP_S = 0.4

# Every relation named journal_* with its whole partition tree (pg_partition_tree lists nothing for a
# plain table);
# pg_total_relation_size counts each one's indexes and TOAST. Grouped by the tree's root.
JOURNAL_SIZES = r"""
WITH named AS (
    SELECT c.oid FROM pg_class c
    WHERE c.relname LIKE 'journal\_%' AND c.relkind IN ('r', 'p', 'm')
      AND c.relnamespace = current_schema()::regnamespace
), tree AS (
    SELECT oid AS relid FROM named
    UNION SELECT t.relid FROM named, pg_partition_tree(named.oid) t
)
SELECT coalesce(pg_partition_root(relid), relid)::regclass::text AS root,
       sum(pg_total_relation_size(relid))::bigint AS bytes, count(*) AS relations
FROM tree GROUP BY 1 ORDER BY 2 DESC
"""


def _agent_defaults() -> dict[str, Any]:
    """The agent program's own defaults, so that the bench sends as it does."""
    sys.path.insert(0, str(AGENT.parent))
    keep = sys.dont_write_bytecode  # the agent sets it for the installed files' sake
    try:
        agent = importlib.import_module("vmjournal_agent")
    finally:
        sys.dont_write_bytecode = keep
        sys.path.remove(str(AGENT.parent))
    return dict(agent.DEFAULTS)


_AGENT = _agent_defaults()
BATCH_ENTRIES: int = _AGENT["batch_entries"]
BATCH_BYTES: int = _AGENT["batch_bytes"]
IN_FLIGHT: int = _AGENT["in_flight"]
# The batch size of this bench before the twelfth session (the agent's is larger): one more
# round with it, so that figures compare across sessions.
EARLIER_BATCH_ENTRIES = 1000


@dataclass(frozen=True)
class Batch:
    entries: int
    body: bytes  # as the agent sends it: a JSON array of journalctl's lines, gzip level 3


def batches_of(lines: list[bytes], entries: int = BATCH_ENTRIES) -> list[Batch]:
    """Lines in batches closed where the agent closes them: at ``entries`` lines or BATCH_BYTES."""
    out: list[Batch] = []
    start = size = 0
    for i, line in enumerate(lines, 1):
        size += len(line) + 1
        if i - start >= entries or size >= BATCH_BYTES or i == len(lines):
            body = gzip.compress(b"[" + b",".join(lines[start:i]) + b"]", compresslevel=3)
            out.append(Batch(i - start, body))
            start, size = i, 0
    return out


@dataclass
class Written:
    """Entries through systemd-journal-remote and back out of journalctl."""

    lines: list[bytes]
    seconds: float  # journal-remote's run
    file_bytes: int  # the journal file's size
    used_bytes: int  # its header and objects up to the last (journald grows files in 8 MiB steps)


def journal_used(path: Path) -> int:
    """End of the journal file's last object (header field tail_object_offset, then that object's size)."""
    with path.open("rb") as f:
        tail = struct.unpack("<Q", f.read(144)[136:144])[0]
        f.seek(tail)
        size = struct.unpack("<Q", f.read(16)[8:16])[0]
    return int(tail + (size + 7) // 8 * 8)


def through_peer(entries: list[Entry], tmp: Path, *, compress: bool = True, read: bool = True) -> Written:
    # Its own directory: journal-remote rotates a full file (journald's size limits), so a large
    # corpus may end up in several files, all of them counted.
    folder = tmp / f"peer-{compress}-{time.monotonic_ns()}"
    folder.mkdir()
    export = export_format(entries)
    path = folder / "remote.journal"
    args = [JOURNAL_REMOTE, f"--output={path}", "--split-mode=none", *([] if compress else ["--compress=no"]), "-"]
    start = time.perf_counter()
    subprocess.run(args, input=export, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    lines: list[bytes] = []
    if read:
        cmd = ["journalctl", f"--directory={folder}", "-o", "json", "--all", "--no-pager"]
        lines = subprocess.run(cmd, check=True, capture_output=True).stdout.splitlines()
        assert len(lines) == len(entries), (len(lines), len(entries))
    files = sorted(folder.iterdir())
    written = Written(lines, seconds, sum(f.stat().st_size for f in files), sum(map(journal_used, files)))
    for f in files:
        f.unlink()
    folder.rmdir()
    return written


@dataclass
class Agent:
    """One VM's agent: batches in order, ``in_flight`` at a time; when each was acknowledged."""

    url: str
    name: str
    token: str
    in_flight: int = 1
    stored: int = 0
    acked: list[tuple[float, int]] = field(default_factory=list)  # (time, entries)
    stop: asyncio.Event | None = None

    async def send(self, batches: list[Batch]) -> None:
        queue = iter(batches)
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        headers["Content-Encoding"] = "gzip"
        async with httpx.AsyncClient(base_url=self.url, timeout=300, headers=headers) as http:

            async def worker() -> None:
                for batch in queue:
                    if self.stop is not None and self.stop.is_set():
                        return
                    response = await http.post(f"/vm/{self.name}/boot", content=batch.body)
                    response.raise_for_status()
                    self.stored += response.json()["stored"]
                    self.acked.append((time.perf_counter(), batch.entries))

            await asyncio.gather(*(worker() for _ in range(self.in_flight)))


def enroll(svc: RunningService, name: str, in_flight: int = 1) -> Agent:
    return Agent(svc.url, name, enroll_sync(svc.url, name), in_flight)


async def ingest(agents: list[tuple[Agent, list[Batch]]]) -> tuple[float, int]:
    """Every agent sends its batches at once; seconds and entries stored."""
    start = time.perf_counter()
    await asyncio.gather(*(a.send(b) for a, b in agents))
    return time.perf_counter() - start, sum(a.stored for a, _ in agents)


async def journal_sizes(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
        rows: list[asyncpg.Record] = await conn.fetch(JOURNAL_SIZES)
        return rows
    finally:
        await conn.close()


def prepared(pieces: Iterator[list[Entry]], tmp: Path) -> Iterator[list[Batch]]:
    """Batches of each piece, the next piece made in a thread while the caller sends this one."""

    def make() -> list[Batch] | None:
        piece = next(pieces, None)
        return None if piece is None else batches_of(through_peer(piece, tmp).lines)

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(make)
        while (batches := future.result()) is not None:
            future = pool.submit(make)
            yield batches


def timed(client: httpx.Client, path: str, params: dict[str, str], rounds: int, check: Callable[[int], bool]) -> str:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        response = client.get(path, params={"limit": "100", **params})
        samples.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
        count = response.json()["count"]
        assert check(count), (path, params, count)
    samples.sort()
    p99 = samples[min(len(samples) - 1, -(-len(samples) * 99 // 100) - 1)]
    return f"p50 {statistics.median(samples):.1f} ms, p99 {p99:.1f} ms ({count} events)"


def utc(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")


def rate(acked: list[tuple[float, int]], lo: float, hi: float) -> float:
    """Entries/s over [lo, hi] of one batch at a time, each batch's entries spread over the time since
    the previous acknowledgement: a window of a few batches is not off by a whole batch."""
    stored = 0.0
    for (before, _), (t, n) in zip(acked, acked[1:], strict=False):
        overlap = min(t, hi) - max(before, lo)
        if overlap > 0:
            stored += n * overlap / (t - before)
    return stored / (hi - lo)


async def prune_now(svc: RunningService, *, retention_days: int) -> str:
    """``vmjournal db prune`` against the service's database; what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMJOURNAL_")}
    env |= {"VMJOURNAL_DATABASE_URL": svc.database_url, "VMJOURNAL_RETENTION_DAYS": str(retention_days)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vmjournal", "db", "prune", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(out.decode())
    return out.decode()


def prune_passes_in_thread(database_url: str, keep: list[int]) -> list[tuple[float, float, list[Dropped]]]:
    """Retention passes as the service's pruner runs them, one per number of days to keep, a moment
    apart, on one pool connected beforehand as the service's is (no process start-up or connection
    set-up in the figures); when each started and ended, and what it dropped."""

    async def run() -> list[tuple[float, float, list[Dropped]]]:
        engine = db.create_engine(database_url, pool_size=2, max_overflow=0)
        try:
            sessions = db.session_factory(engine)

            async def connect() -> None:
                async with sessions() as session:
                    await db.raw_connection(session)
                    await asyncio.sleep(0.05)  # both connections open at once

            await asyncio.gather(connect(), connect())
            passes = []
            for days in keep:
                settings = Settings(database_url=database_url, retention_days=days)
                start = time.perf_counter()
                dropped = await retention.prune_pass(sessions, settings) or []
                passes.append((start, time.perf_counter(), dropped))
                await asyncio.sleep(PASS_GAP_S)
            return passes
        finally:
            await engine.dispose()

    return asyncio.run(run())


async def prune_while_ingesting(svc: RunningService, agent: Agent, batches: list[Batch]) -> tuple[str, str, str]:
    """Baseline rate after a warm-up, then the rate while retention passes run (the service's own,
    in a thread here), each dropping the oldest day, a moment apart; sending stops after the last."""
    agent.stop = asyncio.Event()
    sender = asyncio.create_task(agent.send(batches))
    while len(agent.acked) < 10:  # warm-up
        await asyncio.sleep(0.05)
    warm = time.perf_counter()
    await asyncio.sleep(4)
    # Days older than this many go: each pass, the oldest day left.
    keep = [RETENTION_DAYS + OLD_DAYS - k for k in range(OLD_DAYS)]
    passes = await asyncio.to_thread(prune_passes_in_thread, svc.database_url, keep)
    agent.stop.set()
    await sender
    windows = [(lo, hi) for lo, hi, _ in passes]
    dropped = [d for _, _, gone in passes for d in gone]
    base = rate(agent.acked, warm, windows[0][0])
    if base == 0:
        raise SystemExit("prune: the live batches ran out before the first pass: raise --prune-entries")
    in_passes = sum(rate(agent.acked, lo, hi) * (hi - lo) for lo, hi in windows)
    during = in_passes / sum(hi - lo for lo, hi in windows)
    ran_out = " (batches ran out: raise --prune-entries)" if agent.acked[-1][0] < windows[-1][1] else ""
    lasted = ", ".join(f"{hi - lo:.2f}" for lo, hi in windows)
    return (
        f"{during:,.0f}/s vs {base:,.0f}/s before: {during / base - 1:+.0%}{ran_out}",
        f"{len(windows)} retention passes (the service's, run in a thread of the bench on one pool),"
        f" {len(dropped)} day(s) dropped, {sum(d.entries for d in dropped):,} entries; each took (s): {lasted}",
        "within 20 %: " + ("met" if during >= 0.8 * base else "NOT met"),
    )


class Report:
    """The figures, printed as they come and as one table at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def row(self, what: str, measured: str, target: str = "", peer: str = "") -> None:
        self.rows.append((what, measured, target, peer))
        print(f"  {what}: {measured}", flush=True)

    def table(self) -> str:
        widths = [max(len(r[i]) for r in self.rows) for i in range(4)]
        head = ("what", "measured", "target", "peer")
        lines = [head, tuple("-" * w for w in widths), *self.rows]
        return "\n".join(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines)


@dataclass
class Peer:
    rate: float  # entries/s, the median of its runs
    bytes: float  # file size per entry
    json_bytes: float
    # One more run of the peer on the same entries, entries/s: each ingest run is paired with one
    # right before it, so that the machine's speed drifting between phases (10-15 % here) cancels.
    again: Callable[[], float]


def median_of(samples: list[float]) -> tuple[float, str]:
    """The median and every sample, in the order they ran."""
    return statistics.median(samples), ", ".join(f"{x:,.0f}" for x in samples)


def corpora(report: Report, n: int, today_us: int, tmp: Path) -> tuple[Peer, list[list[bytes]]]:
    """Five machines' journals of yesterday afternoon through the peer, as journalctl printed them;
    the peer's figures on the first one."""
    print(f"building 5 corpora of {n:,} entries (each its own machine)", flush=True)
    raw = [
        [e for p in journal(seed, n, start_us=today_us - DAY_US // 2, interval_us=DAY_US / 2 / n) for e in p]
        for seed in range(5)
    ]
    peer = through_peer(raw[0], tmp)
    plain = through_peer(raw[0], tmp, compress=False, read=False)
    lines = [peer.lines, *(through_peer(r, tmp).lines for r in raw[1:])]
    parsed = [orjson.loads(line) for line in lines[0]]
    json_bytes = sum(map(len, lines[0])) / n
    report.row("corpus: fields per entry (mean)", f"{sum(map(len, parsed)) / n:.1f}", "about 29")
    report.row("corpus: JSON bytes per entry (mean)", f"{json_bytes:.0f} B", "about 1 kB")
    kernel = sum(e["_TRANSPORT"] == "kernel" for e in parsed) / n
    units = len({e.get("_SYSTEMD_UNIT") for e in parsed})
    procs = len({(e["_BOOT_ID"], e.get("_PID")) for e in parsed})
    report.row("corpus: shape", f"{kernel:.1%} kernel, {units} units, {procs} processes, 2 boots", "about 2 % kernel")
    first = raw[0]
    result = Peer(
        n / peer.seconds, peer.file_bytes / n, json_bytes, lambda: n / through_peer(first, tmp, read=False).seconds
    )
    del raw
    report.row(
        "peer: its journal file per entry",
        f"{result.bytes:.0f} B file size ({peer.used_bytes / n:.0f} B used; --compress=no:"
        f" {plain.file_bytes / n:.0f} B, {n / plain.seconds:,.0f}/s)",
    )
    return result, lines


def ingest_and_size(report: Report, svc: RunningService, peer: Peer, lines: list[list[bytes]], repeats: int) -> None:
    n = len(lines[0])
    batches = [batches_of(c) for c in lines]
    stored_total = 0
    peer_rates: list[float] = []
    one: list[float] = []
    four: list[float] = []

    def counted(run: tuple[float, int], expected: int) -> float:
        """Entries/s of one ingest run, after checking it stored every entry."""
        nonlocal stored_total
        seconds, stored = run
        assert stored == expected, run
        stored_total += stored
        return stored / seconds

    def one_vm(name: str, corpus: list[Batch], in_flight: int = IN_FLIGHT) -> float:
        return counted(asyncio.run(ingest([(enroll(svc, name, in_flight), corpus)])), n)

    def four_vms(name: str, corpora: list[list[Batch]]) -> float:
        agents = [(enroll(svc, f"{name}-{i}", IN_FLIGHT), b) for i, b in enumerate(corpora)]
        return counted(asyncio.run(ingest(agents)), 4 * n)

    # A running service has its row workers up: they start at its first batch, here untimed.
    stored_total += asyncio.run(ingest([(enroll(svc, "store-warm-up"), batches[0][:1])]))[1]
    # Each round: the peer, then one VM as the agent sends, then four VMs at once, each on new VMs;
    # each ratio is to the peer's run of its own round.
    for r in range(repeats):
        print(f"ingest round {r + 1} of {repeats}: the peer, 1 VM, 4 VMs", flush=True)
        peer_rates.append(peer.again())
        one.append(one_vm(f"store-1-{r}", batches[0]))
        four.append(four_vms(f"store-4-{r}", batches[1:]))
    peer.rate = statistics.median(peer_rates)
    report.row(
        "peer: systemd-journal-remote, default --compress=yes",
        f"{peer.rate:,.0f} entries/s (median of {repeats}: {median_of(peer_rates)[1]})",
    )
    sent = f"{BATCH_ENTRIES}-entry gzip batches (or {BATCH_BYTES >> 20} MiB), {IN_FLIGHT} in flight"
    for what, target, rates in (
        (f"HTTP ingest, 1 VM as the agent sends: {sent}", ">= 1.0x", one),
        ("HTTP ingest, 4 VMs at once, each its own corpus, as the agent sends", ">= 1.5x", four),
    ):
        ratios = [x / p for x, p in zip(rates, peer_rates, strict=True)]
        shown = ", ".join(f"{x:,.0f}/s = {q:.2f}x" for x, q in zip(rates, ratios, strict=True))
        report.row(what, f"{statistics.median(ratios):.2f}x, the median of {repeats} rounds ({shown})", target)
    single = one_vm("store-1-single", batches[0], in_flight=1)
    report.row(
        "HTTP ingest, 1 VM, one batch at a time",
        f"{single:,.0f}/s = {single / peer.rate:.2f}x",
        "",
        f"{peer.rate:,.0f}/s",
    )
    earlier = [batches_of(c, EARLIER_BATCH_ENTRIES) for c in lines]
    del batches
    one_earlier = one_vm("store-1-earlier", earlier[0])
    four_earlier = four_vms("store-4-earlier", earlier[1:])
    report.row(
        f"HTTP ingest, {EARLIER_BATCH_ENTRIES}-entry batches (the bench before the twelfth session), once",
        f"1 VM {one_earlier:,.0f}/s = {one_earlier / peer.rate:.2f}x;"
        f" 4 VMs {four_earlier:,.0f}/s = {four_earlier / peer.rate:.2f}x",
        "",
        f"{peer.rate:,.0f}/s",
    )
    del earlier

    def size_row(what: str, peer_figure: str) -> list[asyncpg.Record]:
        sizes = asyncio.run(journal_sizes(svc.database_url))
        per = sum(s["bytes"] for s in sizes) / stored_total
        report.row(what, f"{per:.0f} B = {per / peer.bytes:.2f}x", "<= 1.0x", peer_figure)
        return sizes

    sizes = size_row(
        f"bytes on disk per stored entry ({stored_total // n} VMs)",
        f"{peer.bytes:.0f} B; raw JSON {peer.json_bytes:.0f} B",
    )
    parts = "; ".join(f"{s['root']} {s['bytes'] / stored_total:.0f} B ({s['relations']} rel.)" for s in sizes)
    report.row("  of which (journal_* trees, after VACUUM ANALYZE)", parts)
    # The corpora are yesterday's: a retention pass rebuilds a closed day's indexes packed.
    asyncio.run(prune_now(svc, retention_days=0))
    size_row("bytes on disk per stored entry, the day closed (compacted by a retention pass)", f"{peer.bytes:.0f} B")


def first_pages(report: Report, svc: RunningService, tmp: Path, today_us: int, args: argparse.Namespace) -> None:
    m, span = args.page_events, args.page_days * DAY_US
    print(f"loading {m:,} events over {args.page_days} days, 4 boots, into one VM", flush=True)
    pages = enroll(svc, "pages", IN_FLIGHT)
    start_us = today_us - span
    start = time.perf_counter()
    for piece in prepared(journal(100, m, start_us=start_us, interval_us=span / m, boots=4, chunk=50_000), tmp):
        asyncio.run(pages.send(piece))
    assert pages.stored == m, pages.stored
    print(f"  loaded at {m / (time.perf_counter() - start):,.0f}/s (2 batches in flight)", flush=True)
    asyncio.run(journal_sizes(svc.database_url))  # for its VACUUM ANALYZE
    mid = start_us + span // 2
    window = {"since": utc(mid), "until": utc(mid + 3_600_000_000)}
    some, none = (lambda c: c > 0), (lambda c: c == 0)
    cases: list[tuple[str, str, dict[str, str], Callable[[int], bool], str]] = [
        ("unit (ssh, about 6 %)", "/boot/ssh", {}, some, "< 20 ms"),
        ("unit, newest first", "/boot/ssh", {"order": "desc"}, some, "< 20 ms"),
        ("priority=crit, never matches", "/boot", {"priority": "crit"}, none, "< 20 ms"),
        ("previous boot (boot=-1)", "/boot", {"boot": "-1"}, some, "< 20 ms"),
        ("since/until, 1 h mid-journal", "/boot", window, some, "< 20 ms"),
        ("identifier (sudo, about 1 %)", "/boot", {"identifier": "sudo"}, some, "< 20 ms"),
        ("grep of an absent word", "/boot", {"grep": "xylophone"}, none, "< 100 ms"),
        ("grep of a word (about 2 %)", "/boot", {"grep": "evictions"}, some, "< 100 ms"),
        # At small --page-events the rare word may be missing altogether.
        ("grep of a rare word (about 0.06 %)", "/boot", {"grep": "flooding"}, lambda c: c >= 0, "< 100 ms"),
    ]
    with httpx.Client(base_url=f"{svc.url}/vm/pages", timeout=120) as client:
        for label, path, params, check, target in cases:
            measured = timed(client, path, params, args.rounds, check)
            report.row(f"first page, {m:,} events: {label}", measured, f"p99 {target}")


def prune(report: Report, svc: RunningService, tmp: Path, today_us: int, per_day: int, live: int) -> None:
    print(f"prune: {OLD_DAYS} days of {per_day:,} entries older than {RETENTION_DAYS} days, then live", flush=True)
    first_day = today_us - (RETENTION_DAYS + OLD_DAYS + 1) * DAY_US
    # 0.99: the boots' downtime stays inside the old days
    guest = DebianGuest(200, start_us=first_day, interval_us=0.99 * DAY_US / per_day)
    old = []
    for _ in range(OLD_DAYS):
        guest.reboot()
        old += guest.take(per_day)
    agent = enroll(svc, "prune")
    asyncio.run(agent.send(batches_of(through_peer(old, tmp).lines)))
    del old
    guest.now_us, guest.interval_us = int(time.time() * 1e6), 1000
    guest.reboot()
    batches = batches_of(through_peer(guest.take(live), tmp).lines)
    # Closed days compacted first (a pass does that once per day), so the pass measured only drops.
    asyncio.run(prune_now(svc, retention_days=0))
    during, said, verdict = asyncio.run(prune_while_ingesting(svc, Agent(svc.url, "prune", agent.token), batches))
    report.row("ingest of one VM while prunes drop old days, one day per pass", during, verdict)
    report.row("  the prune", said)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000, help="per VM for the ingest and size figures")
    parser.add_argument("--page-events", type=int, default=500_000, help="in the VM of the first-page figures")
    parser.add_argument("--page-days", type=int, default=6, help="that VM's journal spans this many days")
    parser.add_argument("--rounds", type=int, default=50, help="requests per first-page shape")
    parser.add_argument("--prune-entries", type=int, default=400_000, help="prepared for the prune's ingest")
    parser.add_argument(
        "--prune-day-entries",
        type=int,
        default=200_000,
        help="in each old day a prune drops (a day of a corpus machine)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of the peer and of each ingest figure")
    args = parser.parse_args()
    today_us = int(time.time()) // 86_400 * DAY_US
    report = Report()
    with tempfile.TemporaryDirectory(prefix="vmjournal-store-bench-") as tmp_name:
        tmp = Path(tmp_name)
        peer, lines = corpora(report, args.entries, today_us, tmp)
        with running_service() as svc:
            ingest_and_size(report, svc, peer, lines, args.repeats)
            del lines
            first_pages(report, svc, tmp, today_us, args)
            prune(report, svc, tmp, today_us, args.prune_day_entries, args.prune_entries)
    print()
    print(report.table())


if __name__ == "__main__":
    main()
