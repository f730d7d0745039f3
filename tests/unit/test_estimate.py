"""A running job's estimate: the median of the last passing jobs' durations, less the time it has run."""

from __future__ import annotations

import pytest

from apiary.queen.estimate import estimate


@pytest.mark.parametrize(("durations", "elapsed", "expected"), [
    ([50.0, 52.0, 48.0, 60.0, 51.0], 11.0, {"expected_s": 51.0, "elapsed_s": 11.0, "left_s": 40.0, "based_on": 5}),
    ([30.0], 10.0, {"expected_s": 30.0, "elapsed_s": 10.0, "left_s": 20.0, "based_on": 1}),
    # One slow run among quick ones barely moves it (a median, not a mean).
    ([10.0, 10.0, 11.0, 600.0], 5.0, {"expected_s": 10.5, "elapsed_s": 5.0, "left_s": 5.5, "based_on": 4}),
    # Over time: nothing left, the page says "taking longer than usual".
    ([20.0, 22.0], 30.0, {"expected_s": 21.0, "elapsed_s": 30.0, "left_s": 0.0, "based_on": 2}),
    # A clock step backwards is no negative time.
    ([20.0], -3.0, {"expected_s": 20.0, "elapsed_s": 0.0, "left_s": 20.0, "based_on": 1}),
    ([-1.0, 12.0], 2.0, {"expected_s": 12.0, "elapsed_s": 2.0, "left_s": 10.0, "based_on": 1}),
    ([], 5.0, None),
    ([-2.0], 5.0, None),
])
def test_estimate(durations: list[float], elapsed: float, expected: dict[str, float] | None) -> None:
    assert estimate(durations, elapsed) == expected
