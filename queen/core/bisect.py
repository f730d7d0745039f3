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
failed), good when it passed (that stage passed), skip when it could not tell (errored, cancelled, failed
only because a child job of it, a shard or a spread cell, was cancelled or errored: `untold`; the stage
did not run or does not exist at that commit). A try whose commit fell out of the range before its
job ended is ``unneeded`` (cancelled: not a skip, which says the commit could not be tested); one whose
job ended by itself all the same keeps what it said, flagged ``unneeded``, and the search ignores it.

`left_out(stages)` is the one rule for the stages a bisect's jobs never run: deploy stages (an old
commit deployed is harm, not evidence), stages behind an approval gate (nobody should be asked to
release an old commit, and a gate would hold every job of the bisect), and every stage that needs one
of them, however far down; `bisect_pipeline` is a commit's pipeline without them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import BadRequest

MAX_COMMITS = 10_000  # commits between good and bad a bisect may cover
MAX_SLOTS = 8  # cut points a round runs at once, at most, however many drone slots are free (+ the bad end)
STAGE_MAX = 128  # characters of a stage name
MAX_CITED = 50  # candidates an answer cites with their jobs (apiary.queen.bisects shows at most 50)

GOOD, BAD, SKIP = "good", "bad", "skip"
UNNEEDED = "unneeded"  # its commit fell out of the range while its job ran: cancelled, says nothing of the commit


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


def written(stage: Mapping[str, Any]) -> str:
    """The name a user wrote for a compiled stage: a matrix cell's group, a shard's or a test listing's
    stage (apiary.core.shards), else its own name."""
    group = (stage.get("matrix") or {}).get("group")
    shards = stage.get("shards") or {}
    return str(group or shards.get("of") or shards.get("lists") or stage.get("name"))


def stage_named(stages: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    """The stages called `name`: the stage itself, a matrix's cells, or a sharded stage's listing and shards."""
    return [s for s in stages if s.get("name") == name or written(s) == name]


def left_out(stages: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The stages (compiled names) a bisect's jobs never run, each with why (module docstring). A stage as
    written goes as one: all its cells, or its listing and all its shards."""
    why: dict[str, str] = {}  # written name -> why
    for s in stages:
        if s.get("deploy"):
            why.setdefault(written(s), "a deploy stage, which a bisect's jobs never run: an old commit deployed "
                                       "is harm, not evidence")
        elif s.get("approval"):
            why.setdefault(written(s), "behind an approval gate, which a bisect's jobs never run: nobody should be "
                                       "asked to release an old commit, and the gate would hold every job")
    of = {str(s.get("name")): written(s) for s in stages}
    for _ in stages:  # one step further down every chain a pass; needs may point forward
        grown = False
        for s in stages:
            name = written(s)
            gone = next((of.get(n, n) for n in s.get("needs") or [] if of.get(n, n) in why), None)
            if name not in why and gone is not None:
                why[name] = f"needs {gone}, which a bisect's jobs never run"
                grown = True
        if not grown:
            break
    return {str(s.get("name")): why[written(s)] for s in stages if written(s) in why}


def bisect_pipeline(pipeline: Mapping[str, Any]) -> dict[str, Any]:
    """`pipeline` (compiled) as a bisect's job runs it: without the stages `left_out` names. BadRequest
    (field ``stages``) when no stage is left."""
    stages = list(pipeline.get("stages") or [])
    out = left_out(stages)
    kept = [s for s in stages if s.get("name") not in out]
    if not kept:
        raise BadRequest("stages: no stage a bisect may run: each is a deploy stage, behind an approval gate, "
                         "or needs one", field="stages")
    return {**pipeline, "stages": kept}


def stage_problem(stages: Sequence[Mapping[str, Any]], name: str) -> str | None:
    """Why `name` cannot be a bisect's stage (None: it can): `stages` the pipeline's (compiled). A stage
    its jobs never run (`left_out`) would make every commit a skip."""
    out = left_out(stages)
    named = stage_named(stages, name)
    shard = next((s for s in named if s.get("name") == name and s.get("shards") and written(s) != name), None)
    if shard is not None:  # "test (shard 1 of 2)", "test · list": copied from a failure's words
        return (f"{name} is a part of stage {written(shard)}: bisect the stage {written(shard)} (the name written "
                "in the pipeline); a shard's split changes from commit to commit, so a shard cannot be bisected alone")
    if named and not any(s.get("name") in out for s in named):
        return None
    if named:
        why = out[str(named[0].get("name"))]
        return f"{name} {'' if why.startswith('needs') else 'is '}{why}; bisect a test stage before it"
    names = list(dict.fromkeys(written(s) for s in stages if s.get("name") not in out))
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
    child = untold(job, stage)
    if child is not None:
        return SKIP, child
    if stage is None:
        return (GOOD, "the job passed") if status == "passed" else (BAD, "the job failed")
    # The outcome's stages are compiled names: a sharded stage's are its listing's and its shards'.
    names = {str(s.get("name")) for s in stage_named((job.get("pipeline") or {}).get("stages") or [], stage)}
    named = [s for s in stages if s.get("name") in names or stage_named([s], stage)]
    if not named:
        return SKIP, f"no stage {stage!r} in the pipeline at this commit"
    if any(s.get("status") == "failed" for s in named):
        return BAD, f"stage {stage} failed"
    if all(s.get("status") in ("passed", "reused") for s in named):
        return GOOD, f"stage {stage} passed"
    shown = sorted({str(s.get("status")) for s in named if s.get("status") not in ("passed", "reused")})
    return SKIP, f"stage {stage} did not run to an end ({', '.join(shown)})"


def untold(job: Mapping[str, Any], stage: str | None) -> str | None:
    """Why a failed `job` says nothing of its commit (None: it does): it failed only because one of its child
    jobs (a shard, a spread cell: ``failed_child``, apiary.core.spread.fold) was cancelled or errored, not
    failed, so the job is as untested as a cancelled one. With a `stage`, only a child running that stage."""
    child = job.get("failed_child") if job.get("status") == "failed" else None
    if not isinstance(child, Mapping) or child.get("status") not in ("cancelled", "errored"):
        return None
    if stage is not None:
        ran = {str(s.get("name")) for s in (job.get("pipeline") or {}).get("stages") or []
               if isinstance(s.get("remote"), Mapping) and s["remote"].get("unit") == child.get("unit")}
        names = {str(s.get("name")) for s in stage_named((job.get("pipeline") or {}).get("stages") or [], stage)}
        if not ran & names:
            return None
    how = "was cancelled" if child.get("status") == "cancelled" else "errored"
    return f"its child job #{child.get('number')} ({child.get('unit')}) {how}, so the job could not tell"


def kept_jobs(doc: Mapping[str, Any]) -> set[str]:
    """The job ids retention keeps for bisect `doc` (apiary.queen.retention): every try's while it runs (its
    rounds and the bad end's reproduction are its evidence); once ended, the jobs its answer cites, at most
    MAX_CITED + 2: the candidates' (the first bad commit's), the last good commit's and the bad end's, or
    an unreproduced one's try. The other tries of an ended bisect may go (its page says ``pruned``)."""
    tries = [t for t in doc.get("tries") or [] if isinstance(t, Mapping) and isinstance(t.get("job"), str)]
    if doc.get("status") == "running":
        return {t["job"] for t in tries}
    found = doc.get("result") or {}
    cited = [c for c in (found.get("candidates") or [])[:MAX_CITED] if isinstance(c, Mapping)]
    cited += [found.get("first_bad") or {}, found.get("try") or {}]
    out = {str(c["job"]) for c in cited if isinstance(c, Mapping) and isinstance(c.get("job"), str)}
    end = int(doc.get("size") or 0) - 1
    out |= {t["job"] for t in tries if t.get("index") == end or
            (t.get("commit") == found.get("last_good") and t.get("verdict") == GOOD)}
    return out


def rerun_by(bisect_by: Mapping[str, Any], rerun: Mapping[str, Any]) -> dict[str, Any]:
    """``triggered_by`` of a re-run of a bisect's job (`bisect_by`, its own; `rerun`, a re-run's as
    apiary.core.context.triggered_by gives it): still the bisect's kind, so it runs the same trimmed
    pipeline (`bisect_pipeline`: no deploy stage, no gate at an old commit) and does not speak for its
    branch (apiary.core.branchjobs: no badge, history or estimate), with who re-ran which job. It is not
    one of the bisect's tries: its verdict changes nothing."""
    return {**{k: bisect_by[k] for k in ("kind", "name", "bisect") if k in bisect_by},
            **{k: v for k, v in rerun.items() if k != "kind"}, "name": bisect_by.get("name"),
            "user": rerun.get("name")}


def check_stage(value: Any) -> str | None:
    """A request's ``stage``: None, or a stage name (at most STAGE_MAX characters, printable)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > STAGE_MAX or not value.isprintable():
        raise BadRequest(f"stage: a stage name of at most {STAGE_MAX} printable characters", field="stage")
    return value
