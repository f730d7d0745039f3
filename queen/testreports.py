"""The test reports' API: a job's tests, and a test's history in its repository (apiary.core.testhistory).

    GET /api/v1/jobs/{job}/tests?status=&offset=&limit=
        {job, report: {tests, passed, failed, errors, skipped, seconds, stored, files} | null,
         total, offset, limit, tests: [{test, name, classname, suite, status, seconds, message?, text?,
         history: {passed, failed, skipped, flips, flaky, why}}]}
        failed and errored tests first, then skipped, then passed; history over the branch's last
        WINDOW jobs with test results up to this one: jobs that speak for the branch (no bisect's; a
        child job's results count with its parent's, apiary.core.branchjobs).
    GET /api/v1/repos/{repo}/tests/history?test=NAME&branch=B
        {repo, branch, test, window, runs: [{job, number, commit, status, seconds, message?}] newest first,
         passed, failed, skipped, flips, flaky, why}; branch defaults to the repository's default branch.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from apiary.core.errors import BadRequest, NotFound
from apiary.core.junit import MAX_NAME, STATUSES
from apiary.core.spread import family_report
from apiary.core.testhistory import WINDOW, counted_for, history
from apiary.queen.store import Store
from apiary.queen.strict_json import json_response
from apiary.queen.validate import query_int

from . import keys

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

MAX_PAGE = 500


@routes.get("/api/v1/jobs/{job}/tests")
async def job_tests(request: web.Request) -> web.Response:
    store = request.app[keys.STORE]
    job_id = request.match_info["job"]
    job = await store.get_job(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}; it may have been pruned")
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}", field="status")
    offset = query_int(request, "offset", 0, 0, 10**7)
    limit = query_int(request, "limit", 100, 1, MAX_PAGE)
    # A parent's children's tests are its own too (a sharded stage's ran in its shards): each row names its job.
    family = {k["job"]: k for k in job.get("family_reports") or [] if isinstance(k, dict) and k.get("job")}
    if family:
        job["report"] = family_report(job.get("report"), list(family.values()))
    tests = await store.job_tests([job_id, *family] if family else job_id, status, offset, limit)
    for test in tests:
        if test.get("job") in family:
            test.update(number=family[test["job"]].get("number"), unit=family[test["job"]].get("unit"))
    # What the drone said it sent: counting the stored tests would cost the store seconds (nx-27017: 1.4 s
    # for 20,000).
    report = job.get("report") or {}
    total = (report.get("listed") or {}).get(status, 0) if status else report.get("stored", 0)
    if tests and job.get("report"):
        marks = await histories(store, job["repo"], (job.get("ref") or {}).get("branch"), job.get("number"),
                                [t["test"] for t in tests if isinstance(t.get("test"), str)])
        for test in tests:
            test["history"] = marks.get(test.get("test"), history([]))
    return json_response({"job": job_id, "report": job.get("report"), "total": total, "offset": offset,
                          "limit": limit, "tests": tests})


@routes.get("/api/v1/repos/{repo}/tests/history")
async def test_history(request: web.Request) -> web.Response:
    store = request.app[keys.STORE]
    name = request.match_info["repo"]
    repo = await store.get_repo(name)
    if repo is None:
        raise NotFound(f"no repository {name!r}")
    test = request.query.get("test") or ""
    if not test or len(test) > 2 * MAX_NAME + 1:
        raise BadRequest("test: give a test as the job's tests name it (classname.name)", field="test")
    branch = request.query.get("branch") or repo.get("default_branch") or None
    order = counted_for(await store.history_jobs(name, branch, None, WINDOW))
    found = await store.test_runs(name, [test], list(order))
    # Newest run first; a run's child jobs (cells, shards) in their order. Each row names the job that holds it.
    runs = [{"job": run["job"], "number": run.get("number"), "commit": run.get("commit"), "status": run.get("status"),
             "seconds": run.get("seconds"), **({"message": run["message"]} if run.get("message") else {})}
            for run in sorted(found, key=lambda r: (order.get(r["job"], 0), r.get("number") or 0))]
    return json_response({"repo": name, "branch": branch, "test": test, "window": WINDOW, "runs": runs,
                          **history(runs)})


async def histories(store: Store, repo: str, branch: str | None, number: int | None,
                    tests: list[str]) -> dict[str, dict[str, Any]]:
    """Each of `tests`' history (apiary.core.testhistory) over the branch's last WINDOW jobs with test results
    up to job `number` (jobs that speak for the branch, with their child jobs' results): three queries for a
    whole page of tests."""
    order = counted_for(await store.history_jobs(repo, branch, number, WINDOW))
    runs: dict[str, list[dict[str, Any]]] = {}
    for run in await store.test_runs(repo, tests, list(order)):
        runs.setdefault(run["test"], []).append(run)
    return {test: history(sorted(found, key=lambda r: order.get(r["job"], 0))) for test, found in runs.items()}
