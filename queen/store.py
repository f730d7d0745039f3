"""Every query the queen makes, in one place, over PyMongo's asyncio API.

Collections: ``repos`` (settings and pipeline, ``_id`` = name), ``jobs`` (``_id`` =
ULID string, so ``_id`` order is trigger order), ``events`` (append-only, unique
on ``(job, seq)``, output as chunks), ``drones`` (last known state of each drone), ``secrets`` (one document per
repository secret; never copied into jobs or events), and GridFS bucket
``artifacts`` (one file per part of an artifact, found by its metadata). Ids are strings: nx-27017 does not
match ObjectId values outside ``_id``.

Jobs' command summaries live in a map ``commands.<num>`` (set with ``$set``),
not an array: updates stay idempotent, and replaying an event is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import ulid
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from apiary.core.errors import Conflict, StoreError
from apiary.core.protocol import FINAL_STATES, JobStatus
from apiary.queen.sealing import Sealer
from apiary.queen.trust import secret_kinds

log = logging.getLogger(__name__)

_DUPLICATE_KEY = 11000
READ_BATCH = 5000
READ_BYTES = 2**20  # output text read at once for one page of events (a stalled client holds no more)


class Store:
    """The queen's store. Open with `connect`, close with `close`."""

    def __init__(self, client: AsyncMongoClient, database: str, sealer: Sealer) -> None:
        self.client = client
        self.sealer = sealer
        self.db = client[database]
        self.repos = self.db.repos
        self.jobs = self.db.jobs
        self.events = self.db.events
        self.drones = self.db.drones
        self.secrets = self.db.secrets
        self.users = self.db.users
        self.sessions = self.db.sessions
        self.tokens = self.db.tokens
        self.artifact_files = self.db["artifacts.files"]
        self.artifacts = AsyncGridFSBucket(self.db, bucket_name="artifacts")
        self._numbers: dict[str, int] = {}
        self._repos: dict[str, dict[str, Any]] = {}
        self._secrets: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {}
        self._numbers_lock = asyncio.Lock()

    @classmethod
    async def connect(cls, url: str, database: str, sealer: Sealer) -> Store:
        client: AsyncMongoClient = AsyncMongoClient(url, serverSelectionTimeoutMS=10_000, tz_aware=False)
        store = cls(client, database, sealer)
        try:
            await store.ensure_indexes()
            await store.seal_secrets()
        except PyMongoError as exc:
            await client.close()
            raise StoreError(f"cannot use the store at {url}: {exc}") from None
        except BaseException:
            await client.close()
            raise
        return store

    async def close(self) -> None:
        await self.client.close()

    async def ensure_indexes(self) -> None:
        await self.events.create_index([("job", ASCENDING), ("seq", ASCENDING)], unique=True)
        # Not (status, _id): nx-27017 refuses inserts into a collection whose index includes _id.
        await self.jobs.create_index([("status", ASCENDING)])
        await self.jobs.create_index([("repo", ASCENDING), ("number", DESCENDING)])
        await self.jobs.create_index([("drone", ASCENDING)])
        await self.secrets.create_index([("repo", ASCENDING)])

    # -- repositories ---------------------------------------------------

    # Repositories are read on every trigger and written rarely, and only by
    # this queen: they are cached, and the cache is updated on every write.

    async def insert_repo(self, repo: dict[str, Any]) -> None:
        try:
            await self.repos.insert_one(repo)
        except DuplicateKeyError:
            raise Conflict(f"repository {repo['_id']!r} already exists", field="name") from None
        self._repos[repo["_id"]] = repo

    async def replace_repo(self, repo: dict[str, Any]) -> bool:
        """Create or replace; True when it was created."""
        result = await self.repos.replace_one({"_id": repo["_id"]}, repo, upsert=True)
        self._repos[repo["_id"]] = repo
        return result.matched_count == 0

    async def get_repo(self, name: str) -> dict[str, Any] | None:
        if name not in self._repos:
            repo = await self.repos.find_one({"_id": name})
            if repo is None:
                return None
            self._repos[name] = repo
        return dict(self._repos[name])

    async def list_repos(self) -> list[dict[str, Any]]:
        return await self.repos.find({}).sort("_id", ASCENDING).to_list(None)

    # -- jobs -------------------------------------------------------------

    async def next_job_number(self, repo: str) -> int:
        """The repository's next job number (1, 2, 3…).

        Counted in memory, seeded once per repository from the highest number
        stored: one queen owns the jobs, and this keeps a store round trip off
        every trigger.
        """
        if repo not in self._numbers:
            async with self._numbers_lock:
                if repo not in self._numbers:
                    last = await self.jobs.find_one({"repo": repo}, {"number": 1}, sort=[("number", DESCENDING)])
                    self._numbers[repo] = int(last["number"]) if last and last.get("number") else 0
        self._numbers[repo] += 1
        return self._numbers[repo]

    async def insert_job(self, job: dict[str, Any]) -> None:
        await self.jobs.insert_one(job)

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        return await self.jobs.find_one({"_id": job_id})

    async def list_jobs(self, repo: str | None = None, branch: str | None = None,
                        before: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        query: dict[str, Any] = {}
        if repo is not None:
            query["repo"] = repo
        if branch is not None:
            # A branch, or a fetched ref such as a pull request's refs/pull/7/merge
            query["$or"] = [{"ref.branch": branch}, {"ref.fetch": branch}]
        if before is not None:
            query["_id"] = {"$lt": before}
        cursor = self.jobs.find(query, {"pipeline": 0}).sort("_id", DESCENDING).limit(limit)
        return await cursor.to_list(None)

    async def queued(self, limit: int) -> list[dict[str, Any]]:
        """The oldest queued jobs (id and plugin keys only), oldest first."""
        cursor = self.jobs.find({"status": JobStatus.QUEUED.value}, {"plugin_keys": 1}).sort("_id", ASCENDING)
        return await cursor.limit(limit).to_list(None)

    async def claim(self, job_id: str, drone_id: str) -> dict[str, Any] | None:
        """Take queued job `job_id` for `drone_id`; None if it is no longer queued."""
        return await self.jobs.find_one_and_update(
            {"_id": job_id, "status": JobStatus.QUEUED.value},
            {"$set": {"status": JobStatus.DISPATCHED.value, "drone": drone_id, "dispatched": time.time()},
             "$inc": {"attempts": 1}},
            return_document=ReturnDocument.AFTER,
        )

    async def requeue(self, job_id: str, drone_id: str) -> bool:
        """Put a job dispatched to `drone_id` that never started back in the queue."""
        # It never started: the attempt does not count.
        result = await self.jobs.update_one(
            {"_id": job_id, "drone": drone_id, "status": JobStatus.DISPATCHED.value},
            {"$set": {"status": JobStatus.QUEUED.value, "drone": None}, "$inc": {"attempts": -1}},
        )
        return result.modified_count == 1

    async def retry_or_fail(self, job_id: str, drone_id: str, reason: str, max_attempts: int) -> str | None:
        """A job `drone_id` started and lost: back to the queue while attempts remain, else errored.

        The attempt is kept in the job's ``history``. Returns the job's new
        status, or None if the job was not running on that drone.
        """
        states = [JobStatus.RUNNING.value, JobStatus.DISPATCHED.value]
        job = await self.jobs.find_one({"_id": job_id, "drone": drone_id, "status": {"$in": states}})
        if job is None:
            return None
        attempt = int(job.get("attempts") or 1)
        now = time.time()
        record = {"attempt": attempt, "drone": drone_id, "dispatched": job.get("dispatched"),
                  "started": job.get("started"), "ended": now, "reason": reason}
        if attempt < max_attempts:
            fields: dict[str, Any] = {"status": JobStatus.QUEUED.value, "drone": None}
        else:
            fields = {"status": JobStatus.ERRORED.value, "finished": now,
                      "error": f"{reason}; {attempt} attempt{'s' if attempt > 1 else ''} made, none finished"}
        result = await self.jobs.update_one(
            {"_id": job_id, "drone": drone_id, "status": job["status"]},
            {"$set": {**fields, f"history.{attempt}": record}})
        return fields["status"] if result.modified_count == 1 else None

    async def resume_point(self, job_id: str) -> tuple[int, int]:
        """Where a retried job's numbering goes on: (next event seq, next command number)."""
        last = await self.last_seq(job_id)
        job = await self.jobs.find_one({"_id": job_id}, {"commands": 1})
        nums = [int(k) for k in ((job or {}).get("commands") or {}) if str(k).isdigit()]
        return last + 1, max(nums, default=0) + 1

    async def runners_of(self, job_ids: Iterable[str]) -> dict[str, str | None]:
        """For each of `job_ids` not ended: the drone the store gives it to (None: queued)."""
        ids = list(job_ids)
        if not ids:
            return {}
        cursor = self.jobs.find({"_id": {"$in": ids}, "status": {"$nin": [s.value for s in FINAL_STATES]}},
                                {"drone": 1})
        return {doc["_id"]: doc.get("drone") for doc in await cursor.to_list(None)}

    async def ended_among(self, job_ids: Iterable[str]) -> list[str]:
        """Which of `job_ids` have ended (so a drone still running one must stop)."""
        ids = list(job_ids)
        if not ids:
            return []
        final = [s.value for s in JobStatus if s.final]
        cursor = self.jobs.find({"_id": {"$in": ids}, "status": {"$in": final}}, {"_id": 1})
        return [d["_id"] for d in await cursor.to_list(None)]

    async def jobs_in_flight(self) -> list[dict[str, Any]]:
        """Jobs dispatched to or running on a drone."""
        statuses = [JobStatus.DISPATCHED.value, JobStatus.RUNNING.value]
        return await self.jobs.find({"status": {"$in": statuses}}, {"_id": 1, "drone": 1}).to_list(None)

    async def jobs_of_drone(self, drone_id: str) -> list[dict[str, Any]]:
        """Jobs the store believes `drone_id` is dispatched to or running."""
        statuses = [JobStatus.DISPATCHED.value, JobStatus.RUNNING.value]
        cursor = self.jobs.find({"drone": drone_id, "status": {"$in": statuses}}, {"_id": 1, "status": 1})
        return await cursor.to_list(None)

    async def update_jobs(self, updates: dict[str, dict[str, Any]]) -> None:
        """Apply one ``$set`` per job, in one round trip."""
        if not updates:
            return
        if len(updates) == 1:
            (job_id, fields), = updates.items()
            await self.jobs.update_one({"_id": job_id}, {"$set": fields})
            return
        await self.jobs.bulk_write([UpdateOne({"_id": j}, {"$set": f}) for j, f in updates.items()], ordered=False)

    # -- events -----------------------------------------------------------

    async def insert_events(self, docs: list[dict[str, Any]]) -> None:
        """Store events; one already stored (same job and seq) is skipped silently."""
        if not docs:
            return
        try:
            await self.events.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != _DUPLICATE_KEY]
            if others or exc.details.get("writeConcernErrors"):
                raise

    async def job_history(self, job_id: str, output_types: Iterable[str]) -> list[dict[str, Any]]:
        """A job's stored events other than output, in seq order."""
        cursor = self.events.find({"job": job_id, "type": {"$nin": list(output_types)}}, {"_id": 0})
        return await cursor.sort("seq", ASCENDING).batch_size(READ_BATCH).to_list(None)

    async def last_seq(self, job_id: str) -> int:
        doc = await self.events.find_one({"job": job_id}, {"seq": 1}, sort=[("seq", DESCENDING)])
        return int(doc["seq"]) if doc else 0

    async def events_after(self, job_id: str, after: int = 0, limit: int | None = None,
                           max_bytes: int = READ_BYTES) -> tuple[list[dict[str, Any]], bool]:
        """(events after seq `after` in seq order, whether more follow): at most `limit` of them, and output
        text of about `max_bytes` (one event more at most): a page of a log-heavy job stays small in memory."""
        cursor = self.events.find({"job": job_id, "seq": {"$gt": after}}, {"_id": 0}).sort("seq", ASCENDING)
        if limit is not None:
            cursor = cursor.limit(limit + 1)
        events: list[dict[str, Any]] = []
        size, more = 0, False
        async for event in cursor.batch_size(500):
            if (limit is not None and len(events) >= limit) or size >= max_bytes:
                more = True
                break
            events.append(event)
            size += len(event.get("text") or "")
        await cursor.close()
        return events, more

    async def cancel_queued(self, job_id: str) -> bool:
        """Cancel a job still waiting in the queue; True if it was waiting."""
        result = await self.jobs.update_one(
            {"_id": job_id, "status": JobStatus.QUEUED.value},
            {"$set": {"status": JobStatus.CANCELLED.value, "finished": time.time(), "error": "cancelled"}})
        return result.modified_count == 1

    async def end_job(self, job_id: str, status: JobStatus, reason: str) -> bool:
        """End a job that is not final yet (its drone is gone)."""
        result = await self.jobs.update_one(
            {"_id": job_id, "status": {"$nin": [s.value for s in JobStatus if s.final]}},
            {"$set": {"status": status.value, "finished": time.time(), "error": reason}})
        return result.modified_count == 1

    async def jobs_for_retention(self, repo: str) -> list[dict[str, Any]]:
        cursor = self.jobs.find({"repo": repo}, {"_id": 1, "status": 1, "created": 1, "ref": 1, "number": 1})
        return await cursor.sort("_id", DESCENDING).batch_size(READ_BATCH).to_list(None)

    async def delete_jobs(self, job_ids: list[str]) -> None:
        """Delete jobs with their events and artifacts."""
        for job_id in job_ids:
            await self.delete_artifacts(job_id)
        if job_ids:
            await self.events.delete_many({"job": {"$in": job_ids}})
            await self.jobs.delete_many({"_id": {"$in": job_ids}})

    # -- secrets ------------------------------------------------------------

    async def set_secret(self, repo: str, name: str, value: str | None, kinds: list[str] | None) -> bool:
        """Set a secret's value and the kinds of job that get it (None: keep what it has, or the default);
        False when only kinds are given and there is no such secret."""
        self._secrets.pop(repo, None)
        changes: dict[str, Any] = {"updated": time.time()}
        if kinds is not None:
            changes["kinds"] = kinds
        if value is None:
            result = await self.secrets.update_one({"_id": f"{repo}:{name}"}, {"$set": changes})
            return result.matched_count == 1
        changes["value"] = self.sealer.seal(value)
        await self.secrets.update_one({"_id": f"{repo}:{name}"},
                                      {"$set": changes, "$setOnInsert": {"repo": repo, "name": name}}, upsert=True)
        return True

    async def delete_secret(self, repo: str, name: str) -> bool:
        self._secrets.pop(repo, None)
        return (await self.secrets.delete_one({"_id": f"{repo}:{name}"})).deleted_count == 1

    async def secret_names(self, repo: str) -> list[dict[str, Any]]:
        """The repository's secrets without their values: ``name``, ``kinds`` (of job that get it), ``updated``."""
        cursor = self.secrets.find({"repo": repo}, {"name": 1, "kinds": 1, "updated": 1, "_id": 0})
        return [{**doc, "kinds": list(secret_kinds(doc))} for doc in await cursor.sort("name", ASCENDING).to_list(None)]

    async def seal_secrets(self) -> None:
        """At start: seal values an older queen stored in clear; refuse a key that did not seal the others."""
        async for doc in self.secrets.find({}):
            if self.sealer.sealed(doc["value"]):
                self.sealer.open(doc["value"])  # ConfigError if the key is not the one used
                continue
            await self.secrets.update_one({"_id": doc["_id"]}, {"$set": {"value": self.sealer.seal(doc["value"])}})

    async def secret_values(self, repo: str) -> dict[str, str]:
        """NAME -> value; cached like repositories (every dispatch needs them)."""
        return {name: value for name, (value, _) in (await self._secret_cache(repo)).items()}

    async def secret_kinds(self, repo: str) -> list[dict[str, Any]]:
        """``{"name", "kinds"}`` of each secret (queen/trust.py decides with them), from the same cache."""
        return [{"name": name, "kinds": list(kinds)} for name, (_, kinds) in (await self._secret_cache(repo)).items()]

    async def _secret_cache(self, repo: str) -> dict[str, tuple[str, tuple[str, ...]]]:
        if repo not in self._secrets:
            self._secrets[repo] = {d["name"]: (self.sealer.open(d["value"]), secret_kinds(d))
                                   async for d in self.secrets.find({"repo": repo})}
        return self._secrets[repo]

    # -- people: users, sessions, API tokens ----------------------------------------

    async def count_users(self, role: str | None = None) -> int:
        return await self.users.count_documents({"role": role} if role else {})

    async def get_user(self, name: str) -> dict[str, Any] | None:
        return await self.users.find_one({"_id": name})

    async def insert_user(self, name: str, password_hash: str, role: str) -> bool:
        """Add a user; False if the name is taken."""
        try:
            await self.users.insert_one({"_id": name, "password": password_hash, "role": role,
                                         "created": time.time()})
        except DuplicateKeyError:
            return False
        return True

    async def add_join_token(self, token_hash: str, drone_id: str | None, expires: float, by: str) -> None:
        await self.db.join_tokens.insert_one({"_id": token_hash, "id": drone_id, "expires": expires,
                                              "created": time.time(), "by": by})

    async def get_join_token(self, token_hash: str) -> dict[str, Any] | None:
        return await self.db.join_tokens.find_one({"_id": token_hash})

    async def use_join_token(self, token_hash: str) -> bool:
        """Delete the token; False when another request used it first."""
        return (await self.db.join_tokens.delete_one({"_id": token_hash})).deleted_count == 1

    async def make_admin(self, name: str, password_hash: str) -> None:
        """`name` becomes an admin with this password, made if new (the setup path: no admin exists)."""
        await self.users.update_one({"_id": name}, {"$set": {"password": password_hash, "role": "admin"},
                                                    "$setOnInsert": {"created": time.time()}}, upsert=True)
        await self.sessions.delete_many({"user": name})

    async def list_users(self) -> list[dict[str, Any]]:
        return await self.users.find({}, {"password": 0}).sort("_id", ASCENDING).to_list(None)

    async def delete_user(self, name: str) -> bool:
        await self.sessions.delete_many({"user": name})
        await self.tokens.delete_many({"user": name})
        return (await self.users.delete_one({"_id": name})).deleted_count == 1

    async def create_session(self, session_id: str, user: str, csrf: str, expires: float) -> None:
        await self.sessions.insert_one({"_id": session_id, "user": user, "csrf": csrf, "expires": expires})

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        return await self.sessions.find_one({"_id": session_id, "expires": {"$gt": time.time()}})

    async def delete_session(self, session_id: str) -> None:
        await self.sessions.delete_one({"_id": session_id})

    async def create_token(self, token_id: str, user: str, secret_hash: str, name: str) -> None:
        await self.tokens.insert_one({"_id": token_id, "user": user, "hash": secret_hash, "name": name,
                                      "created": time.time()})

    async def get_token(self, token_id: str) -> dict[str, Any] | None:
        return await self.tokens.find_one({"_id": token_id})

    async def list_tokens(self, user: str) -> list[dict[str, Any]]:
        return await self.tokens.find({"user": user}, {"hash": 0}).sort("created", ASCENDING).to_list(None)

    async def delete_token(self, token_id: str, user: str) -> bool:
        return (await self.tokens.delete_one({"_id": token_id, "user": user})).deleted_count == 1

    # -- artifacts -------------------------------------------------------------

    async def save_artifact_part(self, job_id: str, name: str, part: int, parts: int, size: int,
                                 data: bytes) -> None:
        """Store one part of an artifact; storing the same part again is a no-op.

        Each upload gets a fresh string id (nx-27017 matches ObjectIds only in
        _id, and GridFS looks chunks up by files_id): an upload a crash cut short
        leaves orphan chunks, never a conflict with the retry.
        """
        if await self._artifact_file(job_id, name, part) is not None:
            return
        await self.artifacts.upload_from_stream_with_id(
            str(ulid.ULID()), name, data,
            metadata={"job": job_id, "name": name, "part": part, "parts": parts, "size": size})

    async def _artifact_file(self, job_id: str, name: str, part: int) -> str | None:
        doc = await self.artifact_files.find_one(
            {"metadata.job": job_id, "metadata.name": name, "metadata.part": part}, {"_id": 1})
        return None if doc is None else doc["_id"]

    async def list_artifacts(self, job_id: str) -> list[dict[str, Any]]:
        """The job's artifacts whose every part is stored: name, size, parts."""
        files = await self.artifact_files.find({"metadata.job": job_id}).to_list(None)
        seen: dict[str, set[int]] = {}
        info: dict[str, dict[str, Any]] = {}
        for f in files:
            meta = f.get("metadata") or {}
            seen.setdefault(meta["name"], set()).add(meta["part"])
            info[meta["name"]] = {"name": meta["name"], "size": meta["size"], "parts": meta["parts"]}
        return sorted((i for n, i in info.items() if len(seen[n]) == i["parts"]), key=lambda i: i["name"])

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

    # -- drones -------------------------------------------------------------

    async def save_drone(self, drone: dict[str, Any]) -> None:
        await self.drones.replace_one({"_id": drone["_id"]}, drone, upsert=True)
