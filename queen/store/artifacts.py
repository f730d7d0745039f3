"""The store's artifacts: GridFS bucket ``artifacts``, one file per part, found by its metadata."""

from __future__ import annotations

import logging
from typing import Any

import ulid
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

log = logging.getLogger(__name__)


class ArtifactQueries:
    """Artifacts' parts: saved once each, listed, read, deleted with their job."""

    artifacts: AsyncGridFSBucket
    artifact_files: AsyncCollection

    async def save_artifact_part(self, job_id: str, name: str, part: int, parts: int, size: int,
                                 data: bytes, attempt: int = 1) -> None:
        """Store one part of an artifact; storing the same part again is a no-op. A later `attempt`'s file
        replaces the earlier attempts' parts of that name (a job that went on after its approval gate, or was
        run again, keeps the artifacts its last attempt made; the parts of one file never mix attempts).

        Each upload gets a fresh string id (nx-27017 matches ObjectIds only in
        _id, and GridFS looks chunks up by files_id): an upload a crash cut short
        leaves orphan chunks, never a conflict with the retry.
        """
        stored = await self.artifact_files.find({"metadata.job": job_id, "metadata.name": name},
                                                {"_id": 1, "metadata": 1}).to_list(None)
        if any(f["metadata"]["part"] == part and f["metadata"].get("attempt", 1) >= attempt for f in stored):
            return
        for f in stored:
            if f["metadata"].get("attempt", 1) < attempt:
                try:
                    await self.artifacts.delete(f["_id"])
                except (NoFile, PyMongoError) as exc:  # nx-27017 answers a missing file with an error
                    log.debug("artifact file %s of job %s: %s", f["_id"], job_id, exc)
        await self.artifacts.upload_from_stream_with_id(
            str(ulid.ULID()), name, data,
            metadata={"job": job_id, "name": name, "part": part, "parts": parts, "size": size, "attempt": attempt})

    async def _artifact_file(self, job_id: str, name: str, part: int) -> str | None:
        doc = await self.artifact_files.find_one(
            {"metadata.job": job_id, "metadata.name": name, "metadata.part": part}, {"_id": 1})
        return None if doc is None else doc["_id"]

    async def list_artifacts(self, job_id: str) -> list[dict[str, Any]]:
        """The job's artifacts whose every part is stored: name, size, parts."""
        return (await self.list_artifacts_of([job_id]))[job_id]

    async def list_artifacts_of(self, job_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """`list_artifacts` of each of `job_ids` (job id -> its list), in one query: a continuation of a parent
        with 256 child jobs lists them all before it can be sent (one query each took 8.7 s on a loaded queen)."""
        files = await self.artifact_files.find({"metadata.job": {"$in": list(job_ids)}}).to_list(None)
        seen: dict[tuple[str, str], set[int]] = {}
        info: dict[tuple[str, str], dict[str, Any]] = {}
        for f in files:
            meta = f.get("metadata") or {}
            key = (meta["job"], meta["name"])
            seen.setdefault(key, set()).add(meta["part"])
            info[key] = {"name": meta["name"], "size": meta["size"], "parts": meta["parts"]}
        listed: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in job_ids}
        for key, i in sorted(info.items(), key=lambda kv: kv[1]["name"]):
            if len(seen[key]) == i["parts"] and key[0] in listed:
                listed[key[0]].append(i)
        return listed

    async def read_artifact_part(self, job_id: str, name: str, part: int) -> bytes:
        file_id = await self._artifact_file(job_id, name, part)
        if file_id is None:
            raise NoFile(f"job {job_id} has no part {part} of {name}")
        stream = await self.artifacts.open_download_stream(file_id)
        return await stream.read()

    async def delete_artifacts(self, job_id: str) -> None:
        for doc in await self.artifact_files.find({"metadata.job": job_id}, {"_id": 1}).to_list(None):
            try:
                await self.artifacts.delete(doc["_id"])
            except (NoFile, PyMongoError) as exc:  # nx-27017 answers a missing file with an error
                log.debug("artifact file %s of job %s: %s", doc["_id"], job_id, exc)
