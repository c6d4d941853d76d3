"""The console's journal view, VM management and links, in Debian's chromium against the real
service: the chart against the histogram API, filters, zoom, pages, the fleet, the URL fragment."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.async_api import BrowserContext, Dialog, Page, expect
from support.api import bearer, enroll, wait_for_status
from support.browser import chart_buckets, chromium, entry, open_page
from support.service import Service

MINUTE_US = 60_000_000
# Priorities cycling through err-and-worse and milder ones, so every filter keeps some.
PRIORITIES = (6, 3, 4, 6, 2, 5, 6, 7, 3, 6)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with chromium(tmp_path / "profile") as context:
        yield context


async def ingest(service: Service, name: str, token: str, entries: list[dict[str, str]]) -> None:
    response = await service.client.post(f"/vm/{name}/boot", json=entries, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == len(entries)


def spread(count: int, host: str = "web") -> list[dict[str, str]]:
    """``count`` entries two minutes apart over the last hours, priorities and units mixed."""
    start = int(time.time() * 1e6) - count * 2 * MINUTE_US
    return [
        entry(
            i,
            f"{host} entry {i:03d}",
            "nginx.service" if i % 2 else "ssh.service",
            PRIORITIES[i % len(PRIORITIES)],
            at_us=start + i * 2 * MINUTE_US + 1234,
            host=host,
        )
        for i in range(count)
    ]


def is_events(url: str) -> bool:
    """A request for web-1's events (not its boots or units)."""
    path = urlsplit(url).path
    return path == "/vm/web-1/boot" or path.startswith("/vm/web-1/boot/")


def fragment(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).fragment)


async def assert_chart_is(page: Page, service: Service, path: str, params: dict[str, str]) -> None:
    """The bars drawn are the histogram the API answers for the same filter."""
    query = f"{path}?{urlencode(params, safe='*')}" if params else path
    await expect(page.locator("#chart svg")).to_have_attribute("data-query", query)
    api = (await service.client.get(path, params=params)).json()
    drawn = await chart_buckets(page)
    assert drawn["step_seconds"] == api["step_seconds"]
    assert [{k: b[k] for k in ("start", "total", "by_priority")} for b in drawn["buckets"]] == api["buckets"]
    assert [b["drawn"] for b in drawn["buckets"]] == [b["by_priority"] for b in api["buckets"]]
    assert sum(b["total"] for b in api["buckets"]) > 0


async def bar_center(page: Page, index: int) -> tuple[float, float]:
    box = await page.locator(f"#chart .bucket[data-index='{index}'] .hit").bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


class TestJournalView:
    async def test_chart_equals_histogram_and_filters_update_list_and_chart(
        self, service: Service, browser: BrowserContext
    ) -> None:
        token = await enroll(service.client, "web-1")
        entries = spread(40)
        await ingest(service, "web-1", token, entries)
        errors: list[str] = []
        page = await open_page(browser, f"{service.url}/ui/#vm=web-1", errors)
        lines = page.locator("#lines .line")
        await expect(lines).to_have_count(40)
        await assert_chart_is(page, service, "/vm/web-1/histogram", {})

        # A filter changes the list and the chart together.
        await page.select_option("#priority", "err")
        severe = [e for e in entries if int(e["PRIORITY"]) <= 3]
        await expect(lines).to_have_count(len(severe))
        await expect(lines.first).to_contain_text(severe[0]["MESSAGE"])
        await assert_chart_is(page, service, "/vm/web-1/histogram", {"priority": "err"})
        assert fragment(page) == {"vm": ["web-1"], "priority": ["err"]}

        # Click a bar: since/until become that bucket, the list and the chart follow.
        bars = await chart_buckets(page)
        index = next(i for i, b in enumerate(bars["buckets"]) if b["total"] > 0)
        await page.mouse.click(*await bar_center(page, index))
        await expect(page.locator("#since")).to_have_value(bars["buckets"][index]["start"])
        zoom = {k: v[0] for k, v in fragment(page).items()}
        assert zoom["since"] == bars["buckets"][index]["start"]
        await expect(lines).to_have_count(bars["buckets"][index]["total"])
        await assert_chart_is(
            page, service, "/vm/web-1/histogram", {"priority": "err", "since": zoom["since"], "until": zoom["until"]}
        )
        listed = (
            await service.client.get(
                "/vm/web-1/boot", params={"priority": "err", "since": zoom["since"], "until": zoom["until"]}
            )
        ).json()
        assert listed["count"] == bars["buckets"][index]["total"]

        # Back to the whole range, then drag across several bars.
        await page.click("#zoom-out")
        await expect(lines).to_have_count(len(severe))
        await assert_chart_is(page, service, "/vm/web-1/histogram", {"priority": "err"})
        bars = await chart_buckets(page)
        lo, hi = 10, len(bars["buckets"]) // 2
        await page.mouse.move(*await bar_center(page, lo))
        await page.mouse.down()
        await page.mouse.move(*await bar_center(page, hi), steps=5)
        await page.mouse.up()
        await expect(page.locator("#since")).to_have_value(bars["buckets"][lo]["start"])
        await expect(lines).to_have_count(sum(b["total"] for b in bars["buckets"][lo : hi + 1]))
        assert errors == []

    async def test_paging_loads_the_next_page(self, service: Service, browser: BrowserContext) -> None:
        token = await enroll(service.client, "web-1")
        entries = spread(130)
        await ingest(service, "web-1", token, entries)
        errors: list[str] = []
        requests: list[str] = []
        page = await open_page(browser, f"{service.url}/ui/#vm=web-1&limit=50", errors)
        page.on("request", lambda r: requests.append(r.url) if is_events(r.url) else None)
        lines = page.locator("#lines .line")
        await expect(lines).to_have_count(50)
        await page.click("#more")
        await expect(lines).to_have_count(100)
        await page.click("#more")
        await expect(lines).to_have_count(130)
        await expect(page.locator("#more")).to_be_hidden()
        assert await lines.locator(".msg").all_text_contents() == [e["MESSAGE"] for e in entries]
        # Each further page is the Link header's target: the keyset cursor, the same filters.
        assert len(requests) == 2 and all("cursor=" in u and "limit=50" in u for u in requests)
        assert errors == []

    async def test_the_fleet_shows_every_vm_by_name(self, service: Service, browser: BrowserContext) -> None:
        tokens = {name: await enroll(service.client, name) for name in ("web-1", "web-2", "db-1")}
        for name, token in tokens.items():
            await ingest(service, name, token, spread(5, host=name))
        errors: list[str] = []
        page = await open_page(browser, f"{service.url}/ui/", errors)
        await expect(page.locator('#vm-rows tr[data-name="db-1"]')).to_be_visible()
        await page.click("#open-fleet")
        lines = page.locator("#lines .line")
        await expect(lines).to_have_count(15)
        for name in tokens:
            await expect(page.locator(f"#lines .line[data-vm='{name}']")).to_have_count(5)
            await expect(page.locator(f"#lines .line[data-vm='{name}'] .vm").first).to_have_text(f"{name} ")
        await assert_chart_is(page, service, "/journal/histogram", {"vm": "*"})

        # A glob narrows the fleet; live tail shows what a VM stores next, with its name.
        await page.fill("#f-vm", "web-*")
        await page.check("#live")
        await expect(page.locator("#tail-state")).to_have_text("live")
        await expect(lines).to_have_count(10)
        await expect(page.locator("#lines .line[data-vm='db-1']")).to_have_count(0)
        await assert_chart_is(page, service, "/journal/histogram", {"vm": "web-*"})
        await ingest(service, "web-2", tokens["web-2"], [entry(99, "web-2 says hello", host="web-2")])
        await ingest(service, "db-1", tokens["db-1"], [entry(99, "db-1 is not shown", host="db-1")])
        await expect(lines).to_have_count(11)
        await expect(lines.last).to_contain_text("web-2 ")
        await expect(lines.last).to_contain_text("web-2 says hello")
        assert errors == []


class TestLinks:
    async def test_the_fragment_round_trips(self, service: Service, browser: BrowserContext) -> None:
        token = await enroll(service.client, "web-1")
        await ingest(service, "web-1", token, spread(10))
        pairs = [
            ("vm", "web-1"),
            ("unit", "nginx.service"),
            ("priority", "err"),
            ("boot", "0"),
            ("since", "2020-01-01T00:00:00+00:00"),
            ("until", "2099-01-01 00:00:00"),
            ("grep", "entry 0"),
            ("match", "_TRANSPORT=stdout"),
            ("match", "_PID=42"),
            ("order", "desc"),
            ("limit", "5"),
        ]
        # As the alerts' webhook builds it (Python's urlencode); the page keeps it as it is.
        link = "#" + urlencode(pairs, safe="*")
        requests: list[str] = []
        errors: list[str] = []
        page = await browser.new_page()
        page.on("request", lambda r: requests.append(r.url) if is_events(r.url) else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{service.url}/ui/{link}")
        await expect(page.locator("#tail-vm")).to_have_text("web-1")
        for field, value in [
            ("#f-vm", "web-1"),
            ("#unit", "nginx.service"),
            ("#priority", "err"),
            ("#boot", "0"),
            ("#since", "2020-01-01T00:00:00+00:00"),
            ("#until", "2099-01-01 00:00:00"),
            ("#grep", "entry 0"),
            ("#order", "desc"),
        ]:
            await expect(page.locator(field)).to_have_value(value)
        chips = page.locator("#matches .chip")
        await expect(chips).to_have_count(2)
        assert [await c.get_attribute("data-match") for c in await chips.all()] == ["_TRANSPORT=stdout", "_PID=42"]
        assert urlsplit(page.url).fragment == link[1:]
        # The list asked the API for exactly that view, and shows its answer.
        sent = parse_qs(urlsplit(requests[0]).query)
        answer = (await service.client.get(requests[0], headers={"Accept": "application/json"})).json()
        await expect(page.locator("#lines .line")).to_have_count(answer["count"])
        assert urlsplit(requests[0]).path == "/vm/web-1/boot/nginx.service"
        assert sent == {
            "priority": ["err"],
            "boot": ["0"],
            "since": ["2020-01-01T00:00:00+00:00"],
            "until": ["2099-01-01 00:00:00"],
            "grep": ["entry 0"],
            "match": ["_TRANSPORT=stdout", "_PID=42"],
            "order": ["desc"],
            "limit": ["5"],
        }

        # A change in the form is a new link; reloading it gives the same view.
        await page.locator("#matches .chip button").first.click()
        await page.fill("#grep", "entry 00[13]")
        await page.press("#grep", "Enter")
        changed = [p for p in pairs if p[0] not in ("grep", "match")]
        changed[6:6] = [("grep", "entry 00[13]"), ("match", "_PID=42")]
        await expect(page).to_have_url(f"{service.url}/ui/#" + urlencode(changed, safe="*"))
        await page.reload()
        await expect(page.locator("#grep")).to_have_value("entry 00[13]")
        await expect(page.locator("#matches .chip")).to_have_count(1)
        await expect(page.locator("#priority")).to_have_value("err")

        # The first console's #NAME links still open that VM's tail.
        await page.goto(f"{service.url}/ui/#web-1")
        await expect(page.locator("#tail-state")).to_have_text("live")
        await expect(page.locator("#lines .line")).to_have_count(10)
        assert urlsplit(page.url).fragment == "vm=web-1&live=1"
        assert errors == []


class TestVMs:
    async def test_create_and_delete_from_the_page(self, service: Service, browser: BrowserContext) -> None:
        errors: list[str] = []
        page = await open_page(browser, f"{service.url}/ui/", errors)
        await page.fill("#new-name", "made-1")
        await page.select_option("#new-size", "medium")
        await page.click("#create-form button")
        row = page.locator('#vm-rows tr[data-name="made-1"]')
        await expect(row.locator(".status")).to_have_text("running")
        await expect(row).to_contain_text("medium")
        vm: dict[str, Any] = await wait_for_status(service.client, "made-1", "running")
        assert vm["size"] == "medium" and vm["provider"] == "test"

        # The same name again: the API's answer, shown.
        await page.fill("#new-name", "made-1")
        await page.click("#create-form button")
        await expect(page.locator("#vm-notice")).to_contain_text("Cannot create made-1")

        # Enrolling a machine shows its install command once.
        await page.fill("#new-name", "box-1")
        await page.select_option("#new-provider", "external")
        await page.click("#create-form button")
        await expect(page.locator("#vm-notice pre.install")).to_contain_text("bootstrap")
        await expect(page.locator('#vm-rows tr[data-name="box-1"]')).to_contain_text("external")

        # Delete asks first: dismissed, nothing happens; accepted, the VM goes.
        answers = iter([False, True])

        async def answer(dialog: Dialog) -> None:
            assert "made-1" in dialog.message
            await (dialog.accept() if next(answers) else dialog.dismiss())

        page.on("dialog", answer)
        await row.locator("button.delete").click()
        await page.wait_for_timeout(300)
        assert (await service.client.get("/vm/made-1")).json()["status"] == "running"
        await row.locator("button.delete").click()
        await expect(row).to_have_count(0, timeout=15_000)
        gone = await service.client.get("/vm/made-1")
        assert gone.status_code == 404 or gone.json()["status"] == "deleted"
        assert errors == [f"409 POST {service.url}/vm/made-1/medium"]
