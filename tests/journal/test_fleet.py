"""The fleet (/journal) and log volume (/histogram), checked against journalctl -m on real journal files."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import orjson
import pytest
from support.api import bearer, enroll
from support.journal_files import Entry, journal_json, sample_entries, write_journal
from support.service import Service

from vmjournal.cli.client import parse_sse
from vmjournal.journal import entries, fleet_store, ingest_store, pages, store, trigram_store, trigrams

BASE_US = 1_764_000_000_000_000
COUNT = 1500


def spread(entries: list[Entry], name: str, offset_us: int) -> list[Entry]:
    """Entries 37 ms apart (a few minutes in all), interleaved across VMs by ``offset_us``, with the
    VM's name as host."""
    return [
        {**e, "__REALTIME_TIMESTAMP": str(BASE_US + offset_us + i * 37_000), "_HOSTNAME": name}
        for i, e in enumerate(entries)
    ]


@pytest.fixture
async def fleet(service: Service, tmp_path: Path, journal_tools: None) -> tuple[Service, list[Path]]:
    """Two VMs (fleet-a, fleet-b) and a third outside the glob (other), each from a real journal file."""
    paths = []
    for index, (name, seed) in enumerate([("fleet-a", 3), ("fleet-b", 5), ("other", 9)]):
        path = write_journal(spread(sample_entries(COUNT, boots=2, seed=seed), name, index * 11_000), tmp_path / name)
        token = await enroll(service.client, name)
        response = await service.client.post(f"/vm/{name}/boot", json=journal_json(path), headers=bearer(token))
        assert response.json()["stored"] == COUNT
        paths.append(path)
    return service, paths


def merged(paths: list[Path], *args: str) -> list[dict[str, Any]]:
    """``journalctl -m`` over several files."""
    return journal_json(paths[0], *(f"--file={p}" for p in paths[1:]), *args, env={"TZ": "UTC"})


async def all_pages(service: Service, path: str, **params: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    url: str | None = path
    query: dict[str, Any] | None = {"limit": 200, **params}
    while url:
        response = await service.client.get(url, params=query)
        assert response.status_code == 200, response.text
        events += response.json()["events"]
        link = response.headers.get("link")
        url, query = (link.split(">")[0].lstrip("<"), None) if link else (None, None)
    return events


def keys(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["_HOSTNAME"], e["__CURSOR"]) for e in events]


FILTERS: list[tuple[dict[str, Any], list[str]]] = [
    ({}, []),
    ({"priority": "err"}, ["-p", "err"]),
    ({"unit": "nginx"}, ["-u", "nginx"]),
    ({"unit": "s*"}, ["-u", "s*"]),
    ({"grep": "hello 1"}, ["-g", "hello 1"]),
    ({"identifier": ["cron", "ssh"]}, ["-t", "cron", "-t", "ssh"]),
    (
        {"since": "2025-11-24 16:00:30", "until": "2025-11-24 16:01:10", "priority": "warning"},
        ["-S", "2025-11-24 16:00:30", "-U", "2025-11-24 16:01:10", "-p", "warning"],
    ),
]


class TestFleetMatchesJournalctlMerge:
    @pytest.mark.parametrize(("params", "args"), FILTERS)
    async def test_two_vms(self, fleet: tuple[Service, list[Path]], params: dict[str, Any], args: list[str]) -> None:
        service, paths = fleet
        expected = keys(merged(paths[:2], *args))
        assert expected
        got = await all_pages(service, "/journal", vm=["fleet-a", "fleet-b"], **params)
        assert keys(got) == expected
        assert all(e["vm"] == e["_HOSTNAME"] for e in got)

    async def test_glob_and_reverse(self, fleet: tuple[Service, list[Path]]) -> None:
        service, paths = fleet
        expected = keys(merged(paths[:2], "-p", "warning", "-r"))
        assert keys(await all_pages(service, "/journal", vm="fleet-*", priority="warning", order="desc")) == expected

    async def test_every_vm(self, fleet: tuple[Service, list[Path]]) -> None:
        service, paths = fleet
        expected = keys(merged(paths, "-p", "err"))
        assert keys(await all_pages(service, "/journal", priority="err", limit=1000)) == expected

    async def test_boot_is_each_vms_own(self, fleet: tuple[Service, list[Path]]) -> None:
        service, paths = fleet
        per_vm = [e for p in paths[:2] for e in journal_json(p, "-b", "-1")]
        expected = keys(sorted(per_vm, key=lambda e: int(e["__REALTIME_TIMESTAMP"])))
        assert keys(await all_pages(service, "/journal", vm="fleet-*", boot="-1")) == expected

    async def test_text_shows_the_vm_as_host(self, fleet: tuple[Service, list[Path]]) -> None:
        service, paths = fleet
        done = subprocess.run(
            ["journalctl", f"--file={paths[0]}", f"--file={paths[1]}", "-q", "--no-pager", "-o", "short", "-u", "cron"],
            capture_output=True,
            check=True,
            env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
        )
        # The boot separators are the other output modes' business (not printed by the service yet).
        expected = b"".join(line for line in done.stdout.splitlines(keepends=True) if not line.startswith(b"-- Boot "))
        response = await service.client.get("/journal", params={"vm": "fleet-*", "unit": "cron", "output": "short"})
        assert response.content == expected

    async def test_ndjson(self, fleet: tuple[Service, list[Path]]) -> None:
        service, paths = fleet
        response = await service.client.get(
            "/journal", params={"vm": "fleet-*", "priority": "crit"}, headers={"Accept": "application/x-ndjson"}
        )
        lines = [orjson.loads(line) for line in response.content.splitlines()]
        assert keys(lines) == keys(merged(paths[:2], "-p", "crit"))

    @pytest.mark.parametrize(
        ("params", "code", "status"),
        [
            ({"vm": "nope"}, "vm_not_found", 404),
            ({"vm": "a;b"}, "invalid_vm", 400),
            ({"priority": "loud"}, "invalid_priority", 400),
            ({"cursor": "!!"}, "bad_cursor", 400),
        ],
    )
    async def test_bad_input(
        self, fleet: tuple[Service, list[Path]], params: dict[str, str], code: str, status: int
    ) -> None:
        service, _ = fleet
        response = await service.client.get("/journal", params=params)
        assert (response.status_code, response.json()["error"]) == (status, code), response.text

    async def test_glob_matching_nothing_is_empty(self, fleet: tuple[Service, list[Path]]) -> None:
        service, _ = fleet
        body = (await service.client.get("/journal", params={"vm": "zzz-*"})).json()
        assert (body["vms"], body["events"], body["next"]) == ([], [], None)


def plan_nodes(node: dict[str, Any], ancestors: tuple[str, ...] = ()) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, with the node types above it."""
    out = [(node, ancestors)]
    for child in node.get("Plans", []):
        out += plan_nodes(child, (*ancestors, node["Node Type"]))
    return out


async def vm_ids(conn: asyncpg.Connection) -> list[UUID]:
    return [r["id"] for r in await conn.fetch("SELECT id FROM vm ORDER BY name")]


class TestFleetPlan:
    async def test_first_page_walks_each_vms_index_and_sorts_one_page(self, fleet: tuple[Service, list[Path]]) -> None:
        service, _ = fleet
        conn = await asyncpg.connect(service.database_url)
        try:
            ids = await vm_ids(conn)
            targets = [fleet_store.Target(i, store.EventFilter(priority_max=3)) for i in ids]
            probe, page = await fleet_store.explain_fleet(conn, targets, limit=100, analyze=True)
        finally:
            await conn.close()
        for plan in (probe, page):
            nodes = plan_nodes(plan[0]["Plan"])
            scans = [(n, above) for n, above in nodes if n.get("Relation Name", "").startswith("journal_event")]
            # Each VM's page (inside the LATERAL join over the VMs) is an index scan in (ts, seq)
            # order (per priority, merged), stopped by its limit: nothing sorts a VM's rows, and no
            # scan reads a whole table.
            assert scans and all(n["Node Type"] in ("Index Scan", "Index Only Scan") for n, _ in scans), plan
            per_vm = [above[len(above) - above[::-1].index("Nested Loop") :] for _, above in scans]
            assert all("Limit" in path and "Sort" not in path for path in per_vm), plan
            assert all(n["Node Type"] not in ("Seq Scan", "Bitmap Heap Scan") for n, _ in nodes), plan
        # One sort merges the VMs' pages; the probe's time bound keeps it to about one page of rows.
        sorts = [n for n, _ in plan_nodes(page[0]["Plan"]) if n["Node Type"] == "Sort"]
        assert len(sorts) == 1, page
        merged = sorts[0]["Plans"][0]["Actual Rows"]
        assert 100 <= merged < 2 * 100, page

    async def test_vms_with_filters_of_their_own_merge_index_ordered_scans(
        self, fleet: tuple[Service, list[Path]]
    ) -> None:
        # As a boot resolved per VM gives: no probe, and the per-VM pages merge in index order.
        service, _ = fleet
        conn = await asyncpg.connect(service.database_url)
        try:
            ids = await vm_ids(conn)
            targets = [fleet_store.Target(i, store.EventFilter(priority_max=3 + n)) for n, i in enumerate(ids)]
            [plan] = await fleet_store.explain_fleet(conn, targets, limit=100)
        finally:
            await conn.close()
        text = orjson.dumps(plan).decode()
        assert "Merge Append" in text and '"Sort"' not in text and "Seq Scan" not in text, text


Key = tuple[datetime, int]
NOTHING = store.EventFilter(grep="matches no entry")


async def merged_vm_pages(
    conn: asyncpg.Connection,
    targets: list[fleet_store.Target],
    *,
    limit: int,
    after: store.Position | None = None,
    descending: bool = False,
) -> list[Key]:
    """The fleet page the slow way: each target's own page (journal/store.py), merged in Python."""
    keys: list[Key] = []
    for t in targets:
        rows = await pages.query_events(conn, t.vm_id, t.filter, limit=limit, after=after, descending=descending)
        keys += [(r["ts"], r["seq"]) for r in rows]
    return sorted(keys, reverse=descending)[:limit]


async def fleet_keys(
    conn: asyncpg.Connection,
    targets: list[fleet_store.Target],
    *,
    limit: int,
    after: store.Position | None = None,
    descending: bool = False,
) -> list[Key]:
    rows = await fleet_store.query_fleet(conn, targets, limit=limit, after=after, descending=descending)
    return [(r["ts"], r["seq"]) for r in rows]


class TestFleetPageEqualsEachVmsPages:
    """The probe's time bound never drops a row: the page equals the VMs' own pages merged, whatever
    the limit, order, position and however the matching rows are spread over the VMs."""

    @pytest.mark.parametrize("limit", [1, 7, 100, 1000, 5000])
    @pytest.mark.parametrize("descending", [False, True])
    async def test_limits_and_orders(self, fleet: tuple[Service, list[Path]], limit: int, descending: bool) -> None:
        service, _ = fleet
        conn = await asyncpg.connect(service.database_url)
        try:
            ids = await vm_ids(conn)
            for f in (store.EventFilter(), store.EventFilter(priority_max=3), store.EventFilter(grep="hello 1")):
                targets = [fleet_store.Target(i, f) for i in ids]
                expected = await merged_vm_pages(conn, targets, limit=limit, descending=descending)
                assert expected
                assert await fleet_keys(conn, targets, limit=limit, descending=descending) == expected
        finally:
            await conn.close()

    @pytest.mark.parametrize("descending", [False, True])
    async def test_pages_after_a_position(self, fleet: tuple[Service, list[Path]], descending: bool) -> None:
        service, _ = fleet
        conn = await asyncpg.connect(service.database_url)
        try:
            targets = [fleet_store.Target(i, store.EventFilter(priority_max=4)) for i in await vm_ids(conn)]
            after: store.Position | None = None
            pages = 0
            while True:
                expected = await merged_vm_pages(conn, targets, limit=250, after=after, descending=descending)
                got = await fleet_keys(conn, targets, limit=250, after=after, descending=descending)
                assert got == expected
                if len(got) < 250:
                    break
                after, pages = store.Position(*got[-1]), pages + 1
            assert pages >= 3
        finally:
            await conn.close()

    async def test_one_vm_holds_every_row(self, fleet: tuple[Service, list[Path]]) -> None:
        # Five targets of six match nothing: the probe finds too few rows, takes more per VM, and
        # then reads the page without a bound. One target has a filter of its own (no LATERAL).
        service, _ = fleet
        conn = await asyncpg.connect(service.database_url)
        try:
            a, b, c = await vm_ids(conn)
            targets = [fleet_store.Target(vm, NOTHING) for vm in (a, b, c, b, c)]
            targets.insert(2, fleet_store.Target(a, store.EventFilter(priority_min=2)))
            for limit in (100, 1000):
                expected = await merged_vm_pages(conn, targets, limit=limit)
                assert len(expected) == limit
                assert await fleet_keys(conn, targets, limit=limit) == expected
        finally:
            await conn.close()

    async def test_every_vm_has_fewer_rows_than_its_share(self, fleet: tuple[Service, list[Path]]) -> None:
        service, _ = fleet
        conn = await asyncpg.connect(service.database_url)
        try:
            targets = [fleet_store.Target(i, store.EventFilter(grep="hello 14")) for i in await vm_ids(conn)]
            expected = await merged_vm_pages(conn, targets, limit=1000)
            assert 0 < len(expected) < 1000 // len(targets)
            assert await fleet_keys(conn, targets, limit=1000) == expected
        finally:
            await conn.close()

    async def test_rows_at_the_bounds_time_stay(self, fleet: tuple[Service, list[Path]]) -> None:
        # Every VM twice: each row's time is shared by two rows, so the limit-th row has a twin.
        service, _ = fleet
        conn = await asyncpg.connect(service.database_url)
        try:
            ids = await vm_ids(conn)
            targets = [fleet_store.Target(i, store.EventFilter(priority_max=5)) for i in ids + ids]
            for limit in (9, 100, 101):
                expected = await merged_vm_pages(conn, targets, limit=limit)
                got = await fleet_keys(conn, targets, limit=limit)
                assert got == expected
                assert got[0] == got[1]
        finally:
            await conn.close()

    async def test_a_grep_reads_only_the_vms_holding_its_word(self, fleet: tuple[Service, list[Path]]) -> None:
        service, paths = fleet
        conn = await asyncpg.connect(service.database_url)
        try:
            a, b, c = await vm_ids(conn)
            # One more entry in the second VM only, with a word no other entry has.
            extra = {**journal_json(paths[1])[-1], "MESSAGE": "a quokka was sighted", "__CURSOR": "quokka-1"}
            async with conn.transaction():
                assert await ingest_store.ingest(conn, b, entries.to_rows([extra])) == 1
            keys = {vm: trigrams.of_pattern(vm, "quokka") or [] for vm in (a, b, c)}
            assert await trigram_store.vms_with(conn, keys) == {b}
            for pattern in ("quokka", "QUOKKA", "xylophone", "hello 1"):
                f = store.EventFilter(grep=pattern, grep_case_sensitive=pattern != "QUOKKA")
                targets = [fleet_store.Target(vm, f) for vm in (a, b, c, b)]
                for descending in (False, True):
                    expected = await merged_vm_pages(conn, targets, limit=100, descending=descending)
                    assert await fleet_keys(conn, targets, limit=100, descending=descending) == expected
                    assert bool(expected) == (pattern != "xylophone")
        finally:
            await conn.close()


class TestHistogram:
    @pytest.mark.parametrize(
        "params",
        [
            {},
            {"priority": "err"},
            {"step": "1m"},
            {"step": "17"},
            {"unit": "nginx", "step": "30s"},
            {"grep": "hello"},
            {"since": "2025-11-24 16:00:30.5", "until": "2025-11-24 16:02:10.25", "step": "1m"},
            {
                "since": "2025-11-24 16:00:30.5",
                "until": "2025-11-24 16:05",
                "priority": "warning..notice",
                "step": "2m",
            },
            {"boot": "0"},
        ],
    )
    async def test_totals_equal_the_events(self, fleet: tuple[Service, list[Path]], params: dict[str, str]) -> None:
        service, _ = fleet
        response = await service.client.get("/vm/fleet-a/histogram", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        query = {k: v for k, v in params.items() if k not in ("step", "unit")}
        path = "/vm/fleet-a/boot" + (f"/{params['unit']}" if "unit" in params else "")
        events = await all_pages(service, path, **query, limit=1000)
        assert sum(b["total"] for b in body["buckets"]) == len(events)
        assert all(b["total"] == sum(b["by_priority"].values()) for b in body["buckets"])
        per_priority: dict[str, int] = {}
        for e in events:
            per_priority[str(e["priority"])] = per_priority.get(str(e["priority"]), 0) + 1
        summed: dict[str, int] = {}
        for b in body["buckets"]:
            for p, n in b["by_priority"].items():
                summed[p] = summed.get(p, 0) + n
        assert summed == per_priority
        if "step" not in params:
            assert 50 <= len(body["buckets"]) <= 101, len(body["buckets"])
        # Every bucket counts the events in [start, start + step).
        step = body["step_seconds"]
        for b in body["buckets"][:5]:
            start = datetime.fromisoformat(b["start"].replace("Z", "+00:00")).timestamp()
            stamps = [datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp() for e in events]
            inside = [t for t in stamps if start <= t < start + step]
            assert b["total"] == len(inside)

    @pytest.mark.parametrize("params", [{}, {"priority": "err"}, {"unit": "s*"}, {"vm": "fleet-*", "step": "1m"}])
    async def test_fleet_totals(self, fleet: tuple[Service, list[Path]], params: dict[str, str]) -> None:
        service, _ = fleet
        body = (await service.client.get("/journal/histogram", params=params)).json()
        query = {k: v for k, v in params.items() if k != "step"}
        events = await all_pages(service, "/journal", **query, limit=1000)
        assert sum(b["total"] for b in body["buckets"]) == len(events)

    async def test_bad_step(self, fleet: tuple[Service, list[Path]]) -> None:
        service, _ = fleet
        for step, code in (("soon", "invalid_step"), ("0", "invalid_step"), ("1", "too_many_buckets")):
            response = await service.client.get("/vm/fleet-a/histogram", params={"step": step, "since": "-30d"})
            assert response.json()["error"] == code, response.text


class TestFleetFollow:
    async def test_glob_follow_takes_in_a_vm_created_later(self, fleet: tuple[Service, list[Path]]) -> None:
        service, paths = fleet
        got: list[dict[str, Any]] = []
        live = asyncio.Event()

        async def read() -> None:
            async with service.client.stream(
                "GET", "/journal", params={"vm": "fleet-*", "limit": 2}, headers={"Accept": "text/event-stream"}
            ) as response:
                lines: list[str] = []
                async for line in response.aiter_lines():
                    lines.append(line)
                    if line == "":
                        for message in parse_sse(iter(lines)):
                            if message.event == "live":
                                live.set()
                            elif message.data and message.event in ("", "message"):
                                got.append(orjson.loads(message.data))
                        lines = []
                    if len(got) >= 4:
                        return

        reader = asyncio.create_task(read())
        await asyncio.wait_for(live.wait(), 10)
        token = await enroll(service.client, "fleet-new")
        other = await enroll(service.client, "outside")
        now = int(datetime.now(UTC).timestamp() * 1e6)
        for name, tok in (("outside", other), ("fleet-new", token)):
            entry = {
                "__CURSOR": f"s=new;i={name}",
                "__REALTIME_TIMESTAMP": str(now),
                "MESSAGE": f"hi from {name}",
                "_BOOT_ID": "0f5e3c4b8a6d4e2f9b1c7d8e6f5a4b3c",
                "PRIORITY": "6",
                "_HOSTNAME": name,
            }
            response = await service.client.post(f"/vm/{name}/boot", json=[entry], headers=bearer(tok))
            assert response.json()["stored"] == 1
        entry = {
            "__CURSOR": "s=new;i=a",
            "__REALTIME_TIMESTAMP": str(now + 1),
            "MESSAGE": "more from a",
            "PRIORITY": "6",
        }
        tokens = await service.client.post("/vm/fleet-a/token")
        response = await service.client.post("/vm/fleet-a/boot", json=[entry], headers=bearer(tokens.json()["token"]))
        assert response.json()["stored"] == 1
        await asyncio.wait_for(reader, 10)
        # The backlog: the last two of the fleet; then the new VM's entry and fleet-a's, never "outside".
        assert keys(got[:2]) == keys(merged(paths[:2])[-2:])
        assert [(e["vm"], e["message"]) for e in got[2:]] == [
            ("fleet-new", "hi from fleet-new"),
            ("fleet-a", "more from a"),
        ]
