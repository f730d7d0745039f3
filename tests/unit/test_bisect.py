"""Bisect's decisions (apiary.core.bisect): the line of commits, what to run each round, the verdicts, the result."""

from __future__ import annotations

import pytest

from apiary.core.bisect import BAD, GOOD, SKIP, check_stage, commit_line, decide, split, verdict
from apiary.core.errors import BadRequest


def search(n: int, first_bad: int, k: int, skipped: frozenset[int] = frozenset()) -> tuple[dict, list[tuple[int, ...]]]:
    """Run the decisions to the end over `n` commits whose first bad one is `first_bad` (commits in
    `skipped` cannot be built); (the result, the rounds' commits)."""
    tries: list[dict] = []
    rounds: list[tuple[int, ...]] = []
    for _ in range(n + 2):
        step = decide(n, tries, k)
        assert not step.cancel  # every round's jobs end before the next one starts here
        if step.done:
            assert step.result is not None
            return step.result, rounds
        assert step.run, "a step that is not done runs something"
        assert not {t["index"] for t in tries} & set(step.run), "no commit runs twice"
        rounds.append(step.run)
        tries += [{"index": i, "verdict": SKIP if i in skipped else BAD if i >= first_bad else GOOD}
                  for i in step.run]
    raise AssertionError("the search did not end")


@pytest.mark.parametrize(("n", "first_bad", "k", "rounds_at_most"), [
    (12, 5, 1, 4),  # linear history, one slot: a binary search (log2 12 < 4)
    (12, 5, 3, 2),  # three slots: each round cuts the range into four
    (12, 0, 1, 4),  # the first commit after good broke it
    (12, 11, 1, 4),  # the bad commit itself broke it: every other commit passed
    (12, 11, 3, 2),
    (1000, 617, 1, 10),
    (1000, 617, 7, 4),  # eight parts a round: 1000 -> 125 -> 16 -> 2 -> 1
    (2, 1, 3, 1),
])
def test_a_linear_history_finds_the_first_bad_commit(n: int, first_bad: int, k: int, rounds_at_most: int) -> None:
    found, rounds = search(n, first_bad, k)
    assert found == {"first_bad": first_bad, "candidates": [first_bad], "last_good": first_bad - 1}
    assert len(rounds) <= rounds_at_most
    assert all(len(r) <= k for r in rounds)


def test_a_range_of_one_runs_nothing() -> None:
    # Good is the bad commit's parent: the bad commit is the first bad one, no job needed.
    assert decide(1, [], 4).result == {"first_bad": 0, "candidates": [0], "last_good": -1}
    assert decide(1, [], 4).run == ()


@pytest.mark.parametrize(("n", "first_bad", "k", "skipped", "expected"), [
    # The commit just before the first bad one cannot be built: the answer is a range of the two.
    (12, 6, 1, {5}, {"first_bad": None, "candidates": [5, 6], "last_good": 4}),
    (12, 6, 3, {5}, {"first_bad": None, "candidates": [5, 6], "last_good": 4}),
    # A skipped commit elsewhere is gone around: the answer is exact.
    (12, 6, 1, {2, 3, 9}, {"first_bad": 6, "candidates": [6], "last_good": 5}),
    (12, 6, 3, {2, 3, 9}, {"first_bad": 6, "candidates": [6], "last_good": 5}),
    # Nothing can be built: every commit may be the first bad one.
    (5, 4, 2, {0, 1, 2, 3}, {"first_bad": None, "candidates": [0, 1, 2, 3, 4], "last_good": -1}),
])
def test_skipped_commits_are_gone_around_or_make_a_range(n: int, first_bad: int, k: int, skipped: set[int],
                                                       expected: dict) -> None:
    found, _ = search(n, first_bad, k, frozenset(skipped))
    assert found == expected


@pytest.mark.parametrize(("untested", "k", "picks"), [
    (list(range(11)), 1, (5,)),
    (list(range(11)), 3, (2, 5, 8)),
    ([0, 1, 2], 3, (0, 1, 2)),
    ([0, 1, 2], 8, (0, 1, 2)),
    ([1, 4, 7, 8, 9], 1, (7,)),
])
def test_a_round_splits_the_untested_commits_into_k_plus_one_parts(untested: list[int], k: int,
                                                                  picks: tuple[int, ...]) -> None:
    assert split(untested, k) == picks


def test_a_round_waits_for_its_jobs_and_cancels_those_that_no_longer_matter() -> None:
    # Round one ran 2, 5, 8; 5 was bad first: 8 is outside the range now, 2 still matters.
    tries = [{"index": 2, "verdict": None}, {"index": 5, "verdict": BAD}, {"index": 8, "verdict": None}]
    step = decide(12, tries, 3)
    assert (step.run, step.cancel, step.done) == ((), (8,), False)
    tries[0]["verdict"] = GOOD
    step = decide(12, tries, 3)
    assert step.run == (3, 4) and step.cancel == (8,)


def test_k_is_at_least_one_and_capped() -> None:
    assert len(decide(100, [], 0).run) == 1
    assert len(decide(100, [], 1000).run) == 8


@pytest.mark.parametrize(("listed", "good", "bad", "ancestor", "error", "field"), [
    (["b"], "b", "b", True, "is the bad commit itself", "good"),
    ([], "g", "b", False, "is not an ancestor of", "good"),
    (["x"] * 11, "g", "b", True, "more than 10 commits", "bad"),
])
def test_good_and_bad_that_cannot_be_searched_are_refused_naming_the_field(listed: list[str], good: str, bad: str,
                                                                          ancestor: bool, error: str,
                                                                          field: str) -> None:
    with pytest.raises(BadRequest, match=error) as caught:
        commit_line(listed, good, bad, ancestor=ancestor, limit=10)
    assert caught.value.field == field


def test_the_line_is_oldest_first_and_ends_with_bad() -> None:
    assert commit_line(["c3", "c2", "c1"], "g", "c3", ancestor=True) == ["c1", "c2", "c3"]


@pytest.mark.parametrize(("job", "stage", "stages", "expected"), [
    ({"status": "passed"}, None, [], GOOD),
    ({"status": "failed"}, None, [], BAD),
    ({"status": "errored", "error": "drone lost"}, None, [], SKIP),
    ({"status": "cancelled"}, None, [], SKIP),
    ({"status": "failed"}, "test", [{"name": "build", "status": "passed"}, {"name": "test", "status": "failed"}], BAD),
    # The stage asked about passed, another failed: good for this search.
    ({"status": "failed"}, "build", [{"name": "build", "status": "passed"}, {"name": "test", "status": "failed"}],
     GOOD),
    # It never ran (an earlier stage failed): cannot tell.
    ({"status": "failed"}, "test", [{"name": "build", "status": "failed"}, {"name": "test", "status": "not_run"}],
     SKIP),
    ({"status": "passed"}, "lint", [{"name": "build", "status": "passed"}], SKIP),
    # A matrix's cells: bad when any cell failed.
    ({"status": "failed"}, "test", [{"name": "test (py 3.11)", "status": "passed", "matrix": {"group": "test"}},
                                    {"name": "test (py 3.12)", "status": "failed", "matrix": {"group": "test"}}], BAD),
])
def test_a_finished_job_says_good_bad_or_skip(job: dict, stage: str | None, stages: list[dict], expected: str) -> None:
    assert verdict(job, stage, stages)[0] == expected


@pytest.mark.parametrize("value", [7, "x" * 129, "bad\nname"])
def test_a_stage_name_is_checked(value: object) -> None:
    with pytest.raises(BadRequest, match="stage:"):
        check_stage(value)
    assert check_stage("test") == "test" and check_stage(None) is None


@pytest.mark.parametrize(("role", "method", "path", "allowed"), [
    ("member", "POST", "/api/v1/repos/app/bisects", True),
    ("member", "POST", "/api/v1/bisects/01ABC/cancel", True),
    ("member", "GET", "/api/v1/bisects/01ABC", True),
    (None, "POST", "/api/v1/repos/app/bisects", False),
    (None, "POST", "/api/v1/bisects/01ABC/cancel", False),
    ("member", "POST", "/api/v1/bisects/01ABC/other", False),
])
def test_members_start_and_cancel_bisects_visitors_do_not(role: str | None, method: str, path: str,
                                                         allowed: bool) -> None:
    from apiary.queen.users import Role, may

    assert may(Role(role) if role else None, method, path) is allowed
