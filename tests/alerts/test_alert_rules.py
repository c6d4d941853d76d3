"""The /alerts routes against the real service: create, list, show, delete, and every bad input a 400."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from support.alerts import create_rule
from support.service import Service

HOOK = "http://127.0.0.1:9/hook"


class TestCreate:
    async def test_answers_the_secret_once(self, service: Service) -> None:
        rule = await create_rule(service.client, name="errs", unit="nginx", priority="err", webhook_url=HOOK)
        assert len(rule["secret"]) >= 40
        assert (rule["vm"], rule["threshold"], rule["window_seconds"], rule["match"]) == ("*", 1, 60, [])
        listed = (await service.client.get("/alerts")).json()
        shown = (await service.client.get("/alerts/errs")).json()
        history = (await service.client.get("/alerts/errs/events")).json()
        for body in (listed, shown, history):
            assert rule["secret"] not in str(body)
        assert [r["name"] for r in listed] == ["errs"] and listed[0]["status"] == "ok"
        assert shown["vms"] == [] and shown["last_firing"] is None
        assert shown["counts"] == {"firings": 0, "resolutions": 0, "delivered": 0, "pending": 0, "failed": 0}

    async def test_name_taken_is_409(self, service: Service) -> None:
        await create_rule(service.client, name="errs", webhook_url=HOOK)
        response = await service.client.post("/alerts", json={"name": "errs", "webhook_url": HOOK})
        assert response.status_code == 409 and response.json()["error"] == "alert_exists"

    async def test_needs_the_api_key_when_keys_are_set(self, service_factory: Any) -> None:
        async with service_factory(api_keys="k1") as svc:
            body = {"name": "errs", "webhook_url": HOOK}
            assert (await svc.client.post("/alerts", json=body)).status_code == 401
            assert (await svc.client.get("/alerts")).status_code == 401
            ok = await svc.client.post("/alerts", json=body, headers={"Authorization": "Bearer k1"})
            assert ok.status_code == 201


class TestValidation:
    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"grep": "([a-z"}, "grep"),
            ({"priority": "loud"}, "priority"),
            ({"webhook_url": "ftp://example.com/x"}, "webhook_url"),
            ({"webhook_url": "not a url"}, "webhook_url"),
            ({"unit": "bad unit!"}, "unit"),
            ({"vm": "web 1"}, "vm"),
            ({"match": ["no-equals"]}, "match"),
            ({"match": ["lower=case"]}, "match"),
            ({"threshold": 0}, "threshold"),
            ({"window_seconds": 0}, "window_seconds"),
            ({"threshold": "many"}, "threshold"),
            ({"name": "-bad-"}, "name"),
            ({"name": None}, "name"),
            ({"surprise": 1}, "surprise"),
        ],
    )
    async def test_bad_field_is_400_naming_it(
        self, service: Service, database_url: str, change: dict[str, Any], field: str
    ) -> None:
        body = {"name": "errs", "webhook_url": HOOK, **change}
        response = await service.client.post("/alerts", json=body)
        assert response.status_code == 400, response.text
        answer = response.json()
        assert set(answer) == {"error", "message"}
        assert field in answer["message"] or field in answer["error"], answer
        conn = await asyncpg.connect(database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM alert_rule") == 0
        finally:
            await conn.close()

    async def test_missing_webhook_and_bad_json(self, service: Service) -> None:
        missing = await service.client.post("/alerts", json={"name": "errs"})
        assert missing.status_code == 400 and "webhook_url" in missing.json()["message"]
        broken = await service.client.post("/alerts", content=b"{", headers={"Content-Type": "application/json"})
        assert broken.status_code == 400 and broken.json()["error"] == "bad_json"


class TestDelete:
    async def test_delete_then_404(self, service: Service) -> None:
        await create_rule(service.client, name="errs", webhook_url=HOOK)
        assert (await service.client.delete("/alerts/errs")).status_code == 204
        for response in (
            await service.client.get("/alerts/errs"),
            await service.client.delete("/alerts/errs"),
            await service.client.get("/alerts/errs/events"),
        ):
            assert response.status_code == 404 and response.json()["error"] == "alert_not_found"
        assert (await service.client.get("/alerts")).json() == []
