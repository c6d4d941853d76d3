"""Day partitions: exactly-once across them, any timestamp stored, retention by age and by size
(while batches keep arriving) with the summaries kept true, and ``vmjournal db prune``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from support.api import bearer, enroll
from support.journal_files import wide_entries
from support.service import Service

from vmjournal import db
from vmjournal.config import Settings
from vmjournal.journal import entries, ingest_store, partition_store, retention

DAY_US = entries.DAY_US
# 2025-11-24 00:00 UTC, a day boundary.
DAY0 = 1_763_942_400_000_000

BOOTS = "SELECT vm_id, boot_id, first_at, last_at, entries FROM journal_boot ORDER BY 1, 2"
BOOTS_COUNTED = """
SELECT vm_id, boot_id, min(ts), max(ts), count(*) FROM journal_event WHERE boot_id IS NOT NULL
GROUP BY 1, 2 ORDER BY 1, 2
"""
UNITS = "SELECT vm_id, unit, entries, first_at, last_at FROM journal_unit ORDER BY 1, 2"
UNITS_COUNTED = """
SELECT vm_id, name, count(*), min(ts), max(ts) FROM (
    SELECT vm_id, unit AS name, ts FROM journal_event WHERE unit IS NOT NULL
    UNION ALL
    SELECT vm_id, about_unit, ts FROM journal_event WHERE about_unit IS NOT NULL AND about_unit IS DISTINCT FROM unit
) n GROUP BY 1, 2 ORDER BY 1, 2
"""
VOLUME = "SELECT vm_id, minute, priority, entries FROM journal_volume ORDER BY 1, 2, 3"
VOLUME_COUNTED = """
SELECT vm_id, date_bin('1 minute', ts, timestamptz 'epoch'), coalesce(priority, 7), count(*)
FROM journal_event GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
VM_COUNTS = """
SELECT v.id, v.event_count, (SELECT count(*) FROM journal_event e WHERE e.vm_id = v.id) FROM vm v ORDER BY 1
"""


def shifted(start: int, count: int, *, day: float, boot: str, units: list[str] | None = None) -> list[dict[str, str]]:
    """wide_entries moved to start ``day`` days after DAY0, one every 1 ms of the original spacing
    stretched so that a batch can cross midnight when ``day`` is just before it."""
    moved = []
    for entry in wide_entries(start, count, boot=boot, units=units or ["a.service", "b.service"]):
        ts = int(entry["__REALTIME_TIMESTAMP"]) - 1_764_000_000_000_000 + DAY0 + int(day * DAY_US)
        moved.append({**entry, "__REALTIME_TIMESTAMP": str(ts)})
    return moved


EVENTS_WITHOUT_CONTEXT = """
SELECT count(*) FROM journal_event e
WHERE NOT EXISTS (SELECT FROM journal_context c WHERE c.vm_id = e.vm_id AND c.id = e.context_id)
"""
CONTEXTS_UNUSED = """
SELECT count(*) FROM journal_context c
WHERE NOT EXISTS (SELECT FROM journal_event e WHERE e.vm_id = c.vm_id AND e.context_id = c.id)
"""
EVENTS_WITHOUT_TRIGRAMS = """
SELECT count(*) FROM journal_event e WHERE e.message ~ '[A-Za-z]{3}' AND NOT EXISTS (
    SELECT FROM journal_trigrams t WHERE t.vm_id = e.vm_id AND e.ts BETWEEN t.first_at AND t.last_at)
"""
TRIGRAMS_BEFORE = "SELECT count(*) FROM journal_trigrams WHERE last_at < $1"


async def add_vm(conn: asyncpg.Connection, name: str) -> uuid.UUID:
    vm_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO vm (id, name, size, provider, status) VALUES ($1, $2, 'small', 'external', 'running')", vm_id, name
    )
    return vm_id


async def put(conn: asyncpg.Connection, vm_id: uuid.UUID, batch: list[dict[str, str]]) -> int:
    async with conn.transaction():
        return await ingest_store.ingest(conn, vm_id, entries.to_rows(batch))


async def assert_counts_true(conn: asyncpg.Connection) -> None:
    """The boot, unit and volume summaries and the VMs' counters equal a recount of the events."""
    for kept, counted in ((BOOTS, BOOTS_COUNTED), (UNITS, UNITS_COUNTED), (VOLUME, VOLUME_COUNTED)):
        assert [tuple(r) for r in await conn.fetch(kept)] == [tuple(r) for r in await conn.fetch(counted)], kept
    for _, kept_count, counted_count in await conn.fetch(VM_COUNTS):
        assert kept_count == counted_count


async def assert_summaries_true(conn: asyncpg.Connection) -> None:
    await assert_counts_true(conn)
    # Every event's context is there, and no context outlives the last event using it.
    assert await conn.fetchval(EVENTS_WITHOUT_CONTEXT) == 0
    assert await conn.fetchval(CONTEXTS_UNUSED) == 0
    # A grep still finds every entry with letters in its message, and no batch outlives the days kept.
    assert await conn.fetchval(EVENTS_WITHOUT_TRIGRAMS) == 0
    days = await partition_store.partitions(conn)
    if days:
        assert await conn.fetchval(TRIGRAMS_BEFORE, days[0].start) == 0


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[Any]:
    engine = db.create_engine(database_url)
    yield db.session_factory(engine)
    await engine.dispose()


class TestExactlyOnce:
    async def test_a_batch_across_midnight_and_a_resend_days_later(self, conn: asyncpg.Connection) -> None:
        vm_id = await add_vm(conn, "midnight")
        boot = uuid.uuid4().hex
        # 2000 entries 1 ms apart, starting one second before midnight: they span two days.
        batch = shifted(0, 2000, day=1 - 1 / 86_400, boot=boot)
        assert await put(conn, vm_id, batch) == 2000
        days = [p.day for p in await partition_store.partitions(conn)]
        assert days == [datetime(2025, 11, 24).date(), datetime(2025, 11, 25).date()]
        assert await conn.fetchval("SELECT count(*) FROM journal_event_p20251124") == 1000
        # Days later the agent resends the same entries with new ones from that later day.
        later = shifted(5000, 500, day=4, boot=boot)
        assert await put(conn, vm_id, batch[::3] + later + batch[1::3]) == 500
        assert await put(conn, vm_id, batch + later) == 0
        assert await conn.fetchval("SELECT count(*) FROM journal_event WHERE vm_id = $1", vm_id) == 2500
        assert await conn.fetchval("SELECT count(DISTINCT (seqnum, xor)) FROM journal_event") == 2500
        await assert_summaries_true(conn)

    async def test_two_vms_first_batches_of_a_new_day(self, conn: asyncpg.Connection, database_url: str) -> None:
        """Both find the day missing; the second waits for the first to create it, then stores into it."""
        first, second = await add_vm(conn, "first"), await add_vm(conn, "second")
        other = await asyncpg.connect(database_url)
        try:
            creating = conn.transaction()
            await creating.start()
            assert await ingest_store.ingest(conn, first, entries.to_rows(shifted(0, 10, day=2, boot="a" * 32))) == 10
            # The first transaction holds the day's creation: the second finds the day missing and waits.
            waiting = asyncio.create_task(put(other, second, shifted(0, 10, day=2, boot="b" * 32)))
            await asyncio.sleep(0.5)
            assert not waiting.done()
            await creating.commit()
            assert await waiting == 10
        finally:
            await other.close()
        assert [p.day for p in await partition_store.partitions(conn)] == [datetime(2025, 11, 26).date()]
        await assert_summaries_true(conn)

    async def test_any_timestamp_is_stored(self, conn: asyncpg.Connection) -> None:
        vm_id = await add_vm(conn, "clocks")
        odd = wide_entries(0, 3, boot=uuid.uuid4().hex, units=["c.service"])
        for entry, ts in zip(odd, (0, 86_399_999_999, 253_402_300_799_000_000), strict=True):
            entry["__REALTIME_TIMESTAMP"] = str(ts)
        assert await put(conn, vm_id, odd) == 3
        assert await put(conn, vm_id, odd) == 0
        names = [p.name for p in await partition_store.partitions(conn)]
        assert names == ["journal_event_p19700101", "journal_event_p99991231"]


class TestRetention:
    async def _load_days(self, conn: asyncpg.Connection, vm_ids: list[uuid.UUID], days: int) -> None:
        for n, vm_id in enumerate(vm_ids):
            # One boot across the first two days, a second one after: a prune cuts a boot in two.
            first, second = uuid.uuid4().hex, uuid.uuid4().hex
            for day in range(days):
                batch = shifted(
                    day * 10_000 + n * 100_000,
                    800,
                    day=day + 0.5,
                    boot=first if day < 2 else second,
                    units=["a.service", f"only-day{day}.service"],
                )
                await put(conn, vm_id, batch)

    async def test_by_age_while_batches_arrive(self, conn: asyncpg.Connection, sessions: Any) -> None:
        vm_ids = [await add_vm(conn, f"age-{n}") for n in range(2)]
        await self._load_days(conn, vm_ids, 5)
        now = datetime.fromtimestamp(DAY0 / 1e6, UTC) + timedelta(days=4, hours=12)
        writer = await add_vm(conn, "writer")
        stop = asyncio.Event()

        async def keep_ingesting(vm_id: uuid.UUID, first: int) -> int:
            other = await asyncpg.connect(SETTINGS_URL[0])
            sent = 0
            try:
                while not stop.is_set():
                    batch = shifted(first + sent, 200, day=4.6 + sent / 1e6, boot="f" * 32)
                    sent += await put(other, vm_id, batch)
            finally:
                await other.close()
            return sent

        # A new VM's batches, and batches of a VM whose old days go (its unit and VM rows with them).
        ingesting = [
            asyncio.create_task(keep_ingesting(writer, 500_000)),
            asyncio.create_task(keep_ingesting(vm_ids[0], 700_000)),
        ]
        await asyncio.sleep(0.2)
        settings = Settings(database_url=SETTINGS_URL[0], retention_days=2)
        dropped = await retention.prune_pass(sessions, settings, now=now)
        stop.set()
        sent, sent_by_old = await asyncio.gather(*ingesting)
        assert dropped is not None
        assert [(d.partition.day.isoformat(), d.entries, d.reason) for d in dropped] == [
            ("2025-11-24", 1600, "age"),
            ("2025-11-25", 1600, "age"),
        ]
        assert sent > 0 and sent_by_old > 0
        remaining = await conn.fetch(
            "SELECT vm_id, (ts AT TIME ZONE 'UTC')::date AS day, count(*) FROM journal_event GROUP BY 1, 2"
        )
        per_day = {(r["vm_id"], r["day"].isoformat()): r["count"] for r in remaining}
        for vm_id in vm_ids:
            for day in ("2025-11-26", "2025-11-27"):
                assert per_day[(vm_id, day)] == 800
        assert per_day[(vm_ids[0], "2025-11-28")] == 800 + sent_by_old
        assert per_day[(vm_ids[1], "2025-11-28")] == 800
        assert per_day[(writer, "2025-11-28")] == sent
        assert "2025-11-25" not in {d for _, d in per_day}
        await assert_summaries_true(conn)
        # Nothing left to drop; the coming days were made ahead.
        assert await retention.prune_pass(sessions, settings, now=now) == []
        assert {p.day.isoformat() for p in await partition_store.partitions(conn)} >= {"2025-11-29", "2025-11-30"}

    async def test_by_size_oldest_first(self, conn: asyncpg.Connection, sessions: Any) -> None:
        vm_ids = [await add_vm(conn, "size-0")]
        await self._load_days(conn, vm_ids, 4)
        now = datetime.fromtimestamp(DAY0 / 1e6, UTC) + timedelta(days=3, hours=12)
        # retention_days=0 and no cap keep everything (the pass only makes the coming days ahead).
        keep = Settings(database_url=SETTINGS_URL[0], retention_days=0)
        assert await retention.prune_pass(sessions, keep, now=now) == []
        parts = await partition_store.partitions(conn)
        total = await partition_store.journal_bytes(conn)
        # A cap that the newest two days fit under, not three.
        cap = total - parts[0].bytes - parts[1].bytes + 1
        settings = Settings(database_url=SETTINGS_URL[0], retention_days=0, retention_max_bytes=cap)
        dropped = await retention.prune_pass(sessions, settings, now=now)
        assert dropped is not None
        assert [(d.partition.day.isoformat(), d.reason) for d in dropped] == [
            ("2025-11-24", "size"),
            ("2025-11-25", "size"),
        ]
        assert await conn.fetchval("SELECT min(ts) FROM journal_event") >= datetime(2025, 11, 26, tzinfo=UTC)
        await assert_summaries_true(conn)
        assert await retention.prune_pass(sessions, keep, now=now + timedelta(days=3650)) == []

    async def test_one_pass_at_a_time_and_its_detach_waits_for_a_batch(
        self, conn: asyncpg.Connection, sessions: Any, database_url: str
    ) -> None:
        vm_ids = [await add_vm(conn, "one-pass")]
        await self._load_days(conn, vm_ids, 3)
        now = datetime.fromtimestamp(DAY0 / 1e6, UTC) + timedelta(days=2, hours=12)
        settings = Settings(database_url=database_url, retention_days=1)
        # A batch being stored holds the partitions lock shared until its transaction ends.
        batch = await asyncpg.connect(database_url)
        try:
            in_progress = batch.transaction()
            await in_progress.start()
            await batch.execute(f"SELECT pg_advisory_xact_lock_shared({partition_store.PARTITIONS_LOCK})")
            first = asyncio.create_task(retention.prune_pass(sessions, settings, now=now))
            waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            for _ in range(200):
                if await conn.fetchval(waiting):
                    break
                await asyncio.sleep(0.05)
            assert await conn.fetchval(waiting) == 1
            # The first pass holds its lock while it waits: a second one gives way.
            assert await retention.prune_pass(sessions, settings, now=now) is None
            assert "journal_event_p20251124" in {p.name for p in await partition_store.partitions(conn)}
            await in_progress.commit()
        finally:
            await batch.close()
        dropped = await first
        assert dropped is not None and [d.partition.day.isoformat() for d in dropped] == ["2025-11-24"]
        await assert_summaries_true(conn)

    async def test_a_pass_stopped_after_detaching_is_finished_by_the_next(
        self, conn: asyncpg.Connection, sessions: Any
    ) -> None:
        vm_ids = [await add_vm(conn, "stopped")]
        await self._load_days(conn, vm_ids, 3)
        oldest = (await partition_store.partitions(conn))[0]
        async with conn.transaction():
            [name] = await partition_store.detach(conn, [oldest])
        # The process stops here: the day is out of journal_event, the summaries still count it.
        assert await partition_store.detached(conn) == [name]
        now = datetime.fromtimestamp(DAY0 / 1e6, UTC) + timedelta(days=2, hours=12)
        keep = Settings(database_url=SETTINGS_URL[0], retention_days=0)
        assert await retention.prune_pass(sessions, keep, now=now) == []
        assert await partition_store.detached(conn) == []
        assert await conn.fetchval("SELECT to_regclass($1)", name) is None
        await assert_summaries_true(conn)

    async def test_a_pass_stopped_after_settling_is_finished_by_the_next(
        self, conn: asyncpg.Connection, sessions: Any
    ) -> None:
        vm_ids = [await add_vm(conn, "settled")]
        await self._load_days(conn, vm_ids, 3)
        oldest = (await partition_store.partitions(conn))[0]
        async with conn.transaction():
            [name] = await partition_store.detach(conn, [oldest])
        async with conn.transaction():
            [count] = await partition_store.settle(conn, [name])
        # The process stops here: the summaries no longer count the day, its table is still there.
        settled = oldest.name + partition_store.SETTLED_SUFFIX
        assert count > 0 and await conn.fetchval("SELECT to_regclass($1)", settled) is not None
        await assert_counts_true(conn)
        now = datetime.fromtimestamp(DAY0 / 1e6, UTC) + timedelta(days=2, hours=12)
        keep = Settings(database_url=SETTINGS_URL[0], retention_days=0)
        assert await retention.prune_pass(sessions, keep, now=now) == []
        assert await conn.fetchval("SELECT to_regclass($1)", settled) is None
        # Counted once: the next pass only dropped the table.
        await assert_summaries_true(conn)

    async def test_a_day_made_again_after_a_stopped_pass_goes_with_what_that_pass_left(
        self, conn: asyncpg.Connection, sessions: Any
    ) -> None:
        vm_ids = [await add_vm(conn, "again")]
        await self._load_days(conn, vm_ids, 3)
        oldest = (await partition_store.partitions(conn))[0]
        async with conn.transaction():
            [name] = await partition_store.detach(conn, [oldest])
        # The pass stops; late entries of that day make its partition again.
        await put(conn, vm_ids[0], shifted(900_000, 50, day=0.75, boot=uuid.uuid4().hex, units=["late.service"]))
        assert oldest.name in {p.name for p in await partition_store.partitions(conn)}
        now = datetime.fromtimestamp(DAY0 / 1e6, UTC) + timedelta(days=2, hours=12)
        settings = Settings(database_url=SETTINGS_URL[0], retention_days=1)
        dropped = await retention.prune_pass(sessions, settings, now=now)
        # Its old table's name was still taken: the day goes all the same, the leftover with it.
        assert dropped is not None and [(d.partition.name, d.entries) for d in dropped] == [(oldest.name, 50)]
        assert oldest.name not in {p.name for p in await partition_store.partitions(conn)}
        assert await partition_store.detached(conn) == []
        assert await conn.fetchval("SELECT to_regclass($1)", name) is None
        await assert_summaries_true(conn)

    async def test_closed_days_are_compacted_once(self, conn: asyncpg.Connection, sessions: Any) -> None:
        vm_ids = [await add_vm(conn, "compact")]
        await self._load_days(conn, vm_ids, 3)
        now = datetime.fromtimestamp(DAY0 / 1e6, UTC) + timedelta(days=2, hours=12)
        keep = Settings(database_url=SETTINGS_URL[0], retention_days=0)
        before = {p.name for p in await partition_store.partitions(conn)}
        assert {"journal_event_p20251124", "journal_event_p20251125"} <= set(await partition_store.uncompacted(conn))
        assert await retention.prune_pass(sessions, keep, now=now) == []
        left = set(await partition_store.uncompacted(conn))
        # The days before "today" are rebuilt and marked; today and the days ahead are not.
        assert "journal_event_p20251124" not in left and "journal_event_p20251125" not in left
        assert "journal_event_p20251126" in left and {p.name for p in await partition_store.partitions(conn)} >= before
        assert await conn.fetchval("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0
        await assert_summaries_true(conn)
        # Entries still arriving for a compacted day are stored, and read back.
        late = shifted(900_000, 50, day=0.75, boot="e" * 32)
        assert await put(conn, vm_ids[0], late) == 50
        assert await put(conn, vm_ids[0], late) == 0
        assert await retention.prune_pass(sessions, keep, now=now) == []
        assert set(await partition_store.uncompacted(conn)) == left
        await assert_summaries_true(conn)


# The database URL of the running test, for the helpers that open their own connections.
SETTINGS_URL: list[str] = [""]


@pytest.fixture(autouse=True)
def _remember_url(database_url: str) -> None:
    SETTINGS_URL[0] = database_url


def test_db_prune_prints_what_it_dropped(database_url: str) -> None:
    async def load() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            vm_id = await add_vm(conn, "cli")
            # wide_entries are from November 2025: more than 30 days before today.
            await put(conn, vm_id, shifted(0, 300, day=0.5, boot=uuid.uuid4().hex))
            recent = wide_entries(1000, 10, boot=uuid.uuid4().hex, units=["a.service"])
            for entry in recent:
                entry["__REALTIME_TIMESTAMP"] = str(int(datetime.now(UTC).timestamp() * 1e6))
            await put(conn, vm_id, recent)
        finally:
            await conn.close()

    asyncio.run(load())
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMJOURNAL_")} | {
        "VMJOURNAL_DATABASE_URL": database_url
    }
    done = subprocess.run(
        [sys.executable, "-m", "vmjournal", "db", "prune"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("dropped 2025-11-24 (300 entries, ") and lines[0].endswith(" bytes): age")
    assert lines[-1] == "1 day(s) dropped"
    again = subprocess.run(
        [sys.executable, "-m", "vmjournal", "db", "prune"], env=env, capture_output=True, text=True, timeout=120
    )
    assert again.stdout.strip() == "nothing to prune"

    async def check() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM journal_event") == 10
            await assert_summaries_true(conn)
        finally:
            await conn.close()

    asyncio.run(check())


async def test_metrics_show_the_journal_size_and_oldest_entry(service: Service) -> None:
    token = await enroll(service.client, "metered")
    batch = shifted(0, 50, day=0.5, boot=uuid.uuid4().hex)
    response = await service.client.post("/vm/metered/boot", json=batch, headers=bearer(token))
    assert response.status_code == 200, response.text
    text = (await service.client.get("/metrics")).text
    gauges = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("vmjournal_journal_"))
    assert float(gauges["vmjournal_journal_bytes"]) > 0
    oldest = float(gauges["vmjournal_journal_oldest_entry_timestamp_seconds"])
    assert oldest == int(batch[0]["__REALTIME_TIMESTAMP"]) / 1e6
