"""Test shards on the queen: a sharded stage's list read, split by past durations, given to its shards.

A sharded stage (apiary.core.shards) is compiled to a listing stage (``test · list``), which the job's
own drone runs, and N shard stages, remote stages of kind ``shard`` (apiary.core.spread) each run as a
child job. When the parent waits at its shards (its drone ended the attempt ``waiting``), apiary.queen.spread's
Spreader asks `Sharder.plan` (registered for kind ``shard``) what to give them; it

1. reads what the listing stage's command printed (its stdout as stored, at most MAX_OUTPUT_BYTES; a
   list the drone's log cap cut is refused, not split short),
2. reads the durations of the tests of the newest HISTORY_JOBS reported jobs of the job's branch, then
   of the repository's default branch (a new branch levels by main's history), at most HISTORY_ROWS,
3. splits the list (apiary.core.shards.plan), keeps the plan on the parent (``shard_plans``) and gives
   each shard its list as the file SHARD_FILE and APIARY_SHARD_FILE / _INDEX / _COUNT / _TESTS.

A list that cannot be used ends the parent failed, saying why (``its shard child jobs could not be made:
stage test: the tests command listed no tests``). The plan kept on the job (a few hundred bytes a shard; the lists go to the shards only)::

    shard_plans: [{stage, count, tests (names listed), known (of them with a recorded duration),
                   history_jobs, makespan (s, planned), even_makespan (s, the same list split by count),
                   unknown_seconds (what a test without history was taken to last),
                   shards: [{index, name (the shard's stage), tests, seconds (planned), known}]}]

    GET /api/v1/jobs/{job}/shards
        {job, stages: [plan + shards[i].{job, number, status, real (s, the shard's stage in its child job,
         its first command's start to its last one's end; null until it ended), job_seconds (s, the child
         job's whole run: checkout and setup too)}], shard_of?: {job, number, stage, shard, count} (a shard's
         own job: its parent and which shard it is)}: the planned and real time of each shard.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from apiary.core import spread
from apiary.core.errors import NotFound
from apiary.core.protocol import JobStatus
from apiary.core.shards import (
    HISTORY_JOBS,
    HISTORY_ROWS,
    MAX_OUTPUT_BYTES,
    UNKNOWN_SECONDS,
    ShardsError,
    durations,
    even_split,
    expected,
    listing_name,
    makespan,
    parse_tests,
    plan,
    shard_env,
    shard_file,
    shard_of,
)
from apiary.queen.store import Store
from apiary.queen.strict_json import json_response

from . import keys

log = logging.getLogger(__name__)

_ENDED = ("passed", "failed", "errored", "cancelled")
SHARD_FILE = ".apiary/shard-tests.txt"  # a shard's list, in its workspace (APIARY_SHARD_FILE)
_CUT = "apiary: output cut: "  # the drone's line when a job's output passed its log cap (drone/limits.py)

routes = web.RouteTableDef()


def shard_stages(job: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A job's sharded stages as written -> their shard stages, in index order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for stage in (job.get("pipeline") or {}).get("stages") or []:
        spec = stage.get("shards") or {}
        if (stage.get("remote") or {}).get("kind") == "shard" and isinstance(spec.get("of"), str):
            out.setdefault(spec["of"], []).append(stage)
    return {k: sorted(v, key=lambda s: s["shards"]["index"]) for k, v in out.items()}


async def listed(store: Store, job_id: str, stage: str) -> bytes:
    """What the listing stage of sharded `stage` printed on stdout in job `job_id` (its newest run)."""
    start, done = await store.stage_command(job_id, listing_name(stage))
    if start is None or done is None:
        raise ShardsError("", "its tests command did not run")
    text = await store.command_text(job_id, int(start["num"]), "job:cmd:stdout", MAX_OUTPUT_BYTES)
    if any(_CUT in line for line in await store.drone_lines(job_id, int(done["seq"]))):
        raise ShardsError("", "the list of tests was cut: the job's output passed the drone's log cap "
                              "(log_max_bytes); list files instead of tests, or print less before")
    return text.encode("utf-8", "surrogatepass")


async def known_durations(store: Store, repo: str, branch: str | None,
                          default_branch: str | None) -> tuple[dict[str, float], int]:
    """Each test's expected seconds over the newest reported jobs of `branch`, then of `default_branch`
    (this branch's runs first: a test's newest runs are what its median is taken of); and how many jobs
    were read."""
    jobs: list[dict[str, Any]] = []
    for name in dict.fromkeys(b for b in (branch, default_branch) if b):
        jobs += await store.reported_jobs(repo, name, None, HISTORY_JOBS)
    ids = list(dict.fromkeys(j["_id"] for j in jobs))
    return durations(await store.test_seconds(ids, HISTORY_ROWS)), len(ids)


async def plan_stage(store: Store, job: Mapping[str, Any], stage: str, count: int,
                     output: bytes) -> tuple[dict[str, Any], list[list[str]]]:
    """The plan of `job`'s sharded `stage` (as kept in ``shard_plans``) for the list in `output`, and each
    shard's list. Raises ShardsError when the list cannot be used."""
    started = time.monotonic()
    tests = parse_tests(output)
    repo = await store.get_repo(job["repo"]) or {}
    known, read = await known_durations(store, job["repo"], (job.get("ref") or {}).get("branch"),
                                        repo.get("default_branch"))
    shards, even = plan(tests, known, count), even_split(tests, known, count)
    seconds, had = expected(tests, known)
    unknown = statistics.median([seconds[t] for t in had]) if had else UNKNOWN_SECONDS
    log.info("job %s: stage %s: %d tests (%d with history from %d jobs) in %d shards, planned %.1f s "
             "(split by count %.1f s), in %.2f s", job.get("_id"), stage, len(tests), len(had), read,
             len(shards), makespan(shards), makespan(even), time.monotonic() - started)
    return ({"stage": stage, "count": count, "tests": len(tests), "known": len(had), "history_jobs": read,
             "makespan": makespan(shards), "even_makespan": makespan(even), "unknown_seconds": round(unknown, 3),
             "shards": [{"index": s["index"], "tests": len(s["tests"]), "seconds": s["seconds"],
                         "known": s["known"]} for s in shards]},
            [s["tests"] for s in shards])


class Sharder:
    """The planner of remote stages of kind ``shard`` (apiary.queen.spread's Spreader calls it for a waiting
    parent's ready shards, then makes a child per entry it returns)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def plan(self, job: Mapping[str, Any], units: list[str]) -> list[dict[str, Any]]:
        """``[{unit, env, files}]`` for `job`'s ready shard `units`: each shard's list as SHARD_FILE and its
        variables. Every shard of a stage is made at once (they need the same stages); the plans are kept on
        the job first. Raises SpreadError saying why a list cannot be used (the job then fails so)."""
        groups = shard_stages(job)
        plans = {p.get("stage"): p for p in job.get("shard_plans") or [] if isinstance(p, Mapping)}
        children: list[dict[str, Any]] = []
        decided = _decided(job)
        for stage, shards in groups.items():
            if not any(s["remote"]["unit"] in units for s in shards):
                continue
            if any(s["name"] in decided for s in shards):  # a re-run from the failed stage: the failed shards again
                kept, again = await self._again(job, stage, [s for s in shards if s["remote"]["unit"] in units])
                plans[stage] = kept
                children += again
                continue
            try:  # the list as printed in this job, or in the job whose listing it reuses
                output = await listed(self.store, decided.get(listing_name(stage), job["_id"]), stage)
                kept, lists = await plan_stage(self.store, job, stage, len(shards), output)
                texts = [shard_file(tests).decode() for tests in lists]
                for shard, text in zip(shards, texts, strict=True):
                    if len(text.encode()) > spread.MAX_GIVEN_BYTES:
                        raise ShardsError("", f"{shard['name']}'s list is over {spread.MAX_GIVEN_BYTES // 2**20} "
                                              "MiB: more shards, or list files instead of tests")
            except ShardsError as fault:
                raise spread.SpreadError(f"stage {stage}", fault.problem) from None
            for entry, shard in zip(kept["shards"], shards, strict=True):
                entry["name"] = shard["name"]
            plans[stage] = kept
            children += [{"unit": s["remote"]["unit"], "files": [{"name": SHARD_FILE, "text": text}],
                          "env": shard_env(s["shards"]["index"], len(shards), SHARD_FILE, len(tests))}
                         for s, tests, text in zip(shards, lists, texts, strict=True)
                         if s["remote"]["unit"] in units]
        # The plans first: the page shows them as the shards are queued (a plan whose shards never came is
        # harmless: the job failed or was cancelled, saying so).
        await self.store.change_job(job["_id"], {"status": JobStatus.WAITING.value, "attempts": job.get("attempts")},
                                    {"shard_plans": list(plans.values())})
        return children


    async def _again(self, job: Mapping[str, Any], stage: str, shards: list[dict[str, Any]]) -> tuple[
            dict[str, Any], list[dict[str, Any]]]:
        """A re-run's failed `shards` of `stage`, each with the list it had in the job the re-run reuses the
        others from (its child job keeps it): with a new split, a test could run twice or not at all."""
        # The nearest job that has them: the job re-run (its own shard jobs ran the failed shards), then the
        # one whose listing it reused (a re-run of a re-run whose first job is gone still has its lists).
        ids = list(dict.fromkeys(i for i in [str((job.get("resume") or {}).get("from_job") or ""),
                                             _decided(job).get(listing_name(stage), "")] if i))
        jobs = [j for j in [await self.store.get_job(i) for i in ids] if j is not None]
        kept = next((p for j in jobs for p in j.get("shard_plans") or [] if p.get("stage") == stage), None)
        out = []
        for shard in shards:
            given = []
            for earlier in jobs:
                made = {c.get("unit"): c for c in earlier.get("children") or [] if isinstance(c, Mapping)}
                child = await self.store.get_job(str((made.get(shard["name"]) or {}).get("job")))
                given = [f for f in ((child or {}).get("resume") or {}).get("given") or []
                         if f.get("name") == SHARD_FILE]
                if given:
                    break
            if kept is None or not given:
                raise spread.SpreadError(f"stage {stage}", f"{shard['name']}'s list in the job re-run is gone "
                                                           "(pruned): re-run the whole job")
            tests = sum(1 for line in str(given[0]["text"]).splitlines() if line)
            out.append({"unit": shard["remote"]["unit"], "files": [{"name": SHARD_FILE, "text": given[0]["text"]}],
                        "env": shard_env(shard["shards"]["index"], shard["shards"]["count"], SHARD_FILE, tests)})
        return dict(kept or {}), out


def _decided(job: Mapping[str, Any]) -> dict[str, str]:
    """The stages a partial run reuses -> the job they passed in (apiary.core.partial)."""
    given = (job.get("resume") or {}).get("stages") or {}
    return {name: str(e.get("job")) for name, e in given.items()
            if isinstance(e, Mapping) and e.get("status") == "passed" and e.get("job")}


async def _watch(app: web.Application) -> AsyncIterator[None]:
    """A cleanup context, after apiary.queen.spread's: the spreader asks the sharder for shards' lists."""
    from apiary.queen.spread import SPREADER

    app[SPREADER].register("shard", Sharder(app[keys.STORE]).plan)
    yield


async def shards_of(store: Store, job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`job`'s shard plans, each shard with its child job and real time (seconds from its start to its end;
    None until it ended)."""
    children = {c.get("unit"): c for c in job.get("children") or [] if isinstance(c, Mapping)}
    reused = _decided(job)
    given = (job.get("resume") or {}).get("stages") or {}
    out = []
    for kept in job.get("shard_plans") or []:
        if not isinstance(kept, Mapping):
            continue
        shards = []
        for entry in kept.get("shards") or []:
            shard = dict(entry)
            child = children.get(entry.get("name"))
            shard.update(job=None, number=None, status=None, real=None, job_seconds=None)
            if child is None and entry.get("name") in reused:  # a re-run from the failed stage reuses it
                ran = given[entry["name"]]  # where it passed: the earlier job's child (apiary.core.spread.fold)
                shard.update(status="reused", job=reused[entry["name"]], number=ran.get("number"))
                doc = await store.get_job(reused[entry["name"]])
                if doc is not None:
                    shard["real"], shard["job_seconds"] = _stage_seconds(doc, str(entry.get("name"))), _real(doc)
            if child is not None:
                shard.update(job=child.get("job"), number=child.get("number"), status=child.get("status"))
                doc = await store.get_job(str(child.get("job")))
                if doc is not None:
                    shard["status"] = doc.get("status")
                    shard["real"], shard["job_seconds"] = _stage_seconds(doc, str(entry.get("name"))), _real(doc)
            shards.append(shard)
        out.append({**kept, "shards": shards})
    return out


def _stage_seconds(job: Mapping[str, Any], stage: str) -> float | None:
    """How long `stage` ran in `job`: from its first command's start to its last one's end (its hooks too;
    None until it ended). What a shard's plan predicts, without the child's checkout and setup."""
    spans = [(c["started"], c["started"] + c["duration"]) for c in (job.get("commands") or {}).values()
             if isinstance(c, Mapping) and c.get("stage") == stage and isinstance(c.get("started"), (int, float))
             and isinstance(c.get("duration"), (int, float))]
    if not spans or job.get("status") not in _ENDED:
        return None
    return round(max(end for _, end in spans) - min(start for start, _ in spans), 3)


def _real(job: Mapping[str, Any]) -> float | None:
    """A child job's run in seconds, from its start to its end (None while it runs)."""
    started, finished = job.get("started"), job.get("finished")
    if isinstance(started, (int, float)) and isinstance(finished, (int, float)) and finished >= started:
        return round(float(finished) - float(started), 3)
    return None


@routes.get("/api/v1/jobs/{job}/shards")
async def job_shards(request: web.Request) -> web.Response:
    store = request.app[keys.STORE]
    job_id = request.match_info["job"]
    job = await store.get_job(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}; it may have been pruned")
    mine = shard_of(job)  # a shard's own job says whose shard it is (what `apiary shards` says of it)
    return json_response({"job": job_id, "stages": await shards_of(store, job), **({"shard_of": mine} if mine else {})})


@routes.get("/parts/jobs/{job}/shards")
async def part_shards(request: web.Request) -> web.Response:
    """The job page's Shards panel, drawn again (web/static/shards.js)."""
    from apiary.queen.api import load_job
    from apiary.queen.pages import render

    job = await load_job(request)
    return render(request, "parts/job_shard_plans.html", plans=await shards_of(request.app[keys.STORE], job))


def setup(app: web.Application) -> None:
    """Test shards on the queen's app (apiary.queen.app): the API route, the sharder (after the spreader)."""
    app.add_routes(routes)
    app.cleanup_ctx.append(_watch)
