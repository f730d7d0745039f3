"""The queen's side of approval gates (apiary.core.approvals decides; apiary.core.jobstate changes the job).

``POST /api/v1/jobs/{id}/approvals`` ``{stage, decision: approve|reject, comment?}``: a person with the
gate's role decides on a job waiting at it (403 for anyone else; 409 when the job does not wait there).
Approved, the job's continuation is queued (a partial run, apiary.core.partial) and the dispatcher
woken; rejected, it ends failed naming who. `watch_timeouts` ends, every CHECK_EVERY seconds, the jobs
that waited longer than their gate's timeout. Answers ``{id, status, approvals}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from pymongo.errors import PyMongoError

from apiary.core import approvals
from apiary.core.errors import BadRequest, Conflict, InputError
from apiary.core.fields import get_str, no_unknown
from apiary.core.jobstate import Decided, GateTimedOut
from apiary.core.protocol import JobStatus
from apiary.core.stages import runnable_stages
from apiary.queen.store import Store
from apiary.queen.strict_json import json_response
from apiary.queen.validate import read_json

from . import keys

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

CHECK_EVERY = 5.0  # seconds between looks for waiting jobs past their gate's timeout


class NotAllowed(InputError):
    """The person may not decide on this gate (its role is another)."""

    status = 403


def _stages(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(runnable_stages(job["pipeline"], job.get("type") or "TEST"))


@routes.post("/api/v1/jobs/{job}/approvals")
async def decide(request: web.Request) -> web.Response:
    from apiary.queen.api import load_job, outcome_of  # the API's own job lookup and outcome

    job = await load_job(request)
    body = await read_json(request)
    no_unknown(body, {"stage", "decision", "comment"})
    stage = get_str(body, "stage", required=True)
    decision = get_str(body, "decision", required=True)
    if decision not in ("approve", "reject"):
        raise BadRequest("decision: approve or reject", field="decision")
    comment = get_str(body, "comment")
    if job["status"] != JobStatus.WAITING.value:
        raise Conflict(f"job #{job.get('number')} is {job['status']}: it waits for no approval", field="stage")
    stages = _stages(job)
    gate = next((g for g in approvals.waiting_gates(stages, job) if g["stage"] == stage), None)
    identity = request.get("identity")
    if gate is not None and not approvals.may_decide(gate["role"], identity and identity["role"].value,
                                                      bool(request.app[keys.GATE].users_exist)):
        raise NotAllowed(f"stage {stage} needs an approval by {'an admin' if gate['role'] == 'admin' else 'a member'}"
                         f"; you are {identity['role'].value if identity else 'not signed in'}", field="stage")
    by = identity["user"] if identity else "the queen's owner (no users yet)"
    now = time.time()
    try:
        decided = approvals.decide(job, stages, stage, "approved" if decision == "approve" else "rejected", by, now,
                                   comment)
    except approvals.ApprovalError as fault:
        raise Conflict(fault.problem, field=fault.path) from None
    resume = approvals.continuation(job, await outcome_of(request.app[keys.STORE], job), decided) \
        if decision == "approve" else None
    hive = request.app[keys.HIVE]
    changed = await hive.change(job["_id"], Decided(stage, decision == "approve", by, now, decided, resume))
    if changed is None or changed[1].status is JobStatus.WAITING:
        raise Conflict(f"job #{job.get('number')} changed meanwhile; look again", field="stage")
    if decision == "approve":
        hive.dispatcher.wake()  # its continuation is queued
    log.info("job %s: stage %s %s by %s", job["_id"], stage, decided[-1]["decision"], by)
    return json_response({"id": job["_id"], "status": changed[1].status.value, "approvals": decided})


async def time_out(store: Store, hive: Any, now: float) -> int:
    """End the waiting jobs whose gate's timeout passed; return how many."""
    ended = 0
    # The waiting jobs are few (each holds a person's attention); read whole.
    for job in await store.jobs.find({"status": JobStatus.WAITING.value}).to_list(None):
        gate = approvals.timed_out(job, _stages(job), now)
        if gate is None:
            continue
        record = {"stage": gate["stage"], "decision": "timed_out", "by": None, "at": now}
        changed = await hive.change(job["_id"], GateTimedOut(gate["stage"], approvals.human(gate["timeout"]), now,
                                                             [*(job.get("approvals") or []), record]))
        if changed is not None:
            ended += 1
            log.info("job %s: nobody approved stage %s in time", job["_id"], gate["stage"])
    return ended


async def watch_timeouts(app: web.Application) -> AsyncIterator[None]:
    """A cleanup context: the time-out watcher runs while the queen does."""
    async def loop() -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY)
            try:
                await time_out(app[keys.STORE], app[keys.HIVE], time.time())
            except PyMongoError as exc:
                log.warning("approval time-outs: store error: %s", exc)
    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def gates_view(job: dict[str, Any], me: dict[str, Any] | None, has_users: bool) -> dict[str, Any]:
    """What the job page shows of a job's gates (web/templates/parts/job_gates.html): the gates it waits at,
    each ``{stage, role, timeout, deadline, may}`` (`may`: whether `me` may decide), and its decisions."""
    stages = _stages(job) if job.get("pipeline") else []
    waiting = approvals.waiting_gates(stages, job) if job.get("status") == JobStatus.WAITING.value else []
    since = job.get("waiting_since") or 0
    role = me["role"].value if me else None
    return {"waiting": [{**g, "timeout": approvals.human(g["timeout"]), "deadline": since + g["timeout"],
                         "may": approvals.may_decide(g["role"], role, has_users)} for g in waiting],
            "decisions": list(job.get("approvals") or [])}
