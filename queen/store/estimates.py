"""The store's reads for estimates (apiary.queen.estimate): repositories' last passed jobs, the jobs on drones
and the queue, each with only the fields an estimate needs, and each job's ``shape`` (the stages it runs).

A job's shape never changes (its pipeline and the stages a partial run reuses are fixed when it is made), so
it is worked out once per job from its stages and kept in memory (at most SHAPES_KEPT jobs); a repository's
last passed jobs are kept until another of its jobs passes: the embedded store decodes every document it
returns (about 1 ms a job here), and the dashboard asks for a row's estimate at each of its job's changes. nx-27017 returns a dotted projection
under its dotted name ("pipeline.stages") and nothing for a path into an array's documents
(pipeline.stages.name), so the stages are read whole and `nested` (queen/store/documents.py) puts dotted keys back where MongoDB puts
them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from apiary.core.branchjobs import SPEAKS_FOR_BRANCH
from apiary.core.protocol import JobStatus
from apiary.core.spread import first_start

from .documents import nested

SHAPES_KEPT = 20_000
# What an estimate reads of a job besides its shape: its ref (branch), when it started and ended.
# (A spread or sharded job's duration counts from its first start: its ``history``, apiary.core.spread.first_start.)
_FIELDS = {"repo": 1, "status": 1, "ref": 1, "type": 1, "started": 1, "finished": 1, "parent": 1, "history": 1}
# What its shape is made of.
_SHAPE_FIELDS = {"type": 1, "pipeline.stages": 1, "resume.stages": 1, "children": 1}  # children: whose stages

ShapeOf = Callable[[Any], Any]


class EstimateQueries:
    """Passed jobs' durations, the jobs on drones, the queue, with their shapes."""

    jobs: AsyncCollection

    async def shaped(self, jobs: Iterable[Mapping[str, Any]], shape: ShapeOf) -> list[dict[str, Any]]:
        """Copies of `jobs` (as read elsewhere, with their ref, status, type, start) with ``shape`` set."""
        return await self._shaped([{k: v for k, v in j.items() if k in _FIELDS or k == "_id"} for j in jobs], shape)

    async def _shaped(self, docs: list[dict[str, Any]], shape: ShapeOf) -> list[dict[str, Any]]:
        """`docs` with ``shape`` set: from memory, else from their stages (one read for those not known)."""
        shapes: dict[str, Any] = self.__dict__.setdefault("_estimate_shapes", {})
        missing = [d["_id"] for d in docs if d["_id"] not in shapes]
        if missing:
            if len(shapes) + len(missing) > SHAPES_KEPT:
                shapes.clear()
            for d in await self.jobs.find({"_id": {"$in": missing}}, _SHAPE_FIELDS).to_list(None):
                shapes[d["_id"]] = shape(nested(d))
        for d in docs:
            d["shape"] = shapes.get(d["_id"])
        return [nested(d) for d in docs]

    async def recent_passes(self, repo: str, limit: int, shape: ShapeOf,
                            children: bool = False) -> list[dict[str, Any]]:
        """`repo`'s last `limit` passed jobs, newest first: {"branch", "shape", "duration": seconds}; with
        `children`, its last passed child jobs instead (a running child's estimate: one cell, one shard). Read
        again only when a job of the repository passed since (one job's number read to tell). Index (repo,
        status, number)."""
        kept: dict[tuple[str, bool], tuple[Any, list[dict[str, Any]]]] = \
            self.__dict__.setdefault("_estimate_passes", {})
        newest = await self.jobs.find_one({"repo": repo, "status": JobStatus.PASSED.value}, {"number": 1},
                                          sort=[("number", DESCENDING)])
        # Another queen's pass shows in the newest number; this queen's also when jobs pass out of order.
        mark = (newest or {}).get("number"), limit, self.passes_written
        if (repo, children) in kept and kept[repo, children][0] == mark:
            return kept[repo, children][1]
        if len(kept) > 1000:
            kept.clear()
        # Jobs that speak for their branch (apiary.core.branchjobs): not a bisect's (older commits, whose
        # durations are not the branch's now), nor a child job (one part of a run, shorter than the run);
        # or, for children, child jobs (not a bisect's either).
        which = SPEAKS_FOR_BRANCH if not children else {**SPEAKS_FOR_BRANCH, "parent": {"$exists": True}}
        cursor = self.jobs.find({"repo": repo, "status": JobStatus.PASSED.value, **which}, _FIELDS)
        docs = await self._shaped(await cursor.sort("number", DESCENDING).limit(limit).to_list(None), shape)
        passes = [{"branch": (d.get("ref") or {}).get("branch"), "shape": d["shape"],
                   "duration": float(d["finished"]) - (first_start(d) or float(d["started"]))} for d in docs
                  if isinstance(d.get("started"), (int, float)) and isinstance(d.get("finished"), (int, float))
                  and d["finished"] >= d["started"]]
        kept[repo, children] = (mark, passes)
        return passes

    async def estimate_in_flight(self, shape: ShapeOf) -> list[dict[str, Any]]:
        """The jobs dispatched to or running on drones (as many as the pool has slots). Index (status)."""
        statuses = [JobStatus.DISPATCHED.value, JobStatus.RUNNING.value]
        return await self._shaped(await self.jobs.find({"status": {"$in": statuses}}, _FIELDS).to_list(None), shape)

    async def estimate_queue(self, limit: int, shape: ShapeOf) -> list[dict[str, Any]]:
        """The oldest `limit` queued jobs, oldest first (the dispatcher's order). Index (status)."""
        cursor = self.jobs.find({"status": JobStatus.QUEUED.value}, _FIELDS).sort("_id", ASCENDING)
        return await self._shaped(await cursor.limit(limit).to_list(None), shape)
