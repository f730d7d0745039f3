"""The job page says, per pipeline cache, whether it was a hit (which key, from which branch), a miss, or
saved, and the size: in Chromium on a real queen and drone. Screenshots go to /tmp/shots/."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser import browser, page  # noqa: F401  (fixtures)
from tests.cluster import Cluster
from tests.e2e.test_caches import _repo

SHOTS = Path("/tmp/shots")


async def test_the_job_page_shows_hit_miss_and_saved_with_sizes(queen: Cluster, page: Page,  # noqa: F811
                                                                tmp_path: Path) -> None:
    _, url = _repo(tmp_path / "git")
    await queen.add_drone("d1")
    await queen.request("POST", "/repos", {"name": "proj", "url": url}, expect=201)
    first = await queen.wait_job((await queen.trigger("proj"))["id"])
    second = await queen.wait_job((await queen.trigger("proj"))["id"])
    assert (first["status"], second["status"]) == ("passed", "passed")
    key = first["caches"]["0"]["key"]
    SHOTS.mkdir(exist_ok=True)

    await page.goto(f"/jobs/{first['id']}")
    row = page.locator("#job-caches li[data-cache='0']")
    await expect(row).to_have_attribute("data-restore", "miss")
    await expect(row).to_have_attribute("data-save", "saved")
    await expect(row.locator(".cache-key")).to_have_attribute("title", key)  # shown cut: pip-f6f3e49be6bac35…fcf5af
    await expect(row.locator(".cache-key")).to_have_text(f"{key[:20]}…{key[-6:]}")
    await expect(row).to_contain_text(f"miss · saved {_size(first['caches']['0']['saved_size'])}")
    await page.locator("#summary").screenshot(path=SHOTS / "cache-miss-saved.png")

    await page.goto(f"/jobs/{second['id']}")
    row = page.locator("#job-caches li[data-cache='0']")
    await expect(row).to_have_attribute("data-restore", "hit")
    await expect(row).to_contain_text(f"hit from main {_size(second['caches']['0']['size'])}")
    await expect(row).not_to_contain_text("saved")
    await page.locator("#summary").screenshot(path=SHOTS / "cache-hit.png")


def _size(n: int) -> str:
    from apiary.queen.pages import fmt_bytes
    return fmt_bytes(n)
