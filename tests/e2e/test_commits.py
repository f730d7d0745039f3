"""Every job records the commit it ran, whatever its pipeline's source and trigger; a re-run builds that commit.

A real queen and drone, and a real git repository served over file://. A job
triggered by branch only gets its commit from the queen when the queen read
``.apiary.yml`` at the branch, else from the drone's checkout (``job:checkout``)
before the pipeline's first step. A new push to the branch must not change
what a re-run builds.
"""

from __future__ import annotations

from pathlib import Path

from tests.cluster import Cluster, output_lines
from tests.forge import FakeForge
from tests.gitserver import commit, git

# Prints the commit the steps see checked out and the one APIARY_COMMIT names.
PIPELINE = """stages:
  - name: show
    steps: ["cat app.txt", "git rev-parse HEAD", "echo commit=$APIARY_COMMIT"]
"""
TOKEN = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"


def make_project(root: Path) -> tuple[Path, Path, str]:
    """A bare repository `project.git` with one commit on main; the work tree to push more; the commit."""
    work = root / "work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    sha = commit(work, {".apiary.yml": PIPELINE, "app.txt": "version one\n"}, "one")
    bare = root / "project.git"
    git(root, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", str(bare), "main:refs/heads/main")
    return bare, work, sha


def push(work: Path, bare: Path, text: str) -> str:
    """A new commit on main, pushed; its sha."""
    sha = commit(work, {"app.txt": text}, text.strip())
    git(work, "push", "-q", str(bare), "main:refs/heads/main")
    return sha


async def ran(cluster: Cluster, job_id: str) -> tuple[dict, list[str]]:
    """The finished job and the lines its steps printed."""
    job = await cluster.wait_job(job_id)
    events = await cluster.events(job_id)
    assert job["status"] == "passed", "".join(e.get("text", "") for e in events)
    return job, output_lines(events, "job:cmd:stdout")


async def test_a_job_of_a_pipeline_stored_on_the_queen_records_its_commit_and_reruns_it(queen: Cluster,
                                                                                         tmp_path: Path) -> None:
    bare, work, first = make_project(tmp_path / "git")
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("proj", PIPELINE, url=bare.as_uri())

    job, lines = await ran(queen, (await queen.trigger("proj", branch="main"))["id"])
    # The queen never fetched: the drone said which commit it checked out, before the pipeline's steps ran.
    assert job["ref"] == {"branch": "main", "id": first}, job["ref"]
    assert first in lines and f"commit={first}" in lines and "version one" in lines
    events = await queen.events(job["id"])
    reported = [e for e in events if e["type"] == "job:checkout"]
    assert [e["commit"] for e in reported] == [first]
    first_step = min(e["seq"] for e in events if e["type"] == "job:cmd:start" and e.get("stage") == "show")
    assert reported[0]["seq"] < first_step
    # The job page shows it.
    assert queen.http is not None
    async with queen.http.get(queen.api.removesuffix("/api/v1") + f"/parts/jobs/{job['id']}/summary") as resp:
        assert resp.status == 200 and first in await resp.text()

    second = push(work, bare, "version two\n")
    rerun, again = await ran(queen, (await queen.request("POST", f"/jobs/{job['id']}/rerun", {}, expect=201))[1]["id"])
    assert rerun["ref"] == {"branch": "main", "id": first} and rerun["rerun_of"] == job["id"]
    assert first in again and "version one" in again and second not in "\n".join(again)

    # A new job of the branch builds, and records, the new commit.
    latest, lines = await ran(queen, (await queen.trigger("proj", branch="main"))["id"])
    assert latest["ref"] == {"branch": "main", "id": second} and second in lines and "version two" in lines


async def test_a_job_of_a_pipeline_read_from_the_repository_records_the_commit_the_queen_read(
        queen: Cluster, tmp_path: Path) -> None:
    bare, work, first = make_project(tmp_path / "git")
    await queen.add_drone("d1")
    await queen.request("POST", "/repos", {"name": "proj", "url": bare.as_uri()}, expect=201)

    created = await queen.trigger("proj", branch="main")
    assert created["ref"] == {"branch": "main", "id": first}  # known before the job was stored
    job, lines = await ran(queen, created["id"])
    assert job["ref"] == {"branch": "main", "id": first} and first in lines
    # The drone had nothing to add: the queen's commit is the one it checked out.
    assert not [e for e in await queen.events(job["id"]) if e["type"] == "job:checkout"]

    second = push(work, bare, "version two\n")
    rerun, again = await ran(queen, (await queen.request("POST", f"/jobs/{job['id']}/rerun", {}, expect=201))[1]["id"])
    assert rerun["ref"] == {"branch": "main", "id": first}
    assert first in again and "version one" in again and second not in "\n".join(again)


async def test_a_git_folder_planted_before_the_checkout_is_not_believed(queen: Cluster, tmp_path: Path) -> None:
    # The job's on_start hook runs before the checkout and tries to make the drone read a file of its choosing
    # (outside the workspace) as .git/HEAD.
    bare, _, _ = make_project(tmp_path / "git")
    await queen.add_drone("d1")
    planted = "0123456789abcdef0123456789abcdef01234567"
    outside = tmp_path / "elsewhere"
    hook = f"mkdir -p {outside} && echo {planted} > {outside}/HEAD && ln -s {outside} .git"
    await queen.create_pipeline_repo("proj", PIPELINE + f"hooks:\n  on_start: [{hook!r}]\n", url=bare.as_uri())
    job = await queen.wait_job((await queen.trigger("proj", branch="main"))["id"])
    lines = output_lines(await queen.events(job["id"]), "job:cmd:stdout")
    assert planted not in str(job["ref"]), (job["ref"], lines)
    # git works through the link (and writes the real commit there), but the drone does not follow it: the job
    # records no commit rather than one read outside its workspace.
    assert job["ref"] == {"branch": "main"}, (job["ref"], lines)


async def test_a_repository_without_a_url_records_no_commit(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("local", PIPELINE.replace('"cat app.txt", "git rev-parse HEAD", ', ""))
    job = await queen.wait_job((await queen.trigger("local", branch="main"))["id"])
    assert job["status"] == "passed" and job["ref"] == {"branch": "main"}


async def test_commit_statuses_go_to_the_commit_a_job_triggered_by_branch_ran(queen: Cluster,
                                                                               tmp_path: Path) -> None:
    bare, _, first = make_project(tmp_path / "git")
    async with FakeForge() as forge:
        await queen.create_pipeline_repo("app", PIPELINE, url=bare.as_uri(), plugins=[{"name": "github", "config": {
            "api": f"{forge.url}/api/v3", "repository": "octo/app"}}])
        await queen.request("PUT", "/repos/app/secrets/GITHUB_TOKEN", {"value": TOKEN}, expect=200)
        await queen.add_drone("d1")
        job, _ = await ran(queen, (await queen.trigger("app", branch="main"))["id"])
        assert job["ref"]["id"] == first
        final = await queen.wait_for(lambda: _received(forge), lambda r: any(
            s.body["state"] == "success" for s in r), "the job's final commit status")
    # The final status is the recorded commit's (a "pending" one too, if the commit was known when the job
    # started: the queen learns it from the drone's checkout, which may come after).
    assert final and all(s.path == f"/api/v3/repos/octo/app/statuses/{first}" for s in final), final
    assert [s.body["state"] for s in final][-1] == "success"


async def _received(forge: FakeForge) -> list:
    return list(forge.received)
