"""Secrets by trust: each secret reaches the kinds of job it names; forks get none; the queen's plugins
keep their own credentials; the job says which secrets it was given (names only)."""

from __future__ import annotations

import base64
from typing import Any

from apiary.queen.trust import DEFAULT_KINDS
from tests.cluster import Cluster, output_lines
from tests.e2e.test_forges import add_repo, gh_pull_request, gh_push, gh_repository, github_hook, queued_job

ENV_NAMES = "env | cut -d= -f1 | grep -E '^(DEPLOY_KEY|WEBHOOK_SECRET|GITHUB_TOKEN|PR_TOKEN|FORK_OK)$' | sort | tr '\\n' ' '; echo"


async def _names_seen(cluster: Cluster, job: dict[str, Any]) -> list[str]:
    done = await cluster.wait_job(job["id"])
    assert done["status"] == "passed", done
    return output_lines(await cluster.events(job["id"]), "job:cmd:stdout")[0].split()


async def test_forks_get_no_secrets_and_the_queens_credentials_reach_no_job(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await add_repo(queen, "github", pipeline=f'stages: [{{name: env, steps: ["{ENV_NAMES}"]}}]',
                   config={"pull_request_type": "TEST"},
                   secrets={"GITHUB_TOKEN": "ghp_example-token-5678", "DEPLOY_KEY": "example-deploy-key-9012"})
    await queen.request("PUT", "/repos/app/secrets/PR_TOKEN", {"value": "pr-token-1", "kinds": ["pull_request"]},
                        expect=200)
    listed = {s["name"]: s["kinds"] for s in (await queen.get("/repos/app/secrets"))["secrets"]}
    assert listed["DEPLOY_KEY"] == list(DEFAULT_KINDS) and listed["PR_TOKEN"] == ["pull_request"]

    push = await queued_job(queen, *await github_hook(queen, "push", gh_push()))
    assert await _names_seen(queen, push) == ["DEPLOY_KEY"]  # not the webhook secret, not the status token
    assert (await queen.job(push["id"]))["secrets"] == ["DEPLOY_KEY"]

    fork = await queued_job(queen, *await github_hook(queen, "pull_request", gh_pull_request()))
    assert (fork["kind"], await _names_seen(queen, fork)) == ("fork", [])
    rerun = (await queen.request("POST", f"/jobs/{fork['id']}/rerun", expect=201))[1]
    assert (rerun["kind"], await _names_seen(queen, rerun)) == ("fork", [])  # a re-run is no way around it

    own = gh_pull_request(number=8)
    own["pull_request"]["head"]["repo"] = gh_repository()  # a branch of octo/app itself
    same = await queued_job(queen, *await github_hook(queen, "pull_request", own))
    assert (same["kind"], await _names_seen(queen, same)) == ("pull_request", ["PR_TOKEN"])
    settings = await queen.get("/repos/app")
    settings.update(pull_request_secrets=True)
    for key in ("name", "created", "updated"):
        settings.pop(key)
    await queen.request("PUT", "/repos/app", settings, expect=200)
    same = await queued_job(queen, *await github_hook(queen, "pull_request", own))
    assert await _names_seen(queen, same) == ["DEPLOY_KEY", "PR_TOKEN"]

    # Kinds changed without the value; an API client calling its job a push is still a manual trigger.
    await queen.request("PUT", "/repos/app/secrets/DEPLOY_KEY", {"kinds": ["push"]}, expect=200)
    manual = await queen.trigger("app", trigger={"type": "push"})
    assert (manual["kind"], await _names_seen(queen, manual)) == ("manual", [])
    status, body = await queen.request("PUT", "/repos/app/secrets/NOPE", {"kinds": ["push"]})
    assert (status, body["field"]) == (404, "value")
    status, body = await queen.request("PUT", "/repos/app/secrets/DEPLOY_KEY", {"value": "x", "kinds": ["prs"]})
    assert (status, body["field"]) == (400, "kinds")


async def test_the_job_page_names_the_secrets_given(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("named", 'stages: [{name: s, steps: ["true"]}]')
    await queen.request("PUT", "/repos/named/secrets/DEPLOY_KEY", {"value": "deploy-value-1234"}, expect=200)
    job = await queen.wait_job((await queen.trigger("named"))["id"])
    assert queen.http is not None
    async with queen.http.get(queen.api.removesuffix("/api/v1") + f"/jobs/{job['id']}") as resp:
        page = await resp.text()
    assert "<code>DEPLOY_KEY</code>" in page and "deploy-value-1234" not in page


async def test_a_secret_deleted_while_its_job_waits_is_not_given_and_the_job_runs(queen: Cluster) -> None:
    await queen.create_pipeline_repo("waits", 'stages: [{name: s, steps: ["echo ${GONE:-unset} ${KEPT}"]}]')
    await queen.request("PUT", "/repos/waits/secrets/GONE", {"value": "gone-value-1"}, expect=200)
    await queen.request("PUT", "/repos/waits/secrets/KEPT", {"value": "kept-value-1"}, expect=200)
    job = await queen.trigger("waits")  # no drone yet: it waits in the queue, named to get both
    assert sorted((await queen.job(job["id"]))["secrets"]) == ["GONE", "KEPT"]
    await queen.request("DELETE", "/repos/waits/secrets/GONE", expect=200)
    await queen.add_drone("d1")
    done = await queen.wait_job(job["id"])
    # Decided again when sent: the job is told what it was given, and it got only that.
    assert (done["status"], done["secrets"]) == ("passed", ["KEPT"])
    [line] = output_lines(await queen.events(job["id"]), "job:cmd:stdout")
    assert line.startswith("unset ") and "kept-value-1" not in line  # GONE not given, KEPT given and masked


async def test_a_secret_inside_longer_output_is_masked_in_every_form_a_job_prints(queen: Cluster) -> None:
    secret = 'hunter2 "correct"/horse+é'
    await queen.add_drone("d1")
    forms = [
        "printf 'ci-bot:%s' \"$PASSWD\" | base64 -w0; echo",  # HTTP Basic, the secret at offset 7
        "printf 'x%s' \"$PASSWD\" | base64 -w0 | tr '+/' '-_'; echo",  # URL-safe, offset 1
        "printf '%s' \"$PASSWD\" | od -An -tx1 | tr -d ' \\n'; echo",  # hex
        "python3 -c 'import os, urllib.parse as u; print(u.quote(os.environ[\"PASSWD\"], safe=\"/+\"))'",
        "python3 -c 'import os, json; print(json.dumps({\"p\": os.environ[\"PASSWD\"]}))'",
    ]
    pipeline = {"stages": [{"name": "leak", "steps": [{"run": f} for f in forms]}]}
    await queen.request("POST", "/repos", {"name": "leaky", "pipeline": pipeline}, expect=201)
    await queen.request("PUT", "/repos/leaky/secrets/PASSWD", {"value": secret}, expect=200)
    job = await queen.wait_job((await queen.trigger("leaky"))["id"])
    assert job["status"] == "passed", job
    printed = output_lines(await queen.events(job["id"]), "job:cmd:stdout")
    assert len(printed) == len(forms) and all("********" in line for line in printed), printed
    raw = secret.encode()
    for line in printed:
        assert base64.b64encode(b"ci-bot:" + raw).decode()[10:-4] not in line and raw.hex() not in line, line
