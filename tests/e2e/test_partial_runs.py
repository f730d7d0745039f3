"""Partial runs (apiary.core.partial): re-running a failed job from its failed stage, through the API,
the CLI and the job page, with a real queen, drone and store."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser import browser, page, shot  # noqa: F401  (fixtures)
from tests.cluster import Cluster
from tests.e2e.test_client import apiary, url
from tests.e2e.test_job_page_live import repo_with_a_drone

PIPELINE = """
artifacts: ["out/*"]
stages:
  - {{name: build, steps: ["mkdir -p out && echo built-{marker} > out/app.txt", "echo build ran"]}}
  - {{name: lint, steps: ["echo lint ran"]}}
  - {{name: test, needs: [build], steps: ["cat out/app.txt", "test -f {marker}/fixed"]}}
  - {{name: ship, needs: [test], steps: ["echo shipping $(cat out/app.txt)"]}}
"""


async def _failed_job(queen: Cluster, tmp_path: Path, repo: str) -> dict:
    marker = tmp_path / "marker"
    marker.mkdir(exist_ok=True)
    await queen.create_pipeline_repo(repo, PIPELINE.format(marker=marker))
    job = await queen.wait_job((await queen.trigger(repo))["id"])
    assert job["status"] == "failed"
    (marker / "fixed").write_text("")  # the cause is gone: the test stage passes from now on
    return job


def _stages(outcome: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in outcome["stages"]}


async def test_a_failed_job_reruns_from_its_failed_stage_reusing_what_passed(queen: Cluster, tmp_path: Path) -> None:
    await queen.add_drone("d1")
    old = await _failed_job(queen, tmp_path, "partial")
    status, refused = await queen.request("POST", f"/jobs/{old['id']}/rerun", {"from_failed": "yes"})
    assert status == 400 and refused["field"] == "from_failed"

    status, new = await queen.request("POST", f"/jobs/{old['id']}/rerun", {"from_failed": True}, expect=201)
    assert new["rerun_of"] == old["id"]
    assert set(new["resume"]["stages"]) == {"build", "lint"}
    job = await queen.wait_job(new["id"])
    assert job["status"] == "passed", job.get("error")

    ran = {c["command"] for c in job["commands"]}
    assert not any("build ran" in c or "lint ran" in c or "built-" in c for c in ran)  # not run again
    events = await queen.events(job["id"])
    printed = "".join(e.get("text", "") for e in events if e["type"] == "job:cmd:stdout")
    assert f"built-{tmp_path / 'marker'}" in printed  # the test stage saw build's artifact, restored
    outcome = await queen.get(f"/jobs/{job['id']}/outcome")
    assert _stages(outcome) == {"build": "reused", "lint": "reused", "test": "passed", "ship": "passed"}
    build = next(s for s in outcome["stages"] if s["name"] == "build")
    assert build["reused_from"] == {"job": old["id"], "number": old["number"]}
    # The new job's artifacts are complete again: the restored file is collected with the rest.
    assert [a["name"] for a in (await queen.get(f"/jobs/{job['id']}/artifacts"))["artifacts"]] == ["out/app.txt"]


async def test_a_rerun_from_the_failed_stage_is_refused_saying_why(queen: Cluster, tmp_path: Path) -> None:
    await queen.add_drone("d1")
    old = await _failed_job(queen, tmp_path, "refusals")
    # A passed job has no failed stage.
    passed = await queen.wait_job((await queen.trigger("refusals"))["id"])
    assert passed["status"] == "passed"
    status, body = await queen.request("POST", f"/jobs/{passed['id']}/rerun", {"from_failed": True})
    assert status == 409 and "only a failed job" in body["error"]
    # The queen's stored pipeline changed since: what passed may not be what it would run now.
    await queen.request("PUT", "/repos/refusals", {"name": "refusals", "pipeline_source": "queen",
                                                   "pipeline": "stages: [{name: build, steps: [\"true\"]}]"},
                        expect=200)
    status, body = await queen.request("POST", f"/jobs/{old['id']}/rerun", {"from_failed": True})
    assert status == 409 and "the pipeline changed" in body["error"]
    jobs = (await queen.get("/repos/refusals/jobs"))["jobs"]
    assert len(jobs) == 2  # nothing was made


async def test_apiary_rerun_from_failed(queen: Cluster, tmp_path: Path) -> None:
    await queen.add_drone("d1")
    old = await _failed_job(queen, tmp_path, "cli")
    done = await apiary(tmp_path, "rerun", "--from-failed", "--follow", f"cli#{old['number']}", *url(queen))
    assert done.code == 0, done
    assert "stage build reused: passed in job #1" in done.out + done.err
    newest = (await queen.get("/repos/cli/jobs"))["jobs"][0]
    assert newest["status"] == "passed" and newest["resume"]["from_job"] == old["id"]
    passed = await apiary(tmp_path, "rerun", "--from-failed", f"cli#{newest['number']}", *url(queen))
    assert passed.code != 0 and "only a failed job can be re-run from its failed stage" in passed.err, passed


async def test_the_job_page_reruns_a_failed_job_from_its_failed_stage(queen: Cluster, tmp_path: Path,
                                                                     page: Page) -> None:
    await queen.add_drone("d1")
    old = await _failed_job(queen, tmp_path, "web")
    await page.goto(f"/jobs/{old['id']}")
    button = page.locator("#rerun-failed")
    await expect(button).to_be_visible()
    await shot(page, "partial-failed-job")
    await button.click()
    await page.wait_for_url(re.compile(r"/jobs/(?!" + old["id"] + r")\w+$"))
    new_id = page.url.rsplit("/", 1)[1]
    job = await queen.wait_job(new_id)
    assert job["status"] == "passed" and job["resume"]["from_job"] == old["id"]
    await expect(page.locator("#job")).to_have_attribute("data-status", "passed")
    build = page.locator('.g-stage[data-stage="build"]')
    await expect(build).to_have_attribute("data-state", "reused")
    await expect(build.locator("a.g-reused")).to_have_attribute("href", f"/jobs/{old['id']}")
    await expect(page.locator('.g-stage[data-stage="ship"]')).to_have_attribute("data-state", "passed")
    await expect(page.locator("#rerun-failed")).to_be_hidden()  # a passed job has no failed stage
    await shot(page, "partial-rerun-job")
    await build.locator("a.g-reused").click()
    await page.wait_for_url(re.compile(old["id"] + "$"))


async def test_a_pipeline_read_from_the_repository_reruns_from_its_failed_stage_at_the_same_commit(
        queen: Cluster, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    marker.mkdir()
    await repo_with_a_drone(queen, tmp_path, PIPELINE.format(marker=marker))
    old = await queen.wait_job((await queen.trigger("proj"))["id"])
    assert old["status"] == "failed" and old["ref"]["id"]
    (marker / "fixed").write_text("")
    _, new = await queen.request("POST", f"/jobs/{old['id']}/rerun", {"from_failed": True}, expect=201)
    job = await queen.wait_job(new["id"])
    assert job["status"] == "passed", job.get("error")
    assert job["ref"]["id"] == old["ref"]["id"]  # the same commit, checked out again, the artifact put back in it
    assert not any("build ran" in c["command"] for c in job["commands"])
    outcome = await queen.get(f"/jobs/{job['id']}/outcome")
    assert _stages(outcome) == {"build": "reused", "lint": "reused", "test": "passed", "ship": "passed"}


async def test_in_the_sandbox_the_restored_artifacts_are_the_jobs_own(queen: Cluster) -> None:
    await queen.add_drone("d1", env={"APIARY_DRONE_SANDBOX": "auto", "APIARY_DRONE_JOB_USER": "nobody"})
    await queen.create_pipeline_repo("boxed", """
artifacts: ["out/**"]
stages:
  - {name: build, steps: ["mkdir -p out/deep && echo built > out/deep/app.txt"]}
  - {name: test, needs: [build], steps: ["test $APIARY_JOB_NUMBER -ge 2", "grep -q built out/deep/app.txt",
                                         "echo tested > out/deep/app.txt && touch out/deep/new"]}
""")
    old = await queen.wait_job((await queen.trigger("boxed"))["id"])
    assert old["status"] == "failed"
    _, new = await queen.request("POST", f"/jobs/{old['id']}/rerun", {"from_failed": True}, expect=201)
    job = await queen.wait_job(new["id"])
    assert job["status"] == "passed", job.get("error")  # the job's user wrote into the restored folder and file
    assert queen.http is not None
    async with queen.http.get(queen.api + f"/jobs/{job['id']}/artifacts/out/deep/app.txt") as resp:
        assert await resp.read() == b"tested\n"


async def test_a_rerun_whose_reused_job_is_gone_is_refused_and_a_shards_list_comes_from_the_nearest_job(
        shared_store: str) -> None:
    """Over the real store (jobs pruned before retention kept what re-runs reuse): a re-run from the failed
    stage of a job whose reused stage's job is gone is refused up front (409) rather than made to fail; a
    re-run of a re-run takes the failed shard's list from the job re-run's own shard job, though the job
    whose listing it reused is gone."""
    import ulid
    from cryptography.fernet import Fernet

    from apiary.core.errors import Conflict
    from apiary.queen.resume import from_failed
    from apiary.queen.sealing import Sealer
    from apiary.queen.shards import SHARD_FILE, Sharder
    from apiary.queen.store import Store

    store = await Store.connect(shared_store, f"partial-{ulid.ULID()}", Sealer(Fernet.generate_key()))
    try:
        old = {"_id": "R1", "number": 207, "status": "failed", "children": [
            {"unit": "test (shard 1 of 2)", "job": "K208", "number": 208, "status": "failed"}],
            "shard_plans": [{"stage": "test", "count": 2, "shards": [{"index": 1}, {"index": 2}]}],
            "resume": {"from_job": "P204", "stages": {
                "test · list": {"status": "passed", "job": "P204", "number": 204},
                "test (shard 2 of 2)": {"status": "passed", "job": "K205", "number": 205}}}}
        for doc in (old, {"_id": "K208", "number": 208, "status": "failed", "parent": {"id": "R1"},
                          "resume": {"given": [{"name": SHARD_FILE, "text": "tests/a.py\ntests/b.py\n"}]}}):
            await store.jobs.insert_one(doc)
        try:
            await from_failed(store, old, {"stages": []})
            raise AssertionError("a re-run reusing a job that is gone was made")
        except Conflict as refused:
            assert "was reused from job #204, which is gone (pruned): re-run the whole job" in str(refused), refused
        again = {"_id": "R2", "status": "waiting", "resume": {"from_job": "R1", "stages": old["resume"]["stages"]}}
        shard = {"name": "test (shard 1 of 2)", "remote": {"kind": "shard", "unit": "test (shard 1 of 2)"},
                 "shards": {"of": "test", "index": 1, "count": 2}}
        kept, made = await Sharder(store)._again(again, "test", [shard])
        assert kept["stage"] == "test" and made[0]["files"][0]["text"] == "tests/a.py\ntests/b.py\n", made
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
