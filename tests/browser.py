"""A Chromium page on a real queen, for the dashboard's tests (Playwright, Debian's chromium).

Import the fixtures into a test module: ``from tests.browser import browser, page``.
Everything opened here is closed after the test; `shot` keeps a screenshot in
tests/screenshots/ to look at.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from tests.cluster import Cluster

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"


def base_url(cluster: Cluster) -> str:
    """The queen's web address (its API address without /api/v1)."""
    return cluster.api.removesuffix("/api/v1")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def page(browser: Browser, queen: Cluster) -> AsyncIterator[Page]:
    """A page whose relative URLs go to the queen; a script error or a Content-Security-Policy
    violation in it fails the test."""
    context = await browser.new_context(base_url=base_url(queen), viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    page = await context.new_page()
    errors: list[Any] = []
    page.on("pageerror", lambda error: errors.append(error))
    page.on("console", lambda msg: errors.append(msg.text) if csp_violation(msg) else None)
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"script errors on the page: {errors}"


def csp_violation(msg: ConsoleMessage) -> bool:
    """Chromium reports what the Content-Security-Policy refused as a console error."""
    return msg.type == "error" and "Content Security Policy" in msg.text


async def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
