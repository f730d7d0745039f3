"""What a plugin may do on the queen: `QueenContext`, the queen's `apiary.plugins.api.PluginContext`.

One context per plugin, for the queen's lifetime (made by
queen/plugin_reactions.py, kept under ``keys.PLUGIN_CONTEXTS``): the
repositories that use the plugin and their config, their secrets,
``trigger()`` to queue a job, an HTTP client, answers for webhooks and a
logger. Plugins see only the interface declared in plugins/api.py.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from typing import Any, cast

import aiohttp
from aiohttp import web

from apiary.core.errors import InputError
from apiary.core.jobrequest import job_request
from apiary.core.models import Repository
from apiary.core.protocol import JobType
from apiary.plugins.api import TriggerRefused
from apiary.queen import keys
from apiary.queen.jobs import create_job
from apiary.queen.strict_json import json_response

log = logging.getLogger(__name__)

CALL_TIMEOUT = 30.0  # seconds a webhook, a reaction or a request of a plugin's HTTP client may take


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
        may then get secrets (queen/trust.py).
        """
        # A plugin's empty branch (a payload without one) is the default branch.
        given = {"type": job_type, "branch": branch or None, "commit": commit, "fetch": fetch,
                 "parameters": parameters, "trigger": trigger}
        app = self._app
        try:
            asked = job_request(repo, given, time.time(), plugin=self.name, source=source)
            if isinstance(trigger, dict) and trigger.get("url") and not asked["trigger"]["url"]:
                self.log.warning("trigger url %r dropped: only http(s) addresses are shown as links",
                                 str(trigger["url"])[:200])
            job = await create_job(app[keys.STORE], app[keys.HIVE].dispatcher, app[keys.CONFIG].data_path / "git",
                                   cast("Repository", repo), asked, plugins=app[keys.PLUGINS])
        except InputError as exc:
            raise TriggerRefused(str(exc)) from None
        return cast("dict[str, Any]", job)

    async def job(self, job_id: str) -> dict[str, Any] | None:
        return cast("dict[str, Any] | None", await self._app[keys.STORE].get_job(job_id))

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
