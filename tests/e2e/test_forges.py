"""The github and gitlab plugins: forges' webhooks start jobs, and commit statuses go back.

A real queen (and, for statuses, a real drone) in child processes; the forge's
webhooks are sent as the forge sends them, and its API is a local HTTP server
(tests/forge.py) that records the commit statuses it is sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.parse
import uuid
from datetime import datetime
from typing import Any

from tests.cluster import Cluster
from tests.forge import FakeForge, send_hook

SECRET = "It's a Secret to Everybody"
DELIVERY = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
TOKEN = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
BEFORE = "9049f1265b7d61be4a8904a9a27120d2064dab3b"
PASSING = 'stages: [{name: test, steps: ["true"]}]'
FAILING = 'stages: [{name: test, steps: ["echo broken; exit 3"]}]'


# -- GitHub's payloads, as GitHub sends them (trimmed of fields nobody reads) -----------------------

def gh_repository() -> dict[str, Any]:
    return {"id": 1296269, "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5", "name": "app", "full_name": "octo/app",
            "private": False, "owner": {"login": "octo", "id": 583231, "type": "Organization"},
            "html_url": "https://github.com/octo/app", "clone_url": "https://github.com/octo/app.git",
            "ssh_url": "git@github.com:octo/app.git", "default_branch": "main"}


def gh_push(ref: str = "refs/heads/main", after: str = SHA, deleted: bool = False) -> dict[str, Any]:
    head = {"id": after, "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433", "distinct": True,
            "message": "Greet in French\n\nBonjour.", "timestamp": "2024-05-06T12:34:56+02:00",
            "url": f"https://github.com/octo/app/commit/{after}",
            "author": {"name": "Mona Lisa", "email": "mona@example.com", "username": "mona"},
            "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
            "added": [], "removed": [], "modified": ["greet.py"]}
    return {"ref": ref, "before": BEFORE, "after": "0" * 40 if deleted else after, "created": False,
            "deleted": deleted, "forced": False, "base_ref": None,
            "compare": f"https://github.com/octo/app/compare/{BEFORE[:12]}...{after[:12]}",
            "commits": [] if deleted else [head], "head_commit": None if deleted else head,
            "repository": gh_repository(), "pusher": {"name": "mona", "email": "mona@example.com"},
            "sender": {"login": "mona", "id": 1}}


def gh_pull_request(action: str = "opened", base: str = "main", number: int = 7) -> dict[str, Any]:
    pr = {"url": f"https://api.github.com/repos/octo/app/pulls/{number}", "id": 1, "number": number,
          "html_url": f"https://github.com/octo/app/pull/{number}", "state": "open", "title": "Add a farewell",
          "user": {"login": "hubot", "id": 2}, "body": "Says goodbye too.", "created_at": "2024-05-06T10:00:00Z",
          "updated_at": "2024-05-06T10:30:00Z", "draft": False,
          "head": {"label": "hubot:farewell", "ref": "farewell", "sha": SHA,
                   "repo": {"full_name": "hubot/app"}},
          "base": {"label": f"octo:{base}", "ref": base, "sha": BEFORE, "repo": gh_repository()}}
    return {"action": action, "number": number, "pull_request": pr, "repository": gh_repository(),
            "sender": {"login": "hubot", "id": 2}}


def gh_headers(event: str, body: bytes, secret: str | None = SECRET, delivery: str | None = None) -> dict[str, str]:
    """A GitHub delivery's headers; a delivery id of its own unless given (one id queues one job)."""
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
               "X-GitHub-Hook-ID": "292430182", "User-Agent": "GitHub-Hookshot/044aadd"}
    if secret is not None:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    return headers


async def github_hook(cluster: Cluster, event: str, payload: dict[str, Any], repo: str = "app",
                      secret: str | None = SECRET, delivery: str | None = None) -> tuple[int, str]:
    body = json.dumps(payload).encode()
    return await send_hook(cluster, "github", repo, body, gh_headers(event, body, secret, delivery))


async def add_repo(cluster: Cluster, plugin: str, name: str = "app", pipeline: str = PASSING,
                   config: dict[str, Any] | None = None, secrets: dict[str, str] | None = None,
                   **settings: Any) -> None:
    await cluster.create_pipeline_repo(name, pipeline, plugins=[{"name": plugin, "config": config or {}}],
                                       **settings)
    for key, value in {"WEBHOOK_SECRET": SECRET, **(secrets or {})}.items():
        await cluster.request("PUT", f"/repos/{name}/secrets/{key}", {"value": value}, expect=200)


async def jobs_of(cluster: Cluster, repo: str = "app") -> list[dict[str, Any]]:
    return (await cluster.get(f"/repos/{repo}/jobs"))["jobs"]


async def queued_job(cluster: Cluster, status: int, text: str) -> dict[str, Any]:
    assert status == 201, text
    answer = json.loads(text)
    assert len(answer["jobs"]) == 1 and answer["jobs"][0]["url"].endswith(f"/jobs/{answer['jobs'][0]['id']}")
    return await cluster.job(answer["jobs"][0]["id"])


# -- github ----------------------------------------------------------------------------------------------

async def test_a_signed_push_queues_a_job_with_its_trigger_filled(queen: Cluster) -> None:
    await add_repo(queen, "github")
    job = await queued_job(queen, *await github_hook(queen, "push", gh_push(), delivery=DELIVERY))
    assert job["repo"] == "app" and job["status"] == "queued" and job["type"] == "TEST"
    assert job["ref"] == {"branch": "main", "id": SHA}
    trigger = job["trigger"]
    assert trigger["type"] == "push"
    assert trigger["author"] == {"name": "Mona Lisa", "email": "mona@example.com", "username": "mona"}
    assert trigger["message"] == "Greet in French\n\nBonjour."
    assert trigger["url"] == f"https://github.com/octo/app/commit/{SHA}"
    assert trigger["timestamp"] == datetime.fromisoformat("2024-05-06T10:34:56+00:00").timestamp()
    assert trigger["source"] == {"type": "plugin", "plugin": "github", "event": "push",
                                 "delivery": DELIVERY, "repository": "octo/app"}

    # GitHub's other content type: the same JSON, form-encoded as "payload".
    body = urllib.parse.urlencode({"payload": json.dumps(gh_push(after=BEFORE))}).encode()
    headers = {**gh_headers("push", body), "Content-Type": "application/x-www-form-urlencoded"}
    job = await queued_job(queen, *await send_hook(queen, "github", "app", body, headers))
    assert job["ref"] == {"branch": "main", "id": BEFORE}


async def test_a_missing_or_wrong_signature_is_401_and_queues_nothing(queen: Cluster) -> None:
    await add_repo(queen, "github")
    status, text = await github_hook(queen, "push", gh_push(), secret=None)
    assert status == 401 and "X-Hub-Signature-256" in text, text
    status, text = await github_hook(queen, "push", gh_push(), secret="not the secret")
    assert (status, text) == (401, "unauthorized: wrong X-Hub-Signature-256\n")
    # Signed, then changed on the way: the signature no longer matches.
    body = json.dumps(gh_push()).encode()
    headers = gh_headers("push", body)
    status, _ = await send_hook(queen, "github", "app", body.replace(b"main", b"prod"), headers)
    assert status == 401
    assert await jobs_of(queen) == []
    assert queen.queen is not None
    await queen.wait_for(lambda: _logs(queen), lambda logs: logs.count("webhook from") >= 3, "the refusals logged")

    # No secret on the queen to check against: 401 naming the secret to set.
    await queen.request("DELETE", "/repos/app/secrets/WEBHOOK_SECRET", expect=200)
    status, text = await github_hook(queen, "push", gh_push())
    assert status == 401 and "no secret WEBHOOK_SECRET" in text, text
    assert await jobs_of(queen) == []


async def _logs(cluster: Cluster) -> str:
    assert cluster.queen is not None
    return cluster.queen.logs()


async def test_what_starts_no_job_is_answered_plainly(queen: Cluster) -> None:
    await add_repo(queen, "github", branches={"include": ["main", "release/*"], "exclude": ["release/old"]})
    await queen.create_pipeline_repo("plain", PASSING)
    assert await github_hook(queen, "push", gh_push(), repo="ghost") == (202, "ignored: no repository named ghost\n")
    assert await github_hook(queen, "push", gh_push(), repo="plain") == (
        202, "ignored: repository plain does not use the github plugin\n")
    assert await github_hook(queen, "push", gh_push("refs/heads/release/old")) == (
        202, "ignored: branch release/old is left out by the repository's branch filters\n")
    status, text = await github_hook(queen, "push", gh_push("refs/heads/wip"))
    assert status == 202 and "branch wip" in text
    status, text = await github_hook(queen, "push", gh_push(deleted=True))
    assert (status, text) == (202, "ignored: refs/heads/main was deleted\n")
    status, text = await github_hook(queen, "pull_request", gh_pull_request("closed"))
    assert (status, text) == (202, "ignored: pull request action closed\n")
    status, text = await github_hook(queen, "pull_request", gh_pull_request(base="feature"))
    assert status == 202 and "branch feature is left out" in text
    status, text = await github_hook(queen, "issues", {"action": "opened", "repository": gh_repository()})
    assert (status, text) == (202, "ignored: issues events start no jobs\n")
    assert await github_hook(queen, "ping", {"zen": "Keep it logically awesome.", "hook_id": 1}) == (200, "pong\n")
    assert await jobs_of(queen) == []
    # A branch the filters let in still triggers.
    job = await queued_job(queen, *await github_hook(queen, "push", gh_push("refs/heads/release/2.0")))
    assert job["ref"]["branch"] == "release/2.0"


async def test_pull_requests_and_tags_queue_jobs_of_their_refs(queen: Cluster) -> None:
    await add_repo(queen, "github", config={"pull_request_type": "TEST", "tag_type": "DEPLOY"}, deploy_tags=True)
    job = await queued_job(queen, *await github_hook(queen, "pull_request", gh_pull_request("opened")))
    assert job["ref"] == {"fetch": "refs/pull/7/head", "id": SHA}
    trigger = job["trigger"]
    assert trigger["type"] == "pull_request" and trigger["message"] == "Add a farewell"
    assert trigger["author"] == {"username": "hubot"} and trigger["url"] == "https://github.com/octo/app/pull/7"
    assert trigger["timestamp"] == datetime.fromisoformat("2024-05-06T10:30:00+00:00").timestamp()
    assert trigger["source"]["event"] == "pull_request" and trigger["source"]["number"] == 7
    assert trigger["source"]["repository"] == "octo/app"
    job = await queued_job(queen, *await github_hook(queen, "pull_request", gh_pull_request("synchronize")))
    assert job["ref"]["fetch"] == "refs/pull/7/head"

    job = await queued_job(queen, *await github_hook(queen, "push", gh_push("refs/tags/v1.0")))
    assert job["ref"] == {"fetch": "refs/tags/v1.0", "id": SHA} and job["type"] == "DEPLOY"
    assert job["trigger"]["type"] == "tag" and job["trigger"]["source"]["event"] == "push"
    assert len(await jobs_of(queen)) == 3


async def test_events_turned_off_and_refused_jobs_are_answered(queen: Cluster) -> None:
    await add_repo(queen, "github", config={"events": ["pull_request"]})
    status, text = await github_hook(queen, "push", gh_push())
    assert (status, text) == (202, "ignored: push events are turned off in repository app's github config\n")
    required = 'parameters: {TARGET: {required: true}}\nstages: [{name: t, steps: ["true"]}]\n'
    await add_repo(queen, "github", name="strict", pipeline=required)
    status, text = await github_hook(queen, "push", gh_push(), repo="strict")
    assert status == 422 and text.startswith("refused: ") and "TARGET" in text, text
    assert await jobs_of(queen) == [] and await jobs_of(queen, "strict") == []
    status, text = await send_hook(queen, "github", "strict", b"{not json", gh_headers("push", b"{not json"))
    assert status == 400 and text.startswith("bad payload"), text


async def test_plugin_settings_are_checked_when_saved(queen: Cluster) -> None:
    cases = [
        ("github", {"api": "api.github.com"}, "plugins[0].config.api"),
        ("github", {"push_type": "BUILD"}, "plugins[0].config.push_type"),
        ("github", {"events": ["push", "issues"]}, "plugins[0].config.events[1]"),
        ("github", {"repository": "no-slash"}, "plugins[0].config.repository"),
        ("github", {"secret": "not a name"}, "plugins[0].config.secret"),
        ("github", {"colour": "blue"}, "plugins[0].config.colour"),
        ("gitlab", {"api": "ftp://gitlab.example.com"}, "plugins[0].config.api"),
        ("gitlab", {"project": 42}, "plugins[0].config.project"),
        ("gitlab", {"events": ["pull_request"]}, "plugins[0].config.events[0]"),
    ]
    for plugin, config, where in cases:
        body = {"name": "app", "pipeline": PASSING, "pipeline_source": "queen",
                "plugins": [{"name": plugin, "config": config}]}
        status, answer = await queen.request("POST", "/repos", body)
        assert status == 400 and answer["field"] == where and answer["error"].startswith(where), (config, answer)
    body = {"name": "app", "pipeline": PASSING, "pipeline_source": "queen",
            "plugins": [{"name": "github", "config": {"api": "https://ghe.example.com/api/v3"}}]}
    _, repo = await queen.request("POST", "/repos", body, expect=201)
    assert repo["plugins"][0]["config"]["api"] == "https://ghe.example.com/api/v3"
    assert repo["plugins"][0]["config"]["context"] == "apiary"


async def test_commit_statuses_go_to_the_configured_api(queen: Cluster) -> None:
    async with FakeForge() as forge:
        await add_repo(queen, "github", config={"api": f"{forge.url}/api/v3", "context": "ci/apiary"},
                       secrets={"GITHUB_TOKEN": TOKEN})
        await queen.add_drone("d1")
        job = await queued_job(queen, *await github_hook(queen, "push", gh_push()))
        assert (await queen.wait_job(job["id"]))["status"] == "passed"
        pending, success = await forge.wait(2)
    base = queen.api.removesuffix("/api/v1")
    for sent, state in ((pending, "pending"), (success, "success")):
        assert (sent.method, sent.path) == ("POST", f"/api/v3/repos/octo/app/statuses/{SHA}")
        assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
        assert sent.headers["Accept"] == "application/vnd.github+json"
        assert sent.body["state"] == state and sent.body["context"] == "ci/apiary"
        assert sent.body["target_url"] == f"{base}/jobs/{job['id']}"
    assert pending.body["description"] == "running"
    assert success.body["description"].startswith("passed in ") and success.body["description"].endswith(" s")
    assert len(forge.received) == 2


# -- gitlab -----------------------------------------------------------------------------------------------

def gl_project() -> dict[str, Any]:
    return {"id": 15, "name": "Diaspora", "description": "", "web_url": "https://gitlab.example.com/mike/diaspora",
            "git_ssh_url": "git@gitlab.example.com:mike/diaspora.git",
            "git_http_url": "https://gitlab.example.com/mike/diaspora.git", "namespace": "Mike",
            "visibility_level": 0, "path_with_namespace": "mike/diaspora", "default_branch": "main"}


def gl_push(ref: str = "refs/heads/main", sha: str | None = SHA, tag: bool = False) -> dict[str, Any]:
    commits = [{"id": BEFORE, "message": "Update the README\n", "title": "Update the README",
                "timestamp": "2024-05-06T09:00:00+02:00",
                "url": f"https://gitlab.example.com/mike/diaspora/-/commit/{BEFORE}",
                "author": {"name": "Jordi Mallach", "email": "jordi@example.com"},
                "added": [], "modified": ["README.md"], "removed": []},
               {"id": SHA, "message": "Fix the greeting\n", "title": "Fix the greeting",
                "timestamp": "2024-05-06T11:00:00+02:00",
                "url": f"https://gitlab.example.com/mike/diaspora/-/commit/{SHA}",
                "author": {"name": "GitLab dev user", "email": "gitlabdev@example.com"},
                "added": ["greet.py"], "modified": [], "removed": []}]
    return {"object_kind": "tag_push" if tag else "push", "event_name": "tag_push" if tag else "push",
            "before": BEFORE, "after": sha or "0" * 40, "ref": ref, "ref_protected": True, "checkout_sha": sha,
            "user_id": 4, "user_name": "John Smith", "user_username": "jsmith", "user_email": "john@example.com",
            "user_avatar": "https://gitlab.example.com/uploads/user/avatar/4/avatar.png", "project_id": 15,
            "project": gl_project(), "commits": commits if sha else [], "total_commits_count": 2 if sha else 0,
            "repository": {"name": "Diaspora", "url": "git@gitlab.example.com:mike/diaspora.git",
                           "homepage": "https://gitlab.example.com/mike/diaspora"}}


def gl_merge_request(action: str = "open", target: str = "main", new_commits: bool = True) -> dict[str, Any]:
    attributes = {"id": 99, "iid": 3, "target_branch": target, "source_branch": "ms-viewport",
                  "source_project_id": 15, "target_project_id": 15, "author_id": 51, "title": "MS-Viewport",
                  "created_at": "2024-05-06T08:00:00Z", "updated_at": "2024-05-06T08:30:00Z", "state": "opened",
                  "merge_status": "unchecked", "url": "https://gitlab.example.com/mike/diaspora/-/merge_requests/3",
                  "last_commit": {"id": SHA, "message": "fixed readme", "timestamp": "2024-05-06T08:29:00Z",
                                  "url": f"https://gitlab.example.com/mike/diaspora/-/commit/{SHA}",
                                  "author": {"name": "GitLab dev user", "email": "gitlabdev@example.com"}},
                  "action": action}
    if action == "update" and new_commits:
        attributes["oldrev"] = BEFORE
    return {"object_kind": "merge_request", "event_type": "merge_request",
            "user": {"id": 1, "name": "Administrator", "username": "root", "email": "admin@example.com"},
            "project": gl_project(), "object_attributes": attributes, "labels": [], "changes": {},
            "repository": {"name": "Diaspora", "url": "git@gitlab.example.com:mike/diaspora.git"}}


async def gitlab_hook(cluster: Cluster, event: str, payload: dict[str, Any], repo: str = "app",
                      token: str | None = SECRET, event_uuid: str | None = None,
                      idempotency_key: str | None = None) -> tuple[int, str]:
    """A GitLab delivery; an X-Gitlab-Event-UUID of its own unless given (one id queues one job)."""
    headers = {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": event_uuid or str(uuid.uuid4()),
               "X-Gitlab-Instance": "https://gitlab.example.com", "User-Agent": "GitLab/16.11.0"}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return await send_hook(cluster, "gitlab", repo, payload, headers)


async def test_gitlab_push_with_the_right_token_queues_a_job(queen: Cluster) -> None:
    await add_repo(queen, "gitlab")
    uuid_ = "13792a34-cac6-4fda-95a8-c58e00a3954e"
    job = await queued_job(queen, *await gitlab_hook(queen, "Push Hook", gl_push(), event_uuid=uuid_))
    assert job["ref"] == {"branch": "main", "id": SHA} and job["type"] == "TEST"
    trigger = job["trigger"]
    assert trigger["type"] == "push" and trigger["message"] == "Fix the greeting\n"
    assert trigger["author"] == {"name": "John Smith", "email": "john@example.com", "username": "jsmith"}
    assert trigger["url"] == f"https://gitlab.example.com/mike/diaspora/-/commit/{SHA}"
    assert trigger["timestamp"] == datetime.fromisoformat("2024-05-06T09:00:00+00:00").timestamp()
    assert trigger["source"] == {"type": "plugin", "plugin": "gitlab", "event": "push", "project_id": 15,
                                 "project": "mike/diaspora", "delivery": uuid_}

    status, text = await gitlab_hook(queen, "Push Hook", gl_push(), token=None)
    assert (status, text) == (401, "unauthorized: no X-Gitlab-Token header\n")
    status, text = await gitlab_hook(queen, "Push Hook", gl_push(), token=SECRET + "x")
    assert (status, text) == (401, "unauthorized: wrong X-Gitlab-Token\n")
    assert len(await jobs_of(queen)) == 1


async def test_gitlab_tags_merge_requests_and_what_is_ignored(queen: Cluster) -> None:
    await add_repo(queen, "gitlab", branches={"exclude": ["legacy"]})
    job = await queued_job(queen, *await gitlab_hook(queen, "Tag Push Hook", gl_push("refs/tags/v2.1", tag=True)))
    assert job["ref"] == {"fetch": "refs/tags/v2.1", "id": SHA} and job["type"] == "TEST"  # no deploy_tags
    assert job["trigger"]["type"] == "tag" and job["trigger"]["source"]["event"] == "tag_push"

    job = await queued_job(queen, *await gitlab_hook(queen, "Merge Request Hook", gl_merge_request("open")))
    assert job["ref"] == {"fetch": "refs/merge-requests/3/head", "id": SHA}
    trigger = job["trigger"]
    assert trigger["type"] == "merge_request" and trigger["message"] == "MS-Viewport"
    assert trigger["author"] == {"name": "Administrator", "email": "admin@example.com", "username": "root"}
    assert trigger["url"] == "https://gitlab.example.com/mike/diaspora/-/merge_requests/3"
    assert trigger["source"]["iid"] == 3 and trigger["source"]["action"] == "open"
    job = await queued_job(queen, *await gitlab_hook(queen, "Merge Request Hook", gl_merge_request("update")))
    assert job["ref"]["fetch"] == "refs/merge-requests/3/head"

    ignored = [
        ("Push Hook", gl_push(), "ghost", "no repository named ghost"),
        ("Push Hook", gl_push("refs/heads/legacy"), "app", "branch legacy is left out by the repository's branch filters"),
        ("Push Hook", gl_push(sha=None), "app", "refs/heads/main was deleted"),
        ("Merge Request Hook", gl_merge_request("close"), "app", "merge request action close"),
        ("Merge Request Hook", gl_merge_request("update", new_commits=False), "app",
         "merge request update without new commits"),
        ("Merge Request Hook", gl_merge_request(target="legacy"), "app",
         "branch legacy is left out by the repository's branch filters"),
        ("Issue Hook", {"object_kind": "issue", "project": gl_project()}, "app", "Issue Hook events start no jobs"),
    ]
    for event, payload, repo, reason in ignored:
        assert await gitlab_hook(queen, event, payload, repo=repo) == (202, f"ignored: {reason}\n"), reason
    assert len(await jobs_of(queen)) == 3


async def test_gitlab_commit_statuses_report_a_failure(queen: Cluster) -> None:
    # Spread cells: their child jobs post no status of their own (cell 2 passes after cell 1 failed: the
    # commit would read passed while its job had not ended); the job's is the commit's.
    cells = """stages: [{name: test, matrix: {N: ["1", "2"], spread: true}, steps: ['echo broken; [ "$N" = 2 ]']}]"""
    async with FakeForge() as forge:
        await add_repo(queen, "gitlab", pipeline=cells, config={"api": f"{forge.url}/api/v4"},
                       secrets={"GITLAB_TOKEN": "glpat-x1y2z3"})
        await queen.add_drone("d1")
        job = await queued_job(queen, *await gitlab_hook(queen, "Push Hook", gl_push()))
        assert (await queen.wait_job(job["id"]))["status"] == "failed"
        running, failed = await forge.wait(2)
    base = queen.api.removesuffix("/api/v1")
    for sent, state in ((running, "running"), (failed, "failed")):
        assert (sent.method, sent.path) == ("POST", f"/api/v4/projects/15/statuses/{SHA}")
        assert sent.headers["PRIVATE-TOKEN"] == "glpat-x1y2z3"
        assert sent.body["state"] == state and sent.body["name"] == "apiary" and sent.body["ref"] == "main"
        assert sent.body["target_url"] == f"{base}/jobs/{job['id']}"
    assert failed.body["description"].startswith("failed in ")
    assert len(forge.received) == 2


async def test_gitlab_statuses_use_the_configured_project_path(queen: Cluster) -> None:
    async with FakeForge() as forge:
        await add_repo(queen, "gitlab", config={"api": forge.url + "/api/v4/", "project": "mike/diaspora",
                                                "context": "apiary/unit"}, secrets={"GITLAB_TOKEN": "glpat-abc"})
        await queen.add_drone("d1")
        job = await queen.trigger("app", branch="main", commit=SHA)
        assert (await queen.wait_job(job["id"]))["status"] == "passed"
        running, success = await forge.wait(2)
    assert running.path == success.path == f"/api/v4/projects/mike%2Fdiaspora/statuses/{SHA}"
    assert (running.body["state"], success.body["state"]) == ("running", "success")
    assert success.body["name"] == "apiary/unit"
