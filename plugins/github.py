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
    push_type, tag_type, pull_request_type
                       the job type each starts: TEST, DEPLOY or TEST_DEPLOY
    events             which of push, tag, pull_request start jobs (all three)

What starts a job:

* a push to branch B: B at the pushed commit (``after``), when the repository's
  branch filters allow B; a deleted branch starts nothing;
* a pushed tag T: ``refs/tags/T`` at its commit; branch filters do not apply;
* a pull request opened, synchronized or reopened: ``refs/pull/N/head`` at its
  head commit, when the branch filters allow its *base* (target) branch.

The signature (``X-Hub-Signature-256``: ``sha256=`` HMAC-SHA256 of the body
keyed with the secret; Gitea's ``X-Gitea-Signature`` too) is checked before
the payload is read. Answers: 201 with the job; 200 "pong" to a ping; 202
"ignored: why" when nothing is to be done (unknown repository, branch left out,
event turned off); 401 when the signature is missing or wrong (logged); 413
above 5 MiB; 422 "refused: why" when the queen refuses the job (a ref git does
not know, a required parameter).

Commit statuses: ``pending`` when a job starts, then ``success`` (passed),
``failure`` (failed) or ``error`` (errored, cancelled), linking to the job's
page, for every job of a repository that uses the plugin and whose ref names a
commit, whatever started the job. A failed status call is logged, nothing more.

The helpers after the GitHub-specific part are shared with the gitlab plugin.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import re
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web

from plugins.api import ConfigProblem
from queen.plugins import PluginContext, TriggerRefused
from queen.validate import ENV_NAME

JOB_TYPES = ["TEST", "DEPLOY", "TEST_DEPLOY"]
EVENTS = ["push", "tag", "pull_request"]
PR_ACTIONS = {"opened", "synchronize", "reopened"}
STATES = {"passed": "success", "failed": "failure", "errored": "error", "cancelled": "error"}
MAX_PAYLOAD = 5 * 1024 * 1024

config_schema: dict[str, Any] = {
    "secret": {"type": "str", "default": "WEBHOOK_SECRET",
               "help": "name of the repository secret holding the webhook secret"},
    "api": {"type": "str", "default": "https://api.github.com",
            "help": "API base for commit statuses (GitHub Enterprise: https://HOST/api/v3, Gitea: .../api/v1)"},
    "token_secret": {"type": "str", "default": "GITHUB_TOKEN",
                     "help": "name of the repository secret holding a token for commit statuses"},
    "repository": {"type": "str", "help": "owner/name for statuses (default: from the payload or the URL)"},
    "context": {"type": "str", "default": "apiary", "help": "the commit status's name"},
    "push_type": {"type": "str", "default": "TEST", "choices": JOB_TYPES},
    "tag_type": {"type": "str", "default": "TEST_DEPLOY", "choices": JOB_TYPES},
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
        return await start(ctx, repo, fetch=ref, commit=after, job_type=config["tag_type"],
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
    trigger = {"type": "pull_request", "author": {"username": field(pr, "user", "login") or ""},
               "message": pr.get("title"), "url": pr.get("html_url"), "timestamp": epoch(pr.get("updated_at"))}
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


# -- shared with the gitlab plugin -------------------------------------------------------------

class Answer(Exception):
    """The webhook's answer, found before the end of the handling."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


def with_defaults(config: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    return {**{k: s["default"] for k, s in schema.items() if "default" in s}, **config}


def check_forge_config(config: dict[str, Any], events: list[str]) -> None:
    api = urlsplit(config.get("api") or "")
    if api.scheme not in ("http", "https") or not api.netloc:
        raise ConfigProblem("api", f"must be an http(s) URL such as https://api.github.com, got {config.get('api')!r}")
    for name in ("secret", "token_secret"):
        if not ENV_NAME.match(config.get(name) or ""):
            raise ConfigProblem(name, "must be a secret's name (letters, digits and '_', not starting with a digit)")
    if not (config.get("context") or "").strip():
        raise ConfigProblem("context", "must not be empty")
    for i, event in enumerate(config.get("events") or []):
        if event not in events:
            raise ConfigProblem(f"events[{i}]", f"must be one of {', '.join(events)}, got {event!r}")


async def receive(request: web.Request, ctx: PluginContext, schema: dict[str, Any], header: str,
                  expect: Callable[[bytes, bytes], str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The webhook's repository, its config of this plugin and the payload, once `header` proved to be
    ``expect(secret, body)`` (compared in constant time); else raise Answer (a 401 is logged)."""
    name = request.match_info["repo"]
    repo = await ctx.repo(name)
    config = None if repo is None else ctx.config_of(repo)
    if repo is None or config is None:
        raise Answer(ctx.ignored(f"no repository named {name}" if repo is None else
                                 f"repository {name} does not use the {ctx.name} plugin"))
    config = with_defaults(config, schema)
    too_big = Answer(web.Response(status=413, text=f"payload larger than {MAX_PAYLOAD // 2**20} MiB\n"))
    if (request.content_length or 0) > MAX_PAYLOAD:
        raise too_big
    body = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        body += chunk
        if len(body) > MAX_PAYLOAD:
            raise too_big
    secret, given = await ctx.secret(name, config["secret"]), request.headers.get(header)
    if not secret:
        reason = f"repository {name} has no secret {config['secret']}; set it to the webhook's secret"
    elif given is None:
        reason = f"no {header} header"
    elif not hmac.compare_digest(given.encode(errors="replace"), expect(secret.encode(), bytes(body)).encode()):
        reason = f"wrong {header}"
    else:
        reason = ""
    if reason:
        ctx.log.warning("repository %s: webhook from %s refused: %s", name, request.remote, reason)
        raise Answer(ctx.unauthorized(reason))
    try:
        if request.content_type == "application/x-www-form-urlencoded":
            body = bytearray(parse_qs(body.decode())["payload"][0].encode())
        payload = json.loads(body)
    except (ValueError, KeyError) as exc:
        raise Answer(web.Response(status=400, text=f"bad payload: not JSON ({exc})\n")) from None
    if not isinstance(payload, dict):
        raise Answer(web.Response(status=400, text="bad payload: not a JSON object\n"))
    return repo, config, payload


def field(data: Any, *path: str) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def required(data: Any, *path: str) -> str:
    value = field(data, *path)
    if value is None or value == "" or isinstance(value, (dict, list, bool)):
        raise Answer(web.Response(status=400, text=f"bad payload: no {'.'.join(path)}\n"))
    return str(value)


def allowed(ctx: PluginContext, repo: dict[str, Any], config: dict[str, Any], event: str,
            branch: str | None = None) -> None:
    """Raise Answer(202 ignored) if the config turns `event` off or the branch filters leave `branch` out."""
    if event not in config["events"]:
        raise Answer(ctx.ignored(f"{event} events are turned off in repository {repo['_id']}'s {ctx.name} config"))
    if branch is not None and not ctx.branch_allowed(repo, branch):
        raise Answer(ctx.ignored(f"branch {branch} is left out by the repository's branch filters"))


def author(data: Any) -> dict[str, str]:
    data = data if isinstance(data, dict) else {}
    return {k: str(data[k]) for k in ("name", "email", "username") if data.get(k)}


def epoch(text: Any) -> float | None:
    """Seconds since 1970 from an ISO 8601 time (or GitLab's older "2013-12-03 17:23:34 UTC"); None if not one."""
    try:
        return datetime.fromisoformat(text.replace(" UTC", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


async def start(ctx: PluginContext, repo: dict[str, Any], **how: Any) -> web.Response:
    """Queue the job; 201 with it, or 422 saying why the queen refused it."""
    kind = how["trigger"]["type"]
    try:
        job = await ctx.trigger(repo, **how)
    except TriggerRefused as exc:
        ctx.log.warning("repository %s: the job of a %s webhook was refused: %s", repo["_id"], kind, exc)
        return web.Response(status=422, text=f"refused: {exc}\n")
    ctx.log.info("repository %s: job %s (#%s) queued by a %s webhook", repo["_id"], job["_id"], job["number"], kind)
    return ctx.queued([job])


def repo_path(url: str | None) -> str | None:
    """The path of a clone URL (https or ssh), without ``.git``: owner/name, group/sub/name."""
    path = "" if not url else urlsplit(url).path if "://" in url else url.partition(":")[2]
    return path.strip("/").removesuffix(".git") or None


def source_of(job: dict[str, Any], ctx: PluginContext) -> dict[str, Any]:
    """What this plugin recorded about the job's webhook ({} if none of its webhooks started the job)."""
    source = field(job, "trigger", "source") or {}
    return source if source.get("plugin") == ctx.name else {}


def describe(job: dict[str, Any], state: str) -> str:
    """A status's description: "running", "passed in 12 s", the error (at most 140 characters)."""
    status = job.get("status")
    if state in ("pending", "running") or status not in STATES:
        return "running"
    if status == "errored" and job.get("error"):
        return str(job["error"])[:140]
    if not (job.get("started") and job.get("finished")):
        return str(status)
    minutes, seconds = divmod(round(job["finished"] - job["started"]), 60)
    return f"{status} in {f'{minutes} min ' if minutes else ''}{seconds} s"


class _Order:
    """A job's statuses go out one at a time, none after its final one (start and end reactions may race)."""

    def __init__(self) -> None:
        self.locks: dict[str, asyncio.Lock] = {}
        self.ended: collections.deque[str] = collections.deque(maxlen=1000)


_orders: weakref.WeakKeyDictionary[PluginContext, _Order] = weakref.WeakKeyDictionary()


async def report(job: dict[str, Any], ctx: PluginContext, schema: dict[str, Any], state: str,
                 build: Callable[..., tuple[str, dict[str, Any], dict[str, str]] | None]) -> None:
    """POST the job's commit status, as JSON, if its repository uses this plugin, its ref names a
    commit and the token secret is set; `build(job, ctx, repo, config, state, token)` gives the URL,
    body and headers. Failures are logged, never raised."""
    repo = await ctx.repo(job["repo"]) if field(job, "ref", "id") else None
    config = None if repo is None else ctx.config_of(repo)
    if repo is None or config is None:
        return
    config = with_defaults(config, schema)
    token = await ctx.secret(repo["_id"], config["token_secret"])
    if not token:
        ctx.log.debug("job %s: no commit status: repository %s has no secret %s", job["_id"], repo["_id"],
                      config["token_secret"])
        return
    request = build(job, ctx, repo, config, state, token)
    if request is None:
        return
    url, body, headers = request
    job_id, final = job["_id"], state not in ("pending", "running")
    order = _orders.setdefault(ctx, _Order())
    try:
        async with order.locks.setdefault(job_id, asyncio.Lock()):
            if job_id in order.ended:
                return
            if final:
                order.ended.append(job_id)
            async with ctx.http.post(url, json=body, headers=headers) as resp:
                if resp.status >= 300:
                    ctx.log.warning("job %s: commit status %s refused by %s: %s %s", job_id, state, url,
                                    resp.status, (await resp.text())[:300])
                else:
                    ctx.log.debug("job %s: commit status %s sent", job_id, state)
    except (aiohttp.ClientError, TimeoutError) as exc:
        ctx.log.warning("job %s: commit status %s not sent to %s: %s: %s", job_id, state, url,
                        type(exc).__name__, exc)
    finally:
        if final:
            order.locks.pop(job_id, None)
