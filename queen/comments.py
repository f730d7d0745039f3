"""Comments on jobs, over HTTP: the API, the job page's pieces, and the live message (rules: comment_rules).

API (JSON; errors ``{"error", "field"}`` as elsewhere)::

    GET    /api/v1/jobs/{job}/comments            {"comments": [comment, …]}, oldest first
    POST   /api/v1/jobs/{job}/comments            {"text"} -> 201 comment
    PATCH  /api/v1/jobs/{job}/comments/{comment}  {"text"} -> 200 comment (its author only), marked edited
    DELETE /api/v1/jobs/{job}/comments/{comment}  -> 200 {"id", "deleted": true} (its author, or an admin)

A comment as answered and sent live::

    {"id", "job", "author": user name or "the queen's owner", "text": markdown, "html": its safe rendering
     (apiary.queen.safe_markdown), "created": seconds, "edited": seconds or null}

Each change is published on the job's WebSocket topic (``job:<id>``, apiary.queen.hub) as
``{"type": "job:comment", "job", "action": "added" | "edited" | "deleted", "id", "comment"?}``: the job page
fetches that comment's piece (``/parts/jobs/{job}/comments/{id}``, drawn for whoever looks: their own get
Edit) and puts it in place. Refusals: 400 text, 403 not yours, 404 no such job or comment, 409 the job has
MAX_PER_JOB comments, 429 too many writes (Retry-After). Who may write at all is the access rule's
(apiary.queen.users: members and admins; the owner of a queen without users).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ulid
from aiohttp import web

from apiary.core.errors import Conflict, InputError, NotFound
from apiary.core.fields import no_unknown
from apiary.queen import comment_rules as rules
from apiary.queen.api import load_job
from apiary.queen.safe_markdown import RENDERER_VERSION, render
from apiary.queen.strict_json import json_response
from apiary.queen.throttle import Throttle, retry_after
from apiary.queen.validate import read_json

from . import keys

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# Writes per author in a sliding window: the sign-in throttle's counter, counting writes instead of failures.
RATE: web.AppKey[Throttle] = web.AppKey("comment_rate", Throttle)


class NotYours(InputError):
    """The comment is someone else's."""

    status = 403


def setup(app: web.Application) -> None:
    """Add the comments' routes and their rate counter to the queen's app (apiary.queen.app)."""
    app[RATE] = Throttle(rules.RATE_LIMIT, rules.RATE_WINDOW)
    app.add_routes(routes)


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored comment as the API answers it (the module's docstring has the shape)."""
    return {"id": doc["_id"], "job": doc["job"], "author": rules.shown_author(doc.get("author")),
            "text": doc["text"], "html": doc["html"], "created": doc["created"], "edited": doc.get("edited")}


async def _fresh(store: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with its rendering made by this renderer (one made by an older version is made again and kept)."""
    if doc.get("renderer") != RENDERER_VERSION:
        doc = {**doc, "html": await asyncio.to_thread(render, doc["text"]), "renderer": RENDERER_VERSION}
        await store.update_comment(doc["job"], doc["_id"], {"html": doc["html"], "renderer": RENDERER_VERSION})
    return doc


async def job_comments(store: Any, job_id: str) -> list[dict[str, Any]]:
    """The job's comments, public, oldest first."""
    return [public(await _fresh(store, d)) for d in await store.job_comments(job_id)]


def _who(request: web.Request) -> tuple[str | None, str | None, bool]:
    identity = request.get("identity")
    users_exist = bool(request.app[keys.GATE].users_exist)
    return (identity["user"] if identity else None, identity["role"].value if identity else None, users_exist)


def viewer(request: web.Request) -> dict[str, Any]:
    """What the page's comments need to know of who looks: {"user", "role", "users_exist", "may_comment"}."""
    user, role, users_exist = _who(request)
    return {"user": user, "role": role, "users_exist": users_exist,
            "may_comment": rules.may_comment(user, users_exist)}


def may(action: rules.Action, comment: dict[str, Any], who: dict[str, Any]) -> bool:
    """For the templates: whether `who` (`viewer`) may edit or delete `comment` (stored or public)."""
    author = comment.get("author") if "_id" in comment else (
        None if comment.get("author") == rules.OWNER else comment.get("author"))
    return rules.may_change(action, author, who["user"], who["role"], who["users_exist"])


def _throttled(request: web.Request, author: str | None) -> web.Response | None:
    """429 when `author` wrote RATE_LIMIT times in the window; else counts this write and returns None."""
    rate, now = request.app[RATE], time.monotonic()
    key = f"comment:{author or ''}"
    wait = rate.wait(key, now)
    if wait > 0:
        return json_response({"error": f"text: at most {rules.RATE_LIMIT} comments or edits a minute; "
                                       f"try again in {retry_after(wait)} s", "field": "text"},
                             status=429, headers={"Retry-After": retry_after(wait)})
    rate.failed(key, now)  # counted as a write
    return None


def _publish(request: web.Request, job_id: str, action: str, comment_id: str,
             comment: dict[str, Any] | None = None) -> None:
    message: dict[str, Any] = {"type": "job:comment", "job": job_id, "action": action, "id": comment_id}
    if comment is not None:
        message["comment"] = comment
    request.app[keys.HUB].publish(f"job:{job_id}", message)


async def _load(request: web.Request, job_id: str) -> dict[str, Any]:
    comment_id = request.match_info["comment"]
    found = await request.app[keys.STORE].get_comment(job_id, comment_id) if len(comment_id) <= 64 else None
    if found is None:
        raise NotFound(f"job {job_id} has no comment {comment_id[:64]!r}; it may have been deleted", field="comment")
    return found


@routes.get("/api/v1/jobs/{job}/comments")
async def list_comments(request: web.Request) -> web.Response:
    job = await load_job(request)
    return json_response({"comments": await job_comments(request.app[keys.STORE], job["_id"])})


@routes.post("/api/v1/jobs/{job}/comments")
async def add_comment(request: web.Request) -> web.Response:
    job = await load_job(request)
    body = await read_json(request)
    no_unknown(body, {"text"})
    text = rules.check_text(body.get("text"))
    user, _, users_exist = _who(request)
    store = request.app[keys.STORE]
    if await store.count_comments(job["_id"]) >= rules.MAX_PER_JOB:
        raise Conflict(f"job #{job.get('number')} has {rules.MAX_PER_JOB:,} comments, as many as a job takes",
                       field="text")
    author = rules.author_of(user, users_exist)
    refused = _throttled(request, author)
    if refused is not None:
        return refused
    now = time.time()
    doc = {"_id": str(ulid.ULID()), "job": job["_id"], "author": author, "text": text,
           "html": await asyncio.to_thread(render, text), "renderer": RENDERER_VERSION, "created": now,
           "edited": None}
    await store.insert_comment(doc)
    comment = public(doc)
    _publish(request, job["_id"], "added", doc["_id"], comment)
    log.info("job %s: comment %s by %s", job["_id"], doc["_id"], comment["author"])
    return json_response(comment, status=201,
                         headers={"Location": f"/api/v1/jobs/{job['_id']}/comments/{doc['_id']}"})


@routes.patch("/api/v1/jobs/{job}/comments/{comment}")
async def edit_comment(request: web.Request) -> web.Response:
    job = await load_job(request)
    found = await _load(request, job["_id"])
    user, role, users_exist = _who(request)
    if not rules.may_change("edit", found.get("author"), user, role, users_exist):
        raise NotYours(f"only its author ({rules.shown_author(found.get('author'))}) edits this comment",
                       field="comment")
    body = await read_json(request)
    no_unknown(body, {"text"})
    text = rules.check_text(body.get("text"))
    refused = _throttled(request, found.get("author"))
    if refused is not None:
        return refused
    changed = await request.app[keys.STORE].update_comment(job["_id"], found["_id"], {
        "text": text, "html": await asyncio.to_thread(render, text), "renderer": RENDERER_VERSION,
        "edited": time.time()})
    if changed is None:
        raise NotFound(f"job {job['_id']} has no comment {found['_id']!r}; it was deleted meanwhile", field="comment")
    comment = public(changed)
    _publish(request, job["_id"], "edited", found["_id"], comment)
    return json_response(comment)


@routes.delete("/api/v1/jobs/{job}/comments/{comment}")
async def delete_comment(request: web.Request) -> web.Response:
    job = await load_job(request)
    found = await _load(request, job["_id"])
    user, role, users_exist = _who(request)
    if not rules.may_change("delete", found.get("author"), user, role, users_exist):
        raise NotYours(f"only its author ({rules.shown_author(found.get('author'))}) or an admin deletes this "
                       "comment", field="comment")
    if await request.app[keys.STORE].delete_comment(job["_id"], found["_id"]):
        _publish(request, job["_id"], "deleted", found["_id"])
        log.info("job %s: comment %s deleted by %s", job["_id"], found["_id"], user or rules.OWNER)
    return json_response({"id": found["_id"], "deleted": True})


async def page_context(request: web.Request, job_id: str) -> dict[str, Any]:
    """What the job page needs to draw its comments (web/templates/parts/job_comments.html)."""
    return {"comments": await job_comments(request.app[keys.STORE], job_id), **_context(request)}


def _context(request: web.Request) -> dict[str, Any]:
    return {"viewer": viewer(request), "may": may, "max_text": rules.MAX_TEXT}


# -- the job page's pieces (web/templates/parts/job_comments.html, web/static/comments.js) ----------------

@routes.get("/parts/jobs/{job}/comments")
async def part_comments(request: web.Request) -> web.Response:
    from apiary.queen.pages import render as render_page

    job = await load_job(request)
    comments = await job_comments(request.app[keys.STORE], job["_id"])
    return render_page(request, "parts/job_comment_list.html", job={"id": job["_id"]}, comments=comments,
                       **_context(request))


@routes.get("/parts/jobs/{job}/comments/{comment}")
async def part_comment(request: web.Request) -> web.Response:
    from apiary.queen.pages import render as render_page

    job = await load_job(request)
    found = await _fresh(request.app[keys.STORE], await _load(request, job["_id"]))
    return render_page(request, "parts/job_comment.html", job={"id": job["_id"]}, c=public(found),
                       **_context(request))
