"""Alert rules: what they cost ingest, and how soon a matching entry reaches its webhook.

Prints ingest entries/s over HTTP (4 VMs at once, 1000-entry gzip batches, entries of about 20
fields) with no rule and with 100 rules (units, priorities, greps, field matches, VM globs; a few
match), alternating rounds on fresh VMs, and the CPU the service and its PostgreSQL spent per
entry (ingest, plus evaluation until caught up: on a shared machine a steadier measure of cost
than entries/s); how long evaluation took to catch up after the last batch; then the time from
posting one matching entry to the webhook receiving its firing (median, p99) on a loopback
receiver. Target (issue 13): ingest with 100 rules within 10 % of none.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import statistics
import time
from pathlib import Path

import asyncpg
import httpx
import orjson
from common import running_service
from ingest import post_all
from support.api import enroll_sync
from support.receiver import Receiver

TICKS = os.sysconf("SC_CLK_TCK")
UNITS = ("nginx", "sshd", "cron", "systemd-journald", "postgresql", "docker", "kubelet", "chronyd")
WORDS = ("timeout", "refused", "denied", "segfault", "panic", "oom", "retry", "disk", "full", "corrupt")


def entries(vm: str, count: int, start: float) -> list[dict[str, str]]:
    out = []
    for i in range(count):
        unit = UNITS[i % len(UNITS)]
        out.append(
            {
                "__CURSOR": f"s=bench-{vm};i={i:x};b=0f;m={i:x};t={i:x};x=0",
                "__REALTIME_TIMESTAMP": str(int((start + i / 1000) * 1e6)),
                "__MONOTONIC_TIMESTAMP": str(i * 1000),
                "_BOOT_ID": "0f5e3c4b8a6d4e2f9b1c7d8e6f5a4b3c",
                "_MACHINE_ID": "8d2e6e0bb5f94a4c9b3ef2d1a0c9b8e7",
                "_HOSTNAME": vm,
                "_TRANSPORT": "stdout",
                "_SYSTEMD_UNIT": f"{unit}.service",
                "_SYSTEMD_CGROUP": f"/system.slice/{unit}.service",
                "_SYSTEMD_SLICE": "system.slice",
                "SYSLOG_IDENTIFIER": unit,
                "SYSLOG_FACILITY": "3",
                "_PID": str(1000 + i % 50),
                "_UID": "0",
                "_GID": "0",
                "_COMM": unit,
                "_EXE": f"/usr/sbin/{unit}",
                "_CMDLINE": f"/usr/sbin/{unit} --foreground",
                "_CAP_EFFECTIVE": "1ffffffffff",
                "PRIORITY": str(3 if i % 500 == 0 else 6),
                "MESSAGE": f"request {i} served in {i % 97} ms from 10.0.{i % 256}.{i % 200}"
                + (" after a timeout" if i % 5000 == 0 else ""),
            }
        )
    return out


def rules(url: str) -> list[dict[str, object]]:
    made: list[dict[str, object]] = []
    for i in range(100):
        rule: dict[str, object] = {
            "name": f"rule-{i}",
            "webhook_url": url,
            "threshold": 1 + i % 5,
            "window_seconds": 60,
        }
        kind = i % 4
        if kind == 0:
            rule |= {"unit": UNITS[i % len(UNITS)], "priority": "err"}
        elif kind == 1:
            rule |= {"grep": WORDS[i % len(WORDS)]}
        elif kind == 2:
            rule |= {"priority": "crit", "vm": "bench-*"}
        else:
            rule |= {"unit": UNITS[i % len(UNITS)], "grep": WORDS[i % len(WORDS)], "match": ["_TRANSPORT=stdout"]}
        made.append(rule)
    return made


async def ingest_round(url: str, tokens: dict[str, str], per_vm: int, batch: int) -> float:
    start = time.time()
    work = {}
    for vm in tokens:
        rows = entries(vm, per_vm, start - 3600)
        work[vm] = [gzip.compress(orjson.dumps(rows[i : i + batch]), 1) for i in range(0, len(rows), batch)]
    began = time.perf_counter()
    await asyncio.gather(*(post_all(url, vm, tokens[vm], work[vm]) for vm in tokens))
    return per_vm * len(tokens) / (time.perf_counter() - began)


async def caught_up(database_url: str, vms: list[str]) -> float:
    """Seconds until the VMs' alert cursors counted all their entries."""
    began = time.perf_counter()
    conn = await asyncpg.connect(database_url)
    try:
        while await conn.fetchval(
            "SELECT count(*) FROM vm v LEFT JOIN alert_cursor c ON c.vm_id = v.id "
            "WHERE v.name = ANY($1::text[]) AND coalesce(c.event_count, -1) <> v.event_count",
            vms,
        ):
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    return time.perf_counter() - began


async def checkpoint(database_url: str) -> None:
    """Write every dirty page now. PostgreSQL checkpoints every max_wal_size of WAL, and the
    pages written first after one cost full-page images: left alone, that lands at the same
    point of every run, in the same phase. Each phase starts from a checkpoint instead."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _running_children(pid: int) -> int:
    ticks = 0
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            ticks += sum(int(v) for v in _stat(int(child))[11:13])
        except FileNotFoundError:
            pass  # exited since listed: its time is in its parent's reaped children (possibly not yet)
    return ticks


def cpu_seconds(service_pid: int, data_dir: Path) -> float:
    """CPU used so far by the service (its ingest worker processes included) and its PostgreSQL:
    the postmaster, backends that exited (the postmaster's reaped children) and backends still running."""
    postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    ticks = sum(int(v) for v in _stat(service_pid)[11:15]) + sum(int(v) for v in _stat(postmaster)[11:15])
    return (ticks + _running_children(service_pid) + _running_children(postmaster)) / TICKS


def latency(url: str, hook: Receiver, samples: int) -> list[float]:
    httpx.post(
        f"{url}/alerts", json={"name": "latency", "vm": "lat-*", "grep": "latency probe", "webhook_url": hook.url}
    ).raise_for_status()
    seconds = []
    for i in range(samples):
        vm = f"lat-{i}"
        token = enroll_sync(url, vm)
        before = len(hook.received)
        body = entries(vm, 1, time.time())
        body[0]["MESSAGE"] = "latency probe"
        sent = time.time()
        httpx.post(f"{url}/vm/{vm}/boot", json=body, headers={"Authorization": f"Bearer {token}"}).raise_for_status()
        while True:
            got = [r for r in hook.received[before:] if r.json["alert"] == "latency" and r.json["vm"] == vm]
            if got:
                seconds.append(got[0].at - sent)
                break
            time.sleep(0.001)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-vm", type=int, default=25_000)
    parser.add_argument("--vms", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    with Receiver() as hook, running_service(VMJOURNAL_ALERT_TICK_SECONDS="0.5") as svc:
        results: dict[str, list[float]] = {"none": [], "100 rules": []}
        cpu_us: dict[str, list[float]] = {"none": [], "100 rules": []}
        lags: list[float] = []
        for r in range(args.rounds):
            for label in ("none", "100 rules"):
                if label == "100 rules" and r == 0:
                    for rule in rules(hook.url):
                        httpx.post(f"{svc.url}/alerts", json=rule).raise_for_status()
                if label == "none" and r > 0:
                    for i in range(100):
                        httpx.delete(f"{svc.url}/alerts/rule-{i}").raise_for_status()
                if label == "100 rules" and r > 0:
                    for rule in rules(hook.url):
                        httpx.post(f"{svc.url}/alerts", json=rule).raise_for_status()
                tokens = {f"bench-{r}-{label[0]}-{i}": "" for i in range(args.vms)}
                tokens = {vm: enroll_sync(svc.url, vm) for vm in tokens}
                asyncio.run(checkpoint(svc.database_url))
                cpu = cpu_seconds(svc.pid, svc.data_dir)
                rate = asyncio.run(ingest_round(svc.url, tokens, args.per_vm, args.batch))
                results[label].append(rate)
                if label == "100 rules":
                    lags.append(asyncio.run(caught_up(svc.database_url, list(tokens))))
                # Ingest plus evaluation until caught up: unlike entries/s, hardly moved by other load.
                cpu = cpu_seconds(svc.pid, svc.data_dir) - cpu
                cpu_us[label].append(cpu * 1e6 / (args.per_vm * args.vms))
                print(
                    f"round {r + 1}, {label}: {rate:,.0f} entries/s, {cpu_us[label][-1]:.0f} us CPU per entry",
                    flush=True,
                )
        none, with_rules = statistics.mean(results["none"]), statistics.mean(results["100 rules"])
        # Each round's pair ran back to back: their ratio is the least disturbed by a shared machine.
        paired = [(w / n - 1) * 100 for n, w in zip(results["none"], results["100 rules"], strict=True)]
        print(
            f"ingest, {args.vms} VMs at once: no rule {none:,.0f}/s, 100 rules {with_rules:,.0f}/s "
            f"({(with_rules / none - 1) * 100:+.1f} %); per round {', '.join(f'{p:+.1f}' for p in paired)} %, "
            f"median {statistics.median(paired):+.1f} %"
        )
        cpu_none, cpu_rules = statistics.median(cpu_us["none"]), statistics.median(cpu_us["100 rules"])
        print(
            f"service + PostgreSQL CPU per entry (median): no rule {cpu_none:.0f} us, 100 rules {cpu_rules:.0f} us "
            f"({(cpu_rules / cpu_none - 1) * 100:+.1f} %)"
        )
        print(
            f"evaluation caught up {', '.join(f'{s:.2f}' for s in lags)} s after the last batch; "
            f"{len(hook.received)} notifications received"
        )
        seconds = sorted(latency(svc.url, hook, args.samples))
        p99 = seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))]
        print(
            f"ingest to webhook, {len(seconds)} firings with 100 rules defined: median "
            f"{statistics.median(seconds) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
