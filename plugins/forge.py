"""What the forge plugins (github, gitlab) share: receiving a signed webhook, reading payloads, commit statuses."""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from apiary.plugins.api import SECRET_NAME, AlreadyQueued, ConfigProblem, PluginContext, TriggerRefused

JOB_TYPES = ["TEST", "DEPLOY", "TEST_DEPLOY"]
MAX_PAYLOAD = 5 * 1024 * 1024
FINAL = {"passed", "failed", "errored", "cancelled"}


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
        if not SECRET_NAME.match(config.get(name) or ""):
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
    try:
        async for chunk in request.content.iter_chunked(65536):
            body += chunk
            if len(body) > MAX_PAYLOAD:
                raise too_big
    except RequestPayloadError:  # a bad Content-Encoding, or cut short
        raise Answer(web.Response(status=400, text="bad payload: cannot be read\n")) from None
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
        json.dumps(payload, ensure_ascii=False).encode()  # "\\ud800" parses, but no document can hold it
    except (ValueError, KeyError, RecursionError) as exc:
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


def tag_job_type(repo: dict[str, Any], config: dict[str, Any]) -> str:
    """The type of a tag push's job: TEST, unless the repository's settings ask for deploys on tags
    (``deploy_tags``); then the plugin's ``tag_type`` (default TEST_DEPLOY)."""
    return str(config.get("tag_type") or "TEST_DEPLOY") if repo.get("deploy_tags") is True else "TEST"


SKIP_MARKERS = ("[skip ci]", "[ci skip]", "[no ci]", "[skip apiary]", "[apiary skip]")


def skip_ci(kind: str, message: Any) -> str | None:
    """Why a webhook of `kind` whose head commit says `message` starts no job, or None: a branch push
    whose message holds one of SKIP_MARKERS (any case). Tags, pull requests and manual triggers never skip."""
    if kind != "push" or not isinstance(message, str):
        return None
    lowered = message.lower()
    found = next((m for m in SKIP_MARKERS if m in lowered), None)
    return None if found is None else f"the head commit's message says {found}"


async def start(ctx: PluginContext, repo: dict[str, Any], **how: Any) -> web.Response:
    """Queue the job; 201 with it, 200 with the job it queued when the delivery came before (a forge's
    redelivery), 202 when the head commit asks to skip CI (`skip_ci`), or 422 saying why the queen refused it."""
    kind = how["trigger"]["type"]
    if (skip := skip_ci(kind, how["trigger"].get("message"))) is not None:
        ctx.log.info("repository %s: %s webhook starts no job: %s", repo["_id"], kind, skip)
        return ctx.ignored(skip)
    try:
        job = await ctx.trigger(repo, **how)
    except AlreadyQueued as exc:
        ctx.log.info("repository %s: %s webhook delivered again (%s): job %s was queued for it", repo["_id"],
                     kind, how.get("source", {}).get("delivery"), exc.job["_id"])
        answer = ctx.queued([exc.job])
        answer.set_status(200)
        return answer
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
    if state in ("pending", "running") or status not in FINAL:
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
    body and headers. Failures are logged, never raised.

    A child job (a spread cell's, a shard's: it has a ``parent``) posts none: its job's status is the
    commit's, and a cell that passed after another failed would turn the commit green while its job ran."""
    if job.get("parent"):
        return
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
