"""Remote stages: stages a job runs as child jobs, each on a drone slot of its own. Pure, no I/O.

A compiled stage may carry ``remote: {"kind": KIND, "unit": LABEL}``: a ``spread: true`` matrix's cells
(kind ``spread``; a stage matrix's cell is a unit of one stage, a job-level matrix's cell a unit of
every stage of that cell) and test shards (kind ``shard``, issue 18) are written so. Stages sharing a
unit run together in one child job. The job that has them (the *parent*) runs everything else it can,
then ends its attempt ``waiting`` (apiary.core.jobstate) holding no drone; the queen (apiary.queen.spread)
makes a child job per unit that may start (`ready`), and once every child has ended folds their results
into the parent (`fold`): all passed, the parent is queued again as a continuation (a partial run,
apiary.core.partial) that reuses the units' stages as passed in their children and restores their
artifacts; one failed, cancelled or errored, the parent fails naming the cell and its child.

Shapes:

* a parent's ``children``: ``[{"unit": LABEL, "job": id, "number": n, "status": the child's, "wave": the
  parent's attempt that made it}]`` (oldest first);
* a child's ``parent``: ``{"id", "number", "unit", "wave"}``; its ``resume``: ``{"from_job": parent id,
  "stages": {}, "artifacts_of": [...], "unit": LABEL, "given": [{"name", "text"}]}`` (the files the
  queen gives it, written into its workspace after the checkout, as restored artifacts are).

`held` and `child_stages` are the drone's; the rest the queen's.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .matrix import is_cell
from .shards import is_shard, listing_name

KINDS = ("spread", "shard")
MAX_CHILDREN = 256  # children one parent may have over its whole life (a matrix has at most 256 cells)
MAX_UNIT = 200  # characters of a unit's label
MAX_ENV = 64  # variables the queen gives one child
MAX_ENV_VALUE = 4096  # characters of one of them
MAX_GIVEN_FILES = 16  # files the queen gives one child
MAX_GIVEN_BYTES = 1024 * 1024  # bytes of them, together (they travel in its queue:new)
FINAL = ("passed", "failed", "errored", "cancelled")
# Seconds a child's own timeout runs past its parent's: the parent's timeout (the queen's timer, or its sweep
# every few seconds) ends the family first and cancels the children saying so; theirs is the backstop for
# a queen that cannot act. With the same timeout, a child that started at once would time out on its own
# a few milliseconds before its parent did, and say so as if it were its own fault.
CHILD_TIMEOUT_GRACE = 30.0
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REMOTE_KEYS = {"kind", "unit"}


class SpreadError(InputError):
    """A remote stage, or a request for child jobs, that cannot be; `path` names the field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}", field=path)
        self.path, self.problem = path, problem


# -- the pipeline ---------------------------------------------------------------------------------


def compile_remote(value: Any, at: str, stage: Mapping[str, Any] | None = None) -> dict[str, str] | None:
    """A compiled stage's ``remote`` (as the matrix expansion or the shards' wrote it) checked: ``{kind, unit}``;
    None if absent. With `stage` (the stage it is on, as compiled so far), refused unless it is what the
    compiler writes on such a stage (`made`): a pipeline as written has no ``remote`` (a job would wait for
    child jobs nobody makes)."""
    if value is None:
        return None
    if stage is not None and not made(stage):
        raise SpreadError(at, "is not a key of a pipeline: Apiary writes it on each cell of a matrix with "
                              "'spread: true' and on each shard of a stage with 'shards:'")
    if not isinstance(value, Mapping) or set(value) - _REMOTE_KEYS or not {"kind", "unit"} <= set(value):
        raise SpreadError(at, "is written by the compiler (spread: true on a matrix, shards:), as {kind, unit}")
    if value["kind"] not in KINDS:
        raise SpreadError(f"{at}.kind", f"must be one of {', '.join(KINDS)}, got {value['kind']!r}")
    unit = value["unit"]
    if not isinstance(unit, str) or not unit or len(unit) > MAX_UNIT or any(ord(c) < 32 for c in unit):
        raise SpreadError(f"{at}.unit", f"must be one line of at most {MAX_UNIT} characters")
    return {"kind": value["kind"], "unit": unit}


def made(stage: Mapping[str, Any]) -> bool:
    """Whether `stage`'s ``remote`` is the one the compiler writes: a matrix cell's ``{kind: spread, unit: its
    name}`` (a job-level matrix's: its values, joined by ', '), a shard's ``{kind: shard, unit: its name}``."""
    remote = stage.get("remote")
    if not isinstance(remote, Mapping):
        return False
    if remote.get("kind") == "spread" and is_cell(stage):
        return remote.get("unit") in (stage["name"], ", ".join(stage["matrix"]["values"].values()))
    return remote.get("kind") == "shard" and is_shard(stage) and remote.get("unit") == stage["name"]


def check(stages: Sequence[Mapping[str, Any]]) -> None:
    """Refuse what remote stages cannot go with: an approval gate in the same pipeline (both would hold the one
    ``waiting`` state, with different ways out of it). Raises SpreadError naming the gate's stage."""
    if not any(s.get("remote") for s in stages):
        return
    names = {s.get("name"): s for s in stages}
    for i, stage in enumerate(stages):
        remote = stage.get("remote") or {}
        if remote.get("kind") == "shard":  # a shard comes with the listing stage that makes its list, as shards: writes
            of = str((stage.get("shards") or {}).get("of"))
            listing = names.get(listing_name(of)) or {}
            if listing.get("shards") != {"lists": of} or listing_name(of) not in (stage.get("needs") or []):
                raise SpreadError(f"stages[{i}].remote", "is not a key of a pipeline: Apiary writes it on each "
                                                         "shard of a stage with 'shards:'")
    for i, stage in enumerate(stages):
        if stage.get("approval"):
            raise SpreadError(f"stages[{i}].approval", "a pipeline with spread (or sharded) stages takes no "
                                                       "approval gate: use a pipeline of its own for the release")


def units(stages: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Unit label -> the names of its stages, in pipeline order."""
    out: dict[str, list[str]] = {}
    for stage in stages:
        remote = stage.get("remote")
        if isinstance(remote, Mapping) and isinstance(remote.get("unit"), str):
            out.setdefault(remote["unit"], []).append(stage["name"])
    return out


def _decided(resume: Mapping[str, Any] | None) -> set[str]:
    """The stages a partial run's ``resume`` says passed elsewhere."""
    given = (resume or {}).get("stages") or {}
    return {n for n, e in given.items() if isinstance(e, Mapping) and e.get("status") == "passed"}


def held(stages: Sequence[Mapping[str, Any]], resume: Mapping[str, Any] | None,
         skipped: Sequence[str] = ()) -> set[str]:
    """What the parent's drone must not run (one phase's `stages`): the remote stages its ``resume`` does not
    say passed elsewhere (nor a ``when:`` skips: `skipped`), and every stage needing one, directly or not.
    A child's own stages are never held (its pipeline has no ``remote``)."""
    done = _decided(resume) | set(skipped)
    out = {s["name"] for s in stages if s.get("remote") and s["name"] not in done}
    for _ in stages:  # one step further down every chain per round
        more = {s["name"] for s in stages if any(n in out for n in s.get("needs") or [])} - out
        if not more:
            break
        out |= more
    return out


def waiting_lines(stages: Sequence[Mapping[str, Any]], hold: set[str],
                  resume: Mapping[str, Any] | None = None) -> list[str]:
    """The drone's lines for the remote stages it leaves to child jobs: ``apiary: stage NAME runs as a job of
    its own`` (only those whose needs are all met here: the others wait for them). A re-run from the failed
    stage (`resume`) that reuses a shard's listing runs the shard again with the list it had, not a new split."""
    given = (resume or {}).get("stages") or {}

    def line(s: Mapping[str, Any]) -> str:
        if s["remote"]["kind"] != "shard":
            return f"apiary: stage {s['name']} runs as a job of its own ({s['remote']['kind']})"
        kept = given.get(listing_name(str((s.get("shards") or {}).get("of"))))
        if isinstance(kept, Mapping) and kept.get("status") == "passed":
            return (f"apiary: stage {s['name']} is to run again as a job of its own (shard), with the list it had "
                    f"in job #{kept.get('number')}")
        # its list may yet be refused: said as what is to come
        return f"apiary: stage {s['name']} is to run as a job of its own (shard) once the queen has split the test list"
    return [line(s) for s in stages
            if s.get("remote") and s["name"] in hold and not any(n in hold for n in s.get("needs") or [])]


def child_stages(job: Mapping[str, Any], stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A child job runs its pipeline's stages only: the stages plugins add are the parent's (run there once)."""
    if not (job.get("resume") or {}).get("unit"):
        return stages
    names = {s["name"] for s in (job.get("pipeline") or {}).get("stages") or []}
    return [s for s in stages if s["name"] in names]


def here(pipeline: Any) -> Any:
    """`pipeline` run where there is no pool (``apiary run``): its remote stages as plain stages, in one workspace."""
    stages = pipeline.get("stages") or []
    if not any(s.get("remote") for s in stages):
        return pipeline
    return {**pipeline, "stages": [{k: v for k, v in s.items() if k != "remote"} for s in stages]}


def can_wait(job: Mapping[str, Any]) -> bool:
    """Whether `job` (pipeline, type, resume, conditions) has remote stages not yet decided: the queen's word that
    a drone's ``waiting`` is believed (as apiary.core.approvals.can_wait is for gates)."""
    from .conditions import skipped  # (conditions imports much of the core; only needed here)
    from .stages import runnable_stages
    pipeline = job.get("pipeline")
    if not isinstance(pipeline, Mapping) or not pipeline.get("stages") or job.get("parent"):
        return False
    try:
        stages = runnable_stages(pipeline, job.get("type") or "TEST")  # type: ignore[arg-type]
    except (InputError, KeyError, TypeError):
        return False
    return bool({s["name"] for s in stages if s.get("remote")} & held(stages, job.get("resume"),
                                                                       list(skipped(job.get("conditions") or [])[0])))


# -- the children -------------------------------------------------------------------------------------


def ready(job: Mapping[str, Any], outcome: Mapping[str, Any]) -> list[str]:
    """The units whose child jobs may start now: none of their stages decided or skipped, and every stage they
    need outside the unit passed (or reused, or skipped by a ``when:``) in `outcome` (the parent's,
    apiary.core.outcome.job_outcome, after it stopped to wait). In pipeline order."""
    by_name = {s.get("name"): s for s in outcome.get("stages") or []}
    ok = {n for n, s in by_name.items() if s.get("status") in ("passed", "reused", "skipped")}
    from .stages import runnable_stages
    stages = runnable_stages(job["pipeline"], job.get("type") or "TEST")
    decided = _decided(job.get("resume"))
    made = {c.get("unit") for c in job.get("children") or [] if c.get("wave") == job.get("attempts")}
    out = []
    for unit, names in units(stages).items():
        if unit in made or any(n in decided or (by_name.get(n) or {}).get("status") == "skipped" for n in names):
            continue
        needs = {n for s in stages if s["name"] in names for n in s.get("needs") or []} - set(names)
        if all(n in ok for n in needs):
            out.append(unit)
    return out


def child_pipeline(pipeline: Mapping[str, Any], job_type: str, unit: str,
                   env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The pipeline of the child running `unit`: the unit's stages only (their ``remote`` and needs outside the
    unit dropped, `env` over each one's own), the parent's phases, env, artifacts, caches, reports and plugins;
    no job hooks (the parent's: they run once, in the parent) and no ``concurrency`` (a child never waits
    behind its own parent's group). Stages of the job's other phase are left out (a child is one phase)."""
    from .stages import runnable_stages
    names = set(units(runnable_stages(pipeline, job_type)).get(unit) or [])  # type: ignore[arg-type]
    stages = []
    for stage in pipeline.get("stages") or []:
        if stage["name"] not in names:
            continue
        own = {k: v for k, v in stage.items() if k != "remote"}
        own["needs"] = [n for n in stage.get("needs") or [] if n in names]
        own["env"] = {**(stage.get("env") or {}), **dict(env or {})}
        stages.append(own)
    out = {k: v for k, v in pipeline.items() if k not in ("stages", "hooks", "concurrency")}
    timeout = out.get("timeout")
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
        out["timeout"] = float(timeout) + CHILD_TIMEOUT_GRACE  # the parent's counts (`overdue`)
    out["hooks"] = {"on_start": [], "on_success": [], "on_failure": []}
    out["stages"] = stages
    return out


def check_given(env: Any, files: Any, at: str = "children") -> tuple[dict[str, str], list[dict[str, str]]]:
    """What the queen gives one child, checked and bounded: `env` (name -> text, at most MAX_ENV, names as
    environment variables) and `files` ([{name, text}]: workspace-relative POSIX names, no ``..``, at most
    MAX_GIVEN_FILES and MAX_GIVEN_BYTES together). Raises SpreadError naming the field."""
    env = dict(env or {})
    if len(env) > MAX_ENV:
        raise SpreadError(f"{at}.env", f"at most {MAX_ENV} variables, got {len(env)}")
    for name, value in env.items():
        if not isinstance(name, str) or not _VAR_NAME.match(name):
            raise SpreadError(f"{at}.env", f"{name!r} is not an environment variable's name")
        if not isinstance(value, str) or len(value) > MAX_ENV_VALUE or "\0" in value:
            raise SpreadError(f"{at}.env.{name}", f"must be text of at most {MAX_ENV_VALUE} characters")
    files = list(files or [])
    if len(files) > MAX_GIVEN_FILES:
        raise SpreadError(f"{at}.files", f"at most {MAX_GIVEN_FILES} files, got {len(files)}")
    size = 0
    out = []
    for i, f in enumerate(files):
        name, text = (f.get("name"), f.get("text")) if isinstance(f, Mapping) else (None, None)
        if (not isinstance(name, str) or not name or name.startswith("/") or "\0" in name or len(name) > 255
                or posixpath.normpath(name) != name or name.split("/")[0] in ("..", ".", ".git")):
            raise SpreadError(f"{at}.files[{i}].name", "must be a plain relative path in the workspace")
        if not isinstance(text, str):
            raise SpreadError(f"{at}.files[{i}].text", "must be text")
        size += len(text.encode())
        if size > MAX_GIVEN_BYTES:
            raise SpreadError(f"{at}.files", f"at most {MAX_GIVEN_BYTES} bytes in all")
        out.append({"name": name, "text": text})
    return env, out


def child_job(parent: Mapping[str, Any], unit: str, env: Mapping[str, str], files: Sequence[Mapping[str, str]],
              child_id: str, number: int, now: float) -> dict[str, Any]:
    """The document of the child job running `unit` of `parent` (a stored job, waiting), queued. Same
    repository, commit (as the parent's checkout found it), type, parameters, trigger and secrets."""
    if parent.get("parent"):
        raise SpreadError("parent", f"job #{parent.get('number')} is a child job itself: a child of a child is "
                                    "not made")
    pipeline = child_pipeline(parent["pipeline"], parent.get("type") or "TEST", unit, env)
    names = {s["name"] for s in pipeline["stages"]}
    if not names:
        raise SpreadError("unit", f"job #{parent.get('number')} has no remote stage of unit {unit!r}")
    keep = ("repo", "repo_url", "provider", "ref", "type", "parameters", "trigger", "triggered_by", "kind",
            "secrets", "plugin_keys", "commit")
    job: dict[str, Any] = {k: parent[k] for k in keep if k in parent}
    resume = parent.get("resume") or {}
    chain = [j for j in resume.get("artifacts_of") or [] if j != parent["_id"]] + [parent["_id"]]
    job.update({
        "_id": child_id, "number": number, "pipeline": pipeline,
        "status": "queued", "attempts": 0, "drone": None,  # apiary.core.jobstate's JobState().fields()
        "created": now, "commands": {}, "phases": {},
        "parent": {"id": parent["_id"], "number": parent.get("number"), "unit": unit,
                   "wave": parent.get("attempts")},
        "resume": {"from_job": parent["_id"], "stages": {}, "artifacts_of": chain, "unit": unit,
                   "given": [dict(f) for f in files]},
    })
    conditions = [c for c in parent.get("conditions") or [] if isinstance(c, Mapping) and c.get("stage") in names]
    if conditions:
        job["conditions"] = conditions
    return job


def child_entry(child: Mapping[str, Any]) -> dict[str, Any]:
    """The parent's ``children`` entry for a child job document."""
    return {"unit": child["parent"]["unit"], "job": child["_id"], "number": child.get("number"),
            "status": child.get("status"), "wave": child["parent"]["wave"]}


# -- the fold -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fold:
    """What every child of the current wave having ended means for the parent: `resume` (its continuation,
    queued) or `error` (it fails so)."""

    resume: dict[str, Any] | None = None
    error: str | None = None
    # The child the error names: {unit, job, number, status} (a bisect reads a cancelled one as no verdict).
    child: dict[str, Any] | None = None


def wave(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The parent's children made for its current attempt."""
    return [dict(c) for c in job.get("children") or [] if c.get("wave") == job.get("attempts")]


def fold(job: Mapping[str, Any], outcome: Mapping[str, Any], children: Sequence[Mapping[str, Any]]) -> Fold | None:
    """The parent `job`'s fold once `children` (the current wave's child job documents) have all ended; None
    while one has not. `outcome`: the parent's (its stages that passed are reused by the continuation)."""
    if any(c.get("status") not in FINAL for c in children):
        return None
    # The cell that failed is named, not a sibling stopped for it (`stopped`), nor one cancelled beside it (a
    # bisect reads a job whose named child was cancelled, not failed, as untested).
    for child in sorted((c for c in children if c.get("status") != "passed"),
                        key=lambda c: (c.get("status") != "failed", _stopped_for_another(c))):
        unit = (child.get("parent") or {}).get("unit")
        how = {"failed": "failed", "cancelled": "was cancelled", "errored": "errored"}[child["status"]]
        return Fold(error=f"{unit} {how} in job #{child.get('number')}"
                          + (f": {child['error']}" if child.get("error") and child["status"] != "failed" else ""),
                    child={"unit": unit, "job": child.get("_id"), "number": child.get("number"),
                           "status": child["status"]})
    earlier = ((job.get("resume") or {}).get("stages")) or {}
    job_id = job.get("_id") or job.get("id")
    stages: dict[str, dict[str, Any]] = {}
    for s in outcome.get("stages") or []:  # where each passed stage really ran: an earlier child keeps its name
        if s.get("status") in ("passed", "reused") and isinstance(earlier.get(s["name"]), Mapping) \
                and earlier[s["name"]].get("status") == "passed":
            stages[s["name"]] = dict(earlier[s["name"]])
        elif s.get("status") == "passed":
            stages[s["name"]] = {"status": "passed", "job": job_id, "number": job.get("number")}
    by_unit = units(job["pipeline"]["stages"])
    named: set[str] = set()
    for child in children:  # where the unit ran (of several children, shards, its first)
        for name in by_unit.get((child.get("parent") or {}).get("unit"), []):
            if name not in named:
                named.add(name)
                stages[name] = {"status": "passed", "job": child["_id"], "number": child.get("number")}
    chain = [j for j in ((job.get("resume") or {}).get("artifacts_of") or []) if j != job_id] + [job_id]
    chain += [c["_id"] for c in children]
    return Fold(resume={"from_job": job_id, "stages": stages, "artifacts_of": chain})


def first_start(job: Mapping[str, Any]) -> float | None:
    """When `job` first started on a drone (seconds since the epoch; its ``history``'s attempts and the current
    one), None if it never did: a parent's time, and its timeout, count from there across its waits."""
    times = [r.get("started") for r in (job.get("history") or {}).values() if isinstance(r, Mapping)]
    times.append(job.get("started"))
    found = [float(t) for t in times if isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0]
    return min(found) if found else None


def overdue(job: Mapping[str, Any], now: float) -> str | None:
    """The error of a parent waiting for its children past its pipeline's ``timeout`` (seconds, counted from its
    first start: its children's time is its own), else None."""
    timeout = (job.get("pipeline") or {}).get("timeout")
    start = first_start(job)
    if not isinstance(timeout, (int, float)) or not timeout or start is None or now - start <= timeout:
        return None
    return f"the job timed out after {_shown(timeout)} (its child jobs' time counts: they were cancelled)"


def _shown(timeout: float) -> str:
    return f"{int(timeout // 60)} min" if timeout >= 60 and timeout % 60 == 0 else f"{timeout:g} s"


def parent_ended(parent: Mapping[str, Any]) -> str:
    """Why a child of `parent` (ended, not passed) is cancelled: ``its parent job #7 failed``, or when the
    parent's timeout ended it, ``its parent job #7 timed out after 10 s`` (the parent's words)."""
    timeout = (parent.get("pipeline") or {}).get("timeout")
    if (parent.get("status") == "failed" and str(parent.get("error") or "").startswith("the job timed out")
            and isinstance(timeout, (int, float)) and timeout > 0):
        return f"its parent job #{parent.get('number')} timed out after {_shown(timeout)}"
    return f"its parent job #{parent.get('number')} {parent.get('status')}"


def continued(job: Mapping[str, Any], now: float) -> Any:
    """The pipeline a parent's continuation is sent at `now`: its ``timeout`` what is left of the job's, counted
    from its first start (whole seconds, at least 1), since its wait for its children counts; any other job's
    pipeline as it is."""
    pipeline = job.get("pipeline") or {}
    timeout, start = pipeline.get("timeout"), first_start(job)
    if not job.get("children") or not isinstance(timeout, (int, float)) or not timeout or start is None:
        return pipeline
    return {**pipeline, "timeout": float(max(1, math.ceil(start + timeout - now)))}


_STOPPED = "no new stage of the job starts once one failed"


def stopped(children: Sequence[Mapping[str, Any]]) -> tuple[list[str], str | None]:
    """Once a child of the wave (`children`: the parent's ``children`` entries, {unit, job, number, status})
    failed, errored or was cancelled, its siblings that have not ended are looked at (`stop_sibling`): their
    ids, and the reason their cancel gives; ([], None) while none ended so."""
    bad = next((c for c in children if c.get("status") in ("failed", "errored", "cancelled")), None)
    if bad is None:
        return [], None
    how = {"failed": "failed", "errored": "errored", "cancelled": "was cancelled"}[str(bad["status"])]
    ids = [str(c["job"]) for c in children if c.get("status") not in FINAL and c.get("job")]
    return ids, f"{bad.get('unit')} {how} in job #{bad.get('number')}: {_STOPPED}"


def stop_sibling(kid: Mapping[str, Any], failed_at: float | None) -> bool:
    """Whether sibling `kid` (a child job document, not ended) of a child that ended without passing at
    `failed_at` is cancelled, as a job's stages are (once a stage fails no new stage starts; running ones
    finish): it has not started, or it went to a drone after the failure (its slot was the failed one's)."""
    status = kid.get("status")
    if status in ("queued", "dispatched"):
        return True
    dispatched = kid.get("dispatched")
    return (status == "running" and isinstance(failed_at, (int, float)) and isinstance(dispatched, (int, float))
            and dispatched >= failed_at)


def _stopped_for_another(child: Mapping[str, Any]) -> bool:
    """Whether a child job was cancelled because a sibling failed (`stopped`)."""
    return child.get("status") == "cancelled" and _STOPPED in str(child.get("error") or "")


def over_cap(left: Sequence[tuple[str, str, int]], cap: int, numbers: Mapping[str, Any]) -> str:
    """The error of a parent whose children's artifacts `left` ((job id, name, bytes), in restore order) do not
    fit in what its continuation restores (`cap` bytes); `numbers`: job id -> number, for its children."""
    shown = [f"{name} ({size:,} bytes{f', job #{numbers[job]}' if numbers.get(job) is not None else ''})"
             for job, name, size in left[:5]]
    more = f" and {len(left) - 5} more" if len(left) > 5 else ""
    return (f"the artifacts of its child jobs come to more than the {cap:,} bytes its continuation restores: "
            f"{', '.join(shown)}{more} would be left out; keep only what later stages need (fewer or smaller files)")


_COUNTS = ("tests", "passed", "failed", "errors", "skipped", "stored")


def family_report(own: Mapping[str, Any] | None, kids: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """A parent's test report with its children's added up (a sharded stage's tests ran in its shards): `own`,
    the parent's (apiary.core.reports.report_fields' ``report``) or None; `kids`, its ``family_reports``
    ([{job, number, unit, report}], written at the fold). The counts, ``listed`` and ``seconds`` summed, the
    files each with its job's ``number`` (a child's), and ``jobs``: [{job, number, unit, tests, failed,
    errors}] per child that reported. None when nobody reported."""
    parts = [({}, own)] if isinstance(own, Mapping) else []
    parts += [(k, k["report"]) for k in kids if isinstance(k, Mapping) and isinstance(k.get("report"), Mapping)]
    if not any(k for k, _ in parts):
        return dict(own) if isinstance(own, Mapping) else None
    out: dict[str, Any] = {key: 0 for key in _COUNTS}
    out.update(listed={}, seconds=0.0, files=[], jobs=[])
    for kid, report in parts:
        for key in _COUNTS:
            value = report.get(key)
            out[key] += value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
        for status, n in (report.get("listed") or {}).items() if isinstance(report.get("listed"), Mapping) else ():
            if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
                out["listed"][status] = out["listed"].get(status, 0) + n
        seconds = report.get("seconds")
        out["seconds"] += float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else 0.0
        for item in report.get("files") or [] if isinstance(report.get("files"), list) else []:
            if isinstance(item, Mapping) and len(out["files"]) < 64:
                out["files"].append({**item, **({"number": kid.get("number")} if kid else {})})
        if kid:
            out["jobs"].append({"job": kid.get("job"), "number": kid.get("number"), "unit": kid.get("unit"),
                                **{key: report.get(key, 0) for key in ("tests", "failed", "errors")}})
    out["seconds"] = round(out["seconds"], 3)
    return out


def reused_children(job: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(unit, child job id) of each remote unit `job` reuses as passed in another job's child (a re-run from the
    failed stage reuses the shards that passed, apiary.core.partial): their tests count on it too. Its own
    children left out; each child once, in pipeline order."""
    given = (job.get("resume") or {}).get("stages") or {}
    own = {c.get("job") for c in job.get("children") or [] if isinstance(c, Mapping)}
    out: list[tuple[str, str]] = []
    for unit, names in units((job.get("pipeline") or {}).get("stages") or []).items():
        for name in names:
            entry = given.get(name)
            ran = entry.get("job") if isinstance(entry, Mapping) and entry.get("status") == "passed" else None
            if isinstance(ran, str) and ran not in own and ran != job.get("_id") and all(ran != j for _, j in out):
                out.append((unit, ran))
    return out


# -- what the outcome shows -----------------------------------------------------------------------------


def mark(job: Mapping[str, Any], entries: list[dict[str, Any]], ended: dict[str, bool]) -> None:
    """The parent's outcome stages (`entries`, apiary.core.outcome) with each remote stage's child job: its
    ``child: {job, number, status}`` (the latest made for its unit) and, when the parent did not run it, its
    status from the child's (queued: ``waiting``); `ended` gains what passed or failed there."""
    latest: dict[str, list[Mapping[str, Any]]] = {}  # unit -> its children of the latest wave that made any
    for c in job.get("children") or []:
        if isinstance(c, Mapping) and isinstance(c.get("unit"), str):
            same = latest.setdefault(c["unit"], [])
            if same and same[0].get("wave") != c.get("wave"):
                same.clear()
            same.append(c)
    if not latest:
        return
    unit_of = {n: u for u, names in units((job.get("pipeline") or {}).get("stages") or []).items() for n in names}
    for entry in entries:
        family = latest.get(unit_of.get(entry["name"], ""))
        if not family:
            continue
        entry["children"] = [{"job": c.get("job"), "number": c.get("number"),
                              "status": str(c.get("status") or "queued")}
                             for c in family]
        # What the stage shows: its first child that did not pass, else its first.
        child = next((c for c in family if c.get("status") != "passed"), family[0])
        status = str(child.get("status") or "queued")
        entry["child"] = {"job": child.get("job"), "number": child.get("number"), "status": status}
        if entry["status"] == "reused" and (entry.get("reused_from") or {}).get("job") == child.get("job"):
            entry.update(status="passed", reason=f"ran in job #{child.get('number')}", reused_from=None, commands=[])
        elif not entry["status"] and job.get("status") in FINAL and status not in FINAL:
            # The job ended before its child did (it failed, timed out, was cancelled): the child is being stopped.
            entry.update(commands=[], status="not_run", reason=f"job #{child.get('number')} was stopped when this "
                                                                f"job {job.get('status')}")
        elif not entry["status"]:
            entry["commands"] = []  # its steps are its child's, shown on the child's page
            shown = {"queued": "waiting", "dispatched": "waiting", "running": "running", "passed": "passed",
                     "failed": "failed", "errored": "failed", "cancelled": "cancelled"}.get(status, "waiting")
            how = {"queued": "queued as", "dispatched": "queued as", "running": "running in",
                   "errored": "errored in", "cancelled": "cancelled in"}.get(status, f"{status} in")
            entry.update(status=shown, reason=f"{how} job #{child.get('number')}")
        if entry["status"] in ("passed", "failed"):
            ended[entry["name"]] = entry["status"] == "passed"
