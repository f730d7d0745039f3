"""The github plugin: GitHub's push, tag and pull-request webhooks start jobs,
and each job's commit status goes back to the forge (GitHub, GitHub Enterprise, Gitea).

Setup, for repository NAME on a queen at QUEEN:

1. Name the plugin in the repository's settings (POST or PUT /api/v1/repos):
   ``"plugins": [{"name": "github", "config": {}}]``.
2. Store the webhook's secret as the repository secret ``WEBHOOK_SECRET``:
   ``PUT /api/v1/repos/NAME/secrets/WEBHOOK_SECRET`` with ``{"value": "..."}``.
3. On the forge, add a webhook: payload URL ``QUEEN/hooks/github/NAME``, content
   type ``application/json``, that secret, events "Pushes" and "Pull requests"
   (tags come as pushes).
4. For commit statuses, store a token that may write them (GitHub: fine-grained
   with "Commit statuses: write", or classic with ``repo:status``) as the secret
   ``GITHUB_TOKEN``. Without it no statuses are sent (logged at debug level).

Config, every key optional:

    secret             the repository secret holding the webhook secret (WEBHOOK_SECRET)
    api                the API base for statuses (https://api.github.com; GitHub
                       Enterprise https://HOST/api/v3; Gitea https://HOST/api/v1)
    token_secret       the repository secret holding the API token (GITHUB_TOKEN)
    repository         "owner/name" for statuses; else the webhook payload's
                       repository, else the last two parts of the repository's URL
    context            the status's name on the forge (apiary)
    push_type, pull_request_type
                       the job type each starts: TEST, DEPLOY or TEST_DEPLOY (TEST)
    tag_type           the type of a tag's job when the repository's settings say
                       ``deploy_tags: true`` (TEST_DEPLOY); otherwise tags run TEST
    events             which of push, tag, pull_request start jobs (all three)

What starts a job:

* a push to branch B: B at the pushed commit (``after``), when the repository's
  branch filters allow B; a deleted branch starts nothing;
* a pushed tag T: ``refs/tags/T`` at its commit, a TEST job unless the
  repository's ``deploy_tags`` is true; branch filters do not apply;
* a pull request opened, synchronized or reopened: ``refs/pull/N/head`` at its
  head commit, when the branch filters allow its *base* (target) branch. The
  job's trigger records ``head_branch``, ``base_branch`` and ``fork`` (the head
  is in another repository); the history's branch filter finds it by either.

Each delivery (``X-GitHub-Delivery``) queues at most one job: delivered again
(GitHub's "Redeliver", a retry), even after the queen restarted, it answers
200 naming the job it queued and queues nothing.

The signature (``X-Hub-Signature-256``: ``sha256=`` HMAC-SHA256 of the body
keyed with the secret; Gitea's ``X-Gitea-Signature`` too) is checked before
the payload is read. Answers: 201 with the job; 200 with the job a delivery
seen before queued; 200 "pong" to a ping; 202
"ignored: why" when nothing is to be done (unknown repository, branch left out,
event turned off); 401 when the signature is missing or wrong (logged); 413
above 5 MiB; 422 "refused: why" when the queen refuses the job (a ref git does
not know, a required parameter).

Commit statuses: ``pending`` when a job starts, then ``success`` (passed),
``failure`` (failed) or ``error`` (errored, cancelled), linking to the job's
page, for every job of a repository that uses the plugin and whose ref names a
commit, whatever started the job. A failed status call is logged, nothing more.

Receiving, signature checks and commit statuses shared with the gitlab plugin live in plugins/forge.py.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from aiohttp import web

from apiary.plugins.api import ConfigProblem, PluginContext
from apiary.plugins.forge import (
    JOB_TYPES,
    Answer,
    allowed,
    author,
    check_forge_config,
    describe,
    epoch,
    field,
    receive,
    repo_path,
    report,
    required,
    source_of,
    start,
    tag_job_type,
)

EVENTS = ["push", "tag", "pull_request"]
PR_ACTIONS = {"opened", "synchronize", "reopened"}
STATES = {"passed": "success", "failed": "failure", "errored": "error", "cancelled": "error"}

config_schema: dict[str, Any] = {
    "secret": {"type": "str", "default": "WEBHOOK_SECRET", "secret": True,
               "help": "name of the repository secret holding the webhook secret"},
    "api": {"type": "str", "default": "https://api.github.com",
            "help": "API base for commit statuses (GitHub Enterprise: https://HOST/api/v3, Gitea: .../api/v1)"},
    "token_secret": {"type": "str", "default": "GITHUB_TOKEN", "secret": True,
                     "help": "name of the repository secret holding a token for commit statuses"},
    "repository": {"type": "str", "help": "owner/name for statuses (default: from the payload or the URL)"},
    "context": {"type": "str", "default": "apiary", "help": "the commit status's name"},
    "push_type": {"type": "str", "default": "TEST", "choices": JOB_TYPES},
    "tag_type": {"type": "str", "default": "TEST_DEPLOY", "choices": JOB_TYPES,
                 "help": "a tag's job type when the repository's deploy_tags is true (else TEST)"},
    "pull_request_type": {"type": "str", "default": "TEST", "choices": JOB_TYPES},
    "events": {"type": "list", "items": "str", "default": list(EVENTS), "help": "push, tag, pull_request"},
}


def check_config(config: dict[str, Any]) -> None:
    check_forge_config(config, EVENTS)
    repository = config.get("repository")
    if repository is not None and not re.fullmatch(r"[^/\s]+/[^/\s]+", repository):
        raise ConfigProblem("repository", f"must be owner/name, got {repository!r}")


async def webhook(request: web.Request, ctx: PluginContext) -> web.Response:
    # Gitea sends its own header too; older versions only that one (the bare hex digest).
    gitea = "X-Hub-Signature-256" not in request.headers and "X-Gitea-Signature" in request.headers
    header, prefix = ("X-Gitea-Signature", "") if gitea else ("X-Hub-Signature-256", "sha256=")
    try:
        repo, config, payload = await receive(request, ctx, config_schema, header, lambda secret, body: (
            prefix + hmac.new(secret, body, hashlib.sha256).hexdigest()))
        event = request.headers.get("X-GitHub-Event", "")
        if event == "ping":
            return web.Response(text="pong\n")
        source = {"event": event, "delivery": request.headers.get("X-GitHub-Delivery", ""),
                  "repository": field(payload, "repository", "full_name") or ""}
        if event == "push":
            return await _push(ctx, repo, config, payload, source)
        if event == "pull_request":
            return await _pull_request(ctx, repo, config, payload, source)
        return ctx.ignored(f"{event or 'unnamed'} events start no jobs")
    except Answer as answer:
        return answer.response


async def _push(ctx: PluginContext, repo: dict[str, Any], config: dict[str, Any], payload: dict[str, Any],
                source: dict[str, Any]) -> web.Response:
    ref, after = required(payload, "ref"), required(payload, "after")
    if payload.get("deleted"):
        return ctx.ignored(f"{ref} was deleted")
    head = payload.get("head_commit") if isinstance(payload.get("head_commit"), dict) else {}
    trigger = {"author": author(head.get("author") or payload.get("pusher")), "message": head.get("message"),
               "url": head.get("url") or payload.get("compare"), "timestamp": epoch(head.get("timestamp"))}
    if ref.startswith("refs/tags/"):
        allowed(ctx, repo, config, "tag")
        return await start(ctx, repo, fetch=ref, commit=after, job_type=tag_job_type(repo, config),
                           trigger={**trigger, "type": "tag"}, source=source)
    if not ref.startswith("refs/heads/"):
        return ctx.ignored(f"{ref} is neither a branch nor a tag")
    branch = ref.removeprefix("refs/heads/")
    allowed(ctx, repo, config, "push", branch)
    return await start(ctx, repo, branch=branch, commit=after, job_type=config["push_type"],
                       trigger={**trigger, "type": "push"}, source=source)


async def _pull_request(ctx: PluginContext, repo: dict[str, Any], config: dict[str, Any], payload: dict[str, Any],
                        source: dict[str, Any]) -> web.Response:
    action = payload.get("action")
    if action not in PR_ACTIONS:
        return ctx.ignored(f"pull request action {action}")
    number = required(payload, "pull_request", "number")
    allowed(ctx, repo, config, "pull_request", required(payload, "pull_request", "base", "ref"))
    pr = payload["pull_request"]
    # From a fork unless the head is in the repository itself (a deleted fork has no head repository).
    head_repo, base_repo = field(pr, "head", "repo", "full_name"), field(pr, "base", "repo", "full_name")
    trigger = {"type": "pull_request", "author": {"username": field(pr, "user", "login") or ""},
               "message": pr.get("title"), "url": pr.get("html_url"), "timestamp": epoch(pr.get("updated_at")),
               "fork": not (head_repo and head_repo == base_repo), "head_branch": field(pr, "head", "ref"),
               "base_branch": field(pr, "base", "ref")}
    return await start(ctx, repo, fetch=f"refs/pull/{number}/head", commit=required(pr, "head", "sha"),
                       job_type=config["pull_request_type"], trigger=trigger,
                       source={**source, "action": action, "number": pr.get("number")})


async def job_started(job: dict[str, Any], ctx: PluginContext) -> None:
    await report(job, ctx, config_schema, "pending", _status)


async def job_done(job: dict[str, Any], ctx: PluginContext) -> None:
    await report(job, ctx, config_schema, STATES.get(job.get("status", ""), "error"), _status)


def _status(job: dict[str, Any], ctx: PluginContext, repo: dict[str, Any], config: dict[str, Any], state: str,
            token: str) -> tuple[str, dict[str, Any], dict[str, str]] | None:
    repository = (config.get("repository") or source_of(job, ctx).get("repository")
                  or "/".join((repo_path(repo.get("url")) or "").split("/")[-2:]))
    if repository.count("/") != 1:
        ctx.log.warning("job %s: no commit status: set repository (owner/name) in %s's github config",
                        job["_id"], repo["_id"])
        return None
    body = {"state": state, "target_url": ctx.job_url(job), "description": describe(job, state),
            "context": config["context"]}
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
    return f"{config['api'].rstrip('/')}/repos/{repository}/statuses/{job['ref']['id']}", body, headers
