"""The drones the queen knows now, and which jobs it gave each. State only, no I/O.

A drone enters the pool with ``drone:info`` and leaves with ``drone:bye`` or
when it has been silent for ``heartbeat_interval * heartbeat_liveness``. A
queen that restarts starts with an empty pool: drones re-register when they
see its new boot id, reporting the jobs they still run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any

from apiary.core.protocol import MAX_CAPACITY
from apiary.queen.scheduler import DroneView


@dataclasses.dataclass
class Drone:
    id: str
    capacity: int
    speed: float
    version: int
    plugins: frozenset[str] = frozenset()
    installs: bool = True  # may install the plugins a job needs
    host: str = ""
    # job id -> when this queen's queue:new for it left (or it learnt of the job from the drone); NOT_SENT while
    # the dispatcher still prepares that message: the slot is held, and the drone cannot know the job yet
    jobs: dict[str, float] = dataclasses.field(default_factory=dict)
    # job id -> heartbeats in a row that left it out, once its queue:new was old enough (`Pool.unaccounted`)
    missing: dict[str, int] = dataclasses.field(default_factory=dict)
    joined: float = dataclasses.field(default_factory=time.time)
    last_seen: float = dataclasses.field(default_factory=time.time)
    load: float | None = None
    route: bytes | None = None  # its connection (queen/broker.py); None once that went
    session: str = ""  # chosen by the drone process at its start: the same process reconnecting keeps it
    key: str = ""  # the name of the authorized key it registered with ("" without one)
    stopping: bool = False  # it said it is stopping: it takes no more jobs

    def view(self) -> DroneView:
        # A stopping drone shows no spare slot: the scheduler sends it nothing more.
        busy = self.capacity if self.stopping else len(self.jobs)
        return DroneView(self.id, self.capacity, busy, self.speed, self.plugins, self.installs)

    def public(self) -> dict[str, Any]:
        """The drone as the API and the dashboard show it."""
        return {
            "id": self.id,
            "host": self.host,
            "capacity": self.capacity,
            "running": len(self.jobs),
            "jobs": sorted(self.jobs),
            "speed": self.speed,
            "plugins": sorted(self.plugins),
            "installs_plugins": self.installs,
            "version": self.version,
            "joined": self.joined,
            "last_heartbeat": self.last_seen,
            "load": self.load,
        }


def admission(name: str, session: str, key: str, holder: Drone | None, now: float, timeout: float
              ) -> tuple[str, str]:
    """Whether a connection may be drone `name` (which `holder` may hold now): (verdict, why).

    Verdicts: ``admit``; ``replace`` (admit, and the holder's connection is told it was replaced);
    ``refuse`` (say why; the drone tries again later); ``refuse-for-good`` (say why; it stops).
    A drone id is bound to the authorized key that registered it (the key file's name) and, without
    keys, to the connection that holds it: the first one, until it goes or falls silent. The same
    drone process reconnecting (same session) always gets its id back.
    """
    if key and key != name:
        return "refuse-for-good", (f"this drone's key is {key}.key in the queen's authorized keys: its id must be "
                                   f"{key!r}, not {name!r} (a key registers one id)")
    if holder is None or holder.route is None or holder.session == session:
        return "admit", ""
    if key and holder.key in (key, ""):
        return "replace", f"drone {name} connected again with its key (another process); this one is replaced"
    if now - holder.last_seen > timeout:
        return "admit", ""
    where = f" from {holder.host}" if holder.host else ""
    return "refuse", (f"drone id {name!r} is in use by another connected drone{where}; this one is refused until "
                      "that one goes (give each drone an id of its own, or keys: apiary keys --drone)")


# A slot held for a job whose queue:new has not left yet (Drone.jobs): never missing from the drone's report.
NOT_SENT = math.inf
# Heartbeats in a row (each read after the job's queue:new was old enough) that must leave a job out before the
# queen takes it back: one or two written before a busy drone read its queue:new, or read late by a busy queen,
# still leave it out.
MISSES = 3


def missing_counts(jobs: Mapping[str, float], missing: Mapping[str, int], reported: set[str],
                   older_than: float) -> dict[str, int]:
    """After a heartbeat reporting `reported`: for each of `jobs` (job id -> when its queue:new left, NOT_SENT
    before) that it leaves out and that left before `older_than` (seconds since the epoch), how many heartbeats
    in a row have left it out (`missing`: the counts before). A job reported again starts from nothing."""
    return {j: missing.get(j, 0) + 1 for j, since in jobs.items() if j not in reported and since < older_than}


class Pool:
    def __init__(self) -> None:
        self.drones: dict[str, Drone] = {}

    def __contains__(self, drone_id: str) -> bool:
        return drone_id in self.drones

    def get(self, drone_id: str) -> Drone | None:
        return self.drones.get(drone_id)

    def join(self, drone: Drone) -> None:
        self.drones[drone.id] = drone

    def leave(self, drone_id: str) -> Drone | None:
        return self.drones.pop(drone_id, None)

    def views(self) -> list[DroneView]:
        return [d.view() for d in self.drones.values()]

    def assign(self, drone_id: str, job_id: str) -> None:
        """Hold a slot of `drone_id` for `job_id`, whose queue:new is yet to leave (`sent` says when it has)."""
        drone = self.drones.get(drone_id)
        if drone is not None:
            drone.jobs[job_id] = NOT_SENT

    def sent(self, drone_id: str, job_id: str) -> None:
        """The queue:new for `job_id` left for `drone_id` (or never will): from now on, the drone's
        heartbeats that leave it out count against it (`unaccounted`)."""
        drone = self.drones.get(drone_id)
        if drone is not None and job_id in drone.jobs:
            drone.jobs[job_id] = time.time()
            drone.missing.pop(job_id, None)

    def release(self, drone_id: str, job_id: str) -> bool:
        """Free the slot `job_id` held on `drone_id`; True when it held one."""
        drone = self.drones.get(drone_id)
        return drone is not None and drone.jobs.pop(job_id, None) is not None

    def silent_since(self, cutoff: float) -> list[str]:
        return [d.id for d in self.drones.values() if d.last_seen < cutoff]

    @staticmethod
    def unaccounted(drone: Drone, reported: set[str], older_than: float) -> list[str]:
        """After a heartbeat of `drone` reporting `reported`: the jobs it has now left out MISSES times in a
        row since their queue:new left (before `older_than`): it never got them.

        Counted from the send, not from the claim: preparing a queue:new may take seconds on a loaded
        queen (a continuation's artifacts of hundreds of child jobs), and a job the drone cannot know
        yet is not lost (NOT_SENT is never older)."""
        drone.missing = missing_counts(drone.jobs, drone.missing, reported, older_than)
        return [j for j, n in drone.missing.items() if n >= MISSES]


def reported_jobs(value: Any) -> set[str]:
    """The job ids a drone reports (drone:info, drone:heartbeat), as many as a drone can run at most
    (the rest is noise or an attack)."""
    return {j for j in _list(value)[:MAX_CAPACITY] if isinstance(j, str) and len(j) <= 64}


def reported_plugins(value: Any) -> frozenset[str]:
    return frozenset(p for p in _list(value)[:1000] if isinstance(p, str) and len(p) <= 200)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
