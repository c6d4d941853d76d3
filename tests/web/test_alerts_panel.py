"""The console's alerts panel in chromium: rules from ``GET /alerts`` with their state and last
firing, and a rule's row opening the entries it matches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, expect
from support.api import bearer, enroll
from support.browser import chromium, entry, open_page
from support.service import Service

# Nothing listens there: deliveries fail and retry, which the panel does not show.
HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with chromium(tmp_path / "profile") as context:
        yield context


async def wait_firing(service: Service, rule: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rules = (await service.client.get("/alerts")).json()
        found: dict[str, Any] = next(r for r in rules if r["name"] == rule)
        if found["status"] == "firing":
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"rule {rule} did not fire in {timeout}s")


class TestAlertsPanel:
    async def test_rules_their_state_and_their_entries(self, service: Service, browser: BrowserContext) -> None:
        errors: list[str] = []
        page = await open_page(browser, f"{service.url}/ui/", errors)
        await expect(page.locator("#alerts")).to_be_visible()
        await expect(page.locator("#alert-rows")).to_contain_text("no alert rules")

        token = await enroll(service.client, "web-1")
        for body in (
            {
                "name": "web-errors",
                "vm": "web-*",
                "priority": "err",
                "grep": "disk",
                "match": ["_PID=42"],
                "threshold": 1,
                "window_seconds": 60,
                "webhook_url": HOOK,
            },
            {"name": "db-quiet", "vm": "db-*", "unit": "postgresql", "webhook_url": HOOK},
        ):
            assert (await service.client.post("/alerts", json=body)).status_code == 201
        response = await service.client.post(
            "/vm/web-1/boot",
            headers=bearer(token),
            json=[entry(1, "disk failure on sda", priority=2), entry(2, "all fine", priority=6)],
        )
        assert response.status_code == 200
        await wait_firing(service, "web-errors")

        await page.reload()
        firing = page.locator('#alert-rows tr[data-name="web-errors"]')
        await expect(firing).to_have_attribute("data-status", "firing")
        cells = firing.locator("td")
        await expect(cells.nth(1)).to_have_text("web-*")
        await expect(cells.nth(2)).to_have_text("priority err, grep /disk/, _PID=42, ≥ 1 in 60 s")
        await expect(cells.nth(3)).to_have_text("firing on web-1")
        await expect(cells.nth(4)).to_contain_text("(web-1)")
        quiet = page.locator('#alert-rows tr[data-name="db-quiet"]')
        await expect(quiet).to_have_attribute("data-status", "ok")
        await expect(quiet.locator("td").nth(4)).to_have_text("never")

        # The rule's row opens the fleet view of what it matches.
        await firing.click()
        await expect(page.locator("#tail-vm")).to_have_text("the fleet (web-*)")
        lines = page.locator("#lines .line")
        await expect(lines).to_have_count(1)
        await expect(lines.first).to_contain_text("disk failure on sda")
        await expect(page.locator("#priority")).to_have_value("err")
        assert errors == []
