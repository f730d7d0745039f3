"""The queen's side of the drones: routes their messages, keeps the pool alive.

The hive owns the broker, the pool, the recorder and the dispatcher and wires
them: ``drone:info`` on a connection admits a drone (after checking its
protocol version and who may hold its id, `pool.admission`) and binds the
connection's route to it; it reconciles the jobs the store thinks it runs with
the jobs it reports; job events go to the recorder, and only those from the
connection bound to the drone they were dispatched to (an impostor's are
never attributed to it); heartbeats keep the drone in the pool. Every
``heartbeat_interval`` the hive sends ``queen:heartbeat`` (with this queen's
boot id, so drones notice a restart) and drops drones silent for
``interval * liveness``.

Use as ``async with Hive(config, store, hub) as hive:``; leaving stops its
tasks and closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import ulid
from pymongo.errors import PyMongoError

from apiary.core.config import QueenConfig
from apiary.core.jobstate import (
    CancelAsked,
    CancelCopy,
    DroneGone,
    Effect,
    Event,
    JobState,
    Policy,
    Release,
    Write,
    transition,
)
from apiary.core.models import Job
from apiary.core.protocol import JOB_EVENTS, PROTOCOL_VERSION, JobStatus, Msg, drone_info_fault, reported_load
from apiary.queen import caches
from apiary.queen.broker import Broker
from apiary.queen.curve import server_curve
from apiary.queen.dispatcher import Dispatcher
from apiary.queen.hub import Hub
from apiary.queen.pool import Drone, Pool, admission, reported_jobs, reported_plugins
from apiary.queen.recorder import Recorder
from apiary.queen.store import Store

log = logging.getLogger(__name__)


# Seconds a restarted queen waits for drones to return before it retries their jobs elsewhere.
ORPHAN_GRACE = 15.0


class Hive:
    def __init__(self, config: QueenConfig, store: Store, hub: Hub,
                 queen_secrets: Callable[[Mapping[str, Any]], set[str]] = lambda repo: set()) -> None:
        self.config = config
        self.store = store
        store.cache_max_bytes = config.cache_max_bytes  # what a repository's caches may take together
        self.hub = hub
        self.boot = str(ulid.ULID())
        self.pool = Pool()
        self.broker = Broker(config.drone_bind, self.on_message, server_curve(config))
        self.policy = Policy(max_attempts=config.max_attempts)
        self.recorder = Recorder(store, hub, self._ack, self._carry, self.policy)
        self.dispatcher = Dispatcher(store, self.pool, hub, self.send, self.recorder,
                                     queen_secrets=queen_secrets, policy=self.policy, cancel=self.cancel)
        self.names: dict[bytes, str] = {}  # route (a drone's connection) -> the drone it was admitted as
        self._tasks: list[asyncio.Task[Any]] = []
        self._queried: dict[bytes, float] = {}
        self._refusals: dict[str, float] = {}  # drone id -> when a refusal of it was last logged
        self._closing = False
        # debug:* messages from drones go to the debug shells' relay (queen/debugshells.py), when it runs
        self.on_debug: Callable[[str, Msg, dict[str, Any]], None] | None = None

    @property
    def timeout(self) -> float:
        return self.config.heartbeat_interval * self.config.heartbeat_liveness

    async def __aenter__(self) -> Hive:
        self.endpoint = self.broker.start()
        for coro in (self.broker.run(), self.recorder.run(), self.dispatcher.run(), self._heartbeats(),
                     self._orphans()):
            self._tasks.append(asyncio.create_task(coro))
        log.info("waiting for drones on %s", self.endpoint)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True  # no new store work: the store closes right after us
        tasks = list(self._tasks)  # done-callbacks edit the list
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.broker.close()

    # -- messages from drones -------------------------------------------------

    def send(self, drone_id: str, msg: Msg, body: dict[str, Any]) -> bool:
        """Send to drone `drone_id` on the connection it was admitted on; False when it has none now."""
        drone = self.pool.get(drone_id)
        if drone is None or drone.route is None:
            return False
        return self.broker.send(drone.route, msg, body)

    def on_message(self, route: bytes, msg: Msg, body: dict[str, Any], key: str = "") -> None:
        if msg is Msg.DRONE_INFO:
            self._admit(route, body, key)
            return
        drone_id = self.names.get(route)
        drone = self.pool.get(drone_id) if drone_id is not None else None
        if drone is None or drone.route != route:
            # A connection no drone was admitted on (a restarted queen, a reconnect, a stranger):
            # ask who it is; what it says meanwhile it will send again once admitted.
            if msg is not Msg.DRONE_BYE:
                self._query_info(route)
            return
        drone.last_seen = time.time()
        if msg in JOB_EVENTS:
            self.recorder.submit(drone.id, msg, body)
        elif msg is Msg.DRONE_HEARTBEAT:
            self._heartbeat(drone, body)
        elif msg.value.startswith("debug:"):  # a debug shell's (queen/debugshells.py)
            if self.on_debug is not None:
                self.on_debug(drone.id, msg, body)
        elif msg is Msg.CACHE_GET:  # a job's pipeline cache, asked for by its drone (queen/caches.py)
            self._spawn(caches.serve(self.store, self.send, drone.id, body))
        elif msg is Msg.DRONE_BYE:
            gone = self.pool.leave(drone.id)
            self.names.pop(route, None)
            if gone is not None:
                log.info("drone %s left", drone.id)
                self._drones_changed()
                self._save_drone_later(drone.id, "left")
                if gone.jobs:  # a queue:new that crossed its goodbye
                    self._spawn(self._requeue_lost(drone.id, list(gone.jobs), f"drone {drone.id} left"))

    def _query_info(self, route: bytes) -> None:
        # Once a second at most per connection.
        now = time.monotonic()
        if now - self._queried.get(route, 0.0) >= 1.0:
            if len(self._queried) > 10_000:  # many connections must not grow it without end
                self._queried.clear()
            self._queried[route] = now
            self.broker.send(route, Msg.QUERY_INFO, {"boot": self.boot})

    def _refuse(self, route: bytes, name: str, reason: str, for_good: bool) -> None:
        self.broker.send(route, Msg.REFUSED, {"reason": reason, "retry": not for_good})
        now = time.monotonic()
        if now - self._refusals.get(name, 0.0) >= 10.0:  # a drone retrying must not flood the log
            if len(self._refusals) > 10_000:
                self._refusals.clear()
            self._refusals[name] = now
            log.warning("a connection claiming to be drone %r refused: %s", name[:80], reason)

    def _admit(self, route: bytes, body: dict[str, Any], key: str) -> None:
        drone_id = str(body["id"])
        if body["version"] != PROTOCOL_VERSION:
            reason = (f"drone {drone_id} speaks protocol version {body['version']}, this queen speaks "
                      f"{PROTOCOL_VERSION}: install the same Apiary version on both")
            return self._refuse(route, drone_id, reason, for_good=True)
        fault = drone_info_fault(body)
        if fault is not None:
            return self._refuse(route, drone_id, f"drone:info refused: {fault}", for_good=True)
        if self.names.get(route, drone_id) != drone_id:
            return self._refuse(route, drone_id, f"this connection is drone {self.names[route]}", for_good=True)
        session = str(body.get("session", ""))
        previous = self.pool.get(drone_id)
        verdict, why = admission(drone_id, session, key, previous, time.time(), self.timeout)
        if verdict.startswith("refuse"):
            return self._refuse(route, drone_id, why, for_good=verdict == "refuse-for-good")
        if previous is not None and previous.route not in (None, route):
            if verdict == "replace":
                self.broker.send(previous.route, Msg.REFUSED, {"reason": why, "retry": False})
            self.names.pop(previous.route, None)
            log.warning("drone %s: a new connection took over (%s)", drone_id,
                        "same process" if previous.session == session else why or "the old one was silent")
        rejoin = previous is not None
        reported = reported_jobs(body.get("jobs")) | reported_jobs(body.get("held"))
        drone = Drone(
            id=drone_id, capacity=body["capacity"], speed=float(body["speed"]), version=body["version"],
            plugins=reported_plugins(body.get("plugins")),
            installs=body.get("installs_plugins") is not False,
            host=str(body.get("host", "")),
            jobs={j: time.time() for j in reported_jobs(body.get("jobs"))},
            route=route, session=session, key=key,
        )
        same_process = previous is not None and previous.session == session
        if previous is not None:
            drone.joined = previous.joined
            if same_process:
                # Keep what this queen dispatched since; the drone may not have started it yet.
                for job_id, since in previous.jobs.items():
                    drone.jobs.setdefault(job_id, since)
        self.names[route] = drone_id
        self.pool.join(drone)
        # Answer at once: the drone learns this queen's boot id and stops retrying.
        self.broker.send(route, Msg.QUEEN_HEARTBEAT, {"boot": self.boot})
        log.info("drone %s %s: capacity %d, speed %s, running %d", drone_id,
                 "re-registered" if rejoin else "joined", drone.capacity, drone.speed, len(drone.jobs))
        self._drones_changed()
        self._spawn(self._reconcile(drone_id, reported, fresh=not same_process))

    def _heartbeat(self, drone: Drone, body: dict[str, Any]) -> None:
        if "plugins" in body:  # it installed some since it registered
            plugins = reported_plugins(body["plugins"])
            if plugins != drone.plugins:
                drone.plugins = plugins
                self._drones_changed()
        drone.load = reported_load(body)
        drone.stopping = body.get("stopping") is True
        reported = reported_jobs(body.get("jobs")) | reported_jobs(body.get("held"))
        # A queue:new lost on a broken connection: the drone never heard of the job.
        lost = Pool.unaccounted(drone, reported, time.time() - 2 * self.config.heartbeat_interval)
        # Freed at once: the next heartbeat, read before the take-back's store round trip, must not take the
        # job back a second time once the dispatcher has given it to this drone again (a newer attempt).
        lost = [job_id for job_id in lost if self.pool.release(drone.id, job_id)]
        if lost:
            self._spawn(self._take_back(drone.id, lost))

    async def _reconcile(self, drone_id: str, reported: set[str], fresh: bool) -> None:
        """Match the store's view of `drone_id`'s jobs with what the drone reports."""
        drone = self.pool.get(drone_id)
        for job in await self.store.job_states(set(drone.jobs if drone else ()) | reported):
            state = JobState.of(job)
            if state.drone == drone_id and state.on_drone:
                continue  # it runs there, as it should
            if state.drone == drone_id and state.final:
                # Ended here while the drone was away (cancelled): its copy must stop.
                log.info("job %s ended while drone %s was away; cancelling its copy", job["_id"], drone_id)
            elif job["_id"] in reported:
                # Given to another attempt while this drone was away (paused, cut off): stop this copy.
                log.warning("job %s: drone %s is back with a stale copy (now %s); cancelling it", job["_id"],
                            drone_id, f"on {state.drone}" if state.drone else state.status.value)
            else:
                continue
            self.pool.release(drone_id, job["_id"])
            self._carry(job["_id"], state, [CancelCopy(drone_id, state.attempt)])
        if fresh:
            for job in await self.store.jobs_of_drone(drone_id):
                drone = self.pool.get(drone_id)
                # Jobs dispatched since the drone joined are in drone.jobs: not lost.
                if job["_id"] not in reported and (drone is None or job["_id"] not in drone.jobs):
                    await self._take_back(drone_id, [job["_id"]])
        await self.store.save_drone({"_id": drone_id, "state": "connected", **self._public(drone_id)})
        self.dispatcher.room()

    async def _take_back(self, drone_id: str, job_ids: list[str]) -> None:
        """Jobs `drone_id` says it does not have (it restarted, or a queue:new was lost on the way)."""
        for job_id in job_ids:
            self.pool.release(drone_id, job_id)
            await self.change(job_id, DroneGone(drone_id, f"drone {drone_id} no longer runs this job (it restarted)",
                                                time.time()))
        self._drones_changed()
        self.dispatcher.wake()

    async def change(self, job_id: str, event: Event) -> tuple[JobState, JobState] | None:
        """Carry out what `event` means for job `job_id` (apiary.core.jobstate): (state before, after),
        or None when the job is unknown or it changed meanwhile (the write is compare-and-set)."""
        job = await self.store.get_job(job_id)
        if job is None:
            return None
        state = JobState.of(job)
        new, effects = transition(state, event, self.policy)
        write = next((e for e in effects if isinstance(e, Write)), None)
        if write is not None:
            if not await self.store.change_job(job_id, write.expect, write.fields):
                return None
            self.recorder.follow(job_id, new)
            if new.status is not state.status:
                self.hub.job_status(job_id, new.status.value)  # the queen's own listeners (plugins' reactions)
                self.hub.publish("jobs", {"type": "job:update", "job": job_id, "status": new.status.value})
            if new.status is JobStatus.QUEUED and new.failures > state.failures:
                log.warning("job %s: %s; attempt %d of %d queued", job_id, _reason(event), new.failures + 1,
                            self.policy.max_attempts)
            elif new.status is JobStatus.QUEUED and state.status is not JobStatus.WAITING:  # (not: approved)
                log.warning("job %s never started on drone %s: queued again", job_id, state.drone)
            elif new.status is JobStatus.ERRORED:
                log.warning("job %s: %s; no attempts left: errored", job_id, _reason(event))
        self._carry(job_id, new, [e for e in effects if not isinstance(e, Write)])
        return state, new

    # -- requests from the API -----------------------------------------------------

    async def cancel(self, job: Job, reason: str | None = None) -> str:
        """Cancel a job: at once if it waits in the queue, else through its drone. `reason`: why, when
        not a person's cancel ("superseded by app#13"): its error says so.

        Returns "cancelled" when the job has ended here, "cancelling" when its
        drone was asked to kill it (the job ends when the drone reports it).

        A parent's queued child jobs are never dispatched from here on (Dispatcher.stop_children, before
        the first await); apiary.queen.spread cancels them once the parent has ended.
        """
        job_id = job["_id"]
        self.dispatcher.stop_children(job_id)
        for _ in range(5):  # the job may move on between the read and the write (dispatched, started)
            fresh = await self.store.get_job(job_id)
            if fresh is None or JobStatus(fresh["status"]).final:
                return (fresh or job)["status"]
            drone = self.pool.get(fresh["drone"]) if fresh.get("drone") else None
            changed = await self.change(job_id, CancelAsked(time.time(), drone is not None and drone.route is not None,
                                                            reason))
            if changed is not None:
                before, after = changed
                if after.final:
                    return after.status.value
                log.info("job %s: cancel sent to drone %s", job_id, before.drone)
                return "cancelling"
        return "cancelling"

    # -- callbacks from the recorder -----------------------------------------

    def _ack(self, drone_id: str, job_id: str, seq: int, attempt: int) -> None:
        self.send(drone_id, Msg.ACK, {"id": job_id, "seq": seq, "attempt": attempt})

    def _carry(self, job_id: str, state: JobState, effects: list[Effect]) -> None:
        """Carry out a job's effects other than its document's write: slots, cancels."""
        for effect in effects:
            if isinstance(effect, Release):
                if self.pool.release(effect.drone, job_id):
                    self._drones_changed()
                if state.status is JobStatus.QUEUED:  # back in the queue for another attempt
                    self.dispatcher.wake()
                else:
                    self.dispatcher.room()
            elif isinstance(effect, CancelCopy):
                self.send(effect.drone, Msg.JOB_CANCEL, {"id": job_id, "attempt": effect.attempt,
                                                         "force": effect.force})

    # -- liveness -----------------------------------------------------------------

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            for drone_id in list(self.pool.drones):
                self.send(drone_id, Msg.QUEEN_HEARTBEAT, {"boot": self.boot})
            for drone_id in self.pool.silent_since(time.time() - self.timeout):
                drone = self.pool.leave(drone_id)
                if drone is not None and drone.route is not None:
                    self.names.pop(drone.route, None)  # what it may still send is a stranger's
                log.warning("drone %s silent for %.1fs: lost (jobs: %s)", drone_id, self.timeout,
                            ", ".join(drone.jobs) if drone and drone.jobs else "none")
                self._drones_changed()
                self._save_drone_later(drone_id, "lost")
                if drone is not None and drone.jobs:
                    self._spawn(self._requeue_lost(drone_id, list(drone.jobs),
                                                   f"drone {drone_id} was lost (silent for {self.timeout:g} s)"))

    async def _orphans(self) -> None:
        """After a restart: jobs whose drone did not come back in time are its lost jobs.

        In time: drones redial with backoff (ZeroMQ's up to 2 s, a refused
        handshake's up to 10 s), so at least ORPHAN_GRACE seconds.
        """
        await asyncio.sleep(max(2 * self.timeout, ORPHAN_GRACE))
        while True:
            try:
                in_flight = await self.store.jobs_in_flight()
                break
            except PyMongoError as exc:
                log.warning("looking for jobs of drones that did not return: store error: %s", exc)
                await asyncio.sleep(self.timeout)
        lost: dict[str, list[str]] = {}
        for job in in_flight:
            if job.get("drone") and job["drone"] not in self.pool:
                lost.setdefault(job["drone"], []).append(job["_id"])
        for drone_id, job_ids in lost.items():
            log.warning("drone %s did not return after the restart; its jobs: %s", drone_id, ", ".join(job_ids))
            await self._requeue_lost(drone_id, job_ids, f"drone {drone_id} did not return after the queen restarted")

    async def _requeue_lost(self, drone_id: str, job_ids: list[str], reason: str) -> None:
        """A lost drone's jobs: never started ones back to the queue; started ones retried or errored."""
        for job_id in job_ids:
            await self.change(job_id, DroneGone(drone_id, reason, time.time()))
        self.dispatcher.wake()

    # -- helpers -------------------------------------------------------------------

    def _public(self, drone_id: str) -> dict[str, Any]:
        drone = self.pool.get(drone_id)
        return drone.public() if drone else {"id": drone_id}

    def _drones_changed(self) -> None:
        self.hub.publish("drones", {"type": "drones", "drones": self.drones()})

    def drones(self) -> list[dict[str, Any]]:
        return [d.public() for d in sorted(self.pool.drones.values(), key=lambda d: d.id)]

    def _save_drone_later(self, drone_id: str, state: str) -> None:
        self._spawn(self.store.save_drone({"_id": drone_id, "state": state, "since": time.time()}))

    def _spawn(self, coro: Any) -> None:
        if self._closing:
            coro.close()
            return
        task = asyncio.create_task(_logged(coro))
        self._tasks.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)


async def _logged(coro: Any) -> None:
    try:
        await coro
    except PyMongoError as exc:
        log.warning("store error: %s", exc)
    except Exception:
        log.exception("unexpected error")


def _reason(event: Event) -> str:
    return getattr(event, "reason", None) or type(event).__name__
