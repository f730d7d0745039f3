"""Partial runs: a job whose pipeline runs only in part, the other stages decided elsewhere. Pure, no I/O.

A job document may carry ``resume`` (and its ``queue:new`` carries it to the drone)::

    {"from_job": the job it goes on from (id),
     "stages": {NAME: {"status": "passed", "job": id of the job that ran it, "number": that job's number}},
     "artifacts_of": [job ids whose artifacts are restored into the workspace after the checkout]}

The drone checks the commit out as usual, restores those artifacts, treats the named stages as
done and passed (it says so: ``apiary: stage NAME reused: passed in job #N (ID)``, the line the
outcome reads beside the job's ``resume``) and runs only the rest. What a later stage needs from
an earlier one must therefore be an artifact: the workspace of the job that ran it is gone.

`rerun_from_failed` decides, for "re-run from the failed stage", what a new job may reuse of a
failed one; `plan` decides, on the drone, which stages a partial run reuses and which it runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import Conflict

REUSED = "reused"
_REUSED_LINE = "apiary: stage {name} reused: passed in job #{number} ({job})"


@dataclass(frozen=True)
class Plan:
    """What a partial run does with its stages: `reused` (name -> where it passed), and the lines the
    drone says about them, in pipeline order."""

    reused: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def plan(stages: Sequence[Mapping[str, Any]], resume: Mapping[str, Any] | None) -> Plan:
    """Which of `stages` (one phase's, in pipeline order) the job reuses, given its `resume` (None: none).

    A stage is reused only when `resume` says it passed and every stage it needs (in this phase) is
    reused too: a stage whose input would be made again is run again. Names `resume` gives that the
    phase does not have are ignored (the other phase's, or a plugin's stage gone since)."""
    given = (resume or {}).get("stages") or {}
    reused: dict[str, dict[str, Any]] = {}
    names = {s["name"] for s in stages}
    for stage in _ordered(stages):
        entry = given.get(stage["name"])
        if not isinstance(entry, Mapping) or entry.get("status") != "passed":
            continue
        if all(n in reused or n not in names for n in stage.get("needs") or []):
            reused[stage["name"]] = dict(entry)
    lines = [_REUSED_LINE.format(name=s["name"], number=reused[s["name"]].get("number", "?"),
                                 job=reused[s["name"]].get("job", "?"))
             for s in stages if s["name"] in reused]
    return Plan(reused, lines)


def reused_line(line: str, names: Sequence[str]) -> str | None:
    """The stage a drone's line says it reused (one of `names`, which may hold spaces), else None."""
    for name in names:
        if line.startswith(f"apiary: stage {name} reused: "):
            return name
    return None


def reused_stage(job: Mapping[str, Any], said: Sequence[str], name: str) -> dict[str, Any] | None:
    """The outcome fields of stage `name` of `job` when the drone said (`said`: its own lines) it reused it
    as the job's ``resume`` asked: ``status`` reused, ``reason``, ``reused_from`` {job, number}; else None."""
    entry = (((job.get("resume") or {}).get("stages")) or {}).get(name)
    if not isinstance(entry, Mapping) or not any(reused_line(line, [name]) for line in said):
        return None
    return {"status": REUSED, "reason": f"passed in job #{entry.get('number')}",
            "reused_from": {"job": entry.get("job"), "number": entry.get("number")},
            "commands": []}


def rerun_from_failed(old: Mapping[str, Any], outcome: Mapping[str, Any], pipeline: Mapping[str, Any],
                      artifact_bytes: int, max_bytes: int) -> dict[str, Any]:
    """The ``resume`` of a re-run of `old` (a stored job document) from its first failed stage.

    `outcome`: old's outcome (apiary.core.outcome.job_outcome); `pipeline`: the pipeline the new job
    would run (compiled); `artifact_bytes`: the size of old's stored artifacts, at most `max_bytes`
    restorable. Reused: every stage that passed (or was reused, pointing at the job that really ran
    it) and needs only reused stages, but no approval gate. Raises Conflict, saying why, when the job did not fail, no stage
    passed, its pipeline is not the one the new job would run, or its artifacts are too big to restore.
    """
    number = old.get("number")
    if old.get("status") != "failed":
        raise Conflict(f"job #{number} {old.get('status')}: only a failed job can be re-run from its failed "
                       "stage (re-run it whole instead)", field="from_failed")
    if dict(old.get("pipeline") or {}) != dict(pipeline):
        raise Conflict(f"the pipeline changed since job #{number} ran: its passed stages may not be what "
                       "this pipeline would run; re-run the whole job", field="from_failed")
    earlier = ((old.get("resume") or {}).get("stages")) or {}
    # An approval gate is never reused: a new job asks for its own approval (apiary.core.approvals), and what
    # needs the gate runs after it again.
    gates = {s.get("name") for s in pipeline.get("stages") or [] if s.get("approval")}
    passed: dict[str, dict[str, Any]] = {}
    for stage in outcome.get("stages") or []:
        name = stage.get("name")
        if name in gates:
            continue
        if stage.get("status") == "passed":
            ran = stage.get("child") if (stage.get("child") or {}).get("status") == "passed" else None
            if ran and ran.get("job"):  # a spread cell or shard: it ran in its child job (apiary.core.spread.mark)
                passed[name] = {"status": "passed", "job": ran["job"], "number": ran.get("number")}
            else:
                passed[name] = {"status": "passed", "job": old.get("_id") or old.get("id"), "number": number}
        elif stage.get("status") == REUSED and isinstance(earlier.get(name), Mapping):
            passed[name] = dict(earlier[name])
    chosen = plan(list(outcome.get("stages") or []), {"stages": passed}).reused
    if not chosen:
        raise Conflict(f"job #{number} has no stage that passed to reuse; re-run the whole job",
                       field="from_failed")
    if artifact_bytes > max_bytes:
        raise Conflict(f"job #{number}'s artifacts ({artifact_bytes:,} bytes) are more than a re-run from the "
                       f"failed stage restores ({max_bytes:,} bytes); re-run the whole job", field="from_failed")
    old_id = old.get("_id") or old.get("id")
    return {"from_job": old_id, "stages": chosen, "artifacts_of": [old_id]}


def _ordered(stages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """`stages` with each after the stages it needs (pipeline order otherwise; a cycle keeps its order)."""
    by_name = {s["name"]: s for s in stages}
    out: list[Mapping[str, Any]] = []
    seen: set[str] = set()

    def visit(stage: Mapping[str, Any], path: frozenset[str]) -> None:
        if stage["name"] in seen or stage["name"] in path:
            return
        for need in stage.get("needs") or []:
            if need in by_name:
                visit(by_name[need], path | {stage["name"]})
        seen.add(stage["name"])
        out.append(stage)

    for stage in stages:
        visit(stage, frozenset())
    return out
