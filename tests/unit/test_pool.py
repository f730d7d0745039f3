"""When the queen decides a drone never got a job (apiary.queen.pool): counted from the queue:new's send, and only
after MISSES heartbeats in a row leave the job out; a slot held while the queue:new is prepared is never missing."""

from __future__ import annotations

import time

import pytest

from apiary.queen.pool import MISSES, NOT_SENT, Drone, Pool, missing_counts

NOW = 1000.0
OLD = NOW - 10  # sent long before the heartbeat's cutoff
CUTOFF = NOW - 2


@pytest.mark.parametrize(("jobs", "missing", "reported", "expected"), [
    # sent long ago, left out: one more miss
    ({"j": OLD}, {}, set(), {"j": 1}),
    ({"j": OLD}, {"j": 2}, set(), {"j": 3}),
    # reported again (its first heartbeat only now): starts from nothing
    ({"j": OLD}, {"j": 2}, {"j"}, {}),
    # sent just now: the drone may not have read it yet
    ({"j": NOW - 1}, {}, set(), {}),
    # still being prepared (a continuation's artifacts read for seconds): the drone cannot know it
    ({"j": NOT_SENT}, {"j": 2}, set(), {}),
    # only the jobs still held count (a released one is forgotten)
    ({"a": OLD, "b": OLD}, {"a": 1, "gone": 2}, {"b"}, {"a": 2}),
])
def test_heartbeats_leaving_a_job_out(jobs: dict[str, float], missing: dict[str, int], reported: set[str],
                                      expected: dict[str, int]) -> None:
    assert missing_counts(jobs, missing, reported, CUTOFF) == expected


def test_a_job_is_taken_back_only_after_misses_in_a_row_counted_from_its_send() -> None:
    pool = Pool()
    drone = Drone("d", capacity=1, speed=1.0, version=6)
    pool.join(drone)
    later = time.time() + 3600  # each heartbeat's cutoff: long after any send here
    pool.assign("d", "j")  # claimed: its queue:new is being prepared
    for _ in range(10):  # however long that takes
        assert Pool.unaccounted(drone, set(), later) == []
    pool.sent("d", "j")
    for _ in range(MISSES - 1):  # heartbeats written before the drone read it, or read late
        assert Pool.unaccounted(drone, set(), later) == []
    assert Pool.unaccounted(drone, {"j"}, later) == []  # it has it: the count starts again
    for _ in range(MISSES - 1):
        assert Pool.unaccounted(drone, set(), later) == []
    assert Pool.unaccounted(drone, set(), later) == ["j"]
