"""The report plugin: each finished job's document to an Elasticsearch-compatible ``_bulk`` endpoint.

A repository's config::

    {"url": "https://es.example.com:9200/_bulk",   # required; http or https
     "index": "apiary-jobs",                       # default apiary-jobs
     "token_secret": "ES_API_KEY",                 # optional: a secret of the repository
     "auth_scheme": "ApiKey"}                      # ApiKey (default), Bearer or Basic

When a job of the repository ends (passed, failed, errored, cancelled), the
queen POSTs ``{"index": {"_index": INDEX, "_id": JOB_ID}}`` and the job's
document as NDJSON (``application/x-ndjson``); indexing by job id means a
job reported twice is one document. With ``token_secret`` the request carries
``Authorization: <auth_scheme> <the secret's value>`` (for Elasticsearch: an
encoded API key with ApiKey, or base64 of ``user:password`` with Basic); a
secret that is not set means nothing is sent (logged).

The document is the job as the API shows it, for dashboards: ``id``, repo,
number, ref, type, status, trigger, parameters, drone, error, usage, phases,
``commands`` as a list in order, the times (epoch seconds), ``duration``
(finished - started) and ``wait`` (started - created) when known, and
``@timestamp``, the end in ISO 8601 (UTC). The stored pipeline is left out.

A connection error or a 429/502/503/504 is retried twice (0.5 s, then 2 s
later); a refusal (another status, or ``"errors": true`` with the first item's
error) is logged as a warning. The queen and the job are never affected.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from apiary.plugins.api import ConfigProblem, PluginContext

config_schema = {
    "url": {"type": "str", "required": True, "help": "the _bulk endpoint, e.g. http://localhost:9200/_bulk"},
    "index": {"type": "str", "default": "apiary-jobs", "help": "the index the documents go to"},
    "token_secret": {"type": "str", "help": "a repository secret sent as Authorization: <auth_scheme> <value>"},
    "auth_scheme": {"type": "str", "default": "ApiKey", "choices": ["ApiKey", "Bearer", "Basic"]},
}

LEFT_OUT = {"_id", "pipeline", "plugin_keys", "commands"}
RETRY_PAUSES = (0.5, 2.0)  # before the second and third attempts
RETRY_STATUSES = {429, 502, 503, 504}
ATTEMPT_TIMEOUT = 8.0  # seconds per attempt: three of them stay under the queen's 30 s for a reaction
CONTENT_TYPE = "application/x-ndjson"
BAD_INDEX_CHARS = ' "*\\<|,>/?#:'


def check_config(config: dict[str, Any]) -> None:
    parts = urlsplit(config["url"].strip())
    try:
        parts.port  # noqa: B018 -- raises ValueError for a port that is not one
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigProblem("url", f"must be an http(s) address such as http://localhost:9200/_bulk, "
                                   f"got {config['url']!r}")
    index = config.get("index", "apiary-jobs")
    if not index or index != index.lower() or index[0] in "_-+" or set(index) & set(BAD_INDEX_CHARS):
        raise ConfigProblem("index", f"not an index name: {index!r} (lowercase, not starting with _ - +, "
                                     f"none of {BAD_INDEX_CHARS!r})")
    if "token_secret" in config and not config["token_secret"].strip():
        raise ConfigProblem("token_secret", "must be the name of a secret of the repository")


def document(job: dict[str, Any]) -> dict[str, Any]:
    """What is indexed for `job`: its public fields, commands in order, durations and ``@timestamp``."""
    doc: dict[str, Any] = {"id": job["_id"], **{k: v for k, v in job.items() if k not in LEFT_OUT}}
    commands = job.get("commands") or {}
    doc["commands"] = sorted(commands.values(), key=lambda c: c.get("num", 0))
    created, started, finished = job.get("created"), job.get("started"), job.get("finished")
    if started and finished:
        doc["duration"] = round(finished - started, 6)
    if created and started:
        doc["wait"] = round(started - created, 6)
    when = finished or started or created
    if when:
        doc["@timestamp"] = datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")
    return doc


def bulk_body(index: str, job: dict[str, Any]) -> bytes:
    """The NDJSON of one index action and its document."""
    action = {"index": {"_index": index, "_id": job["_id"]}}
    return (json.dumps(action) + "\n" + json.dumps(document(job), default=str) + "\n").encode()


def endpoint_name(url: str) -> str:
    """`url` for logs: without any user and password it holds."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def bulk_problem(status: int, text: str) -> str | None:
    """What went wrong according to a ``_bulk`` answer, or None if the document was indexed."""
    if not 200 <= status < 300:
        return f"answered {status}: {text[:300]}"
    try:
        answer = json.loads(text)
    except ValueError:
        return None  # a 2xx that is not JSON: an endpoint that only says yes
    if not isinstance(answer, dict) or not answer.get("errors"):
        return None
    for item in answer.get("items") or []:
        result = next(iter(item.values()), {}) if isinstance(item, dict) and item else {}
        if isinstance(result, dict) and result.get("error"):
            error = result["error"]
            if isinstance(error, dict):
                error = f"{error.get('type', 'error')}: {error.get('reason', '')}"
            return f"item refused ({result.get('status', '?')}): {error}"
    return "errors: true"


async def job_done(job: dict[str, Any], ctx: PluginContext) -> None:
    """Send `job` to its repository's endpoint, if the repository uses this plugin."""
    repo = await ctx.repo(job["repo"])
    config = ctx.config_of(repo) if repo else None
    if config is None:
        return
    label = f"job {job['repo']} #{job.get('number')} ({job['_id']})"
    headers = {"Content-Type": CONTENT_TYPE}
    if config.get("token_secret"):
        token = await ctx.secret(job["repo"], config["token_secret"])
        if token is None:
            ctx.log.warning("%s not reported: the secret %s is not set", label, config["token_secret"])
            return
        headers["Authorization"] = f"{config.get('auth_scheme') or 'ApiKey'} {token}"
    body = bulk_body(config.get("index") or "apiary-jobs", job)
    url = config["url"].strip()
    where = endpoint_name(url)
    for attempt, pause in enumerate((0.0, *RETRY_PAUSES)):
        await asyncio.sleep(pause)
        last = attempt == len(RETRY_PAUSES)
        try:
            async with ctx.http.post(url, data=body, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT)) as resp:
                status, text = resp.status, await resp.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            if last:
                ctx.log.warning("%s not reported to %s: %s", label, where, str(exc) or type(exc).__name__)
                return
            continue
        if status in RETRY_STATUSES and not last:
            continue
        problem = bulk_problem(status, text)
        if problem:
            ctx.log.warning("%s not reported to %s: %s", label, where, problem)
        else:
            ctx.log.debug("%s reported to %s", label, where)
        return
