"""A test's history over its branch's last jobs, and whether it is flaky. Pure, no I/O.

`history(runs)` takes one test's results over the last WINDOW jobs of a
repository's branch that sent a test report, newest first, each
``{job, number, commit, status}`` (status as apiary.core.junit gives it), and
says how often it passed and failed and whether it is flaky:

- it passed and failed (or errored) on the same commit: nothing changed but
  the outcome (a re-run, two jobs of one commit), or
- it went from passing to failing or back at least FLIPS times in the window
  (a plain break and its fix are one flip each: two flips are no flake).

Skipped runs count for neither and do not break a run of passes or failures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any

WINDOW = 20  # jobs of the branch looked at
FLIPS = 3  # pass <-> fail changes in the window that make a test flaky
_FAILED = ("failed", "error")


def counted_for(jobs: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Each job id whose test results count in a window of `jobs` (newest first, each ``{_id, family: [child
    job ids]}``) -> the place of the job they count for: a job's own results and its child jobs' (a spread
    cell's, a shard's: one run of the branch). A child an older job made and a re-run reused counts once,
    for the newest."""
    owner: dict[str, int] = {}
    for place, job in enumerate(jobs):
        for job_id in [job["_id"], *(job.get("family") or [])]:
            owner.setdefault(job_id, place)
    return owner


def history(runs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``{passed, failed, skipped, flips, flaky, why}`` of one test's `runs` (newest first); `why` is a
    sentence for people when flaky, else ''."""
    runs = list(runs)
    passed = sum(1 for r in runs if r.get("status") == "passed")
    failed = sum(1 for r in runs if r.get("status") in _FAILED)
    skipped = len(runs) - passed - failed
    outcomes = [r.get("status") == "passed" for r in runs if r.get("status") == "passed" or
                r.get("status") in _FAILED]
    flips = sum(1 for a, b in pairwise(outcomes) if a != b)
    by_commit: dict[str, set[bool]] = {}
    for r in runs:
        if r.get("commit") and (r.get("status") == "passed" or r.get("status") in _FAILED):
            by_commit.setdefault(str(r["commit"]), set()).add(r.get("status") == "passed")
    both = [c for c, seen in by_commit.items() if len(seen) == 2]
    why = ""
    if both:
        why = f"passed and failed on the same commit {both[0][:12]}"
    elif flips >= FLIPS:
        why = f"changed between passing and failing {flips} times in the last {len(runs)} jobs"
    return {"passed": passed, "failed": failed, "skipped": skipped, "flips": flips, "flaky": bool(why), "why": why}
