"""The generic worker on a real database, driven by handlers written here instead of the VM tasks."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support.service import test_settings as settings_for  # renamed: pytest would collect test_*

from vmjournal import db
from vmjournal.jobs.store import MONITOR_LOCK_KEY, ClaimedJob
from vmjournal.jobs.worker import Handler, JobRun, Worker

Start = Callable[..., Awaitable[Worker]]


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


@pytest.fixture
async def start_worker(database_url: str, tmp_path: Path) -> AsyncIterator[Start]:
    engine = db.create_engine(database_url)
    workers: list[Worker] = []

    async def start(handlers: Mapping[str, Handler], monitor: Callable[[], Awaitable[None]] | None = None) -> Worker:
        settings = settings_for(database_url, tmp_path / "data")
        worker = Worker(settings, db.session_factory(engine), handlers, monitor=monitor, poll_seconds=0.05)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        await worker.stop()
    await engine.dispose()


async def enqueue(conn: asyncpg.Connection, kind: str) -> int:
    vm_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO vm (id, name, size, provider, status) VALUES ($1, $2, 'small', 'test', 'pending')",
        vm_id,
        f"vm-{vm_id.hex[:8]}",
    )
    job_id: int = await conn.fetchval("INSERT INTO job (vm_id, kind) VALUES ($1, $2) RETURNING id", vm_id, kind)
    return job_id


async def job_row(conn: asyncpg.Connection, job_id: int, status: str, timeout: float = 10) -> asyncpg.Record:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await conn.fetchrow("SELECT * FROM job WHERE id = $1", job_id)
        if row is not None and row["status"] == status:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {status}: {row}")


class TestHandlers:
    async def test_handler_gets_a_frozen_job_and_its_writes_commit(
        self, conn: asyncpg.Connection, start_worker: Start
    ) -> None:
        seen: list[ClaimedJob] = []

        async def handler(run: JobRun) -> None:
            seen.append(run.job)
            async with db.transaction(worker.sessions) as session:
                await run.checkpoint(session, step="half", values={"token": "abc"})
            async with db.transaction(worker.sessions) as session:
                await run.finish(session, note="all good")

        worker = await start_worker({"provision": handler})
        job_id = await enqueue(conn, "provision")
        worker.start()
        row = await job_row(conn, job_id, "done")
        assert (row["step"], row["last_error"], row["locked_by"]) == ("half", "all good", None)
        assert await conn.fetchval("SELECT state->>'token' FROM job WHERE id = $1", job_id) == "abc"
        [job] = seen
        assert (job.id, job.kind, job.step, dict(job.state), job.attempts) == (job_id, "provision", None, {}, 1)
        with pytest.raises(dataclasses.FrozenInstanceError):
            job.attempts = 2  # type: ignore[misc]

    async def test_kind_without_a_handler_fails_the_job(self, conn: asyncpg.Connection, start_worker: Start) -> None:
        async def handler(run: JobRun) -> None:
            raise AssertionError("not this kind")

        worker = await start_worker({"provision": handler})
        job_id = await enqueue(conn, "deprovision")
        worker.start()
        row = await job_row(conn, job_id, "failed")
        assert row["last_error"] == "no handler for job kind 'deprovision' in this service"

    async def test_a_job_taken_over_stops_its_handler_past_except_exception(
        self, conn: asyncpg.Connection, start_worker: Start
    ) -> None:
        taken_over = asyncio.Event()
        outcome: list[str] = []

        async def handler(run: JobRun) -> None:
            await taken_over.wait()
            try:
                async with db.transaction(worker.sessions) as session:
                    await run.checkpoint(session, step="late", values={"late": True})
                outcome.append("checkpoint written")
            except Exception:
                outcome.append("caught as a failure")
            finally:
                outcome.append("stopped")

        worker = await start_worker({"provision": handler})
        job_id = await enqueue(conn, "provision")
        worker.start()
        await job_row(conn, job_id, "running")
        await conn.execute("UPDATE job SET locked_by = 'another-worker' WHERE id = $1", job_id)
        taken_over.set()
        deadline = time.monotonic() + 10
        while not outcome and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        assert outcome == ["stopped"]
        row = await conn.fetchrow("SELECT step, state, locked_by FROM job WHERE id = $1", job_id)
        assert (row["step"], row["state"], row["locked_by"]) == (None, "{}", "another-worker")


class TestMonitorLock:
    async def test_skipped_while_another_process_holds_it_and_released_after_a_pass(
        self, conn: asyncpg.Connection, database_url: str, start_worker: Start
    ) -> None:
        passes: list[int] = []

        async def monitor() -> None:
            passes.append(1)

        worker = await start_worker({}, monitor)
        other = await asyncpg.connect(database_url)
        try:
            async with other.transaction():
                assert await other.fetchval("SELECT pg_try_advisory_xact_lock($1)", MONITOR_LOCK_KEY)
                assert await worker.monitor_once() is False
            assert passes == []
            assert await worker.monitor_once() is True
            assert await worker.monitor_once() is True
            assert passes == [1, 1]
            # Nothing is left holding it: another process takes it at once.
            async with other.transaction():
                assert await other.fetchval("SELECT pg_try_advisory_xact_lock($1)", MONITOR_LOCK_KEY)
        finally:
            await other.close()

    async def test_released_when_the_pass_fails(self, database_url: str, start_worker: Start) -> None:
        async def monitor() -> None:
            raise RuntimeError("provider exploded")

        worker = await start_worker({}, monitor)
        with pytest.raises(RuntimeError):
            await worker.monitor_once()
        other = await asyncpg.connect(database_url)
        try:
            locks: list[Any] = await other.fetch(
                "SELECT * FROM pg_locks WHERE locktype = 'advisory' "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            assert locks == []
        finally:
            await other.close()
