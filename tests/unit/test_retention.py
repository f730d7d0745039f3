"""Retention's choice of jobs to prune. Pruning on a real queen, and the CLI: tests/e2e/test_retention.py."""

from __future__ import annotations

import pytest

from apiary.queen.retention import DAY, select_prunable
from apiary.queen.store.documents import nested


def job(i: int, status: str, branch: str = "main", age_days: float = 0) -> dict:
    return {"_id": f"j{i}", "status": status, "ref": {"branch": branch}, "created": 1000 * DAY - age_days * DAY}


def test_keep_the_newest_n_plus_the_last_pass_of_each_branch() -> None:
    jobs = [job(9, "failed"), job(8, "failed"), job(7, "passed", "dev"), job(6, "passed"), job(5, "passed"),
            job(4, "running"), job(3, "failed")]
    assert select_prunable(jobs, {"keep_jobs": 2}, now=1000 * DAY) == ["j5", "j3"]


def test_keep_what_is_younger_than_d_days() -> None:
    jobs = [job(3, "failed", age_days=1), job(2, "failed", age_days=5), job(1, "failed", age_days=9)]
    assert select_prunable(jobs, {"keep_days": 7}, now=1000 * DAY) == ["j1"]
    assert select_prunable(jobs, {}, now=1000 * DAY) == []


def child(i: int, status: str, parent: int, branch: str = "main") -> dict:
    return {**job(i, status, branch), "parent": {"id": f"j{parent}", "number": parent, "unit": f"u{i}", "wave": 1}}


@pytest.mark.parametrize(("jobs", "doomed"), [
    # A passed child of a failed parent is not the branch's last pass; the old passed parent is, and the
    # children are not counted among the newest N.
    ([child(9, "passed", 7), child(8, "passed", 7), job(7, "failed"), job(6, "failed"), job(5, "passed"),
      job(4, "failed")], ["j4"]),
    # A child goes with its parent, never on its own; kept as long as its parent is.
    ([job(9, "failed"), job(8, "failed"), job(7, "failed"), child(6, "passed", 5), child(4, "failed", 5),
      job(5, "failed"), job(3, "passed")], ["j7", "j5", "j6", "j4"]),
    ([job(9, "failed"), child(8, "passed", 7), job(7, "failed"), job(6, "failed"), job(5, "passed")], ["j6"]),
    # A parent whose child has not ended stays, children and all.
    ([job(9, "failed"), job(8, "failed"), job(7, "failed"), child(6, "running", 5), job(5, "failed")], ["j7"]),
    # A child whose parent is gone already (pruned by an older queen) goes once it has ended.
    ([job(9, "failed"), child(8, "passed", 1), child(7, "running", 1)], ["j8"]),
    # A branch where only children ever passed has no last pass to keep.
    ([job(9, "failed"), job(8, "failed"), job(7, "failed"), child(6, "passed", 5), job(5, "failed")],
     ["j7", "j5", "j6"]),
])
def test_child_jobs_follow_their_parent(jobs: list[dict], doomed: list[str]) -> None:
    assert select_prunable(jobs, {"keep_jobs": 2}, now=1000 * DAY) == doomed


def rerun(i: int, status: str, reuses: dict[str, int]) -> dict:
    """A re-run from the failed stage: its ``resume.stages`` say where each reused stage passed."""
    return {**job(i, status), "resume": {"stages": {name: {"status": "passed", "job": f"j{at}", "number": at}
                                                    for name, at in reuses.items()}}}


@pytest.mark.parametrize(("jobs", "keep", "doomed"), [
    # #9 (kept) reuses shard 2 from #6's child #5: #6 stays, with its children (its plan and lists).
    ([rerun(9, "failed", {"test (shard 2 of 2)": 5}), child(8, "failed", 9), job(7, "failed"), job(6, "failed"),
      child(5, "passed", 6), job(4, "failed")], set(), ["j7", "j4"]),
    # ... and down the chain: #9 reuses from #7, which reused from #4.
    ([rerun(9, "failed", {"build": 7}), rerun(7, "failed", {"lint": 4}), job(6, "failed"), job(4, "failed")],
     set(), ["j6"]),
    # A job nobody kept reuses from is not kept for it: both go.
    ([job(9, "failed"), rerun(7, "failed", {"build": 4}), job(4, "failed")], set(), ["j7", "j4"]),
    # A bisect's jobs (apiary.core.bisect.kept_jobs): kept whatever the policy, a child keeps its family.
    ([job(9, "failed"), job(8, "failed"), job(7, "failed"), job(6, "failed"), child(5, "failed", 4),
      job(4, "failed")], {"j7", "j5"}, ["j8", "j6"]),
])
def test_what_a_kept_job_reuses_and_a_bisects_jobs_are_kept(jobs: list[dict], keep: set[str],
                                                            doomed: list[str]) -> None:
    assert select_prunable(jobs, {"keep_jobs": 1}, now=1000 * DAY, keep=keep) == doomed


@pytest.mark.parametrize(("bisect", "kept"), [
    # Running: every try, the bad end's reproduction too.
    ({"status": "running", "size": 8, "tries": [{"index": 7, "job": "A"}, {"index": 3, "job": "B"},
                                                 {"index": 5, "verdict": "skip"}]}, {"A", "B"}),
    # Found: the first bad's, the last good's and the bad end's jobs; not the other tries'.
    ({"status": "found", "size": 8, "tries": [{"index": 7, "job": "A", "commit": "c7", "verdict": "bad"},
                                               {"index": 3, "job": "B", "commit": "c3", "verdict": "good"},
                                               {"index": 5, "job": "C", "commit": "c5", "verdict": "bad"},
                                               {"index": 4, "job": "D", "commit": "c4", "verdict": "bad"},
                                               {"index": 1, "job": "E", "commit": "c1", "verdict": "good"}],
      "result": {"first_bad": {"commit": "c4", "job": "D"}, "candidates": [{"commit": "c4", "job": "D"}],
                 "last_good": "c3"}}, {"A", "B", "D"}),
    # Unreproduced: its try.
    ({"status": "unreproduced", "size": 8, "tries": [{"index": 7, "job": "A"}, {"index": 3, "job": "B"}],
      "result": {"reproduced": False, "try": {"index": 7, "job": "A"}}}, {"A"}),
])
def test_a_bisect_keeps_its_jobs_while_it_runs_and_those_its_answer_cites(bisect: dict, kept: set[str]) -> None:
    from apiary.core.bisect import kept_jobs

    assert kept_jobs(bisect) == kept


def test_a_dotted_projection_is_read_as_mongodb_nests_it() -> None:
    # nx-27017 gives a projected field by its dotted name; the store's reads nest it (queen/store/documents.py),
    # so the rule above sees what it reuses.
    stored = {**job(9, "failed"), "resume.stages": {"t": {"status": "passed", "job": "j6"}}}
    read = nested(dict(stored))
    assert read["resume"] == {"stages": {"t": {"status": "passed", "job": "j6"}}} and "resume.stages" not in read
    assert select_prunable([read, job(7, "failed"), job(6, "failed")], {"keep_jobs": 1}, now=1000 * DAY) == ["j7"]
