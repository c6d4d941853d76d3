"""Alerts across SIGKILL and restarts, and two service processes on one database (real processes)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from uuid import UUID

import asyncpg
import httpx
from support.alerts import entry
from support.api import bearer, enroll_sync
from support.receiver import Receiver
from support.service import LiveService, free_port

from vmjournal.journal import entries as journal_entries
from vmjournal.journal import ingest_store

FAST = {
    "VMJOURNAL_ALERT_RETRY_SECONDS": "0.3",
    "VMJOURNAL_ALERT_TICK_SECONDS": "0.3",
    "VMJOURNAL_ALERT_DELIVERY_TIMEOUT_SECONDS": "2",
}


def rule(svc: LiveService, name: str, url: str, **extra: object) -> dict[str, object]:
    response = httpx.post(f"{svc.url}/alerts", json={"name": name, "webhook_url": url, **extra}, timeout=10)
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def ingest(svc: LiveService, vm: str, token: str, *entries: dict[str, str]) -> None:
    response = httpx.post(f"{svc.url}/vm/{vm}/boot", json=list(entries), headers=bearer(token), timeout=10)
    assert response.status_code == 200, response.text


async def rows(database_url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def wait_rows(
    database_url: str, sql: str, predicate: Callable[[list[asyncpg.Record]], bool], timeout: float = 20
) -> list[asyncpg.Record]:
    deadline = time.monotonic() + timeout
    found: list[asyncpg.Record] = []
    while time.monotonic() < deadline:
        found = await rows(database_url, sql)
        if predicate(found):
            return found
        time.sleep(0.05)
    raise AssertionError(f"never true: {sql} -> {found}")


NOTIFICATIONS = "SELECT id, status, delivery, attempts FROM alert_notification"


class TestSigkill:
    async def test_killed_between_firing_and_delivery_delivers_once_after_restart(
        self, live_service: Callable[..., LiveService], database_url: str
    ) -> None:
        port = free_port()  # the receiver is not there yet: every attempt before the kill is refused
        first = live_service(**FAST)
        token = enroll_sync(first.url, "web-1")
        created = rule(first, "errs", f"http://127.0.0.1:{port}/hook")
        ingest(first, "web-1", token, entry("boom"))
        [pending] = await wait_rows(database_url, NOTIFICATIONS, lambda r: len(r) == 1 and r[0]["attempts"] >= 1)
        assert pending["delivery"] == "pending"
        first.kill()

        with Receiver(port=port) as hook:
            second = live_service(**FAST)
            [got] = hook.wait_for_sync(1)
            # The restarted evaluator caught up without firing again; the outbox posts once.
            time.sleep(1.5)
            assert len(hook.received) == 1
        assert got.key == str(pending["id"]) and got.signed_with(str(created["secret"]))
        [row] = await rows(database_url, NOTIFICATIONS)
        assert row["delivery"] == "delivered"
        assert "Traceback" not in second.log()

    async def test_killed_mid_post_posts_again_with_the_same_key(
        self, live_service: Callable[..., LiveService], database_url: str
    ) -> None:
        with Receiver() as hook:
            first = live_service(**FAST)
            token = enroll_sync(first.url, "web-1")
            rule(first, "errs", hook.url)
            # The receiver takes the first POST and answers after the service is gone.
            hook.answers = [200]
            hook.delay_first = 3.0
            ingest(first, "web-1", token, entry("boom"))
            hook.wait_for_sync(1)
            first.kill()
            live_service(**FAST)
            # Posted again once the killed process's claim (timeout + 5 s) ran out.
            second = hook.wait_for_sync(2, timeout=30)
            time.sleep(1.0)
            assert len(hook.received) == 2
        assert second[0].key == second[1].key and second[0].body == second[1].body
        [row] = await rows(database_url, NOTIFICATIONS)
        assert (row["delivery"], row["attempts"]) == ("delivered", 2)

    async def test_entries_stored_while_no_service_runs_fire_after_start(
        self, live_service: Callable[..., LiveService], database_url: str
    ) -> None:
        with Receiver() as hook:
            first = live_service(**FAST)
            token = enroll_sync(first.url, "web-1")
            rule(first, "errs", hook.url, grep="disk")
            ingest(first, "web-1", token, entry("disk one"))
            await wait_rows(database_url, NOTIFICATIONS, lambda r: [n["delivery"] for n in r] == ["delivered"])
            first.kill()
            # Stored with the service's own ingest SQL while no process listens for notifications.
            conn = await asyncpg.connect(database_url)
            try:
                vm_id: UUID = await conn.fetchval("SELECT id FROM vm WHERE name = 'web-1'")
                async with conn.transaction():
                    await conn.execute("DELETE FROM alert_state")  # as if that firing had resolved
                    await ingest_store.ingest(conn, vm_id, journal_entries.to_rows([entry("disk two")]))
            finally:
                await conn.close()
            live_service(**FAST)
            got = hook.wait_for_sync(2)
            time.sleep(1.0)
            assert len(hook.received) == 2
        assert [e["message"] for e in got[1].json["sample"]] == ["disk two"]


class TestTwoProcesses:
    async def test_each_firing_is_written_and_delivered_once(
        self, live_service: Callable[..., LiveService], database_url: str
    ) -> None:
        with Receiver() as hook:
            a = live_service(**FAST)
            b = live_service(**FAST)
            names = [f"web-{i}" for i in range(8)]
            tokens = {name: enroll_sync(a.url, name) for name in names}
            rule(a, "errs", hook.url, threshold=2, window_seconds=60)
            for round_ in range(3):
                for i, name in enumerate(names):
                    ingest((a, b)[(i + round_) % 2], name, tokens[name], entry(f"boom {round_}"))
            hook.wait_for_sync(len(names))
            time.sleep(1.5)
            received = list(hook.received)
        per_vm = Counter(r.json["vm"] for r in received)
        assert per_vm == Counter(dict.fromkeys(names, 1)), [(r.json["vm"], r.json["count"]) for r in received]
        assert all(r.json["count"] == 2 for r in received)
        found = await rows(database_url, NOTIFICATIONS)
        assert len(found) == len(names) and {r["delivery"] for r in found} == {"delivered"}
