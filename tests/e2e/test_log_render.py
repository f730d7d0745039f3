"""The job log in a real browser renders terminal output as a terminal would: colours, OSC 8 links,
and nothing of titles or other control sequences."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.browser import browser, page, shot  # noqa: F401  (fixtures)
from tests.cluster import Cluster

# Each printf a write of its own; the sleeps put the two halves of a cut sequence in two events.
STEPS = [
    (r"printf '\033]0;my window title\007\033(Bplain \033[1;32mgreen\033[0m "
     r"\033]8;;https://example.com/docs?a=1\033\\the docs\033]8;;\033\\ "
     r"\033]8;;javascript:alert(1)\007not a link\033]8;;\007 \033[31mred\033[0m\n'"),
    (r"printf '\033]8;id=x;https://exa'; sleep 0.3; printf 'mple.org/two\007first line\nsecond line'; "
     r"sleep 0.3; printf '\033]8;;\007 after\n\033]2;other'; sleep 0.3; printf ' title\033\\shown\n'"),
]


async def test_colours_links_and_no_titles_in_the_log(queen: Cluster, page: Page) -> None:
    await queen.add_drone("d1")
    await queen.create_repo("term", ("print", STEPS))
    job = await queen.trigger("term")
    assert (await queen.wait_job(job["id"]))["status"] == "passed"
    await page.goto(f"/jobs/{job['id']}")
    first = page.locator(".cmd").nth(0)
    if not await first.evaluate("d => d.open"):
        await first.locator("summary").click()
    log = first.locator(".log")
    await expect(log).to_contain_text("plain green the docs not a link red")
    text = await log.inner_text()
    assert "title" not in text and "]0;" not in text and "(B" not in text and "8;;" not in text
    await expect(log.locator(".c32.b")).to_have_text("green")  # colours as before
    await expect(log.locator(".c31")).to_have_text("red")
    link = log.locator("a")
    await expect(link).to_have_count(1)  # the javascript: target is text
    await expect(link).to_have_text("the docs")
    await expect(link).to_have_attribute("href", "https://example.com/docs?a=1")
    assert "noopener" in (await link.get_attribute("rel") or "").split()
    await shot(page, "log-terminal")

    # Sequences cut in two between events: the link goes on to the next line, the title is not shown.
    second = page.locator(".cmd").nth(1)
    await second.locator("summary").click()
    log = second.locator(".log")
    await expect(log).to_contain_text("shown")
    assert [line.strip() for line in (await log.locator(".ln").all_text_contents())] == [
        "first line", "second line after", "shown"]
    links = log.locator("a")
    await expect(links).to_have_text(["first line", "second line"])
    for i in range(2):
        await expect(links.nth(i)).to_have_attribute("href", "https://example.org/two")
    assert not await page.locator("a[href^='javascript']").count()
