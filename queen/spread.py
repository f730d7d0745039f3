"""The queen's side of remote stages (apiary.core.spread decides; apiary.core.jobstate changes the jobs).

A job with remote stages (``spread: true`` matrix cells, test shards) ends its drone's attempt ``waiting``.
`Spreader` hears it (a job listener on the hub) and makes its child jobs, one per unit that may start
(`make_children`, which test sharding calls too, with each shard's env and files); it keeps the parent's
``children`` statuses as the children move, and once every child of the wave has ended folds them into the
parent (`jobstate.Folded`: its continuation queued, or it fails naming the cell). A parent that ends
otherwise (cancelled, superseded) has its children cancelled. A sweep every CHECK_EVERY seconds does the
same for what a listener missed (a queen restarted between two steps).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import ulid
from aiohttp import web
from gridfs.errors import NoFile
from pymongo.errors import PyMongoError

from apiary.core import spread
from apiary.core.errors import ApiaryError, Conflict
from apiary.core.jobstate import Folded
from apiary.core.protocol import FINAL_STATES, UNDERWAY, JobStatus

from . import keys
from .resume import MAX_RESTORE_BYTES, artifact_bytes

log = logging.getLogger(__name__)

CHECK_EVERY = 5.0  # seconds between sweeps of the waiting parents
ORPHANS_EVERY = 12  # sweeps between looks for children of ended parents (the listener cancels them at once)
_FINAL = {s.value for s in FINAL_STATES}


class Spreader:
    """Child jobs for a queen: `hive` carries out the state changes, its dispatcher queues the children."""

    def __init__(self, store: Any, hive: Any) -> None:
        self.store, self.hive = store, hive
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locks: dict[str, asyncio.Lock] = {}  # per parent: one making or folding at a time
        # kind -> what gives each ready unit of that kind its child's env and files: (parent, units) ->
        # [{unit, env?, files?}] (async). Test sharding registers "shard"; a matrix's cells need nothing.
        self.planners: dict[str, Planner] = {"spread": _plain}
        self._timers: dict[str, asyncio.Task[Any]] = {}  # waiting parent -> its timeout's look

    def register(self, kind: str, planner: Planner) -> None:
        """Give remote stages of `kind` their children's env and files (see `planners`)."""
        if kind not in spread.KINDS:
            raise ValueError(f"unknown kind of remote stage {kind!r}")
        self.planners[kind] = planner

    # -- the listener ------------------------------------------------------------------------

    def heard(self, job_id: str, status: str, job: dict[str, Any] | None) -> None:
        """A job listener (apiary.queen.hub): only jobs that are parents or children concern it."""
        if job is not None and not (job.get("parent") or job.get("children") or status == "waiting"):
            return
        task = asyncio.get_running_loop().create_task(self._logged(self.on_status(job_id, status)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _logged(self, work: Any) -> None:
        try:
            await work
        except PyMongoError as exc:
            log.warning("child jobs: store error: %s", exc)
        except Exception:
            log.exception("child jobs: failed")

    async def on_status(self, job_id: str, status: str) -> None:
        job = await self.store.get_job(job_id)
        if job is None:
            return
        if job.get("parent"):
            await self._child_moved(job)
        if job.get("status") == JobStatus.WAITING.value and spread.can_wait(job):
            self._time_later(job)
            await self.spread_out(job_id)
        if job.get("status") in _FINAL and job.get("children"):
            await self.cancel_children(job)

    # -- making children -----------------------------------------------------------------------

    def _lock(self, parent_id: str) -> asyncio.Lock:
        if len(self._locks) > 10_000:
            self._locks = {k: v for k, v in self._locks.items() if v.locked()}
        return self._locks.setdefault(parent_id, asyncio.Lock())

    async def spread_out(self, parent_id: str) -> None:
        """Make the child jobs of a waiting parent's units that may start (none if its wave has them already)."""
        from apiary.queen.api import outcome_of  # the API's outcome, with its events

        async with self._lock(parent_id):
            parent = await self.store.get_job(parent_id)
            if parent is None or parent.get("status") != JobStatus.WAITING.value or not spread.can_wait(parent):
                return
            if spread.wave(parent):
                await self._fold(parent)  # made already (a sweep, or a second listener call)
                return
            outcome = await outcome_of(self.store, parent)
            units = spread.ready(parent, outcome)
            by_kind: dict[str, list[str]] = {}
            for unit in units:
                by_kind.setdefault(_kind(parent, unit) or "?", []).append(unit)
            error = None if units else "its remote stages could not start (a stage they need did not pass)"
            specs: list[Mapping[str, Any]] = []
            for kind, of_kind in by_kind.items():
                planner = self.planners.get(kind)
                if planner is None:
                    error = f"this queen does not run {kind} stages as child jobs"
                    break
                try:
                    specs += await planner(parent, of_kind)
                except ApiaryError as fault:  # a planner's refusal (a list too big): said, not waited on
                    error = f"its {kind} child jobs could not be made: {fault}"
                    break
            if error is None and not specs:  # a wait for nothing would never end
                error = f"its remote stages ({', '.join(units)}) gave no child job to wait for"
            if error is None:
                try:
                    if await self._make(parent, specs):
                        return
                    error = None
                except ApiaryError as fault:
                    error = f"its child jobs could not be made: {fault}"
            if error is not None:
                log.warning("job %s: %s", parent_id, error)
                await self.hive.change(parent_id, Folded(time.time(), list(parent.get("children") or []),
                                                         error=error))

    async def make_children(self, parent: Mapping[str, Any], children: Sequence[Mapping[str, Any]]
                            ) -> list[dict[str, Any]]:
        """Make and queue a child job per entry of `children` (``[{unit, env?: {NAME: text}, files?: [{name,
        text}]}]``) for `parent` (a stored job waiting at its remote stages); return their ``children``
        entries. Raises apiary.core.spread.SpreadError (bad input, naming the field) or Conflict (the
        parent is not waiting, or is a child itself)."""
        async with self._lock(parent["_id"]):
            fresh = await self.store.get_job(parent["_id"])
            if fresh is None or fresh.get("status") != JobStatus.WAITING.value:
                raise Conflict(f"job #{parent.get('number')} does not wait for child jobs", field="children")
            return await self._make(fresh, children)

    async def _make(self, parent: dict[str, Any], children: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if parent.get("parent"):
            raise Conflict(f"job #{parent.get('number')} is a child job: a child of a child is not made",
                           field="children")
        existing = list(parent.get("children") or [])
        if len(existing) + len(children) > spread.MAX_CHILDREN:
            raise spread.SpreadError("children", f"a job has at most {spread.MAX_CHILDREN} child jobs")
        known = spread.units(parent["pipeline"]["stages"])
        # Each child restores the parent's artifacts from its queue:new (apiary.queen.resume): bounded, said now.
        chain = [*((parent.get("resume") or {}).get("artifacts_of") or []), parent["_id"]]
        if (size := await artifact_bytes(self.store, list(dict.fromkeys(chain)))) > MAX_RESTORE_BYTES:
            raise spread.SpreadError("artifacts", f"{size:,} bytes of artifacts, more than a child job restores "
                                                  f"({MAX_RESTORE_BYTES:,} bytes): keep only what later stages need")
        made = {c.get("unit") for c in spread.wave(parent)}  # a unit may have several children (shards), made at once
        docs = []
        for i, given in enumerate(children):
            unit = given.get("unit")
            if unit not in known or unit in made:
                raise spread.SpreadError(f"children[{i}].unit", f"{unit!r} is not a remote unit of job "
                                                                f"#{parent.get('number')} still to run")
            env, files = spread.check_given(given.get("env"), given.get("files"), f"children[{i}]")
            docs.append(spread.child_job(parent, unit, env, files, str(ulid.ULID()),
                                         await self.store.next_job_number(parent["repo"]), time.time()))
        for doc in docs:  # stored first: a parent never names a child that is not there
            await self.hive.dispatcher.submit(doc)
        entries = [spread.child_entry(d) for d in docs]
        expect = {"status": JobStatus.WAITING.value, "attempts": parent.get("attempts"), "drone": parent.get("drone")}
        if not await self.store.change_job(parent["_id"], expect, {"children": existing + entries}):
            for doc in docs:  # the parent moved meanwhile (cancelled): its children go too
                await self.hive.cancel(doc, f"its parent job #{parent.get('number')} changed meanwhile")
            return []
        log.info("job %s: %d child job(s) made: %s", parent["_id"], len(docs),
                 ", ".join(f"#{d['number']} {d['parent']['unit']}" for d in docs))
        # A child may have started (or ended) before its parent named it: its listener found no entry to update.
        fresh = await self.store.get_job(parent["_id"])
        if fresh is not None:
            for doc in docs:
                kid = await self.store.get_job(doc["_id"])
                if kid is not None:
                    await self._moved(fresh, kid)
        self.hive.hub.publish("jobs", {"type": "job:update", "job": parent["_id"], "children": existing + entries})
        return entries

    # -- children moving, the fold --------------------------------------------------------------

    async def _child_moved(self, child: dict[str, Any]) -> None:
        parent_id = (child.get("parent") or {}).get("id")
        if not isinstance(parent_id, str):
            return
        async with self._lock(parent_id):  # read and written in turn with the fold's write of every status
            parent = await self.store.get_job(parent_id)
            child = await self.store.get_job(child["_id"]) or child
            if parent is not None:
                await self._moved(parent, child)

    async def _moved(self, parent: dict[str, Any], child: dict[str, Any]) -> None:
        entries = list(parent.get("children") or [])
        at = next((i for i, c in enumerate(entries) if c.get("job") == child["_id"]), None)
        if at is not None and entries[at].get("status") != child.get("status"):
            # The whole list (the embedded store sets no array element by its index); written under the
            # parent's lock, as every other write of it is.
            entries[at] = {**entries[at], "status": child.get("status")}
            await self.store.change_job(parent["_id"], {}, {"children": entries})
            parent["children"] = entries
            self.hive.hub.publish("jobs", {"type": "job:update", "job": parent["_id"], "children": entries})
        if child.get("status") in _FINAL and parent.get("status") not in _FINAL:
            if child.get("status") != "passed" and parent.get("status") == JobStatus.WAITING.value:
                await self._stop_siblings(parent, child.get("finished"))
            await self._fold(await self.store.get_job(parent["_id"]) or parent)

    async def _stop_siblings(self, parent: dict[str, Any], failed_at: float | None) -> None:
        """A child failed (or was cancelled) at `failed_at`: its siblings that had not started then are cancelled
        (spread.stopped, spread.stop_sibling)."""
        ids, reason = spread.stopped(spread.wave(parent))
        for kid_id in ids:
            kid = await self.store.get_job(kid_id)
            if kid is not None and kid.get("status") not in _FINAL and spread.stop_sibling(kid, failed_at):
                log.info("job %s: child job %s cancelled: %s", parent["_id"], kid_id, reason)
                await self.hive.cancel(kid, reason)

    async def _fold(self, parent: dict[str, Any]) -> None:
        """Fold the parent's current wave into it once every child of it has ended."""
        from apiary.queen.api import outcome_of

        if parent.get("status") != JobStatus.WAITING.value:
            return
        entries = spread.wave(parent)
        if not entries:
            return
        kids = []
        for entry in entries:
            kid = await self.store.get_job(entry["job"])
            if kid is None:  # removed (retention): as good as lost
                kid = {"_id": entry["job"], "number": entry.get("number"), "status": "errored",
                       "error": "the job is gone", "parent": {"unit": entry.get("unit")}}
            kids.append(kid)
        outcome = await outcome_of(self.store, parent)
        fold = spread.fold(parent, outcome, kids)
        if fold is None:
            return
        if fold.resume is not None and (left := await self._unrestored(fold.resume["artifacts_of"])):
            # The continuation could not be given them: a later stage would miss them, and pass or fail on that.
            fold = spread.Fold(error=spread.over_cap(left, MAX_RESTORE_BYTES, {k["_id"]: k.get("number") for k in kids}))
        status = {k["_id"]: k.get("status") for k in kids}
        children = [{**c, "status": status.get(c.get("job"), c.get("status"))} for c in parent.get("children") or []]
        await self._keep_reports(parent, kids)
        changed = await self.hive.change(parent["_id"], Folded(time.time(), children, fold.resume, fold.error,
                                                               fold.child))
        if changed is not None and fold.resume is not None:
            self.hive.dispatcher.wake()  # its continuation is queued
        log.info("job %s: child jobs ended: %s", parent["_id"], fold.error or "all passed, going on")

    async def _keep_reports(self, parent: Mapping[str, Any], kids: list[dict[str, Any]]) -> None:
        """Keep the test reports of the parent's children on it (``family_reports``, every wave's) before its fold:
        its report adds them up (apiary.core.spread.family_report). A re-run from the failed stage reuses the
        shards (cells) that passed: the earlier job's children that ran them count too, first."""
        docs = {k["_id"]: k for k in kids}
        family = []
        own = [(e.get("unit"), e.get("job")) for e in parent.get("children") or []]
        for unit, job_id in [*spread.reused_children(parent), *own]:
            if any(f["job"] == job_id for f in family):
                continue
            kid = docs.get(job_id) or await self.store.get_job(str(job_id))
            if kid is not None and isinstance(kid.get("report"), Mapping):
                family.append({"job": kid["_id"], "number": kid.get("number"), "unit": unit, "report": kid["report"]})
        if family:
            await self.store.change_job(parent["_id"], {"status": JobStatus.WAITING.value,
                                                        "attempts": parent.get("attempts")},
                                        {"family_reports": family})

    async def _unrestored(self, chain: list[str]) -> list[tuple[str, str, int]]:
        """The artifacts of `chain` (a continuation's ``artifacts_of``) its restore would leave out, as (job, name,
        bytes): counted as apiary.queen.resume.resume_message counts them (a child's copy of what it restored,
        the same name and bytes as an earlier job's, counts once), past MAX_RESTORE_BYTES."""
        seen: dict[str, tuple[str, int]] = {}  # name -> (the job whose copy is counted, its size)
        total, left = 0, []
        listed = await self.store.list_artifacts_of(chain)  # one query for them all (hundreds of children)
        for job_id in chain:
            for info in listed[job_id]:
                earlier = seen.get(info["name"])
                if earlier is not None and earlier[1] == info["size"] and await self._same(
                        earlier[0], job_id, info["name"], info["parts"]):
                    continue
                total += info["size"]
                if total > MAX_RESTORE_BYTES:
                    left.append((job_id, info["name"], int(info["size"])))
                    continue
                seen[info["name"]] = (job_id, info["size"])
        return left

    async def _same(self, a: str, b: str, name: str, parts: int) -> bool:
        read = self.store.read_artifact_part
        try:
            return all([await read(a, name, p) == await read(b, name, p) for p in range(parts)])
        except NoFile:  # a part gone meanwhile (retention): counted twice, as the restore would not find it same
            return False

    def _time_later(self, parent: Mapping[str, Any]) -> None:
        """Look at a waiting parent again when its timeout passes (the sweep does too, as a backstop)."""
        timeout, start = (parent.get("pipeline") or {}).get("timeout"), spread.first_start(parent)
        if not isinstance(timeout, (int, float)) or not timeout or start is None or parent["_id"] in self._timers:
            return
        delay = max(0.0, start + timeout - time.time()) + 0.05

        async def later() -> None:
            try:
                await asyncio.sleep(delay)
                await self.time_out(parent["_id"])
            finally:
                self._timers.pop(parent["_id"], None)
        self._timers[parent["_id"]] = task = asyncio.get_running_loop().create_task(self._logged(later()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def time_out(self, parent_id: str) -> None:
        """Fail a parent waiting for its children past its job's timeout (its children are cancelled then)."""
        async with self._lock(parent_id):
            parent = await self.store.get_job(parent_id)
            if parent is None or parent.get("status") != JobStatus.WAITING.value or not spread.can_wait(parent):
                return
            error = spread.overdue(parent, time.time())
            if error is None:
                return
            log.info("job %s: %s", parent_id, error)
            await self.hive.change(parent_id, Folded(time.time(), list(parent.get("children") or []), error=error))

    async def cancel_children(self, parent: Mapping[str, Any]) -> None:
        """Cancel the children of an ended parent that have not ended (the family is one job to its people)."""
        for entry in parent.get("children") or []:
            kid = await self.store.get_job(entry.get("job"))
            if kid is not None and kid.get("status") in UNDERWAY:
                await self.hive.cancel(kid, spread.parent_ended(parent))

    # -- the sweep -----------------------------------------------------------------------------------

    async def sweep(self, orphans: bool = True) -> None:
        """What a listener may have missed: waiting parents to spread out or fold, and (`orphans`) children of
        ended parents, which takes a look at every job not ended: the loop does it once a minute."""
        # The waiting jobs are few (approval gates, parents): read whole.
        for job in await self.store.jobs.find({"status": JobStatus.WAITING.value}).to_list(None):
            if spread.can_wait(job):
                if spread.overdue(job, time.time()):
                    await self.time_out(job["_id"])
                    continue
                await self.spread_out(job["_id"])  # makes the wave's children, or folds them
        if not orphans:
            return
        for kid in await self.store.jobs.find({"parent.id": {"$exists": True}, "status": {"$in": list(UNDERWAY)}},
                                              {"parent": 1}).to_list(None):
            parent = await self.store.get_job(kid["parent"]["id"])
            if parent is None or parent.get("status") in _FINAL:
                await self.hive.cancel(await self.store.get_job(kid["_id"]) or kid,
                                       "its parent job ended" if parent else "its parent job is gone")


Planner = Callable[[Mapping[str, Any], list[str]], Awaitable[list[Mapping[str, Any]]]]


async def _plain(parent: Mapping[str, Any], units: list[str]) -> list[Mapping[str, Any]]:
    """A matrix's cells: a child per cell, nothing more to give it (its values are in its stage's env)."""
    return [{"unit": u} for u in units]


def _kind(parent: Mapping[str, Any], unit: str) -> str | None:
    for stage in parent["pipeline"]["stages"]:
        remote = stage.get("remote") or {}
        if remote.get("unit") == unit:
            return remote.get("kind")
    return None


async def watch(app: web.Application) -> AsyncIterator[None]:
    """A cleanup context: child jobs are made and folded while the queen runs (after the hive's)."""
    spreader = Spreader(app[keys.STORE], app[keys.HIVE])
    app[SPREADER] = spreader
    hub = app[keys.HIVE].hub
    hub.listen_jobs(spreader.heard)

    async def loop() -> None:
        rounds = 0
        while True:
            await asyncio.sleep(CHECK_EVERY)
            rounds += 1
            try:
                await spreader.sweep(orphans=rounds % ORPHANS_EVERY == 0)
            except PyMongoError as exc:
                log.warning("child jobs: store error: %s", exc)
            except Exception:
                log.exception("child jobs: the sweep failed")
    task = asyncio.create_task(loop())
    yield
    hub.unlisten_jobs(spreader.heard)
    task.cancel()
    for t in [task, *spreader._tasks]:
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await t


SPREADER: web.AppKey[Spreader] = web.AppKey("spreader", Spreader)
