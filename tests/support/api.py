"""Small helpers for driving the API from tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx


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


async def enroll(client: httpx.AsyncClient, name: str) -> str:
    """Enroll an external machine and return its ingest token."""
    response = await client.post(f"/vm/{name}/small", params={"provider": "external"})
    assert response.status_code == 202, response.text
    token: str = response.json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
