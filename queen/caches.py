"""The queen's side of pipeline caches: the parts a job saves, and the caches its drone asks for.

`save_part` (the recorder, for each ``job:cache`` part, in order, before the event is acked) stores a
part where the job's scope says (apiary.core.caches.scopes, from the job document: what the drone says
decides nothing about where). `serve` answers a drone's ``cache:get`` for a job it runs: the cache
the job restores (apiary.core.caches.choose over the job's read scopes), part by part, as
``cache:part``. A request for a job the drone does not run, or for a cache outside the job's scopes,
is answered ``found: false``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gridfs.errors import NoFile

from apiary.core.caches import MAX_KEY, MAX_RESTORE_KEYS, Scopes, Stored, choose, scopes
from apiary.core.protocol import JobStatus, Msg
from apiary.queen.store import Store
from apiary.queen.store.caches import CacheUploadRefused

log = logging.getLogger(__name__)

SendFn = Callable[[str, Msg, dict[str, Any]], bool]


async def job_scopes(store: Store, job: dict[str, Any]) -> Scopes:
    repo = await store.get_repo(str(job.get("repo"))) or {}
    return scopes(job, str(repo.get("default_branch") or ""))


async def save_part(store: Store, job_id: str, body: dict[str, Any]) -> None:
    """Store one part of a cache job `job_id` saves (a ``job:cache`` event with state ``part``)."""
    job = await store.get_job(job_id)
    if job is None or not isinstance(body.get("part"), int) or not isinstance(body.get("parts"), int) \
            or not isinstance(body.get("index"), int) or not isinstance(body.get("data"), bytes) \
            or not 0 <= body["part"] < body["parts"]:
        log.warning("job %s: a cache part the queen cannot place: dropped", job_id)
        return
    where = await job_scopes(store, dict(job))
    try:
        done = await store.save_cache_part(str(job["repo"]), where.write, job_id, body)
    except CacheUploadRefused as exc:  # a drone that is not ours, or a cap with no room: the upload is dropped
        log.warning("job %s: cache %r part %s not stored: %s", job_id, str(body.get("key"))[:100], body["part"], exc)
        return
    if done:
        log.info("job %s: cache %r of %s saved (%s bytes)", job_id, body.get("key"), where.write, body.get("size"))


async def serve(store: Store, send: SendFn, drone_id: str, body: dict[str, Any]) -> None:
    """Answer one ``cache:get`` from drone `drone_id`."""
    request = str(body.get("request") or "")[:64]

    def answer(**fields: Any) -> None:
        send(drone_id, Msg.CACHE_PART, {"request": request, **fields})

    job = await store.get_job(str(body.get("id")))
    if job is None or job.get("drone") != drone_id or JobStatus(job["status"]).final:
        return answer(found=False, error="no such job running on this drone")
    key, restore = body.get("key"), body.get("restore")
    if not isinstance(key, str) or len(key) > MAX_KEY or not isinstance(restore, list) \
            or len(restore) > MAX_RESTORE_KEYS or not all(isinstance(k, str) and len(k) <= MAX_KEY for k in restore):
        return answer(found=False, error="a malformed request")
    where = await job_scopes(store, dict(job))
    repo = str(job["repo"])
    if body.get("cache"):
        doc = await store.get_cache(str(body["cache"]))
        if doc is None or doc.get("repo") != repo or doc.get("scope") not in where.read:
            return answer(found=False, error="the cache is gone")
    else:
        docs = await store.list_caches(repo, list(where.read))
        stored = [Stored(d["_id"], d["scope"], d["key"], int(d.get("size") or 0), float(d.get("used") or 0))
                  for d in docs]
        chosen = choose(stored, key, restore, where.read)
        if chosen is None:
            return answer(found=False)
        doc = next(d for d in docs if d["_id"] == chosen.id)
    part = body.get("part")
    if not isinstance(part, int) or not 0 <= part < int(doc["parts"]):
        return answer(found=False, error="no such part")
    try:
        data = await store.read_cache_part(doc["_id"], part)
    except NoFile:
        return answer(found=False, error="the cache is gone")
    if part == 0:
        await store.touch_cache(doc["_id"])
    answer(found=True, cache=doc["_id"], key=doc["key"], scope=doc["scope"], size=int(doc["size"]), part=part,
           parts=int(doc["parts"]), data=data)
