"""Provisioning jobs survive SIGKILL and are never run twice, with real service processes."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import httpx
from conftest import LiveService


def wait_for(svc: LiveService, name: str, status: str, timeout: float = 60, step: str | None = None) -> dict:
    deadline = time.monotonic() + timeout
    vm: dict = {}
    while time.monotonic() < deadline:
        vm = httpx.get(f"{svc.url}/vm/{name}", timeout=5).json()
        if vm.get("status") == status and (step is None or vm.get("step") == step):
            return vm
        time.sleep(0.1)
    raise AssertionError(f"{name} never reached {status}/{step}: {vm}\n{svc.log()[-3000:]}")


class TestSigkillMidJob:
    def test_job_resumes_from_the_step_it_reached(self, live_service: Callable[..., LiveService]) -> None:
        first = live_service(slow_seconds=4)
        assert httpx.post(f"{first.url}/vm/slow-1/small").status_code == 202
        wait_for(first, "slow-1", "provisioning", step="boot")
        first.kill()

        second = live_service(slow_seconds=0.2)
        vm = wait_for(second, "slow-1", "running", timeout=60)
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
            wait_for(a, name, "running", timeout=90)
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
        wait_for(svc, "slow-1", "provisioning", step="boot")
        svc.stop()  # SIGTERM
        conn = await asyncpg.connect(database_url)
        try:
            job = await conn.fetchrow("SELECT status, locked_by FROM job")
        finally:
            await conn.close()
        assert (job["status"], job["locked_by"]) == ("queued", None)
        # Long before the 600 s staleness, the next process takes it and finishes it.
        again = live_service(slow_seconds=0.2, VMJOURNAL_JOB_STALE_SECONDS="600")
        wait_for(again, "slow-1", "running", timeout=30)
