"""Database outages: which errors count as one, and the service answering 503 (not 500) while its
own PostgreSQL server is down, logging one line each way, and recovering by itself."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from support.api import bearer, enroll
from support.pgserver import PgServer
from support.service import free_port, serving
from support.service import test_settings as make_settings

from vmjournal import db, outage
from vmjournal.main import create_app
from vmjournal.providers.external import ExternalProvider


async def raised(coro: Any) -> BaseException:
    try:
        await coro
    except BaseException as exc:  # noqa: BLE001 - the error is what the test inspects
        return exc
    raise AssertionError("expected an error")


class TestIsUnavailable:
    async def test_refused_connection(self) -> None:
        exc = await raised(asyncpg.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"))
        assert isinstance(exc, OSError)
        assert outage.is_unavailable(exc)

    async def test_terminated_backend(self, pg_url: str) -> None:
        victim = await asyncpg.connect(pg_url)
        admin = await asyncpg.connect(pg_url)
        try:
            # Cut off mid-statement, as a server shutdown or crash does.
            query = asyncio.create_task(victim.fetchval("SELECT pg_sleep(30)"))
            await asyncio.sleep(0.3)
            await admin.execute("SELECT pg_terminate_backend($1)", victim.get_server_pid())
            exc = await raised(query)
            assert isinstance(exc, asyncpg.PostgresError), repr(exc)
            assert outage.is_unavailable(exc), repr(exc)
            # Using it again: asyncpg's InterfaceError "connection is closed".
            again = await raised(victim.fetchval("SELECT 1"))
            assert isinstance(again, asyncpg.InterfaceError), repr(again)
            assert outage.is_unavailable(again)
        finally:
            await admin.close()
            victim.terminate()

    def test_a_statement_meeting_the_servers_goodbye(self) -> None:
        # What asyncpg raised in CI when a fast shutdown's FATAL reached an idle pooled connection
        # just before the alert evaluator used it: the protocol was still consuming that error.
        exc = asyncpg.InternalClientError("cannot switch to state 11; another operation (2) is in progress")
        assert outage.is_unavailable(exc)
        assert not outage.is_unavailable(asyncpg.InternalClientError("unexpected message type"))

    async def test_sqlalchemy_wrapper_of_a_refused_connection(self) -> None:
        engine = db.create_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
        try:
            async with engine.connect() as conn:
                exc = await raised(conn.execute(text("SELECT 1")))
        except OSError as error:  # the connect itself may fail outside execute
            exc = error
        finally:
            await engine.dispose()
        assert outage.is_unavailable(exc), repr(exc)

    async def test_bad_statements_are_not_outages(self, pg_url: str) -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            assert not outage.is_unavailable(await raised(conn.execute("SELEC 1")))
            assert not outage.is_unavailable(await raised(conn.fetchval("SELECT 1/0")))
            # asyncpg's InterfaceError for misuse, not for a lost link.
            misuse = await raised(conn.fetchval("SELECT $1::int", 1, 2))
            assert isinstance(misuse, asyncpg.InterfaceError)
            assert not outage.is_unavailable(misuse)
        finally:
            await conn.close()

    def test_os_errors_outside_the_driver_are_not_outages(self, tmp_path: Path) -> None:
        with pytest.raises(OSError) as missing:
            (tmp_path / "nope").read_text()
        assert not outage.is_unavailable(missing.value)
        with socket.socket() as s, pytest.raises(ConnectionRefusedError) as refused:
            s.connect(("127.0.0.1", free_port()))
        assert not outage.is_unavailable(refused.value)


@asynccontextmanager
async def serving_external(database_url: str, tmp_path: Path, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database_url, tmp_path / "data", provider="external", **overrides)
    async with serving(create_app(settings, {"external": ExternalProvider()}), settings.port) as client:
        yield client


def entries(start: int, count: int) -> list[dict[str, str]]:
    return [
        {
            "__CURSOR": f"s=x;i={i}",
            "__REALTIME_TIMESTAMP": str(1_764_000_000_000_000 + i),
            "MESSAGE": f"m{i}",
            "_BOOT_ID": "0f5e3c4b8a6d4e2f9b1c7d8e6f5a4b3c",
        }
        for i in range(start, start + count)
    ]


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(outage.RETRY_AFTER_SECONDS)
    body = response.json()
    assert body["error"] == "database_unavailable"
    assert "database" in body["message"]


class TestServiceDuringOutage:
    @pytest.mark.parametrize("mode", ["immediate", "fast"])
    async def test_503_while_down_then_recovers(
        self, own_pg: PgServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str
    ) -> None:
        caplog.set_level(logging.INFO)
        async with serving_external(own_pg.url("vmjournal"), tmp_path) as client:
            token = await enroll(client, "vm1")
            assert (await client.post("/vm/vm1/boot", json=entries(0, 10), headers=bearer(token))).status_code == 200
            caplog.clear()

            own_pg.stop(mode)
            for _ in range(3):
                assert_unavailable(await client.get("/healthz"))
                assert_unavailable(await client.post("/vm/vm1/boot", json=entries(10, 10), headers=bearer(token)))
                assert_unavailable(await client.get("/vm/vm1"))
                assert_unavailable(await client.get("/vm/vm1/boot"))

            own_pg.start()
            deadline = time.monotonic() + 30
            while (await client.get("/healthz")).status_code != 200:
                assert time.monotonic() < deadline, "the service did not recover"
                await asyncio.sleep(0.2)
            response = await client.post("/vm/vm1/boot", json=entries(10, 10), headers=bearer(token))
            assert response.status_code == 200, response.text
            assert response.json()["stored"] == 10
            page = (await client.get("/vm/vm1/boot")).json()
            assert len(page["events"]) == 20
            # Its provision job, whether the outage caught it queued or running, ends once the
            # database is back (a running one when its heartbeat has gone stale).
            while (await client.get("/vm/vm1")).json()["status"] != "running":
                assert time.monotonic() < deadline + 30, "the VM's provision job did not finish"
                await asyncio.sleep(0.2)

        assert sum("database unavailable" in r.getMessage() for r in caplog.records) == 1
        assert sum("database is back" in r.getMessage() for r in caplog.records) == 1
        # No traceback and no error-level record from anyone (ours, uvicorn's, SQLAlchemy's pool).
        assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


async def until_not_saturated(call: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    for _ in range(100):
        response = await call()
        if response.status_code != 429:
            return response
        await asyncio.sleep(0.1)
    return response


class TestSaturation:
    async def test_pool_timeout_answers_429(
        self, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with serving_external(
            database_url, tmp_path, db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.3
        ) as client:
            # The worker and the live hub share the one connection: setup waits its turn, as a client would.
            created = await until_not_saturated(lambda: client.post("/vm/vm1/small", params={"provider": "external"}))
            assert created.status_code == 202, created.text
            locker = await asyncpg.connect(database_url)
            try:
                async with locker.transaction():
                    await locker.execute("LOCK TABLE journal_event IN ACCESS EXCLUSIVE MODE")
                    # This request takes the pool's only connection and waits for the lock.
                    reader = asyncio.create_task(client.get("/vm/vm1/boot"))
                    await asyncio.sleep(0.5)
                    response = await client.get("/vm/vm1")
                    assert response.status_code == 429, response.text
                    assert response.headers["retry-after"] == str(outage.SATURATED_RETRY_AFTER_SECONDS)
                    assert response.json()["error"] == "saturated"
                    assert not reader.done()
            finally:
                await locker.close()
            assert (await reader).status_code == 200
            assert (await until_not_saturated(lambda: client.get("/vm/vm1"))).status_code == 200
        # Load is not a fault: no traceback from the request or from the worker polling for jobs.
        assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
