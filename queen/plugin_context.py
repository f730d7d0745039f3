"""What a plugin may do on the queen: `QueenContext`, the queen's `apiary.plugins.api.PluginContext`.

One context per plugin, for the queen's lifetime (made by
queen/plugin_reactions.py, kept under ``keys.PLUGIN_CONTEXTS``): the
repositories that use the plugin and their config, their secrets,
``trigger()`` to queue a job, an HTTP client, answers for webhooks and a
logger. Plugins see only the interface declared in plugins/api.py.

A webhook delivery (``source["delivery"]``, the forge's id of it) queues at
most one job per repository: the job keeps the delivery's key, and the same
delivery again finds that job in the store (so across restarts too). Two
identical deliveries at once wait for each other here; the store's unique
index on the key decides between queens that share a store.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fnmatch
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
from aiohttp import web

from apiary.core.context import triggered_by
from apiary.core.errors import InputError
from apiary.core.jobrequest import job_request
from apiary.core.models import Repository
from apiary.core.protocol import JobType
from apiary.plugins.api import AlreadyQueued, TriggerRefused
from apiary.queen import keys
from apiary.queen.jobs import create_job
from apiary.queen.strict_json import json_response

log = logging.getLogger(__name__)

# Set while a plugin's webhook handler runs (queen/plugin_webhooks.py): a job it queues was triggered by
# a webhook, whatever the plugin says (apiary.core.context.triggered_by).
IN_WEBHOOK: contextvars.ContextVar[bool] = contextvars.ContextVar("apiary_in_webhook", default=False)
CALL_TIMEOUT = 30.0  # seconds a webhook, a reaction or a request of a plugin's HTTP client may take
MAX_DELIVERY = 200  # characters of a delivery id kept (GitHub's and GitLab's are UUIDs: 36)


def delivery_key(plugin: str, repo: str, source: dict[str, Any] | None) -> str | None:
    """The key a webhook delivery's job keeps: ``plugin/repo/id``; None when the source names no delivery.

    Per repository: GitLab gives every webhook of one event the same X-Gitlab-Event-UUID, and two
    repositories may hear the same project.
    """
    delivery = str((source or {}).get("delivery") or "").strip()[:MAX_DELIVERY]
    return f"{plugin}/{repo}/{delivery}" if delivery else None


class KeyedLock:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def branch_allowed(repo: dict[str, Any], branch: str) -> bool:
    """Whether `repo`'s branch filters let a push or pull request for `branch` trigger a job.

    ``branches.include`` (default: all) and ``branches.exclude`` are shell-style
    patterns (``release/*``); exclude wins.
    """
    filters = repo.get("branches") or {}
    include = filters.get("include") or ["*"]
    if not any(fnmatch.fnmatchcase(branch, p) for p in include):
        return False
    return not any(fnmatch.fnmatchcase(branch, p) for p in filters.get("exclude") or [])


class QueenContext:
    """What one plugin's queen-side code may use (the methods are documented on api.PluginContext).

    The plugin API speaks plain dicts (a plugin imports nothing of Apiary's): the store's typed
    documents (apiary.core.models) are handed over as such.
    """

    def __init__(self, app: web.Application, name: str, http: aiohttp.ClientSession) -> None:
        self._app = app
        self.name = name
        self.http = http
        self.log = logging.getLogger(f"apiary.plugin.{name}")
        self._deliveries = KeyedLock()

    # -- repositories ------------------------------------------------------------

    async def repo(self, name: str) -> dict[str, Any] | None:
        return cast("dict[str, Any] | None", await self._app[keys.STORE].get_repo(name))

    def config_of(self, repo: dict[str, Any]) -> dict[str, Any] | None:
        for item in repo.get("plugins") or []:
            if item.get("name") == self.name:
                return dict(item.get("config") or {})
        return None

    async def repos(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        out = []
        for repo in cast("list[dict[str, Any]]", await self._app[keys.STORE].list_repos()):
            config = self.config_of(repo)
            if config is not None:
                out.append((repo, config))
        return out

    async def secret(self, repo: str, name: str) -> str | None:
        return (await self._app[keys.STORE].secret_values(repo)).get(name)

    def branch_allowed(self, repo: dict[str, Any], branch: str) -> bool:
        return branch_allowed(repo, branch)

    # -- jobs ---------------------------------------------------------------------

    async def trigger(self, repo: dict[str, Any], *, branch: str | None = None, commit: str | None = None,
                      fetch: str | None = None, job_type: str = JobType.TEST.value,
                      parameters: dict[str, str] | None = None, trigger: dict[str, Any] | None = None,
                      source: dict[str, Any] | None = None) -> dict[str, Any]:
        """Queue a job of `repo` and return it; raise TriggerRefused saying why not (see api.PluginContext).

        The request is checked as an API client's is (apiary.core.jobrequest),
        its trigger recorded as this plugin reports it. A pull or merge request's
        ``fork`` is false only when it comes from the same repository: its jobs
        may then get secrets (queen/trust.py). A delivery seen before raises
        AlreadyQueued with the job it queued.
        """
        # A plugin's empty branch (a payload without one) is the default branch.
        given = {"type": job_type, "branch": branch or None, "commit": commit, "fetch": fetch,
                 "parameters": parameters, "trigger": trigger}
        key = delivery_key(self.name, repo["_id"], source)
        if key is None:
            return await self._create(repo, given, source, None)
        store = self._app[keys.STORE]
        async with self._deliveries.hold(key):
            earlier = await store.job_of_delivery(key)
            if earlier is not None:
                raise AlreadyQueued(cast("dict[str, Any]", earlier))
            return await self._create(repo, given, source, key)

    async def _create(self, repo: dict[str, Any], given: dict[str, Any], source: dict[str, Any] | None,
                      key: str | None) -> dict[str, Any]:
        app = self._app
        try:
            asked = job_request(repo, given, time.time(), plugin=self.name, source=source)
            trigger = given["trigger"]
            if isinstance(trigger, dict) and trigger.get("url") and not asked["trigger"]["url"]:
                self.log.warning("trigger url %r dropped: only http(s) addresses are shown as links",
                                 str(trigger["url"])[:200])
            by = triggered_by(plugin=self.name, trigger=asked["trigger"], webhook=IN_WEBHOOK.get())
            job = await create_job(app[keys.STORE], app[keys.HIVE].dispatcher, app[keys.CONFIG].data_path / "git",
                                   cast("Repository", repo), asked, plugins=app[keys.PLUGINS], by=by, delivery=key)
        except InputError as exc:
            if key is not None and exc.field == "delivery":  # another queen stored it first (store.insert_job)
                earlier = await app[keys.STORE].job_of_delivery(key)
                if earlier is not None:
                    raise AlreadyQueued(cast("dict[str, Any]", earlier)) from None
            raise TriggerRefused(str(exc)) from None
        return cast("dict[str, Any]", job)

    async def job(self, job_id: str) -> dict[str, Any] | None:
        return cast("dict[str, Any] | None", await self._app[keys.STORE].get_job(job_id))

    async def jobs(self, repo: str, *, branch: str | None = None, before: str | None = None,
                   limit: int = 20) -> list[dict[str, Any]]:
        found = await self._app[keys.STORE].list_jobs(repo, branch, before, max(1, min(limit, 100)))
        return cast("list[dict[str, Any]]", found)

    def job_url(self, job: dict[str, Any]) -> str:
        return f"{self._app[keys.PLUGINS].base_url}/jobs/{job['_id']}"

    # -- webhook answers --------------------------------------------------------------

    @staticmethod
    def ignored(reason: str) -> web.Response:
        return web.Response(status=202, text=f"ignored: {reason}\n")

    def unauthorized(self, reason: str) -> web.Response:
        return web.Response(status=401, text=f"unauthorized: {reason}\n")

    def queued(self, jobs: list[dict[str, Any]]) -> web.Response:
        return json_response({"jobs": [{"id": j["_id"], "number": j.get("number"), "repo": j["repo"],
                                        "url": self.job_url(j)} for j in jobs]}, status=201)
