"""Comments on jobs, over HTTP: the API, the job page's pieces, and the live message (rules: comment_rules).

API (JSON; errors ``{"error", "field"}`` as elsewhere)::

    GET    /api/v1/jobs/{job}/comments            {"comments": [comment, …], "older": bool}: the newest
                                                  ?limit (PAGE, at most MAX_PAGE) older than ?before (a
                                                  comment id), oldest first; older: whether more remain
    POST   /api/v1/jobs/{job}/comments            {"text"} -> 201 comment
    PATCH  /api/v1/jobs/{job}/comments/{comment}  {"text"} -> 200 comment (its author only), marked edited
    DELETE /api/v1/jobs/{job}/comments/{comment}  -> 200 {"id", "deleted": true} (its author, or an admin)

A comment as answered and sent live::

    {"id", "job", "author": user name or "the queen's owner", "author_id": the author's user id (never
     reused, unlike names: what owns the comment; null for the queen's owner), "text": markdown, "html": its
     safe rendering (apiary.queen.safe_markdown), "created": seconds, "edited": seconds or null}

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
import re
import time
from typing import Any

import ulid
from aiohttp import web

from apiary.core.errors import BadRequest, Conflict, InputError, NotFound
from apiary.core.fields import no_unknown
from apiary.queen import comment_rules as rules
from apiary.queen.api import load_job
from apiary.queen.safe_markdown import RENDERER_VERSION, render, render_stored
from apiary.queen.strict_json import json_response
from apiary.queen.throttle import Throttle, retry_after
from apiary.queen.validate import query_int, read_json

from . import keys

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

PAGE = 50  # comments in one answer, and on the job page at first (like the API's other lists) ...
MAX_PAGE = 500  # ... and at most, asked with ?limit
_COMMENT_ID = re.compile(r"^[0-9A-Za-z]{1,64}$")

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
            "author_id": doc.get("author_id"), "text": doc["text"], "html": doc["html"], "created": doc["created"],
            "edited": doc.get("edited")}


async def _fresh(store: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with its rendering made by this renderer (one made by an older version is made again and kept)."""
    if doc.get("renderer") != RENDERER_VERSION:
        doc = {**doc, "html": await asyncio.to_thread(render_stored, doc["text"]), "renderer": RENDERER_VERSION}
        await store.update_comment(doc["job"], doc["_id"], {"html": doc["html"], "renderer": RENDERER_VERSION})
    return doc


async def job_comments(store: Any, job_id: str, limit: int = PAGE, before: str | None = None
                       ) -> tuple[list[dict[str, Any]], bool]:
    """The job's newest `limit` comments (older than the comment `before`, when given), public, oldest first;
    and whether older ones remain."""
    found, older = await store.job_comments(job_id, limit, before)
    return [public(await _fresh(store, d)) for d in found], older


def _page(request: web.Request) -> tuple[int, str | None]:
    """?limit (PAGE; at most MAX_PAGE) and ?before (a comment id) of a request for a job's comments."""
    before = request.query.get("before")
    if before is not None and not _COMMENT_ID.match(before):
        raise BadRequest(f"before: {before[:64]!r} is not a comment id", field="before")
    return query_int(request, "limit", PAGE, 1, MAX_PAGE), before


def _who(request: web.Request) -> tuple[str | None, str | None, str | None, bool]:
    """(user name, user id, role, whether the queen has users) of who asks; None for what they lack."""
    identity = request.get("identity")
    users_exist = bool(request.app[keys.GATE].users_exist)
    if identity is None:
        return None, None, None, users_exist
    return identity["user"], identity.get("uid"), identity["role"].value, users_exist


def viewer(request: web.Request) -> dict[str, Any]:
    """What the page's comments need to know of who looks: {"user", "uid", "role", "users_exist", "may_comment"}."""
    user, uid, role, users_exist = _who(request)
    return {"user": user, "uid": uid, "role": role, "users_exist": users_exist,
            "may_comment": rules.may_comment(user, users_exist)}


def may(action: rules.Action, comment: dict[str, Any], who: dict[str, Any]) -> bool:
    """For the templates: whether `who` (`viewer`) may edit or delete `comment` (stored or public)."""
    return rules.may_change(action, comment.get("author_id"), who["uid"], who["role"], who["users_exist"])


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
    limit, before = _page(request)
    comments, older = await job_comments(request.app[keys.STORE], job["_id"], limit, before)
    return json_response({"comments": comments, "older": older})


@routes.post("/api/v1/jobs/{job}/comments")
async def add_comment(request: web.Request) -> web.Response:
    job = await load_job(request)
    body = await read_json(request)
    no_unknown(body, {"text"})
    text = rules.check_text(body.get("text"))
    user, uid, _, users_exist = _who(request)
    store = request.app[keys.STORE]
    author = rules.author_of(user, users_exist)
    refused = _throttled(request, author)
    if refused is not None:
        return refused
    html = await asyncio.to_thread(render, text)
    # Taken last, after every other refusal, and given back if the insert fails: a slot is a stored comment.
    if not await store.take_comment_slot(job["_id"], rules.MAX_PER_JOB):
        raise Conflict(f"job #{job.get('number')} has {rules.MAX_PER_JOB:,} comments, as many as a job takes",
                       field="text")
    now = time.time()
    doc = {"_id": str(ulid.ULID()), "job": job["_id"], "author": author, "author_id": uid if author else None,
           "text": text,
           "html": html, "renderer": RENDERER_VERSION, "created": now, "edited": None}
    try:
        await store.insert_comment(doc)
    except BaseException:
        await store.give_comment_slot(job["_id"])
        raise
    comment = public(doc)
    _publish(request, job["_id"], "added", doc["_id"], comment)
    log.info("job %s: comment %s by %s", job["_id"], doc["_id"], comment["author"])
    return json_response(comment, status=201,
                         headers={"Location": f"/api/v1/jobs/{job['_id']}/comments/{doc['_id']}"})


@routes.patch("/api/v1/jobs/{job}/comments/{comment}")
async def edit_comment(request: web.Request) -> web.Response:
    job = await load_job(request)
    found = await _load(request, job["_id"])
    _, uid, role, users_exist = _who(request)
    if not rules.may_change("edit", found.get("author_id"), uid, role, users_exist):
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
    user, uid, role, users_exist = _who(request)
    if not rules.may_change("delete", found.get("author_id"), uid, role, users_exist):
        raise NotYours(f"only its author ({rules.shown_author(found.get('author'))}) or an admin deletes this "
                       "comment", field="comment")
    if await request.app[keys.STORE].delete_comment(job["_id"], found["_id"]):
        await request.app[keys.STORE].give_comment_slot(job["_id"])
        _publish(request, job["_id"], "deleted", found["_id"])
        log.info("job %s: comment %s deleted by %s", job["_id"], found["_id"], user or rules.OWNER)
    return json_response({"id": found["_id"], "deleted": True})


async def page_context(request: web.Request, job_id: str) -> dict[str, Any]:
    """What the job page needs to draw its comments (web/templates/parts/job_comments.html): the newest PAGE,
    and how many there are in all."""
    store = request.app[keys.STORE]
    comments, _ = await job_comments(store, job_id)
    total = await store.count_comments(job_id)
    return {"comments": comments, "comments_total": total, "comments_older": max(0, total - len(comments)),
            **_context(request)}


def _context(request: web.Request) -> dict[str, Any]:
    return {"viewer": viewer(request), "may": may, "max_text": rules.MAX_TEXT}


# -- the job page's pieces (web/templates/parts/job_comments.html, web/static/comments.js) ----------------

@routes.get("/parts/jobs/{job}/comments")
async def part_comments(request: web.Request) -> web.Response:
    from apiary.queen.pages import render as render_page

    job = await load_job(request)
    limit, before = _page(request)
    store = request.app[keys.STORE]
    comments, _ = await job_comments(store, job["_id"], limit, before)
    response = render_page(request, "parts/job_comment_list.html", job={"id": job["_id"]}, comments=comments,
                           **_context(request))
    # How many are older than those drawn, for the page's "Show older" (its total is these and they).
    first = comments[0]["id"] if comments else before
    response.headers["X-Apiary-Older"] = str(await store.count_comments_before(job["_id"], first) if first else 0)
    return response


@routes.get("/parts/jobs/{job}/comments/{comment}")
async def part_comment(request: web.Request) -> web.Response:
    from apiary.queen.pages import render as render_page

    job = await load_job(request)
    found = await _fresh(request.app[keys.STORE], await _load(request, job["_id"]))
    return render_page(request, "parts/job_comment.html", job={"id": job["_id"]}, c=public(found),
                       **_context(request))
