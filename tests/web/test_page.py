"""The web page in a real headless browser: Debian's chromium, driven by Playwright (never a
downloaded browser), against the real service on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import BrowserContext, expect
from support.api import bearer, enroll, wait_for_status
from support.browser import chromium, entry, open_page
from support.service import Service, ServiceFactory


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with chromium(tmp_path / "profile") as context:
        yield context


class TestPage:
    async def test_vms_and_a_live_filtered_tail(
        self, service: Service, browser: BrowserContext, tmp_path: Path
    ) -> None:
        token = await enroll(service.client, "web-1")

        async def ingest(*entries: dict[str, str]) -> httpx.Response:
            return await service.client.post("/vm/web-1/boot", json=list(entries), headers=bearer(token))

        assert (await ingest(entry(1, "nginx starting", "nginx.service"), entry(2, "sshd ready"))).status_code == 200
        await service.client.post("/vm/fail-2/small")
        await wait_for_status(service.client, "web-1", "running")
        await wait_for_status(service.client, "fail-2", "failed")

        errors: list[str] = []
        page = await open_page(browser, f"{service.url}/ui/", errors)
        row = page.locator('#vm-rows tr[data-name="web-1"]')
        await expect(row).to_contain_text("running")
        await expect(row).to_contain_text("external")
        await expect(page.locator('#vm-rows tr[data-name="fail-2"] .status')).to_have_text("failed")
        await expect(page.locator('#vm-rows tr[data-name="fail-2"]')).to_contain_text(
            "TestBootFailure: the guest did not boot"
        )

        await row.click()
        lines = page.locator("#lines .line")
        await expect(lines).to_have_count(2)
        await expect(page.locator("#tail-state")).to_have_text("live")

        # A new entry appears without a reload.
        assert (await ingest(entry(3, "fresh entry", "nginx.service"))).status_code == 200
        await expect(lines).to_have_count(3)
        await expect(lines.nth(2)).to_contain_text("nginx[42]: fresh entry")

        # Unit filter: only ssh.service from now on, old and new.
        await expect(page.locator("#unit-list option[value='ssh.service']")).to_have_count(1)
        await page.fill("#unit", "ssh.service")
        await page.press("#unit", "Enter")
        await expect(lines).to_have_count(1)
        await expect(lines.first).to_contain_text("sshd ready")
        await ingest(entry(4, "nginx noise", "nginx.service"), entry(5, "ssh login accepted"))
        await expect(lines).to_have_count(2)
        await expect(lines.nth(1)).to_contain_text("ssh login accepted")

        # Priority filter: err and worse.
        await page.fill("#unit", "")
        await page.press("#unit", "Enter")
        await page.select_option("#priority", "err")
        await expect(page.locator("#tail-state")).to_have_text("live")
        await expect(lines).to_have_count(0)
        await ingest(entry(6, "disk failure", "ssh.service", priority=2), entry(7, "all fine", "ssh.service"))
        await expect(lines).to_have_count(1)
        await expect(lines.first).to_contain_text("disk failure")
        await expect(lines.first).to_have_class("line p2")

        shot = tmp_path / "page.png"
        await page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert errors == []

    async def test_asks_for_an_api_key(self, service_factory: ServiceFactory, browser: BrowserContext) -> None:
        async with service_factory(api_keys="s3cret-key") as svc:
            headers = {"Authorization": "Bearer s3cret-key"}
            assert (
                await svc.client.post("/vm/key-1/small", params={"provider": "external"}, headers=headers)
            ).status_code == 202
            svc.client.headers.update(headers)
            await wait_for_status(svc.client, "key-1", "running")
            errors: list[str] = []
            page = await open_page(browser, f"{svc.url}/ui/", errors)
            await expect(page.locator("#key-form")).to_be_visible()
            await page.fill("#key-input", "s3cret-key")
            await page.click("#key-form button")
            await expect(page.locator('#vm-rows tr[data-name="key-1"]')).to_contain_text("running")
