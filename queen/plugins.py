"""The queen's side of plugins (DESIGN.md §6): loading them, their context, webhooks, tasks, reactions.

Plugins are entry points in group ``apiary.plugins`` installed next to the
queen (the built-ins in ``plugins/`` are). A plugin that fails to import is
logged and left out. What each part may do is in plugins/api.py; here:

* `Plugins` (on the app under ``keys.PLUGINS``) holds the loaded plugins and
  validates repositories' plugin settings against their schemas;
* `PluginContext` is what a plugin's queen-side code gets: the repositories
  that use it and their config, secrets, ``trigger()``, an HTTP client,
  response helpers and a logger;
* ``POST /hooks/<plugin>/<repo>`` calls the plugin's ``webhook``;
* `plugins_ctx` runs each plugin's ``background`` task (restarted with backoff
  if it raises) and calls ``job_started`` / ``job_done`` as jobs start and end.

Plugin code is not trusted to behave: every call is timed out and its errors
logged; a webhook that raises answers 500 naming the plugin.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fnmatch
import logging
import time
from collections.abc import AsyncIterator
from importlib.metadata import entry_points
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from apiary.plugins.api import ConfigProblem, check_config, check_schema

from . import keys
from apiary.core.errors import BadRequest, RequestError
from apiary.queen.hub import Hub
from apiary.queen.jobs import create_job
from apiary.core.protocol import FINAL_STATES, JobStatus, JobType
from apiary.queen.strict_json import json_response
from apiary.queen.validate import ENV_NAME, is_web_link, unstorable

log = logging.getLogger(__name__)

GROUP = "apiary.plugins"
CALL_TIMEOUT = 30.0  # seconds a webhook or a reaction may take
RESTART_MAX = 60.0  # longest wait before a crashed background task starts again
_RUNNING = JobStatus.RUNNING.value
_FINAL = {s.value for s in FINAL_STATES}


class Plugins:
    """The plugins installed next to the queen, by entry-point name."""

    def __init__(self, loaded: dict[str, Any]) -> None:
        self.loaded = loaded
        self.base_url = ""  # the dashboard's address, known once the queen listens

    @classmethod
    def discover(cls) -> Plugins:
        loaded: dict[str, Any] = {}
        for ep in entry_points(group=GROUP):
            try:
                plugin = ep.load()
                if getattr(plugin, "config_schema", None) is not None:
                    check_schema(plugin.config_schema)
            except Exception as exc:  # a broken plugin must not stop the queen
                log.error("plugin %s (%s) not loaded: %s: %s", ep.name, ep.value, type(exc).__name__, exc)
                continue
            loaded[ep.name] = plugin
        log.debug("plugins: %s", ", ".join(sorted(loaded)) or "none")
        return cls(loaded)

    def check_settings(self, value: Any, where: str = "plugins") -> list[dict[str, Any]]:
        """A repository's ``plugins`` setting, validated: [{"name", "config"}]; the queen must have each."""
        if isinstance(value, str):  # YAML text, as typed on the settings page
            try:
                value = yaml.safe_load(value) if value.strip() else []
            except yaml.YAMLError as exc:
                raise BadRequest(f"{where}: not valid YAML: {exc}", field=where) from None
            if (fault := unstorable(value)) is not None:  # dates, 2**64, aliases that never end…
                raise BadRequest(f"{where}{fault[0]}: {fault[1]}", field=where + fault[0])
        if value is None:
            return []
        if not isinstance(value, list):
            raise BadRequest(f"{where}: must be a list of plugins (a name, or name and config)", field=where)
        out, seen = [], set()
        for i, item in enumerate(value):
            here = f"{where}[{i}]"
            if isinstance(item, str):
                item = {"name": item}
            if not isinstance(item, dict) or set(item) - {"name", "config"}:
                raise BadRequest(f"{here}: must be a name or {{name, config}}", field=here)
            name = item.get("name")
            if not isinstance(name, str) or name not in self.loaded:
                known = ", ".join(sorted(self.loaded)) or "none"
                raise BadRequest(f"{here}.name: no plugin {name!r} is installed on the queen (installed: {known})",
                                 field=f"{here}.name")
            if name in seen:
                raise BadRequest(f"{here}.name: {name} is named twice", field=f"{here}.name")
            seen.add(name)
            out.append({"name": name, "config": self.check_config(name, item.get("config"), f"{here}.config")})
        return out

    def check_config(self, name: str, config: Any, where: str) -> dict[str, Any]:
        """`config` for plugin `name`, validated when the queen has the plugin (else returned as given)."""
        plugin = self.loaded.get(name)
        if plugin is None:
            if config is not None and not isinstance(config, dict):
                raise BadRequest(f"{where}: must be a mapping of settings", field=where)
            return dict(config or {})
        try:
            return check_config(getattr(plugin, "config_schema", None), config, plugin)
        except ConfigProblem as exc:
            field = f"{where}.{exc.field}" if exc.field else where
            raise BadRequest(f"{field}: {exc.problem}", field=field) from None
        except Exception as exc:  # the plugin's own check_config broke
            log.exception("plugin %s: check_config raised", name)
            raise BadRequest(f"{where}: plugin {name} could not check it: {type(exc).__name__}: {exc}",
                             field=where) from None

    def schema(self, name: str) -> dict[str, Any]:
        return dict(getattr(self.loaded.get(name), "config_schema", None) or {})

    def queen_secrets(self, repo: dict[str, Any]) -> set[str]:
        """The names of `repo`'s secrets that its queen plugins use themselves (schema fields marked
        ``secret``): they stay on the queen, whatever kinds of job they say they are for."""
        names = set()
        for entry in repo.get("plugins") or []:
            config = entry.get("config") or {}
            for field, spec in self.schema(entry.get("name", "")).items():
                if spec.get("secret"):
                    value = config.get(field, spec.get("default"))
                    if isinstance(value, str) and value:
                        names.add(value)
        return names


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


class TriggerRefused(Exception):
    """`PluginContext.trigger` could not queue the job; the message says why (a ref, a parameter…)."""


class PluginContext:
    """What one plugin's queen-side code may use. One per plugin, for the queen's lifetime."""

    def __init__(self, app: web.Application, name: str, http: aiohttp.ClientSession) -> None:
        self._app = app
        self.name = name
        self.http = http
        self.log = logging.getLogger(f"apiary.plugin.{name}")

    # -- repositories ------------------------------------------------------------

    async def repo(self, name: str) -> dict[str, Any] | None:
        """A repository's settings (``_id`` is its name), or None."""
        return await self._app[keys.STORE].get_repo(name)

    def config_of(self, repo: dict[str, Any]) -> dict[str, Any] | None:
        """This plugin's config in `repo`'s settings (defaults filled), or None if the repository does not use it."""
        for item in repo.get("plugins") or []:
            if item.get("name") == self.name:
                return dict(item.get("config") or {})
        return None

    async def repos(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Every repository that uses this plugin, with its config."""
        out = []
        for repo in await self._app[keys.STORE].list_repos():
            config = self.config_of(repo)
            if config is not None:
                out.append((repo, config))
        return out

    async def secret(self, repo: str, name: str) -> str | None:
        """The value of a repository's secret (never log it)."""
        return (await self._app[keys.STORE].secret_values(repo)).get(name)

    def branch_allowed(self, repo: dict[str, Any], branch: str) -> bool:
        return branch_allowed(repo, branch)

    # -- jobs ---------------------------------------------------------------------

    async def trigger(self, repo: dict[str, Any], *, branch: str | None = None, commit: str | None = None,
                      fetch: str | None = None, job_type: str = JobType.TEST.value,
                      parameters: dict[str, str] | None = None, trigger: dict[str, Any] | None = None,
                      source: dict[str, Any] | None = None) -> dict[str, Any]:
        """Queue a job of `repo` and return it; raise TriggerRefused saying why not.

        `trigger` holds ``type`` (push, pull_request, tag, schedule…), ``author``
        {name, email, username}, ``message``, ``url``, ``timestamp``, and for a
        pull or merge request ``fork`` (false only when it comes from a branch of
        the same repository: its jobs may then get secrets, queen/trust.py); `source`
        adds details to ``trigger.source``, whose type is ``plugin`` and plugin
        this one's name.
        """
        if job_type not in JobType._value2member_map_:
            raise TriggerRefused(f"type: must be one of {', '.join(t.value for t in JobType)}")
        ref: dict[str, Any] = {"fetch": fetch} if fetch else {"branch": branch or repo.get("default_branch", "main")}
        if commit:
            ref["id"] = commit
        for key in parameters or {}:
            if not ENV_NAME.match(key):
                raise TriggerRefused(f"parameters.{key}: not a parameter name")
        given = dict(trigger or {})
        author = given.get("author") or {}
        url = str(given.get("url") or "")
        if url and not is_web_link(url):
            self.log.warning("trigger url %r dropped: only http(s) addresses are shown as links", url[:200])
            url = ""
        record = {
            "type": str(given.get("type") or self.name),
            "author": {str(k): str(v) for k, v in (author.items() if isinstance(author, dict) else
                                                   [("name", author)])},
            "message": str(given.get("message") or ""),
            "url": url,
            "timestamp": given.get("timestamp") or time.time(),
            "source": {**(source or {}), "type": "plugin", "plugin": self.name},
        }
        if "fork" in given:  # a pull or merge request: from another repository (the default) or this one
            record["fork"] = given["fork"] is not False
        app = self._app
        try:
            return await create_job(app[keys.STORE], app[keys.HIVE].dispatcher, app[keys.CONFIG].data_path / "git",
                                    repo, ref=ref, job_type=job_type,
                                    parameters={k: str(v) for k, v in (parameters or {}).items()}, trigger=record,
                                    plugins=app[keys.PLUGINS])
        except RequestError as exc:
            raise TriggerRefused(str(exc)) from None

    async def job(self, job_id: str) -> dict[str, Any] | None:
        return await self._app[keys.STORE].get_job(job_id)

    def job_url(self, job: dict[str, Any]) -> str:
        """The job's page on the dashboard."""
        return f"{self._app[keys.PLUGINS].base_url}/jobs/{job['_id']}"

    # -- webhook answers --------------------------------------------------------------

    @staticmethod
    def ignored(reason: str) -> web.Response:
        """202: understood, nothing queued (an unknown repository, a branch the filters leave out…)."""
        return web.Response(status=202, text=f"ignored: {reason}\n")

    def unauthorized(self, reason: str) -> web.Response:
        """401: the payload's signature or token is missing or wrong; nothing queued."""
        return web.Response(status=401, text=f"unauthorized: {reason}\n")

    def queued(self, jobs: list[dict[str, Any]]) -> web.Response:
        """201 with the jobs queued."""
        return json_response({"jobs": [{"id": j["_id"], "number": j.get("number"), "repo": j["repo"],
                                        "url": self.job_url(j)} for j in jobs]}, status=201)


# -- webhooks -----------------------------------------------------------------------------

async def webhook(request: web.Request) -> web.StreamResponse:
    """``POST /hooks/<plugin>/<repo>``: hand the request to the plugin's webhook handler."""
    name = request.match_info["plugin"]
    contexts = request.app[keys.PLUGIN_CONTEXTS]
    plugin = request.app[keys.PLUGINS].loaded.get(name)
    handler = getattr(plugin, "webhook", None)
    if plugin is None or handler is None or name not in contexts:
        return json_response({"error": f"no plugin {name!r} with a webhook is installed on this queen",
                              "field": "plugin"}, status=404)
    try:
        response = await asyncio.wait_for(handler(request, contexts[name]), CALL_TIMEOUT)
    except TimeoutError:
        log.error("plugin %s: webhook did not answer within %g s", name, CALL_TIMEOUT)
        return json_response({"error": f"plugin {name}: no answer within {CALL_TIMEOUT:g} s"}, status=504)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.exception("plugin %s: webhook raised", name)
        return json_response({"error": f"plugin {name}: {type(exc).__name__}: {exc}"}, status=500)
    if not isinstance(response, web.StreamResponse):
        log.error("plugin %s: webhook returned %r, not a response", name, type(response).__name__)
        return json_response({"error": f"plugin {name}: gave no response"}, status=500)
    return response


# -- background tasks and reactions -----------------------------------------------------------

async def _supervise(name: str, plugin: Any, ctx: PluginContext) -> None:
    """Run the plugin's background task; start it again, after a growing pause, if it raises."""
    pause = 1.0
    while True:
        started = time.monotonic()
        try:
            await plugin.background(ctx)
            log.info("plugin %s: background task ended", name)
            return
        except Exception:
            log.exception("plugin %s: background task raised; starting it again in %g s", name, pause)
        if time.monotonic() - started > RESTART_MAX:
            pause = 1.0
        await asyncio.sleep(pause)
        pause = min(pause * 2, RESTART_MAX)


async def _call(name: str, hook: str, coro: Any) -> None:
    try:
        await asyncio.wait_for(coro, CALL_TIMEOUT)
    except TimeoutError:
        log.error("plugin %s: %s took longer than %g s; abandoned", name, hook, CALL_TIMEOUT)
    except Exception:
        log.exception("plugin %s: %s raised", name, hook)


class Reactions:
    """Calls plugins' ``job_started`` and ``job_done`` as the hub announces status changes.

    Per job in that order, each once: ``job_done`` waits for ``job_started``
    to finish, and a job that ended before its start was announced (a quick
    job whose events were stored in one batch) gets both, in order.
    """

    def __init__(self, app: web.Application, contexts: dict[str, PluginContext]) -> None:
        self.app = app
        self.hooks: dict[str, list[tuple[str, Any]]] = {"started": [], "done": []}
        for name in contexts:
            plugin = app[keys.PLUGINS].loaded[name]
            for when in self.hooks:
                fn = getattr(plugin, f"job_{when}", None)
                if fn is not None:
                    self.hooks[when].append((name, fn))
        self._tasks: set[asyncio.Task[None]] = set()
        self._started: dict[str, asyncio.Task[None]] = {}  # running jobs whose start was told
        self._ended: collections.OrderedDict[str, None] = collections.OrderedDict()  # recent, bounded

    @property
    def wanted(self) -> bool:
        return any(self.hooks.values())

    async def run(self, hub: Hub) -> None:
        sub = hub.subscribe(None, "jobs")
        try:
            while True:
                message = await sub.get()
                if message is None:  # fell behind: start listening afresh
                    hub.unsubscribe(sub)
                    sub = hub.subscribe(None, "jobs")
                    continue
                self.on_status(message.get("job"), message.get("status"))
        finally:
            hub.unsubscribe(sub)
            for task in list(self._tasks):
                task.cancel()

    def on_status(self, job_id: Any, status: Any) -> None:
        if not isinstance(job_id, str):
            return
        if status == JobStatus.QUEUED.value:  # another attempt (its setup failed): it will start again
            self._ended.pop(job_id, None)
            return
        if job_id in self._ended:
            return
        if status == _RUNNING and job_id not in self._started:
            if len(self._started) > 10_000:  # jobs that never ended here (the queen restarted)
                self._started.clear()
            self._started[job_id] = self._spawn(self._tell(job_id, ["started"]))
        elif status in _FINAL:
            self._ended[job_id] = None
            if len(self._ended) > 10_000:
                self._ended.popitem(last=False)
            before = self._started.pop(job_id, None)
            self._spawn(self._tell(job_id, ["done"] if before else ["started", "done"], before))

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _tell(self, job_id: str, whens: list[str], before: asyncio.Task[None] | None = None) -> None:
        if before is not None:
            await asyncio.wait([before])
        if not any(self.hooks[w] for w in whens):
            return
        try:
            job = await self.app[keys.STORE].get_job(job_id)
        except Exception as exc:
            log.warning("job %s: plugins not told of it: store error: %s", job_id, exc)
            return
        if job is None:
            return
        contexts = self.app[keys.PLUGIN_CONTEXTS]
        for when in whens:
            if when == "started" and not job.get("started"):
                continue  # cancelled while it waited: it never started
            await asyncio.gather(*(_call(name, f"job_{when}", fn(job, contexts[name]))
                                   for name, fn in self.hooks[when]))


@contextlib.asynccontextmanager
async def _running(app: web.Application) -> AsyncIterator[None]:
    plugins = app[keys.PLUGINS]
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "apiary"}) as http:
        contexts = app[keys.PLUGIN_CONTEXTS]
        for name in plugins.loaded:
            contexts[name] = PluginContext(app, name, http)
        tasks = [asyncio.create_task(_supervise(name, plugin, contexts[name]))
                 for name, plugin in plugins.loaded.items() if callable(getattr(plugin, "background", None))]
        reactions = Reactions(app, contexts)
        if reactions.wanted:
            tasks.append(asyncio.create_task(reactions.run(app[keys.HUB])))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            contexts.clear()


async def plugins_ctx(app: web.Application) -> AsyncIterator[None]:
    """The plugins' contexts, background tasks and reactions, for as long as the queen runs."""
    async with _running(app):
        yield
