"""Retention's choice of jobs to prune. Pruning on a real queen, and the CLI: tests/e2e/test_retention.py."""

from __future__ import annotations

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
