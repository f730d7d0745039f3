"""Which old jobs to delete under a repository's retention policy, and deleting them.

`select_prunable` is pure: given a repository's jobs (newest first), its
policy ``{"keep_jobs": N, "keep_days": D}`` and the time, it names the jobs to
delete. A job is kept when it is among the newest N, or younger than D days,
or the last passing job of its branch, or not finished yet. With no policy, nothing is deleted.

Only jobs that speak for their branch (apiary.core.branchjobs) can be its last pass: not a bisect's,
nor a child job. A child job (a spread cell's, a shard's) is not counted among the N at all: it is one
part of its parent's run, kept exactly as long as its parent and deleted with it (with its events and
artifacts), never on its own; one whose parent is already gone (pruned before children followed their
parent) goes once it has ended. A job a kept job reuses a stage from (a re-run from the failed stage:
its shards passed there) is kept with its family, and so are a bisect's jobs (every job of a running
bisect; of the newest KEPT_BISECTS ended ones, the jobs their answers cite: apiary.core.bisect.kept_jobs).
`prune` applies it to every repository; the queen runs it
daily and `apiary prune` (POST /api/v1/prune) on demand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Iterable
from typing import Any

from apiary.core.bisect import kept_jobs
from apiary.core.branchjobs import is_child, speaks_for_branch
from apiary.core.models import Retention
from apiary.core.protocol import JobStatus
from apiary.queen.store import Store

log = logging.getLogger(__name__)

DAY = 86400.0
KEPT_BISECTS = 20  # ended bisects per repository whose cited jobs are kept (older ones' pages say "pruned")


def select_prunable(jobs: Iterable[dict[str, Any]], policy: Retention, now: float,
                    keep: Collection[str] = ()) -> list[str]:
    """The ids of `jobs` to delete (each ``{_id, status, created: seconds, ref, triggered_by, parent, resume:
    {stages}}``, newest first) under `policy` at `now` (seconds): parents before their child jobs. `keep`: ids
    kept whatever the policy says (a bisect's, apiary.core.bisect.kept_jobs). A job a kept job reuses a stage
    from (``resume.stages``: a re-run from the failed stage) is kept too, and so on down the chain; a child
    job kept keeps its parent's family."""
    keep_jobs = policy.get("keep_jobs")
    keep_days = policy.get("keep_days")
    if keep_jobs is None and keep_days is None:
        return []
    jobs = list(jobs)
    finals = {s.value for s in JobStatus if s.final}
    branches_seen: set[str] = set()
    doomed: list[str] = []
    index = 0  # among the jobs that are not child jobs, newest first
    for job in jobs:  # newest first
        if is_child(job):
            continue  # follows its parent, below
        branch = (job.get("ref") or {}).get("branch") or (job.get("ref") or {}).get("fetch") or ""
        status = job.get("status")
        index += 1
        if status == JobStatus.PASSED.value and branch not in branches_seen and speaks_for_branch(job):
            branches_seen.add(branch)
            continue
        if status not in finals:
            continue
        young = keep_days is not None and now - job.get("created", now) < keep_days * DAY
        recent = keep_jobs is not None and index <= keep_jobs
        if young or recent:
            continue
        doomed.append(job["_id"])
    parents = {job["_id"] for job in jobs if not is_child(job)}
    children: dict[Any, list[dict[str, Any]]] = {}
    for job in jobs:
        if is_child(job):
            children.setdefault(_parent_of(job), []).append(job)
    doomed = _spared(jobs, doomed, keep)
    wanted = set(keep) | {r for job in jobs for r in _reuses(job)}
    # A parent one of whose children has not ended yet stays, children and all, till the next prune.
    doomed = [p for p in doomed if all(c.get("status") in finals for c in children.get(p, []))]
    gone = set(doomed)
    for parent, kids in children.items():
        orphans = parent not in parents
        if parent in gone or orphans:
            doomed += [c["_id"] for c in kids if not orphans or (c.get("status") in finals and c["_id"] not in wanted)]
    return doomed


def _reuses(job: dict[str, Any]) -> set[str]:
    """The jobs `job` reuses stages from (its ``resume.stages``' jobs)."""
    stages = (job.get("resume") or {}).get("stages") or {}
    return {str(e["job"]) for e in stages.values() if isinstance(e, dict) and isinstance(e.get("job"), str)} \
        if isinstance(stages, dict) else set()


def _spared(jobs: list[dict[str, Any]], doomed: list[str], keep: Collection[str]) -> list[str]:
    """`doomed` (parents) without the families `keep` names and those a job that stays reuses stages from."""
    top = {job["_id"]: (_parent_of(job) if is_child(job) else job["_id"]) for job in jobs}
    saved = {top.get(i, i) for i in keep}
    while True:
        gone = set(doomed) - saved
        more = {top.get(r, r) for job in jobs if top[job["_id"]] not in gone for r in _reuses(job)} & gone
        if not more:
            return [d for d in doomed if d not in saved]
        saved |= more


def _parent_of(child: dict[str, Any]) -> Any:
    parent = child.get("parent")
    return parent.get("id") if isinstance(parent, dict) else None


async def prune(store: Store, now: float | None = None) -> dict[str, int]:
    """Apply every repository's policy; return how many jobs each lost."""
    now = time.time() if now is None else now
    deleted: dict[str, int] = {}
    for repo in await store.list_repos():
        policy = repo.get("retention") or {}
        if policy.get("keep_jobs") is None and policy.get("keep_days") is None:
            deleted[repo["_id"]] = 0
            continue
        doomed = select_prunable(await store.jobs_for_retention(repo["_id"]), policy, now,
                                 await bisects_keep(store, repo["_id"]))
        if doomed:
            await store.delete_jobs(doomed)
            log.info("pruned %d jobs of %s", len(doomed), repo["_id"])
        deleted[repo["_id"]] = len(doomed)
    return deleted


async def bisects_keep(store: Store, repo: str) -> set[str]:
    """The jobs the bisects of `repo` keep (apiary.core.bisect.kept_jobs): every running one's, and what the
    newest KEPT_BISECTS ended ones cite."""
    keep: set[str] = set()
    fields = {"status": 1, "result": 1, "size": 1, "tries": 1}
    async for doc in store.db.bisects.find({"repo": repo, "status": "running"}, fields):
        keep |= kept_jobs(doc)
    async for doc in store.db.bisects.find({"repo": repo, "status": {"$ne": "running"}}, fields,
                                           sort=[("number", -1)], limit=KEPT_BISECTS):
        keep |= kept_jobs(doc)
    return keep


async def prune_daily(store: Store, every: float = DAY, first_after: float = 60.0) -> None:
    """Prune a minute after the queen starts (so a queen restarted often still prunes), then daily."""
    await asyncio.sleep(first_after)
    while True:
        try:
            await prune(store)
        except Exception:
            log.exception("daily prune failed; trying again tomorrow")
        await asyncio.sleep(every)
