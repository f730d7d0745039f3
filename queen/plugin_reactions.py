"""Plugins' running parts on the queen: their background tasks, and their reactions as jobs start and end.

`plugins_ctx` (a cleanup context of the app) gives each plugin its context,
runs each plugin's ``background`` task (started again, after a pause that
doubles up to RESTART_MAX, if it raises) and calls ``job_started`` /
``job_done`` (`Reactions`) as jobs start and end.

Reactions hear the hub's internal job event (``Hub.listen_jobs``: the queen
calls ``Hub.job_status`` where a job starts, goes back to the queue or ends),
never the browsers' ``jobs`` topic, so what browsers are sent may change
without touching plugins. Every call is timed out and its errors logged.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from apiary.core.protocol import FINAL_STATES, JobStatus
from apiary.queen import keys
from apiary.queen.plugin_context import CALL_TIMEOUT, QueenContext

if TYPE_CHECKING:
    from apiary.queen.plugin_registry import Plugins
    from apiary.queen.store import Store

log = logging.getLogger(__name__)

RESTART_MAX = 60.0  # longest wait before a crashed background task starts again
_REMEMBERED = 10_000  # jobs whose start or end is remembered, to tell each once
_RUNNING = JobStatus.RUNNING.value
_QUEUED = JobStatus.QUEUED.value
_FINAL = {s.value for s in FINAL_STATES}


async def supervise(name: str, plugin: Any, ctx: QueenContext) -> None:
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


async def _call(name: str, hook: str, coro: Coroutine[Any, Any, Any]) -> None:
    try:
        await asyncio.wait_for(coro, CALL_TIMEOUT)
    except TimeoutError:
        log.error("plugin %s: %s took longer than %g s; abandoned", name, hook, CALL_TIMEOUT)
    except Exception:
        log.exception("plugin %s: %s raised", name, hook)


class Reactions:
    """Calls plugins' ``job_started`` and ``job_done`` as jobs start and end (`on_status`, a job listener).

    Per job in that order, each once: ``job_done`` waits for ``job_started``
    to finish, and a job that ended before its start was told (a quick job
    whose events were stored in one batch) gets both, in order. A job that goes
    back to the queue for another attempt may be told again.
    """

    def __init__(self, plugins: Plugins, contexts: dict[str, QueenContext], store: Store) -> None:
        self.contexts = contexts
        self.store = store
        self.hooks: dict[str, list[tuple[str, Any]]] = {"started": [], "done": []}
        for name in contexts:
            plugin = plugins.loaded[name]
            for when in self.hooks:
                fn = getattr(plugin, f"job_{when}", None)
                if fn is not None:
                    self.hooks[when].append((name, fn))
        self._tasks: set[asyncio.Task[None]] = set()
        self._started: dict[str, asyncio.Task[None]] = {}  # running jobs whose start was told
        self._ended: collections.OrderedDict[str, None] = collections.OrderedDict()  # recent, bounded

    @property
    def wanted(self) -> bool:
        """Whether any plugin reacts to jobs."""
        return any(self.hooks.values())

    def on_status(self, job_id: str, status: str, job: dict[str, Any] | None = None) -> None:
        """Job `job_id` is now `status` (`job`: its document then, if the caller has it): tell the plugins,
        in the background, if it started or ended."""
        if status == _QUEUED:  # another attempt (its setup failed): it will start again
            self._ended.pop(job_id, None)
            return
        if job_id in self._ended:
            return
        if status == _RUNNING and job_id not in self._started:
            if len(self._started) > _REMEMBERED:  # jobs that never ended here (the queen restarted)
                self._started.clear()
            self._started[job_id] = self._spawn(self._tell(job_id, ["started"], job=job))
        elif status in _FINAL:
            self._ended[job_id] = None
            if len(self._ended) > _REMEMBERED:
                self._ended.popitem(last=False)
            before = self._started.pop(job_id, None)
            self._spawn(self._tell(job_id, ["done"] if before else ["started", "done"], before, job))

    async def close(self) -> None:
        """Abandon the calls under way (the queen is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _tell(self, job_id: str, whens: list[str], before: asyncio.Task[None] | None = None,
                    job: dict[str, Any] | None = None) -> None:
        if before is not None:
            await asyncio.wait([before])
        if not any(self.hooks[w] for w in whens):
            return
        if job is None:  # the caller did not have it: read it
            try:
                job = await self.store.get_job(job_id)
            except Exception as exc:
                log.warning("job %s: plugins not told of it: store error: %s", job_id, exc)
                return
        if job is None:
            return
        for when in whens:
            if when == "started" and not job.get("started"):
                continue  # cancelled while it waited: it never started
            await asyncio.gather(*(_call(name, f"job_{when}", fn(job, self.contexts[name]))
                                   for name, fn in self.hooks[when]))


async def plugins_ctx(app: web.Application) -> AsyncIterator[None]:
    """The plugins' contexts, background tasks and reactions, for as long as the queen runs."""
    plugins, hub = app[keys.PLUGINS], app[keys.HUB]
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "apiary"}) as http:
        contexts = app[keys.PLUGIN_CONTEXTS]
        for name in plugins.loaded:
            contexts[name] = QueenContext(app, name, http)
        tasks = [asyncio.create_task(supervise(name, plugin, contexts[name]))
                 for name, plugin in plugins.loaded.items() if callable(getattr(plugin, "background", None))]
        reactions = Reactions(plugins, contexts, app[keys.STORE])
        if reactions.wanted:
            hub.listen_jobs(reactions.on_status)
        try:
            yield
        finally:
            hub.unlisten_jobs(reactions.on_status)
            await reactions.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            contexts.clear()
