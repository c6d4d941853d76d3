"""Small helpers for driving the API from tests: async ones for the service in this process (a
blocking call there would stall the event loop that serves it), sync ones for a service process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from support.service import LiveService


async def wait_for_status(
    client: httpx.AsyncClient, name: str, statuses: set[str] | str, timeout: float = 30
) -> dict[str, Any]:
    wanted = {statuses} if isinstance(statuses, str) else statuses
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await client.get(f"/vm/{name}")
        if response.status_code == 200:
            last = response.json()
            if last["status"] in wanted:
                return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"VM {name} did not reach {wanted} in {timeout}s; last seen: {last}")


def wait_for_status_sync(
    svc: LiveService, name: str, status: str, timeout: float = 60, step: str | None = None
) -> dict[str, Any]:
    """Poll a service process until the VM has ``status`` (and ``step``, if given); its log on failure."""
    deadline = time.monotonic() + timeout
    vm: dict[str, Any] = {}
    while time.monotonic() < deadline:
        vm = httpx.get(f"{svc.url}/vm/{name}", timeout=5).json()
        if vm.get("status") == status and (step is None or vm.get("step") == step):
            return vm
        time.sleep(0.1)
    raise AssertionError(f"{name} never reached {status}/{step}: {vm}\n{svc.log()[-3000:]}")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(interval)


async def enroll(client: httpx.AsyncClient, name: str) -> str:
    """Enroll an external machine and return its ingest token."""
    response = await client.post(f"/vm/{name}/small", params={"provider": "external"})
    assert response.status_code == 202, response.text
    token: str = response.json()["token"]
    return token


def enroll_sync(url: str, name: str) -> str:
    """``enroll`` for a service in another process."""
    response = httpx.post(f"{url}/vm/{name}/small", params={"provider": "external"}, timeout=30)
    assert response.status_code == 202, response.text
    token: str = response.json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
