"""Which drone gets a job (DESIGN.md §7). Pure: no sockets, no store.

The drone with the most spare capacity (``capacity - running``) wins; ties go
to the faster drone (``speed``), then to one that already has the job's
plugins, then to the lowest id so the choice is repeatable. A drone that
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

    @property
    def spare(self) -> int:
        return self.capacity - self.running


def pick_drone(drones: Iterable[DroneView], plugins: Iterable[str] = ()) -> str | None:
    """The id of the drone that should run a job needing `plugins`, or None if none can now."""
    wanted = frozenset(plugins)
    best: tuple[int, float, bool, str] | None = None
    for d in drones:
        if d.spare <= 0:
            continue
        has = wanted <= d.plugins
        if not has and not d.installs:
            continue
        # min() over negated ranks: most spare, fastest, has plugins, then lowest id
        rank = (-d.spare, -d.speed, not has, d.id)
        if best is None or rank < best:
            best = rank
    return None if best is None else best[3]
