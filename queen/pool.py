"""The drones the queen knows now, and which jobs it gave each. State only, no I/O.

A drone enters the pool with ``drone:info`` and leaves with ``drone:bye`` or
when it has been silent for ``heartbeat_interval * heartbeat_liveness``. A
queen that restarts starts with an empty pool: drones re-register when they
see its new boot id, reporting the jobs they still run.
"""

from __future__ import annotations

import dataclasses
import time
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
    # job id -> when this queen dispatched it (or learnt of it from the drone)
    jobs: dict[str, float] = dataclasses.field(default_factory=dict)
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
        drone = self.drones.get(drone_id)
        if drone is not None:
            drone.jobs[job_id] = time.time()

    def release(self, drone_id: str, job_id: str) -> bool:
        """Free the slot `job_id` held on `drone_id`; True when it held one."""
        drone = self.drones.get(drone_id)
        return drone is not None and drone.jobs.pop(job_id, None) is not None

    def silent_since(self, cutoff: float) -> list[str]:
        return [d.id for d in self.drones.values() if d.last_seen < cutoff]

    @staticmethod
    def unaccounted(drone: Drone, reported: set[str], older_than: float) -> list[str]:
        """Jobs the queen gave `drone` before `older_than` that the drone no longer reports."""
        return [j for j, since in drone.jobs.items() if j not in reported and since < older_than]


def reported_jobs(value: Any) -> set[str]:
    """The job ids a drone reports (drone:info, drone:heartbeat), as many as a drone can run at most
    (the rest is noise or an attack)."""
    return {j for j in _list(value)[:MAX_CAPACITY] if isinstance(j, str) and len(j) <= 64}


def reported_plugins(value: Any) -> frozenset[str]:
    return frozenset(p for p in _list(value)[:1000] if isinstance(p, str) and len(p) <= 200)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
