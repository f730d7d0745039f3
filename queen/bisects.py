"""Bisect across drones, on the queen: the API, and the driver that runs a bisect's jobs as their rounds end.

``POST /api/v1/repos/{repo}/bisects`` ``{good, bad, stage?, branch?, parameters?}`` or ``{from_job}`` (a
failed job: bad is its commit, its given parameters go to the bisect's jobs, good is the commit of the
newest passed job of its branch that is an ancestor of bad) reads the commits between them
(apiary.queen.bisectgit), stores the bisect (apiary.queen.store.bisects has its document) and starts its
first round, which runs the bad commit too: a bisect whose bad commit does not fail as asked ends
``unreproduced`` (apiary.core.bisect.decide), blaming nothing. ``GET /api/v1/bisects/{id}``, ``GET /api/v1/repos/{repo}/bisects``,
``POST /api/v1/bisects/{id}/cancel``. What to run next is apiary.core.bisect's to decide; this module
carries it out: the jobs are made the normal way (apiary.queen.jobs.create_job: the repository's
pipeline source, read at the commit, its when: and concurrency) pinned to the commit, without the
stages a bisect never runs (apiary.core.bisect.left_out: deploy stages, approval gates and what needs
them), with ``triggered_by`` ``{"kind": "bisect", "name": "#N", "bisect": id}``; a commit whose job cannot be made
(no pipeline there, or one that does not validate) is skipped with the reason.

The driver (`Bisector`) hears jobs end through `Hub.listen_jobs` (as plugins' reactions do) and
advances the bisect the job belongs to; a queen that starts takes up every running bisect from its
document (jobs that ended while it was down are read from the store). Advances of one bisect run one at
a time (a lock per bisect) and write with a compare-and-set on its version. Each change is published on
the hub's topic ``bisect:<id>`` (``{"type": "bisect", "bisect": id, "version", "status"}``) for its page.

Bounds: MAX_COMMITS commits between good and bad (apiary.core.bisect), MAX_RUNNING bisects running per
repository, at most MAX_SLOTS cuts a round (the first runs the bad commit too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import ulid
from aiohttp import web
from pymongo.errors import PyMongoError

from apiary.core import bisect as decide_
from apiary.core.errors import BadRequest, Conflict, GitError, InputError, NotFound
from apiary.core.fields import get_str, no_unknown
from apiary.core.jobrequest import job_request
from apiary.core.protocol import JobStatus
from apiary.queen import bisectgit
from apiary.queen.repos import repo_auth
from apiary.queen.store import Store
from apiary.queen.store import bisects as stored
from apiary.queen.strict_json import json_response
from apiary.queen.validate import query_int, read_json

from . import keys

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

MAX_RUNNING = 1  # bisects running at once per repository
JOB_TYPE = "TEST"  # a bisect's jobs: never a deploy (an old commit deployed is harm, not evidence)
LISTED = 50  # bisects a repository's list gives by default (at most 500)
READ_WAIT = 20.0  # seconds a request to start a bisect waits for its history to be read
RETRY_AFTER = 5.0  # seconds before a bisect the store failed goes on
BISECT: web.AppKey[Bisector] = web.AppKey("bisector")
FINAL = {s.value for s in JobStatus if s.final}


def _ids(request: web.Request) -> str:
    bisect_id = request.match_info["bisect"]
    if not bisect_id.isalnum() or len(bisect_id) > 64:
        raise NotFound(f"no bisect {bisect_id[:64]!r}")
    return bisect_id


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """A bisect as the API gives it: its document without the line of commits (``commits``: how many),
    with ``left`` (commits the first bad one may still be among) and ``url`` (its page)."""
    out = {k: v for k, v in doc.items() if k not in ("_id", "commits", "size", "good_among")}
    commits = doc.get("commits")
    out["commits"] = doc.get("size", 0)
    if isinstance(commits, list):
        lo, hi = _range(doc)
        out["left"] = hi - lo
    out["url"] = f"/bisects/{doc['_id']}"
    return {"id": doc["_id"], **out}


def _evidence(tries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tries as the search reads them: one cancelled as unneeded is neither good nor bad, even if its
    job ended all the same (it keeps its own word on the page, flagged unneeded)."""
    return [{**t, "verdict": decide_.UNNEEDED} if t.get("unneeded") else t for t in tries]


def _settling(t: dict[str, Any]) -> bool:
    """A try cancelled as unneeded whose job's end is not known yet."""
    return bool(t.get("unneeded")) and t["verdict"] == decide_.UNNEEDED and not t.get("status")


def _range(doc: dict[str, Any]) -> tuple[int, int]:
    verdicts = {t["index"]: t["verdict"] for t in doc.get("tries") or [] if t.get("verdict") and not t.get("unneeded")}
    return decide_._range(len(doc.get("commits") or []), verdicts)


class Bisector:
    """Runs the bisects of one queen (module docstring)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.store: Store = app[keys.STORE]
        self._locks: dict[str, asyncio.Lock] = {}
        self._watch: dict[str, str] = {}  # job id -> bisect id, for the running tries
        self._tasks: set[asyncio.Task[None]] = set()
        self._starting: dict[str, asyncio.Lock] = {}  # per repository: the running cap's check and the insert

    @property
    def git_dir(self) -> Any:
        return self.app[keys.CONFIG].data_path / "bisect-git"

    # -- reacting ----------------------------------------------------------------------

    def on_status(self, job_id: str, status: str, job: dict[str, Any] | None = None) -> None:
        bisect_id = self._watch.get(job_id)
        if bisect_id is None:
            return
        if status in FINAL:
            self._watch.pop(job_id, None)
            self.spawn(self.advance(bisect_id))
        else:  # started, or queued again: the page shows it
            self._publish({"_id": bisect_id, "version": None, "status": "running"})

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(self._logged(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _logged(coro: Any) -> None:
        try:
            await coro
        except Exception:
            log.exception("bisect: advancing failed")

    async def resume(self) -> None:
        """Take up the bisects a queen left running."""
        for bisect_id in await stored.running(self.store):
            log.info("bisect %s: taken up again", bisect_id)
            doc = await stored.get(self.store, bisect_id, commits=False)
            repo = await self.store.get_repo(doc["repo"]) if doc else None
            if doc is not None and doc.get("reading") and repo is not None:
                self.spawn(self._read(bisect_id, repo, {"answering": False}))
            else:
                self.spawn(self.advance(bisect_id))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _publish(self, doc: dict[str, Any]) -> None:
        self.app[keys.HUB].publish(f"bisect:{doc['_id']}", {"type": "bisect", "bisect": doc["_id"],
                                                            "version": doc.get("version"),
                                                            "status": doc.get("status")})

    def free_slots(self) -> int:
        """Free slots in the pool now: a round's k (apiary.core.bisect clamps it to 1..MAX_SLOTS)."""
        return sum(max(0, v.capacity - v.running) for v in self.app[keys.HIVE].pool.views())

    async def _slots(self, tries: list[dict[str, Any]]) -> int:
        """A round's k: the free slots, and those the bisect's own jobs cancelled as unneeded still hold
        (they are being stopped; counting them busy would run a round of one job beside idle slots)."""
        stopping = [t["job"] for t in tries if _settling(t) and t.get("job")]
        states = await self.store.job_states(stopping) if stopping else []
        held = sum(j.get("status") in ("dispatched", "running") for j in states)  # a slot each until it stops
        return self.free_slots() + held

    # -- advancing ---------------------------------------------------------------------

    async def advance(self, bisect_id: str) -> None:
        """Read the verdicts of the tries whose jobs ended, then do what apiary.core.bisect.decide says,
        until a job runs or the bisect is done."""
        try:
            await self._advance_locked(bisect_id)
        except PyMongoError as exc:  # the store is away (restarting): try again a little later
            log.warning("bisect %s: store unavailable (%s); trying again in %g s", bisect_id, exc, RETRY_AFTER)
            self.spawn(self._later(bisect_id))

    async def _advance_locked(self, bisect_id: str) -> None:
        lock = self._locks.setdefault(bisect_id, asyncio.Lock())
        async with lock:
            doc = await stored.get(self.store, bisect_id)
            if doc is None or doc.get("status") != stored.RUNNING:
                tries = [dict(t) for t in (doc or {}).get("tries") or []]
                if doc is not None and any(_settling(t) for t in tries) and await self._verdicts(doc, tries):
                    await self._save(doc, {"tries": tries})  # an unneeded job's own end, known after the bisect's
                self._locks.pop(bisect_id, None)
                return
            if doc.get("reading"):
                return  # its history is still being read (`_read` advances it then)
            repo = await self.store.get_repo(doc["repo"])
            if repo is None:
                await self._end(doc, "failed", error=f"the repository {doc['repo']!r} no longer exists")
                return
            try:
                await self._advance(doc, repo)
            except PyMongoError:
                raise
            except Exception as exc:
                log.exception("bisect %s: cannot go on", bisect_id)
                await self._end(doc, "failed", error=f"the queen could not go on ({type(exc).__name__}); "
                                                     "its log has the details")

    async def _later(self, bisect_id: str) -> None:
        await asyncio.sleep(RETRY_AFTER)
        await self.advance(bisect_id)

    async def _advance(self, doc: dict[str, Any], repo: dict[str, Any]) -> None:
        """One advance of `doc` (under its lock): verdicts in, then rounds until a job runs or it is done."""
        bisect_id = doc["_id"]
        tries = [dict(t) for t in doc.get("tries") or []]
        changed = await self._verdicts(doc, tries)
        n = len(doc["commits"])
        while True:  # a round whose every commit is skipped at once is followed by the next (each tries new ones)
            step = decide_.decide(n, _evidence(tries), await self._slots(tries))
            ended = step.done and not (step.result or {}).get("reproduced")
            dropped = False
            for index in step.cancel:
                dropped |= await self._drop(doc, tries, index, "no longer needed (the bad commit did not fail as asked): "
                                                           "cancelled" if ended else None)
            changed |= dropped
            if dropped and step.run:  # the slots of the jobs just cancelled are this round's too
                step = decide_.decide(n, _evidence(tries), await self._slots(tries))
            if step.done:
                await self._finish(doc, tries, step.result or {}, repo)
                return
            if not step.run:
                break
            doc["rounds"] = int(doc.get("rounds") or 0) + 1
            for index in step.run:
                tries.append(await self._try(doc, repo, index, doc["rounds"]))
                await self._save(doc, {"tries": tries, "rounds": doc["rounds"]})
            changed = False
            if any(t["verdict"] is None for t in tries):
                break
        if changed:
            await self._save(doc, {"tries": tries})
        for t in tries:
            if (t["verdict"] is None or _settling(t)) and t.get("job"):
                self._watch[t["job"]] = bisect_id
        # A job that ended between its creation and the watch above is read now.
        ended = [t for t in tries if t["verdict"] is None and t.get("job") and
                 ((await self.store.get_job(t["job"])) or {}).get("status", "errored") in FINAL]
        if ended:
            self.spawn(self.advance(bisect_id))

    async def _verdicts(self, doc: dict[str, Any], tries: list[dict[str, Any]]) -> bool:
        """Fill in the verdicts of tries whose jobs have ended; whether any was. A try cancelled as unneeded
        whose job ended by itself all the same (it failed or passed before the cancel reached it) says what
        its job said, flagged ``unneeded`` (the search ignores it)."""
        changed = False
        for t in tries:
            if t["verdict"] is not None and not _settling(t):
                continue
            job = await self.store.get_job(t["job"]) if t.get("job") else None
            if job is None:
                if t["verdict"] is None:
                    t["verdict"], t["reason"] = decide_.SKIP, "its job no longer exists (pruned)"
                else:
                    t["status"] = "pruned"
            elif job["status"] in FINAL:
                await self._read_verdict(doc, t, job)
            else:
                continue
            changed = True
        return changed

    async def _read_verdict(self, doc: dict[str, Any], t: dict[str, Any], job: dict[str, Any]) -> None:
        """`t`'s verdict from its ended `job` (an unneeded try's only when its job ran to an end)."""
        from apiary.queen.api import outcome_of  # the API's own outcome of a job

        t["status"] = job["status"]
        if t["verdict"] == decide_.UNNEEDED and job["status"] not in ("passed", "failed"):
            return  # cancelled as asked: it said nothing
        stages = (await outcome_of(self.store, job))["stages"] if doc.get("stage") else []
        t["verdict"], t["reason"] = decide_.verdict(job, doc.get("stage"), stages)
        if t.get("unneeded"):
            t["reason"] += "; no longer needed by then, so it did not change the answer"

    async def _drop(self, doc: dict[str, Any], tries: list[dict[str, Any]], index: int,
                    reason: str | None = None) -> bool:
        """A running try outside the range: its job is cancelled, its commit no longer matters (``unneeded``;
        a job that has ended already keeps its verdict, flagged unneeded)."""
        for t in tries:
            if t["index"] == index and t["verdict"] is None:
                t["verdict"], t["unneeded"] = decide_.UNNEEDED, True
                t["reason"] = reason or "no longer needed (outside the range): cancelled"
                job = await self.store.get_job(t["job"]) if t.get("job") else None
                if job is not None and job["status"] in FINAL:
                    await self._read_verdict(doc, t, job)
                elif job is not None:
                    await self.app[keys.HIVE].cancel(job, "its bisect no longer needs it")
                return True
        return False

    async def _try(self, doc: dict[str, Any], repo: dict[str, Any], index: int, round_: int) -> dict[str, Any]:
        """A job at commit `index`, made as any job is; a commit it cannot be made at is skipped."""
        from apiary.queen.jobs import create_job

        sha = doc["commits"][index]
        entry: dict[str, Any] = {"index": index, "commit": sha, "round": round_, "verdict": None, "reason": None}
        by = {"kind": "bisect", "name": f"#{doc['number']}", "bisect": doc["_id"]}
        user = str((doc.get("by") or {}).get("name") or "")
        trigger = {"source": "API", "type": "bisect", "message": f"bisect #{doc['number']}: {sha[:12]}",
                   **({"author": user} if user else {})}
        app = self.app
        try:
            asked = job_request(repo, {"branch": doc["branch"], "commit": sha, "trigger": trigger,
                                       "parameters": doc.get("parameters") or {}}, time.time())
            job = await create_job(self.store, app[keys.HIVE].dispatcher, app[keys.CONFIG].data_path / "git", repo,
                                   asked, plugins=app[keys.PLUGINS], by=by,  # type: ignore[arg-type]
                                   shape=decide_.bisect_pipeline)  # type: ignore[arg-type]
        except InputError as exc:  # no pipeline there, or one that does not validate: cannot be built
            entry["verdict"], entry["reason"] = decide_.SKIP, f"cannot be built: {str(exc)[:500]}"
            return entry
        entry.update({"job": job["_id"], "number": job["number"]})
        self._watch[job["_id"]] = doc["_id"]
        return entry

    async def _finish(self, doc: dict[str, Any], tries: list[dict[str, Any]], found: dict[str, Any],
                      repo: dict[str, Any]) -> None:
        commits = doc["commits"]
        if not found.get("reproduced"):  # the bad end did not fail as asked: no answer is an answer
            end = next((t for t in tries if t["index"] == found.get("index") and t.get("verdict")), {})
            why = str(end.get("reason") or "its job did not fail")
            await self._end(doc, "unreproduced", tries=tries, result={"reproduced": False, "try": end or None},
                            error=f"could not reproduce: {why} at {doc['bad'][:12]}")
            return
        candidates = [commits[i] for i in found.get("candidates") or []]
        facts = await bisectgit.commit_facts(self.git_dir, repo.get("url") or "", candidates[:50])
        # Only this bisect's own jobs are evidence: each ran with its settings (parameters, stage, branch).
        jobs = {t["commit"]: {"job": t["job"], "number": t.get("number")} for t in tries if t.get("job")}
        shown = [{"commit": sha, **facts.get(sha, {}), **jobs.get(sha, {})} for sha in candidates[:50]]
        last_good = found.get("last_good", -1)
        result = {"reproduced": True, "first_bad": shown[0] if found.get("first_bad") is not None and shown else None,
                  "candidates": shown, "last_good": commits[last_good] if last_good >= 0 else doc["good"],
                  # -1: the good end, taken as given (as git bisect does), never run by this bisect
                  "good_assumed": last_good < 0}
        await self._end(doc, "found" if result["first_bad"] else "range", tries=tries, result=result)

    async def _end(self, doc: dict[str, Any], status: str, **fields: Any) -> None:
        await self._save(doc, {"status": status, "finished": time.time(), **fields})
        self._locks.pop(doc["_id"], None)
        log.info("bisect %s (%s #%s): %s", doc["_id"], doc["repo"], doc.get("number"), status)

    async def _save(self, doc: dict[str, Any], fields: dict[str, Any]) -> None:
        if not await stored.save(self.store, doc, fields):
            raise RuntimeError(f"bisect {doc['_id']} changed under its lock")
        self._publish(doc)

    async def cancel(self, bisect_id: str, identity: dict[str, Any] | None = None) -> dict[str, Any]:
        """Cancel a running bisect and its jobs that have not ended; ``cancelled_by`` records who
        (apiary.core.context.triggered_by of `identity`)."""
        from apiary.core.context import triggered_by

        lock = self._locks.setdefault(bisect_id, asyncio.Lock())
        async with lock:
            doc = await stored.get(self.store, bisect_id, commits=False)
            if doc is None:
                raise NotFound(f"no bisect {bisect_id!r}")
            if doc.get("status") != stored.RUNNING:
                raise Conflict(f"bisect #{doc.get('number')} of {doc.get('repo')} has already ended "
                               f"({doc.get('status')})", field="status")
            tries = [dict(t) for t in doc.get("tries") or []]
            for t in tries:
                if t["verdict"] is None:
                    job = await self.store.get_job(t["job"]) if t.get("job") else None
                    self._watch.pop(t.get("job") or "", None)
                    if job is not None and job["status"] in FINAL:  # it ended first: what it said stands
                        await self._read_verdict(doc, t, job)
                        continue
                    if job is not None:
                        await self.app[keys.HIVE].cancel(job, "its bisect no longer needs it")
                    t["verdict"], t["reason"] = "cancelled", "cancelled with its bisect"
            await self._end(doc, "cancelled", tries=tries, cancelled_by=triggered_by(identity))
            return doc

    # -- starting ----------------------------------------------------------------------

    async def start(self, repo: dict[str, Any], body: dict[str, Any], identity: dict[str, Any] | None) -> dict[str, Any]:
        """Check the request, read the commits, store the bisect and run its first round."""
        no_unknown(body, {"good", "bad", "stage", "branch", "from_job", "parameters"})
        stage = decide_.check_stage(body.get("stage"))
        from_job = get_str(body, "from_job")
        good_among: list[str] = []
        if from_job:
            good_among, bad, branch, parameters, from_job = await self._from_job(repo, from_job, body)
            good = good_among[0]
        else:
            good = bisectgit.check_sha(body.get("good"), "good")
            bad = bisectgit.check_sha(body.get("bad"), "bad")
            branch = get_str(body, "branch") or repo.get("default_branch") or "main"
            parameters = body.get("parameters") or {}
        # The branch by git's rules, the parameters as any job's (BadRequest: branch, parameters.P).
        parameters = dict(job_request(repo, {"branch": branch, "parameters": parameters}, time.time())["parameters"])
        if not repo.get("url"):
            raise BadRequest("url: the repository has no URL: a bisect reads its history", field="url")
        async with self._starting.setdefault(repo["_id"], asyncio.Lock()):
            if await stored.count_running(self.store, repo["_id"]) >= MAX_RUNNING:
                busy = await self.store.db.bisects.find_one({"repo": repo["_id"], "status": stored.RUNNING},
                                                            {"number": 1})
                if busy and busy.get("number") is None:  # still reading its history: not numbered yet
                    raise Conflict(f"another bisect of {repo['_id']} is being started (/bisects/{busy['_id']}); "
                                   f"wait for it or cancel it (at most {MAX_RUNNING} at once per repository)",
                                   field="repo")
                named = f" (#{busy.get('number')}: /bisects/{busy['_id']})" if busy else ""
                raise Conflict(f"a bisect of {repo['_id']} is running already{named}; wait for it or cancel it "
                               f"(at most {MAX_RUNNING} at once per repository)", field="repo")
            doc = await self._insert(repo, good, bad, branch, stage, from_job, identity,
                                     parameters=parameters, good_among=good_among)
        # The history is read in the background; the request waits for it up to READ_WAIT seconds, so that
        # what is wrong with good and bad is its answer (400, nothing stored). A slower read (a large
        # remote repository) answers at once with the bisect reading; a fault is then its error.
        asking = {"answering": True}
        task = asyncio.create_task(self._read(doc["_id"], repo, asking))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.wait({task}, timeout=READ_WAIT)
        finally:
            if not task.done():  # slower than the wait, or the request went: the bisect says what it meets
                asking["answering"] = False
        if task.done() and not task.cancelled() and isinstance(task.exception(), InputError):
            raise task.exception()  # type: ignore[misc]
        if not task.done():
            async with self._locks.setdefault(doc["_id"], asyncio.Lock()):
                fresh = await stored.get(self.store, doc["_id"], commits=False)
                if fresh is not None and fresh.get("number") is None:
                    await self._save(fresh, {"number": await stored.next_number(self.store, repo["_id"])})
        return await stored.get(self.store, doc["_id"]) or doc

    async def _insert(self, repo: dict[str, Any], good: str, bad: str, branch: str, stage: str | None,
                      from_job: str | None, identity: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
        """The bisect, stored before its history is read (``reading``: its commits are not known yet)."""
        from apiary.core.context import triggered_by

        doc: dict[str, Any] = {
            "_id": str(ulid.ULID()), "repo": repo["_id"], "number": None,  # numbered once its history is read
            "branch": branch, "good": good, "bad": bad, "stage": stage, "status": stored.RUNNING, "error": None,
            "created": time.time(), "finished": None, "by": triggered_by(identity), "from_job": from_job,
            "commits": [], "size": 0, "reading": True, "tries": [], "rounds": 0, "result": None, "version": 0,
            **extra,  # parameters, good_among
        }
        await stored.insert(self.store, doc)
        return doc

    async def _read(self, bisect_id: str, repo: dict[str, Any], asking: dict[str, bool]) -> None:
        """Read the commits between good and bad, then run the first round. A fault while the request still
        waits (`asking`) removes the bisect and is raised, for the request to answer; later, or after a
        restart, it ends the bisect failed, saying why."""
        doc = await stored.get(self.store, bisect_id)
        if doc is None or doc.get("status") != stored.RUNNING or not doc.get("reading"):
            return
        try:
            auth = repo_auth(repo, await self.store.secret_values(repo["_id"]))
            try:
                good, bad, commits = await bisectgit.read_line(self.git_dir, repo["url"], auth, doc["branch"],
                                                               doc["good"], doc["bad"],
                                                               good_among=doc.get("good_among") or ())
            except GitError as exc:
                raise BadRequest(f"url: {exc}", field="url") from None
            left_out = await self._check_pipeline(repo, doc["branch"], bad, doc.get("stage"),
                                                  doc.get("parameters") or {})
        except InputError as exc:
            if asking["answering"]:
                await stored.delete(self.store, bisect_id)
                raise
            async with self._locks.setdefault(bisect_id, asyncio.Lock()):
                fresh = await stored.get(self.store, bisect_id, commits=False)
                if fresh is not None and fresh.get("status") == stored.RUNNING:
                    number = fresh.get("number") or await stored.next_number(self.store, repo["_id"])
                    await self._end(fresh, "failed", error=str(exc), number=number)
            return
        async with self._locks.setdefault(bisect_id, asyncio.Lock()):
            fresh = await stored.get(self.store, bisect_id, commits=False)
            if fresh is None or fresh.get("status") != stored.RUNNING:
                return  # cancelled while it read
            number = fresh.get("number") or await stored.next_number(self.store, repo["_id"])
            await self._save(fresh, {"good": good, "bad": bad, "commits": commits, "size": len(commits),
                                     "reading": False, "number": number, "left_out": left_out})
        log.info("bisect %s (%s #%s): %d commits between %s and %s", bisect_id, repo["_id"], number,
                 len(commits), good[:12], bad[:12])
        await self.advance(bisect_id)

    async def _check_pipeline(self, repo: dict[str, Any], branch: str, bad: str, stage: str | None,
                              parameters: dict[str, str]) -> list[dict[str, str]]:
        """What the bad commit's pipeline says of the request, before anything runs: a stage a bisect's jobs
        run (else every commit would be skipped: not a deploy stage, not behind an approval gate), some
        stage at all, and parameters it declares (BadRequest naming ``stage``, ``bad``, ``parameters.P``).
        The stages its jobs leave out there, as written: ``[{"stage", "why"}]`` (its page says so)."""
        from apiary.core.stages import resolve_parameters
        from apiary.queen.jobs import resolve_pipeline

        try:
            pipeline, _ = await resolve_pipeline(self.store, self.app[keys.CONFIG].data_path / "git", repo,
                                                 {"branch": branch, "id": bad})
        except InputError as exc:
            raise BadRequest(f"bad: the pipeline at {bad[:12]} cannot be read: {exc}", field="bad") from None
        stages = pipeline.get("stages") or []
        if stage is not None and (problem := decide_.stage_problem(stages, stage)):
            raise BadRequest(f"stage: {problem} (the pipeline at {bad[:12]})", field="stage")
        try:
            decide_.bisect_pipeline(pipeline)
        except BadRequest as exc:
            raise BadRequest(f"bad: the pipeline at {bad[:12]} has {str(exc).removeprefix('stages: ')}",
                             field="bad") from None
        try:
            resolve_parameters(pipeline, parameters)
        except InputError as exc:
            raise BadRequest(f"{exc} (the pipeline at {bad[:12]})", field=exc.field) from None
        out = decide_.left_out(stages)
        left = {decide_.written(s): out[s["name"]] for s in stages if s["name"] in out}
        return [{"stage": name, "why": why} for name, why in left.items()]

    async def _from_job(self, repo: dict[str, Any], job_id: str,
                        body: dict[str, Any]) -> tuple[list[str], str, str, dict[str, str], str]:
        """(the commits good may be, best first; bad; branch; parameters; the job's id) of the failed job
        `job_id` ("find the commit that broke this"; a shard's or a spread cell's job: its parent, which ran
        the commit as a whole): bad is its commit, its jobs get its parameters (a failure a
        parameter caused is one the defaults may not show), good is the newest of its branch's passed
        jobs whose commit is an ancestor of bad (apiary.queen.bisectgit.read_line picks it)."""
        if body.get("good") or body.get("bad") or body.get("branch") or body.get("parameters"):
            raise BadRequest("from_job: give a failed job, or good and bad, not both", field="from_job")
        job = await self.store.get_job(job_id)
        if job is None or job.get("repo") != repo["_id"]:
            raise NotFound(f"from_job: no job {job_id[:64]!r} of {repo['_id']}", field="from_job")
        if isinstance(job.get("parent"), dict):  # a shard's or a spread cell's job: its parent ran the commit
            parent = await self.store.get_job(str(job["parent"].get("id")))
            if parent is None:
                raise BadRequest(f"from_job: job {repo['_id']}#{job.get('number')} is a child job of job "
                                 f"#{job['parent'].get('number')}, which is gone: give good and bad",
                                 field="from_job")
            job = parent
        if job.get("status") != "failed":
            raise BadRequest(f"from_job: job {repo['_id']}#{job.get('number')} did not fail ({job.get('status')})",
                             field="from_job")
        ref = job.get("ref") or {}
        bad, branch = str(ref.get("id") or ""), str(ref.get("branch") or "")
        if not bad or not branch:
            raise BadRequest(f"from_job: job {repo['_id']}#{job.get('number')} has no known commit on a branch",
                             field="from_job")
        passed = [sha for sha in await stored.passed_commits(self.store, repo["_id"], branch) if sha != bad]
        if not passed:
            raise BadRequest(f"from_job: no passed job of {branch} before {repo['_id']}#{job.get('number')}: "
                             "give a good commit (apiary bisect --good SHA)", field="from_job")
        # Those given, not the defaults filled in (an older pipeline may not declare them: its jobs would be skipped).
        declared = (job.get("pipeline") or {}).get("parameters") or {}
        parameters = {str(k): str(v) for k, v in (job.get("parameters") or {}).items()
                      if v != (declared.get(k) or {}).get("default")}
        return passed, bad, branch, parameters, str(job["_id"])


async def bisects_ctx(app: web.Application) -> AsyncIterator[None]:
    """The driver, for as long as the queen runs: it hears jobs end and takes up running bisects."""
    bisector = Bisector(app)
    app[BISECT] = bisector
    await stored.ensure_indexes(app[keys.STORE])
    app[keys.HUB].listen_jobs(bisector.on_status)
    await bisector.resume()
    try:
        yield
    finally:
        app[keys.HUB].unlisten_jobs(bisector.on_status)
        await bisector.close()


# -- the API ---------------------------------------------------------------------------

@routes.post("/api/v1/repos/{repo}/bisects")
async def create_bisect(request: web.Request) -> web.Response:
    from apiary.queen.api import load_repo

    repo = await load_repo(request)
    doc = await request.app[BISECT].start(repo, await read_json(request), request.get("identity"))
    return json_response(public(doc), status=201, headers={"Location": f"/api/v1/bisects/{doc['_id']}"})


@routes.get("/api/v1/repos/{repo}/bisects")
async def list_bisects(request: web.Request) -> web.Response:
    from apiary.queen.api import load_repo

    repo = await load_repo(request)
    limit = query_int(request, "limit", LISTED, 1, 500)
    docs = await stored.of_repo(request.app[keys.STORE], repo["_id"], limit)
    if "number" in request.query:
        number = query_int(request, "number", 0, 1, 2**53)
        docs = [d for d in docs if d.get("number") == number]
        if not docs:
            found = await request.app[keys.STORE].db.bisects.find_one({"repo": repo["_id"], "number": number},
                                                                      {"commits": 0})
            docs = [found] if found else []
    return json_response({"bisects": [public(d) for d in docs]})


@routes.get("/api/v1/bisects/{bisect}")
async def get_bisect(request: web.Request) -> web.Response:
    """The bisect (`page_view`: each try with its job's status now and its commit's subject)."""
    view = await page_view(request.app, _ids(request))
    if view is None:
        raise NotFound(f"no bisect {request.match_info['bisect'][:64]!r}")
    return json_response(view)


@routes.post("/api/v1/bisects/{bisect}/cancel")
async def cancel_bisect(request: web.Request) -> web.Response:
    doc = await request.app[BISECT].cancel(_ids(request), request.get("identity"))
    return json_response({"id": doc["_id"], "status": doc["status"]})


async def page_view(app: web.Application, bisect_id: str) -> dict[str, Any] | None:
    """A bisect as its page shows it: the API's view with each try's job status now, and the range."""
    store = app[keys.STORE]
    doc = await stored.get(store, bisect_id)
    if doc is None:
        return None
    view = public(doc)
    found = view.get("result") or {}
    cited = [c for c in [*(found.get("candidates") or []), found.get("first_bad"), found.get("try")]
             if isinstance(c, dict) and c.get("job")]
    states = {j["_id"]: j["status"] for j in await store.job_states(
        list({*(t["job"] for t in doc["tries"] if t.get("job")), *(c["job"] for c in cited)}))}
    for t in [*view["tries"], *cited]:  # a job retention deleted is said so, not linked to a 404
        if t.get("job") and t["job"] not in states:
            t["status"], t["pruned"] = "pruned", True
        elif "index" in t:
            t["status"] = states.get(t.get("job") or "", t.get("status") or "")
    if doc["status"] == stored.RUNNING and doc.get("commits"):
        lo, hi = _range(doc)
        commits = doc["commits"]
        view["range"] = {"after": commits[lo] if lo >= 0 else doc["good"], "to": commits[hi]}
    with contextlib.suppress(Exception):
        facts = await bisectgit.commit_facts(app[keys.CONFIG].data_path / "bisect-git", doc_url(await store.get_repo(doc["repo"])),
                                             [t["commit"] for t in view["tries"]][:200])
        for t in view["tries"]:
            t["subject"] = (facts.get(t["commit"]) or {}).get("subject", "")
    return view


def doc_url(repo: dict[str, Any] | None) -> str:
    return (repo or {}).get("url") or ""


# -- the page ------------------------------------------------------------------------------

@routes.get("/bisects/{bisect}")
async def bisect_page(request: web.Request) -> web.Response:
    from apiary.queen.pages import render

    view = await page_view(request.app, _ids(request))
    if view is None:
        raise NotFound("There is no such bisect; it may have been removed.")
    return render(request, "bisect.html", page="bisect", bisect=view)


@routes.get("/repos/{repo}/bisects")
async def bisects_page(request: web.Request) -> web.Response:
    """A repository's last bisects (its page links here)."""
    from apiary.queen.api import load_repo
    from apiary.queen.pages import render

    repo = await load_repo(request)
    docs = await stored.of_repo(request.app[keys.STORE], repo["_id"], LISTED)
    return render(request, "bisects.html", page="bisects", repo=repo["_id"], bisects=[public(d) for d in docs])


@routes.get("/parts/bisects/{bisect}")
async def bisect_part(request: web.Request) -> web.Response:
    """The page's body, drawn again when the bisect changes (web/static/bisect.js)."""
    from apiary.queen.pages import render

    view = await page_view(request.app, _ids(request))
    if view is None:
        raise NotFound("no such bisect")
    return render(request, "parts/bisect_body.html", bisect=view)


def setup(app: web.Application) -> None:
    """Bisects on the queen: the API, the page, and the driver (a cleanup context after the hive's)."""
    app.add_routes(routes)
    app.cleanup_ctx.append(bisects_ctx)


MAX_FOLLOWED = 16  # bisects one WebSocket connection follows at once


def ws_topic(hub: Any, sub: Any, cmd: dict[str, Any]) -> None:
    """``{"op": "subscribe" | "unsubscribe", "topic": "bisect", "bisect": ID}`` on /ws (queen/ws.py): the
    connection is sent ``{"type": "subscribed", "topic": "bisect", "bisect": ID}``, then
    ``{"type": "bisect", "bisect": ID, "version", "status"}`` at each change; the page reads the bisect
    after the first (nothing is missed: it subscribed before it read)."""
    bisect_id = cmd.get("bisect")
    if not isinstance(bisect_id, str) or not bisect_id.isascii() or not bisect_id.isalnum() or len(bisect_id) > 64:
        sub.put({"type": "error", "error": "bisect: a bisect id is required"})
        return
    name = f"bisect:{bisect_id}"
    if cmd.get("op") == "unsubscribe":
        hub.unsubscribe(sub, name)
        return
    if name not in sub.topics:
        if sum(t.startswith("bisect:") for t in sub.topics) >= MAX_FOLLOWED:
            sub.put({"type": "error", "error": f"bisect: at most {MAX_FOLLOWED} bisects followed at once"})
            return
        hub.subscribe(sub, name)
    sub.put({"type": "subscribed", "topic": "bisect", "bisect": bisect_id})
