"""The store's test results: collection ``tests``, one document per test of a job's report.

``_id`` is ``JOB:A:N`` (A the job's attempt, N the test's place in its report,
from 0), so a ``job:report`` part stored twice (a drone resending after a queen
restart) stores each test once; a later attempt's first part replaces the
earlier attempts' tests (a job's report is its last attempt's, as its counts are). Each document: job, repo, branch, commit, number (the
job's), test (``classname.name``: its identity in the repository's history),
name, classname, suite, status, rank (0 failed or errored, 1 skipped, 2
passed: the order a job's tests are listed in), n, seconds, message?, text?.
Rows go in batches of WRITE_BATCH. Indexed by (job, rank, n) for a job's list
and (repo, test) for a test's history.
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from apiary.core.branchjobs import SPEAKS_FOR_BRANCH
from apiary.core.junit import MAX_TESTS

log = logging.getLogger(__name__)

WRITE_BATCH = 1000  # test documents per insert
_RANK = {"failed": 0, "error": 0, "skipped": 1, "passed": 2}
_DUPLICATE = 11000


class TestQueries:
    """Tests of jobs' reports: saved once each, listed failed first, a test's history by repository."""

    __test__ = False  # not a pytest class

    jobs: AsyncCollection
    tests: AsyncCollection

    async def ensure_test_indexes(self) -> None:
        await self.tests.create_index([("job", ASCENDING), ("rank", ASCENDING), ("n", ASCENDING)])
        await self.tests.create_index([("repo", ASCENDING), ("test", ASCENDING)])

    async def save_tests(self, job_id: str, first: int, tests: list[dict[str, Any]], attempt: int = 1) -> None:
        """Store the tests of one ``job:report`` part (numbered from `first`) of the job's `attempt`; storing it
        again is a no-op."""
        tests = tests[:max(0, MAX_TESTS - first)]  # what a drone may send for one job, whatever it sends
        if not tests or first < 0:
            return
        if first == 0:  # a new attempt's report: the earlier attempts' tests would be listed with its counts
            await self.tests.delete_many({"job": job_id, "attempt": {"$ne": attempt}})
        job = await self.jobs.find_one({"_id": job_id}, {"repo": 1, "ref": 1, "number": 1})
        if job is None:
            return
        ref = job.get("ref") or {}
        base = {"job": job_id, "repo": job.get("repo"), "branch": ref.get("branch"), "commit": ref.get("id"),
                "number": job.get("number")}
        docs = []
        for i, test in enumerate(tests):
            if not isinstance(test, dict):
                continue
            doc = {k: test[k] for k in ("test", "name", "classname", "suite", "status", "seconds", "message", "text")
                   if isinstance(test.get(k), (str, int, float)) and not isinstance(test.get(k), bool)}
            doc.update(base, _id=f"{job_id}:{attempt}:{first + i}", n=first + i, attempt=attempt,
                       rank=_RANK.get(str(doc.get("status")), 2))
            docs.append(doc)
        for start in range(0, len(docs), WRITE_BATCH):
            try:
                await self.tests.insert_many(docs[start:start + WRITE_BATCH], ordered=False)
            except BulkWriteError as exc:  # a part stored before: its tests are there already
                others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != _DUPLICATE]
                if others:
                    raise

    async def job_tests(self, job_id: str | list[str], status: str | None, skip: int,
                        limit: int) -> list[dict[str, Any]]:
        """A job's tests, failed and errored first, then skipped, then passed; in report order within each.
        Several jobs (a parent and its children, apiary.queen.spread): their tests together, by job within each."""
        query: dict[str, Any] = {"job": job_id if isinstance(job_id, str) else {"$in": list(job_id)}}
        if status:
            query["status"] = status
        cursor = self.tests.find(query, {"_id": 0, "repo": 0, "branch": 0, "rank": 0, "attempt": 0})
        order = [("rank", ASCENDING), ("n", ASCENDING)] if isinstance(job_id, str) else \
            [("rank", ASCENDING), ("job", ASCENDING), ("n", ASCENDING)]
        return await cursor.sort(order).skip(skip).limit(limit).to_list(None)

    async def reported_jobs(self, repo: str, branch: str | None, up_to: int | None,
                            limit: int) -> list[dict[str, Any]]:
        """The repository's last `limit` jobs (of `branch`, if given; numbered `up_to` at most, if given)
        that sent a test report, newest first; not a bisect's jobs (older commits on purpose: a test that fails
        there and passes at the head is not flaky)."""
        query: dict[str, Any] = {"repo": repo, "report": {"$exists": True}, "triggered_by.kind": {"$ne": "bisect"}}
        if branch:
            query["ref.branch"] = branch
        if up_to is not None:
            query["number"] = {"$lte": up_to}
        cursor = self.jobs.find(query, {"_id": 1, "number": 1, "ref": 1, "status": 1})
        return await cursor.sort("number", DESCENDING).limit(limit).to_list(None)

    async def history_jobs(self, repo: str, branch: str | None, up_to: int | None,
                           limit: int) -> list[dict[str, Any]]:
        """A test history's window: the repository's last `limit` jobs (of `branch`, numbered `up_to` at most)
        that speak for their branch (apiary.core.branchjobs: no bisect's, no child job) and have test
        results, their own or their child jobs' (a sharded stage's tests ran in its shards), newest first:
        [{_id, number, ref, status, family: [the child jobs' ids whose reports the job keeps]}]."""
        query: dict[str, Any] = {"repo": repo, "$or": [{"report": {"$exists": True}},
                                                       {"family_reports": {"$exists": True}}], **SPEAKS_FOR_BRANCH}
        if branch:
            query["ref.branch"] = branch
        if up_to is not None:
            query["number"] = {"$lte": up_to}
        cursor = self.jobs.find(query, {"_id": 1, "number": 1, "ref": 1, "status": 1, "family_reports": 1})
        jobs = await cursor.sort("number", DESCENDING).limit(limit).to_list(None)
        for job in jobs:
            family = job.pop("family_reports", None)
            job["family"] = [f["job"] for f in family if isinstance(f, dict) and isinstance(f.get("job"), str)] \
                if isinstance(family, list) else []
        return jobs

    async def test_runs(self, repo: str, tests: list[str], job_ids: list[str]) -> list[dict[str, Any]]:
        """The results of `tests` in jobs `job_ids`: [{job, number, commit, test, status, seconds}]."""
        if not tests or not job_ids:
            return []
        cursor = self.tests.find({"repo": repo, "test": {"$in": tests}, "job": {"$in": job_ids}},
                                 {"_id": 0, "job": 1, "number": 1, "commit": 1, "test": 1, "status": 1, "seconds": 1,
                                  "message": 1})
        return await cursor.to_list(None)

    async def test_seconds(self, job_ids: list[str], limit: int) -> list[dict[str, Any]]:
        """The tests' durations in jobs `job_ids`, job by job in that order: [{test, seconds}], `limit` rows at
        most (test sharding's history, apiary.queen.shards)."""
        out: list[dict[str, Any]] = []
        for job_id in job_ids:
            if len(out) >= limit:
                break
            cursor = self.tests.find({"job": job_id}, {"_id": 0, "test": 1, "seconds": 1})
            out += await cursor.limit(limit - len(out)).to_list(None)
        return out

    async def delete_tests(self, job_ids: list[str]) -> None:
        if job_ids:
            await self.tests.delete_many({"job": {"$in": job_ids}})
