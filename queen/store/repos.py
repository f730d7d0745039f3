"""The store's repositories: settings and pipeline, one document each (``_id`` = name)."""

from __future__ import annotations

import logging

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from apiary.core.errors import Conflict
from apiary.core.models import Repository

log = logging.getLogger(__name__)


class RepoQueries:
    """Repositories, cached: read on every trigger, written rarely and only by this queen."""

    repos: AsyncCollection
    _repos: dict[str, Repository]
    _repos_listed: bool  # the cache holds every repository

    # Repositories are read on every trigger and written rarely, and only by
    # this queen: they are cached, and the cache is updated on every write.

    async def insert_repo(self, repo: Repository) -> None:
        try:
            await self.repos.insert_one(repo)
        except DuplicateKeyError:
            raise Conflict(f"repository {repo['_id']!r} already exists", field="name") from None
        self._repos[repo["_id"]] = repo

    async def replace_repo(self, repo: Repository) -> bool:
        """Create or replace; True when it was created."""
        result = await self.repos.replace_one({"_id": repo["_id"]}, repo, upsert=True)
        self._repos[repo["_id"]] = repo
        return result.matched_count == 0

    async def get_repo(self, name: str) -> Repository | None:
        if name not in self._repos:
            repo = await self.repos.find_one({"_id": name})
            if repo is None:
                return None
            self._repos[name] = repo
        return self._repos[name].copy()

    async def list_repos(self) -> list[Repository]:
        """Every repository, by name. Read from the store once, then from the cache (which every write
        updates): plugins' reactions list them after each job."""
        if not self._repos_listed:
            for repo in await self.repos.find({}).sort("_id", ASCENDING).to_list(None):
                self._repos.setdefault(repo["_id"], repo)
            self._repos_listed = True
        return [self._repos[name].copy() for name in sorted(self._repos)]
