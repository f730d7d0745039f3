"""Bisect across drones: which commits to run next, what a job's end says of its commit, when it is done.
Pure, no I/O: apiary.queen.bisects carries it out (git, jobs, the store).

The search runs over a line of commits, oldest first, ending with the bad one (index n-1); the good
commit is just before index 0 (index -1, known good). They are `git rev-list --first-parent BAD ^GOOD`
reversed (`commit_line`): first-parent history, as ``git bisect --first-parent``, so every commit
tried is a state the branch was in (a merge is one step: the merge that broke it is the answer, not a
commit inside a merged branch that may never have built on its own), and the line is a line, which a
k-way split needs.

A search is its tries: ``[{"index": i, "verdict": None (running) | "good" | "bad" | "skip", ...}]``.
`decide(n, tries, k)` says what to do now:

* the bad end (index n-1) is never taken on trust: the first round runs it too, alongside its cut
  points, with the bisect's own settings; a verdict there other than bad ends the search at once,
  unreproduced (``{"reproduced": False}``: whatever else it found would be an answer to a question
  nobody asked). Until its job ends the search may go on, but it is never done. The good end is
  assumed good, as ``git bisect`` assumes it (the answer says so);
* the range: ``hi`` the lowest bad index (n-1 at first), ``lo`` the highest good index below it (-1);
  the first bad commit is one of lo+1..hi;
* while a try inside the range runs, wait (a round ends when its jobs have ended); tries outside it no
  longer matter: cancel them (not the bad end's: its verdict is needed whatever the range);
* the untested commits strictly inside the range (neither tried nor skipped): none left, it is done
  once the bad end is bad: the first bad commit is hi if lo+1 == hi, else one of lo+1..hi (the ones
  between were skipped, as ``git bisect skip`` leaves them: a range, said as such);
* else a round: k split points over the untested commits (k+1 parts of about equal size; all of
  them if k or fewer are left), so skipped commits are gone around (the first round runs the bad end
  too: one job more than the free slots; it is not inside the range, so no round waits for it).

`verdict(job, stage, stages)` reads a finished job: bad when it failed (with a stage: when that stage
failed), good when it passed (that stage passed), skip when it could not tell (errored, cancelled, the
stage did not run or does not exist at that commit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import BadRequest

MAX_COMMITS = 10_000  # commits between good and bad a bisect may cover
MAX_SLOTS = 8  # cut points a round runs at once, at most, however many drone slots are free (+ the bad end)
STAGE_MAX = 128  # characters of a stage name

GOOD, BAD, SKIP = "good", "bad", "skip"


@dataclass(frozen=True)
class Step:
    """What to do now: start jobs at `run` (indices), cancel the jobs at `cancel`; or, `done`, the `result`."""

    run: tuple[int, ...] = ()
    cancel: tuple[int, ...] = ()
    done: bool = False
    result: dict[str, Any] | None = field(default=None)


def commit_line(listed: Sequence[str], good: str, bad: str, *, ancestor: bool, limit: int = MAX_COMMITS) -> list[str]:
    """The commits to search, oldest first, ending with `bad`: `listed` is ``git rev-list --first-parent
    --max-count=LIMIT+1 BAD ^GOOD`` (newest first); `ancestor`: whether `good` is an ancestor of `bad`
    (``git merge-base --is-ancestor``). BadRequest naming ``good`` or ``bad`` when there is nothing to search."""
    if good == bad:
        raise BadRequest(f"good: {good[:12]} is the bad commit itself; give a commit before it that passed",
                         field="good")
    if not ancestor:
        raise BadRequest(f"good: {good[:12]} is not an ancestor of {bad[:12]}: bisect looks for the first bad "
                         "commit after a good one, on the bad commit's history", field="good")
    if len(listed) > limit:
        raise BadRequest(f"bad: more than {limit} commits between {good[:12]} and {bad[:12]} "
                         f"(first-parent history); give a good commit closer to the bad one", field="bad")
    if not listed or listed[0] != bad:
        raise BadRequest(f"good: {bad[:12]} has no commit after {good[:12]} on its first-parent history",
                         field="good")
    return list(reversed(listed))


def _range(n: int, verdicts: Mapping[int, str]) -> tuple[int, int]:
    hi = min([i for i, v in verdicts.items() if v == BAD and 0 <= i < n] + [n - 1])
    lo = max([i for i, v in verdicts.items() if v == GOOD and i < hi] + [-1])
    return lo, hi


def split(untested: Sequence[int], k: int) -> tuple[int, ...]:
    """`k` commits of `untested` (indices, ascending) that cut it into k+1 parts of about equal size."""
    m = len(untested)
    if m <= k:
        return tuple(untested)
    picks = sorted({untested[min(m - 1, max(0, j * (m + 1) // (k + 1) - 1))] for j in range(1, k + 1)})
    return tuple(picks)


def decide(n: int, tries: Sequence[Mapping[str, Any]], k: int) -> Step:
    """What to do next over a line of `n` commits (the last one bad) given `tries` (index, verdict: None
    while its job runs) and `k` free drone slots (clamped to 1..MAX_SLOTS)."""
    if n < 1:
        raise ValueError("a bisect needs at least the bad commit")
    k = max(1, min(MAX_SLOTS, k))
    end = n - 1
    verdicts = {int(t["index"]): str(t["verdict"]) for t in tries if t.get("verdict")}
    pending = sorted({int(t["index"]) for t in tries if not t.get("verdict")})
    if end in verdicts and verdicts[end] != BAD:  # the failure asked about did not happen at bad
        return Step(cancel=tuple(pending), done=True, result={"reproduced": False, "index": end})
    lo, hi = _range(n, verdicts)
    inside = [i for i in pending if lo < i < hi]
    cancel = tuple(i for i in pending if not lo < i < hi and i != end)
    if inside:
        return Step(cancel=cancel)
    run: tuple[int, ...] = ()
    if end not in verdicts and end not in pending:  # the first round: the bad end too
        run = (end,)
    untested = [i for i in range(lo + 1, hi) if i not in verdicts]
    if untested:
        run = split(untested, k) + run
    if run:
        return Step(run=run, cancel=cancel)
    if end in pending:  # the range is searched; the answer waits for the bad end's verdict
        return Step(cancel=cancel)
    return Step(cancel=cancel, done=True, result=result(lo, hi))


def result(lo: int, hi: int) -> dict[str, Any]:
    """The answer over indices: ``{"reproduced": True, "first_bad": hi or None, "candidates": [lo+1..hi],
    "last_good": lo}`` (``first_bad`` None: one of the candidates is, the others between were skipped;
    ``last_good`` -1: the good end, assumed good, not tried)."""
    candidates = list(range(lo + 1, hi + 1))
    return {"reproduced": True, "first_bad": hi if len(candidates) == 1 else None, "candidates": candidates,
            "last_good": lo}


def stage_named(stages: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    """The stages called `name`: the stage itself, or a matrix's cells of that name."""
    return [s for s in stages if s.get("name") == name or (s.get("matrix") or {}).get("group") == name]


def stage_problem(stages: Sequence[Mapping[str, Any]], runnable: Sequence[Mapping[str, Any]], name: str) -> str | None:
    """Why `name` cannot be a bisect's stage (None: it can): `stages` the pipeline's, `runnable` those its
    jobs run (apiary.core.stages.runnable_stages for the bisect's job type). A stage its jobs never run
    would make every commit a skip."""
    if stage_named(runnable, name):
        return None
    if stage_named(stages, name):
        return (f"{name} is a deploy stage (deploy: true), which a bisect's jobs (TEST) never run; "
                "bisect a test stage")
    names = sorted({str((s.get("matrix") or {}).get("group") or s.get("name")) for s in runnable})
    return f"no stage {name!r} in the pipeline (its stages: {', '.join(names)[:500]})"


def verdict(job: Mapping[str, Any], stage: str | None, stages: Sequence[Mapping[str, Any]] = ()) -> tuple[str, str]:
    """(good | bad | skip, why) of a finished job; `stages`: its outcome's (apiary.core.outcome), needed
    with a `stage` only."""
    status = str(job.get("status") or "")
    if status in ("errored", "cancelled"):
        error = str(job.get("error") or "").split("\n", 1)[0][:200]
        return SKIP, f"the job {status}" + (f": {error}" if error else "")
    if status not in ("passed", "failed"):
        return SKIP, f"the job ended {status or 'unknown'}"
    if stage is None:
        return (GOOD, "the job passed") if status == "passed" else (BAD, "the job failed")
    named = stage_named(stages, stage)
    if not named:
        return SKIP, f"no stage {stage!r} in the pipeline at this commit"
    if any(s.get("status") == "failed" for s in named):
        return BAD, f"stage {stage} failed"
    if all(s.get("status") in ("passed", "reused") for s in named):
        return GOOD, f"stage {stage} passed"
    shown = sorted({str(s.get("status")) for s in named if s.get("status") not in ("passed", "reused")})
    return SKIP, f"stage {stage} did not run to an end ({', '.join(shown)})"


def check_stage(value: Any) -> str | None:
    """A request's ``stage``: None, or a stage name (at most STAGE_MAX characters, printable)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > STAGE_MAX or not value.isprintable():
        raise BadRequest(f"stage: a stage name of at most {STAGE_MAX} printable characters", field="stage")
    return value
