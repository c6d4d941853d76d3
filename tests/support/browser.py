"""The console in a real headless browser: Debian's chromium driven by Playwright (never a
downloaded browser), plus helpers to read what the page shows."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import BrowserContext, Page, Response, async_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BOOT = "0f5e3c4b8a6d4e2f9b1c7d8e6f5a4b3c"


@asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[BrowserContext]:
    assert Path(CHROMIUM).exists(), "chromium is missing: apt-get install chromium"
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            await context.close()


# Routes the console asks for that a service may lack: a 404 there hides a panel, as meant.
OPTIONAL_ROUTES = ("/alerts",)


def _failed(errors: list[str], response: Response) -> None:
    path = urlsplit(response.url).path
    if response.status >= 400 and not (response.status == 404 and path in OPTIONAL_ROUTES):
        errors.append(f"{response.status} {response.request.method} {response.url}")


async def open_page(context: BrowserContext, url: str, errors: list[str]) -> Page:
    """A page at ``url`` whose console errors, uncaught exceptions and failed requests land in
    ``errors`` (chromium's own "Failed to load resource" line is replaced by the request's URL)."""
    page = await context.new_page()
    page.on(
        "console",
        lambda m: (
            errors.append(m.text) if m.type == "error" and not m.text.startswith("Failed to load resource") else None
        ),
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: _failed(errors, r))
    await page.goto(url)
    return page


def entry(
    i: int,
    message: str,
    unit: str = "ssh.service",
    priority: int = 6,
    *,
    at_us: int | None = None,
    host: str = "web",
) -> dict[str, str]:
    """A journal entry as ``journalctl -o json`` gives it; by default stamped now."""
    return {
        "__CURSOR": f"s={host};i={i}",
        "__REALTIME_TIMESTAMP": str(at_us if at_us is not None else int(time.time() * 1e6) + i),
        "_BOOT_ID": BOOT,
        "_SYSTEMD_UNIT": unit,
        "PRIORITY": str(priority),
        "SYSLOG_IDENTIFIER": unit.split(".")[0],
        "_PID": "42",
        "MESSAGE": message,
        "_HOSTNAME": host,
    }


async def chart_buckets(page: Page) -> dict[str, Any]:
    """The chart as drawn: its step and, per bar, the numbers it was drawn from."""
    result: dict[str, Any] = await page.eval_on_selector(
        "#chart svg",
        """svg => ({
            step_seconds: Number(svg.dataset.stepSeconds),
            buckets: [...svg.querySelectorAll('.bucket')].map(g => ({
                start: g.dataset.start, total: Number(g.dataset.total),
                by_priority: JSON.parse(g.dataset.byPriority),
                drawn: Object.fromEntries([...g.querySelectorAll('.seg')].map(
                    r => [r.dataset.priority, Number(r.dataset.count)])),
            })),
        })""",
    )
    return result
