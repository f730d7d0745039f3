"""The store's jobs (``_id`` = ULID string, so ``_id`` order is trigger order).

A job's status changes only through `change_job`, a compare-and-set that carries out the job state
machine's writes (apiary.core.jobstate). Command summaries live in a map ``commands.<num>`` set with
``$set``, not an array: updates stay idempotent, and replaying an event is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from apiary.core.branchjobs import SPEAKS_FOR_BRANCH
from apiary.core.concurrency import holds_group
from apiary.core.errors import Conflict
from apiary.core.models import Job
from apiary.core.protocol import UNDERWAY, JobStatus

from .documents import nested
from .events import READ_BATCH

log = logging.getLogger(__name__)


class JobQueries:
    """Jobs: numbers, the queue, state changes, retention."""

    jobs: AsyncCollection
    events: AsyncCollection
    job_numbers: AsyncCollection
    _numbers_seeded: set[str]  # repositories whose counter this queen has raised to the stored jobs' numbers
    _numbers_lock: asyncio.Lock
    passes_written: int  # jobs this queen wrote passed (`_passed`)

    async def next_job_number(self, repo: str) -> int:
        """The repository's next job number (1, 2, 3…), unique across every queen on this store.

        An atomic ``$inc`` on the repository's document in ``job_numbers`` (one store round trip per
        trigger). The first time a repository counts there (a store from before the counter, or a
        repository whose jobs were imported), the counter is raised to the highest stored number first;
        ``$max`` makes that harmless when several queens do it at once.
        """
        if repo not in self._numbers_seeded:
            async with self._numbers_lock:
                if repo not in self._numbers_seeded:
                    last = await self.jobs.find_one({"repo": repo}, {"number": 1}, sort=[("number", DESCENDING)])
                    highest = int(last["number"]) if last and last.get("number") else 0
                    await self.job_numbers.update_one({"_id": repo}, {"$max": {"n": highest}}, upsert=True)
                    self._numbers_seeded.add(repo)
        doc = await self.job_numbers.find_one_and_update({"_id": repo}, {"$inc": {"n": 1}}, upsert=True,
                                                         return_document=ReturnDocument.AFTER)
        return int(doc["n"])

    async def insert_job(self, job: Job) -> None:
        """Store a new job; Conflict (field ``delivery``) if a job of the same webhook delivery is stored.

        The unique index on ``delivery`` decides between two identical deliveries that raced past
        every check before it: one job is stored, the other insert is refused.
        """
        try:
            await self.jobs.insert_one(job)
        except DuplicateKeyError:
            if not job.get("delivery"):
                raise
            raise Conflict(f"delivery {job['delivery']}: already queued a job", field="delivery") from None

    async def job_of_delivery(self, delivery: str) -> Job | None:
        """The job a webhook delivery queued (its key: plugin/repository/delivery id), without its pipeline."""
        return await self.jobs.find_one({"delivery": delivery}, {"pipeline": 0})

    async def get_job(self, job_id: str) -> Job | None:
        return await self.jobs.find_one({"_id": job_id})

    async def list_jobs(self, repo: str | None = None, branch: str | None = None,
                        before: str | None = None, limit: int = 50, number: int | None = None) -> list[Job]:
        """The newest jobs first, without their pipelines: of `repo`, of a branch or fetched ref, before `before`;
        with `number` (and `repo`), the one job numbered so (REPO#N; index (repo, number)).

        A pull or merge request's job is one of `branch` when it is its head (source) or base (target) branch.
        """
        query: dict[str, Any] = {}
        if repo is not None:
            query["repo"] = repo
        if number is not None:
            query["number"] = number
        if branch is not None:
            # A branch, a fetched ref such as a pull request's refs/pull/7/merge, or a pull request's branches
            query["$or"] = [{"ref.branch": branch}, {"ref.fetch": branch}, {"trigger.head_branch": branch},
                            {"trigger.base_branch": branch}]
        if before is not None:
            query["_id"] = {"$lt": before}
        cursor = self.jobs.find(query, {"pipeline": 0}).sort("_id", DESCENDING).limit(limit)
        return await cursor.to_list(None)

    async def queued(self, limit: int) -> list[dict[str, Any]]:
        """The oldest queued jobs (what dispatch needs: plugin keys and the state), oldest first."""
        fields = {"plugin_keys": 1, "status": 1, "attempts": 1, "drone": 1, "history": 1, "concurrency": 1,
                  "parent": 1}  # a child job: its parent must not have ended (Dispatcher._parent_ended)
        cursor = self.jobs.find({"status": JobStatus.QUEUED.value}, fields).sort("_id", ASCENDING)
        return await cursor.limit(limit).to_list(None)

    async def busy_groups(self, keys: Iterable[str]) -> set[str]:
        """Which of the concurrency group `keys` (``concurrency.key``: a repository's group, a fork's request's
        own; apiary.core.concurrency.group_key) have a job dispatched or running, or waiting for its children."""
        wanted = sorted(set(keys))
        if not wanted:
            return set()
        on_drones = [JobStatus.DISPATCHED.value, JobStatus.RUNNING.value]
        found = await self.jobs.find({"status": {"$in": on_drones}, "concurrency.key": {"$in": wanted}},
                                     {"concurrency": 1}).to_list(None)
        # A parent waiting for its child jobs holds its group too (apiary.core.concurrency.holds_group); the
        # waiting jobs are few (parents, approval gates).
        waiting = await self.jobs.find({"status": JobStatus.WAITING.value, "concurrency.key": {"$in": wanted}},
                                       {"concurrency": 1, "status": 1, "pipeline": 1}).to_list(None)
        return {str(j["concurrency"]["key"]) for j in found + [w for w in waiting if holds_group(w)]}

    async def jobs_underway_before(self, job_id: str, repo: str, group: str | None, limit: int) -> list[Job]:
        """Jobs made before `job_id` and not ended (queued, dispatched, running, waiting at an approval
        gate), of `repo` or of the concurrency group key `group` (``concurrency.key``), newest first, without
        their pipelines: what a new job may supersede. A waiting job is one: nobody should approve an older
        commit's deploy."""
        among: list[dict[str, Any]] = [{"repo": repo}] + ([{"concurrency.key": group}] if group else [])
        cursor = self.jobs.find({"status": {"$in": list(UNDERWAY)}, "_id": {"$lt": job_id}, "$or": among},
                                {"pipeline": 0, "commands": 0})
        return await cursor.sort("_id", DESCENDING).limit(limit).to_list(None)

    async def last_passed_job(self, repo: str, branch: str) -> Job | None:
        """The newest passed job of `repo`'s `branch` that knows its commit (number, ref), or None:
        the base `when.changed` compares with (apiary.queen.changes). Only a job that speaks for its branch
        (apiary.core.branchjobs): not a bisect's (an older commit it tried), nor a child job (one part of a run)."""
        query = {"repo": repo, "ref.branch": branch, "status": JobStatus.PASSED.value, "ref.id": {"$exists": True},
                 **SPEAKS_FOR_BRANCH}
        return await self.jobs.find_one(query, {"ref": 1, "number": 1}, sort=[("number", DESCENDING)])

    async def change_job(self, job_id: str, expect: dict[str, Any], fields: dict[str, Any]) -> bool:
        """Set `fields` on job `job_id` if it still matches `expect` (compare-and-set); True if it did.

        How the queen carries out the job state machine's `Write` effects (apiary.core.jobstate):
        a decision taken on a state that changed meanwhile lands nowhere.
        """
        result = await self.jobs.update_one({"_id": job_id, **_matching(expect)}, {"$set": fields})
        self._passed(fields, result.matched_count == 1)
        return result.matched_count == 1

    def _passed(self, fields: dict[str, Any], changed: bool) -> None:
        """Count the jobs this queen wrote passed: estimates read a repository's passes again after one
        (apiary.queen.store.estimates; jobs, cells above all, pass out of their numbers' order)."""
        if changed and fields.get("status") == JobStatus.PASSED.value:
            self.passes_written += 1

    async def change_and_get_job(self, job_id: str, expect: dict[str, Any],
                                 fields: dict[str, Any]) -> Job | None:
        """`change_job` in one round trip with the job as it is after the change; None if it did not match."""
        job = await self.jobs.find_one_and_update({"_id": job_id, **_matching(expect)}, {"$set": fields},
                                                  return_document=ReturnDocument.AFTER)
        self._passed(fields, job is not None)
        return job

    async def resume_point(self, job_id: str) -> tuple[int, int]:
        """Where a retried job's numbering goes on: (next event seq, next command number)."""
        last = await self.last_seq(job_id)
        job = await self.jobs.find_one({"_id": job_id}, {"commands": 1})
        nums = [int(k) for k in ((job or {}).get("commands") or {}) if str(k).isdigit()]
        return last + 1, max(nums, default=0) + 1

    async def job_states(self, job_ids: Iterable[str]) -> list[dict[str, Any]]:
        """For each of `job_ids` that exists: the fields of its state (apiary.core.jobstate.JobState.of)."""
        ids = list(job_ids)
        if not ids:
            return []
        fields = {"status": 1, "attempts": 1, "drone": 1, "history": 1, "dispatched": 1, "started": 1}
        return await self.jobs.find({"_id": {"$in": ids}}, fields).to_list(None)

    async def jobs_in_flight(self) -> list[dict[str, Any]]:
        """Jobs dispatched to or running on a drone."""
        statuses = [JobStatus.DISPATCHED.value, JobStatus.RUNNING.value]
        return await self.jobs.find({"status": {"$in": statuses}}, {"_id": 1, "drone": 1}).to_list(None)

    async def jobs_of_drone(self, drone_id: str) -> list[dict[str, Any]]:
        """Jobs the store believes `drone_id` is dispatched to or running."""
        statuses = [JobStatus.DISPATCHED.value, JobStatus.RUNNING.value]
        cursor = self.jobs.find({"drone": drone_id, "status": {"$in": statuses}}, {"_id": 1, "status": 1})
        return await cursor.to_list(None)

    async def jobs_for_retention(self, repo: str) -> list[dict[str, Any]]:
        cursor = self.jobs.find({"repo": repo}, {"_id": 1, "status": 1, "created": 1, "ref": 1, "number": 1,
                                                 "triggered_by": 1, "parent": 1,
                                                 "resume.stages": 1})  # what it reuses (retention keeps it)
        return [nested(job) for job in await cursor.sort("_id", DESCENDING).batch_size(READ_BATCH).to_list(None)]

    async def delete_jobs(self, job_ids: list[str]) -> None:
        """Delete jobs with their events, artifacts and test results."""
        for job_id in job_ids:
            await self.delete_artifacts(job_id)
        if job_ids:
            await self.delete_tests(job_ids)
            await self.delete_comments(job_ids)  # store/comments.py
            await self.events.delete_many({"job": {"$in": job_ids}})
            await self.jobs.delete_many({"_id": {"$in": job_ids}})


def _matching(expect: dict[str, Any]) -> dict[str, Any]:
    """A filter for `expect`: a job stored before a field existed matches its zero value (0, None)."""
    return {k: {"$in": [0, None]} if v == 0 and not isinstance(v, bool) else v for k, v in expect.items()}
