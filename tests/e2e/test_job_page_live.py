"""The job page follows the work and finds text in every line, in Chromium on a real queen and drone.

The job checks out a real local git repository (file://). The layout of the steps is the same whether
the page was open before the job started, opened while it ran, or after it ended: the checkout is one
closed line, finished commands are closed (a failed one open), the running one is open with its tail
in view, a command that printed nothing is a row without a box. Screenshots go to /tmp/shots/.
"""

from __future__ import annotations

import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser import base_url, browser, page  # noqa: F401  (fixtures)
from tests.cluster import Cluster, Proc, _env, output_lines
from tests.gitserver import commit, git

SHOTS = Path("/tmp/shots")

PIPELINE = """\
stages:
  - name: build
    steps:
      - "true"
      - echo built the app
  - name: test
    steps:
      - 'for i in $(seq 1 120); do echo "test line $i"; sleep 0.2; done'
"""

# Needles at lines 6000, 12000 and 18000 of 20,000, and one in an earlier command.
SEARCH_PIPELINE = """\
stages:
  - name: early
    steps:
      - echo a Needle in an early command
  - name: big
    steps:
      - awk 'BEGIN { for (i = 1; i <= 20000; i++) if (i % 6000 == 0) print "row " i " needle here"; else print "row " i }'
"""


def local_repo(root: Path, pipeline: str) -> str:
    """A bare git repository holding `pipeline` as .apiary.yml on main; its file:// URL."""
    work = root / "work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    commit(work, {".apiary.yml": pipeline, "README": "a project\n"}, "first")
    bare = root / "project.git"
    git(root, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", str(bare), "main")
    return bare.as_uri()


async def repo_with_a_drone(queen: Cluster, tmp_path: Path, pipeline: str) -> None:
    """A drone, and the repository `proj`: a local git repository holding `pipeline`."""
    url = local_repo(tmp_path / "git", pipeline)
    await queen.add_drone("d1")
    await queen.request("POST", "/repos", {"name": "proj", "url": url}, expect=201)


async def shot(page: Page, name: str) -> None:
    """What the reader sees (the viewport, not the whole page)."""
    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=SHOTS / f"{name}.png")


@pytest.fixture
async def pages(browser: Browser, queen: Cluster) -> AsyncIterator[Any]:  # noqa: F811
    """More pages on the queen (each its own context, as another reader); script errors fail the test."""
    contexts, errors = [], []

    async def new() -> Page:
        context = await browser.new_context(base_url=base_url(queen), viewport={"width": 1280, "height": 860})
        context.set_default_timeout(15_000)
        contexts.append(context)
        p = await context.new_page()
        p.on("pageerror", lambda error: errors.append(error))
        return p

    try:
        yield new
    finally:
        for context in contexts:
            await context.close()
    assert not errors, f"script errors on the page: {errors}"


LAYOUT_JS = """() => Array.from(document.querySelectorAll('#steps details')).map(d => [
  d.id || d.className, d.dataset.state || '', d.open, d.classList.contains('quiet'),
  !!d.querySelector(':scope > .body > .log:not([hidden])')])"""


async def layout(page: Page) -> list[Any]:
    """Each section of the steps: (id or class, state, open, quiet, has a shown log box)."""
    return await page.evaluate(LAYOUT_JS)


async def running_cmd(page: Page) -> Any:
    return page.locator("details.cmd[data-state=running]").last


async def check_live_layout(page: Page) -> None:
    """The checkout one closed line; finished commands closed; `true` a row; the running command open, in view."""
    checkout = page.locator("#steps > details.phase.checkout")
    await expect(checkout).to_have_count(1)
    await expect(checkout.locator("> summary")).to_contain_text(re.compile(r"checkout\s*passed\s*\d+ commands · "))
    assert not await checkout.evaluate("d => d.open")
    await expect(page.locator("#steps > details.phase", has_text="Environment")).to_have_count(0)
    quiet = page.locator("details.cmd", has=page.locator("summary .title", has_text=re.compile("^true$")))
    await expect(quiet).to_have_class(re.compile(r"\bquiet\b"))
    await expect(quiet.locator(".log")).to_be_hidden()
    await expect(quiet.locator("summary")).to_contain_text("no output")
    built = page.locator("details.cmd", has=page.locator("summary .title", has_text="echo built the app"))
    await expect(built).to_have_attribute("data-state", "passed")
    assert not await built.evaluate("d => d.open")
    assert not await page.evaluate("Array.from(document.querySelectorAll('details.cmd[data-state=passed]')).some(d => d.open)")
    run = await running_cmd(page)
    assert await run.evaluate("d => d.open")
    await expect(run.locator(".log")).to_be_in_viewport()
    await expect(run.locator(".log .ln").last).to_be_in_viewport()


async def test_the_page_follows_the_running_command_the_same_whenever_it_is_opened(
        queen: Cluster, page: Page, pages: Any, tmp_path: Path) -> None:
    await repo_with_a_drone(queen, tmp_path, PIPELINE)

    # Open before the job exists: the repository's page, then Trigger.
    await page.goto("/repos/proj")
    await page.get_by_role("button", name="Trigger a job").click()
    await page.wait_for_url(re.compile(r"/jobs/\w+$"))
    job_id = page.url.rsplit("/", 1)[1]
    run = await running_cmd(page)
    await expect(run.locator(".log")).to_contain_text("test line 5", timeout=30_000)
    await check_live_layout(page)
    await expect(run.locator(".log")).to_contain_text("test line 35", timeout=30_000)  # its box is full
    await check_live_layout(page)
    await shot(page, "1-live-following")
    assert await page.evaluate("window.scrollY") > 0  # the running command was below the fold: followed
    await expect(page.locator("#follow")).to_be_hidden()

    # The reader scrolls up: the page stays there while lines come; a button resumes the following.
    await page.mouse.move(640, 400)
    await page.mouse.wheel(0, -3000)
    await expect(page.locator("#follow")).to_be_visible()
    y = await page.evaluate("window.scrollY")
    seen = len(await run.locator(".log .ln").all_inner_texts())
    await expect(run.locator(".log")).to_contain_text(f"test line {seen + 8}", timeout=20_000)
    assert await page.evaluate("window.scrollY") == y
    await expect(run.locator(".log .ln").last).not_to_be_in_viewport()
    await shot(page, "2-scrolled-up")
    # Scrolled back down to the running command's end: the page follows again (no button needed).
    await page.mouse.wheel(0, 100_000)
    await expect(page.locator("#follow")).to_be_hidden()
    seen = len(await run.locator(".log .ln").all_inner_texts())
    await expect(run.locator(".log")).to_contain_text(f"test line {seen + 5}", timeout=20_000)
    await expect(run.locator(".log .ln").last).to_be_in_viewport()
    # Up again, and the button resumes it as well.
    await page.mouse.wheel(0, -3000)
    await expect(page.locator("#follow")).to_be_visible()
    await page.locator("#follow").click()
    await expect(page.locator("#follow")).to_be_hidden()
    await expect(run.locator(".log .ln").last).to_be_in_viewport()
    # In the command's own box: scrolled up stops the following, back down to its end resumes it.
    await run.locator(".log").hover()
    await page.mouse.wheel(0, -200)
    await expect(page.locator("#follow")).to_be_visible()
    await page.mouse.wheel(0, 5000)
    await expect(page.locator("#follow")).to_be_hidden()
    seen = len(await run.locator(".log .ln").all_inner_texts())
    await expect(run.locator(".log")).to_contain_text(f"test line {seen + 5}", timeout=20_000)
    await expect(run.locator(".log .ln").last).to_be_in_viewport()

    # Opened while the job runs: the same layout, following.
    mid = await pages()
    await mid.goto(f"/jobs/{job_id}")
    await expect((await running_cmd(mid)).locator(".log")).to_contain_text("test line", timeout=20_000)
    await check_live_layout(mid)
    assert await layout(mid) == await layout(page)
    await shot(mid, "3-opened-mid-job")

    assert (await queen.wait_job(job_id))["status"] == "passed"
    await expect(page.locator("#job-status")).to_have_text("passed", timeout=20_000)
    await expect(mid.locator("#job-status")).to_have_text("passed", timeout=20_000)
    await expect(page.locator("#follow")).to_be_hidden()
    # Opened after the end: the same layout as the pages that watched it; nothing open, no empty box.
    after = await pages()
    await after.goto(f"/jobs/{job_id}")
    await expect(after.locator("details.cmd")).to_have_count(await page.locator("details.cmd").count())
    await expect(after.locator("details.cmd[data-state=passed]")).to_have_count(await page.locator("details.cmd").count())
    final = await layout(after)
    assert final == await layout(page) == await layout(mid)
    assert not any(opened for (name, _, opened, _, _) in final if name.startswith("cmd-"))
    await expect(after.locator("#steps > details.phase.checkout > summary")).to_contain_text(re.compile(r"\d+ commands"))
    await shot(after, "4-opened-after-the-end")
    await shot(page, "4b-watched-to-the-end")

    # #cmd-N opens that command and brings it into view, as the page loads and when the address changes.
    cmds = await queen.commands(job_id)
    test_num = next(c["num"] for c in cmds if c.get("stage") == "test")
    built_num = next(c["num"] for c in cmds if c.get("title") == "echo built the app")
    linked = await pages()
    await linked.set_viewport_size({"width": 1280, "height": 600})
    await linked.goto(f"/jobs/{job_id}#cmd-{test_num}")
    target = linked.locator(f"#cmd-{test_num}")
    await expect(target).to_have_attribute("open", "")
    await expect(target.locator("summary")).to_be_in_viewport()
    await expect(target.locator("summary")).to_be_focused()
    await shot(linked, "5-hash-cmd")
    await linked.evaluate(f"location.hash = '#cmd-{built_num}'")
    await expect(linked.locator(f"#cmd-{built_num}")).to_have_attribute("open", "")
    await expect(linked.locator(f"#cmd-{built_num} .log")).to_be_in_viewport()
    # A line: the command opens at it, the line highlighted.
    await linked.evaluate(f"location.hash = '#cmd-{test_num}-L60'")
    line = target.locator('.ln[data-n="60"]')
    await expect(line).to_have_class(re.compile(r"\bhl\b"))
    await expect(line).to_have_text("test line 60")
    await expect(linked.locator(f"#cmd-{built_num}")).to_have_attribute("open", "")  # opened by the reader
    await expect(line).to_be_in_viewport()
    await shot(linked, "6-hash-line")


async def test_search_finds_lines_not_drawn_in_closed_commands_and_jumps_to_them(
        queen: Cluster, page: Page, tmp_path: Path) -> None:
    await repo_with_a_drone(queen, tmp_path, SEARCH_PIPELINE)
    job = await queen.wait_job((await queen.trigger("proj"))["id"])
    assert job["status"] == "passed"
    assert queen.http is not None
    async with queen.http.get(f"{base_url(queen)}/jobs/{job['id']}/log") as resp:
        raw = await resp.text()
    expected = sum(line.lower().count("needle") for line in raw.splitlines())
    assert expected == 4  # the echo's line, and three of the 20,000

    await page.goto(f"/jobs/{job['id']}")
    await expect(page.locator("details.cmd")).to_have_count(len(job["commands"]))
    big = page.locator("details.cmd", has=page.locator("summary .title", has_text="awk"))
    assert not await big.evaluate("d => d.open")  # passed: closed
    assert await page.locator('.ln[data-n="12000"]').count() == 0  # not drawn: the browser's find misses it

    search = page.get_by_role("searchbox", name="Search the output")
    count = page.locator("#log-count")
    await search.fill("needle")
    await expect(count).to_have_text(f"1 of {expected}")
    early = page.locator("details.cmd", has=page.locator("summary .title", has_text="echo a Needle"))
    await expect(early).to_have_attribute("open", "")
    await expect(early.locator("mark.hit.now")).to_have_text("Needle")

    await search.press("Enter")
    await expect(count).to_have_text(f"2 of {expected}")
    await expect(big).to_have_attribute("open", "")
    now = big.locator("mark.hit.now")
    await expect(now).to_have_text("needle")
    await expect(big.locator('.ln[data-n="6000"] mark.hit.now')).to_be_in_viewport()
    await search.press("Enter")
    await expect(count).to_have_text(f"3 of {expected}")
    hit = big.locator('.ln[data-n="12000"]')
    await expect(hit).to_have_text("row 12000 needle here")
    await expect(hit.locator("mark.hit.now")).to_be_in_viewport()
    await shot(page, "7-search-3-of-4")
    await search.press("Enter")
    await search.press("Enter")
    await expect(count).to_have_text(f"1 of {expected}")  # round again
    await search.press("Shift+Enter")
    await expect(count).to_have_text(f"4 of {expected}")
    await expect(big.locator('.ln[data-n="18000"] mark.hit.now')).to_be_in_viewport()
    await page.get_by_role("button", name="Previous match (Shift+Enter)").click()
    await expect(count).to_have_text(f"3 of {expected}")

    await search.fill("no such text anywhere")
    await expect(count).to_have_text("No matches")
    # Ctrl+F in the log goes to this search; elsewhere it is the browser's.
    await search.fill("")
    await big.locator(".log").click()
    await page.keyboard.press("Control+f")
    await expect(search).to_be_focused()
    await page.keyboard.type("row 19999")
    await expect(count).to_have_text("1 of 1")
    await expect(big.locator('.ln[data-n="19999"]')).to_be_in_viewport()
    await shot(page, "8-search-ctrl-f")


FAILING = """\
stages:
  - name: build
    steps: ["echo compiling"]
  - name: test
    steps:
      - 'for i in $(seq 1 300); do echo "check $i"; done; echo "assertion failed: 2 != 3" >&2; exit 3'
  - name: never
    steps: ["echo not reached"]
"""


async def test_a_failed_command_stays_open_and_the_failure_summary_links_to_it(
        queen: Cluster, page: Page, tmp_path: Path) -> None:
    await repo_with_a_drone(queen, tmp_path, FAILING)
    job = await queen.wait_job((await queen.trigger("proj"))["id"])
    assert job["status"] == "failed"
    bad = next(c for c in job["commands"] if c.get("stage") == "test")

    await page.goto(f"/jobs/{job['id']}")
    failed = page.locator(f"#cmd-{bad['num']}")
    await expect(failed).to_have_attribute("data-state", "failed")
    await expect(failed).to_have_attribute("open", "")
    await expect(failed.locator(".log")).to_contain_text("assertion failed: 2 != 3")  # opened at its tail
    assert not await page.locator("#steps > details.phase.checkout").evaluate("d => d.open")
    compiled = page.locator("details.cmd", has=page.locator("summary .title", has_text="echo compiling"))
    assert not await compiled.evaluate("d => d.open")

    # The failure summary (at the top) links to the command; the same link again goes there again.
    link = page.locator("#outcome a[href^='#cmd-']").first
    await expect(link).to_have_attribute("href", f"#cmd-{bad['num']}")
    for _ in range(2):
        await page.evaluate("window.scrollTo(0, 0)")
        await expect(failed.locator("summary")).not_to_be_in_viewport()
        await link.click()
        await expect(failed.locator("summary")).to_be_in_viewport()
    await shot(page, "9-failed-linked")

    # A line's number links to the line: the address names it, the line is highlighted.
    line = failed.locator(".ln").last
    n = await line.get_attribute("data-n")
    box = await line.bounding_box()
    assert box is not None
    await page.mouse.click(box["x"] + 6, box["y"] + box["height"] / 2)
    assert await page.evaluate("location.hash") == f"#cmd-{bad['num']}-L{n}"
    await expect(failed.locator(f'.ln[data-n="{n}"]')).to_have_class(re.compile(r"\bhl\b"))


async def test_a_failed_checkout_opens_and_a_cancelled_command_is_not_failed(
        queen: Cluster, page: Page, tmp_path: Path) -> None:
    await queen.add_drone("d1")
    url = local_repo(tmp_path / "git", FAILING)
    # Stored on the queen: the branch is only looked for by the drone's checkout, which fails.
    await queen.create_pipeline_repo("proj", FAILING, url=url)
    job = await queen.wait_job((await queen.trigger("proj", branch="vanished"))["id"])
    assert job["status"] == "failed"
    await page.goto(f"/jobs/{job['id']}")
    checkout = page.locator("#steps > details.phase.checkout")
    await expect(checkout).to_have_attribute("data-state", "failed")
    await expect(page.locator("#job-status")).to_have_text("failed")
    await expect(page.get_by_role("button", name="Cancel")).to_be_disabled()
    await expect(checkout).to_have_attribute("open", "")
    failed = checkout.locator("details.cmd[data-state=failed]")
    await expect(failed).to_have_count(1)
    await expect(failed).to_have_attribute("open", "")
    await expect(failed.locator(".log")).to_contain_text("vanished")
    await expect(checkout.locator("details.cmd[data-state=passed][open]")).to_have_count(0)
    await shot(page, "10-checkout-failed")

    await queen.create_repo("slow", ("wait", ["echo started; sleep 60"]))
    slow = await queen.trigger("slow")
    await page.goto(f"/jobs/{slow['id']}")
    await expect(page.locator(".cmd .log")).to_contain_text("started")
    await queen.request("POST", f"/jobs/{slow['id']}/cancel", expect=202)
    await expect(page.locator("#job-status")).to_have_text("cancelled", timeout=20_000)
    cmd = page.locator(".cmd")
    await expect(cmd).to_have_attribute("data-state", "cancelled")
    await expect(cmd.locator("summary .code")).to_have_text(re.compile(r"^cancelled \(signal \d+\)$"))
    await expect(cmd).to_have_attribute("open", "")
    await expect(page.locator(".stage > summary .meta")).not_to_contain_text("failed")
    await expect(page.locator("#follow")).to_be_hidden()
    await expect(page.locator("details.phase")).to_have_attribute("data-state", "cancelled")
    await page.reload()  # opened after: the same
    await expect(page.locator("details.phase")).to_have_attribute("data-state", "cancelled")
    await expect(cmd).to_have_attribute("data-state", "cancelled")
    await expect(cmd).to_have_attribute("open", "")
    await shot(page, "11-cancelled")
    await page.set_viewport_size({"width": 390, "height": 800})
    await page.locator("#log-q").scroll_into_view_if_needed()
    await shot(page, "12-cancelled-narrow")


# First attempt: says so and hangs; any later one: says so and ends (a file tells them apart, see test_faults).
ONCE = 'if [ -e {flag} ]; then echo "second attempt"; else touch {flag}; echo "first attempt"; sleep 60; fi'


async def check_attempts(page: Page) -> None:
    """Attempt 2's commands are the job's; attempt 1 is one closed line, apart, that opens to its output."""
    current = page.locator("#steps > details.phase details.cmd")
    await expect(current).to_have_count(2)
    await expect(page.locator("#steps > details.phase details.cmd[data-state=passed]")).to_have_count(2)
    await expect(page.locator("#steps > details.phase details.stage > summary .meta")).to_have_text("2 commands")
    await current.first.locator("> summary").click()  # its output is attempt 2's
    await expect(current.first.locator(".log")).to_have_text("second attempt")
    await current.first.locator("> summary").click()
    earlier = page.locator("#steps details.attempt")
    await expect(earlier).to_have_count(1)
    assert not await earlier.evaluate("d => d.open")
    await expect(earlier.locator("> summary")).to_contain_text(re.compile(r"Attempt 1 on drone doomed: .*was lost"))
    await expect(earlier.locator("> summary")).to_contain_text("show its output")


async def test_a_job_run_twice_shows_its_last_attempt_and_the_first_apart(
        queen: Cluster, page: Page, pages: Any, tmp_path: Path) -> None:
    doomed = await queen.add_drone("doomed")
    once = ONCE.format(flag=tmp_path / "flag")
    await queen.create_pipeline_repo("app", f"stages: [{{name: s, steps: [{once!r}, 'echo after it']}}]")
    job = await queen.trigger("app")
    await page.goto(f"/jobs/{job['id']}")
    await expect(page.locator("details.cmd .log")).to_contain_text("first attempt", timeout=30_000)
    await doomed.stop(signal.SIGKILL)
    # Back in the queue: attempt 1 is over (apart), nothing runs, the page says what it waits for.
    await expect(page.locator("#steps-empty")).to_have_text("Waiting for a drone to run the job again…", timeout=20_000)
    await expect(page.locator("#steps details.attempt")).to_have_count(1)
    await expect(page.locator("details.cmd[data-state=running]")).to_have_count(0)
    await expect(page.locator("#follow")).to_be_hidden()
    await expect(page.locator("#summary .facts")).to_have_attribute("data-status", "queued")
    await shot(page, "13a-attempt-1-lost-waiting")
    await queen.add_drone("spare")
    done = await queen.wait_job(job["id"], timeout=60)
    assert (done["status"], done["attempts"]) == ("passed", 2)

    # Watched live: attempt 1's command moved apart when attempt 2 started.
    await expect(page.locator("#job-status")).to_have_text("passed", timeout=20_000)
    await check_attempts(page)
    await shot(page, "13-attempts-live")
    # Opened after the end: the same; opening attempt 1 shows its output and its command, lost with its drone.
    after = await pages()
    await after.goto(f"/jobs/{job['id']}")
    await expect(after.locator("#job-status")).to_have_text("passed")
    await check_attempts(after)
    earlier = after.locator("#steps details.attempt")
    await earlier.locator("> summary").click()
    await expect(earlier.locator("> summary")).to_contain_text("hide its output")
    lost = earlier.locator("details.cmd")
    await expect(lost).to_have_count(1)
    await expect(lost.locator("summary .code")).to_have_text("lost with its drone")
    await lost.locator("> summary").click()
    await expect(lost.locator(".log")).to_contain_text("first attempt")
    await shot(after, "14-attempts-reloaded-first-opened")
    # Search finds attempt 1's line too, and opens it there.
    await after.locator("#steps details.attempt > summary").click()
    await after.get_by_role("searchbox", name="Search the output").fill("first attempt")
    await expect(after.locator("#log-count")).to_have_text("1 of 1")
    await expect(earlier).to_have_attribute("open", "")
    await expect(earlier.locator("mark.hit.now")).to_be_in_viewport()


SANDBOXED = {"APIARY_DRONE_SANDBOX": "auto", "APIARY_DRONE_JOB_USER": "nobody"}  # as in test_sandbox
WIDE = """\
stages:
  - name: wide
    steps:
      - awk 'BEGIN { s = "x"; while (length(s) < 300000) s = s s; print substr(s, 1, 300000) "TAILMARK" }'
  - name: many
    steps:
      - awk 'BEGIN { s = ""; for (j = 0; j < 100; j++) s = s " qz"; for (i = 1; i <= 2000; i++) print "L" i s }'
  - name: crash
    steps:
      - kill -SEGV $$
"""


async def test_search_reaches_a_far_right_match_and_the_last_of_200000_and_a_signal_is_named(
        queen: Cluster, page: Page, tmp_path: Path) -> None:
    await queen.create_pipeline_repo("wide", WIDE)
    job = await queen.trigger("wide")
    # No output yet (no drone): no search box.
    await page.goto(f"/jobs/{job['id']}")
    await expect(page.locator("#steps-empty")).to_be_visible()
    await expect(page.locator("#log-search")).to_be_hidden()
    await shot(page, "15-no-output-no-search")
    await queen.add_drone("d1", env=SANDBOXED)  # as drones run by default: a signal comes back as exit 128+N
    assert (await queen.wait_job(job["id"]))["status"] == "failed"
    await expect(page.locator("#job-status")).to_have_text("failed", timeout=20_000)
    search = page.get_by_role("searchbox", name="Search the output")
    await expect(search).to_be_visible()
    count = page.locator("#log-count")

    # The match ends a line of 300,000 characters: the log box scrolls right to it.
    await search.fill("tailmark")
    await expect(count).to_have_text("1 of 1")
    wide = page.locator("details.cmd:has(mark.hit.now)")
    await expect(wide.locator("mark.hit.now")).to_be_in_viewport()
    assert await wide.locator(".log").evaluate("b => b.scrollLeft") > 100_000
    await shot(page, "16-search-far-right")

    # 200,000 matches, all counted; previous from the first is the very last one.
    await search.fill("qz")
    await expect(count).to_have_text("1 of 200000")
    await search.press("Shift+Enter")
    await expect(count).to_have_text("200000 of 200000")
    last = page.locator('.ln[data-n="2000"]')
    await expect(last.locator("mark.hit.now")).to_be_in_viewport()
    assert await last.evaluate("l => Array.from(l.querySelectorAll('mark.hit')).pop().classList.contains('now')")
    await shot(page, "17-search-last-of-200000")
    await search.press("Shift+Enter")
    await expect(count).to_have_text("199999 of 200000")
    await search.press("Enter")
    await search.press("Enter")
    await expect(count).to_have_text("1 of 200000")
    await expect(page.locator('.ln[data-n="1"] mark.hit.now')).to_be_in_viewport()

    # Killed by a signal in the sandbox: exit 128+N, the signal named.
    crash = page.locator("details.cmd", has=page.locator("summary .title", has_text="kill -SEGV"))
    await expect(crash).to_have_attribute("data-state", "failed")
    await expect(crash.locator("summary .code")).to_have_text("exit 139 (SIGSEGV)")
    await crash.scroll_into_view_if_needed()
    await shot(page, "18-exit-139-sigsegv")


async def test_a_job_run_again_after_apiary_up_restarted_shows_attempt_2_and_attempt_1_apart(
        browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    """The newcomer's case: Ctrl-C on apiary up mid-job, then up again. Attempt 1's command was stopped by
    its drone (exit 143 in the sandbox, or a signal) and its drone said the job was cancelled; attempt 2 passed."""
    data, work, flag = tmp_path / "data", tmp_path / "work", tmp_path / "flag"
    args = ["up", "--data-dir", str(data), "--http-port", "0", "--drone-bind", "tcp://127.0.0.1:*", "--work-dir", str(work)]
    up = Proc("up", args, tmp_path / "logs", _env())
    await up.start()
    cluster = Cluster(tmp_path / "client")
    cluster.http = aiohttp.ClientSession()
    context = None
    try:
        cluster.api = (await up.wait_output(r"API:\s+(\S+)")).group(1)
        port = cluster.api.rsplit(":", 1)[1].split("/")[0]
        once = ONCE.format(flag=flag)
        await cluster.create_pipeline_repo("app", f"stages: [{{name: s, steps: [{once!r}]}}]")
        job = await cluster.trigger("app")
        await cluster.wait_for(lambda: cluster.events(job["id"]),
                               lambda evs: "first attempt" in output_lines(evs, "job:cmd:stdout"), "attempt 1's line")
        assert await up.stop(signal.SIGINT) is not None  # Ctrl-C
        up.args = [*args[:4], port, *args[5:]]
        await up.start()
        await up.wait_output(r"API:\s+(\S+)")
        done = await cluster.wait_job(job["id"], timeout=60)
        assert (done["status"], done["attempts"]) == ("passed", 2), done

        context = await browser.new_context(base_url=base_url(cluster), viewport={"width": 1280, "height": 860})
        context.set_default_timeout(15_000)
        page = await context.new_page()
        errors: list[Any] = []
        page.on("pageerror", lambda error: errors.append(error))
        await page.goto(f"/jobs/{job['id']}")
        await expect(page.locator("#job-status")).to_have_text("passed")
        current = page.locator("#steps > details.phase details.cmd")
        await expect(current).to_have_count(1)
        await expect(current).to_have_attribute("data-state", "passed")
        assert not await current.evaluate("d => d.open")
        await expect(page.locator("#steps > details.phase details.stage > summary .meta")).to_have_text("1 command")
        await expect(page.locator("#steps > details.joblog")).to_have_count(0)  # attempt 1's messages are its own
        earlier = page.locator("#steps details.attempt")
        await expect(earlier).to_have_count(1)
        assert not await earlier.evaluate("d => d.open")
        await expect(earlier.locator("> summary")).to_contain_text("Attempt 1 on drone local: ")
        await earlier.locator("> summary").click()
        stopped = earlier.locator("details.cmd")
        await expect(stopped).not_to_have_attribute("data-state", "failed")
        print(f"\nattempt 1 ({done['history']['1']['reason']}): its command "
              f"{await stopped.locator('summary .code').text_content()!r}, messages "
              f"{await earlier.locator('details.joblog').count()}")
        await shot(page, "19-apiary-up-restarted-attempt-1-opened")
        assert not errors, errors
    finally:
        if context is not None:
            await context.close()
        await cluster.http.close()
        await up.stop()
