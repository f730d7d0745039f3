"""A job's outcome from a real queen and drone: GET /api/v1/jobs/{id}/outcome, the job page's failure box and
stage graph (Chromium), and the failure summary `apiary trigger --follow` and `apiary logs` end with."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.browser import browser, page, shot  # noqa: F401  (fixtures)
from tests.cluster import Cluster
from tests.e2e.test_client import Command, apiary, url
from tests.e2e.test_sandbox import SANDBOXED

# build and lint run side by side; lint fails first (build still sleeps), so test (which needs lint) and
# package (which needs build, and would start only after lint failed) are skipped.
FAILING = r"""
parallel: 2
stages:
  - name: build
    steps:
      - run: echo building; sleep 1.5; echo built
        title: Build it
  - name: lint
    steps:
      - run: for i in $(seq 1 15); do echo "lint line $i"; done; printf '\033[31mE501 line too long\033[0m\n'; exit 3
        title: Run the linter
      - run: echo never
        title: Report the lint
  - name: test
    needs: [lint]
    steps: [echo testing]
  - name: package
    needs: [build]
    steps: [echo packaged]
"""

SLOW = """
stages:
  - name: prepare data
    steps: [echo ready]
  - name: wait
    needs: [prepare data]
    steps:
      - run: echo waiting; sleep 60
        title: Wait a minute
      - run: echo after
        title: After the wait
  - name: ship
    needs: [wait]
    steps: [echo ship]
"""


def by_name(outcome: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in outcome["stages"]}


def header_of(out: str, mark: str) -> str:
    """The first line starting with `mark` if it names its command, else the header it stands under."""
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(mark))
    if "[" in lines[at]:
        return lines[at]
    return next(line for line in reversed(lines[:at]) if line.startswith(("▶", "…")))


async def failed_job(queen: Cluster) -> tuple[dict[str, Any], dict[str, Any]]:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", FAILING)
    job = await queen.wait_job((await queen.trigger("app"))["id"])
    return job, await queen.get(f"/jobs/{job['id']}/outcome")


async def test_a_failed_jobs_outcome_names_the_failed_command_and_the_skipped_stages(queen: Cluster) -> None:
    job, outcome = await failed_job(queen)
    assert job["status"] == "failed" and outcome["status"] == "failed"
    stages = by_name(outcome)
    assert list(stages) == ["build", "lint", "test", "package"]
    assert {n: (s["status"], s["reason"]) for n, s in stages.items()} == {
        "build": ("passed", None), "lint": ("failed", None), "test": ("skipped", "a stage it needs failed"),
        "package": ("skipped", "an earlier stage failed")}
    # build and lint overlapped: lint started before build ended.
    assert stages["lint"]["started"] < stages["build"]["started"] + stages["build"]["duration"]
    assert stages["build"]["duration"] >= 1.5
    assert [(c["title"], c["status"]) for c in stages["lint"]["commands"]] == [
        ("Run the linter", "failed"), ("Report the lint", "not_run")]
    assert stages["test"]["needs"] == ["lint"] and stages["test"]["commands"][0]["status"] == "not_run"

    failure = outcome["failure"]
    lint = next(c for c in job["commands"] if c.get("stage") == "lint")
    assert {k: failure[k] for k in ("stage", "num", "title", "exitCode", "signal", "anchor")} == {
        "stage": "lint", "num": lint["num"], "title": "Run the linter", "exitCode": 3, "signal": None,
        "anchor": f"cmd-{lint['num']}"}
    assert failure["last_lines"] == [f"lint line {i}" for i in range(7, 16)] + [
        "\x1b[31mE501 line too long\x1b[0m"]  # as stored: the page and the terminal drop the colours


async def test_a_cancelled_command_is_cancelled_and_what_follows_did_not_run(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("slow", SLOW)
    job = (await queen.trigger("slow"))["id"]
    await queen.wait_for(lambda: queen.commands(job), lambda cs: any(c.get("stage") == "wait" for c in cs),
                         "the wait to start")
    running = by_name(await queen.get(f"/jobs/{job}/outcome"))
    assert (running["prepare data"]["status"], running["wait"]["status"], running["ship"]["status"]) == (
        "passed", "running", "waiting")
    assert running["ship"]["reason"] == "waits for wait"
    # The running stage's next step waits (it is no "not run" yet), as do the waiting stage's.
    assert [c["status"] for c in running["wait"]["commands"]] == ["running", "waiting"]
    assert [c["status"] for c in running["ship"]["commands"]] == ["waiting"]
    await queen.request("POST", f"/jobs/{job}/cancel", expect=202)
    assert (await queen.wait_job(job))["status"] == "cancelled"
    outcome = await queen.get(f"/jobs/{job}/outcome")
    stages = by_name(outcome)
    assert outcome["failure"] is None
    assert {n: (s["status"], s["reason"]) for n, s in stages.items()} == {
        "prepare data": ("passed", None), "wait": ("cancelled", None), "ship": ("not_run", "the job was cancelled")}
    wait, after = stages["wait"]["commands"]
    assert (wait["status"], wait["signal"]) == ("cancelled", "SIGTERM") and after["status"] == "not_run"


async def test_in_a_sandbox_a_cancelled_command_that_exits_143_is_cancelled(queen: Cluster) -> None:
    """A sandboxed command's SIGTERM comes back as exit 143 (its sandbox's init says a signal so), which a
    command can also exit with by itself: the drone says which it was (job:cmd:done's `stopped`)."""
    await queen.add_drone("d1", env=SANDBOXED)
    await queen.create_pipeline_repo("slow", 'stages: [{name: wait, steps: [{run: "exit 143", ignore_exit_code: true}, '
                                             '"echo waiting; sleep 60"]}]')
    job = (await queen.trigger("slow"))["id"]
    await queen.wait_for(lambda: queen.commands(job), lambda cs: len(cs) == 2, "the sleep to start")
    await queen.request("POST", f"/jobs/{job}/cancel", expect=202)
    assert (await queen.wait_job(job))["status"] == "cancelled"
    own, slept = await queen.commands(job)
    assert (own["exitCode"], own["stopped"]) == (143, False)
    assert (slept["exitCode"], slept["stopped"]) == (143, True)
    stage = by_name(await queen.get(f"/jobs/{job}/outcome"))["wait"]
    assert stage["status"] == "cancelled" and stage["commands"][1]["status"] == "cancelled"


async def test_the_outcome_of_an_unknown_job_is_a_404(queen: Cluster) -> None:
    status, body = await queen.request("GET", "/jobs/nope/outcome")
    assert status == 404 and "nope" in body["error"]


async def test_the_job_page_shows_why_it_failed_and_the_stage_graph_live(queen: Cluster, page: Page) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", FAILING)
    job = await queen.trigger("app")
    await page.goto(f"/jobs/{job['id']}")
    box = page.locator(".outcome-failure")
    # Opened while it runs: the graph is there, then the failure box arrives without a reload.
    await expect(page.locator(".g-stage[data-stage='build']")).to_be_visible()
    await expect(box).to_be_visible(timeout=20_000)
    await expect(page.locator("#job-status")).to_have_text("failed", timeout=20_000)
    cmds = await queen.commands(job["id"])
    num = next(c["num"] for c in cmds if c.get("stage") == "lint")
    await expect(box.locator("h2")).to_have_text(re.compile(r"Failed in stage lint: Run the linter,\s+exit code 3"))
    await expect(box.locator(".o-lines")).to_contain_text("lint line 15\nE501 line too long")  # no escape codes
    link = box.get_by_role("link", name=f"Show command {num} in the log")
    assert await link.get_attribute("href") == f"#cmd-{num}"
    await expect(page.locator(f".cmd[data-num='{num}']")).to_have_count(1)  # the command's box in the log

    stages = page.locator(".g-stage")
    await expect(stages).to_have_count(4)
    graph = {await s.get_attribute("data-stage"): await s.inner_text() for s in await stages.all()}
    assert "passed" in graph["build"] and "failed" in graph["lint"]
    assert "skipped" in graph["test"] and "a stage it needs failed" in graph["test"] and "after lint" in graph["test"]
    assert "skipped" in graph["package"] and "after build" in graph["package"]
    assert "1 step not run: Report the lint" in graph["lint"]
    # Columns by needs: build and lint first, test and package next.
    columns = [await c.locator(".g-stage").evaluate_all("els => els.map(e => e.dataset.stage)")
               for c in await page.locator(".g-col").all()]
    assert columns == [["build", "lint"], ["test", "package"]]
    # The summary comes before the log in the main column.
    assert await page.evaluate("document.querySelector('#outcome').compareDocumentPosition("
                               "document.querySelector('#steps')) & Node.DOCUMENT_POSITION_FOLLOWING")
    await shot(page, "job-failed-outcome")
    await link.click()
    assert page.url.endswith(f"#cmd-{num}")


async def test_follow_and_logs_end_with_the_failure_summary(queen: Cluster, tmp_path: Path) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", FAILING)
    followed = await apiary(tmp_path, "trigger", "app", "--follow", *url(queen))
    assert followed.code == 1, followed
    job_id = re.search(r"/jobs/(\w+)", followed.out).group(1)  # type: ignore[union-attr]
    num = next(c["num"] for c in await queen.commands(job_id) if c.get("stage") == "lint")
    out = followed.out
    summary = out[out.index("Job failed"):]
    assert f"Failed in stage lint: Run the linter, exit code 3 (command {num})" in summary, out
    assert "  │ lint line 15\n  │ E501 line too long\n" in summary and "\x1b" not in summary
    assert re.search(r"stages: build ✓ passed \d+\.\ds · lint ✗ failed \d+\.\ds · test ↷ skipped \(a stage it "
                     r"needs failed\) · package ↷ skipped \(an earlier stage failed\)", summary), summary
    assert f"/jobs/{job_id}#cmd-{num}" in summary
    # build and lint ran side by side: a ✓ or a line of one stage under the other's header names its stage.
    assert "[test/build]" in header_of(out, "✓") and "[test/lint]" in header_of(out, "✗"), out

    logs = await apiary(tmp_path, "logs", job_id, *url(queen))
    assert logs.code == 0 and logs.out.endswith(summary), (logs.out, summary)
    again = await (await Command(tmp_path, ("logs", job_id, "--follow", *url(queen))).start()).finish()
    assert again.code == 1 and again.out.endswith(summary)


# A command a signal kills in the sandbox: its shell says 128 + 11. Its first line is longer than a title.
CRASH = r"""
stages:
  - name: crash
    steps:
      - run: echo about to crash now; sh -c 'kill -SEGV $$' && echo "no crash happened" > /tmp/crash-report.txt
      - run: echo after
"""


async def test_a_signal_through_the_sandboxs_shell_is_named_and_a_long_command_cut_at_a_word(
        queen: Cluster, page: Page) -> None:
    await queen.add_drone("d1", env=SANDBOXED)
    await queen.create_pipeline_repo("crash", CRASH)
    job = await queen.wait_job((await queen.trigger("crash"))["id"])
    assert job["status"] == "failed"
    outcome = await queen.get(f"/jobs/{job['id']}/outcome")
    failure = outcome["failure"]
    assert (failure["exitCode"], failure["signal"], failure["shell_signal"]) == (139, None, "SIGSEGV")
    crash, after = by_name(outcome)["crash"]["commands"]
    assert (crash["shell_signal"], after["status"], after["shell_signal"]) == ("SIGSEGV", "not_run", None)
    # The title the compiler stored ends in a word ("> /tm"); the outcome's ends at one, with "…".
    stored = next(c for c in job["commands"] if c["num"] == failure["num"])["title"]
    assert stored.endswith("> /tm"), stored
    assert failure["title"] == "echo about to crash now; sh -c 'kill -SEGV $$' && echo \"no crash happened\" >…"

    await page.goto(f"/jobs/{job['id']}")
    box = page.locator(".outcome-failure")
    await expect(box.locator(".o-code")).to_have_text("exit code 139 (SIGSEGV)")
    await expect(box.locator(".o-title")).to_have_text(failure["title"])
    await shot(page, "job-failed-sigsegv")


async def test_a_job_that_ran_no_stage_says_why_in_its_outcome_and_page(queen: Cluster, page: Page) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("tests-only", "stages: [{name: test, steps: [echo testing]}]")
    job = await queen.wait_job((await queen.trigger("tests-only", type="DEPLOY"))["id"])
    assert job["status"] == "passed"
    outcome = await queen.get(f"/jobs/{job['id']}/outcome")
    assert outcome["ran_nothing"] == "the pipeline has no deploy stages for a DEPLOY job"
    await page.goto(f"/jobs/{job['id']}")
    await expect(page.locator(".outcome-empty h2")).to_have_text(
        "Passed, but this job ran no stage: the pipeline has no deploy stages for a DEPLOY job")
    await shot(page, "job-ran-nothing")

    passed = await queen.wait_job((await queen.trigger("tests-only"))["id"])
    assert (await queen.get(f"/jobs/{passed['id']}/outcome"))["ran_nothing"] is None
