"""Stores drones' job events exactly once, in order, then acks and publishes them.

Each job's events are stored as the contiguous run 1..N: an event is accepted
only when its seq is the next one expected. An older seq is a resend (already
stored: acked again, not stored twice); a newer one means frames were lost on a
broken connection, and it is dropped until the drone resends from the gap (the
drone resends whatever stays unacked). So the events collection never holds a
gap, the job document is updated in event order, and the highest stored seq
is what the queen acks.

Writes are batched: one writer task takes everything that arrived while the
previous batch was being written (group commit). Per batch, at once: one job
update per job (idempotent ``$set``) and one ``insert_many`` of events; then
acks, then live publication. If the store fails, nothing is acked and the
batch is retried.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from pymongo.errors import PyMongoError

from apiary.core import spread
from apiary.core.approvals import can_wait
from apiary.core.jobstate import (
    CancelCopy,
    Effect,
    Finished,
    JobState,
    Policy,
    Started,
    Write,
    admit,
    drone_event,
    transition,
)
from apiary.core.models import Event
from apiary.core.protocol import OUTPUT_EVENTS, JobStatus, Msg
from apiary.queen import caches
from apiary.queen.hub import Hub
from apiary.queen.lifecycle import job_update
from apiary.queen.store import Store
from apiary.shared import memory

log = logging.getLogger(__name__)

_OUTPUT_TYPES = [m.value for m in OUTPUT_EVENTS]
_RUNNING = JobStatus.RUNNING.value

# (drone, job, seq, attempt): every event of attempt `attempt` of `job` up to `seq` is stored
AckFn = Callable[[str, str, int, int], None]
# (job id, its state now, effects to carry out besides the job document's write: a slot to
# release, a drone's copy to cancel); called once the events that led there are stored
CarryFn = Callable[[str, JobState, list[Effect]], None]


class _Track:
    """One job as the recorder follows it: its state (the fencing token: attempt and drone) and the
    next seq it will store."""

    __slots__ = ("next_seq", "state", "told")

    def __init__(self, next_seq: int, state: JobState) -> None:
        self.next_seq = next_seq
        self.state = state
        self.told = False  # the drone of a job ended here was asked to stop its copy


def _waits(event: Started | Finished | None) -> bool:
    return isinstance(event, Finished) and event.result == "waiting"


def _gated(event: Started | Finished | None, job: Any) -> Started | Finished | None:
    """`event` with, for a drone's ``waiting``, the queen's word on whether `job` (its document, or None) has
    an approval gate it can wait at now (apiary.core.approvals.can_wait): the drone's alone could leave
    any job waiting forever, at a gate nobody can decide on."""
    if isinstance(event, Finished) and _waits(event):
        # (or remote stages it leaves to child jobs, apiary.core.spread)
        remote = job is not None and spread.can_wait(job)
        return dataclasses.replace(event, at_gate=job is not None and (can_wait(job) or remote), for_children=remote)
    return event


class Recorder:
    def __init__(self, store: Store, hub: Hub, ack: AckFn, carry: CarryFn, policy: Policy) -> None:
        self.policy = policy
        self.store = store
        self.hub = hub
        self.ack = ack
        self.carry = carry
        self._pending: list[tuple[str, Msg, dict[str, Any]]] = []
        self._keys: set[tuple[str, int, int]] = set()  # (job, seq, attempt) of each waiting event
        self._pending_bytes = 0
        self._freed = 0  # bytes of events stored since memory was last given back
        self._full_said = False
        self.problem: str | None = None  # why the store cannot write now (the API's 503 says it), or None
        self._wake = asyncio.Event()
        self._tracks: dict[str, _Track] = {}
        self._unknown: set[str] = set()
        self.stored = 0  # events stored since the queen started (apiary.queen.metrics reads these three)
        self.stored_bytes = 0  # their output text and artifact bytes (about: `_size`)
        self.store_errors = 0  # writes the store refused or did not answer (each retried)

    def track(self, job_id: str, state: JobState, first_seq: int = 1) -> None:
        """Note a job this queen just dispatched (`state`): its events start at `first_seq`."""
        self._tracks[job_id] = _Track(first_seq, state)

    def follow(self, job_id: str, state: JobState) -> None:
        """The job's state changed outside its events (cancelled, its drone lost): fence by the new one."""
        track = self._tracks.get(job_id)
        if track is not None:
            track.state = state

    def submit(self, drone_id: str, msg: Msg, body: dict[str, Any]) -> None:
        """Queue a drone's event for the store. While the store cannot write, drones resend what stays
        unacked: a copy of an event already waiting is dropped, and past PENDING_BYTES new events are
        dropped too (unacked, so their drone sends them again): memory stays bounded."""
        key = (body["id"], body["seq"], body.get("attempt", 1))
        if key in self._keys:
            return
        size = _size(body)
        if self._pending_bytes + size > PENDING_BYTES and self._pending:
            if not self._full_said:
                self._full_said = True
                log.warning("%d bytes of events wait for the store; newer ones are left with their drones for now",
                            self._pending_bytes)
            return
        self._keys.add(key)
        self._pending_bytes += size
        self._pending.append((drone_id, msg, body))
        self._wake.set()

    def _take(self) -> list[tuple[str, Msg, dict[str, Any]]]:
        """The next batch: the oldest waiting events, at most BATCH_EVENTS of them and about BATCH_BYTES
        (a store short of room can still take a small write; one huge one would never fit)."""
        count, size = 0, 0
        for _, _, body in self._pending:
            if count and (count >= BATCH_EVENTS or size >= BATCH_BYTES):
                break
            count += 1
            size += _size(body)
        batch, self._pending = self._pending[:count], self._pending[count:]
        # Each job's events in seq order (a resend may have filled a gap ahead of where it arrived).
        first: dict[str, int] = {}
        for n, (_, _, body) in enumerate(batch):
            first.setdefault(body["id"], n)
        batch.sort(key=lambda e: (first[e[2]["id"]], e[2]["seq"]))
        return batch

    def _done_with(self, batch: list[tuple[str, Msg, dict[str, Any]]]) -> None:
        for _, _, body in batch:
            self._keys.discard((body["id"], body["seq"], body.get("attempt", 1)))
            self._pending_bytes -= _size(body)
            self._freed += _size(body)
        self._full_said = False

    async def _wait(self) -> None:
        """Wait for events to store. Meanwhile what stored events took goes back to the system
        (apiary.shared.memory): at once after a burst of TRIM_AFTER bytes, else after TRIM_IDLE
        seconds without events (a trim costs a few milliseconds: not after every batch)."""
        if self._freed >= TRIM_AFTER and not self._wake.is_set():
            self._give_back()
        if self._freed >= TRIM_IDLE_BYTES and not self._wake.is_set():
            try:
                async with asyncio.timeout(TRIM_IDLE):
                    await self._wake.wait()
                return
            except TimeoutError:
                self._give_back()
        await self._wake.wait()

    def _give_back(self) -> None:
        self._freed = 0
        memory.trim()

    async def run(self) -> None:
        backoff = 0.05
        while True:
            await self._wait()
            self._wake.clear()
            batch = self._take()
            try:
                await self._write(batch)
                backoff = 0.05
                self._done_with(batch)
                if self._pending:
                    self._wake.set()
            except (PyMongoError, ConnectionError, TimeoutError) as exc:
                # Nothing was acked: put the batch back in front and try again.
                self.problem = store_problem(exc)
                self.store_errors += 1
                log.warning("store write failed (%s); %d events wait, retrying in %.1fs", self.problem,
                            len(batch) + len(self._pending), backoff)
                self._pending[:0] = batch
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                self._wake.set()
                continue
            except Exception:
                # Not the store being away: retrying would fail the same way and
                # stall every job behind this batch. Nothing was acked; drop it.
                log.exception("could not store a batch of %d events; dropped", len(batch))
                self._done_with(batch)
            self.problem = None
            del batch  # before waiting: its events' memory is free to go back

    async def _load_track(self, job_id: str) -> _Track | None:
        """Where a job this queen has not seen yet stands (after a restart)."""
        job = await self.store.get_job(job_id)
        if job is None:
            return None
        state = JobState.of(job)
        if state.on_drone:
            # The job document follows the current attempt's events. A queen that died between
            # storing a batch's events and its job update left the document behind: catch up
            # from what is stored. (A queued job waits for its next attempt: nothing of the last applies.)
            fields: dict[str, Any] = {}
            steps: list[tuple[str, Event]] = []
            for stored in await self.store.job_history(job_id, _OUTPUT_TYPES):
                if stored.get("attempt", 1) == state.attempt:
                    fields.update(job_update(Msg(stored["type"]), stored))
                    steps.append((stored["type"], stored))
            caught_up = state
            for kind, body in steps:
                event = _gated(drone_event(state.drone or "", kind, body), job)
                if event is not None:
                    caught_up, effects = transition(caught_up, event, self.policy)
                    for effect in effects:
                        if isinstance(effect, Write):
                            fields.update(effect.fields)
            if fields and await self.store.change_job(job_id, state.expect(), fields):
                state = caught_up
        return _Track(await self.store.last_seq(job_id) + 1, state)

    async def _write(self, batch: list[tuple[str, Msg, dict[str, Any]]]) -> None:
        now = time.time()
        docs: list[Event] = []
        updates: dict[str, dict[str, Any]] = {}
        acks: dict[tuple[str, str, int], int] = {}
        next_seq: dict[str, int] = {}  # advanced only once the batch is stored
        tracks: dict[str, _Track] = {}
        before: dict[str, JobState] = {}  # each job's state when the batch began: what its write expects
        after: dict[str, JobState] = {}
        carried: dict[str, list[Effect]] = {}
        stale: dict[tuple[str, str], int] = {}  # (drone, job) -> the attempt whose copy must stop
        changes: list[tuple[str, dict[str, Any]]] = []
        batch_bytes = 0
        for drone_id, msg, body in batch:
            job_id, seq, attempt = body["id"], body["seq"], body.get("attempt", 1)
            track = self._tracks.get(job_id)
            if track is None:
                if job_id in self._unknown:
                    continue
                track = await self._load_track(job_id)
                if track is None:
                    # Remembered, so a flood of these costs no store lookups or log lines.
                    if len(self._unknown) > 10_000:
                        self._unknown.clear()
                    self._unknown.add(job_id)
                    log.warning("drone %s sent %s for unknown job %s: dropped", drone_id, msg.value, job_id)
                    continue
                self._tracks[job_id] = track
            state = after.get(job_id, track.state)
            verdict = admit(state, drone_id, attempt)
            if verdict == "stale":
                # A copy the job no longer runs as (given to another attempt): ack so the
                # drone forgets the event, and tell it to stop that copy.
                if (drone_id, job_id) not in stale:
                    log.warning("drone %s sent %s for job %s (attempt %s), which is %s (attempt %s%s): dropped; "
                                "cancelling its copy", drone_id, msg.value, job_id, attempt, state.status.value,
                                state.attempt, f" on {state.drone}" if state.drone else "")
                acks[(drone_id, job_id, attempt)] = seq
                stale[(drone_id, job_id)] = attempt
                continue
            tracks[job_id] = track
            expected = next_seq.get(job_id, track.next_seq)
            if seq < expected:
                acks[(drone_id, job_id, attempt)] = expected - 1
                continue
            if seq > expected:
                log.debug("job %s: seq %d arrived while %d was expected; waiting for a resend", job_id, seq, expected)
                continue
            if msg is Msg.JOB_ARTIFACT:
                # The bytes go to GridFS before the event is stored or acked.
                await self.store.save_artifact_part(job_id, body["name"], body["part"], body["parts"],
                                                    body["size"], body["data"], int(body.get("attempt") or 1))
            if msg is Msg.JOB_CACHE and body.get("state") == "part":
                await caches.save_part(self.store, job_id, body)  # a cache's part, likewise (queen/caches.py)
            if msg is Msg.JOB_REPORT:
                # A report's tests go to their own collection (store/tests.py) before the event is stored or acked.
                await self.store.save_tests(job_id, body["first"], body["tests"], int(body.get("attempt") or 1))
            # An artifact's bytes are in GridFS, a report's tests in ``tests``; its event keeps the rest.
            doc = _storable({k: v for k, v in body.items() if k != "id" and (k != "data" or msg not in (Msg.JOB_ARTIFACT, Msg.JOB_CACHE))
                             and (k != "tests" or msg is not Msg.JOB_REPORT)})
            if doc is None:
                log.warning("drone %s sent %s for job %s with a value the store cannot hold: dropped",
                            drone_id, msg.value, job_id)
                acks[(drone_id, job_id, attempt)] = expected - 1
                continue
            # A string _id: nothing an ObjectId would leak into JSON, and a
            # repeated (job, seq) collides on _id as on the unique index.
            doc.update(_id=f"{job_id}:{seq}", job=job_id, type=msg.value, at=now)
            docs.append(doc)
            batch_bytes += _size(body)
            next_seq[job_id] = seq + 1
            acks[(drone_id, job_id, attempt)] = seq
            if verdict == "late":
                # Ended here while its drone was away: keep what it printed, change nothing, stop it.
                if not track.told:
                    track.told = True
                    stale[(drone_id, job_id)] = attempt
                continue
            fields = job_update(msg, body)
            event = drone_event(drone_id, msg.value, body)
            if _waits(event):
                event = _gated(event, await self.store.get_job(job_id))  # rare: a job's stop at its gate
            if event is not None:
                before.setdefault(job_id, state)
                new, effects = transition(state, event, self.policy)
                after[job_id] = new
                for effect in effects:
                    if isinstance(effect, Write):
                        fields.update(effect.fields)
                    else:
                        carried.setdefault(job_id, []).append(effect)
            if fields:
                before.setdefault(job_id, state)
                updates.setdefault(job_id, {}).update(fields)
                summary = {k: v for k, v in fields.items() if not k.startswith(("commands.", "phases.", "history."))}
                if summary and changes and changes[-1][0] == job_id and "status" not in changes[-1][1]:
                    # One message for what the job's events in this batch changed up to its next status
                    # (tested, then passed: one job:update, not two, to every browser following jobs).
                    changes[-1][1].update(summary)
                elif summary:
                    changes.append((job_id, summary))
        # Both writes at once. If only one lands: a failed batch is retried whole (both
        # writes are idempotent) before anything is acked, and a queen that died in between
        # catches the job up on restart (_load_track).
        if any(fields.get("status", _RUNNING) != _RUNNING for fields in updates.values()):
            # A job's state only after all its events: a store that fails between the two leaves
            # no job ended with part of its log. (A job starting to run may be written beside its
            # first events, as any other field is: one store round trip less on every job's way.)
            await self.store.insert_events(docs)
            written = await self._update_jobs(updates, before)
        else:
            written, _ = await asyncio.gather(self._update_jobs(updates, before), self.store.insert_events(docs))
        self.stored += len(docs)
        self.stored_bytes += batch_bytes
        for job_id, seq in next_seq.items():
            # Only the track this batch read: a re-dispatch may have replaced it meanwhile.
            if self._tracks.get(job_id) is tracks[job_id]:
                tracks[job_id].next_seq = seq
        for job_id, new in after.items():
            track = self._tracks.get(job_id)
            if track is not None and track.state is before[job_id] and job_id in written:
                track.state = new
        for (drone_id, job_id, attempt), seq in acks.items():
            self.ack(drone_id, job_id, seq, attempt)
        for doc in docs:
            del doc["_id"]  # the API and the browser see events without it
            topic = f"job:{doc['job']}"
            if self.hub.has_subscribers(topic):
                self.hub.publish(topic, cast("dict[str, Any]", doc))  # browsers get the event as stored
        # Each change on its own, in order: a job that started and ended within
        # one batch is still seen running, then ended.
        for job_id, summary in changes:
            if job_id in written:
                if "status" in summary:  # the queen's own listeners (plugins' reactions), then browsers
                    self.hub.job_status(job_id, summary["status"], written[job_id])
                self.hub.publish("jobs", {"type": "job:update", "job": job_id, **summary})
        for job_id, new in after.items():
            if job_id in written:
                if new.final:
                    self._tracks.pop(job_id, None)
                self.carry(job_id, new, carried.get(job_id, []))
        for (drone_id, job_id), attempt in stale.items():
            self.carry(job_id, self._tracks[job_id].state if job_id in self._tracks else JobState(),
                       [CancelCopy(drone_id, attempt)])

    async def _update_jobs(self, updates: dict[str, dict[str, Any]],
                           before: dict[str, JobState]) -> dict[str, dict[str, Any] | None]:
        """Write each job's fields if the job is still as the batch found it; the ids written, each with the
        job's document after the write when its status changed (the queen's job listeners get it: the
        plugins' reactions need not read it again), else None.

        A job changed meanwhile by the hive (cancelled while its drone was away, its drone written
        off) is not written: its events are stored, its document keeps the hive's decision.
        """
        jobs = list(updates)

        async def write(job_id: str) -> tuple[bool, dict[str, Any] | None]:
            expect, fields = before[job_id].expect(), updates[job_id]
            if "status" in fields:
                doc = await self.store.change_and_get_job(job_id, expect, fields)
                return doc is not None, cast("dict[str, Any] | None", doc)
            return await self.store.change_job(job_id, expect, fields), None

        results = await asyncio.gather(*(write(j) for j in jobs))
        written = {j: doc for j, (ok, doc) in zip(jobs, results) if ok}
        for job_id in set(jobs) - written.keys():
            log.info("job %s changed while its events were being stored; its drone's update is not applied", job_id)
            job = await self.store.get_job(job_id)
            track = self._tracks.get(job_id)
            if job is not None and track is not None:
                track.state = JobState.of(job)
        return written


_INT64 = 2**63
# A write holds at most this many events and about this much output text.
BATCH_EVENTS = 2000
BATCH_BYTES = 4 * 2**20
# Events waiting for the store at most (beyond it, drones keep them until they send them again).
PENDING_BYTES = 64 * 2**20
# Freed memory goes back to the system once nothing waits for the store: at once past TRIM_AFTER
# bytes of events stored since the last time, or past TRIM_IDLE_BYTES after TRIM_IDLE seconds of quiet.
TRIM_AFTER = 16 * 2**20
TRIM_IDLE_BYTES = 2**20
TRIM_IDLE = 1.0


def _size(body: dict[str, Any]) -> int:
    """About how many bytes an event takes: its output text or artifact bytes (a test report's part: its
    tests' texts, ~200 bytes each besides)."""
    data = body.get("text") or body.get("data") or ""
    tests = body.get("tests") if isinstance(body.get("tests"), list) else ()
    return len(data) + 100 + sum(200 + len(str(t.get("text") or "")) if isinstance(t, dict) else 200 for t in tests)


def store_problem(exc: BaseException) -> str:
    """A short account of why the store refused a write (its own message can carry whole documents)."""
    text = str(exc)
    if "disk is full" in text or "No space left" in text:
        return "the store's disk is full"
    return text[:200] + ("..." if len(text) > 200 else "")


def _storable(value: Any, depth: int = 0) -> Any:
    """`value` if the store (and JSON) can hold it as it is, else None."""
    if value is None or isinstance(value, (str, bool, float)):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else None
    if depth >= 8:
        return None
    if isinstance(value, list):
        items = [_storable(v, depth + 1) for v in value]
        return None if any(i is None and v is not None for i, v in zip(items, value)) else items
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or not k or k.startswith("$") or "." in k or "\0" in k:
                return None
            out[k] = _storable(v, depth + 1)
            if out[k] is None and v is not None:
                return None
        return out
    return None
