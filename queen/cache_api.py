"""The API of a repository's pipeline caches: list them (any reader), clear them (an admin: users.may
lets only admins DELETE outside a few member actions).

``GET /api/v1/repos/{repo}/caches`` -> ``{"caches": [{id, scope, key, size (bytes, tar.zst), created,
used (seconds since 1970), job}], "size": total bytes, "max_bytes": the queen's cap}``, most recently used
first. ``DELETE /api/v1/repos/{repo}/caches[?scope=main][&key=pip-...]`` -> ``{"deleted": N}``.
"""

from __future__ import annotations

from aiohttp import web

from apiary.core.caches import MAX_KEY
from apiary.core.errors import BadRequest
from apiary.queen.api import load_repo
from apiary.queen.strict_json import json_response

from . import keys

routes = web.RouteTableDef()

_SHOWN = ("scope", "key", "size", "created", "used", "job")


@routes.get("/api/v1/repos/{repo}/caches")
async def list_caches(request: web.Request) -> web.Response:
    repo = await load_repo(request)
    store = request.app[keys.STORE]
    caches = [{"id": d["_id"], **{k: d.get(k) for k in _SHOWN}} for d in await store.list_caches(repo["_id"])]
    return json_response({"caches": caches, "size": sum(int(c["size"] or 0) for c in caches),
                          "max_bytes": store.cache_max_bytes})


@routes.delete("/api/v1/repos/{repo}/caches")
async def clear_caches(request: web.Request) -> web.Response:
    repo = await load_repo(request)
    given = {}
    for name in ("scope", "key"):
        value = request.query.get(name)
        if value is not None and (not value or len(value) > MAX_KEY):
            raise BadRequest(f"{name}: a {name} of at most {MAX_KEY} characters", field=name)
        given[name] = value
    deleted = await request.app[keys.STORE].delete_caches(repo["_id"], given["scope"], given["key"])
    return json_response({"deleted": deleted})
