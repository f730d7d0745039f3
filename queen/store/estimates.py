"""The store's reads for estimates (apiary.queen.estimate): repositories' last passed jobs, the jobs on drones
and the queue, each with only the fields an estimate needs (the stages' names, not their steps)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from apiary.core.protocol import JobStatus

# What an estimate reads of a job: its ref, its type and stages and the stages a partial run reused, when it
# started and ended. Whole stages, not their names alone: nx-27017 returns nothing for a path into an array's
# documents (pipeline.stages.name), and a dotted path's value under the dotted name ("ref.branch"), which
# `_nested` puts back where MongoDB puts it.
_FIELDS = {"repo": 1, "status": 1, "ref": 1, "type": 1, "pipeline.stages": 1, "resume.stages": 1, "started": 1,
           "finished": 1}


def _nested(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with its dotted keys ("pipeline.stages": [...]) as nested documents, as MongoDB returns them."""
    for key in [k for k in doc if "." in k]:
        value = doc.pop(key)
        *parents, last = key.split(".")
        at = doc
        for name in parents:
            at = at.setdefault(name, {}) if isinstance(at.get(name, {}), dict) else {}
        at[last] = value
    return doc


class EstimateQueries:
    """Passed jobs' durations, the jobs on drones, the queue."""

    jobs: AsyncCollection

    async def recent_passes(self, repo: str, limit: int, shape: Callable[[Any], Any]) -> list[dict[str, Any]]:
        """`repo`'s last `limit` passed jobs, newest first: {"branch", "shape": shape(job), "duration": seconds}.
        Index (repo, status, number)."""
        cursor = self.jobs.find({"repo": repo, "status": JobStatus.PASSED.value}, _FIELDS)
        docs = [_nested(d) for d in await cursor.sort("number", DESCENDING).limit(limit).to_list(None)]
        return [{"branch": (d.get("ref") or {}).get("branch"), "shape": shape(d),
                 "duration": float(d["finished"]) - float(d["started"])} for d in docs
                if isinstance(d.get("started"), (int, float)) and isinstance(d.get("finished"), (int, float))
                and d["finished"] >= d["started"]]

    async def estimate_in_flight(self) -> list[dict[str, Any]]:
        """The jobs dispatched to or running on drones (as many as the pool has slots). Index (status)."""
        statuses = [JobStatus.DISPATCHED.value, JobStatus.RUNNING.value]
        return [_nested(d) for d in await self.jobs.find({"status": {"$in": statuses}}, _FIELDS).to_list(None)]

    async def estimate_queue(self, limit: int) -> list[dict[str, Any]]:
        """The oldest `limit` queued jobs, oldest first (the dispatcher's order). Index (status)."""
        cursor = self.jobs.find({"status": JobStatus.QUEUED.value}, _FIELDS).sort("_id", ASCENDING)
        return [_nested(d) for d in await cursor.limit(limit).to_list(None)]

    async def estimate_jobs(self, job_ids: list[str]) -> list[dict[str, Any]]:
        """Those of `job_ids` that exist, with the fields an estimate needs."""
        return [_nested(d) for d in await self.jobs.find({"_id": {"$in": job_ids}}, _FIELDS).to_list(None)]
