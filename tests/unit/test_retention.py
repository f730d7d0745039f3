"""Retention's choice of jobs to prune. Pruning on a real queen, and the CLI: tests/e2e/test_retention.py."""

from __future__ import annotations

import pytest

from apiary.queen.retention import DAY, select_prunable


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
