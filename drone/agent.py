"""A drone: takes jobs from its queen and runs them, up to `capacity` at once.

The agent holds the job slots and turns queen messages into work: ``queue:new``
starts a JobRun in a fresh workspace, ``job:cancel`` cancels it. It reports
through the Connection, which numbers, keeps and resends events.

Lifecycle: ``async with Agent(config) as agent: await agent.run()``. Stopping
(cancelling `run`) stops running jobs politely (their cleanup runs) and reports
each as an attempt that could not finish here (``errored`` with ``retry``: the
queen runs it again; it is not ``cancelled``, nobody asked for that), waits
briefly for the queen to ack what they said, and says ``drone:bye``.

A cancel names the attempt it concerns: it stops that attempt (or an older
one), never a newer attempt of the same job that the queen gave this drone
since. A new attempt of a job whose older copy is still winding down here
starts once that copy has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
import weakref
from pathlib import Path
from typing import Any

from apiary.core import __version__
from apiary.core.config import DroneConfig
from apiary.core.errors import ApiaryError
from apiary.core.protocol import CANCELLED_LINE, PROTOCOL_VERSION, STOPPING_LINE, Msg

from . import artifacts
from .caches import CacheRequests, JobCaches
from .connection import Connection
from .debugshell import DebugShells
from .executor import JobRun
from .jobkit import JobKits
from .limits import JobLimits
from .plugins import PluginManager
from .sandbox import CREDENTIALS, JobPaths, Limits, detect
from .workspace import Workspaces

log = logging.getLogger(__name__)

# Bytes of a job's artifacts that may wait for the queen's ack at once.
ARTIFACT_WINDOW = 16 * 1024 * 1024


class Refused(ApiaryError):
    """The queen refused this drone (another protocol version, bad info)."""


class Agent:
    def __init__(self, config: DroneConfig) -> None:
        self.config = config
        self.id = config.drone_id
        self.capacity = config.slots
        self.workspaces = Workspaces(config.work_path / "workspaces", config.keep_workspaces)
        self.plugins = PluginManager(config)
        self.jobs: dict[str, asyncio.Task[None]] = {}
        # This process, to the queen: a reconnect keeps its id; another process claiming it is refused.
        self.session = secrets.token_hex(8)
        self.conn = Connection(config, self.id, self.on_message, self.info, self.heartbeat)
        self.cache_requests = CacheRequests(self.conn.send)  # cache:get out, cache:part back (caches.py)
        self._refused: asyncio.Future[str] | None = None
        self._refusal_said = float("-inf")
        self._stopped = False
        self._reported: set[str] = set()  # jobs whose job:done is said (sent, or held in `_done`)
        # A job's job:done, held until its slot is free (its workspace, network and sandbox gone): the queen
        # frees the slot when it hears job:done, and sends the next job into it at once.
        self._done: dict[str, dict[str, Any]] = {}
        self._started: set[str] = set()  # jobs whose job:started is sent
        self._cancel_first: dict[str, int] = {}  # cancels that came before their job: job -> up to which attempt
        self._attempts: dict[str, int] = {}  # running job -> its attempt number
        self._next: dict[str, dict[str, Any]] = {}  # a newer attempt waiting for its older copy to end
        self._cancelled: weakref.WeakSet[asyncio.Task[None]] = weakref.WeakSet()  # jobs told to stop
        # What jobs may take of the drone's environment is the sandbox's choice (sandbox.KEEP_ENV, pass_env).
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith("APIARY_")}
        home = Path.home()
        config.work_path.mkdir(parents=True, exist_ok=True)  # hidden from jobs: it must exist to be
        keys = [Path(config.curve_secret_key).expanduser().absolute()] if config.curve_secret_key else []
        self.sandbox = detect(
            config.sandbox, config.job_network,
            hide=[config.work_path, *keys, *(home / c for c in CREDENTIALS), *config.hidden_paths],
            limits=Limits(open_files=config.job_max_open_files, memory=config.job_max_memory,
                          processes=config.job_max_processes),
            job_user=config.job_user, pass_env=config.pass_env_names,
            shown=(config.work_path / "plugins", *config.shown_paths))
        # One ready for the next job: its folders, its network and its first command's sandbox.
        self.workspaces.seal(passable=self.sandbox.bwrap is None and self.sandbox.job_user is not None)
        self.kits = JobKits(self.sandbox, self.workspaces)
        # Failed jobs' workspaces kept for debug shells, and the shells (debugshell.py)
        self.debug = DebugShells(self.sandbox, config.work_path, self.conn.send,
                                 queen_lost=lambda: not self.conn.reachable,
                                 lost_after=config.heartbeat_interval * config.heartbeat_liveness)

    async def __aenter__(self) -> Agent:
        self._refused = asyncio.get_running_loop().create_future()
        self.conn.start()
        self.workspaces.sweep()  # what a killed run left: before any kit or job of this one
        self.kits.start()
        self.debug.start()
        log.info("drone %s: capacity %d, speed %s, connecting to %s", self.id, self.capacity,
                 self.config.speed, self.config.queen)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._stopped:
            await self.stop(ack_timeout=0.5)
        await self.kits.close()
        await self.debug.close()
        self.conn.close()

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "session": self.session, "capacity": self.capacity, "speed": self.config.speed,
                "plugins": self.plugins.have(),
                "installs_plugins": self.plugins.installs,
                "version": PROTOCOL_VERSION, "apiary": __version__, "host": socket.gethostname(),
                "jobs": list(self.jobs), "held": self.conn.outbox.held()}

    def heartbeat(self) -> dict[str, Any]:
        return {"jobs": list(self.jobs), "held": self.conn.outbox.held(), "load": os.getloadavg()[0],
                "plugins": self.plugins.have(), "stopping": self._stopped}

    async def run(self) -> None:
        """Serve until cancelled; raise Refused if the queen will not have us.

        On cancel, running jobs end as cancelled and the queen gets the chance
        to ack what they said (the receiver keeps reading acks meanwhile).
        """
        assert self._refused is not None
        receiver = asyncio.create_task(self.conn.run())
        try:
            done, _ = await asyncio.wait({receiver, self._refused}, return_when=asyncio.FIRST_COMPLETED)
            if self._refused in done:
                raise Refused(self._refused.result())
            receiver.result()
        except asyncio.CancelledError:
            await self.stop()
            raise
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver

    def on_message(self, msg: Msg, body: dict[str, Any]) -> None:
        if msg is Msg.QUEUE_NEW:
            self.start_job(body)
        elif msg is Msg.CACHE_PART:
            self.cache_requests.answer(body)
        elif msg.value.startswith("debug:"):
            self.debug.on_message(msg, body)
        elif msg is Msg.JOB_CANCEL:
            self.cancel(body["id"], body["attempt"], force=body.get("force") is True)
        elif msg is Msg.REFUSED and body.get("retry") is True:
            # Its id is held by another connection for now: ask again (the queen asks us, each second).
            now = time.monotonic()
            if now - self._refusal_said >= 10.0:
                self._refusal_said = now
                log.warning("the queen refused this drone for now: %s; trying again", body["reason"])
        elif msg is Msg.REFUSED:
            log.error("the queen refused this drone: %s", body["reason"])
            if self._refused is not None and not self._refused.done():
                self._refused.set_result(body["reason"])

    def cancel(self, job_id: str, attempt: int, force: bool = False) -> None:
        """Stop attempt `attempt` of job `job_id` (or an older copy), whether it runs or is yet to arrive.

        A plain cancel of a copy already told to stop changes nothing (the queen may repeat it: after a
        pause the drone hears it from several places); `force` (somebody cancelled again) also stops
        the cleanup."""
        waiting = self._next.get(job_id)
        if waiting is not None and int(waiting.get("attempt") or 1) <= attempt:
            del self._next[job_id]
        task = self.jobs.get(job_id)
        if task is not None and self._attempts.get(job_id, 1) <= attempt:
            if (task in self._cancelled or job_id in self._done) and not force:
                return  # told to stop already, or ended and cleaning up: nothing to stop
            log.info("job %s: cancel of attempt %d requested%s", job_id, attempt,
                     " again: its cleanup too" if force else "")
            self._cancelled.add(task)
            task.cancel()
        elif task is None:
            # The cancel may overtake its queue:new; remember it (a bounded while).
            if len(self._cancel_first) > 1000:
                self._cancel_first.clear()
            self._cancel_first[job_id] = max(attempt, self._cancel_first.get(job_id, 0))

    def start_job(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        attempt = int(job.get("attempt") or 1)
        if self._stopped:
            # Stopping: a job sent meanwhile is not started (it would only be cut short); the queen
            # gives it to another drone when this one says goodbye, without counting an attempt.
            log.info("job %s (attempt %d) arrived while this drone stops: not started", job_id, attempt)
            return
        if job_id in self.jobs:
            if attempt > self._attempts.get(job_id, 1):
                # The queen wrote the copy here off and gave the job a new attempt: the old
                # copy stops, and the new one starts when it has (one workspace, one numbering).
                log.info("job %s: attempt %d arrived while attempt %d still runs here; it starts when that "
                         "one has stopped", job_id, attempt, self._attempts.get(job_id, 1))
                self._next[job_id] = job
                self.jobs[job_id].cancel()
            return  # else a repeated queue:new for a job already running here
        # A retried job continues its earlier attempts' event and command numbers;
        # every event carries the attempt, the queen's fencing token.
        self.conn.begin(job_id, int(job.get("first_seq") or 1), attempt)
        self._attempts[job_id] = attempt
        if self._cancel_first.get(job_id, 0) >= attempt:
            del self._cancel_first[job_id]
            log.info("job %s: cancelled before it arrived", job_id)
            now = time.time()
            self._emit(job_id, Msg.JOB_STARTED, {"timestamp": now})
            self._emit(job_id, Msg.JOB_DONE, {"timestamp": now, "result": "cancelled", "error": "cancelled"})
            self._attempts.pop(job_id, None)
            self.conn.finish(job_id)
            return
        if len(self.jobs) >= self.capacity:
            log.warning("job %s arrived with all %d slots busy; running it anyway", job_id, self.capacity)
        log.info("job %s: starting (#%s %s)", job_id, job.get("number"), (job.get("repo") or {}).get("name"))
        task = asyncio.create_task(self._run_job(job))
        self.jobs[job_id] = task
        # Also when the task is cancelled before it ever ran: the slot must free.
        task.add_done_callback(lambda _: self._job_over(job_id, task))

    def _emit(self, job_id: str, msg: Msg, fields: dict[str, Any]) -> None:
        if self._stopped and msg is Msg.JOB_DONE and fields.get("result") == "cancelled":
            # Stopped with the drone, not cancelled by anyone: the queen runs it again elsewhere.
            fields = {**fields, "result": "errored", "retry": True,
                      "error": "stopped while the job ran"}
        elif self._stopped and msg is Msg.JOB_STDERR and fields.get("text") == CANCELLED_LINE:
            fields = {**fields, "text": STOPPING_LINE}  # nobody cancelled it
        self.conn.emit(job_id, msg, fields)

    def _job_over(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self.jobs.get(job_id) is task:
            del self.jobs[job_id]
        done = self._done.pop(job_id, None)
        if done is not None:  # its slot is free now: the queen may send the next job into it
            self._emit(job_id, Msg.JOB_DONE, done)
        if job_id not in self._reported:  # cancelled before it could report its end: say so
            now = time.time()
            if job_id not in self._started:
                self._emit(job_id, Msg.JOB_STARTED, {"timestamp": now})
            self._emit(job_id, Msg.JOB_DONE, {"timestamp": now, "result": "cancelled", "error": "cancelled"})
        self._reported.discard(job_id)
        self._started.discard(job_id)
        self._attempts.pop(job_id, None)
        self.conn.finish(job_id)
        waiting = self._next.pop(job_id, None)
        if waiting is not None and not self._stopped:
            self.start_job(waiting)

    async def _run_job(self, job: dict[str, Any]) -> None:
        job_id = job["id"]

        def emit(msg: Msg, fields: dict[str, Any]) -> None:
            if msg is Msg.JOB_DONE:
                self._reported.add(job_id)
                self._done[job_id] = fields  # sent once the slot is free (_job_over)
                return
            elif msg is Msg.JOB_STARTED:
                self._started.add(job_id)
            self._emit(job_id, msg, fields)

        kit = private = None
        kept = False  # its workspace stays for debug shells (debugshell.py)

        async def collect(root: Path, globs: list[str]) -> None:
            await artifacts.send(root, globs, emit, self.config.artifact_max_bytes,
                                 room=lambda: self.conn.room(job_id, ARTIFACT_WINDOW))

        try:
            kit = await self.kits.take(job_id)
            workspace = kit.paths.workspace
            # Only a checkout needs one (for an ssh key).
            private = self.workspaces.create_private(job_id) if (job.get("repo") or {}).get("url") else None
            paths = JobPaths(workspace, kit.paths.tmp, private)
            run = JobRun(job, workspace, emit, self.base_env, flush_after=self.config.output_flush_ms / 1000,
                         chunk_bytes=self.config.output_chunk_bytes, private_dir=private, collect=collect,
                         plugins=self.plugins, limits=JobLimits.of(self.config), sandbox=self.sandbox, paths=paths,
                         job_net=kit.net, box=kit.box, caches=self._caches(job, paths, emit))
            # A cancel reaches the JobRun, which kills the step and reports the
            # job as cancelled before returning.
            status = await run.run()
            log.info("job %s: %s", job_id, status)
            if self.debug.wants(job, status) and not self._stopped:
                self.debug.keep(job, paths, run.environment(), run.masker)
                kept = True
        except Exception as exc:  # the job never got going: an infrastructure error, not a failure
            log.exception("job %s: could not run it", job_id)
            now = time.time()
            if job_id not in self._started:
                emit(Msg.JOB_STARTED, {"timestamp": now})
            emit(Msg.JOB_STDERR, {"text": f"apiary: the drone could not run this job: {exc}\n"})
            emit(Msg.JOB_DONE, {"timestamp": now, "result": "errored", "error": f"drone error: {exc}"})
        finally:
            if kit is not None:
                self.kits.release(kit)  # the job's network ends with it
            if private is not None:
                await self.workspaces.remove(private)
            if kit is not None and not kept:
                await self.workspaces.remove(kit.paths.tmp)
                await self.workspaces.release(kit.paths.workspace, job_id)

    def _caches(self, job: dict[str, Any], paths: JobPaths, emit: Any) -> JobCaches | None:
        """The job's pipeline caches (caches.py), or None when it has none or this drone keeps none."""
        if not (job.get("pipeline") or {}).get("cache") or self.config.cache_max_bytes == 0:
            return None
        user = self.sandbox.job_user
        return JobCaches(job, paths.workspace, paths.tmp / "home", emit, self.cache_requests.ask,
                         self.config.work_path / "caches", self.config.cache_max_bytes,
                         owner=(user.pw_uid, user.pw_gid) if user is not None else None,
                         room=lambda: self.conn.room(job["id"], ARTIFACT_WINDOW))

    async def stop(self, ack_timeout: float = 5.0) -> None:
        self._stopped = True
        # Before its jobs report that they stop: the queen then sends their next attempts elsewhere.
        self.conn.send(Msg.DRONE_HEARTBEAT, self.heartbeat())
        for task in self.jobs.values():
            self._cancelled.add(task)  # a cancel from the queen meanwhile is the same stop, not a second one
            task.cancel()
        if self.jobs:
            await asyncio.gather(*self.jobs.values(), return_exceptions=True)
        if not await self.conn.drain(ack_timeout):
            log.warning("stopping with %d events the queen has not acked", self.conn.outbox.unacked_count())
        self.conn.goodbye()
        await asyncio.sleep(0.05)  # let the bye leave before the socket closes
