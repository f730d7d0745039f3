"""apiary.core.testhistory: a test's passes and failures over its branch's last jobs, and when it is flaky."""

from __future__ import annotations

import pytest

from apiary.core.testhistory import counted_for, history


def _runs(spec: str) -> list[dict[str, str]]:
    """'P@a F@a S@b' newest first: P passed, F failed, E error, S skipped, @ the commit."""
    names = {"P": "passed", "F": "failed", "E": "error", "S": "skipped"}
    return [{"status": names[item[0]], "commit": item.split("@")[1]} for item in spec.split()]


@pytest.mark.parametrize(("spec", "counts", "flaky", "why"), [
    ("", (0, 0, 0, 0), False, ""),
    ("P@a P@b P@c", (3, 0, 0, 0), False, ""),
    ("F@a F@b F@c", (0, 3, 0, 0), False, ""),
    # broken, then fixed: one flip each way is no flake
    ("P@c F@b P@a", (2, 1, 0, 2), False, ""),
    ("P@d F@c F@b P@a", (2, 2, 0, 2), False, ""),
    # the same commit passed and failed (a re-run): flaky at once
    ("P@a F@a", (1, 1, 0, 1), True, "passed and failed on the same commit a"),
    ("E@a P@b P@a", (2, 1, 0, 1), True, "passed and failed on the same commit a"),
    # three flips in the window
    ("P@d F@c P@b F@a", (2, 2, 0, 3), True, "changed between passing and failing 3 times in the last 4 jobs"),
    # skipped runs count for neither and break no run
    ("P@d S@c F@b S@a", (1, 1, 2, 1), False, ""),
    ("S@a S@a P@a", (1, 0, 2, 0), False, ""),
    ("P@e S@d F@c S@b P@a F@z", (2, 2, 2, 3), True, "changed between passing and failing 3 times in the last 6 jobs"),
])
def test_history_counts_and_the_flaky_decision(spec: str, counts: tuple[int, int, int, int], flaky: bool,
                                               why: str) -> None:
    got = history(_runs(spec) if spec else [])
    assert (got["passed"], got["failed"], got["skipped"], got["flips"]) == counts
    assert (got["flaky"], got["why"]) == (flaky, why)


def test_a_long_commit_is_named_by_its_first_twelve_characters() -> None:
    runs = [{"status": "passed", "commit": "ab" * 20}, {"status": "failed", "commit": "ab" * 20}]
    assert history(runs)["why"] == "passed and failed on the same commit abababababab"


def test_a_jobs_child_jobs_results_count_for_it_once() -> None:
    # Newest first: a re-run (j3) reusing a shard of j2 (s1); j2's own results and its shards'; a plain job.
    jobs = [{"_id": "j3", "family": ["s1", "s3"]}, {"_id": "j2", "family": ["s1", "s2"]}, {"_id": "j1"}]
    assert counted_for(jobs) == {"j3": 0, "s1": 0, "s3": 0, "j2": 1, "s2": 1, "j1": 2}
    assert counted_for([]) == {}
