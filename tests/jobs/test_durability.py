"""Provisioning jobs survive SIGKILL and are never run twice, with real service processes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import httpx
from support.api import wait_for_status_sync
from support.service import LiveService


class TestSigkillMidJob:
    def test_job_resumes_from_the_step_it_reached(self, live_service: Callable[..., LiveService]) -> None:
        first = live_service(slow_seconds=4)
        assert httpx.post(f"{first.url}/vm/slow-1/small").status_code == 202
        wait_for_status_sync(first, "slow-1", "provisioning", step="boot")
        first.kill()

        second = live_service(slow_seconds=0.2)
        vm = wait_for_status_sync(second, "slow-1", "running", timeout=60)
        assert vm["error"] is None
        calls = [(step, pid) for name, step, pid in second.provider.calls() if name == "slow-1"]
        steps = [step for step, _ in calls]
        # "allocate" finished before the kill and is not run again; "boot" was cut off and is rerun.
        assert steps == ["allocate", "boot", "boot", "install-agent"], calls
        assert calls[0][1] == calls[1][1] != calls[2][1] == calls[3][1]


class TestTwoProcesses:
    def test_each_job_runs_once(self, live_service: Callable[..., LiveService]) -> None:
        a = live_service(slow_seconds=0.3)
        b = live_service(slow_seconds=0.3)
        names = [f"slow-{i}" for i in range(8)]
        for i, name in enumerate(names):
            assert httpx.post(f"{(a, b)[i % 2].url}/vm/{name}/small").status_code == 202
        for name in names:
            wait_for_status_sync(a, name, "running", timeout=90)
        calls = a.provider.calls()
        per_step = Counter((name, step) for name, step, _ in calls)
        assert all(count == 1 for count in per_step.values()), per_step
        assert len(per_step) == 3 * len(names)
        # Both processes did work: the queue is shared, not owned by whoever took the request.
        assert len({pid for _, _, pid in calls}) == 2


class TestGracefulStop:
    async def test_unfinished_job_is_handed_back(
        self, live_service: Callable[..., LiveService], database_url: str
    ) -> None:
        import asyncpg

        svc = live_service(slow_seconds=5, VMJOURNAL_JOB_STALE_SECONDS="600")
        assert httpx.post(f"{svc.url}/vm/slow-1/small").status_code == 202
        wait_for_status_sync(svc, "slow-1", "provisioning", step="boot")
        svc.stop()  # SIGTERM
        conn = await asyncpg.connect(database_url)
        try:
            job = await conn.fetchrow("SELECT status, locked_by FROM job")
        finally:
            await conn.close()
        assert (job["status"], job["locked_by"]) == ("queued", None)
        # Long before the 600 s staleness, the next process takes it and finishes it.
        again = live_service(slow_seconds=0.2, VMJOURNAL_JOB_STALE_SECONDS="600")
        wait_for_status_sync(again, "slow-1", "running", timeout=30)
