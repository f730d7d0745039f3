"""Every query the queen makes, in one place, over PyMongo's asyncio API.

Collections: ``repos`` (settings and pipeline, ``_id`` = name), ``jobs`` (``_id`` =
ULID string, so ``_id`` order is trigger order), ``events`` (append-only, unique
on ``(job, seq)``, output as chunks), ``drones`` (last known state of each drone), ``secrets`` (one document per
repository secret; never copied into jobs or events), and GridFS bucket
``artifacts`` (one file per part of an artifact, found by its metadata), ``caches`` and GridFS bucket
``cacheparts`` (pipeline caches: caches.py). Ids are strings: nx-27017 does not
match ObjectId values outside ``_id``.

One module per entity: repos, jobs, events, secrets, people, artifacts, tests (``tests``: jobs' test results); `Store`
joins them over one client and database.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gridfs import AsyncGridFSBucket
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.errors import PyMongoError

from apiary.core.errors import StoreError
from apiary.core.models import Repository
from apiary.queen.sealing import Sealer

from .artifacts import ArtifactQueries
from .caches import CacheQueries
from .comments import CommentQueries
from .estimates import EstimateQueries
from .events import EventQueries
from .jobs import JobQueries
from .people import PeopleQueries
from .repos import RepoQueries
from .secrets import SecretQueries
from .tests import TestQueries

log = logging.getLogger(__name__)


class Store(RepoQueries, JobQueries, EventQueries, SecretQueries, PeopleQueries, ArtifactQueries, TestQueries,
            CacheQueries, CommentQueries, EstimateQueries):
    """The queen's store, one module per entity (this package). Open with `connect`, close with `close`."""

    def __init__(self, client: AsyncMongoClient, database: str, sealer: Sealer) -> None:
        self.client = client
        self.sealer = sealer
        self.db = client[database]
        self.repos = self.db.repos
        self.jobs = self.db.jobs
        self.events = self.db.events
        self.tests = self.db.tests  # the tests of jobs' reports (store/tests.py)
        self.drones = self.db.drones
        self.secrets = self.db.secrets
        self.users = self.db.users
        self.sessions = self.db.sessions
        self.tokens = self.db.tokens
        self.artifact_files = self.db["artifacts.files"]
        self.artifacts = AsyncGridFSBucket(self.db, bucket_name="artifacts")
        self.cache_docs = self.db.caches  # pipeline caches (caches.py)
        self.cache_part_files = self.db["cacheparts.files"]
        self.cache_parts = AsyncGridFSBucket(self.db, bucket_name="cacheparts")
        self.job_numbers = self.db.job_numbers  # a counter per repository: {_id: repo, n: last number given}
        self._numbers_seeded: set[str] = set()
        self.passes_written = 0
        self._repos: dict[str, Repository] = {}
        self._repos_listed = False
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
        # An estimate reads the last passed jobs of its repository (store/estimates.py recent_passes).
        await self.jobs.create_index([("repo", ASCENDING), ("status", ASCENDING), ("number", DESCENDING)])
        # A webhook delivery queues one job, whatever the timing (jobs without one are not indexed).
        await self.jobs.create_index([("delivery", ASCENDING)], unique=True, sparse=True)
        await self.secrets.create_index([("repo", ASCENDING)])
        await self.ensure_test_indexes()
        await self.ensure_comment_indexes()  # comments on jobs (comments.py)
        await self.ensure_user_ids()  # users made before ids, and their comments (people.py)

    # -- drones -------------------------------------------------------------

    async def save_drone(self, drone: dict[str, Any]) -> None:
        await self.drones.replace_one({"_id": drone["_id"]}, drone, upsert=True)
