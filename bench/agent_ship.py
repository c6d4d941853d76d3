"""The agent shipping a big journal file to the real service, and its cost while idle-following.

Prints: entries/s of ``vmjournal_agent.py --once --file F`` (200k entries by default) against
``vmjournal serve`` on its embedded PostgreSQL, once per ``--in-flight`` value (1 and 2 by default,
each into a VM of its own, same service, same run); ``journalctl -o json --all`` alone on the same
file (the agent's floor); the agent's peak RSS (Python alone, and with its journalctl); and the
CPU the agent and its ``journalctl --follow`` use over an idle minute.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from common import ROOT, running_service
from support.api import enroll_sync
from support.journal_files import sample_entries, write_journal

AGENT = ROOT / "agent" / "vmjournal_agent.py"
PYTHON = "/usr/bin/python3"
TICKS = os.sysconf("SC_CLK_TCK")


def vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def agent_argv(url: str, name: str, config: Path, state: Path, *source: str) -> list[str]:
    return [
        PYTHON,
        str(AGENT),
        "--url",
        url,
        "--name",
        name,
        "--config",
        str(config),
        "--state-file",
        str(state),
        *source,
    ]


def ship_once(argv: list[str], url: str, name: str, entries: int) -> None:
    """Run the agent to the end of the file; print its rate, CPU and peak RSS."""
    in_flight = argv[argv.index("--in-flight") + 1]
    t0 = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE)
    hwm = 0
    while proc.poll() is None:
        hwm = max(hwm, vm_hwm_kib(proc.pid))
        time.sleep(0.1)
    elapsed = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 0, err
    count = httpx.get(f"{url}/vm/{name}", timeout=30).json()["event_count"]
    assert count == entries, f"stored {count} of {entries}: {err}"
    print(f"agent --once --in-flight {in_flight}: {entries / elapsed:,.0f} entries/s ({elapsed:.1f} s, all stored)")
    print(f"  agent + journalctl CPU: {cpu:.1f} s ({1e6 * cpu / entries:.0f} us per entry)")
    print(f"  agent peak RSS: {hwm / 1024:.1f} MiB (Python process; journalctl is separate)")


def in_flight_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--in-flight", type=in_flight_list, default=[1, 2], help="values to compare, e.g. 1,2,3")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vmjournal-agent-bench-") as tmp_name:
        tmp = Path(tmp_name)
        directory = tmp / "journal"
        t0 = time.perf_counter()
        path = write_journal(sample_entries(args.entries), directory)
        print(
            f"journal file: {args.entries} entries, {path.stat().st_size / 1e6:.0f} MB "
            f"(written in {time.perf_counter() - t0:.1f} s)"
        )

        t0 = time.perf_counter()
        subprocess.run(["journalctl", f"--file={path}", "-o", "json", "--all"], stdout=subprocess.DEVNULL, check=True)
        floor = time.perf_counter() - t0
        print(f"journalctl -o json --all alone: {args.entries / floor:,.0f} entries/s ({floor:.1f} s)")

        with running_service() as svc:
            for run, in_flight in enumerate(args.in_flight):
                name = f"bench-{run}-{in_flight}"  # repeat a value (1,2,2,1) to even out the table's growth
                config, state = tmp / f"{name}.conf", tmp / f"{name}.state"
                config.write_text(f"token = {enroll_sync(svc.url, name)}\n")
                source = ("--once", "--file", str(path), "--in-flight", str(in_flight))
                ship_once(agent_argv(svc.url, name, config, state, *source), svc.url, name, args.entries)

            # Idle following: everything is shipped; measure CPU over a quiet period.
            follow = subprocess.Popen(
                agent_argv(svc.url, name, config, state, "--directory", str(directory)), stderr=subprocess.DEVNULL
            )
            time.sleep(3)
            kids = children(follow.pid)
            before = cpu_seconds(follow.pid), sum(cpu_seconds(k) for k in kids)
            time.sleep(args.idle_seconds)
            after = cpu_seconds(follow.pid), sum(cpu_seconds(k) for k in kids)
            agent_pct = 100 * (after[0] - before[0]) / args.idle_seconds
            journalctl_pct = 100 * (after[1] - before[1]) / args.idle_seconds
            print(
                f"idle follow over {args.idle_seconds:.0f} s: agent {agent_pct:.3f}% CPU, journalctl -f "
                f"{journalctl_pct:.3f}% CPU, agent RSS {vm_hwm_kib(follow.pid) / 1024:.1f} MiB"
            )
            follow.terminate()
            follow.wait(10)


if __name__ == "__main__":
    main()
