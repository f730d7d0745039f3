"""Approval gates: a stage that runs only once a person approves it. Pure, no I/O.

    stages: [{name: deploy, needs: [build], approval: {role: admin, timeout: 24h}, steps: [...]}]

`role` (``admin``, the default, or ``member``: any signed-in user who may run jobs) says who may
decide; `timeout` (default 24h, at most 30 days) how long the job waits before it fails. A gate and
every stage that needs it, directly or not, are *held* until it is approved. The drone runs the
rest, collects the artifacts and ends its attempt ``waiting`` (apiary.core.jobstate), freeing its
slot. Approved, the job's continuation is queued: a partial run of the same job
(apiary.core.partial) that reuses the stages that passed and restores the job's own artifacts.
Rejected or timed out, the job fails saying who rejected it or that nobody decided in time.

A job document's ``approvals`` lists the decisions, oldest first:
``[{stage, decision: approved|rejected|timed_out, by: user | None, at: seconds since 1970, comment?}]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import ApiaryError
from .stages import runnable_stages

ROLES = ("admin", "member")
DEFAULT_TIMEOUT = 24 * 3600.0
MAX_TIMEOUT = 30 * 24 * 3600.0
MAX_COMMENT = 1000  # characters of a decision's comment kept
_KEYS = {"role", "timeout"}


class ApprovalError(ApiaryError):
    """A malformed ``approval:``; `path` is where (``stages[2].approval.role``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


def compile_approval(value: Any, at: str, duration: Callable[[Any, str], float | None]) -> dict[str, Any] | None:
    """A stage's ``approval:`` as ``{role, timeout: seconds}``; None when absent. `duration` parses a
    duration (the pipeline's own, raising its error with the path). ``approval: true`` is the defaults."""
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise ApprovalError(at, f"must be a mapping like {{role: admin, timeout: 24h}}, got {type(value).__name__}")
    for key in value:
        if key not in _KEYS:
            raise ApprovalError(f"{at}.{key}", f"unknown key {key!r} (allowed: {', '.join(sorted(_KEYS))})")
    role = value.get("role", "admin")
    if role not in ROLES:
        raise ApprovalError(f"{at}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
    timeout = duration(value.get("timeout"), f"{at}.timeout") or DEFAULT_TIMEOUT
    if timeout > MAX_TIMEOUT:
        raise ApprovalError(f"{at}.timeout", f"at most 30 days, got {human(timeout)}")
    return {"role": role, "timeout": timeout}


def approved(job: Mapping[str, Any]) -> set[str]:
    """The gates of `job` somebody approved."""
    return {a["stage"] for a in job.get("approvals") or [] if a.get("decision") == "approved"}


def held(stages: Sequence[Mapping[str, Any]], done: set[str]) -> set[str]:
    """Stages that may not run yet: each gate not in `done` (approved), and every stage needing one."""
    out = {s["name"] for s in stages if s.get("approval") and s["name"] not in done}
    for _ in stages:  # one step further down every chain per round; needs may point forward
        more = {s["name"] for s in stages if any(n in out for n in s.get("needs") or [])} - out
        if not more:
            break
        out |= more
    return out


def waiting_gates(stages: Sequence[Mapping[str, Any]], job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The gates `job` waits at now: held gates none of whose needs is held (what it waits for first), each
    ``{stage, role, timeout}``, in pipeline order."""
    hold = held(stages, approved(job))
    return [{"stage": s["name"], **s["approval"]} for s in stages
            if s.get("approval") and s["name"] in hold and not any(n in hold for n in s.get("needs") or [])]


def can_wait(job: Mapping[str, Any]) -> bool:
    """Whether `job` (a job document: ``pipeline``, ``type``, ``approvals``) has a gate it can be waiting at
    now (`waiting_gates` of the stages its type runs not empty): what a drone's ``waiting`` needs to be
    believed (apiary.core.jobstate `Finished.at_gate`). At no gate nobody could decide and no timeout
    would apply: the job would wait forever."""
    pipeline = job.get("pipeline")
    if not isinstance(pipeline, Mapping) or not pipeline.get("stages"):
        return False
    return bool(waiting_gates(runnable_stages(pipeline, job.get("type") or "TEST"), job))  # type: ignore[arg-type]


def waiting_lines(stages: Sequence[Mapping[str, Any]], hold: set[str]) -> list[str]:
    """The drone's lines for a job that stops at its gates: ``apiary: stage NAME waits for an approval (...)``."""
    job = {"approvals": [{"stage": s["name"], "decision": "approved"} for s in stages if s["name"] not in hold]}
    return [f"apiary: stage {g['stage']} waits for an approval ({_who(g['role'])}, within {human(g['timeout'])})"
            for g in waiting_gates(stages, job)]


def _who(role: str) -> str:
    return "an admin" if role == "admin" else "any member"


def reason(stage: Mapping[str, Any]) -> str:
    """Why a gate's stage has not run, for the outcome: "waits for an approval by an admin"."""
    return f"waits for an approval by {_who((stage.get('approval') or {}).get('role', 'admin'))}"


def may_decide(required: str, role: str | None, has_users: bool) -> bool:
    """Whether a person with `role` (None: not signed in) may decide on a gate for `required`: an admin gate
    needs an admin, a member gate any user who may run jobs. A queen without users (`has_users` false: open
    on loopback, queen/auth.py) lets whoever reaches it, its owner."""
    if not has_users:
        return True
    return role == "admin" or (required == "member" and role == "member")


def decide(job: Mapping[str, Any], stages: Sequence[Mapping[str, Any]], stage: str, decision: str, by: str,
           now: float, comment: str | None = None) -> list[dict[str, Any]]:
    """The job's ``approvals`` with this decision added; raises ApprovalError (path ``stage``) when the job
    does not wait at `stage`."""
    gates = [g["stage"] for g in waiting_gates(stages, job)]
    if stage not in gates:
        waits = f"it waits at {', '.join(gates)}" if gates else "it waits at no gate"
        raise ApprovalError("stage", f"job #{job.get('number')} does not wait for an approval of {stage!r}: {waits}")
    record: dict[str, Any] = {"stage": stage, "decision": decision, "by": by, "at": now}
    if comment:
        record["comment"] = comment[:MAX_COMMENT]
    return [*(job.get("approvals") or []), record]


def continuation(job: Mapping[str, Any], outcome: Mapping[str, Any], approvals: Sequence[Mapping[str, Any]]
                 ) -> dict[str, Any]:
    """The ``resume`` (apiary.core.partial) of an approved job's continuation: the stages that passed in its
    earlier attempts (or were reused by them: their first job stays named), its own artifacts restored,
    and the gates ``approved`` in `approvals` (the job's decisions, the new one included)."""
    earlier = ((job.get("resume") or {}).get("stages")) or {}
    job_id = job.get("_id") or job.get("id")
    stages: dict[str, dict[str, Any]] = {}
    for s in outcome.get("stages") or []:
        if s.get("status") == "passed":
            stages[s["name"]] = {"status": "passed", "job": job_id, "number": job.get("number")}
        elif s.get("status") == "reused" and isinstance(earlier.get(s["name"]), Mapping):
            stages[s["name"]] = dict(earlier[s["name"]])
    artifacts_of = [j for j in ((job.get("resume") or {}).get("artifacts_of") or []) if j != job_id] + [job_id]
    return {"from_job": job_id, "stages": stages, "artifacts_of": artifacts_of,
            "approved": sorted(approved({"approvals": list(approvals)}))}


def timed_out(job: Mapping[str, Any], stages: Sequence[Mapping[str, Any]], now: float) -> dict[str, Any] | None:
    """The gate a waiting `job` has waited at longer than its timeout (``{stage, role, timeout}``), or None."""
    since = job.get("waiting_since")
    if job.get("status") != "waiting" or not isinstance(since, (int, float)):
        return None
    return next((g for g in waiting_gates(stages, job) if now - since >= g["timeout"]), None)


def human(seconds: float) -> str:
    """'24h', '3d', '90m', '45s': a timeout as people write it (days from two on)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= (2 * size if unit == "d" else size) and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
