"""The REST API under /api/v1: thin handlers over the store, the job factory and the hive.

Errors are JSON ``{"error": message, "field": name}`` with the HTTP status of
the InputError raised (see errors.py); the middleware in app.py maps them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from apiary.core.bisect import bisect_pipeline, rerun_by
from apiary.core.context import links, triggered_by
from apiary.core.errors import BadRequest, Conflict, NotFound
from apiary.core.fields import ENV_NAME, get_str, no_unknown
from apiary.core.jobrequest import job_request
from apiary.core.models import Job, JobRequest, Repository
from apiary.core.outcome import job_outcome, last_lines
from apiary.core.protocol import JobStatus
from apiary.core.secretvalue import unmaskable
from apiary.core.spread import family_report, first_start
from apiary.queen import estimate
from apiary.queen.jobs import create_job
from apiary.queen.logsearch import DEFAULT_MATCHES, MAX_MATCHES, search_output, search_query
from apiary.queen.repos import REPO_NAME, public_repo, repo_from_body
from apiary.queen.resume import from_failed
from apiary.queen.retention import prune
from apiary.queen.store import Store
from apiary.queen.strict_json import json_response
from apiary.queen.trust import KINDS, job_kind
from apiary.queen.validate import query_int, read_json

from . import keys

routes = web.RouteTableDef()

MAX_EVENTS_PAGE = 20_000


def public_job(doc: Job) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in ("_id", "commands")}
    commands = doc.get("commands") or {}
    out["commands"] = sorted(commands.values(), key=lambda c: c.get("num", 0))
    started, finished = doc.get("started"), doc.get("finished")
    if doc.get("children"):  # a parent's time runs from its first start, across its wait for its child jobs
        started = first_start(doc) or started
    if out.pop("family_reports", None):  # its children's test reports add up on it (a sharded stage's tests)
        out["report"] = family_report(doc.get("report"), doc["family_reports"])
    if started and finished:
        out["duration"] = round(finished - started, 6)
    out["links"] = links(doc)  # the commit's, the branch's, the pull request's web pages, those known
    return {"id": doc["_id"], **out}


# -- repositories -----------------------------------------------------------------

@routes.get("/api/v1/repos")
async def list_repos(request: web.Request) -> web.Response:
    store = request.app[keys.STORE]
    return json_response({"repos": [public_repo(r) for r in await store.list_repos()]})


@routes.post("/api/v1/repos")
async def create_repo(request: web.Request) -> web.Response:
    repo = repo_from_body(await read_json(request), plugins=request.app[keys.PLUGINS])
    await request.app[keys.STORE].insert_repo(repo)
    return json_response(public_repo(repo), status=201, headers={"Location": f"/api/v1/repos/{repo['_id']}"})


@routes.put("/api/v1/repos/{repo}")
async def put_repo(request: web.Request) -> web.Response:
    name = repo_name(request)
    repo = repo_from_body(await read_json(request), name, plugins=request.app[keys.PLUGINS])
    store = request.app[keys.STORE]
    old = await store.get_repo(name)
    if old is not None:
        repo["created"] = old.get("created", repo["created"])
    created = await store.replace_repo(repo)
    return json_response(public_repo(repo), status=201 if created else 200)


@routes.get("/api/v1/repos/{repo}")
async def get_repo(request: web.Request) -> web.Response:
    return json_response(public_repo(await load_repo(request)))


# -- secrets (write-only) ------------------------------------------------------------

@routes.get("/api/v1/repos/{repo}/secrets")
async def list_secrets(request: web.Request) -> web.Response:
    repo = await load_repo(request)
    return json_response({"secrets": await request.app[keys.STORE].secret_names(repo["_id"])})


@routes.put("/api/v1/repos/{repo}/secrets/{name}")
async def put_secret(request: web.Request) -> web.Response:
    """Set a secret's value (write-only) and/or the kinds of job that get it (queen/trust.py)."""
    repo = await load_repo(request)
    name = _secret_name(request)
    body = await read_json(request)
    no_unknown(body, {"value", "kinds"})
    value = get_str(body, "value")
    kinds = _kinds(body.get("kinds"))
    if value is None and kinds is None:
        raise BadRequest("value: required (or kinds, to change only which jobs get it)", field="value")
    if value is not None and (problem := unmaskable(value)) is not None:
        raise BadRequest(f"value: {problem}", field="value")
    store = request.app[keys.STORE]
    if not await store.set_secret(repo["_id"], name, value, kinds):
        raise NotFound(f"repository {repo['_id']!r} has no secret {name!r}; give its value", field="value")
    stored = next(s for s in await store.secret_names(repo["_id"]) if s["name"] == name)
    return json_response({"name": name, "set": True, "kinds": stored["kinds"]})


def _kinds(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(k, str) and k in KINDS for k in value):
        raise BadRequest(f"kinds: a list of kinds of job that get the secret: {', '.join(KINDS)}", field="kinds")
    return sorted(set(value), key=KINDS.index)


@routes.delete("/api/v1/repos/{repo}/secrets/{name}")
async def delete_secret(request: web.Request) -> web.Response:
    repo = await load_repo(request)
    name = _secret_name(request)
    if not await request.app[keys.STORE].delete_secret(repo["_id"], name):
        raise NotFound(f"repository {repo['_id']!r} has no secret {name!r}")
    return json_response({"name": name, "deleted": True})


# -- jobs ---------------------------------------------------------------------------

async def _create(request: web.Request, repo: Repository, asked: JobRequest, **kwargs: Any) -> web.Response:
    app = request.app
    job = await create_job(app[keys.STORE], app[keys.HIVE].dispatcher, app[keys.CONFIG].data_path / "git",
                           repo, asked, plugins=app[keys.PLUGINS], **kwargs)
    return json_response(public_job(job), status=201, headers={"Location": f"/api/v1/jobs/{job['_id']}"})


@routes.post("/api/v1/repos/{repo}/jobs")
async def trigger_job(request: web.Request) -> web.Response:
    repo = await load_repo(request)
    return await _create(request, repo, job_request(repo, await read_json(request), time.time()),
                         by=triggered_by(request.get("identity")))


@routes.post("/api/v1/jobs/{job}/rerun")
async def rerun_job(request: web.Request) -> web.Response:
    old = await load_job(request)
    if isinstance(old.get("parent"), dict):  # a spread cell's or a shard's job: one part of its parent's run
        raise Conflict(f"job #{old.get('number')} is a child job of job #{old['parent'].get('number')}: re-run "
                       "that job (or from its failed stage)", field="job")
    repo = await request.app[keys.STORE].get_repo(old["repo"])
    if repo is None:
        raise NotFound(f"the repository {old['repo']!r} of job {old['_id']} no longer exists")
    body = await read_json(request) if request.can_read_body else {}
    no_unknown(body, {"trigger", "from_failed"})
    if not isinstance(body.get("from_failed", False), bool):
        raise BadRequest("from_failed: true or false", field="from_failed")
    # From its failed stage: the stages that passed are reused, their artifacts restored (apiary.queen.resume).
    resume = await from_failed(request.app[keys.STORE], old, await outcome_of(request.app[keys.STORE], old)) \
        if body.get("from_failed") else None
    # The same job again: its ref (with the commit it ran), type and parameters; a trigger of its own.
    ref: Mapping[str, Any] = old["ref"]
    given = {field: ref[key] for field, key in (("branch", "branch"), ("fetch", "fetch"), ("commit", "id"))
             if key in ref}
    asked = job_request(repo, {**given, "type": old["type"], "parameters": dict(old.get("parameters") or {}),
                               "trigger": body.get("trigger")}, time.time())
    asked["trigger"]["type"] = "rerun"
    by = triggered_by(request.get("identity"), rerun_of=old["_id"])
    shape = None
    if (old.get("triggered_by") or {}).get("kind") == "bisect":  # stays a bisect's kind (apiary.core.bisect)
        by, shape = rerun_by(old["triggered_by"], by), bisect_pipeline
    # The re-run is trusted as the job it repeats: a fork's pull request stays one.
    return await _create(request, repo, asked, rerun_of=old["_id"],
                         kind=old.get("kind") or job_kind(old.get("trigger") or {}),
                         by=by, resume=resume, shape=shape)


@routes.post("/api/v1/jobs/{job}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    job = await load_job(request)
    if JobStatus(job["status"]).final:
        raise Conflict(f"job {job['_id']} has already ended ({job['status']})", field="status")
    status = await request.app[keys.HIVE].cancel(job)
    return json_response({"id": job["_id"], "status": status}, status=202)


@routes.get("/api/v1/repos/{repo}/jobs")
async def list_repo_jobs(request: web.Request) -> web.Response:
    repo = await load_repo(request)
    limit = query_int(request, "limit", 50, 1, 500)
    number = query_int(request, "number", 0, 1, 2**53) if "number" in request.query else None
    jobs = await request.app[keys.STORE].list_jobs(
        repo["_id"], branch=request.query.get("branch"), before=request.query.get("before"), limit=limit,
        number=number)
    return json_response({"jobs": await _listed(request, jobs)})


@routes.get("/api/v1/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 50, 1, 500)
    jobs = await request.app[keys.STORE].list_jobs(
        branch=request.query.get("branch"), before=request.query.get("before"), limit=limit)
    return json_response({"jobs": await _listed(request, jobs)})


async def _listed(request: web.Request, jobs: list[Job]) -> list[dict[str, Any]]:
    """Jobs as a list answers them: each running or queued one with its estimate, when it has one."""
    found = await estimate.of_jobs(request.app, jobs)  # apiary.queen.estimate
    return [public_job(j) | ({"estimate": found[j["_id"]]} if j["_id"] in found else {}) for j in jobs]


@routes.get("/api/v1/jobs/{job}")
async def get_job(request: web.Request) -> web.Response:
    doc = await load_job(request)
    job = public_job(doc)
    expected = await estimate.of_job(request.app, doc)
    if expected is not None:  # running or queued, and earlier jobs passed: how long it has left
        job["estimate"] = expected
    return json_response(job)


@routes.get("/api/v1/jobs/{job}/search")
async def search_job_output(request: web.Request) -> web.Response:
    """Lines of a job's command output holding ``q`` (apiary.queen.logsearch has the shape)."""
    job = await load_job(request)
    text = search_query(request.query.get("q"))
    limit = query_int(request, "limit", DEFAULT_MATCHES, 1, MAX_MATCHES)
    return json_response(await search_output(request.app[keys.STORE], job["_id"], text, limit))


@routes.get("/api/v1/jobs/{job}/events")
async def job_events(request: web.Request) -> web.Response:
    job = await load_job(request)
    after = query_int(request, "after", 0, 0, 2**62)
    limit = query_int(request, "limit", MAX_EVENTS_PAGE, 1, MAX_EVENTS_PAGE)
    events, more = await request.app[keys.STORE].events_after(job["_id"], after, limit)
    last = events[-1]["seq"] if events else after
    return json_response({"job": job["_id"], "status": job["status"], "events": events, "last": last,
                          "more": more})


@routes.get("/api/v1/jobs/{job}/outcome")
async def get_job_outcome(request: web.Request) -> web.Response:
    """Why the job ended as it did and where each stage stands (apiary.core.outcome has the shape)."""
    return json_response(await outcome_of(request.app[keys.STORE], await load_job(request)))


_CMD_OUTPUT = ("job:cmd:stdout", "job:cmd:stderr")


async def outcome_of(store: Store, job: Job) -> dict[str, Any]:
    """A job's outcome: from its document and its events other than output (the drone's own lines
    included: they say why a stage was skipped), with the last lines of the command that failed it."""
    # The drone's own lines say why stages were skipped. Which attempt each command belongs to, and what
    # ended before a cancel, need the commands' events too: a first attempt that was not cancelled does
    # without them (a job of 500 commands: 0.02 s a request instead of 0.07 s).
    if int(job.get("attempts") or 0) <= 1 and job.get("status") != "cancelled":
        types: tuple[str, ...] = ("job:stderr",)
    else:
        types = ("job:started", "job:cmd:start", "job:cmd:done", "job:stderr")
    result = job_outcome(job, await store.events_of_types(job["_id"], types))
    failure = result["failure"]
    if failure is not None and failure["num"] is not None:
        failure["last_lines"] = last_lines(await store.command_tail(job["_id"], failure["num"], _CMD_OUTPUT))
    return result


# -- artifacts -------------------------------------------------------------------------

@routes.get("/api/v1/jobs/{job}/artifacts")
async def list_artifacts(request: web.Request) -> web.Response:
    job = await load_job(request)
    artifacts = await request.app[keys.STORE].list_artifacts(job["_id"])
    for a in artifacts:
        a["url"] = f"/api/v1/jobs/{job['_id']}/artifacts/{quote(a['name'])}"
    return json_response({"artifacts": artifacts})


@routes.get("/api/v1/jobs/{job}/artifacts/{name:.+}")
async def download_artifact(request: web.Request) -> web.StreamResponse:
    job = await load_job(request)
    name = request.match_info["name"]
    store = request.app[keys.STORE]
    found = {a["name"]: a for a in await store.list_artifacts(job["_id"])}.get(name)
    if found is None:
        raise NotFound(f"job {job['_id']} has no artifact {name!r}")
    response = web.StreamResponse(headers={
        "Content-Type": "application/octet-stream", "Content-Length": str(found["size"]),
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name.rsplit('/', 1)[-1], safe='')}"})
    await response.prepare(request)
    for part in range(found["parts"]):
        await response.write(await store.read_artifact_part(job["_id"], name, part))
    await response.write_eof()
    return response


# -- drones, housekeeping --------------------------------------------------------------

@routes.get("/api/v1/drones")
async def list_drones(request: web.Request) -> web.Response:
    # The endpoint too: what `apiary drones` tells a new drone to connect to (the queen's real port).
    hive = request.app[keys.HIVE]
    return json_response({"drones": hive.drones(), "endpoint": hive.endpoint})


@routes.post("/api/v1/prune")
async def prune_now(request: web.Request) -> web.Response:
    return json_response({"deleted": await prune(request.app[keys.STORE])})


@routes.get("/api/v1")
async def api_index(request: web.Request) -> web.Response:
    return json_response({
        "apiary": request.app[keys.VERSION],
        "links": ["/api/v1/repos", "/api/v1/jobs", "/api/v1/drones", "/ws"],
    })


# -- lookups -----------------------------------------------------------------------

def repo_name(request: web.Request) -> str:
    name = request.match_info["repo"]
    if not REPO_NAME.match(name):
        raise NotFound(f"no repository {name!r}")
    return name


def _secret_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not ENV_NAME.match(name):
        raise BadRequest(f"name: {name!r} is not a secret name (letters, digits and '_', not starting with a digit)",
                         field="name")
    return name


async def load_repo(request: web.Request) -> Repository:
    """The repository named in the path, or NotFound (the pages use it too)."""
    name = repo_name(request)
    repo = await request.app[keys.STORE].get_repo(name)
    if repo is None:
        raise NotFound(f"no repository {name!r}")
    return repo


async def load_job(request: web.Request) -> Job:
    job_id = request.match_info["job"]
    job = await request.app[keys.STORE].get_job(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}; it may have been pruned")
    return job
