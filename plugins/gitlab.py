"""The gitlab plugin: GitLab's push, tag push and merge-request webhooks start jobs,
and each job's commit status goes back to GitLab (gitlab.com or your own).

Setup, for repository NAME on a queen at QUEEN:

1. Name the plugin in the repository's settings (POST or PUT /api/v1/repos):
   ``"plugins": [{"name": "gitlab", "config": {}}]``.
2. Choose a secret token and store it as the repository secret ``WEBHOOK_SECRET``:
   ``PUT /api/v1/repos/NAME/secrets/WEBHOOK_SECRET`` with ``{"value": "..."}``.
3. In the GitLab project, Settings > Webhooks: URL ``QUEEN/hooks/gitlab/NAME``,
   that secret token, triggers "Push events", "Tag push events" and "Merge
   request events".
4. For commit statuses, store a token with the ``api`` scope (a project access
   token with the Developer role will do) as the secret ``GITLAB_TOKEN``.
   Without it no statuses are sent (logged at debug level).

Config, every key optional:

    secret             the repository secret holding the webhook's token (WEBHOOK_SECRET)
    api                the API base for statuses (https://gitlab.com/api/v4; your
                       own instance: https://HOST/api/v4)
    token_secret       the repository secret holding the API token (GITLAB_TOKEN)
    project            the project for statuses: its id ("42") or path ("group/name");
                       else the webhook payload's project id, else the path of the
                       repository's URL
    context            the status's name in GitLab (apiary)
    push_type, merge_request_type
                       the job type each starts: TEST, DEPLOY or TEST_DEPLOY (TEST)
    tag_type           the type of a tag's job when the repository's settings say
                       ``deploy_tags: true`` (TEST_DEPLOY); otherwise tags run TEST
    events             which of push, tag, merge_request start jobs (all three)

What starts a job:

* a push to branch B: B at the pushed commit (``checkout_sha``), when the
  repository's branch filters allow B; a deleted branch starts nothing;
* a pushed tag T: ``refs/tags/T`` at its commit, a TEST job unless the
  repository's ``deploy_tags`` is true; branch filters do not apply;
* a merge request opened, reopened, or updated with new commits:
  ``refs/merge-requests/IID/head`` at its last commit, when the branch filters
  allow its *target* branch (an update that changes only the title or the
  description starts nothing). The job's trigger records ``head_branch``
  (the source branch), ``base_branch`` (the target) and ``fork``.

Each delivery queues at most one job: one seen before (GitLab's
``Idempotency-Key``, the same on each retry of a delivery, or else its
``X-Gitlab-Event-UUID``) answers 200 naming the job it queued, even after the
queen restarted, and queues nothing.

The ``X-Gitlab-Token`` header must equal the secret (compared in constant
time), or the answer is 401, logged, nothing queued. Other answers as for the
github plugin: 201 with the job, 200 with the job a delivery seen before queued,
202 "ignored: why", 413, 422 "refused: why".

Commit statuses (POST /projects/:id/statuses/:sha): ``running`` when a job
starts, then ``success`` (passed), ``failed`` (failed, errored) or ``canceled``,
linking to the job's page, for every job of a repository that uses the plugin
and whose ref names a commit. A failed status call is logged, nothing more.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from aiohttp import web

from apiary.plugins import forge
from apiary.plugins.api import ConfigProblem, PluginContext

EVENTS = ["push", "tag", "merge_request"]
MR_ACTIONS = {"open", "reopen", "update"}
STATES = {"passed": "success", "failed": "failed", "errored": "failed", "cancelled": "canceled"}
NO_COMMIT = "0" * 40

config_schema: dict[str, Any] = {
    "secret": {"type": "str", "default": "WEBHOOK_SECRET", "secret": True,
               "help": "name of the repository secret holding the webhook's secret token"},
    "api": {"type": "str", "default": "https://gitlab.com/api/v4", "help": "API base for commit statuses"},
    "token_secret": {"type": "str", "default": "GITLAB_TOKEN", "secret": True,
                     "help": "name of the repository secret holding a token (api scope) for commit statuses"},
    "project": {"type": "str", "help": "project id or group/name for statuses (default: from the payload or URL)"},
    "context": {"type": "str", "default": "apiary", "help": "the commit status's name"},
    "push_type": {"type": "str", "default": "TEST", "choices": forge.JOB_TYPES},
    "tag_type": {"type": "str", "default": "TEST_DEPLOY", "choices": forge.JOB_TYPES,
                 "help": "a tag's job type when the repository's deploy_tags is true (else TEST)"},
    "merge_request_type": {"type": "str", "default": "TEST", "choices": forge.JOB_TYPES},
    "events": {"type": "list", "items": "str", "default": list(EVENTS), "help": "push, tag, merge_request"},
}


def check_config(config: dict[str, Any]) -> None:
    forge.check_forge_config(config, EVENTS)
    project = config.get("project")
    if project is not None and not re.fullmatch(r"\d+|[^/\s]+(/[^/\s]+)+", project):
        raise ConfigProblem("project", f"must be a project id (42) or path (group/name), got {project!r}")


async def webhook(request: web.Request, ctx: PluginContext) -> web.Response:
    try:
        repo, config, payload = await forge.receive(request, ctx, config_schema, "X-Gitlab-Token",
                                              lambda secret, body: secret.decode())
        event = request.headers.get("X-Gitlab-Event", "")
        # Idempotency-Key (GitLab 17.4 on) stays the same when a delivery is retried or resent.
        delivery = request.headers.get("Idempotency-Key") or request.headers.get("X-Gitlab-Event-UUID", "")
        source = {"event": payload.get("object_kind") or event, "delivery": delivery,
                  "project_id": forge.field(payload, "project", "id") or payload.get("project_id"),
                  "project": forge.field(payload, "project", "path_with_namespace") or ""}
        if event in ("Push Hook", "Tag Push Hook"):
            return await _push(ctx, repo, config, payload, source)
        if event == "Merge Request Hook":
            return await _merge_request(ctx, repo, config, payload, source)
        return ctx.ignored(f"{event or 'unnamed'} events start no jobs")
    except forge.Answer as answer:
        return answer.response


async def _push(ctx: PluginContext, repo: dict[str, Any], config: dict[str, Any], payload: dict[str, Any],
                source: dict[str, Any]) -> web.Response:
    ref = forge.required(payload, "ref")
    sha = payload.get("checkout_sha") or payload.get("after")
    if not sha or sha == NO_COMMIT:
        return ctx.ignored(f"{ref} was deleted")
    commits = [c for c in payload.get("commits") or [] if isinstance(c, dict)]
    head = next((c for c in commits if c.get("id") == sha), commits[-1] if commits else {})
    pusher = {"name": payload.get("user_name"), "email": payload.get("user_email"),
              "username": payload.get("user_username")}
    trigger = {"author": forge.author(pusher), "message": head.get("message"), "url": head.get("url"),
               "timestamp": forge.epoch(head.get("timestamp"))}
    if ref.startswith("refs/tags/"):
        forge.allowed(ctx, repo, config, "tag")
        return await forge.start(ctx, repo, fetch=ref, commit=sha, job_type=forge.tag_job_type(repo, config),
                                 trigger={**trigger, "type": "tag"}, source=source)
    if not ref.startswith("refs/heads/"):
        return ctx.ignored(f"{ref} is neither a branch nor a tag")
    branch = ref.removeprefix("refs/heads/")
    forge.allowed(ctx, repo, config, "push", branch)
    return await forge.start(ctx, repo, branch=branch, commit=sha, job_type=config["push_type"],
                             trigger={**trigger, "type": "push"}, source=source)


async def _merge_request(ctx: PluginContext, repo: dict[str, Any], config: dict[str, Any],
                         payload: dict[str, Any], source: dict[str, Any]) -> web.Response:
    mr = payload.get("object_attributes") if isinstance(payload.get("object_attributes"), dict) else {}
    action = mr.get("action")
    if action not in MR_ACTIONS:
        return ctx.ignored(f"merge request action {action}")
    if action == "update" and "oldrev" not in mr:
        return ctx.ignored("merge request update without new commits")
    iid = forge.required(mr, "iid")
    forge.allowed(ctx, repo, config, "merge_request", forge.required(mr, "target_branch"))
    # From a fork unless source and target are the same project.
    source_project, target_project = mr.get("source_project_id"), mr.get("target_project_id")
    trigger = {"type": "merge_request", "author": forge.author(payload.get("user")), "message": mr.get("title"),
               "url": mr.get("url"), "timestamp": forge.epoch(mr.get("updated_at")),
               "fork": not (source_project is not None and source_project == target_project),
               "head_branch": mr.get("source_branch"), "base_branch": mr.get("target_branch")}
    return await forge.start(ctx, repo, fetch=f"refs/merge-requests/{iid}/head",
                             commit=forge.required(mr, "last_commit", "id"), job_type=config["merge_request_type"],
                             trigger=trigger, source={**source, "action": action, "iid": mr.get("iid")})


async def job_started(job: dict[str, Any], ctx: PluginContext) -> None:
    await forge.report(job, ctx, config_schema, "running", _status)


async def job_done(job: dict[str, Any], ctx: PluginContext) -> None:
    await forge.report(job, ctx, config_schema, STATES.get(job.get("status", ""), "failed"), _status)


def _status(job: dict[str, Any], ctx: PluginContext, repo: dict[str, Any], config: dict[str, Any], state: str,
            token: str) -> tuple[str, dict[str, Any], dict[str, str]] | None:
    project = (config.get("project") or forge.source_of(job, ctx).get("project_id")
               or forge.repo_path(repo.get("url")))
    if not project:
        ctx.log.warning("job %s: no commit status: set project in %s's gitlab config", job["_id"], repo["_id"])
        return None
    body = {"state": state, "target_url": ctx.job_url(job), "description": forge.describe(job, state),
            "name": config["context"]}
    if job["ref"].get("branch"):
        body["ref"] = job["ref"]["branch"]
    url = f"{config['api'].rstrip('/')}/projects/{quote(str(project), safe='')}/statuses/{job['ref']['id']}"
    return url, body, {"PRIVATE-TOKEN": token}
