"""Which drone gets a job (DESIGN.md §7). Pure: no sockets, no store.

The drone with the most spare capacity (``capacity - running``) wins; ties go
to the faster drone (``speed``), then to one that already has the job's
plugins, then to the one given a job longest ago (``given``), then to the lowest
id so the choice is repeatable. Longest ago, because a drone that just got a job
is still making the job kit it keeps ready (drone/jobkit.py: a sandbox made
ahead needs ~10 ms, and a job that comes before it is ready waits or starts
cold) and cleaning up after its last job: jobs one after another on 4 idle
drones each found a kit half made on the same drone (trivial job p50 27 ms,
the command alone 4-25 ms) where taking turns finds each ready. A drone that
may not install plugins (``installs`` false) only gets jobs whose plugins it has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class DroneView:
    """What the scheduler needs to know of a drone."""

    id: str
    capacity: int
    running: int
    speed: float = 1.0
    plugins: frozenset[str] = frozenset()
    installs: bool = True
    given: float = 0.0  # when it was last given a job (monotonic seconds; 0: never)

    @property
    def spare(self) -> int:
        return self.capacity - self.running


def pick_drone(drones: Iterable[DroneView], plugins: Iterable[str] = ()) -> str | None:
    """The id of the drone that should run a job needing `plugins`, or None if none can now."""
    wanted = frozenset(plugins)
    best: tuple[int, float, bool, float, str] | None = None
    for d in drones:
        if d.spare <= 0:
            continue
        has = wanted <= d.plugins
        if not has and not d.installs:
            continue
        # min() over negated ranks: most spare, fastest, has plugins, given a job longest ago, then lowest id
        rank = (-d.spare, -d.speed, not has, d.given, d.id)
        if best is None or rank < best:
            best = rank
    return None if best is None else best[4]
