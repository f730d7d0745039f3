"""Estimates (apiary.queen.estimate): a running job's time left from the median of the last passing jobs of the same
stages, a queued job's duration and, when the pool is full, its start."""

from __future__ import annotations

import pytest

from apiary.queen.estimate import (
    Past,
    durations_for,
    estimate,
    expected_start,
    queued_estimate,
    said,
    shape,
)


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


def _past(*rows: tuple[str | None, tuple[str, ...] | None, float]) -> list[Past]:
    return [Past(*row) for row in rows]


TESTS = ("lint", "unit")


@pytest.mark.parametrize(("job", "expected"), [
    ({"type": "TEST", "pipeline": {"stages": [{"name": "unit"}, {"name": "lint"}, {"name": "ship", "deploy": True}]}},
     ("lint", "unit")),
    ({"type": "DEPLOY", "pipeline": {"stages": [{"name": "unit"}, {"name": "ship", "deploy": True}]}}, ("ship",)),
    ({"type": "TEST_DEPLOY", "pipeline": {"stages": [{"name": "unit"}, {"name": "ship", "deploy": True}]}},
     ("ship", "unit")),
    # A re-run from the failed stage runs only what it does not reuse.
    ({"type": "TEST", "pipeline": {"stages": [{"name": "lint"}, {"name": "unit"}]},
      "resume": {"stages": {"lint": {"job": "J1"}}}}, ("unit",)),
    # A spread job's continuation: the stages its own children and its first part ran are its own, so its
    # shape is the same before and after its children end (and a fresh job of the pipeline matches it).
    ({"_id": "J2", "type": "TEST", "pipeline": {"stages": [{"name": "s (a)"}, {"name": "s (b)"}, {"name": "lint"}]},
      "children": [{"job": "C1"}, {"job": "C2"}],
      "resume": {"stages": {"s (a)": {"job": "C1"}, "s (b)": {"job": "C2"}, "lint": {"job": "J2"}}}},
     ("lint", "s (a)", "s (b)")),
    # ... but a re-run reusing another job's child's cell does not run it.
    ({"_id": "J3", "type": "TEST", "pipeline": {"stages": [{"name": "s (a)"}, {"name": "s (b)"}]},
      "children": [{"job": "C3"}], "resume": {"stages": {"s (a)": {"job": "C1"}, "s (b)": {"job": "C3"}}}},
     ("s (b)",)),
    ({"type": "TEST"}, None),  # listed without its pipeline
])
def test_shape(job: dict, expected: tuple[str, ...] | None) -> None:
    assert shape(job) == expected


@pytest.mark.parametrize(("past", "branch", "wanted", "expected"), [
    # The branch's jobs of the same stages, newest first, at most five.
    (_past(("main", TESTS, 10), ("dev", TESTS, 99), ("main", TESTS, 12), ("main", TESTS, 11), ("main", TESTS, 13),
           ("main", TESTS, 14), ("main", TESTS, 15)), "main", TESTS, ([10, 12, 11, 13, 14], "branch")),
    # Another set of stages (a deploy, a partial run) is another kind of job.
    (_past(("main", ("ship",), 300), ("main", TESTS, 10)), "main", TESTS, ([10], "branch")),
    (_past(("main", ("ship",), 300), ("main", TESTS, 10)), "main", ("ship",), ([300], "branch")),
    # None of the branch: the repository's (its other branches').
    (_past(("dev", TESTS, 20), ("feature", TESTS, 22)), "main", TESTS, ([20, 22], "repository")),
    (_past(("dev", TESTS, 20)), None, TESTS, ([20], "repository")),
    # No job of those stages passed: nothing, whatever else passed.
    (_past(("main", ("ship",), 300)), "main", TESTS, ([], "repository")),
    ([], "main", TESTS, ([], "repository")),
    # A job whose stages are not known is held to every passed job.
    (_past(("main", ("ship",), 300), ("main", TESTS, 10)), "main", None, ([300, 10], "branch")),
])
def test_durations_for(past: list[Past], branch: str | None, wanted: tuple[str, ...] | None,
                       expected: tuple[list[float], str]) -> None:
    assert durations_for(past, branch, wanted) == expected


@pytest.mark.parametrize(("ahead", "running_left", "slots", "expected"), [
    # Two slots, both taken: it starts as the first ends.
    ([], [30.0, 50.0], 2, 30.0),
    # Jobs ahead take the first slot free each, in turn.
    ([40.0], [30.0, 50.0], 2, 50.0),  # the first waits 30 s and ends at 70; the slot at 50 is next
    ([40.0, 10.0], [30.0, 50.0], 2, 60.0),
    ([100.0, 100.0, 100.0], [10.0], 1, 310.0),
    # A free slot (or more than the queue ahead needs): it goes at once, or waits for what durations do not
    # tell (a concurrency group, a plugin): nothing said.
    ([], [30.0], 2, None),
    ([20.0], [30.0], 3, None),
    # A slot free now and a job ahead taking it: the next is the first running job's end.
    ([20.0], [30.0], 2, 20.0),
    # No basis for a job that matters: nothing said.
    ([None], [30.0, 50.0], 2, None),
    ([], [None, 50.0], 2, None),
    ([], [], 0, None),  # no drones
    ([5.0] * 201, [1.0], 1, None),  # too far back to say
    # Overdue running jobs free their slot any moment.
    ([], [0.0, 0.0], 2, 0.0),
])
def test_expected_start(ahead: list[float | None], running_left: list[float | None], slots: int,
                        expected: float | None) -> None:
    assert expected_start(ahead, running_left, slots) == expected


@pytest.mark.parametrize(("durations", "basis", "starts", "ahead", "expected"), [
    ([60.0, 70.0, 65.0], "branch", None, 0, {"expected_s": 65.0, "based_on": 3, "basis": "branch"}),
    ([60.0], "repository", 30.0, 2,
     {"expected_s": 60.0, "based_on": 1, "basis": "repository", "starts_in_s": 30.0, "left_s": 90.0, "ahead": 2}),
    ([], "branch", 30.0, 2, None),
])
def test_queued_estimate(durations: list[float], basis: str, starts: float | None, ahead: int,
                         expected: dict | None) -> None:
    assert queued_estimate(durations, basis, starts, ahead) == expected


@pytest.mark.parametrize(("status", "est", "text"), [
    ("running", {"expected_s": 51.0, "elapsed_s": 11.0, "left_s": 40.0, "based_on": 5}, "about 40 s left"),
    ("running", {"expected_s": 51.0, "elapsed_s": 80.0, "left_s": 0.0, "based_on": 5}, "taking longer than usual"),
    ("queued", {"expected_s": 65.0, "based_on": 3}, "takes about 1 min"),
    ("queued", {"expected_s": 65.0, "based_on": 3, "starts_in_s": 95.0, "left_s": 160.0, "ahead": 1},
     "takes about 1 min, starts in about 2 min"),
    ("queued", {"expected_s": 2.0, "based_on": 1, "starts_in_s": 0.0}, "takes a few seconds, starts in a few seconds"),
    ("dispatched", {"expected_s": 4000.0, "based_on": 1}, "takes about 1 h 07 min"),
    ("queued", None, ""),
])
def test_said(status: str, est: dict | None, text: str) -> None:
    assert said(status, est) == text
