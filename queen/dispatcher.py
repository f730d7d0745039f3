"""Sends queued jobs to drones as soon as a job waits and a slot is free.

Jobs wait in the store (status ``queued``), never in a drone. `wake()` is
called when a job is queued, a drone joins and a slot frees; the dispatcher then
hands out the oldest queued jobs while any drone has spare capacity, each to
the drone `scheduler.pick_drone` chooses. A timer wakes it too, as a backstop.
`submit` stores a new job and, when the queue is known empty and a drone has
room, sends it straight away: one store round trip from trigger to drone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pymongo.errors import PyMongoError

from apiary.core.concurrency import may_dispatch
from apiary.core.errors import BadRequest
from apiary.core.jobstate import Dispatched, JobState, NotDelivered, Policy, Write, transition
from apiary.core.models import Job
from apiary.core.protocol import JobStatus, Msg
from apiary.core.spread import continued
from apiary.queen.hub import Hub
from apiary.queen.pool import Pool
from apiary.queen.recorder import Recorder
from apiary.queen.repos import repo_auth
from apiary.queen.resume import resume_message
from apiary.queen.scheduler import pick_drone
from apiary.queen.store import Store
from apiary.queen.trust import given_secrets, job_kind

log = logging.getLogger(__name__)

# How many of the oldest queued jobs one dispatch round considers: the free slots and CLAIM_EXTRA more,
# or CLAIM_WINDOW when none of those could go.
CLAIM_WINDOW = 32
CLAIM_EXTRA = 3
STOPPED_KEPT = 4096  # parents remembered as stopped (`stop_children`); older ones are read from the store

SendFn = Callable[[str, Msg, dict[str, Any]], bool]


def job_message(job: Job, secrets: dict[str, str], auth: dict[str, Any] | None) -> dict[str, Any]:
    """The ``queue:new`` body for a stored job (DESIGN.md §4).

    Secrets travel only here, never in the job document or its events.
    """
    return {
        "id": job["_id"],
        "number": job.get("number"),
        "attempt": job.get("attempts", 1),
        "repo": {"name": job["repo"], "url": job.get("repo_url", ""), "provider": job.get("provider", "git"),
                 "vcs": "git", "auth": auth},
        "secrets": secrets,
        "ref": job["ref"],
        "type": job["type"],
        "trigger": job["trigger"],
        "parameters": job.get("parameters", {}),
        "pipeline": continued(job, time.time()),  # a parent's continuation: what is left of its timeout
        "plugins": job["pipeline"].get("plugins") or [],
        # The `when:` verdicts the queen took: the stages and steps the drone skips (apiary.core.conditions)
        **({"conditions": job["conditions"]} if job.get("conditions") else {}),
    }


class Dispatcher:
    def __init__(self, store: Store, pool: Pool, hub: Hub, send: SendFn,
                 recorder: Recorder, backstop: float = 1.0,
                 queen_secrets: Callable[[Mapping[str, Any]], set[str]] = lambda repo: set(),
                 policy: Policy = Policy(),
                 cancel: Callable[[Job, str], Awaitable[str]] | None = None) -> None:
        self.store = store
        self.cancel = cancel  # the hive's: a new job cancels the ones it supersedes (queen/jobrules.py)
        self.policy = policy
        self.queen_secrets = queen_secrets  # a repository's secrets its queen plugins keep (queen/trust.py)
        self.pool = pool
        self.hub = hub
        self.send = send
        self.recorder = recorder  # told of each dispatch: it fences the job's events by attempt and drone
        self.backstop = backstop
        self._wake = asyncio.Event()
        self._generation = 0
        # True once a claim found nothing and nothing was queued since; until
        # then new jobs go through the store's queue, oldest first.
        self.queue_empty = False
        # Parents being cancelled (or cancelled): their queued child jobs never go out. Filled before the
        # cancel's first await, checked after the dispatch's last await before its claim: no child is claimed
        # once its parent's cancel has begun, even while the cancel's writes are in flight.
        self._stopped: dict[str, None] = {}

    def wake(self) -> None:
        """A job may have been queued (or queued again): the queue is no longer known empty."""
        self._generation += 1
        self.queue_empty = False
        self._wake.set()

    def stop_children(self, parent_id: str) -> None:
        """`parent_id` is being cancelled: none of its queued child jobs may be claimed from now on (the
        cancel marks them cancelled; a child made meanwhile is cancelled by apiary.queen.spread)."""
        self._stopped[parent_id] = None
        if len(self._stopped) > STOPPED_KEPT:
            del self._stopped[next(iter(self._stopped))]

    async def _parent_ended(self, queued: Mapping[str, Any], ended: dict[str, bool]) -> bool:
        """Whether `queued` is a child job whose parent has ended or is being cancelled: it must not start
        (apiary.queen.spread cancels it). One read of a parent's state per dispatch round (`ended`: the
        round's reads, parent id -> ended)."""
        parent = queued.get("parent")
        if not isinstance(parent, Mapping):
            return False
        parent_id = parent.get("id")
        if not isinstance(parent_id, str):
            return False
        if parent_id not in self._stopped and parent_id not in ended:
            states = await self.store.job_states([parent_id])
            ended[parent_id] = not states or JobStatus(states[0]["status"]).final
        # After the read's await: a cancel begun meanwhile is in `_stopped` now.
        return parent_id in self._stopped or ended[parent_id]

    def room(self) -> None:
        """A slot freed or a drone joined: dispatch what waits. Nothing was queued by it, so a queue known
        empty stays known empty, and the next trigger still goes straight to a drone (a client that
        triggers as soon as it sees a job end would otherwise always take the slow way, through the
        store's queue)."""
        self._wake.set()

    async def submit(self, job: Job) -> None:
        """Store a new job; when nothing older waits and a drone has room, send it at once.

        The shortcut skips the claim query on the way to the drone; the job is
        still stored (as dispatched) before ``queue:new`` leaves.
        """
        # A job of a concurrency group goes through the queue, where its group is checked; so does a child
        # job of a parent being cancelled (where it is not claimed).
        straight = self.queue_empty and not job.get("concurrency") and \
            (job.get("parent") or {}).get("id") not in self._stopped
        drone_id = pick_drone(self.pool.views(), job.get("plugin_keys", ())) if straight else None
        if drone_id is None:
            await self.store.insert_job(job)
            self._announce(job)
            self.wake()
            return
        state, write = self._dispatched(job, drone_id)
        job.update(write.fields)  # type: ignore[typeddict-item]  # the job's own fields (apiary.core.jobstate)
        self.pool.assign(drone_id, job["_id"])  # the slot is ours before the first await
        try:
            await self.store.insert_job(job)
        except BaseException:
            self.pool.release(drone_id, job["_id"])
            raise
        self._announce(job)
        await self._send(job, drone_id, state)

    def _announce(self, job: Job) -> None:
        self.hub.publish("jobs", {"type": "job:new", "job": job["_id"], "repo": job["repo"], "number": job["number"],
                                  "status": job["status"], "ref": job["ref"], "job_type": job["type"],
                                  "trigger": job["trigger"], "created": job["created"], "drone": job["drone"]})

    async def run(self) -> None:
        while True:
            woken = True
            try:
                await asyncio.wait_for(self._wake.wait(), self.backstop)
            except TimeoutError:
                woken = False
            self._wake.clear()
            if woken and self.queue_empty:
                continue  # a slot freed and nothing waits: no store query (the backstop still looks)
            try:
                await self.dispatch()
            except PyMongoError as exc:
                log.warning("dispatch paused: store error: %s", exc)
                await asyncio.sleep(self.backstop)

    async def dispatch(self) -> int:
        """Hand out queued jobs, oldest first, while slots are free; return how many went out.

        A job no drone can take now (all full, or the only ones with room may
        not install its plugins) stays queued; younger jobs may pass it.
        """
        sent = 0
        window = 0
        ended: dict[str, bool] = {}  # child jobs' parents read this round: ended?
        while True:
            spare = self._spare()
            if not spare:
                return sent
            generation = self._generation
            # As many as could go now and a few more (what a drone cannot take is passed over), unless the
            # last look found nothing it could send: then the whole window. The store reads and decodes each
            # job it returns (nx-27017: ~0.1 ms each, 3.8 ms for 32 of 100 queued), and in a burst every
            # freed slot looks, to send one job.
            window = CLAIM_WINDOW if window else min(CLAIM_WINDOW, spare + CLAIM_EXTRA)
            waiting = await self.store.queued(window)
            if not waiting:
                # Empty, unless something was queued while the query was in flight.
                self.queue_empty = generation == self._generation
                return sent
            progress = False
            # Groups are held by their key: a repository's own (a fork's request's), not the name alone.
            busy = await self.store.busy_groups(g for q in waiting if (g := (q.get("concurrency") or {}).get("key")))
            for queued in waiting:
                group = (queued.get("concurrency") or {}).get("key")
                if not may_dispatch(group, busy):
                    continue  # another job of its group is on a drone: it waits for that one to end
                if await self._parent_ended(queued, ended):
                    continue  # its parent was cancelled (or ended): its cancel is on the way
                drone_id = pick_drone(self.pool.views(), queued.get("plugin_keys") or ())
                if drone_id is None:
                    continue
                state, write = self._dispatched(queued, drone_id)
                # The slot is ours before the claim's await: a job submitted meanwhile (straight to a drone)
                # must not be given the same free slot, which would send the drone more jobs than it has slots.
                self.pool.assign(drone_id, queued["_id"])
                try:
                    job = await self.store.change_and_get_job(queued["_id"], write.expect, write.fields)
                except BaseException:
                    self.pool.release(drone_id, queued["_id"])
                    raise
                if job is None:
                    self.pool.release(drone_id, queued["_id"])
                    continue  # cancelled meanwhile
                if drone_id not in self.pool:
                    # The drone left while the claim was in flight.
                    await self.undelivered(job["_id"], state)
                    continue
                progress = True
                if group is not None:
                    busy.add(group)
                if await self._send(job, drone_id, state):
                    sent += 1
            if len(waiting) < window or not progress and window == CLAIM_WINDOW:
                return sent  # all considered; what is left waits for a drone that can take it
            window = 0 if progress else CLAIM_WINDOW  # none could go: look further down the queue

    def _dispatched(self, queued: Mapping[str, Any], drone_id: str) -> tuple[JobState, Write]:
        """A queued job's state once given to `drone_id`, and the write that takes it (compare-and-set)."""
        state, effects = transition(JobState.of(queued), Dispatched(drone_id, time.time()), self.policy)
        return state, next(e for e in effects if isinstance(e, Write))

    async def undelivered(self, job_id: str, state: JobState) -> None:
        """The job stored as dispatched in `state` never reached its drone: back to the queue."""
        assert state.drone is not None
        new, effects = transition(state, NotDelivered(state.drone), self.policy)
        self.pool.release(state.drone, job_id)
        write = next((e for e in effects if isinstance(e, Write)), None)
        if write is not None and await self.store.change_job(job_id, write.expect, write.fields):
            self.recorder.follow(job_id, new)  # what the drone may still say of it is stale

    def _any_room(self) -> bool:
        return self._spare() > 0

    def _spare(self) -> int:
        """Free slots in the pool (a drone's negative spare, more jobs than slots, counts as none)."""
        return sum(max(0, v.spare) for v in self.pool.views())

    async def _send(self, job: Job, drone_id: str, state: JobState) -> bool:
        """Send a job stored as dispatched (`state`) to `drone_id`, whose slot it already holds."""
        try:
            message = await self._message(job, state)
        except BaseException:
            # It will not leave: the drone's heartbeats, which cannot name it, take it back (apiary.queen.pool).
            self.pool.sent(drone_id, job["_id"])
            raise
        if not self.send(drone_id, Msg.QUEUE_NEW, message):
            log.warning("job %s: drone %s unreachable; back to the queue", job["_id"], drone_id)
            await self.undelivered(job["_id"], state)
            self.pool.leave(drone_id)
            self.wake()
            return False
        # Only now may a heartbeat without it mean the drone never got it: the reads above can take seconds
        # on a loaded queen (a continuation restores the artifacts of each of its child jobs).
        self.pool.sent(drone_id, job["_id"])
        log.info("job %s (#%s %s) -> drone %s", job["_id"], job.get("number"), job["repo"], drone_id)
        self.hub.publish("jobs", {"type": "job:update", "job": job["_id"], "status": job["status"],
                                  "drone": drone_id, "dispatched": job["dispatched"]})
        return True

    async def _message(self, job: Job, state: JobState) -> dict[str, Any]:
        """The ``queue:new`` body of a job stored as dispatched (`state`): its secrets, credentials, resume."""
        attempt = state.attempt
        first_seq, first_cmd = (1, 1) if attempt == 1 else await self.store.resume_point(job["_id"])
        self.recorder.track(job["_id"], state, first_seq)
        values = await self.store.secret_values(job["repo"])
        repo = await self.store.get_repo(job["repo"])
        try:
            # The checkout's credential goes to the checkout only, whatever the job's kind.
            auth = repo_auth(repo, values) if repo else None
        except BadRequest as exc:  # the secret was deleted since the trigger
            log.warning("job %s: %s; checking out without credentials", job["_id"], exc)
            auth = None
        # The secrets the job's kind gets, by the rules in force now.
        names = given_secrets(job.get("kind") or job_kind(job["trigger"]), await self.store.secret_kinds(job["repo"]),
                              repo or {}, self.queen_secrets(repo or {}))
        if names != job.get("secrets"):
            job["secrets"] = names
            await self.store.change_job(job["_id"], {}, {"secrets": names})
        message = job_message(job, {name: values[name] for name in names if name in values}, auth)
        if attempt > 1:  # a retry goes on where the earlier attempts' events and commands stopped
            message.update(first_seq=first_seq, first_cmd=first_cmd)
        if job.get("resume"):  # a partial run: what it reuses, the artifacts it restores (apiary.queen.resume)
            message["resume"] = await resume_message(self.store, job["resume"])
        return message
