"""What users of the forge plugins rely on beyond a first delivery: a delivery queues one job however often
and however fast it comes (and after the queen restarted), pull and merge requests' branches are recorded and
the history filters by them, and tags deploy only when the repository's settings ask.

A real queen in a child process; webhooks signed and sent as GitHub and GitLab send them (tests/forge.py,
payloads from tests/e2e/test_forges.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

from tests.cluster import Cluster
from tests.e2e.test_forges import (
    BEFORE,
    PASSING,
    SECRET,
    SHA,
    add_repo,
    gh_pull_request,
    gh_push,
    github_hook,
    gitlab_hook,
    gl_merge_request,
    gl_push,
    jobs_of,
    queued_job,
)
from tests.gitserver import commit, git


def answered_job(status: int, text: str, expect: int) -> str:
    """The id of the one job a webhook's answer names, once its status is `expect`."""
    assert status == expect, text
    jobs = json.loads(text)["jobs"]
    assert len(jobs) == 1 and jobs[0]["url"].endswith(f"/jobs/{jobs[0]['id']}"), text
    return str(jobs[0]["id"])


# -- one delivery, one job ---------------------------------------------------------------------------------

async def test_a_redelivered_github_push_names_its_job_and_queues_nothing_even_after_a_restart(
        queen: Cluster) -> None:
    await add_repo(queen, "github")
    delivery = str(uuid.uuid4())
    first = answered_job(*await github_hook(queen, "push", gh_push(), delivery=delivery), expect=201)
    # GitHub's "Redeliver" (or its retry after a timeout): the same delivery id, the same payload.
    assert answered_job(*await github_hook(queen, "push", gh_push(), delivery=delivery), expect=200) == first
    # The delivery id is what is recognised, not the payload.
    assert answered_job(*await github_hook(queen, "push", gh_push(after=BEFORE), delivery=delivery),
                        expect=200) == first
    # Another delivery of the same push is another job.
    second = answered_job(*await github_hook(queen, "push", gh_push()), expect=201)
    assert second != first
    assert [j["id"] for j in await jobs_of(queen)] == [second, first]

    assert queen.queen is not None
    await queen.queen.stop()
    await queen.start_queen()
    assert answered_job(*await github_hook(queen, "push", gh_push(), delivery=delivery), expect=200) == first
    assert len(await jobs_of(queen)) == 2
    assert "delivered again" in queen.queen.logs()


async def test_identical_deliveries_arriving_at_once_queue_one_job(queen: Cluster, tmp_path: Path) -> None:
    # The pipeline is read from a repository at the pushed commit: a job takes a git read to make, which
    # is when a second delivery would slip in.
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    sha = commit(work, {".apiary.yml": PASSING}, "a pipeline")
    git(tmp_path, "clone", "-q", "--bare", str(work), "app.git")
    await queen.request("POST", "/repos", {"name": "app", "url": (tmp_path / "app.git").as_uri(),
                                           "plugins": [{"name": "github"}]}, expect=201)
    await queen.request("PUT", "/repos/app/secrets/WEBHOOK_SECRET", {"value": SECRET}, expect=200)
    delivery = str(uuid.uuid4())
    answers = await asyncio.gather(*(github_hook(queen, "push", gh_push(after=sha), delivery=delivery)
                                     for _ in range(6)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 200, 200, 200, 200, 201], answers
    ids = {answered_job(status, text, status) for status, text in answers}
    assert len(ids) == 1
    assert [j["id"] for j in await jobs_of(queen)] == list(ids)
    # The repeats waited for the first rather than racing it: no job number was spent on them.
    assert [j["number"] for j in await jobs_of(queen)] == [1]
    assert (await queued_job(queen, *await github_hook(queen, "push", gh_push(after=sha))))["number"] == 2


async def test_a_refused_delivery_can_be_delivered_again_once_fixed(queen: Cluster) -> None:
    required = 'parameters: {TARGET: {required: true}}\nstages: [{name: t, steps: ["true"]}]\n'
    await add_repo(queen, "github", pipeline=required)
    delivery = str(uuid.uuid4())
    status, text = await github_hook(queen, "push", gh_push(), delivery=delivery)
    assert status == 422 and "TARGET" in text, text
    await queen.request("PUT", "/repos/app", {"pipeline": PASSING, "pipeline_source": "queen",
                                              "plugins": [{"name": "github"}]}, expect=200)
    answered_job(*await github_hook(queen, "push", gh_push(), delivery=delivery), expect=201)
    answered_job(*await github_hook(queen, "push", gh_push(), delivery=delivery), expect=200)
    assert len(await jobs_of(queen)) == 1


async def test_gitlab_deliveries_are_known_by_idempotency_key_else_event_uuid_per_repository(
        queen: Cluster) -> None:
    await add_repo(queen, "gitlab")
    await add_repo(queen, "gitlab", name="docs")
    event = str(uuid.uuid4())
    first = answered_job(*await gitlab_hook(queen, "Push Hook", gl_push(), event_uuid=event), expect=201)
    assert answered_job(*await gitlab_hook(queen, "Push Hook", gl_push(), event_uuid=event), expect=200) == first
    # One event heard by two repositories (two webhooks share its X-Gitlab-Event-UUID): a job for each.
    other = answered_job(*await gitlab_hook(queen, "Push Hook", gl_push(), repo="docs", event_uuid=event),
                         expect=201)
    assert other != first

    # GitLab 17.4 on: the Idempotency-Key stays the same when a delivery is retried.
    key = str(uuid.uuid4())
    keyed = answered_job(*await gitlab_hook(queen, "Push Hook", gl_push(), idempotency_key=key), expect=201)
    assert answered_job(*await gitlab_hook(queen, "Push Hook", gl_push(), idempotency_key=key),
                        expect=200) == keyed
    job = await queen.job(keyed)
    assert job["trigger"]["source"]["delivery"] == key
    assert [j["id"] for j in await jobs_of(queen)] == [keyed, first]
    assert [j["id"] for j in await jobs_of(queen, "docs")] == [other]


# -- pull and merge requests' branches -------------------------------------------------------------------

async def test_pull_request_jobs_record_their_branches_and_the_history_filters_by_them(queen: Cluster) -> None:
    await add_repo(queen, "github")
    push = await queued_job(queen, *await github_hook(queen, "push", gh_push()))
    pr = await queued_job(queen, *await github_hook(queen, "pull_request", gh_pull_request()))
    trigger = pr["trigger"]
    assert (trigger["head_branch"], trigger["base_branch"], trigger["fork"]) == ("farewell", "main", True)
    assert "head_branch" not in push["trigger"] and "base_branch" not in push["trigger"]

    async def history(query: str, repo: str | None = "app") -> list[str]:
        path = f"/repos/{repo}/jobs?{query}" if repo else f"/jobs?{query}"
        return [j["id"] for j in (await queen.get(path))["jobs"]]

    assert await history("branch=farewell") == [pr["id"]]  # the head branch
    assert await history("branch=main") == [pr["id"], push["id"]]  # pushed to, and the base branch
    assert await history("branch=refs/pull/7/head") == [pr["id"]]  # the fetched ref, as before
    assert await history("branch=elsewhere") == []
    assert await history("branch=farewell", repo=None) == [pr["id"]]  # every repository's jobs
    assert await history("branch=farewell&limit=1", repo=None) == [pr["id"]]

    # The repository's page offers the branch in its history filter and shows the job.
    assert queen.http is not None
    base = queen.api.removesuffix("/api/v1")
    async with queen.http.get(f"{base}/repos/app?branch=farewell") as resp:
        page = await resp.text()
        assert resp.status == 200, page
    assert '<option value="farewell" selected>' in page
    assert f"/jobs/{pr['id']}" in page and f"/jobs/{push['id']}" not in page
    # The job's page says which branch goes into which.
    async with queen.http.get(f"{base}/jobs/{pr['id']}") as resp:
        page = await resp.text()
    # (linked to the pull request on the forge)
    assert re.search(r'>pull request(</a>)? <span class="ref">farewell</span> → <span class="ref">main</span> '
                     r'<span class="muted">\(from a fork\)</span>', page), page


async def test_merge_request_jobs_record_their_branches(queen: Cluster) -> None:
    await add_repo(queen, "gitlab")
    mr = await queued_job(queen, *await gitlab_hook(queen, "Merge Request Hook", gl_merge_request()))
    trigger = mr["trigger"]
    assert (trigger["head_branch"], trigger["base_branch"], trigger["fork"]) == ("ms-viewport", "main", False)
    assert [j["id"] for j in (await queen.get("/repos/app/jobs?branch=ms-viewport"))["jobs"]] == [mr["id"]]


# -- tags ----------------------------------------------------------------------------------------------------

async def test_tags_run_test_jobs_unless_the_repository_asks_for_deploys_on_tags(queen: Cluster) -> None:
    await add_repo(queen, "github")
    assert (await queen.get("/repos/app"))["deploy_tags"] is False
    job = await queued_job(queen, *await github_hook(queen, "push", gh_push("refs/tags/v1.0")))
    assert job["type"] == "TEST" and job["trigger"]["type"] == "tag"

    await add_repo(queen, "github", name="shipped", deploy_tags=True)
    assert (await queen.get("/repos/shipped"))["deploy_tags"] is True
    job = await queued_job(queen, *await github_hook(queen, "push", gh_push("refs/tags/v1.0"), repo="shipped"))
    assert job["type"] == "TEST_DEPLOY"
    # A branch push is not a tag: the setting leaves it alone.
    job = await queued_job(queen, *await github_hook(queen, "push", gh_push(), repo="shipped"))
    assert job["type"] == "TEST"

    await add_repo(queen, "gitlab", name="lab", deploy_tags=True, config={"tag_type": "DEPLOY"})
    job = await queued_job(queen, *await gitlab_hook(queen, "Tag Push Hook", gl_push("refs/tags/v2", tag=True),
                                                     repo="lab"))
    assert job["type"] == "DEPLOY" and job["ref"] == {"fetch": "refs/tags/v2", "id": SHA}

    status, answer = await queen.request("POST", "/repos", {"name": "odd", "pipeline": PASSING,
                                                             "deploy_tags": "yes"})
    assert (status, answer["field"]) == (400, "deploy_tags") and "true or false" in answer["error"], answer
