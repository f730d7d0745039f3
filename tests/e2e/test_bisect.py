"""Bisect across drones on a real repository: a queen, two drones, git history made here with a known
breaking commit among 12 (and one commit whose pipeline does not validate, skipped). The CLI finds it
and prints it; the API refuses what cannot be bisected, naming the field; the failed job's page starts
one with its button and the bisect's page shows its progress and its answer."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser import browser, page, shot  # noqa: F401  (fixtures)
from tests.cluster import Cluster, _env
from tests.gitserver import commit, git

PIPELINE = """stages:
  - name: build
    steps: ["true"]
  - name: test
    steps: ["sleep {pause}", "test ! -f broken"]
"""
BROKEN_AT = 7  # the commit (counted from 1 after good) that adds the file the test stage refuses
# A commit whose pipeline does not validate: with two free slots the first round splits the 12 commits
# at the 4th and the 8th, so it is tried (and skipped) whatever the jobs' timing.
UNBUILDABLE = 4


def make_history(root: Path, pause: float = 0.2) -> tuple[Path, str, list[str]]:
    """A bare repository: a good commit, then 12 commits on main, the 7th adds `broken`, the 4th's pipeline
    does not validate (fixed in the 5th). (bare, good, the 12 commits oldest first)."""
    work = root / "work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    pipeline = PIPELINE.format(pause=pause)
    good = commit(work, {".apiary.yml": pipeline, "app.txt": "0\n"}, "a good start")
    shas = []
    for i in range(1, 13):
        files: dict[str, str | None] = {"app.txt": f"{i}\n"}
        if i == BROKEN_AT:
            files["broken"] = "yes\n"
        if i == UNBUILDABLE:
            files[".apiary.yml"] = "stages: [oops\n"
        if i == UNBUILDABLE + 1:
            files[".apiary.yml"] = pipeline
        message = "Refactor the parser\n\nIt reads the file twice now." if i == BROKEN_AT else f"change {i}"
        shas.append(commit(work, files, message))
    bare = root / "project.git"
    git(root, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", str(bare), "main:refs/heads/main")
    return bare, good, shas


async def cli(cluster: Cluster, *args: str, timeout: float = 120.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "apiary.cli", *args, "--url", cluster.api, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=_env())
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode()


async def test_the_cli_finds_the_commit_that_broke_the_pipeline_on_two_drones(queen: Cluster, tmp_path: Path) -> None:
    bare, good, shas = make_history(tmp_path / "git")
    await queen.add_drone("d1")
    await queen.add_drone("d2")
    await queen.request("POST", "/repos", {"name": "proj", "url": str(bare)}, expect=201)

    # What cannot be bisected is refused, naming the field, and starts nothing.
    status, body = await queen.request("POST", "/repos/proj/bisects", {"good": shas[5], "bad": shas[2]})
    assert (status, body["field"]) == (400, "good") and "not an ancestor" in body["error"], body
    status, body = await queen.request("POST", "/repos/proj/bisects", {"good": good, "bad": "zz"})
    assert (status, body["field"]) == (400, "bad"), body
    status, body = await queen.request("POST", "/repos/proj/bisects", {"good": good, "bad": shas[-1], "stage": 5})
    assert (status, body["field"]) == (400, "stage"), body
    status, body = await queen.request("POST", "/repos/proj/bisects", {"good": good, "bad": shas[-1], "stage": "lint"})
    assert (status, body["field"]) == (400, "stage") and "its stages: build, test" in body["error"], body
    await queen.request("POST", "/repos", {"name": "gone", "url": str(tmp_path / "nowhere.git")}, expect=201)
    status, body = await queen.request("POST", "/repos/gone/bisects", {"good": good, "bad": shas[-1]})
    assert (status, body["field"]) == (400, "url") and "nowhere.git" in body["error"], body
    assert (await queen.get("/repos/proj/bisects"))["bisects"] == []

    # Bad means the stage test failed (the page's bisect below: the job failed).
    code, out = await cli(queen, "bisect", "proj", "--good", good[:10], "--bad", shas[-1], "--stage", "test")
    assert code == 0, out
    first_bad = shas[BROKEN_AT - 1]
    assert f"first bad commit: {first_bad}" in out, out
    assert "Refactor the parser" in out and "author: Ada Tester <ada@example.com>" in out, out
    assert "cannot be built" in out, out  # the commit whose pipeline does not validate was skipped

    found = (await queen.get("/repos/proj/bisects"))["bisects"][0]
    assert found["status"] == "found" and found["commits"] == 12 and found["stage"] == "test"
    answer = found["result"]["first_bad"]
    assert answer["commit"] == first_bad and answer["job"], found
    job = await queen.job(answer["job"])
    assert job["status"] == "failed" and job["ref"]["id"] == first_bad
    assert job["triggered_by"] == {"kind": "bisect", "name": "#1", "bisect": found["id"]}
    verdicts = {t["commit"]: t["verdict"] for t in found["tries"]}
    assert verdicts[first_bad] == "bad" and verdicts.get(shas[BROKEN_AT - 2]) == "good", found["tries"]
    assert all(v == ("bad" if shas.index(c) >= BROKEN_AT - 1 else "good") for c, v in verdicts.items()
               if v != "skip"), found["tries"]
    rounds = found["rounds"]
    print(f"bisect of 12 commits on 2 drones: {len(found['tries'])} tries in {rounds} rounds")
    assert f"in {rounds} rounds" in out


async def test_a_failed_jobs_page_starts_a_bisect_whose_page_shows_progress_and_the_answer(
        queen: Cluster, page: Page, tmp_path: Path) -> None:  # noqa: F811  (the fixture)
    bare, good, shas = make_history(tmp_path / "git", pause=1.0)
    await queen.add_drone("d1", capacity=2)
    await queen.request("POST", "/repos", {"name": "proj", "url": str(bare)}, expect=201)
    passed = await queen.wait_job((await queen.trigger("proj", branch="main", commit=good))["id"])
    failed = await queen.wait_job((await queen.trigger("proj", branch="main", commit=shas[-1]))["id"])
    assert (passed["status"], failed["status"]) == ("passed", "failed")

    await page.goto(f"/jobs/{failed['id']}")
    await page.get_by_role("button", name="Find the commit that broke this").click()
    await page.wait_for_url("**/bisects/*")
    await expect(page.locator("#bisect-progress")).to_contain_text("left to search")
    await shot(page, "bisect-running")
    first = page.locator("#first-bad")
    await expect(first).to_contain_text("Refactor the parser", timeout=90_000)
    await expect(first).to_contain_text(shas[BROKEN_AT - 1][:12])
    await expect(page.locator("#bisect-status")).to_have_text("found")
    await expect(page.locator("#bisect-tries tr[data-verdict=skip]")).to_have_count(1)
    await expect(page.get_by_role("button", name="Cancel")).to_be_disabled()
    await first.get_by_role("link").click()
    await page.wait_for_url("**/jobs/*")
    await expect(page.locator("#job-commit")).to_contain_text(shas[BROKEN_AT - 1][:10])
    await expect(page.locator("#job-bisect")).to_have_text("bisect #1")  # its page links its bisect
    await page.go_back()
    await shot(page, "bisect-found")
    await page.goto("/repos/proj")  # the repository's page links its bisects
    await page.get_by_role("link", name="Bisects").click()
    await expect(page.locator("#bisects tbody tr")).to_have_count(1)
    await expect(page.locator("#bisects")).to_contain_text("Refactor the parser")
    await shot(page, "bisect-list")


async def test_a_bisect_goes_on_after_a_queen_restart_one_runs_at_a_time_and_cancel_stops_it(
        queen: Cluster, tmp_path: Path) -> None:
    bare, good, shas = make_history(tmp_path / "git", pause=1.5)
    await queen.add_drone("d1", capacity=2)
    await queen.request("POST", "/repos", {"name": "proj", "url": bare.as_uri()}, expect=201)
    first = (await queen.request("POST", "/repos/proj/bisects", {"good": good, "bad": shas[-1]}, expect=201))[1]
    assert first["status"] == "running" and any(t["verdict"] is None for t in first["tries"]), first
    status, body = await queen.request("POST", "/repos/proj/bisects", {"good": good, "bad": shas[-1]})
    assert (status, body["field"]) == (409, "repo") and "running already" in body["error"], body

    # The queen stops while the first round's jobs run; the one that starts again takes the bisect up.
    await queen.queen.stop()  # type: ignore[union-attr]
    await queen.start_queen()
    done = await queen.wait_for(lambda: queen.get(f"/bisects/{first['id']}"), lambda b: b["status"] != "running",
                                "the bisect to end after the restart", timeout=90)
    assert done["status"] == "found" and done["result"]["first_bad"]["commit"] == shas[BROKEN_AT - 1], done
    assert "taken up again" in queen.queen.stderr.read_text()  # type: ignore[union-attr]

    second = (await queen.request("POST", "/repos/proj/bisects", {"good": good, "bad": shas[-1]}, expect=201))[1]
    running = [t["job"] for t in second["tries"] if t["verdict"] is None]
    assert running, second
    cancelled = (await queen.request("POST", f"/bisects/{second['id']}/cancel", {}, expect=200))[1]
    assert cancelled["status"] == "cancelled"
    for job_id in running:
        assert (await queen.wait_job(job_id))["status"] == "cancelled"
    assert (await queen.request("POST", f"/bisects/{second['id']}/cancel", {}))[0] == 409
    assert (await queen.request("GET", "/bisects/nosuchbisect"))[0] == 404
