"""How long a running or queued job has left, from how long the last passing jobs of the same kind took.

The decisions are pure (the first half of this module, table-tested in tests/unit/test_estimate.py); the
second half reads the store and the pool for them and is what the API (``estimate`` on a job and on each job
of a list), the pages and `apiary ls` show.

* **Which earlier jobs.** Passed jobs of the same repository that ran the same stages (`shape`: the stages its
  type runs, less those a partial run reused), of its branch when BASED_ON such are among the last LOOKED_AT
  passed jobs of the repository (else of any branch); the last BASED_ON of them. A job whose stages no passed
  job ran has no estimate: a deploy is not a test run.
* **Expected duration.** Their median (one slow or quick run does not move it much). Seconds from start to end
  (the drone's run, not the queue).
* **A running job**: ``{"expected_s", "elapsed_s", "left_s", "based_on", "basis"}``; ``left_s`` is 0 once it takes
  longer than expected (the page then says "taking longer than usual").
* **A queued job** (or dispatched, not started): ``{"expected_s", "based_on", "basis"}``, and when every slot of
  the pool is taken, ``starts_in_s`` (and ``left_s``: start plus duration, ``ahead``: jobs queued before it):
  the jobs running now free their slots as their estimates say, and the jobs queued before it (oldest first,
  as the dispatcher takes them) take the first slot free, each for its expected duration (`expected_start`).
  Without a basis for every one of those (a job with no estimate, no drones, more than MAX_AHEAD ahead) it says
  nothing of the start. With a slot free it says nothing either: the job goes at once, or waits for something
  no duration tells (a concurrency group, a plugin no drone has).
"""

from __future__ import annotations

import heapq
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypedDict

from aiohttp import web

from apiary.core.protocol import JobStatus
from apiary.core.spread import first_start

from . import keys

BASED_ON = 5  # passing jobs looked at
MIN_BASED_ON = 1  # fewer: no estimate
LOOKED_AT = 20  # a repository's last passed jobs read for them (their stages: a few KiB each)
MAX_AHEAD = 200  # queued jobs ahead of one beyond which its start is not estimated

Shape = tuple[str, ...]


class Estimate(TypedDict, total=False):
    expected_s: float
    elapsed_s: float  # running only
    left_s: float  # running; queued with a start
    based_on: int
    basis: str  # "branch" or "repository": whose passed jobs
    starts_in_s: float  # queued, when the pool is full and every job ahead has an estimate
    ahead: int  # with starts_in_s: the jobs queued before it


class Past(NamedTuple):
    """A passed job, as estimates use it."""

    branch: str | None
    shape: Shape | None
    duration: float


# -- the decisions (pure) ------------------------------------------------------------------------------

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


def shape(job: Mapping[str, Any]) -> Shape | None:
    """The stages `job` runs, sorted: those of its type (TEST the test stages, DEPLOY the deploy stages,
    TEST_DEPLOY both) less those a partial run reuses. None when the job has no pipeline to tell."""
    stages = (job.get("pipeline") or {}).get("stages")
    if not isinstance(stages, list):
        return None
    kind = job.get("type") or "TEST"
    # Reused: a stage another job ran. A spread or sharded job's continuation records the stages its first part
    # and its own child jobs ran in its ``resume`` too; those are its own (its shape does not change when its
    # children end, and a fresh job of the pipeline has the same).
    own = {job.get("_id"), *(c.get("job") for c in job.get("children") or [] if isinstance(c, Mapping))}
    given = ((job.get("resume") or {}).get("stages")) or {}
    reused = {name for name, e in given.items() if not (isinstance(e, Mapping) and e.get("job") in own - {None})}
    names = {str(s.get("name")) for s in stages if isinstance(s, dict)
             and (kind == "TEST_DEPLOY" or bool(s.get("deploy")) == (kind == "DEPLOY"))}
    return tuple(sorted(names - reused))


def durations_for(past: Iterable[Past], branch: str | None, wanted: Shape | None) -> tuple[list[float], str]:
    """The durations an estimate of a job of `branch` running the stages `wanted` is made of, from the
    repository's passed jobs `past` (newest first), and whose they are: the last BASED_ON of the same stages
    on the same branch ("branch") if there are MIN_BASED_ON, else on any branch ("repository")."""
    same = [p for p in past if wanted is None or p.shape is None or p.shape == wanted]
    on_branch = [p.duration for p in same if branch is not None and p.branch == branch][:BASED_ON]
    if len(on_branch) >= MIN_BASED_ON:
        return on_branch, "branch"
    return [p.duration for p in same][:BASED_ON], "repository"


def expected_start(ahead: Sequence[float | None], running_left: Sequence[float | None], slots: int) -> float | None:
    """Seconds until a queued job starts: `slots` slots in the pool, taken by jobs running with
    `running_left` seconds left each, and `ahead` the expected durations of the jobs queued before it, oldest
    first. None when a slot is free now (nothing to wait for that durations tell), when there are no slots,
    or when any of those is unknown (None): no basis, so nothing is said."""
    if slots <= 0 or len(running_left) + len(ahead) < slots or len(ahead) > MAX_AHEAD:
        return None
    if any(x is None for x in running_left) or any(x is None for x in ahead):
        return None
    # Each slot, as the time it frees: the running jobs' ends (the slowest past the slots' count are
    # queued behind them, as if running later), then the jobs ahead, each in the first slot free.
    frees = sorted(max(0.0, float(x)) for x in running_left if x is not None)
    free_at = frees[:slots] + [0.0] * (slots - len(frees[:slots]))
    heapq.heapify(free_at)
    for later in [*frees[slots:], *(float(x) for x in ahead if x is not None)]:
        heapq.heappush(free_at, heapq.heappop(free_at) + max(0.0, later))
    return round(free_at[0], 3)


def queued_estimate(durations: Sequence[float], basis: str, starts_in: float | None, ahead: int) -> Estimate | None:
    """A queued job's estimate (the module's docstring has the shape); None without durations."""
    usable = [float(d) for d in durations if isinstance(d, (int, float)) and d >= 0]
    if len(usable) < MIN_BASED_ON:
        return None
    out: Estimate = {"expected_s": round(statistics.median(usable), 3), "based_on": len(usable), "basis": basis}
    if starts_in is not None:
        out.update(starts_in_s=starts_in, left_s=round(starts_in + out["expected_s"], 3), ahead=ahead)
    return out


def rough(seconds: float) -> str:
    """A wait as people say it: "a few seconds", "25 s", "3 min", "1 h 05 min"."""
    if seconds < 5:
        return "a few seconds"
    if seconds < 60:
        return f"{max(5, round(seconds / 5) * 5)} s"
    if seconds < 3600 - 30:
        return f"{round(seconds / 60)} min"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def said(status: str, est: Mapping[str, Any] | None) -> str:
    """What `apiary ls` and the job lists say of a job's estimate; "" when there is none."""
    if not est:
        return ""
    if status == JobStatus.RUNNING.value and "elapsed_s" in est:
        left = float(est.get("left_s") or 0)
        return f"{_about(left)} left" if left > 0 else "taking longer than usual"
    text = f"takes {_about(float(est['expected_s']))}"
    if est.get("starts_in_s") is not None:
        text += f", starts in {_about(float(est['starts_in_s']))}"
    return text


def _about(seconds: float) -> str:
    said = rough(seconds)
    return said if said.startswith("a few") else f"about {said}"


# -- reading what they need ----------------------------------------------------------------------------

_ON_DRONES = (JobStatus.DISPATCHED.value, JobStatus.RUNNING.value)
_WAITING = JobStatus.QUEUED.value


async def estimates(store: Any, slots: int | None, jobs: Sequence[Mapping[str, Any]], now: float,
                    ) -> dict[str, Estimate]:
    """The estimates of those of `jobs` running, dispatched or queued that have one, by job id. `slots`: the
    pool's slots now (None: not known, no start is estimated). A few indexed reads: the repositories' last
    passed jobs (one read each), and for queued jobs the jobs on drones and the queue's oldest MAX_AHEAD+1."""
    underway = [j for j in jobs if j.get("status") in (*_ON_DRONES, _WAITING)]
    if not underway:
        return {}
    underway = await store.shaped(underway, shape)  # a list has them without their pipelines: kept once known
    in_flight: list[Mapping[str, Any]] = []
    queue: list[Mapping[str, Any]] = []
    if slots and any(j["status"] == _WAITING for j in underway):
        in_flight = await store.estimate_in_flight(shape)
        queue = await store.estimate_queue(MAX_AHEAD + 1, shape)
    # A job's durations are its repository's passed jobs' (jobs that speak for their branch); a child job's
    # (a spread cell, a shard: one part of a run) its repository's passed child jobs'.
    past: dict[tuple[str, bool], list[Past]] = {}
    for repo, child in sorted({(str(j.get("repo")), bool(j.get("parent"))) for j in [*underway, *in_flight, *queue]}):
        past[repo, child] = [Past(p["branch"], p["shape"], p["duration"])
                             for p in await store.recent_passes(repo, LOOKED_AT, shape, children=child)]

    def durations(job: Mapping[str, Any]) -> tuple[list[float], str]:
        return durations_for(past.get((str(job.get("repo")), bool(job.get("parent"))), []),
                             (job.get("ref") or {}).get("branch"), job["shape"])

    def left(job: Mapping[str, Any]) -> float | None:  # a job on a drone: its time left, if known
        found, _ = durations(job)
        if not found:
            return None
        ran = now - _started(job) if job.get("status") == JobStatus.RUNNING.value and job.get("started") \
            else 0.0
        return max(0.0, statistics.median(found) - ran)

    def expected(job: Mapping[str, Any]) -> float | None:
        found, _ = durations(job)
        return statistics.median(found) if found else None

    running_left = [left(j) for j in in_flight]
    order = {str(j["_id"]): n for n, j in enumerate(queue)}
    ahead_expected = [expected(j) for j in queue]
    out: dict[str, Estimate] = {}
    for job in underway:
        found, basis = durations(job)
        if job["status"] == JobStatus.RUNNING.value and job.get("started"):
            est = estimate(found, now - _started(job))
            if est is not None:
                est["basis"] = basis
        else:
            place = order.get(str(job["_id"])) if job["status"] == _WAITING else None
            starts = expected_start(ahead_expected[:place], running_left, slots or 0) if place is not None else None
            est = queued_estimate(found, basis, starts, place or 0)
        if est is not None:
            out[str(job["_id"])] = est
    return out


def _started(job: Mapping[str, Any]) -> float:
    """When a running `job` first started: a spread or sharded job's continuation counts from its first part."""
    return first_start(job) or float(job["started"])


def pool_slots(hive: Any) -> int:
    """The slots of the drones that take jobs now (a stopping drone takes none)."""
    return sum(d.capacity for d in hive.pool.drones.values() if not d.stopping)


async def of_jobs(app: web.Application, jobs: Sequence[Mapping[str, Any]]) -> dict[str, Estimate]:
    """`estimates` of `jobs` now, with the queen's store and pool: what the API's and the pages' job lists show."""
    return await estimates(app[keys.STORE], pool_slots(app[keys.HIVE]), jobs, time.time())


async def of_job(app: web.Application, job: Mapping[str, Any]) -> Estimate | None:
    """`estimates` of one job now, with the queen's store and pool (a job's API answer)."""
    return (await of_jobs(app, [job])).get(str(job.get("_id")))


def shown(views: Iterable[dict[str, Any]], found: Mapping[str, Estimate]) -> None:
    """Put each job view's estimate and what the lists say of it (`said`) on it: ``estimate``, ``estimate_text``."""
    for view in views:
        view["estimate"] = found.get(str(view.get("id")))
        view["estimate_text"] = said(str(view.get("status")), view["estimate"])
