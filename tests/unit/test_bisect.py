"""Bisect's decisions (apiary.core.bisect): the line of commits, what to run each round, the verdicts, the result."""

from __future__ import annotations

import pytest

from apiary.core.bisect import BAD, GOOD, SKIP, Step, check_stage, commit_line, decide, split, verdict
from apiary.core.errors import BadRequest


def search(n: int, first_bad: int, k: int, skipped: frozenset[int] = frozenset()) -> tuple[dict, list[tuple[int, ...]]]:
    """Run the decisions to the end over `n` commits whose first bad one is `first_bad` (commits in
    `skipped` cannot be built; `first_bad` n: none is); (the result, the rounds' commits)."""
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
    assert found == {"reproduced": True, "first_bad": first_bad, "candidates": [first_bad],
                     "last_good": first_bad - 1}
    assert len(rounds) <= rounds_at_most
    assert all(len(r) <= k + (i == 0) for i, r in enumerate(rounds))
    assert n - 1 in rounds[0]  # the bad end is checked in the first round, alongside the cuts


def test_a_range_of_one_runs_the_bad_commit_only() -> None:
    # Good is the bad commit's parent: the bad commit is the first bad one once its job failed.
    assert decide(1, [], 4).run == (0,)
    assert decide(1, [{"index": 0, "verdict": None}], 4) == Step()
    assert decide(1, [{"index": 0, "verdict": BAD}], 4).result == {"reproduced": True, "first_bad": 0,
                                                                     "candidates": [0], "last_good": -1}


@pytest.mark.parametrize(("n", "first_bad", "k", "skipped"), [
    (12, 12, 1, set()),  # every commit passes (the failure was a parameter's, or another stage's)
    (12, 12, 3, set()),
    (12, 5, 3, {11}),  # the bad end cannot be built with the bisect's settings (another branch)
    (1, 1, 2, set()),
])
def test_a_bad_end_that_is_not_bad_ends_the_search_unreproduced(n: int, first_bad: int, k: int,
                                                                skipped: set[int]) -> None:
    found, rounds = search(n, first_bad, k, frozenset(skipped))
    assert found == {"reproduced": False, "index": n - 1}
    assert len(rounds) == 1  # known after the first round, whatever its other jobs said


def test_the_bad_end_is_waited_for_and_never_cancelled() -> None:
    # Round one ran 5 and the bad end 11; 5 was bad at once: the search goes on inside 0..5, 11 runs on.
    tries = [{"index": 5, "verdict": BAD}, {"index": 11, "verdict": None}]
    step = decide(12, tries, 1)
    assert step.run == (2,) and step.cancel == ()
    tries += [{"index": i, "verdict": GOOD if i < 3 else BAD} for i in (0, 1, 2, 3, 4)]
    assert decide(12, tries, 1) == Step()  # the range is searched: it waits for the bad end
    tries[1]["verdict"] = GOOD
    assert decide(12, tries, 1).result == {"reproduced": False, "index": 11}
    tries[1]["verdict"] = BAD
    assert decide(12, tries, 1).result == {"reproduced": True, "first_bad": 3, "candidates": [3],
                                           "last_good": 2}


def done(result: dict) -> dict:
    return {"reproduced": True, **result}


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
    assert found == done(expected)


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
    # Round one ran 2, 5, 8 and the bad end; 5 was bad first: 8 is outside the range now, 2 still matters.
    tries = [{"index": 2, "verdict": None}, {"index": 5, "verdict": BAD}, {"index": 8, "verdict": None},
             {"index": 11, "verdict": BAD}]
    step = decide(12, tries, 3)
    assert (step.run, step.cancel, step.done) == ((), (8,), False)
    tries[0]["verdict"] = GOOD
    step = decide(12, tries, 3)
    assert step.run == (3, 4) and step.cancel == (8,)


def test_k_is_at_least_one_and_capped() -> None:
    assert len(decide(100, [], 0).run) == 2  # a cut and the bad end
    assert len(decide(100, [], 1000).run) == 9  # eight cuts and the bad end
    assert len(decide(100, [{"index": 99, "verdict": BAD}], 1000).run) == 8


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


BUILD = {"name": "build", "deploy": False}
TEST = {"name": "test (py 3.12)", "deploy": False, "matrix": {"group": "test"}}
SHIP = {"name": "ship", "deploy": True}
# A sharded stage as compiled (apiary.core.shards.expand): its listing, then its shards.
LISTING = {"name": "unit · list", "needs": ["build"], "deploy": False, "shards": {"lists": "unit"}}
SHARDS = [{"name": f"unit (shard {i} of 2)", "needs": ["build", "unit · list"], "deploy": False,
           "shards": {"of": "unit", "index": i, "count": 2}} for i in (1, 2)]
GATE = {"role": "admin", "timeout": 20.0}
RELEASE = {"name": "release", "needs": ["test (py 3.12)"], "deploy": False, "approval": GATE}
AFTER = {"name": "announce", "needs": ["release"], "deploy": False}  # behind the gate, one step down
LAST = {"name": "report", "needs": ["announce"], "deploy": False}  # two steps down
STAGES = [BUILD, TEST, SHIP, LISTING, *SHARDS, RELEASE, AFTER, LAST]


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
    # A sharded stage: its listing and shards (named in the job's pipeline; the outcome has their names).
    ({"status": "failed", "pipeline": {"stages": [BUILD, LISTING, *SHARDS]}}, "unit",
     [{"name": "build", "status": "passed"}, {"name": "unit · list", "status": "passed"},
      {"name": "unit (shard 1 of 2)", "status": "passed"}, {"name": "unit (shard 2 of 2)", "status": "failed"}], BAD),
    ({"status": "passed", "pipeline": {"stages": [BUILD, LISTING, *SHARDS]}}, "unit",
     [{"name": "build", "status": "passed"}, {"name": "unit · list", "status": "passed"},
      {"name": "unit (shard 1 of 2)", "status": "passed"}, {"name": "unit (shard 2 of 2)", "status": "passed"}], GOOD),
    ({"status": "failed", "pipeline": {"stages": [BUILD, LISTING, *SHARDS]}}, "unit",
     [{"name": "build", "status": "failed"}, {"name": "unit · list", "status": "not_run"},
      {"name": "unit (shard 1 of 2)", "status": "not_run"}, {"name": "unit (shard 2 of 2)", "status": "not_run"}],
     SKIP),
    # It failed only because a shard's child job was cancelled (by somebody else) or errored: untested, a skip.
    ({"status": "failed", "failed_child": {"unit": "unit (shard 1 of 2)", "number": 174, "status": "cancelled"}},
     None, [], SKIP),
    ({"status": "failed", "failed_child": {"unit": "unit (shard 1 of 2)", "number": 174, "status": "errored"}},
     None, [], SKIP),
    ({"status": "failed", "failed_child": {"unit": "unit (shard 1 of 2)", "number": 174, "status": "failed"}},
     None, [], BAD),
    # With a stage: a cancelled child of that stage is a skip; of another stage, the stage asked about speaks.
    ({"status": "failed", "failed_child": {"unit": "unit (shard 1 of 2)", "status": "cancelled"},
      "pipeline": {"stages": [BUILD, LISTING, *[s | {"remote": {"unit": s["name"]}} for s in SHARDS]]}}, "unit",
     [{"name": "build", "status": "passed"}, {"name": "unit · list", "status": "passed"},
      {"name": "unit (shard 1 of 2)", "status": "failed"}, {"name": "unit (shard 2 of 2)", "status": "passed"}], SKIP),
    ({"status": "failed", "failed_child": {"unit": "unit (shard 1 of 2)", "status": "cancelled"},
      "pipeline": {"stages": [BUILD, LISTING, *[s | {"remote": {"unit": s["name"]}} for s in SHARDS]]}}, "build",
     [{"name": "build", "status": "passed"}, {"name": "unit · list", "status": "passed"},
      {"name": "unit (shard 1 of 2)", "status": "failed"}, {"name": "unit (shard 2 of 2)", "status": "passed"}], GOOD),
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




@pytest.mark.parametrize(("name", "problem"), [
    ("build", None),
    ("test", None),  # a matrix's name: its cells
    ("unit", None),  # a sharded stage's name: its listing and shards
    ("ship", "ship is a deploy stage"),  # a TEST job never runs it: every commit would be a skip
    ("release", "release is behind an approval gate"),  # nobody should release an old commit
    ("report", "report needs announce, which a bisect's jobs never run"),  # behind the gate, two steps down
    # The names a user wrote, not compiled ones (no cell, no shard, no listing), in pipeline order.
    ("lint", "no stage 'lint' in the pipeline (its stages: build, test, unit)"),
    # A shard or a listing, as a failure names it: the stage as written is bisected, never a shard alone.
    ("unit (shard 1 of 2)", "bisect the stage unit (the name written in the pipeline); a shard's split changes"),
    ("unit · list", "bisect the stage unit (the name written in the pipeline)"),
])
def test_a_bisect_stage_must_be_one_its_jobs_run(name: str, problem: str | None) -> None:
    from apiary.core.bisect import stage_problem

    found = stage_problem(STAGES, name)
    assert found == problem if problem is None else problem in (found or "")


@pytest.mark.parametrize(("stages", "kept"), [
    (STAGES, ["build", "test (py 3.12)", "unit · list", "unit (shard 1 of 2)", "unit (shard 2 of 2)"]),
    ([BUILD, RELEASE | {"needs": ["build"]}], ["build"]),
    # A stage that needs a gated one is left out even when it comes first (needs may point forward).
    ([AFTER | {"needs": ["release"]}, BUILD, RELEASE | {"needs": ["build"]}], ["build"]),
    # A gated matrix cell takes its whole matrix out, and what needs any cell of it.
    ([BUILD, TEST | {"approval": GATE}, {**TEST, "name": "test (py 3.11)"},
      {"name": "pack", "needs": ["test (py 3.11)"], "deploy": False}], ["build"]),
])
def test_a_bisects_jobs_run_no_deploy_stage_nor_what_an_approval_gate_holds(stages: list[dict], kept: list[str]) -> None:
    from apiary.core.bisect import bisect_pipeline

    shaped = bisect_pipeline({"stages": stages, "env": {"A": "1"}})
    assert [s["name"] for s in shaped["stages"]] == kept and shaped["env"] == {"A": "1"}


def test_a_pipeline_with_no_stage_a_bisect_may_run_is_refused() -> None:
    from apiary.core.bisect import bisect_pipeline

    with pytest.raises(BadRequest, match="no stage a bisect may run") as caught:
        bisect_pipeline({"stages": [SHIP, RELEASE | {"needs": []}, AFTER]})
    assert caught.value.field == "stages"


def test_a_bisects_job_says_so_in_apiary_ls_and_the_history() -> None:
    from apiary.cli.remote import trigger_text
    from apiary.queen.pages import job_view

    job = {"_id": "01J", "repo": "app", "number": 7, "status": "passed", "ref": {"branch": "main", "id": "ab" * 20},
           "trigger": {"source": {"type": "API"}, "type": "bisect", "author": {"name": "ada"}},
           "triggered_by": {"kind": "bisect", "name": "#3", "bisect": "01B"}}
    assert trigger_text(job) == "bisect #3 ada"
    view = job_view(job)  # type: ignore[arg-type]
    assert (view["source"], view["author"]) == ("bisect #3", "ada")


def test_retention_keeps_the_branchs_last_passing_job_not_a_bisects() -> None:
    from apiary.queen.retention import select_prunable

    old = 0.0
    jobs = [  # newest first
        {"_id": "bisect", "status": "passed", "created": old, "ref": {"branch": "main"},
         "triggered_by": {"kind": "bisect"}},
        {"_id": "head", "status": "passed", "created": old, "ref": {"branch": "main"}},
        {"_id": "older", "status": "passed", "created": old, "ref": {"branch": "main"}},
    ]
    assert select_prunable(jobs, {"keep_jobs": 0}, 10 * 86400.0) == ["bisect", "older"]


@pytest.mark.parametrize(("argv", "words"), [
    (["--follow", "1", "--cancel", "2"], "not allowed with argument --follow"),  # not a silent cancel of #2
    (["--list", "--good", "abc"], "--list takes no --good"),
    (["--cancel", "1", "--bad", "abc", "--no-follow"], "--cancel takes no --bad, --no-follow"),
    (["--follow", "0"], "a bisect number is 1 or more"),
    (["--cancel", "two"], "a bisect number is 1 or more"),
])
def test_the_cli_refuses_flags_that_do_not_go_together_before_asking_the_queen(
        argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    from apiary.cli import main

    with pytest.raises(SystemExit) as ended:
        main(["bisect", "app", *argv, "--url", "http://127.0.0.1:9"])  # nothing listens there: never asked
    assert ended.value.code == 2 and words in capsys.readouterr().err


def test_the_cli_counts_in_words() -> None:
    from apiary.cli.bisect import _count

    assert (_count(1, "commit"), _count(12, "commit"), _count(1, "round"), _count(0, "round")) == \
        ("1 commit", "12 commits", "1 round", "0 rounds")


@pytest.mark.parametrize(("tries", "expected"), [
    # A job cancelled as unneeded that failed all the same (before the cancel reached it) at a commit
    # below the last good one: its word stays on the page, the search does not read it (no new range).
    ([{"index": 9, "verdict": BAD}, {"index": 4, "verdict": GOOD}, {"index": 2, "verdict": BAD, "unneeded": True}],
     Step(run=(6,))),
    ([{"index": 9, "verdict": BAD}, {"index": 4, "verdict": GOOD}, {"index": 2, "verdict": "unneeded", "unneeded": True}],
     Step(run=(6,))),
    # Read as a verdict, the same try would move the range below the good commit.
    ([{"index": 9, "verdict": BAD}, {"index": 4, "verdict": GOOD}, {"index": 2, "verdict": BAD}], Step(run=(0,))),
])
def test_a_try_cancelled_as_unneeded_keeps_its_word_but_is_not_evidence(tries: list[dict], expected: Step) -> None:
    from apiary.queen.bisects import _evidence

    assert decide(10, _evidence(tries), 1) == expected


def test_a_rerun_of_a_bisects_job_stays_a_bisects_and_says_who_reran_it() -> None:
    from apiary.core.bisect import rerun_by
    from apiary.core.branchjobs import speaks_for_branch

    by = rerun_by({"kind": "bisect", "name": "#3", "bisect": "B1"}, {"kind": "rerun", "name": "ann", "job": "J9"})
    assert by == {"kind": "bisect", "name": "#3", "bisect": "B1", "job": "J9", "user": "ann"}
    assert not speaks_for_branch({"triggered_by": by})  # no badge, history, estimate
