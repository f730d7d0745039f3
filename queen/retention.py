"""Which old jobs to delete under a repository's retention policy, and deleting them.

`select_prunable` is pure: given a repository's jobs (newest first), its
policy ``{"keep_jobs": N, "keep_days": D}`` and the time, it names the jobs to
delete. A job is kept when it is among the newest N, or younger than D days,
or the last passing job of its branch (not a bisect's), or not finished yet. With no policy,
nothing is deleted. `prune` applies it to every repository; the queen runs it
daily and `apiary prune` (POST /api/v1/prune) on demand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from apiary.core.models import Retention
from apiary.core.protocol import JobStatus
from apiary.queen.store import Store

log = logging.getLogger(__name__)

DAY = 86400.0


def select_prunable(jobs: Iterable[dict[str, Any]], policy: Retention, now: float) -> list[str]:
    keep_jobs = policy.get("keep_jobs")
    keep_days = policy.get("keep_days")
    if keep_jobs is None and keep_days is None:
        return []
    last_pass: set[str] = set()
    branches_seen: set[str] = set()
    doomed = []
    for index, job in enumerate(jobs):  # newest first
        branch = (job.get("ref") or {}).get("branch") or (job.get("ref") or {}).get("fetch") or ""
        status = job.get("status")
        bisect = (job.get("triggered_by") or {}).get("kind") == "bisect"  # an old commit's: not the branch's state
        if status == JobStatus.PASSED.value and branch not in branches_seen and not bisect:
            branches_seen.add(branch)
            last_pass.add(job["_id"])
            continue
        if status not in {s.value for s in JobStatus if s.final}:
            continue
        young = keep_days is not None and now - job.get("created", now) < keep_days * DAY
        recent = keep_jobs is not None and index < keep_jobs
        if young or recent:
            continue
        doomed.append(job["_id"])
    return doomed


async def prune(store: Store, now: float | None = None) -> dict[str, int]:
    """Apply every repository's policy; return how many jobs each lost."""
    now = time.time() if now is None else now
    deleted: dict[str, int] = {}
    for repo in await store.list_repos():
        policy = repo.get("retention") or {}
        doomed = select_prunable(await store.jobs_for_retention(repo["_id"]), policy, now)
        if doomed:
            await store.delete_jobs(doomed)
            log.info("pruned %d jobs of %s", len(doomed), repo["_id"])
        deleted[repo["_id"]] = len(doomed)
    return deleted


async def prune_daily(store: Store, every: float = DAY, first_after: float = 60.0) -> None:
    """Prune a minute after the queen starts (so a queen restarted often still prunes), then daily."""
    await asyncio.sleep(first_after)
    while True:
        try:
            await prune(store)
        except Exception:
            log.exception("daily prune failed; trying again tomorrow")
        await asyncio.sleep(every)
