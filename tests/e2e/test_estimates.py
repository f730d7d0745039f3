"""Estimates with a real queen, drone and store: after a few passed jobs, `apiary ls`, the API's job list and
the dashboard say how long a running job has left and when a queued one starts (apiary.queen.estimate)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser import browser, page  # noqa: F401  (fixtures)
from tests.cluster import Cluster
from tests.e2e.test_client import apiary, url

PIPELINE = "parameters: {NAP: {default: '2'}}\nstages: [{name: s, steps: [\"sleep $NAP\"]}]"
SHOTS = Path("/tmp/shots")


async def test_ls_the_api_and_the_dashboard_show_a_running_and_a_queued_jobs_estimate(
        queen: Cluster, tmp_path: Path, page: Page) -> None:
    await queen.add_drone("d1", capacity=2)
    await queen.create_pipeline_repo("app", PIPELINE)
    passed = await asyncio.gather(*[queen.wait_job((await queen.trigger("app"))["id"]) for _ in range(2)])
    assert [j["status"] for j in passed] == ["passed", "passed"]
    durations = sorted(j["duration"] for j in passed)

    # Both slots taken by long jobs, and one queued behind them.
    running = [await queen.trigger("app", parameters={"NAP": "60"}) for _ in range(2)]
    for job in running:
        await queen.wait_for(lambda job=job: queen.job(job["id"]), lambda j: j["status"] == "running", "running")
    queued = await queen.trigger("app")

    listed = {j["id"]: j for j in (await queen.get("/jobs"))["jobs"]}
    est = listed[running[0]["id"]]["estimate"]
    assert est["based_on"] == 2 and est["basis"] == "branch" and abs(est["expected_s"] - sum(durations) / 2) < 0.01
    waiting = listed[queued["id"]]
    assert waiting["status"] == "queued"
    print(f"queued: {waiting['estimate']}, running: {est}, earlier durations {durations}")
    assert waiting["estimate"]["expected_s"] == est["expected_s"] and waiting["estimate"]["ahead"] == 0
    assert 0 <= waiting["estimate"]["starts_in_s"] <= est["expected_s"]
    assert "estimate" not in listed[passed[0]["id"]]

    said = await apiary(tmp_path, "ls", *url(queen))
    print(said.out)
    assert said.code == 0 and "EXPECTED" in said.out.splitlines()[0]
    rows = {line.split()[0]: line for line in said.out.splitlines()[1:]}
    assert re.search(r"(about \d+ s|a few seconds) left|taking longer than usual", rows[running[0]["id"]])
    assert re.search(r"takes (about \d+ s|a few seconds), starts in (about \d+ s|a few seconds)",
                     rows[queued["id"]]), rows[queued["id"]]

    await page.goto("/")
    row = page.locator(f'tr[data-job="{queued["id"]}"] .estimate')
    await expect(row).to_contain_text("starts in")
    # The page says it as `apiary ls` does (apiary.queen.estimate.said), also once its script ticks.
    words = re.compile(r"^((about \d+ (s|min)|a few seconds) left|taking longer than usual)$")
    await expect(page.locator(f'tr[data-job="{running[0]["id"]}"] .estimate')).to_have_text(words)
    await page.wait_for_timeout(1500)  # a tick of the page's clock
    await expect(page.locator(f'tr[data-job="{running[0]["id"]}"] .estimate')).to_have_text(words)
    SHOTS.mkdir(exist_ok=True)
    await page.locator("#jobs").screenshot(path=SHOTS / "estimates-dashboard.png")
    await page.goto(f"/jobs/{queued['id']}")
    await expect(page.locator("#job-estimate")).to_contain_text("starts in")
    await page.locator("#summary").screenshot(path=SHOTS / "estimates-queued-job.png")
    for job in [*running, queued]:
        await queen.request("POST", f"/jobs/{job['id']}/cancel", expect=202)


async def test_a_child_jobs_estimate_comes_from_child_jobs_a_jobs_from_jobs(queen: Cluster) -> None:
    """Spread cells' child jobs run one cell: their durations are not their job's (which waits for them all),
    nor the other way round (apiary.core.branchjobs); and many cells do not push a repository's jobs out of
    the passes an estimate reads."""
    await queen.add_drone("d1", capacity=3)
    await queen.create_pipeline_repo("cells", "parameters: {NAP: {default: '0.2'}}\n"
                                              "stages: [{name: s, matrix: {N: [CELLS], spread: true}, "
                                              "steps: ['sleep $NAP']}]".replace("CELLS", ", ".join(
                                                  f"'{i}'" for i in range(1, 23))))
    first = await queen.wait_job((await queen.trigger("cells"))["id"], timeout=60)
    assert first["status"] == "passed"
    cell = {c["unit"]: (await queen.job(c["job"]))["duration"] for c in first["children"]}

    slow = await queen.trigger("cells", parameters={"NAP": "60"})
    parent = await queen.wait_for(lambda: queen.job(slow["id"]), lambda j: len(j.get("children") or []) == 22,
                                  "the child jobs")
    child = parent["children"][-1]  # the newest cell (queued behind 3): among the last 20 passed child jobs
    queued = await queen.trigger("cells")  # behind the slow job's cells
    listed = {j["id"]: j for j in (await queen.get("/jobs?limit=100"))["jobs"]}
    est, job_est = listed[child["job"]]["estimate"], listed[queued["id"]]["estimate"]
    print(f"child's estimate {est}; the cell's earlier run {cell[child['unit']]} s; queued job's {job_est}, "
          f"the earlier job {first['duration']} s")
    assert est["based_on"] == 1 and abs(est["expected_s"] - cell[child["unit"]]) < 0.01  # the same cell's
    # The earlier job, though its 22 cells passed after it (more than the passes an estimate reads).
    assert listed[queued["id"]]["status"] == "queued"
    assert job_est["based_on"] == 1 and abs(job_est["expected_s"] - first["duration"]) < 0.01
    for job in (slow, queued):
        await queen.request("POST", f"/jobs/{job['id']}/cancel", expect=202)
