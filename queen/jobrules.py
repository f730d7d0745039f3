"""What a new job's ``when:`` and ``concurrency:`` decide, carried out by the queen when the job is made.

`job_rules` runs before the job is stored (apiary.queen.jobs.create_job): it records each condition's
verdict (``conditions``, apiary.core.conditions.decide; with ``changes_base``, the commit that
``when.changed`` compared with, queen/changes.py) and the job's concurrency group filled in
(``concurrency``: ``group`` as filled in, shown; ``key``, its repository's group or a fork's request's
own, apiary.core.concurrency.group_key). The drone skips what the verdicts skip; the dispatcher holds a
job back while another of the same key is on a drone (apiary.core.concurrency.may_dispatch).

`supersede` runs once the job is stored: it cancels the older jobs the new one supersedes (its group
with ``cancel_in_progress``; the same push branch or pull request with the repository's
``auto_cancel``), each through the queen's own cancel, after writing ``superseded_by`` on it, so its
page and error name the newer job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from apiary.core.concurrency import group_key, group_name, supersede_key, superseded
from apiary.core.conditions import JobFacts, decide, needs_changes
from apiary.core.models import Job, Repository
from apiary.core.protocol import UNDERWAY
from apiary.queen.changes import base_doc, job_changes
from apiary.queen.store import Store

log = logging.getLogger(__name__)

CancelFn = Callable[[Job, str], Awaitable[str]]  # (the job, why) -> its status: hive.cancel
MAX_SUPERSEDED = 100  # older jobs one new job looks at


def job_branch(job: Job) -> str:
    """The branch `when.branch` and ``{{ branch }}`` see: the ref's, or a request's base branch; "" for a tag."""
    return str((job.get("ref") or {}).get("branch") or (job.get("trigger") or {}).get("base_branch") or "")


async def job_rules(store: Store, git_cache: Path, repo: Repository, job: Job) -> dict[str, Any]:
    """The fields `job` (made, not stored) gets from its pipeline's conditions and concurrency."""
    pipeline = job["pipeline"]
    fields: dict[str, Any] = {}
    facts = JobFacts(branch=job_branch(job), event=job["kind"], type=job["type"], parameters=job["parameters"])
    decisions = decide(pipeline, facts)
    if decisions:
        if needs_changes(pipeline):
            changes = await job_changes(store, git_cache, repo, job)
            facts = JobFacts(facts.branch, facts.event, facts.type, facts.parameters, changes)
            # Off the event loop: up to MAX_FILES paths against every pattern (100 stages x 20 000 files
            # matching none: about 0.7 s on one core).
            decisions = await asyncio.to_thread(decide, pipeline, facts)
            fields["changes_base"] = base_doc(changes)
        fields["conditions"] = [d.doc() for d in decisions]
    concurrency = pipeline.get("concurrency")
    if concurrency:
        group = group_name(concurrency["group"], branch=facts.branch, repo=job["repo"], job_type=job["type"],
                           event=job["kind"], parameters=job["parameters"])
        fields["concurrency"] = {"group": group, "cancel_in_progress": bool(concurrency.get("cancel_in_progress"))}
        # What holds it: the group as written is shown, the key (its repository's, a fork's request's own) decides.
        fields["concurrency"]["key"] = group_key({**job, "concurrency": fields["concurrency"]})
    return fields


async def supersede(store: Store, cancel: CancelFn | None, repo: Repository, job: Job) -> list[str]:
    """Cancel the older jobs `job` supersedes; return their ids."""
    if cancel is None:
        return []
    group = group_key(job)
    auto = repo.get("auto_cancel", True) is not False
    cancels_group = bool((job.get("concurrency") or {}).get("cancel_in_progress") and group)
    if not cancels_group and not (auto and supersede_key(job) is not None):
        return []  # it supersedes nothing: no query (a manual trigger, a schedule, a tag)
    older = await store.jobs_underway_before(job["_id"], job["repo"], group if cancels_group else None,
                                             MAX_SUPERSEDED)
    ids = superseded(job, older, auto)
    newer = {"id": job["_id"], "number": job["number"], "repo": job["repo"]}
    reason = f"superseded by {job['repo']}#{job['number']}"
    by_id = {o["_id"]: o for o in older}
    for old_id in ids:
        old = by_id[old_id]
        try:
            if not await store.change_job(old_id, {"status": {"$in": list(UNDERWAY)}}, {"superseded_by": newer}):
                continue  # it ended meanwhile
            status = await cancel(old, reason)  # type: ignore[arg-type]
        except Exception:  # the new job is queued whatever happens to the old one: its trigger succeeded
            log.exception("job %s (%s#%s) could not be cancelled (%s)", old_id, old.get("repo"), old.get("number"),
                          reason)
            continue
        log.info("job %s (%s#%s) %s: %s", old_id, old.get("repo"), old.get("number"), reason, status)
    return ids
