"""How long a running job has left, from how long the last passing jobs of its repository took.

`estimate` is the decision, pure: the expected duration is the median of the last passing jobs'
(a median, so one slow or quick run does not move it much). `job_estimate` asks the store for those
durations (the same branch's last BASED_ON, else the repository's) and is what the API's
``GET /api/v1/jobs/{id}`` and the job page's summary show while a job runs::

    {"expected_s": 52.0, "elapsed_s": 12.3, "left_s": 39.7, "based_on": 5}

``left_s`` is 0 once the job takes longer than expected (the page then says "taking longer than
usual"). Durations are seconds, from the job's start to its end (the drone's run, not the queue).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from apiary.core.protocol import JobStatus

BASED_ON = 5  # passing jobs looked at
MIN_BASED_ON = 1  # fewer: no estimate


class Estimate(TypedDict):
    expected_s: float
    elapsed_s: float
    left_s: float
    based_on: int


def estimate(durations: Sequence[float], elapsed: float) -> Estimate | None:
    """The estimate for a job running for `elapsed` seconds, from earlier passing jobs' `durations`
    (seconds; negative or missing ones ignored); None when there are fewer than MIN_BASED_ON."""
    usable = [float(d) for d in durations if isinstance(d, (int, float)) and d >= 0]
    if len(usable) < MIN_BASED_ON:
        return None
    expected = statistics.median(usable)
    elapsed = max(0.0, elapsed)
    return {"expected_s": round(expected, 3), "elapsed_s": round(elapsed, 3),
            "left_s": round(max(0.0, expected - elapsed), 3), "based_on": len(usable)}


async def job_estimate(store: Any, job: Mapping[str, Any], now: float) -> Estimate | None:
    """The estimate of `job` if it is running (None otherwise): from its branch's last passing jobs,
    else its repository's. One or two indexed store reads of a few fields each."""
    if job.get("status") != JobStatus.RUNNING.value or not job.get("started"):
        return None
    branch = (job.get("ref") or {}).get("branch")
    durations: list[float] = []
    if branch:
        durations = await store.passing_durations(job["repo"], branch, BASED_ON)
    if len(durations) < MIN_BASED_ON:
        durations = await store.passing_durations(job["repo"], None, BASED_ON)
    return estimate(durations, now - float(job["started"]))
