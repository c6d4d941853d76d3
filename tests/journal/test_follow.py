"""Live follow over HTTP (Server-Sent Events, NDJSON) against the real service and PostgreSQL,
and the hub's promise: many followers of a VM cost one query per stored batch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import orjson
import pytest
from support.api import bearer, enroll
from support.service import Service

from vmjournal import db
from vmjournal.journal import live
from vmjournal.journal.store import EventFilter

BOOT = "0f5e3c4b8a6d4e2f9b1c7d8e6f5a4b3c"


def entry(i: int, unit: str = "ssh.service", priority: int = 6, text: str = "") -> dict[str, str]:
    return {
        "__CURSOR": f"s=follow;i={i}",
        "__REALTIME_TIMESTAMP": str(int(time.time() * 1e6) + i),
        "_BOOT_ID": BOOT,
        "_SYSTEMD_UNIT": unit,
        "PRIORITY": str(priority),
        "SYSLOG_IDENTIFIER": unit.split(".")[0],
        "_PID": "42",
        "MESSAGE": f"message {i}{text}",
    }


async def ingest(svc: Service, token: str, *entries: dict[str, str]) -> None:
    response = await svc.client.post("/vm/web/boot", json=list(entries), headers=bearer(token))
    assert response.status_code == 200 and response.json()["stored"] == len(entries), response.text


class SSE:
    """One open event stream and the messages read from it."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        message: dict[str, Any] = {}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if not line:
                    if "data" in message or "event" in message:
                        return message
                    continue
                field, _, value = line.partition(": ")
                if field in ("id", "event", "data", "retry"):
                    message[field] = value
        raise AssertionError("the stream ended")

    async def events(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` journal events, each with its SSE id."""
        out: list[dict[str, Any]] = []
        while len(out) < count:
            message = await self.next()
            if message.get("event") in (None, "message") and "data" in message:
                out.append({**orjson.loads(message["data"]), "_sse_id": message.get("id")})
        return out

    async def until_live(self) -> list[dict[str, Any]]:
        """The backlog (or catch-up) sent before the ``live`` marker."""
        out: list[dict[str, Any]] = []
        while True:
            message = await self.next()
            if message.get("event") == "live":
                return out
            if "data" in message and "event" not in message:
                out.append({**orjson.loads(message["data"]), "_sse_id": message.get("id")})

    async def nothing_within(self, seconds: float) -> None:
        try:
            message = await self.next(timeout=seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message {message}")


@asynccontextmanager
async def follow(svc: Service, path: str, last_event_id: str | None = None, **params: str) -> AsyncIterator[SSE]:
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    async with svc.client.stream("GET", path, params=params, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SSE(response)


def messages(events: list[dict[str, Any]]) -> list[str]:
    return [e["message"] for e in events]


class TestServerSentEvents:
    async def test_two_followers_and_resume_by_last_event_id(self, service: Service) -> None:
        token = await enroll(service.client, "web")
        await ingest(service, token, entry(1), entry(2), entry(3, unit="nginx.service"))

        async with (
            follow(service, "/vm/web/boot", limit="2") as everything,
            follow(service, "/vm/web/boot/nginx") as nginx,
        ):
            assert messages(await everything.until_live()) == ["message 2", "message 3"]
            assert messages(await nginx.until_live()) == ["message 3"]

            await ingest(service, token, entry(4, unit="nginx.service"), entry(5))
            seen = await everything.events(2)
            assert messages(seen) == ["message 4", "message 5"]
            assert messages(await nginx.events(1)) == ["message 4"]
            await nginx.nothing_within(0.3)
            # The SSE id is the event's opaque position.
            assert all(e["_sse_id"] == e["position"] for e in seen)
            last_id = seen[-1]["_sse_id"]

        # While nobody follows, two more arrive; resuming from the last id sends exactly those.
        await ingest(service, token, entry(6, unit="nginx.service"), entry(7))
        async with follow(service, "/vm/web/boot", last_event_id=last_id, limit="2") as resumed:
            assert messages(await resumed.until_live()) == ["message 6", "message 7"]
            await ingest(service, token, entry(8))
            assert messages(await resumed.events(1)) == ["message 8"]
            await resumed.nothing_within(0.5)

    async def test_filters_apply_to_live_events(self, service: Service) -> None:
        token = await enroll(service.client, "web")
        async with follow(service, "/vm/web/boot", priority="warning", grep="disk", limit="5") as errors:
            assert await errors.until_live() == []
            await ingest(
                service,
                token,
                entry(1, priority=3, text=" disk full"),
                entry(2, priority=6, text=" disk"),
                entry(3, priority=4),
                entry(4, priority=4, text=" Disk slow"),
            )
            first = await errors.events(2)
            # grep with no capital letter ignores case, as journalctl does.
            assert messages(first) == ["message 1 disk full", "message 4 Disk slow"]
            await errors.nothing_within(0.3)

    async def test_bad_last_event_id_is_a_clear_400(self, service: Service) -> None:
        await enroll(service.client, "web")
        response = await service.client.get(
            "/vm/web/boot", headers={"Accept": "text/event-stream", "Last-Event-ID": "not-a-position"}
        )
        assert response.status_code == 400
        assert response.json()["error"] == "bad_cursor"

    async def test_ndjson_follow(self, service: Service) -> None:
        token = await enroll(service.client, "web")
        await ingest(service, token, entry(1))
        async with service.client.stream(
            "GET", "/vm/web/boot", params={"follow": "true"}, headers={"Accept": "application/x-ndjson"}
        ) as response:
            lines = response.aiter_lines()
            assert orjson.loads(await anext(lines))["message"] == "message 1"
            await ingest(service, token, entry(2))
            async with asyncio.timeout(10):
                assert orjson.loads(await anext(lines))["message"] == "message 2"


OLD_BOOT = "1a2b3c4d5e6f47a8b9c0d1e2f3a4b5c6"
VARIED_UNITS = ["nginx.service", "ssh.service", "cron.service", "sshd-keygen.service"]
VARIED_MESSAGES = [
    "disk full on sda1",
    "ramdisk ready",
    "Disk slow",
    "request served",
    "code 503 returned",
    "retry #2",
]


def varied(i: int, boot: str = BOOT, unit: str | None = None) -> dict[str, str]:
    """Entries that tell the filters apart: units, systemd's messages about units, priorities, words."""
    e = entry(i, unit=unit or VARIED_UNITS[i % len(VARIED_UNITS)], priority=i % 8)
    e |= {"_BOOT_ID": boot, "MESSAGE": f"{VARIED_MESSAGES[i % len(VARIED_MESSAGES)]} ({chr(97 + i % 26)})"}
    if i % 5 == 0:
        # PID 1 about a unit: journalctl -u selects it for that unit.
        about = unit or ("nginx.service" if i % 10 == 0 else "ssh.service")
        e |= {"_SYSTEMD_UNIT": "init.scope", "_PID": "1", "UNIT": about, "SYSLOG_IDENTIFIER": "systemd"}
    return e


# Each filter of a page, including PostgreSQL-only regex syntax and a glob whose units appear later.
FILTERS: list[tuple[str, dict[str, str]]] = [
    ("/vm/web/boot/nginx", {}),
    ("/vm/web/boot/ss*", {}),
    ("/vm/web/boot/worker@*", {}),
    ("/vm/web/boot", {"priority": "warning"}),
    ("/vm/web/boot", {"grep": "[[:digit:]]+"}),
    ("/vm/web/boot", {"grep": r"\mdisk"}),
    ("/vm/web/boot", {"grep": "Disk"}),
    ("/vm/web/boot", {"identifier": "cron"}),
    ("/vm/web/boot", {"boot": "0"}),
    ("/vm/web/boot/nginx", {"priority": "err", "grep": "code|disk"}),
]


async def page_cursors(svc: Service, path: str, params: dict[str, str]) -> list[str]:
    response = await svc.client.get(path, params={**params, "limit": "1000"})
    assert response.status_code == 200, response.text
    return [e["__CURSOR"] for e in response.json()["events"]]


class TestFollowMatchesPages:
    async def test_each_filter_selects_what_a_page_selects(self, service: Service) -> None:
        token = await enroll(service.client, "web")
        # Before anyone follows: a previous boot, then the current one.
        before = [varied(i, boot=OLD_BOOT) for i in range(20)] + [varied(i) for i in range(20, 60)]
        await ingest(service, token, *before)
        async with AsyncExitStack() as stack:
            streams = [
                await stack.enter_async_context(follow(service, path, limit="1000", **params))
                for path, params in FILTERS
            ]
            backlogs = [await s.until_live() for s in streams]
            # After: more of the current boot, and units no page had seen when the followers connected.
            later = [varied(i) for i in range(60, 120)]
            later += [varied(i, unit="worker@1.service") for i in range(120, 126)]
            later += [varied(i, unit="worker@2.service") for i in range(126, 131)]
            await ingest(service, token, *later)
            for (path, params), stream, backlog in zip(FILTERS, streams, backlogs, strict=True):
                expected = await page_cursors(service, path, params)
                assert expected, f"the sample must select something for {path} {params}"
                live_events = await stream.events(len(expected) - len(backlog))
                assert cursors(backlog + live_events) == expected, (path, params)
            await asyncio.gather(*(s.nothing_within(0.3) for s in streams))
        worker = await page_cursors(service, "/vm/web/boot/worker@*", {})
        assert len(worker) == 11 and not backlogs[2]

    async def test_an_invalid_grep_is_a_clear_400(self, service: Service) -> None:
        await enroll(service.client, "web")
        response = await service.client.get(
            "/vm/web/boot", params={"grep": "(unclosed"}, headers={"Accept": "text/event-stream"}
        )
        assert response.status_code == 400
        assert response.json()["error"] == "bad_grep"


def cursors(events: list[dict[str, Any]]) -> list[str]:
    return [e["__CURSOR"] for e in events]


def entry_messages(batch: list[dict[str, Any]] | None) -> list[str]:
    assert batch is not None
    return [e["message"] for e in batch]


@pytest.fixture
async def hub(service: Service) -> AsyncIterator[live.LiveHub]:
    """A second hub on the service's database, to look inside it."""
    engine = db.create_engine(service.database_url)
    hub = live.LiveHub(service.database_url, db.session_factory(engine))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()
        await engine.dispose()


class TestHub:
    async def test_many_followers_cost_one_query_per_batch(self, service: Service, hub: live.LiveHub) -> None:
        """A second hub (as in a second API process) on the same database: 30 followers, one query."""
        token = await enroll(service.client, "web")
        vm_id = (await service.client.get("/vm/web")).json()["id"]
        followers = []
        for i in range(30):
            f = EventFilter(units=["nginx.service"]) if i % 3 == 0 else EventFilter()
            follower = hub.register(UUID(vm_id), f)
            upto, _ = await live.snapshot(hub._sessions, live.vm_source(UUID(vm_id), f), backlog=0, after=None)
            hub.activate(follower, upto)
            followers.append(follower)
        before = hub.queries
        await ingest(service, token, entry(1), entry(2, unit="nginx.service"))
        for i, follower in enumerate(followers):
            got = entry_messages(await follower.next_batch(10))
            assert got == (["message 2"] if i % 3 == 0 else ["message 1", "message 2"])
        assert hub.queries - before == 1
        assert hub.follower_count(UUID(vm_id)) == 30

    async def test_survives_losing_its_listen_connection(self, service: Service, hub: live.LiveHub) -> None:
        """Notifications sent while the hub reconnects are lost; it catches up on every followed VM."""
        token = await enroll(service.client, "web")
        vm_id = UUID((await service.client.get("/vm/web")).json()["id"])
        f = EventFilter()
        follower = hub.register(vm_id, f)
        upto, _ = await live.snapshot(hub._sessions, live.vm_source(vm_id, f), backlog=0, after=None)
        hub.activate(follower, upto)
        assert hub._listener is not None
        killer = await asyncpg.connect(service.database_url)
        try:
            await killer.execute("SELECT pg_terminate_backend($1)", hub._listener.get_server_pid())
        finally:
            await killer.close()
        await ingest(service, token, entry(1))
        assert entry_messages(await follower.next_batch(10)) == ["message 1"]
        await ingest(service, token, entry(2))
        assert entry_messages(await follower.next_batch(10)) == ["message 2"]

    async def test_a_reader_too_far_behind_is_closed(self, service: Service, hub: live.LiveHub) -> None:
        """Memory per follower is bounded: past QUEUE_EVENTS unread events it gets an end, not more."""
        token = await enroll(service.client, "web")
        vm_id = UUID((await service.client.get("/vm/web")).json()["id"])
        slow, fast = EventFilter(), EventFilter()
        slow_follower, fast_follower = hub.register(vm_id, slow), hub.register(vm_id, fast)
        for follower, f in ((slow_follower, slow), (fast_follower, fast)):
            upto, _ = await live.snapshot(hub._sessions, live.vm_source(vm_id, f), backlog=0, after=None)
            hub.activate(follower, upto)
        received = 0
        for start in range(0, live.QUEUE_EVENTS + 2000, 4000):
            await ingest(service, token, *(entry(i) for i in range(start, start + 4000)))
            while received < start + 4000:
                batch = await fast_follower.next_batch(10)
                assert batch, "the fast reader must get everything"
                received += len(batch)
        batches = []
        while (batch := await slow_follower.next_batch(1)) not in (None, []):
            batches.append(batch)
        assert batch is None and slow_follower.overflowed
        assert sum(len(b) for b in batches) <= live.QUEUE_EVENTS
