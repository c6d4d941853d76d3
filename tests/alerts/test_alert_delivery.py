"""Webhook delivery: retries with backoff and one Idempotency-Key, a failing webhook beside ingest."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from support.alerts import create_rule, entry, ingest, wait_for_matches
from support.api import enroll
from support.receiver import Receiver


async def notifications(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch("SELECT status, delivery, attempts, last_error FROM alert_notification"))
    finally:
        await conn.close()


class TestRetries:
    async def test_500_three_times_then_200_keeps_the_key(self, service_factory: Any, database_url: str) -> None:
        async with service_factory(alert_retry_seconds=0.2) as svc:
            token = await enroll(svc.client, "web-1")
            with Receiver(answers=[500, 500, 500]) as hook:
                rule = await create_rule(svc.client, name="errs", webhook_url=hook.url)
                await ingest(svc.client, "web-1", token, entry("boom"))
                attempts = await hook.wait_for(4)
                await asyncio.sleep(0.6)
                assert len(hook.received) == 4
            assert hook.answered == [500, 500, 500, 200]
            assert len({r.key for r in attempts}) == 1
            assert len({r.body for r in attempts}) == 1
            assert all(r.signed_with(rule["secret"]) for r in attempts)
            gaps = [b.at - a.at for a, b in zip(attempts, attempts[1:], strict=False)]
            # Backoff doubles from 0.2 s (jittered down by at most 20 %).
            assert gaps[0] >= 0.15 and gaps[1] >= 0.3 and gaps[2] >= 0.6, gaps
            [row] = await notifications(database_url)
            assert (row["delivery"], row["attempts"], row["last_error"]) == ("delivered", 4, None)
            [event] = (await svc.client.get("/alerts/errs/events")).json()
            assert (event["id"], event["attempts"], event["delivery"]) == (attempts[0].key, 4, "delivered")

    async def test_gives_up_after_max_attempts(self, service_factory: Any, database_url: str) -> None:
        async with service_factory(alert_retry_seconds=0.05, alert_max_attempts=3) as svc:
            token = await enroll(svc.client, "web-1")
            with Receiver(answers=[503] * 10) as hook:
                await create_rule(svc.client, name="errs", webhook_url=hook.url)
                await ingest(svc.client, "web-1", token, entry("boom"))
                await hook.wait_for(3)
                await asyncio.sleep(0.5)
                assert len(hook.received) == 3
            [row] = await notifications(database_url)
            assert (row["delivery"], row["attempts"], row["last_error"]) == ("failed", 3, "HTTP 503")
            shown = (await svc.client.get("/alerts/errs")).json()
            assert shown["counts"]["failed"] == 1


class TestFailingWebhook:
    async def test_unreachable_webhook_leaves_ingest_and_other_rules_alone(
        self, service_factory: Any, database_url: str
    ) -> None:
        async with service_factory(alert_retry_seconds=0.1, alert_delivery_timeout_seconds=1) as svc:
            token = await enroll(svc.client, "web-1")
            with Receiver() as hook:
                # Nothing listens on port 9 (discard): every attempt is refused.
                await create_rule(svc.client, name="dead", webhook_url="http://127.0.0.1:9/hook")
                await create_rule(svc.client, name="live", webhook_url=hook.url)
                for i in range(20):
                    await ingest(svc.client, "web-1", token, entry(f"boom {i}"))
                await wait_for_matches(svc.client, "dead", "web-1", 20)
                [got] = await hook.wait_for(1)
            assert got.json["alert"] == "live"
            rows = await notifications(database_url)
            dead = [r for r in rows if r["delivery"] == "pending"]
            assert len(rows) == 2 and len(dead) == 1 and dead[0]["attempts"] >= 1
            assert "ConnectError" in dead[0]["last_error"]
