"""The store's pipeline caches: collection ``caches`` (one document per cache) and GridFS bucket
``cacheparts`` (one file per part of its tar.zst, found by its metadata).

A cache document: ``_id`` "<job>:<attempt>:<index>" (the job attempt that saved it, its entry in
``cache:``), ``repo``, ``scope`` (a branch, or ``pull:<ref>``: apiary.core.caches.scopes), ``key``,
``size`` (bytes of the tar.zst), ``parts``, ``created`` and ``used`` (seconds since 1970), ``complete``
(every part stored).
Only complete caches are listed or restored. An upload's first part admits it (the size it declares
counts toward the repository's `cache_max_bytes` from then on, its parts must match it exactly:
apiary.core.caches.part_fault, upload_fault). When one completes, an older one of the same repository,
scope and key is replaced, and the repository's least recently used are deleted past `cache_max_bytes`
(apiary.core.caches.evict).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ulid
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from apiary.core.caches import Stored, evict, part_fault, upload_fault
from apiary.core.errors import ApiaryError
from apiary.core.protocol import ARTIFACT_PART_BYTES

log = logging.getLogger(__name__)

STALE_UPLOAD = 3600.0  # seconds an incomplete cache upload is kept (its job may still be sending it)


class CacheUploadRefused(ApiaryError):
    """A cache part the queen does not store (why); the upload it belongs to is dropped."""


class CacheQueries:
    """Caches: parts saved once each, completed, chosen from, read, touched, evicted, deleted."""

    cache_docs: AsyncCollection
    cache_parts: AsyncGridFSBucket
    cache_part_files: AsyncCollection
    cache_max_bytes: int = 0  # per repository; set by the hive from [queen] cache_max_bytes

    async def save_cache_part(self, repo: str, scope: str, job_id: str, body: dict[str, Any]) -> bool:
        """Store part `part` of `parts` of the cache a job saves (its ``job:cache`` event `body`); a part
        stored already is a no-op. True when this was the last part: the cache is complete (and the
        repository evicted down to its cap). Raises CacheUploadRefused (nothing stored, the upload
        dropped) for a part the drone had no business sending (apiary.core.caches.part_fault), or a new
        upload the cap has no room for beside the ones in progress (upload_fault)."""
        # Per attempt: a retry's tar is another file, whose parts must not join the ones an earlier attempt left.
        cache_id = f"{job_id}:{int(body.get('attempt') or 1)}:{int(body['index'])}"
        part, parts, size, key = int(body["part"]), int(body["parts"]), int(body["size"]), str(body["key"])
        data = body.get("data") or b""
        fault = part_fault(part, parts, size, len(data), self.cache_max_bytes, ARTIFACT_PART_BYTES)
        doc = await self.cache_docs.find_one({"_id": cache_id})
        if fault is None and doc is not None and (int(doc.get("parts") or 0), int(doc.get("size") or 0),
                                                  doc.get("key")) != (parts, size, key):
            fault = f"part {part} says {parts} parts of {size:,} bytes of {key!r}, its first part said otherwise"
        if fault is None and doc is None:
            if part != 0:  # an upload refused (or evicted, or gone stale) does not start again halfway
                fault = f"part {part} of an upload the queen does not hold"
            else:
                await self._sweep_stale(repo)
                fault = upload_fault(size, await self._uploading(repo), self.cache_max_bytes)
        if fault is not None:
            if doc is not None and not doc.get("complete"):
                await self.delete_cache(cache_id)  # the rest of it is not coming in any shape worth keeping
            raise CacheUploadRefused(fault)
        if doc is None:
            now = time.time()
            await self.cache_docs.update_one(
                {"_id": cache_id},
                {"$setOnInsert": {"repo": repo, "scope": scope, "key": key, "size": size, "parts": parts,
                                  "created": now, "used": now, "complete": False, "job": job_id}},
                upsert=True)
            await self.evict_caches(repo)  # room for it now: what it declares counts from its first part
        if await self.cache_part_files.find_one({"metadata.cache": cache_id, "metadata.part": part}, {"_id": 1}) is None:
            # A fresh string id per upload, as for artifacts: one a crash cut short leaves orphan chunks only.
            await self.cache_parts.upload_from_stream_with_id(
                str(ulid.ULID()), f"{cache_id}:{part}", data, metadata={"cache": cache_id, "part": part})
        if part != parts - 1:
            return False
        # Listed, not counted: nx-27017 answers count_documents on a GridFS collection with an error.
        stored = await self.cache_part_files.find({"metadata.cache": cache_id}, {"_id": 1}).to_list(None)
        if len(stored) < parts:
            return False
        await self.cache_docs.update_one({"_id": cache_id}, {"$set": {"complete": True, "used": time.time()}})
        for older in await self.cache_docs.find({"repo": repo, "scope": scope, "key": key,
                                                  "_id": {"$ne": cache_id}}, {"_id": 1}).to_list(None):
            await self.delete_cache(older["_id"])
        await self.evict_caches(repo, keep=cache_id)
        return True

    async def _sweep_stale(self, repo: str) -> None:
        """Delete the repository's uploads left incomplete for STALE_UPLOAD seconds (a drone that died while
        it sent one)."""
        stale = await self.cache_docs.find({"repo": repo, "complete": False,
                                            "created": {"$lt": time.time() - STALE_UPLOAD}}, {"_id": 1}).to_list(None)
        for doc in stale:
            await self.delete_cache(doc["_id"])

    async def _uploading(self, repo: str) -> int:
        """Bytes the repository's incomplete uploads declare."""
        docs = await self.cache_docs.find({"repo": repo, "complete": False}, {"size": 1}).to_list(None)
        return sum(int(d.get("size") or 0) for d in docs)

    async def list_caches(self, repo: str, scopes: list[str] | None = None) -> list[dict[str, Any]]:
        """The repository's complete caches (of `scopes` only, if given), most recently used first."""
        query: dict[str, Any] = {"repo": repo, "complete": True}
        if scopes is not None:
            query["scope"] = {"$in": scopes}
        docs = await self.cache_docs.find(query).to_list(None)
        return sorted(docs, key=lambda d: (-float(d.get("used") or 0), d["_id"]))

    async def get_cache(self, cache_id: str) -> dict[str, Any] | None:
        return await self.cache_docs.find_one({"_id": cache_id, "complete": True})

    async def read_cache_part(self, cache_id: str, part: int) -> bytes:
        doc = await self.cache_part_files.find_one({"metadata.cache": cache_id, "metadata.part": part}, {"_id": 1})
        if doc is None:
            raise NoFile(f"cache {cache_id} has no part {part}")
        stream = await self.cache_parts.open_download_stream(doc["_id"])
        return await stream.read()

    async def touch_cache(self, cache_id: str) -> None:
        """A job restores it: it is the most recently used."""
        await self.cache_docs.update_one({"_id": cache_id}, {"$set": {"used": time.time()}})

    async def evict_caches(self, repo: str, keep: str | None = None) -> list[str]:
        """Delete uploads left incomplete for STALE_UPLOAD seconds, then the repository's least recently
        used caches until they and the uploads still in progress fit in cache_max_bytes; their ids."""
        await self._sweep_stale(repo)
        docs = await self.cache_docs.find({"repo": repo, "complete": True}).to_list(None)
        stored = [Stored(d["_id"], d.get("scope", ""), d.get("key", ""), int(d.get("size") or 0),
                         float(d.get("used") or 0)) for d in docs]
        gone = evict(stored, self.cache_max_bytes, keep, uploading=await self._uploading(repo))
        for cache_id in gone:
            log.info("cache %s of %s evicted (the repository's caches are over %d bytes)", cache_id, repo,
                     self.cache_max_bytes)
            await self.delete_cache(cache_id)
        return gone

    async def delete_cache(self, cache_id: str) -> None:
        await self.cache_docs.delete_one({"_id": cache_id})
        for doc in await self.cache_part_files.find({"metadata.cache": cache_id}, {"_id": 1}).to_list(None):
            try:
                await self.cache_parts.delete(doc["_id"])
            except (NoFile, PyMongoError) as exc:  # nx-27017 answers a missing file with an error
                log.debug("cache part %s: %s", doc["_id"], exc)

    async def delete_caches(self, repo: str, scope: str | None = None, key: str | None = None) -> int:
        """Delete the repository's caches (complete or not), of `scope` and `key` if given; how many."""
        query: dict[str, Any] = {"repo": repo}
        if scope is not None:
            query["scope"] = scope
        if key is not None:
            query["key"] = key
        ids = [d["_id"] for d in await self.cache_docs.find(query, {"_id": 1}).to_list(None)]
        for cache_id in ids:
            await self.delete_cache(cache_id)
        return len(ids)
