"""The REST API under /api/v1: thin handlers over the store and the hive.

Errors are JSON ``{"error": message, "field": name}`` with the HTTP status of
the RequestError raised (see errors.py); the middleware in app.py maps them.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import ulid
from aiohttp import web

from . import keys
from .errors import BadRequest, NotFound
from .pipeline import parse_pipeline
from .protocol import JobStatus, JobType

routes = web.RouteTableDef()

REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$")
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
TRIGGER_SOURCES = ("UI", "API", "plugin")
MAX_EVENTS_PAGE = 20_000


# -- request helpers ------------------------------------------------------------

async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=json.loads)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"body: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", field="body") from None
    except UnicodeDecodeError:
        raise BadRequest("body: not UTF-8 text", field="body") from None
    if not isinstance(body, dict):
        raise BadRequest("body: must be a JSON object", field="body")
    return body


def get_str(body: dict[str, Any], name: str, default: str | None = None, *, required: bool = False,
            pattern: re.Pattern[str] | None = None, prefix: str = "") -> str | None:
    field = prefix + name
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{field}: required", field=field)
        return default
    if not isinstance(value, str):
        raise BadRequest(f"{field}: must be a string, got {type(value).__name__}", field=field)
    if pattern is not None and not pattern.match(value):
        raise BadRequest(f"{field}: {value!r} is not allowed here", field=field)
    return value


def no_unknown(body: dict[str, Any], known: set[str], prefix: str = "") -> None:
    for key in body:
        if key not in known:
            raise BadRequest(f"{prefix}{key}: unknown field (known: {', '.join(sorted(known))})", field=prefix + key)


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}: must be an integer, got {raw!r}", field=name) from None
    if not low <= value <= high:
        raise BadRequest(f"{name}: must be between {low} and {high}, got {value}", field=name)
    return value


# -- what the API shows ---------------------------------------------------------

def public_repo(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k != "_id"}
    return {"name": doc["_id"], **out}


def public_job(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in ("_id", "commands")}
    commands = doc.get("commands") or {}
    out["commands"] = sorted(commands.values(), key=lambda c: c.get("num", 0))
    if doc.get("started") and doc.get("finished"):
        out["duration"] = round(doc["finished"] - doc["started"], 6)
    return {"id": doc["_id"], **out}


# -- repositories -----------------------------------------------------------------

REPO_FIELDS = {"name", "url", "provider", "default_branch", "pipeline"}


def repo_from_body(body: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    no_unknown(body, REPO_FIELDS)
    if name is None:
        name = get_str(body, "name", required=True, pattern=REPO_NAME)
    elif "name" in body and body["name"] != name:
        raise BadRequest(f"name: {body['name']!r} differs from the name in the URL ({name!r})", field="name")
    if "pipeline" not in body:
        raise BadRequest("pipeline: required", field="pipeline")
    now = time.time()
    return {
        "_id": name,
        "url": get_str(body, "url", ""),
        "provider": get_str(body, "provider", "git"),
        "default_branch": get_str(body, "default_branch", "main") or "main",
        "pipeline": parse_pipeline(body["pipeline"]),
        "created": now,
        "updated": now,
    }


@routes.get("/api/v1/repos")
async def list_repos(request: web.Request) -> web.Response:
    store = request.app[keys.STORE]
    return web.json_response({"repos": [public_repo(r) for r in await store.list_repos()]})


@routes.post("/api/v1/repos")
async def create_repo(request: web.Request) -> web.Response:
    repo = repo_from_body(await read_json(request))
    await request.app[keys.STORE].insert_repo(repo)
    return web.json_response(public_repo(repo), status=201, headers={"Location": f"/api/v1/repos/{repo['_id']}"})


@routes.put("/api/v1/repos/{repo}")
async def put_repo(request: web.Request) -> web.Response:
    name = _repo_name(request)
    repo = repo_from_body(await read_json(request), name)
    store = request.app[keys.STORE]
    old = await store.get_repo(name)
    if old is not None:
        repo["created"] = old.get("created", repo["created"])
    created = await store.replace_repo(repo)
    return web.json_response(public_repo(repo), status=201 if created else 200)


@routes.get("/api/v1/repos/{repo}")
async def get_repo(request: web.Request) -> web.Response:
    return web.json_response(public_repo(await _load_repo(request)))


# -- jobs ---------------------------------------------------------------------------

JOB_FIELDS = {"branch", "commit", "type", "parameters", "trigger"}
TRIGGER_FIELDS = {"source", "type", "author", "message", "url"}


def _parameters(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("parameters: must be an object of NAME: value", field="parameters")
    out = {}
    for name, v in value.items():
        if not PARAM_NAME.match(name):
            raise BadRequest(f"parameters.{name}: a parameter name is letters, digits and '_', not starting with a digit",
                             field=f"parameters.{name}")
        if isinstance(v, bool):
            v = "true" if v else "false"
        if not isinstance(v, (str, int, float)):
            raise BadRequest(f"parameters.{name}: must be a string or a number", field=f"parameters.{name}")
        out[name] = str(v)
    return out


def _trigger(value: Any, now: float) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise BadRequest("trigger: must be an object", field="trigger")
    no_unknown(value, TRIGGER_FIELDS, "trigger.")
    source = value.get("source", "API")
    if isinstance(source, str):
        source = {"type": source}
    if not isinstance(source, dict) or source.get("type") not in TRIGGER_SOURCES:
        raise BadRequest(f"trigger.source: must be one of {', '.join(TRIGGER_SOURCES)}", field="trigger.source")
    author = value.get("author", {})
    if isinstance(author, str):
        author = {"name": author}
    if not isinstance(author, dict) or not all(isinstance(v, str) for v in author.values()):
        raise BadRequest("trigger.author: must be a name or an object of strings", field="trigger.author")
    return {
        "type": get_str(value, "type", "manual", prefix="trigger."),
        "author": author,
        "message": get_str(value, "message", "", prefix="trigger."),
        "url": get_str(value, "url", "", prefix="trigger."),
        "timestamp": now,
        "source": source,
    }


@routes.post("/api/v1/repos/{repo}/jobs")
async def trigger_job(request: web.Request) -> web.Response:
    repo = await _load_repo(request)
    body = await read_json(request)
    no_unknown(body, JOB_FIELDS)
    now = time.time()
    job_type = get_str(body, "type", JobType.TEST.value)
    if job_type not in JobType._value2member_map_:
        raise BadRequest(f"type: must be one of {', '.join(t.value for t in JobType)}", field="type")
    ref: dict[str, Any] = {"branch": get_str(body, "branch", repo["default_branch"])}
    commit = get_str(body, "commit")
    if commit:
        ref["id"] = commit
    store = request.app[keys.STORE]
    job = {
        "_id": str(ulid.ULID()),
        "repo": repo["_id"],
        "repo_url": repo.get("url", ""),
        "provider": repo.get("provider", "git"),
        "ref": ref,
        "type": job_type,
        "parameters": _parameters(body.get("parameters")),
        "trigger": _trigger(body.get("trigger"), now),
        "pipeline": repo["pipeline"],
        "status": JobStatus.QUEUED.value,
        "created": now,
        "attempts": 0,
        "drone": None,
        "commands": {},
        "phases": {},
    }
    job["number"] = await store.next_job_number(repo["_id"])
    await request.app[keys.HIVE].dispatcher.submit(job)
    return web.json_response(public_job(job), status=201, headers={"Location": f"/api/v1/jobs/{job['_id']}"})


@routes.get("/api/v1/repos/{repo}/jobs")
async def list_repo_jobs(request: web.Request) -> web.Response:
    repo = await _load_repo(request)
    limit = query_int(request, "limit", 50, 1, 500)
    jobs = await request.app[keys.STORE].list_jobs(
        repo["_id"], branch=request.query.get("branch"), before=request.query.get("before"), limit=limit)
    return web.json_response({"jobs": [public_job(j) for j in jobs]})


@routes.get("/api/v1/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 50, 1, 500)
    jobs = await request.app[keys.STORE].list_jobs(before=request.query.get("before"), limit=limit)
    return web.json_response({"jobs": [public_job(j) for j in jobs]})


@routes.get("/api/v1/jobs/{job}")
async def get_job(request: web.Request) -> web.Response:
    return web.json_response(public_job(await _load_job(request)))


@routes.get("/api/v1/jobs/{job}/events")
async def job_events(request: web.Request) -> web.Response:
    job = await _load_job(request)
    after = query_int(request, "after", 0, 0, 2**62)
    limit = query_int(request, "limit", MAX_EVENTS_PAGE, 1, MAX_EVENTS_PAGE)
    events = await request.app[keys.STORE].events_after(job["_id"], after, limit)
    last = events[-1]["seq"] if events else after
    return web.json_response({"job": job["_id"], "status": job["status"], "events": events, "last": last,
                              "more": len(events) == limit})


# -- drones ----------------------------------------------------------------------

@routes.get("/api/v1/drones")
async def list_drones(request: web.Request) -> web.Response:
    return web.json_response({"drones": request.app[keys.HIVE].drones()})


@routes.get("/api/v1")
async def api_index(request: web.Request) -> web.Response:
    return web.json_response({
        "apiary": request.app[keys.VERSION],
        "links": ["/api/v1/repos", "/api/v1/jobs", "/api/v1/drones", "/ws"],
    })


# -- lookups -----------------------------------------------------------------------

def _repo_name(request: web.Request) -> str:
    name = request.match_info["repo"]
    if not REPO_NAME.match(name):
        raise NotFound(f"no repository {name!r}")
    return name


async def _load_repo(request: web.Request) -> dict[str, Any]:
    name = _repo_name(request)
    repo = await request.app[keys.STORE].get_repo(name)
    if repo is None:
        raise NotFound(f"no repository {name!r}")
    return repo


async def _load_job(request: web.Request) -> dict[str, Any]:
    job_id = request.match_info["job"]
    job = await request.app[keys.STORE].get_job(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job
