"""The row workers do not outlive a service killed outright."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# A stand-in for the service: builds one batch in two workers, prints their PIDs, then waits.
SERVICE = """
import asyncio, multiprocessing, sys, time, uuid
from vmjournal.journal.row_workers import Limits, RowBuilder

async def main() -> None:
    builder = RowBuilder(2)
    body = b'[{"__CURSOR": "s=0;i=1", "__REALTIME_TIMESTAMP": "1", "MESSAGE": "hello"}]'
    await asyncio.gather(*(builder.build(body, None, uuid.uuid4(), Limits(10_000, 10)) for _ in range(4)))
    print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
    time.sleep(600)

asyncio.run(main())
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


def test_workers_exit_when_the_service_is_killed() -> None:
    service = subprocess.Popen([sys.executable, "-c", SERVICE], stdout=subprocess.PIPE, text=True)
    try:
        assert service.stdout is not None
        workers = [int(pid) for pid in service.stdout.readline().split()]
        assert len(workers) >= 2 and all(alive(pid) for pid in workers)
    finally:
        os.kill(service.pid, signal.SIGKILL)
        service.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "worker processes outlived the service"
