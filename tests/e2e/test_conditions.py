"""`when:` conditions, `[skip ci]`, concurrency groups and auto-cancel, through a real queen and drone.

Repositories are real git repositories on this machine (file:// URLs) or pipelines kept on the queen;
pushes and pull requests come as GitHub sends them (tests/e2e/test_forges.py's payloads).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.browser import browser, page  # noqa: F401  (fixtures)
from tests.cluster import Cluster
from tests.e2e.test_forges import (
    SECRET,
    add_repo,
    gh_pull_request,
    gh_push,
    github_hook,
    gitlab_hook,
    gl_push,
    jobs_of,
    queued_job,
)
from tests.gitserver import commit, git

CONDITIONS = """
parameters:
  ENV: {default: dev}
  FLAG: {default: "yes"}
stages:
  - name: always
    steps: ["echo always"]
  - name: on-main
    when: {branch: [main, release/*]}
    steps: ["echo on main"]
  - name: on-release
    when: {branch: ["release/*"]}
    steps: ["echo on release"]
  - name: after-release
    needs: [on-release]
    steps: ["echo after release"]
  - name: tags-only
    when: {event: [tag]}
    steps: ["echo tag"]
  - name: deploys-only
    when: {type: [DEPLOY, TEST_DEPLOY]}
    steps: ["echo deploy"]
  - name: prod
    when: {expression: "ENV == 'prod' && (FLAG != 'no' || ENV == 'x')"}
    steps: ["echo prod"]
  - name: steps
    steps:
      - echo first
      - run: echo never
        when: {not_branch: [main]}
      - echo last
"""


def local_repo(root: Path, files: dict[str, str | None]) -> tuple[Path, Path, str]:
    """A bare repository with one commit of `files` on main: (working copy, bare, the commit)."""
    work = root / "work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    sha = commit(work, files, "first")
    bare = root / "app.git"
    git(root, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", str(bare), "main")
    return work, bare, sha


def push(work: Path, bare: Path, files: dict[str, str | None], message: str) -> str:
    sha = commit(work, files, message)
    git(work, "push", "-q", str(bare), "main")
    return sha


def push_ref(work: Path, bare: Path, files: dict[str, str | None], message: str, ref: str) -> str:
    sha = commit(work, files, message)
    git(work, "push", "-q", "-f", str(bare), f"HEAD:{ref}")
    return sha


def by_name(outcome: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in outcome["stages"]}


async def test_when_runs_and_skips_stages_and_steps_saying_why(queen: Cluster, tmp_path: Path) -> None:
    _, bare, _ = local_repo(tmp_path / "git", {".apiary.yml": CONDITIONS})
    await queen.add_drone("d1")
    await queen.request("POST", "/repos", {"name": "app", "url": bare.as_uri()}, expect=201)
    job = await queen.trigger("app", parameters={"ENV": "prod"})
    done = await queen.wait_job(job["id"])
    assert done["status"] == "passed", done.get("error")
    stages = by_name(await queen.get(f"/jobs/{job['id']}/outcome"))
    assert {name: s["status"] for name, s in stages.items()} == {
        "always": "passed", "on-main": "passed", "on-release": "skipped", "after-release": "passed",
        "tags-only": "skipped", "deploys-only": "skipped", "prod": "passed", "steps": "passed"}
    assert stages["on-release"]["reason"] == "when.branch: branch main matches none of release/*"
    assert stages["tags-only"]["reason"] == "when.event: a manual job, not tag"
    assert stages["deploys-only"]["reason"] == "when.type: a TEST job, not DEPLOY or TEST_DEPLOY"
    steps = stages["steps"]["commands"]
    assert [(c["title"], c["status"]) for c in steps] == [
        ("echo first", "passed"), ("echo last", "passed"), ("echo never", "skipped")]
    assert steps[2]["reason"] == "when.not_branch: branch main matches main"
    # Every verdict is on the job, the ones that ran too.
    verdicts = {(d["stage"], d["step"]): (d["run"], d["reason"]) for d in done["conditions"]}
    assert verdicts[("prod", None)] == (True, "when.expression: ENV == 'prod' && (FLAG != 'no' || ENV == 'x') is true")
    commands = [c["command"] for c in done["commands"]]
    assert "echo never" not in commands and "echo on release" not in commands

    # Another branch, another parameter: the same pipeline decides otherwise.
    work = tmp_path / "git" / "work"
    git(work, "checkout", "-q", "-b", "release/1")
    commit(work, {"notes.txt": "1\n"}, "release")
    git(work, "push", "-q", str(bare), "release/1")
    job = await queen.trigger("app", branch="release/1", type="TEST_DEPLOY")
    done = await queen.wait_job(job["id"])
    assert done["status"] == "passed", done.get("error")
    stages = by_name(await queen.get(f"/jobs/{job['id']}/outcome"))
    assert stages["on-release"]["status"] == "passed" and stages["deploys-only"]["status"] == "passed"
    assert stages["prod"]["reason"] == "when.expression: ENV == 'prod' && (FLAG != 'no' || ENV == 'x') is false"
    assert [c["status"] for c in stages["steps"]["commands"]] == ["passed", "passed", "passed"]


SHOTS = Path("/tmp/shots")
CHANGED = """
stages:
  - name: migrate
    when: {changed: ["migrations/**"]}
    steps: ["ls migrations"]
  - name: test
    steps: ["true"]
"""


async def test_changed_paths_compare_with_the_last_passed_job_of_the_branch(queen: Cluster, tmp_path: Path) -> None:
    work, bare, first = local_repo(tmp_path / "git", {".apiary.yml": CHANGED, "migrations/0001.sql": "create\n"})
    await queen.add_drone("d1")
    await add_repo(queen, "github", url=bare.as_uri(), pipeline_source="repo")

    async def pushed(sha: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        job = await queued_job(queen, *await github_hook(queen, "push", gh_push(after=sha)))
        done = await queen.wait_job(job["id"])
        assert done["status"] == "passed", done.get("error")
        return done, by_name(await queen.get(f"/jobs/{job['id']}/outcome"))

    # The first job of main has nothing to compare with: everything counts as changed.
    job1, stages = await pushed(first)
    assert stages["migrate"]["status"] == "passed"
    assert job1["changes_base"] == {"commit": None, "since": "", "why": "no earlier passed job of main"}
    assert job1["conditions"][0]["reason"] == \
        "when.changed: everything counts as changed (no earlier passed job of main)"

    # A push that leaves migrations/ alone skips the stage, naming the base.
    second = push(work, bare, {"README": "docs only\n"}, "docs")
    job2, stages = await pushed(second)
    assert job2["changes_base"]["commit"] == first and job2["changes_base"]["job"] == job1["id"]
    since = f"{first[:12]} (job app#{job1['number']})"
    assert stages["migrate"]["status"] == "skipped"
    assert stages["migrate"]["reason"] == f"when.changed: nothing under migrations/** changed since {since}"
    assert stages["test"]["status"] == "passed"

    # One that adds a migration runs it; its base is the last passed job, the one just before.
    third = push(work, bare, {"migrations/0002.sql": "alter\n"}, "migrate")
    job3, stages = await pushed(third)
    assert stages["migrate"]["status"] == "passed"
    assert job3["conditions"][0]["reason"] == \
        f"when.changed: migrations/0002.sql changed since {second[:12]} (job app#{job2['number']})"

    # A failed job whose spread cell passed is no base: the cell's child job is one part of a failed run.
    cells = CHANGED + """  - {name: cells, matrix: {N: ["1", "2"], spread: true}, steps: ['[ "$N" = 1 ]']}\n"""
    fourth = push(work, bare, {".apiary.yml": cells, "migrations/0003.sql": "alter\n"}, "cells")
    job4 = await queen.wait_job((await queued_job(queen, *await github_hook(queen, "push", gh_push(after=fourth))))["id"])
    assert job4["status"] == "failed" and job4["children"][0]["status"] == "passed"  # one slot: cell 1 first
    fifth = push(work, bare, {".apiary.yml": CHANGED}, "no cells")
    job5, stages = await pushed(fifth)
    assert job5["changes_base"]["commit"] == third and job5["changes_base"]["job"] == job3["id"]
    assert stages["migrate"]["status"] == "passed"

    return job2, first


async def test_a_pull_requests_changes_are_those_since_the_head_of_its_base_branch(queen: Cluster,
                                                                                  tmp_path: Path) -> None:
    work, bare, first = local_repo(tmp_path / "git", {".apiary.yml": CHANGED, "migrations/0001.sql": "create\n"})
    git(work, "checkout", "-q", "-b", "farewell")
    docs = push_ref(work, bare, {"README": "docs\n"}, "docs", "refs/pull/7/head")
    await queen.add_drone("d1")
    await add_repo(queen, "github", url=bare.as_uri(), pipeline_source="repo")
    payload = gh_pull_request()
    payload["pull_request"]["head"]["sha"] = docs
    job = await queued_job(queen, *await github_hook(queen, "pull_request", payload))
    done = await queen.wait_job(job["id"])
    assert done["status"] == "passed", done.get("error")
    assert done["changes_base"] == {"commit": first, "since": f"{first[:12]} (the head of main)", "why": ""}
    stages = by_name(await queen.get(f"/jobs/{job['id']}/outcome"))
    assert stages["migrate"]["reason"] == \
        f"when.changed: nothing under migrations/** changed since {first[:12]} (the head of main)"

    migration = push_ref(work, bare, {"migrations/0002.sql": "alter\n"}, "migrate", "refs/pull/7/head")
    payload["pull_request"]["head"]["sha"] = migration
    payload["action"] = "synchronize"
    job = await queued_job(queen, *await github_hook(queen, "pull_request", payload))
    done = await queen.wait_job(job["id"])
    stages = by_name(await queen.get(f"/jobs/{job['id']}/outcome"))
    assert stages["migrate"]["status"] == "passed"
    assert done["conditions"][0]["reason"] == \
        f"when.changed: migrations/0002.sql changed since {first[:12]} (the head of main)"


async def test_the_job_page_shows_the_base_and_why_stages_and_steps_were_skipped(
        queen: Cluster, tmp_path: Path, page: Page) -> None:  # noqa: F811
    pipeline = CHANGED + """  - name: notes
    steps:
      - echo kept
      - run: echo only on release
        when: {branch: ["release/*"]}
"""
    work, bare, first = local_repo(tmp_path / "git", {".apiary.yml": pipeline, "migrations/0001.sql": "create\n"})
    await queen.add_drone("d1")
    await add_repo(queen, "github", url=bare.as_uri(), pipeline_source="repo")
    job1 = await queued_job(queen, *await github_hook(queen, "push", gh_push(after=first)))
    assert (await queen.wait_job(job1["id"]))["status"] == "passed"
    second = push(work, bare, {"README": "docs only\n"}, "docs")
    job2 = await queued_job(queen, *await github_hook(queen, "push", gh_push(after=second)))
    assert (await queen.wait_job(job2["id"]))["status"] == "passed"

    await page.goto(f"/jobs/{job2['id']}")
    await expect(page.locator("#job-changes-base")).to_contain_text(f"{first[:10]} (job app#{job1['number']})")
    await expect(page.locator("#job-changes-base a")).to_have_attribute("href", f"/jobs/{job1['id']}")
    migrate = page.locator('.g-stage[data-stage="migrate"]')
    await expect(migrate).to_have_attribute("data-state", "skipped")
    await expect(migrate.locator(".g-reason")).to_have_text(
        f"when.changed: nothing under migrations/** changed since {first[:12]} (job app#{job1['number']})")
    await expect(page.locator('.g-stage[data-stage="notes"] .g-when')).to_have_text(
        "step skipped: echo only on release (when.branch: branch main matches none of release/*)")
    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=SHOTS / "conditions-job.png", full_page=True)

    # A job a newer push superseded (running or queued) names it, with a link.
    await add_repo(queen, "github", name="slow", pipeline='stages: [{name: wait, steps: ["sleep 60"]}]')
    older = await queued_job(queen, *await github_hook(queen, "push", gh_push(after="1" * 40), repo="slow"))
    newer = await queued_job(queen, *await github_hook(queen, "push", gh_push(after="2" * 40), repo="slow"))
    assert (await queen.wait_job(older["id"]))["status"] == "cancelled"
    await page.goto(f"/jobs/{older['id']}")
    await expect(page.locator("#job-superseded a")).to_have_text(f"slow#{newer['number']}")
    await expect(page.locator("#summary")).to_contain_text(f"cancelled: superseded by slow#{newer['number']}")
    await page.screenshot(path=SHOTS / "conditions-superseded.png", full_page=True)
    await queen.request("POST", f"/jobs/{newer['id']}/cancel", expect=202)
    await queen.wait_job(newer["id"])


async def test_skip_ci_in_a_pushs_head_commit_starts_no_job(queen: Cluster) -> None:
    await add_repo(queen, "github")
    payload = gh_push()
    payload["head_commit"]["message"] = "Fix the docs\n\n[Skip CI]"
    status, text = await github_hook(queen, "push", payload)
    assert status == 202 and text == "ignored: the head commit's message says [skip ci]\n"
    assert await jobs_of(queen) == []
    # GitLab's push alike; a tag on such a commit is a release and still runs.
    await add_repo(queen, "gitlab", name="lab")
    payload = gl_push()
    payload["commits"][-1]["message"] = "Tidy up [CI SKIP]\n"
    status, text = await gitlab_hook(queen, "Push Hook", payload, repo="lab")
    assert status == 202 and text == "ignored: the head commit's message says [ci skip]\n"
    assert await jobs_of(queen, "lab") == []
    tag = gh_push(ref="refs/tags/v1.0")
    tag["head_commit"]["message"] = "Release [skip ci]"
    await queued_job(queen, *await github_hook(queen, "push", tag))
    # A person's trigger of the same commit is never skipped.
    job = await queen.trigger("app", trigger={"message": "[skip ci]"})
    assert job["status"] == "queued"


GROUP = """
parameters: {WAIT: {default: "0"}}
concurrency: {group: "deploy-{{ branch }}", cancel_in_progress: %s}
stages:
  - name: deploy
    steps: ["sleep $WAIT"]
"""


async def test_a_concurrency_group_runs_one_job_at_a_time(queen: Cluster) -> None:
    await queen.add_drone("d1", capacity=2)
    await queen.create_pipeline_repo("app", GROUP % "false")
    first = await queen.trigger("app", parameters={"WAIT": "3"})
    await queen.wait_job(first["id"], {"running"})
    second = await queen.trigger("app", parameters={"WAIT": "0"})
    assert second["concurrency"] == {"group": "deploy-main", "cancel_in_progress": False, "key": "app/deploy-main"}
    # A slot is free, but the group is busy: the second job waits in the queue until the first ends.
    assert (await queen.job(second["id"]))["status"] == "queued"
    one = await queen.wait_job(first["id"])
    two = await queen.wait_job(second["id"])
    assert one["status"] == two["status"] == "passed"
    assert two["started"] >= one["finished"]


async def test_another_repositorys_job_in_a_same_named_group_does_not_hold_this_ones(queen: Cluster) -> None:
    # A pipeline names any group it likes: another repository's 'deploy-main' must not keep this one's
    # deploy in the queue for its whole run (nor cancel it).
    await queen.add_drone("d1", capacity=2)
    await queen.create_pipeline_repo("other", GROUP % "true")
    await queen.create_pipeline_repo("app", GROUP % "true")
    theirs = await queen.trigger("other", parameters={"WAIT": "60"})
    await queen.wait_job(theirs["id"], {"running"})
    ours = await queen.trigger("app")
    assert ours["concurrency"]["group"] == theirs["concurrency"]["group"] == "deploy-main"
    assert (await queen.wait_job(ours["id"]))["status"] == "passed"
    assert (await queen.job(theirs["id"]))["status"] == "running"  # neither held nor cancelled by ours
    await queen.request("POST", f"/jobs/{theirs['id']}/cancel", expect=202)
    assert (await queen.wait_job(theirs["id"]))["status"] == "cancelled"


async def test_cancel_in_progress_cancels_the_older_job_naming_the_newer(queen: Cluster) -> None:
    await queen.add_drone("d1", capacity=2)
    await queen.create_pipeline_repo("app", GROUP % "true")
    first = await queen.trigger("app", parameters={"WAIT": "60"})
    await queen.wait_job(first["id"], {"running"})
    second = await queen.trigger("app")
    one = await queen.wait_job(first["id"])
    assert one["status"] == "cancelled"
    assert one["error"] == f"cancelled: superseded by app#{second['number']}"
    assert one["superseded_by"] == {"id": second["id"], "number": second["number"], "repo": "app"}
    assert (await queen.wait_job(second["id"]))["status"] == "passed"


GATED = """
concurrency: {group: "release-{{ branch }}", cancel_in_progress: true}
stages:
  - {name: build, steps: ["true"]}
  - {name: release, needs: [build], approval: {role: admin}, steps: ["true"]}
"""


async def test_a_newer_job_supersedes_an_older_one_waiting_for_approval(queen: Cluster) -> None:
    # Nobody should approve the release of an older commit once a newer one is on its way.
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", GATED)
    first = await queen.trigger("app")
    await queen.wait_job(first["id"], {"waiting"})
    second = await queen.trigger("app")
    one = await queen.wait_job(first["id"])
    assert one["status"] == "cancelled"
    assert one["error"] == f"cancelled: superseded by app#{second['number']}"
    assert (await queen.wait_job(second["id"], {"waiting"}))["status"] == "waiting"


async def test_a_newer_push_cancels_the_older_jobs_of_its_branch(queen: Cluster) -> None:
    await add_repo(queen, "github")  # no drone: the jobs wait in the queue
    older = await queued_job(queen, *await github_hook(queen, "push", gh_push(after="1" * 40)))
    other = await queued_job(queen, *await github_hook(queen, "push", gh_push(ref="refs/heads/dev", after="2" * 40)))
    tag = await queued_job(queen, *await github_hook(queen, "push", gh_push(ref="refs/tags/v1", after="3" * 40)))
    newer = await queued_job(queen, *await github_hook(queen, "push", gh_push(after="4" * 40)))
    cancelled = await queen.wait_job(older["id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"] == f"cancelled: superseded by app#{newer['number']}"
    for job in (other, tag, newer):
        assert (await queen.job(job["id"]))["status"] == "queued"
    # Its page says so.
    assert queen.http is not None
    async with queen.http.get(queen.api.removesuffix("/api/v1") + f"/jobs/{older['id']}") as resp:
        assert f"superseded by app#{newer['number']}" in await resp.text()

    # A repository that turns auto-cancel off keeps both.
    await add_repo(queen, "github", name="keep", auto_cancel=False)
    assert (await queen.get("/repos/keep"))["auto_cancel"] is False
    one = await queued_job(queen, *await github_hook(queen, "push", gh_push(after="5" * 40), repo="keep"))
    await queued_job(queen, *await github_hook(queen, "push", gh_push(after="6" * 40), repo="keep"))
    assert (await queen.job(one["id"]))["status"] == "queued"
    status, answer = await queen.request("PUT", "/repos/keep", {"pipeline": "stages: [{name: a, steps: [x]}]",
                                                                "auto_cancel": "no"})
    assert status == 400 and answer["field"] == "auto_cancel"


async def test_bad_when_and_concurrency_are_refused_naming_file_line_and_field(queen: Cluster,
                                                                                tmp_path: Path) -> None:
    bad = "stages:\n  - name: a\n    steps: [x]\n    when:\n      event: [pr]\n"
    _, bare, _ = local_repo(tmp_path / "git", {".apiary.yml": bad})
    await queen.request("POST", "/repos", {"name": "app", "url": bare.as_uri()}, expect=201)
    status, answer = await queen.request("POST", "/repos/app/jobs", {})
    assert status == 400
    assert answer["error"].startswith(".apiary.yml, line 5: stages[0].when.event[0]: must be one of push, tag, ")
    status, answer = await queen.request("POST", "/repos", {
        "name": "stored", "pipeline": "concurrency:\n  group: 'x-{{ sha }}'\nstages: [{name: a, steps: [x]}]\n"})
    assert status == 400 and answer["error"].startswith("pipeline, line 2: concurrency.group: unknown {{ sha }}")
    assert await jobs_of(queen) == []
    assert SECRET


async def test_auto_cancel_is_a_repository_setting_on_the_settings_page_and_in_the_cli(
        queen: Cluster, page: Page, tmp_path: Path) -> None:  # noqa: F811
    from tests.e2e.test_client import apiary, url

    await queen.create_pipeline_repo("app", "stages: [{name: t, steps: [make]}]")
    assert (await queen.get("/repos/app"))["auto_cancel"] is True
    await page.goto("/repos/app/settings")
    box = page.locator("#r-auto-cancel")
    await expect(box).to_be_checked()
    await box.uncheck()
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#saved")).to_be_visible()
    assert (await queen.get("/repos/app"))["auto_cancel"] is False
    await page.reload()
    await expect(page.locator("#r-auto-cancel")).not_to_be_checked()
    await page.locator('[data-field="deploy_tags"]').scroll_into_view_if_needed()
    await page.screenshot(path=SHOTS / "conditions-settings.png")
    shown = await apiary(tmp_path, "repo", "show", "app", *url(queen))
    assert re.search(r"^auto-cancel: +off$", shown.out, re.MULTILINE), shown.out


def test_apiary_run_decides_when_as_the_queen_would_for_a_manual_job(tmp_path: Path) -> None:
    import subprocess
    import sys

    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / ".apiary.yml").write_text("""
stages:
  - name: on-main
    when: {branch: [main], event: [manual], changed: ["src/**"]}
    steps: ["echo main ran"]
  - name: on-release
    when: {branch: ["release/*"]}
    steps: ["echo release ran"]
""")
    done = subprocess.run([sys.executable, "-m", "apiary.cli", "run", str(work)], capture_output=True, text=True,
                          cwd=work, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "main ran" in out and "release ran" not in out
    assert "stage on-release skipped: when.branch: branch main matches none of release/*" in out
