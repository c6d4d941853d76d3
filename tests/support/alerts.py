"""Helpers for alert tests: journal entries with chosen timestamps, ingest, rules."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from support.api import bearer

BOOT = "0f5e3c4b8a6d4e2f9b1c7d8e6f5a4b3c"
_counter = iter(range(1, 10**9))


def entry(
    message: str, *, unit: str = "nginx.service", priority: int = 3, at: float | None = None, **fields: str
) -> dict[str, str]:
    """One journal entry; ``at`` is its journal time (Unix seconds, default now)."""
    i = next(_counter)
    return {
        "__CURSOR": f"s=alerts;i={i}",
        "__REALTIME_TIMESTAMP": str(int((at or time.time()) * 1e6)),
        "_BOOT_ID": BOOT,
        "_SYSTEMD_UNIT": unit,
        "PRIORITY": str(priority),
        "SYSLOG_IDENTIFIER": unit.split(".")[0],
        "_PID": "42",
        "MESSAGE": message,
        **fields,
    }


async def ingest(client: httpx.AsyncClient, vm: str, token: str, *entries: dict[str, str]) -> None:
    response = await client.post(f"/vm/{vm}/boot", json=list(entries), headers=bearer(token))
    assert response.status_code == 200 and response.json()["stored"] == len(entries), response.text


async def create_rule(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/alerts", json=body)
    assert response.status_code == 201, response.text
    rule: dict[str, Any] = response.json()
    return rule


async def wait_for_matches(
    client: httpx.AsyncClient, rule: str, vm: str, matches: int, timeout: float = 20.0
) -> dict[str, Any]:
    """The rule's state on the VM once evaluation has seen ``matches`` matching entries."""
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        detail = (await client.get(f"/alerts/{rule}")).json()
        state = next((s for s in detail["vms"] if s["vm"] == vm), {})
        if state.get("matches", 0) >= matches:
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"rule {rule} on {vm} never saw {matches} matches: {state}")


async def wait_for_delivered(client: httpx.AsyncClient, rule: str, count: int, timeout: float = 20.0) -> list[Any]:
    """The rule's history once ``count`` notifications are recorded as delivered. A receiver sees a
    POST before the service has read the answer and recorded it."""
    deadline = time.monotonic() + timeout
    history: list[Any] = []
    while time.monotonic() < deadline:
        history = (await client.get(f"/alerts/{rule}/events")).json()
        if sum(h["delivery"] == "delivered" for h in history) >= count:
            return history
        await asyncio.sleep(0.05)
    raise AssertionError(f"rule {rule}: fewer than {count} deliveries recorded: {history}")
