"""Queries through HTTP, checked against real journalctl on the same journal file."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import orjson
import pytest
from support.api import bearer, enroll
from support.journal_files import journal_json, sample_entries, wide_entries, write_journal
from support.service import Service

from vmjournal import db
from vmjournal.journal import entries, ingest_store, pages, partition_store, retention, service, store

UNITS = ["nginx", "ssh.service", "systemd-journald", "cron", "app@1.service", "init.scope"]


@pytest.fixture
async def loaded(service: Service, tmp_path: Path, journal_tools: None) -> tuple[Service, Path]:
    """A VM whose journal (3 boots, 3000 entries) was ingested in batches of 1000."""
    path = write_journal(sample_entries(3000, boots=3), tmp_path / "j")
    entries = journal_json(path)
    token = await enroll(service.client, "vm1")
    for start in range(0, len(entries), 1000):
        response = await service.client.post("/vm/vm1/boot", json=entries[start : start + 1000], headers=bearer(token))
        assert response.json()["stored"] == len(entries[start : start + 1000])
    return service, path


async def all_pages(service: Service, path: str, **params: Any) -> list[dict[str, Any]]:
    """Follow the Link: rel=next headers to the end."""
    events: list[dict[str, Any]] = []
    url: str | None = path
    query: dict[str, Any] | None = {"limit": 250, **params}
    while url:
        response = await service.client.get(url, params=query)
        assert response.status_code == 200, response.text
        events += response.json()["events"]
        link = response.headers.get("link")
        url, query = (link.split(">")[0].lstrip("<"), None) if link else (None, None)
    return events


def cursors(events: list[dict[str, Any]]) -> list[str]:
    return [e["__CURSOR"] for e in events]


class TestUnitMatchesJournalctl:
    @pytest.mark.parametrize("unit", UNITS)
    async def test_unit(self, loaded: tuple[Service, Path], unit: str) -> None:
        service, path = loaded
        expected = cursors(journal_json(path, "-u", unit))
        assert expected, "the sample must contain the unit"
        assert cursors(await all_pages(service, f"/vm/vm1/boot/{unit}")) == expected

    async def test_glob(self, loaded: tuple[Service, Path]) -> None:
        service, path = loaded
        assert cursors(await all_pages(service, "/vm/vm1/boot/s*")) == cursors(journal_json(path, "-u", "s*"))

    @pytest.mark.parametrize(
        ("params", "args"),
        [
            ({"priority": "err"}, ["-p", "err"]),
            ({"priority": "warning..notice"}, ["-p", "warning..notice"]),
            ({"boot": "0"}, ["-b", "0"]),
            ({"boot": "-1"}, ["-b", "-1"]),
            ({"boot": "1"}, ["-b", "1"]),
            ({"grep": "HELLO 1"}, ["-g", "HELLO 1"]),
            ({"grep": "hello 1"}, ["-g", "hello 1"]),
            # Capitals without regex syntax: a plain substring, found without the regex engine.
            ({"grep": "Started"}, ["-g", "Started"]),
            ({"grep": "About nginx"}, ["-g", "About nginx"]),
            (
                {"since": "2025-11-24 16:00:01", "until": "2025-11-24 16:00:02"},
                ["-S", "2025-11-24 16:00:01", "-U", "2025-11-24 16:00:02"],
            ),
        ],
    )
    async def test_filters(self, loaded: tuple[Service, Path], params: dict[str, str], args: list[str]) -> None:
        service, path = loaded
        expected = cursors(journal_json(path, "-u", "nginx", *args, env={"TZ": "UTC"}))
        assert cursors(await all_pages(service, "/vm/vm1/boot/nginx", **params)) == expected

    async def test_reverse(self, loaded: tuple[Service, Path]) -> None:
        service, path = loaded
        expected = cursors(journal_json(path, "-u", "ssh", "-r"))
        assert cursors(await all_pages(service, "/vm/vm1/boot/ssh", order="desc")) == expected


class TestVMJournal:
    async def test_everything_in_order(self, loaded: tuple[Service, Path]) -> None:
        service, path = loaded
        assert cursors(await all_pages(service, "/vm/vm1/boot", limit=1000)) == cursors(journal_json(path))

    async def test_ndjson_streams_everything(self, loaded: tuple[Service, Path]) -> None:
        service, path = loaded
        response = await service.client.get("/vm/vm1/boot", headers={"Accept": "application/x-ndjson"})
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [orjson.loads(line) for line in response.content.splitlines()]
        assert cursors(lines) == cursors(journal_json(path))

    async def test_text_short(self, loaded: tuple[Service, Path]) -> None:
        service, path = loaded
        response = await service.client.get("/vm/vm1/boot/cron", params={"limit": 3}, headers={"Accept": "text/plain"})
        lines = response.text.splitlines()
        assert len(lines) == 3
        assert lines[0].startswith("Nov 24 16:00:") and " vm-test " in lines[0]

    async def test_units_and_boots(self, loaded: tuple[Service, Path]) -> None:
        service, path = loaded
        units = {u["unit"]: u["entries"] for u in (await service.client.get("/vm/vm1/units")).json()}
        for unit in ("nginx.service", "ssh.service", "cron.service"):
            assert units[unit] == len(journal_json(path, "-u", unit))
        boots = (await service.client.get("/vm/vm1/boots")).json()
        assert [b["offset"] for b in boots] == [-2, -1, 0]
        assert sum(b["entries"] for b in boots) == 3000


class TestQueryBadInput:
    @pytest.mark.parametrize(
        ("params", "code"),
        [
            ({"priority": "loud"}, "invalid_priority"),
            ({"since": "next tuesday-ish"}, "invalid_time"),
            ({"boot": "zzz"}, "invalid_boot"),
            ({"boot": "-9"}, "boot_not_found"),
            ({"grep": "(unclosed"}, "bad_grep"),
            ({"cursor": "!!!"}, "bad_cursor"),
            ({"output": "xml"}, "bad_output"),
            ({"limit": "0"}, "invalid_request"),
            ({"order": "sideways"}, "invalid_request"),
        ],
    )
    async def test_clear_error(self, loaded: tuple[Service, Path], params: dict[str, str], code: str) -> None:
        service, _ = loaded
        response = await service.client.get("/vm/vm1/boot/nginx", params=params)
        assert response.status_code in (400, 404, 422)
        assert response.json()["error"] == code, response.text

    async def test_bad_unit_name(self, service: Service) -> None:
        await enroll(service.client, "vm1")
        response = await service.client.get("/vm/vm1/boot/a;b")
        assert response.status_code == 400 and response.json()["error"] == "invalid_unit"

    async def test_unknown_vm(self, service: Service) -> None:
        assert (await service.client.get("/vm/nope/boot")).status_code == 404


class TestTextMatchesJournalctl:
    @pytest.mark.parametrize("output", ["short", "short-iso", "cat"])
    async def test_same_lines(self, loaded: tuple[Service, Path], output: str) -> None:
        import subprocess

        service, path = loaded
        expected = subprocess.run(
            ["journalctl", f"--file={path}", "-q", "--no-pager", "-o", output, "-u", "nginx", "-b", "0"],
            capture_output=True,
            check=True,
            env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
        ).stdout
        response = await service.client.get("/vm/vm1/boot/nginx", params={"boot": "0", "output": output})
        assert response.content == expected


# A busy unit (a fifth of the journal), a rarer one, and the rest: the shape where the planner,
# guessing without statistics, read all of a unit's rows and sorted them for a page of 100.
PLAN_UNITS = ["nginx.service"] * 3 + [f"svc-{i}.service" for i in range(11)] + ["cron.service"]
PLAN_EVENTS = 60_000
# (unit, query parameters, the index the first page must walk)
FIRST_PAGES: list[tuple[str | None, dict[str, Any], str]] = [
    ("nginx", {}, "ix_journal_event_unit_key_ts"),
    ("cron", {}, "ix_journal_event_unit_key_ts"),
    ("nginx", {"order": "desc"}, "ix_journal_event_unit_key_ts"),
    ("nginx", {"boot": "0"}, "ix_journal_event_unit_key_ts"),
    (None, {"identifier": ["nginx"]}, "ix_journal_event_identifier_key_ts"),
    (None, {"priority": "err"}, "ix_journal_event_vm_severe_ts"),
    (None, {"priority": "err", "order": "desc"}, "ix_journal_event_vm_severe_ts"),
    ("nginx", {"priority": "err"}, "ix_journal_event_vm_unit_severe_ts"),
    ("nginx", {"priority": "warning", "order": "desc"}, "ix_journal_event_vm_unit_severe_ts"),
    (None, {}, "pk_journal_event"),
    (None, {"order": "desc"}, "pk_journal_event"),
]


def plan_nodes(plan: Any) -> Iterator[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan."""
    stack = [plan[0]["Plan"]]
    while stack:
        node = stack.pop()
        yield node
        stack += node.get("Plans", [])


PARENT_INDEXES = """
SELECT p.relname FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid JOIN pg_class p ON p.oid = i.inhparent
WHERE c.relname = ANY($1::text[])
"""


class TestFirstPagesWithoutStatistics:
    """Right after a VM's first catch-up no ANALYZE has run; first pages must still walk an index in order."""

    @pytest.fixture
    async def cold(self, service: Service) -> tuple[Service, UUID]:
        await enroll(service.client, "cold")
        conn = await asyncpg.connect(service.database_url)
        try:
            vm_id: UUID = await conn.fetchval("SELECT id FROM vm WHERE name = 'cold'")
            boots = [uuid.uuid4().hex for _ in range(2)]
            batches = [
                wide_entries(start, 5000, boot=boots[start * 2 // PLAN_EVENTS], units=PLAN_UNITS)
                for start in range(0, PLAN_EVENTS, 5000)
            ]
            # Autoanalyze could otherwise give the day partitions statistics halfway through the test.
            # The service's retention pass makes today's and the next days' partitions: made here
            # first, they too are left without statistics (one that autovacuum had analyzed empty was
            # scanned whole by a first page in a CI run on a busy machine).
            today = int(time.time()) // 86_400
            days = {day for batch in batches for day in entries.to_rows(batch).days()}
            days |= set(range(today, today + retention.DAYS_AHEAD + 1))
            async with conn.transaction():
                await partition_store.create_days(conn, days)
            for name in [p.name for p in await partition_store.partitions(conn)]:
                await conn.execute(f"ALTER TABLE {name} SET (autovacuum_enabled = off)")
            for batch in batches:
                async with conn.transaction():
                    await ingest_store.ingest(conn, vm_id, entries.to_rows(batch))
            analyzed = await conn.fetchval(
                "SELECT sum(analyze_count + autoanalyze_count) FROM pg_stat_user_tables "
                "WHERE relname LIKE 'journal_event%'"
            )
            stats = await conn.fetchval("SELECT count(*) FROM pg_stats WHERE tablename LIKE 'journal_event%'")
            assert (analyzed, stats) == (0, 0), "the table must have no statistics yet"
        finally:
            await conn.close()
        return service, vm_id

    async def test_pages_are_planned_for_their_own_values(self, cold: tuple[Service, UUID]) -> None:
        """A page's statement is prepared once per connection. Left to PostgreSQL, it switches to a
        generic plan after five runs, one plan for every unit; after a busy unit's pages, that plan
        walked the whole journal for a unit of 1 entry in 10 000 (300 ms at 2 M events, not 7)."""
        svc, vm_id = cold
        conn = await asyncpg.connect(svc.database_url)
        try:
            for unit in ["nginx.service"] * 8 + ["cron.service"] * 4:
                page = await pages.query_events(conn, vm_id, store.EventFilter(units=[unit]), limit=100)
                assert len(page) == 100
            plans = await conn.fetch(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE $1",
                "SELECT % FROM journal_event %",
            )
        finally:
            await conn.close()
        assert plans and sum(p["custom_plans"] for p in plans) >= 12, plans
        assert sum(p["generic_plans"] for p in plans) == 0, plans

    async def test_first_pages_walk_an_index_in_order(self, cold: tuple[Service, UUID]) -> None:
        svc, vm_id = cold
        engine = db.create_engine(svc.database_url)
        try:
            for unit, params, index in FIRST_PAGES:
                async with db.session_factory(engine)() as session:
                    f = await service.build_filter(
                        session,
                        vm_id,
                        unit=unit,
                        priority=params.get("priority"),
                        since=None,
                        until=None,
                        boot=params.get("boot"),
                        grep=None,
                        identifiers=params.get("identifier"),
                    )
                    conn = await db.raw_connection(session)
                    plan = await pages.explain_page(conn, vm_id, f, limit=100, descending=params.get("order") == "desc")
                    # The planner settings end with the page's statement, not with the session.
                    assert await conn.fetchval("SHOW enable_sort") == "on"
                    assert await conn.fetchval("SHOW enable_bitmapscan") == "on"
                nodes = list(plan_nodes(plan))
                kinds = [n["Node Type"] for n in nodes]
                case = (unit, params, kinds)
                assert not {"Sort", "Bitmap Heap Scan", "Seq Scan"} & set(kinds), case
                # The primary key walks the journal in ts order: only entries of one microsecond get sorted (by seq).
                presorted = [n["Presorted Key"] for n in nodes if n["Node Type"] == "Incremental Sort"]
                assert all(len(k) == 1 and k[0].split(".")[-1] == "ts" for k in presorted), (case, presorted)
                scanned = {n.get("Index Name") for n in nodes if n["Node Type"] == "Index Scan"}
                # A day partition's index stands for the journal_event index it was made from.
                async with db.session_factory(engine)() as session:
                    conn = await db.raw_connection(session)
                    parents = {r[0] for r in await conn.fetch(PARENT_INDEXES, list(scanned))}
                assert index in scanned | parents, case
                # And the page itself answers: the first 100 events of the selection.
                path = "/vm/cold/boot" + (f"/{unit}" if unit else "")
                response = await svc.client.get(path, params={"limit": 100, **params})
                assert response.status_code == 200 and response.json()["count"] == 100, case
        finally:
            await engine.dispose()
