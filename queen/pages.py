"""The dashboard: server-rendered HTML pages (Jinja2) over the same store the API reads.

Pages are made live by web/static/apiary.js over the WebSocket; when a piece
of a page changes it fetches the same piece rendered here again (the
``/parts/…`` routes), so each thing is formatted in one place, the templates.
Handlers are thin: they load, then render. The `error_pages` middleware turns
errors on non-API paths into HTML pages (never a traceback); the API keeps its
JSON errors (app.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp_jinja2
import yaml
from aiohttp import web
from pymongo.errors import PyMongoError

from apiary.core.context import view as context_view
from apiary.core.errors import InputError
from apiary.core.fields import is_web_link
from apiary.core.jobrequest import JOB_TYPES
from apiary.core.matrix import grouped, short_needs
from apiary.core.models import Job, Parameter, Repository
from apiary.core.outcome import layout, plain
from apiary.core.protocol import JobStatus
from apiary.queen import estimate
from apiary.queen.api import load_job, load_repo, outcome_of, public_job
from apiary.queen.approvals import gates_view
from apiary.queen.badges import NO_JOBS, badge_branch, badge_for, badge_svg, built_from, last_finished
from apiary.queen.comments import page_context as comment_context
from apiary.queen.repos import REPO_NAME, stored_pipeline
from apiary.queen.store import chunks
from apiary.queen.trust import DEFAULT_KINDS, KINDS

from . import keys

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

JOBS_SHOWN = 50


# -- formatting, for the templates -----------------------------------------------------

def fmt_duration(seconds: float | None) -> str:
    """1.2s, 45s, 3m 07s, 2h 05m."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def fmt_bytes(n: int | float | None) -> str:
    if not n:
        return "0 B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def fmt_time(ts: float | None) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else ""
    except (OverflowError, OSError, ValueError):  # a time no clock shows: a page must still render
        return ""


def fmt_iso(ts: float | None) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else ""
    except (OverflowError, OSError, ValueError):
        return ""


def fmt_ago(ts: float | None) -> str:
    if not ts:
        return ""
    delta = max(0.0, time.time() - ts)
    if delta < 5:
        return "just now"
    if delta < 60:
        return f"{int(delta)}s ago"
    if delta < 3600:
        return f"{int(delta // 60)} min ago"
    if delta < 86400:
        return f"{int(delta // 3600)} h ago"
    return f"{int(delta // 86400)} d ago"


def web_link(url: object) -> str:
    """`url` if a page may link to it (http or https), else "": stored data from before the check is never a link."""
    return url if isinstance(url, str) and is_web_link(url) else ""


FILTERS: dict[str, Callable[..., Any]] = {
    "duration": fmt_duration, "bytes": fmt_bytes, "time": fmt_time, "iso": fmt_iso, "ago": fmt_ago,
    "web_link": web_link,
}


def job_view(doc: Job) -> dict[str, Any]:
    """A job as the templates show it: the API's fields plus a few derived ones."""
    job = public_job(doc)
    trigger = job.get("trigger") or {}
    source = trigger.get("source") or {}
    author = trigger.get("author") or {}
    ref = job.get("ref") or {}
    job["final"] = JobStatus(job["status"]).final
    # Only a plugin names its source; a name an API client stored before that was refused is not shown.
    name = source.get("name") if source.get("type") == "plugin" else None
    job["source"] = name or source.get("plugin") or source.get("type") or "API"
    by = doc.get("triggered_by") or {}
    if by.get("kind") == "bisect":  # a bisect's job: "bisect #3 · ada", not "API · ada"
        job["source"] = f"bisect {by.get('name') or ''}".strip()
    job["author"] = (author.get("name") or author.get("username") or author.get("login") or author.get("email")
                     or "")
    if job["author"] == job["source"]:  # a schedule's job: "schedule · schedule" says nothing more
        job["author"] = ""
    job["ref_name"] = ref.get("branch") or ref.get("fetch") or ""
    job["commit"] = ref.get("id") or ""
    job.update(context_view(doc))  # who triggered it, the commit's message and author, web links
    return job


# -- rendering and errors ---------------------------------------------------------------

def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    context.setdefault("version", request.app[keys.VERSION])
    context.setdefault("now", time.time())
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers["Cache-Control"] = "no-cache"
    return response


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    """An HTML error page; plain HTML if even the template fails."""
    title = {404: "Not found", 500: "Something went wrong"}.get(status, f"Error {status}")
    try:
        return render(request, "error.html", status=status, title=title, status_code=status, message=message)
    except Exception:
        log.exception("the error page itself failed")
        return web.Response(status=status, content_type="text/html",
                            text=f"<!doctype html><title>{status}</title><h1>{status}</h1>")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTML error pages for the dashboard's paths; /api and /ws pass through to app.py's JSON."""
    if request.path.startswith("/api/") or request.path == "/ws":
        return await handler(request)
    try:
        return await handler(request)
    except InputError as exc:
        return error_page(request, exc.status, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = "There is no such page." if exc.status == 404 else exc.reason
        return error_page(request, exc.status, message)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_page(request, 500, "The queen could not show this page; its log has the details.")


# -- loading ------------------------------------------------------------------------------

async def recent_jobs(request: web.Request, repo: str | None = None,
                      branch: str | None = None) -> list[dict[str, Any]]:
    docs = await request.app[keys.STORE].list_jobs(repo, branch=branch or None, limit=JOBS_SHOWN)
    views = [job_view(d) for d in docs]
    estimate.shown(views, await estimate.of_jobs(request.app, docs))  # running and queued: time left
    return views


def declared_parameters(repo: Repository) -> tuple[dict[str, Parameter] | None, str]:
    """The stored pipeline's parameters (None when read from the repository) and any fault in it."""
    if repo.get("pipeline_source") != "queen":
        return None, ""
    try:
        return stored_pipeline(repo).get("parameters") or {}, ""
    except InputError as exc:  # a PipelineError
        return {}, str(exc)


def base_url(request: web.Request) -> str:
    return request.app[keys.CONFIG].public_url.rstrip("/") or f"{request.scheme}://{request.host}"


# -- pages ------------------------------------------------------------------------------------

@routes.get("/")
async def dashboard(request: web.Request) -> web.Response:
    repos = await request.app[keys.STORE].list_repos()
    return render(request, "dashboard.html", page="dashboard", jobs=await recent_jobs(request),
                  repos=[r["_id"] for r in repos])


@routes.get("/repos/new")
async def new_repo(request: web.Request) -> web.Response:
    return render(request, "settings.html", page="settings", repo=None, secrets=[], webhook=None,
                  base=base_url(request), plugins_text="", available=_available(request),
                  **_providers(request))


@routes.get("/repos/{repo}")
async def repo_page(request: web.Request) -> web.Response:
    repo = await load_repo(request)
    branch = request.query.get("branch", "")
    jobs = await recent_jobs(request, repo["_id"], branch)
    # Branches seen in recent jobs, the default first: the filter and the trigger offer them.
    seen = await request.app[keys.STORE].list_jobs(repo["_id"], limit=200)
    branches = [repo["default_branch"]] + sorted(
        {b for j in seen if (b := (j.get("ref") or {}).get("branch"))} - {repo["default_branch"]})
    # Pull requests and other fetched refs, and pull requests' head and base branches: in the history filter
    # (which finds a pull request's jobs by either branch), not offered to the trigger.
    fetched = sorted({f for j in seen if (f := (j.get("ref") or {}).get("fetch"))}
                     | {b for j in seen for key in ("head_branch", "base_branch")
                        if (b := (j.get("trigger") or {}).get(key))} - set(branches))
    parameters, pipeline_error = declared_parameters(repo)
    declared_by = None
    if parameters is None:
        # Read from the repository at each job's commit: the fields its newest job of the default branch was
        # given (the commit's pipeline still decides; a parameter it no longer declares is refused, by name).
        # (One that speaks for the branch: not a bisect's old commit, nor a child job's part of a pipeline.)
        latest = next((j for j in seen if built_from(j, repo["default_branch"])), None)
        job = await request.app[keys.STORE].get_job(latest["_id"]) if latest else None
        declared = ((job or {}).get("pipeline") or {}).get("parameters")
        if isinstance(declared, dict) and declared:
            parameters = declared
            declared_by = {"id": latest["_id"], "number": latest.get("number"),
                           "commit": (latest.get("ref") or {}).get("id") or ""}
    return render(request, "repo.html", page="repo", repo=repo, jobs=jobs, branch=branch, branches=branches,
                  fetched=fetched, declared_by=declared_by,
                  parameters=parameters, pipeline_error=pipeline_error, job_types=JOB_TYPES)


@routes.get("/repos/{repo}/settings")
async def repo_settings(request: web.Request) -> web.Response:
    repo = await load_repo(request)
    secrets = await request.app[keys.STORE].secret_names(repo["_id"])
    pipeline = repo.get("pipeline")
    if pipeline is not None and not isinstance(pipeline, str):
        # A pipeline stored as JSON is shown as YAML to edit (the API takes either).
        pipeline = yaml.safe_dump(pipeline, sort_keys=False)
    plugins = repo.get("plugins") or []
    offered = _providers(request)
    plugin = webhook_plugin(repo.get("provider") or "git", [p["name"] for p in plugins], offered["hooked"])
    webhook = None if plugin is None else {
        "url": f"{base_url(request)}/hooks/{plugin[0]}/{repo['_id']}", "plugin": plugin[0], "in_use": plugin[1]}
    return render(request, "settings.html", page="settings", repo=repo, pipeline_text=pipeline or "",
                  secrets=secrets, webhook=webhook, base=base_url(request), available=_available(request),
                  plugins_text=yaml.safe_dump(plugins, sort_keys=False) if plugins else "",
                  kinds=KINDS, default_kinds=DEFAULT_KINDS, **offered)


# A forge and the plugin whose webhook takes its deliveries: Gitea's are GitHub's (its X-Gitea-Signature is
# checked by the github plugin). A provider not here (git, the default) has no webhook.
PROVIDER_PLUGINS = {"github": "github", "gitlab": "gitlab", "gitea": "github"}


def webhook_plugin(provider: str, used: list[str], hooked: list[str]) -> tuple[str, bool] | None:
    """The plugin whose webhook URL the settings page shows, and whether the repository uses it already;
    None when there is no webhook to show (no URL that would answer 404).

    `used`: the repository's plugins, in order; `hooked`: the queen's plugins that take webhooks. A plugin the
    repository uses comes first; else its provider's, which the page asks to add (its webhook ignores a
    repository that does not use it)."""
    for name in used:
        if name in hooked:
            return name, True
    mapped = PROVIDER_PLUGINS.get(provider)
    if mapped in hooked:
        return mapped, False
    return None


def _providers(request: web.Request) -> dict[str, Any]:
    """The queen's plugins with a webhook, and the providers the settings page offers: git, and each forge
    whose plugin is there."""
    loaded = request.app[keys.PLUGINS].loaded
    hooked = sorted(name for name, plugin in loaded.items() if hasattr(plugin, "webhook"))
    forges = [p for p, plugin in PROVIDER_PLUGINS.items() if plugin in hooked]
    return {"hooked": hooked, "providers": ["git", *forges],
            "forges": [(p, PROVIDER_PLUGINS[p]) for p in forges]}


def _available(request: web.Request) -> list[tuple[str, dict[str, Any]]]:
    """The queen's plugins and their settings, for the settings page."""
    plugins = request.app[keys.PLUGINS]
    return [(name, plugins.schema(name)) for name in sorted(plugins.loaded)]


@routes.get("/jobs/{job}")
async def job_page(request: web.Request) -> web.Response:
    doc = await load_job(request)
    job = job_view(doc)
    estimate.shown([job], await estimate.of_jobs(request.app, [doc]))  # running or queued: time left
    artifacts = await request.app[keys.STORE].list_artifacts(job["id"])
    outcome = outcome_view(await outcome_of(request.app[keys.STORE], doc))
    gates = gates_view(doc, request.get("identity"), bool(request.app[keys.GATE].users_exist))  # approvals
    return render(request, "job.html", page="job", job=job, artifacts=artifacts, outcome=outcome, gates=gates,
                  **await comment_context(request, job["id"]))  # comments on the job (apiary.queen.comments)


def outcome_view(outcome: dict[str, Any]) -> dict[str, Any]:
    """A job's outcome as parts/job_outcome.html shows it: its stages in graph columns, the failed
    command's last lines without terminal colours, and the command a cancel stopped."""
    after = short_needs(outcome["stages"])  # a matrix's cells named once, by their stage (core/matrix.py)
    stages = {s["name"]: {**s, "after": after[s["name"]]} for s in outcome["stages"]}
    failure = outcome["failure"]
    if failure is not None:
        failure = {**failure, "last_lines": [plain(line) for line in failure["last_lines"]]}
    cancelled_in = next(({"stage": s["name"], **c} for s in outcome["stages"] for c in s["commands"]
                         if c["status"] == "cancelled"), None)
    return {**outcome, "failure": failure, "cancelled_in": cancelled_in,
            "columns": [grouped([stages[name] for name in column])  # a matrix's cells together (core/matrix.py)
                        for column in layout(outcome["stages"])]}


OUTPUT_TYPES = ("job:cmd:stdout", "job:cmd:stderr", "job:stdout", "job:stderr")


@routes.get("/jobs/{job}/log")
async def raw_log(request: web.Request) -> web.StreamResponse:
    """Everything the job printed, both streams of every command, in the order it was stored.

    A client that accepts zstd gets the stored frames one after the other (``Content-Encoding: zstd``):
    the queen sends the log as it keeps it, without decompressing it. One that prefers gzip gets it
    gzipped; others get plain text. HEAD gets the headers only.
    """
    job = await load_job(request)
    store = request.app[keys.STORE]
    coding = log_coding(request.headers.get("Accept-Encoding", ""))
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8",
                                           "Cache-Control": "no-cache", "Vary": "Accept-Encoding"})
    if coding == "zstd":
        response.headers["Content-Encoding"] = "zstd"
    elif coding == "gzip":
        response.enable_compression(web.ContentCoding.gzip)
    if request.method == "HEAD":
        # No body at all: bytes after a HEAD's headers would be read as the answer to the connection's
        # next request (and a job decides what its log says).
        response.content_length = 0
        await response.prepare(request)
        return response
    await response.prepare(request)
    sent = False
    try:
        frames = store.output_frames(job["_id"], OUTPUT_TYPES)
        try:
            async for frame in frames:
                await response.write(frame if coding == "zstd" else chunks.zstd.decompress(frame))
                sent = True
        finally:
            await frames.aclose()  # the store's cursor goes with a client that went away
        if coding == "zstd" and not sent:
            await response.write(chunks.compress(""))  # an empty log is still one valid zstd frame
    except ConnectionError:  # the client went away: nothing to tell anyone
        log.debug("raw log of job %s: the client went away", job["_id"])
        return response
    except PyMongoError as exc:  # the headers are sent already: say so in the text
        log.warning("raw log of job %s cut short: %s", job["_id"], exc)
        note = f"\n[apiary: the log is cut short here: {exc}]\n"
        await response.write(chunks.compress(note) if coding == "zstd" else note.encode())
    await response.write_eof()
    return response


CODINGS = {"zstd": "zstd", "gzip": "gzip", "x-gzip": "gzip"}


def log_coding(accept: str) -> str:
    """The content coding for a raw log given an Accept-Encoding header (RFC 9110 §12.5.3): the one the
    client weighs highest among zstd and gzip (x-gzip is gzip; zstd on a tie: the log is kept so),
    "identity" when it accepts neither. A coding with q=0, or a q that is not a number from 0 to 1, is
    not accepted; ``*`` stands for those the header does not name."""
    weights: dict[str, float] = {}
    for item in accept.split(","):
        name, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
                if not 0.0 <= quality <= 1.0:  # nan, inf, out of range: refused
                    quality = 0.0
        name = name.strip().lower()
        if name:
            coding = CODINGS.get(name, name)
            weights[coding] = max(weights.get(coding, 0.0), quality)
    best, best_q = "identity", 0.0
    for coding in ("zstd", "gzip"):
        quality = weights.get(coding, weights.get("*", 0.0))
        if quality > best_q:
            best, best_q = coding, quality
    return best


async def drones_context(request: web.Request) -> dict[str, Any]:
    """The pool, and "repo #number" for each job it runs."""
    hive = request.app[keys.HIVE]
    drones = hive.drones()
    labels = {}
    for job_id in {j for d in drones for j in d["jobs"]}:
        job = await request.app[keys.STORE].get_job(job_id)
        if job is not None:
            labels[job_id] = f"{job['repo']} #{job.get('number', '?')}"
    return {"drones": drones, "labels": labels, "endpoint": hive.endpoint}


@routes.get("/drones")
async def drones_page(request: web.Request) -> web.Response:
    return render(request, "drones.html", page="drones", **await drones_context(request))


# -- parts: pieces of pages the script fetches again when they change -------------------

@routes.get("/parts/jobs")
async def part_job_rows(request: web.Request) -> web.Response:
    repo = request.query.get("repo") or None
    jobs = await recent_jobs(request, repo, request.query.get("branch"))
    return render(request, "parts/job_rows.html", jobs=jobs, show_repo=repo is None)


@routes.get("/parts/jobs/{job}")
async def part_job_row(request: web.Request) -> web.Response:
    doc = await load_job(request)
    job = job_view(doc)
    estimate.shown([job], await estimate.of_jobs(request.app, [doc]))  # running and queued: time left
    return render(request, "parts/job_rows.html", jobs=[job], show_repo=request.query.get("repo") is None)


@routes.get("/parts/jobs/{job}/summary")
async def part_job_summary(request: web.Request) -> web.Response:
    doc = await load_job(request)
    job = job_view(doc)
    estimate.shown([job], await estimate.of_jobs(request.app, [doc]))  # running or queued: time left
    artifacts = await request.app[keys.STORE].list_artifacts(job["id"])
    return render(request, "parts/job_summary.html", job=job, artifacts=artifacts)


@routes.get("/parts/jobs/{job}/outcome")
async def part_job_outcome(request: web.Request) -> web.Response:
    outcome = await outcome_of(request.app[keys.STORE], await load_job(request))
    return render(request, "parts/job_outcome.html", outcome=outcome_view(outcome))


@routes.get("/parts/drones")
async def part_drones(request: web.Request) -> web.Response:
    return render(request, "parts/drones.html", **await drones_context(request))


# -- badges -------------------------------------------------------------------------------

async def _badge(request: web.Request, branch: str | None) -> web.Response:
    name = request.match_info["repo"]
    store = request.app[keys.STORE]
    headers = {"Cache-Control": "no-cache", "Content-Type": "image/svg+xml; charset=utf-8"}
    repo = await store.get_repo(name) if REPO_NAME.match(name) else None
    if repo is None:
        return web.Response(status=404, text=badge_svg("build", "unknown repository", NO_JOBS), headers=headers)
    job = await last_finished(store, name, badge_branch(repo.get("default_branch") or "main", branch))
    return web.Response(text=badge_for("build", job), headers=headers)


@routes.get("/badge/{repo}.svg")
async def repo_badge(request: web.Request) -> web.Response:
    return await _badge(request, request.query.get("branch") or None)  # else the default branch


@routes.get("/badge/{repo}/{branch:.+}.svg")
async def branch_badge(request: web.Request) -> web.Response:
    return await _badge(request, request.match_info["branch"])
