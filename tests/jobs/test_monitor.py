"""The running-VM monitor is shared by every service process on one database, not captured by one."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import httpx
from support.api import wait_for_status
from support.service import LiveService

WINDOWS = 4
WINDOW_SECONDS = 2.0


class TestMonitorAcrossProcesses:
    async def test_both_processes_keep_running_passes(self, live_service: Callable[..., LiveService]) -> None:
        a = live_service(VMJOURNAL_MONITOR_SECONDS="0.2")
        b = live_service(VMJOURNAL_MONITOR_SECONDS="0.2")
        assert a.proc is not None and b.proc is not None
        async with httpx.AsyncClient(base_url=a.url, timeout=10) as client:
            assert (await client.post("/vm/watch-1/small")).status_code == 202
            await wait_for_status(client, "watch-1", "running")
        # Window after window: a monitor lock left held by one process would shut the other
        # out of every later window, not just delay it.
        for window in range(WINDOWS):
            seen = len(a.provider.inspections())
            await asyncio.sleep(WINDOW_SECONDS)
            passes = Counter(pid for name, pid in a.provider.inspections()[seen:] if name == "watch-1")
            assert set(passes) == {a.proc.pid, b.proc.pid}, (
                f"window {window}: passes by pid {dict(passes)}; a={a.proc.pid} b={b.proc.pid}"
            )
