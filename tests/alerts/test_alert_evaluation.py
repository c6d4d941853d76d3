"""Rules evaluated as entries are stored, with a real webhook receiver on loopback and real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support.alerts import create_rule, entry, ingest, wait_for_delivered, wait_for_matches
from support.api import enroll
from support.receiver import Receiver
from support.service import Service

from vmjournal import db
from vmjournal.alerts import evaluation, match_store
from vmjournal.alerts import service as alerts_service
from vmjournal.alerts.evaluation import Evaluator, Outcome
from vmjournal.alerts.schemas import AlertCreate
from vmjournal.journal import entries as journal_entries
from vmjournal.journal import ingest_store

Direct = tuple[async_sessionmaker[AsyncSession], asyncpg.Connection]


@pytest.fixture
async def direct(database_url: str) -> AsyncIterator[Direct]:
    """Sessions as the service makes them, and a connection of the test's own, for evaluations run in the test."""
    engine = db.create_engine(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        yield db.session_factory(engine), conn
    finally:
        await conn.close()
        await engine.dispose()


async def add_vm(conn: asyncpg.Connection) -> uuid.UUID:
    vm_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO vm (id, name, size, provider, status) VALUES ($1, 'web-1', 'small', 'external', 'running')",
        vm_id,
    )
    return vm_id


async def add_rules(sessions: async_sessionmaker[AsyncSession], rules: dict[str, dict[str, Any]]) -> None:
    for name, values in rules.items():
        async with sessions() as session, session.begin():
            await alerts_service.create_rule(
                session, AlertCreate(name=name, webhook_url="http://127.0.0.1:9/hook", **values)
            )


class TestFiring:
    async def test_one_matching_entry_fires_one_signed_delivery(self, service_factory: Any) -> None:
        async with service_factory(alert_tick_seconds=0.2) as svc:
            token = await enroll(svc.client, "web-1")
            with Receiver() as hook:
                rule = await create_rule(
                    svc.client,
                    name="nginx-errs",
                    vm="web-*",
                    unit="nginx",
                    priority="err",
                    grep="upstream",
                    webhook_url=hook.url,
                )
                await ingest(
                    svc.client,
                    "web-1",
                    token,
                    entry("upstream timed out", unit="nginx.service", priority=3),
                    entry("upstream fine", unit="nginx.service", priority=6),
                    entry("upstream timed out", unit="ssh.service", priority=3),
                )
                [got] = await hook.wait_for(1)
                await wait_for_matches(svc.client, "nginx-errs", "web-1", 1)
                await asyncio.sleep(0.5)  # nothing else comes
                assert len(hook.received) == 1
            assert got.signed_with(rule["secret"])
            assert got.headers["content-type"] == "application/json"
            body = got.json
            assert (body["alert"], body["status"], body["vm"], body["count"], body["window_seconds"]) == (
                "nginx-errs",
                "firing",
                "web-1",
                1,
                60,
            )
            assert [e["message"] for e in body["sample"]] == ["upstream timed out"]
            assert body["sample"][0]["unit"] == "nginx.service"
            assert body["first_at"] == body["last_at"]
            assert body["url"].startswith(f"{svc.url}/ui/#")
            for part in ("vm=web-1", "unit=nginx", "priority=err", "grep=upstream", "since="):
                assert part in body["url"], body["url"]
            shown = (await svc.client.get("/alerts/nginx-errs")).json()
            assert shown["status"] == "firing" and shown["firing_vms"] == ["web-1"]
            assert shown["last_firing"]["id"] == got.key and shown["last_firing"]["delivery"] == "delivered"
            assert shown["counts"]["firings"] == 1 and shown["counts"]["delivered"] == 1
            metrics = (await svc.client.get("/metrics")).text
            assert 'vmjournal_alert_notifications_total{status="firing"} ' in metrics
            assert 'vmjournal_alert_deliveries_total{result="delivered"} ' in metrics

    async def test_entries_before_the_rule_and_other_vms_do_not_fire(self, service: Service) -> None:
        web = await enroll(service.client, "web-1")
        db = await enroll(service.client, "db-1")
        await ingest(service.client, "web-1", web, entry("before the rule"))
        with Receiver() as hook:
            await create_rule(service.client, name="web", vm="web-*", webhook_url=hook.url)
            await ingest(service.client, "db-1", db, entry("not a web VM"))
            await ingest(service.client, "web-1", web, entry("after the rule"))
            [got] = await hook.wait_for(1)
            await asyncio.sleep(0.5)
            assert len(hook.received) == 1
        assert [e["message"] for e in got.json["sample"]] == ["after the rule"]

    async def test_match_fields(self, service: Service) -> None:
        token = await enroll(service.client, "web-1")
        with Receiver() as hook:
            await create_rule(
                service.client,
                name="oom",
                match=["_TRANSPORT=kernel", "_TRANSPORT=audit", "SEV=x"],
                webhook_url=hook.url,
            )
            await ingest(
                service.client,
                "web-1",
                token,
                entry("journal", _TRANSPORT="journal", SEV="x"),
                entry("kernel but no SEV", _TRANSPORT="kernel"),
                entry("audit", _TRANSPORT="audit", SEV="x"),
            )
            [got] = await hook.wait_for(1)
        assert [e["message"] for e in got.json["sample"]] == ["audit"]


class TestThresholdAndWindow:
    async def test_threshold_within_the_window(self, service: Service) -> None:
        token = await enroll(service.client, "web-1")
        with Receiver() as hook:
            await create_rule(service.client, name="burst", threshold=3, window_seconds=60, webhook_url=hook.url)
            now = time.time()
            await ingest(service.client, "web-1", token, entry("one", at=now - 30), entry("two", at=now - 20))
            await wait_for_matches(service.client, "burst", "web-1", 2)
            assert hook.received == []
            await ingest(service.client, "web-1", token, entry("three", at=now - 10), entry("four", at=now - 5))
            [got] = await hook.wait_for(1)
            await wait_for_matches(service.client, "burst", "web-1", 4)
            await asyncio.sleep(0.3)
            assert len(hook.received) == 1
        body = got.json
        assert body["count"] == 3  # the window from the first to the third match
        assert [e["message"] for e in body["sample"]] == ["one", "two", "three"]

    async def test_matches_further_apart_than_the_window_do_not_fire(self, service: Service) -> None:
        token = await enroll(service.client, "web-1")
        with Receiver() as hook:
            await create_rule(service.client, name="pair", threshold=2, window_seconds=10, webhook_url=hook.url)
            now = time.time()
            await ingest(
                service.client,
                "web-1",
                token,
                entry("a", at=now - 300),
                entry("b", at=now - 200),
                entry("c", at=now - 100),
            )
            await wait_for_matches(service.client, "pair", "web-1", 3)
            await asyncio.sleep(0.3)
            assert hook.received == []
            # Out of order: one 5 s after "b" completes a pair with it.
            await ingest(service.client, "web-1", token, entry("d", at=now - 195))
            [got] = await hook.wait_for(1)
        assert [e["message"] for e in got.json["sample"]] == ["b", "d"]


class TestResolution:
    async def test_resolved_after_a_quiet_window(self, service_factory: Any) -> None:
        async with service_factory(alert_tick_seconds=0.2) as svc:
            token = await enroll(svc.client, "web-1")
            with Receiver() as hook:
                await create_rule(svc.client, name="flap", window_seconds=2, webhook_url=hook.url)
                await ingest(svc.client, "web-1", token, entry("first"))
                await hook.wait_for(1)
                fired = time.monotonic()
                await asyncio.sleep(1.0)
                await ingest(svc.client, "web-1", token, entry("still failing"))  # extends the firing
                await wait_for_matches(svc.client, "flap", "web-1", 2)
                firing, resolved = await hook.wait_for(2, timeout=10)
                quiet = time.monotonic() - fired
                assert firing.json["status"] == "firing" and resolved.json["status"] == "resolved"
                assert quiet >= 3.0  # 1 s to the second match, then 2 s without one
                assert resolved.json["count"] == 2
                assert [e["message"] for e in resolved.json["sample"]] == ["first", "still failing"]
                assert resolved.key != firing.key
                # Fires again with a new match after resolving.
                await ingest(svc.client, "web-1", token, entry("again"))
                again = (await hook.wait_for(3))[2]
            assert again.json["status"] == "firing"
            history = await wait_for_delivered(svc.client, "flap", 3)
            assert [h["status"] for h in history] == ["firing", "resolved", "firing"]


class TestManyRules:
    async def test_rules_sharing_filters_and_guards_each_count_their_own_matches(self, service: Service) -> None:
        token = await enroll(service.client, "web-1")
        with Receiver() as hook:
            rules: dict[str, dict[str, Any]] = {
                "upstream": {"unit": "nginx", "grep": "upstream"},
                "upstream-twin": {"unit": "nginx", "grep": "upstream"},
                "timed": {"unit": "nginx", "grep": "timed"},
                "nginx-errors": {"unit": "nginx", "priority": "err"},
                "upstream-cased": {"grep": "Upstream"},
                "ssh-kernel": {"unit": "ssh", "match": ["_TRANSPORT=kernel"]},
                "cron": {"unit": "cron"},
            }
            for name, body in rules.items():
                await create_rule(service.client, name=name, threshold=100, webhook_url=hook.url, **body)
            await ingest(
                service.client,
                "web-1",
                token,
                entry("upstream timed out", unit="nginx.service", priority=3),
                entry("Upstream reset", unit="nginx.service", priority=6),
                entry("upstream timed out", unit="ssh.service", priority=3, _TRANSPORT="kernel"),
                entry("all fine", unit="nginx.service", priority=6),
            )
            expected = {
                "upstream": 2,
                "upstream-twin": 2,
                "timed": 1,
                "nginx-errors": 1,
                "upstream-cased": 1,
                "ssh-kernel": 1,
            }
            for name, n in expected.items():
                await wait_for_matches(service.client, name, "web-1", n)
            await asyncio.sleep(0.3)
            seen = {}
            for name in rules:
                states = (await service.client.get(f"/alerts/{name}")).json()["vms"]
                seen[name] = sum(s["matches"] for s in states)
        assert seen == expected | {"cron": 0}
        assert hook.received == []


class TestGreps:
    async def test_greps_read_through_their_alternation_match_as_each_alone(self, service: Service) -> None:
        """Greps of one case mode are tried only where their joined alternation matched; back-references
        and embedded options stay out of it. Each rule fires on exactly its own entries, all in one pass."""
        token = await enroll(service.client, "web-1")
        greps = {
            "anchored": "^disk",
            "cased": "Disk",
            "either": "refused|reset",
            "back-reference": "(o)\\1",
            "options": "(?i)DISK FULL",
            "unit-and-grep": "(connection|socket) refused",
        }
        with Receiver() as hook:
            for name, grep in greps.items():
                unit = "ssh" if name == "unit-and-grep" else None
                await create_rule(service.client, name=name, grep=grep, unit=unit, webhook_url=hook.url)
            now = time.time()
            messages = ["disk full", "Disk gone", "connection refused", "too good", "nothing here"]
            await ingest(
                service.client,
                "web-1",
                token,
                *(
                    entry(m, unit="ssh.service" if "refused" in m else "nginx.service", at=now + i / 1000)
                    for i, m in enumerate(messages)
                ),
            )
            received = await hook.wait_for(len(greps))
            await wait_for_matches(service.client, "anchored", "web-1", 2)
            await asyncio.sleep(0.3)
            assert len(hook.received) == len(greps)
        fired = {r.json["alert"]: ([e["message"] for e in r.json["sample"]], r.json["count"]) for r in received}
        assert fired == {
            "anchored": (["disk full"], 1),
            "cased": (["Disk gone"], 1),
            "either": (["connection refused"], 1),
            "back-reference": (["too good"], 1),
            "options": (["disk full"], 1),
            "unit-and-grep": (["connection refused"], 1),
        }
        states = {name: (await service.client.get(f"/alerts/{name}")).json()["vms"][0]["matches"] for name in greps}
        assert states == {name: 2 if name == "anchored" else 1 for name in greps}


class TestRuleMadeDuringAPass:
    """An evaluator that read the rules before a new one was made must not move a VM's cursor past
    entries it did not read for the new rule."""

    async def test_the_page_is_read_again_with_the_new_rule(self, direct: Direct) -> None:
        sessions, conn = direct
        vm_id = await add_vm(conn)

        evaluator = Evaluator(sessions, base_url="http://127.0.0.1:9", tick_seconds=60, on_notification=lambda: None)
        await add_rules(sessions, {"first": {"grep": "never said"}})
        stale = await evaluator.load_rules(conn)
        await add_rules(sessions, {"second": {"grep": "disk"}})
        async with conn.transaction():
            await ingest_store.ingest(conn, vm_id, journal_entries.to_rows([entry("disk full")]))
        since = datetime(1970, 1, 1, tzinfo=UTC)
        assert await evaluator.evaluate(conn, vm_id, since, stale) is Outcome.more
        fresh = await evaluator.load_rules(conn)
        assert await evaluator.evaluate(conn, vm_id, since, fresh) is Outcome.done
        counted = await conn.fetchval(
            "SELECT s.matches FROM alert_state s JOIN alert_rule r ON r.id = s.rule_id WHERE r.name = 'second'"
        )
        assert counted == 1


class TestBatchTrigrams:
    """A page leaves out the rules whose grep needs letter trigrams that no batch holding its entries
    has (journal/trigrams.py), and stops at the entries those batches cover."""

    async def _store(self, conn: asyncpg.Connection, vm_id: uuid.UUID, *messages: str) -> None:
        async with conn.transaction():
            await ingest_store.ingest(conn, vm_id, journal_entries.to_rows([entry(m) for m in messages]))

    async def test_rules_no_new_batch_can_match_are_left_out_of_the_page(self, direct: Direct) -> None:
        sessions, conn = direct
        vm_id = await add_vm(conn)
        made = {"disk": {"grep": "disk"}, "later": {"grep": "never said"}, "unit": {"unit": "nginx"}}
        await add_rules(sessions, made | {"alternation": {"grep": "disk|never"}, "digits": {"grep": "42"}})
        evaluator = Evaluator(sessions, base_url="http://127.0.0.1:9", tick_seconds=60, on_notification=lambda: None)
        rules = await evaluator.load_rules(conn)
        since = datetime.now(UTC) - timedelta(minutes=5)
        await self._store(conn, vm_id, "disk full", "pid 42 exited")
        possible, upto = await evaluation.possible(conn, vm_id, since, rules)
        # "never said" is in no batch; an alternation or digits have no letter trigrams to ask for.
        assert sorted(r.name for r in possible) == ["alternation", "digits", "disk", "unit"]
        assert upto == await conn.fetchval("SELECT max(seq) FROM journal_event WHERE vm_id = $1", vm_id)
        # From the start of time (a restart's catch-up) every rule is read; so it is where a
        # batch's row was written before rows kept their last seq.
        assert len((await evaluation.possible(conn, vm_id, evaluation._NO_LOWER_BOUND, rules))[0]) == len(rules)
        await conn.execute("UPDATE journal_trigrams SET last_seq = NULL")
        assert await evaluation.possible(conn, vm_id, since, rules) == (rules, None)
        await conn.execute("UPDATE journal_trigrams SET last_seq = $1", upto)

        # A batch stored after the batches were read is past the page's end: it comes with its own news.
        await self._store(conn, vm_id, "never said before")
        page = await match_store.new_matches(
            conn, vm_id, [r.filter for r in possible], ts_from=since, after_seq=0, limit=100, upto=upto
        )
        assert (page.last, page.scanned) == (upto, 2)

        assert await evaluator.evaluate(conn, vm_id, since, rules) is Outcome.done
        counted = dict(
            await conn.fetch("SELECT r.name, s.matches FROM alert_state s JOIN alert_rule r ON r.id = s.rule_id")
        )
        assert counted == {"disk": 1, "later": 1, "unit": 3, "alternation": 2, "digits": 1}


class TestSevereOnlyPages:
    """When every rule a page reads needs a warning or worse, the page reads only those entries
    and the cursor still moves to the end of what the batches hold."""

    async def test_reads_only_severe_entries_and_moves_past_the_rest(self, direct: Direct) -> None:
        sessions, conn = direct
        vm_id = await add_vm(conn)
        made = {"errors": {"priority": "err"}, "nginx-warnings": {"unit": "nginx", "priority": "warning"}}
        await add_rules(sessions, made | {"absent": {"grep": "never said"}})  # left out: no batch has its letters
        evaluator = Evaluator(sessions, base_url="http://127.0.0.1:9", tick_seconds=60, on_notification=lambda: None)
        loaded = await evaluator.load_rules(conn)
        since = datetime.now(UTC) - timedelta(minutes=5)
        batch = [entry("disk failed", priority=3), entry("disk slow", priority=4, unit="cron.service")]
        batch += [entry(f"request {i} served", priority=6) for i in range(20)]
        async with conn.transaction():
            await ingest_store.ingest(conn, vm_id, journal_entries.to_rows(batch))
        last = await conn.fetchval("SELECT max(seq) FROM journal_event WHERE vm_id = $1", vm_id)

        reading, upto = await evaluation.possible(conn, vm_id, since, loaded)
        assert sorted(r.name for r in reading) == ["errors", "nginx-warnings"] and upto == last
        filters = [r.filter for r in reading]
        severe = await match_store.new_matches(
            conn, vm_id, filters, ts_from=since, after_seq=0, limit=100, upto=upto, severe_only=True
        )
        every = await match_store.new_matches(conn, vm_id, filters, ts_from=since, after_seq=0, limit=100, upto=upto)
        # The same matches, from 2 entries read instead of 22.
        assert (severe.scanned, every.scanned) == (2, 22)
        assert severe.matches == every.matches and len(severe.matches) == 1

        assert await evaluator.evaluate(conn, vm_id, since, loaded) is Outcome.done
        # Past the 20 entries that could not match, though the page did not read them.
        assert await conn.fetchval("SELECT seq FROM alert_cursor WHERE vm_id = $1", vm_id) == last
        counted = dict(
            await conn.fetch("SELECT r.name, s.matches FROM alert_state s JOIN alert_rule r ON r.id = s.rule_id")
        )
        assert counted == {"errors": 1, "nginx-warnings": 1}
