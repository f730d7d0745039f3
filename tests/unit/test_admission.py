"""Who may hold a drone id (apiary.queen.pool.admission) as a table. Real drones joining, leaving and
contending for an id: tests/e2e/test_drones.py."""

from __future__ import annotations

import pytest

from apiary.core.protocol import PROTOCOL_VERSION
from apiary.queen.pool import Drone, admission

# -- a drone's id is its own ------------------------------------------------------------------

def _holder(session: str = "s1", key: str = "", seen: float = 100.0, route: bytes | None = b"r1") -> Drone:
    return Drone(id="d1", capacity=1, speed=1.0, version=PROTOCOL_VERSION, host="build-1", last_seen=seen,
                 route=route, session=session, key=key)


@pytest.mark.parametrize(("session", "key", "holder", "verdict"), [
    ("s1", "", None, "admit"),  # the first connection takes the id
    ("s1", "", _holder(), "admit"),  # the same process, reconnected
    ("s2", "", _holder(), "refuse"),  # another process while the holder is alive: refused, tries again
    ("s2", "", _holder(seen=90.0), "admit"),  # the holder fell silent (timeout 4 s)
    ("s2", "", _holder(route=None), "admit"),
    ("s2", "d1", _holder(key="d1"), "replace"),  # the key proves it: the old process is told it was replaced
    ("s2", "d2", _holder(key="d2"), "refuse-for-good"),  # key d2 registers id d2 only
    ("s1", "d2", None, "refuse-for-good"),
])
def test_who_may_hold_a_drone_id(session: str, key: str, holder: Drone | None, verdict: str) -> None:
    assert admission("d1", session, key, holder, now=101.0, timeout=4.0)[0] == verdict
