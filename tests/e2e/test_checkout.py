"""Pipelines read from the repository at the job's commit, and the drone's checkout of it.

Real git repositories served over file://, smart HTTP with a token and ssh with a key.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.cluster import Cluster, output_lines
from tests.gitserver import commit, git, http_server, ssh_server

PIPELINE = """stages:
  - name: show
    steps: ["cat app.txt", "git rev-parse HEAD"]
"""
TOKEN = "tok-3f9a7c1e2b"


def make_project(root: Path, extra_step: str | None = None) -> tuple[Path, dict[str, str]]:
    """A bare repository `project.git` under `root`: main (two commits), a pull ref, a broken branch."""
    work = root / "work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    pipeline = PIPELINE + (f"  - name: more\n    steps: [{json.dumps(extra_step)}]\n" if extra_step else "")
    shas = {"v1": commit(work, {".apiary.yml": pipeline, "app.txt": "version one\n"}, "one")}
    shas["v2"] = commit(work, {"app.txt": "version two\n"}, "two")
    git(work, "checkout", "-q", "-b", "pr")
    shas["pr"] = commit(work, {"app.txt": "pull request\n"}, "pr")
    git(work, "checkout", "-q", "-b", "broken", shas["v1"])
    shas["broken"] = commit(work, {".apiary.yml": "stages:\n  - name: x\n    steps: [a]\n    needs: [nope]\n"}, "b")
    bare = root / "project.git"
    git(root, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", str(bare), f"{shas['v2']}:refs/heads/main", "broken:refs/heads/broken",
        "pr:refs/pull/7/merge")
    return bare, shas


def stdout(events: list[dict]) -> list[str]:
    return output_lines(events, "job:cmd:stdout")


async def test_pipeline_is_read_at_the_commit_and_the_drone_checks_that_commit_out(queen: Cluster,
                                                                                    tmp_path: Path) -> None:
    bare, shas = make_project(tmp_path / "git")
    await queen.add_drone("d1", capacity=3)
    await queen.request("POST", "/repos", {"name": "proj", "url": bare.as_uri()}, expect=201)

    main = await queen.wait_job((await queen.trigger("proj", branch="main"))["id"])
    assert main["status"] == "passed", main
    assert main["ref"] == {"branch": "main", "id": shas["v2"]}
    assert "version two" in stdout(await queen.events(main["id"])) and shas["v2"] in stdout(await queen.events(main["id"]))
    checkout = [c for c in main["commands"] if c.get("stage") == "checkout"]
    assert checkout and all(c["exitCode"] == 0 for c in checkout) and checkout[0]["phase"] == "environment"

    old = await queen.wait_job((await queen.trigger("proj", commit=shas["v1"]))["id"])
    assert old["status"] == "passed" and "version one" in stdout(await queen.events(old["id"]))

    pr = await queen.wait_job((await queen.trigger("proj", fetch="refs/pull/7/merge"))["id"])
    assert pr["status"] == "passed" and pr["ref"]["id"] == shas["pr"]
    assert "pull request" in stdout(await queen.events(pr["id"]))


async def test_a_bad_ref_or_a_bad_pipeline_in_the_repository_is_refused_at_trigger(queen: Cluster,
                                                                                   tmp_path: Path) -> None:
    bare, _ = make_project(tmp_path / "git")
    await queen.request("POST", "/repos", {"name": "proj", "url": bare.as_uri()}, expect=201)

    status, answer = await queen.request("POST", "/repos/proj/jobs", {"branch": "no-such-branch"})
    assert status == 400 and answer["field"] == "ref" and "no-such-branch" in answer["error"], answer

    status, answer = await queen.request("POST", "/repos/proj/jobs", {"branch": "broken"})
    assert status == 400 and ".apiary.yml, line 4" in answer["error"] and "unknown stage 'nope'" in answer["error"]
    assert (await queen.get("/repos/proj/jobs"))["jobs"] == []


async def test_a_checkout_that_fails_fails_the_job_with_gits_message(queen: Cluster, tmp_path: Path) -> None:
    bare, _ = make_project(tmp_path / "git")
    await queen.add_drone("d1")
    # The pipeline is stored on the queen, so the ref is only met by the drone's checkout.
    await queen.create_pipeline_repo("proj", PIPELINE, url=bare.as_uri())
    job = await queen.wait_job((await queen.trigger("proj", branch="vanished"))["id"])
    assert job["status"] == "failed"
    text = "".join(e.get("text", "") for e in await queen.events(job["id"]))
    assert "vanished" in text and ("couldn't find remote ref" in text or "fatal" in text), text
    assert not [c for c in job["commands"] if c.get("stage") == "show"]


async def test_https_with_a_token_held_as_a_secret(queen: Cluster, tmp_path: Path) -> None:
    bare, shas = make_project(tmp_path / "git", extra_step="env | sort")
    await queen.add_drone("d1")
    async with http_server(bare.parent, token=TOKEN, username="oauth2") as base:
        url = f"{base}/project.git"
        await queen.request("POST", "/repos", {"name": "proj", "url": url, "auth": {
            "type": "https", "secret": "GIT_TOKEN", "username": "oauth2"}}, expect=201)
        status, answer = await queen.request("POST", "/repos/proj/jobs", {})
        assert status == 400 and answer["field"] == "auth.secret"  # the secret is not set yet

        await queen.request("PUT", "/repos/proj/secrets/GIT_TOKEN", {"value": "wrong-token"}, expect=200)
        status, answer = await queen.request("POST", "/repos/proj/jobs", {})
        assert status == 400 and answer["field"] == "ref" and "wrong-token" not in answer["error"], answer

        await queen.request("PUT", "/repos/proj/secrets/GIT_TOKEN", {"value": TOKEN}, expect=200)
        job = await queen.wait_job((await queen.trigger("proj"))["id"])
        assert job["status"] == "passed", job
        events = await queen.events(job["id"])
        assert "version two" in stdout(events) and shas["v2"] in stdout(events)
        stored = json.dumps(events) + json.dumps(job)
        header = base64.b64encode(f"oauth2:{TOKEN}".encode()).decode()
        assert TOKEN not in stored and header not in stored
        # The credentials were the checkout's alone: the steps' environment has none.
        assert "GIT_CONFIG" not in stored and "Authorization" not in "".join(stdout(events))


async def test_ssh_with_a_key_held_as_a_secret(queen: Cluster, tmp_path: Path) -> None:
    bare, shas = make_project(tmp_path / "git")
    await queen.add_drone("d1")
    async with ssh_server(tmp_path / "ssh", bare.parent) as (base, key):
        await queen.request("POST", "/repos", {"name": "proj", "url": f"{base}/project.git",
                                               "auth": {"type": "ssh", "secret": "DEPLOY_KEY"}}, expect=201)
        await queen.request("PUT", "/repos/proj/secrets/DEPLOY_KEY", {"value": key}, expect=200)
        job = await queen.wait_job((await queen.trigger("proj"))["id"])
        assert job["status"] == "passed", job
        events = await queen.events(job["id"])
        assert "version two" in stdout(events)
        assert key.splitlines()[1] not in json.dumps(events)
