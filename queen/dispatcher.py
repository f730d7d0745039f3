"""Sends queued jobs to drones as soon as a job waits and a slot is free.

Jobs wait in the store (status ``queued``), never in a drone. `wake()` is
called when a job is queued, a drone joins and a slot frees; the dispatcher then
hands out the oldest queued jobs while any drone has spare capacity, each to
the drone `scheduler.pick_drone` chooses. A timer wakes it too, as a backstop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pymongo.errors import PyMongoError

from .hub import Hub
from .pool import Pool
from .protocol import Msg
from .scheduler import pick_drone
from .store import Store

log = logging.getLogger(__name__)

SendFn = Callable[[str, Msg, dict[str, Any]], bool]


def job_message(job: dict[str, Any]) -> dict[str, Any]:
    """The ``queue:new`` body for a stored job (DESIGN.md §4)."""
    return {
        "id": job["_id"],
        "number": job.get("number"),
        "attempt": job.get("attempts", 1),
        "repo": {"name": job["repo"], "url": job.get("repo_url", ""), "provider": job.get("provider", "git"),
                 "vcs": "git"},
        "ref": job["ref"],
        "type": job["type"],
        "trigger": job["trigger"],
        "parameters": job.get("parameters", {}),
        "pipeline": job["pipeline"],
        "plugins": [],
    }


class Dispatcher:
    def __init__(self, store: Store, pool: Pool, hub: Hub, send: SendFn,
                 on_dispatch: Callable[[str, str], None], backstop: float = 1.0) -> None:
        self.store = store
        self.pool = pool
        self.hub = hub
        self.send = send
        self.on_dispatch = on_dispatch
        self.backstop = backstop
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.backstop)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.dispatch()
            except PyMongoError as exc:
                log.warning("dispatch paused: store error: %s", exc)
                await asyncio.sleep(self.backstop)

    async def dispatch(self) -> int:
        """Hand out queued jobs while slots are free; return how many went out."""
        sent = 0
        while True:
            drone_id = pick_drone(self.pool.views())
            if drone_id is None:
                return sent
            job = await self.store.claim_next(drone_id)
            if job is None:
                return sent
            if drone_id not in self.pool:
                # The drone left while the claim was in flight.
                await self.store.requeue(job["_id"], drone_id)
                continue
            self.pool.assign(drone_id, job["_id"])
            self.on_dispatch(job["_id"], drone_id)
            if not self.send(drone_id, Msg.QUEUE_NEW, job_message(job)):
                log.warning("job %s: drone %s unreachable; back to the queue", job["_id"], drone_id)
                self.pool.release(drone_id, job["_id"])
                self.pool.leave(drone_id)
                await self.store.requeue(job["_id"], drone_id)
                continue
            sent += 1
            log.info("job %s (#%s %s) -> drone %s", job["_id"], job.get("number"), job["repo"], drone_id)
            self.hub.publish("jobs", {"type": "job:update", "job": job["_id"], "status": job["status"],
                                      "drone": drone_id, "dispatched": job["dispatched"]})
