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
import logging
import time
from collections.abc import Callable
from typing import Any

from pymongo.errors import PyMongoError

from apiary.queen.hub import Hub
from apiary.queen.lifecycle import job_update
from apiary.core.protocol import OUTPUT_EVENTS, JobStatus, Msg
from apiary.queen.store import Store

log = logging.getLogger(__name__)

_OUTPUT_TYPES = [m.value for m in OUTPUT_EVENTS]

# (drone, job, seq): every event of `job` up to `seq` is stored
AckFn = Callable[[str, str, int], None]
# (drone, job id, final status, retry): a job's job:done is stored; retry: it
# failed to set up (an infrastructure fault) and may go to another attempt
DoneFn = Callable[[str, str, str, bool], None]


class _Track:
    __slots__ = ("attempt", "drone", "final", "next_seq")

    def __init__(self, next_seq: int, drone: str | None, final: bool = False, attempt: int = 1) -> None:
        self.next_seq = next_seq
        self.drone = drone
        # The fencing token: events of an earlier attempt (a drone thought lost) are refused.
        self.attempt = attempt
        # Ended by the queen (cancelled while its drone was away): late events are
        # kept as output but never change the job's end.
        self.final = final


class Recorder:
    def __init__(self, store: Store, hub: Hub, ack: AckFn, done: DoneFn,
                 stale: Callable[[str, str], None] = lambda drone, job: None, max_attempts: int = 1) -> None:
        self.max_attempts = max_attempts
        self.store = store
        self.hub = hub
        self.ack = ack
        self.done = done
        self.stale = stale
        self._pending: list[tuple[str, Msg, dict[str, Any]]] = []
        self._wake = asyncio.Event()
        self._tracks: dict[str, _Track] = {}
        self._unknown: set[str] = set()
        self.stored = 0

    def track(self, job_id: str, drone_id: str, first_seq: int = 1, attempt: int = 1) -> None:
        """Note a job this queen just dispatched: its events start at `first_seq` and carry `attempt`."""
        self._tracks[job_id] = _Track(first_seq, drone_id, attempt=attempt)

    def retire(self, job_id: str, attempt: int) -> None:
        """The job's attempt `attempt` is over (its drone was lost): refuse what it still says."""
        track = self._tracks.get(job_id)
        if track is not None:
            track.drone, track.attempt = None, attempt + 1

    def finalize(self, job_id: str) -> None:
        """The queen ended this job itself; what its drone still says must not revive it."""
        track = self._tracks.get(job_id)
        if track is not None:
            track.final = True

    def submit(self, drone_id: str, msg: Msg, body: dict[str, Any]) -> None:
        self._pending.append((drone_id, msg, body))
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            try:
                await self._write(batch)
                backoff = 0.05
            except (PyMongoError, ConnectionError, TimeoutError) as exc:
                # Nothing was acked: put the batch back in front and try again.
                log.warning("store write failed (%s); retrying %d events in %.1fs", exc, len(batch), backoff)
                self._pending = batch + self._pending
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                self._wake.set()
            except Exception:
                # Not the store being away: retrying would fail the same way and
                # stall every job behind this batch. Nothing was acked; drop it.
                log.exception("could not store a batch of %d events; dropped", len(batch))

    async def _load_track(self, job_id: str) -> _Track | None:
        """Where a job this queen has not seen yet stands (after a restart)."""
        job = await self.store.get_job(job_id)
        if job is None:
            return None
        final = JobStatus(job["status"]).final
        attempt = int(job.get("attempts") or 1)
        if not final and job["status"] != JobStatus.QUEUED.value:
            # The job document is a projection of the current attempt's events. A
            # queen that died between storing a batch's events and its job update
            # left the document behind: project it again from what is stored. (A
            # queued job waits for its next attempt: nothing of the last one applies.)
            fields: dict[str, Any] = {}
            for event in await self.store.job_history(job_id, _OUTPUT_TYPES):
                if event.get("attempt", 1) == attempt:
                    fields.update(job_update(Msg(event["type"]), event, job.get("drone") or ""))
            await self.store.update_jobs({job_id: fields} if fields else {})
        # A job back in the queue waits for its next attempt; the last one's events are stale.
        attempt += 1 if job["status"] == JobStatus.QUEUED.value else 0
        return _Track(await self.store.last_seq(job_id) + 1, job.get("drone"), final, attempt=attempt)

    async def _write(self, batch: list[tuple[str, Msg, dict[str, Any]]]) -> None:
        now = time.time()
        docs: list[dict[str, Any]] = []
        updates: dict[str, dict[str, Any]] = {}
        acks: dict[tuple[str, str], int] = {}
        next_seq: dict[str, int] = {}  # advanced only once the batch is stored
        tracks: dict[str, _Track] = {}
        told: set[str] = set()
        finished: list[tuple[str, str, str]] = []
        changes: list[tuple[str, dict[str, Any]]] = []
        for drone_id, msg, body in batch:
            job_id, seq = body["id"], body["seq"]
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
            if body.get("attempt", 1) != track.attempt or track.drone is not None and track.drone != drone_id:
                # A stale copy (the job was given to another drone): ack so the
                # drone forgets the event, and tell it to stop the job.
                log.warning("drone %s sent %s for job %s (attempt %s), which runs on %s (attempt %s): dropped; "
                            "cancelling its copy", drone_id, msg.value, job_id, body.get("attempt", 1), track.drone,
                            track.attempt)
                acks[(drone_id, job_id)] = seq
                self.stale(drone_id, job_id)
                continue
            tracks[job_id] = track
            expected = next_seq.get(job_id, track.next_seq)
            if seq < expected:
                acks[(drone_id, job_id)] = expected - 1
                continue
            if seq > expected:
                log.debug("job %s: seq %d arrived while %d was expected; waiting for a resend", job_id, seq, expected)
                continue
            if msg is Msg.JOB_ARTIFACT:
                # The bytes go to GridFS before the event is stored or acked.
                await self.store.save_artifact_part(job_id, body["name"], body["part"], body["parts"],
                                                    body["size"], body["data"])
            # An artifact's bytes are in GridFS; its event keeps the rest.
            doc = _storable({k: v for k, v in body.items() if k != "id" and (k != "data" or msg is not Msg.JOB_ARTIFACT)})
            if doc is None:
                log.warning("drone %s sent %s for job %s with a value the store cannot hold: dropped",
                            drone_id, msg.value, job_id)
                acks[(drone_id, job_id)] = expected - 1
                continue
            # A string _id: nothing an ObjectId would leak into JSON, and a
            # repeated (job, seq) collides on _id as on the unique index.
            doc.update(_id=f"{job_id}:{seq}", job=job_id, type=msg.value, at=now)
            docs.append(doc)
            fields = {} if track.final else job_update(msg, body, drone_id)
            if msg is Msg.JOB_DONE and body.get("retry") is True and not track.final \
                    and track.attempt < self.max_attempts:
                # Its setup failed there (a plugin install): not an end, another attempt.
                fields = _retried(body, drone_id, track.attempt)
            if track.final and job_id not in told:
                told.add(job_id)
                self.stale(drone_id, job_id)  # the job ended here: stop the drone's copy
            if fields:
                updates.setdefault(job_id, {}).update(fields)
                summary = {k: v for k, v in fields.items() if not k.startswith(("commands.", "phases."))}
                if summary:
                    changes.append((job_id, summary))
            next_seq[job_id] = seq + 1
            acks[(drone_id, job_id)] = seq
            if msg is Msg.JOB_DONE:
                finished.append((drone_id, job_id, updates.get(job_id, {}).get("status", ""),
                                 body.get("retry") is True))
        # Both writes at once. If only one lands: a failed batch is retried
        # whole (both writes are idempotent) before anything is acked, and a
        # queen that died in between re-projects the job on restart (_load_track).
        await asyncio.gather(self.store.update_jobs(updates), self.store.insert_events(docs))
        self.stored += len(docs)
        for job_id, seq in next_seq.items():
            # Only the track this batch read: a re-dispatch may have replaced it meanwhile.
            if self._tracks.get(job_id) is tracks[job_id]:
                tracks[job_id].next_seq = seq
        for (drone_id, job_id), seq in acks.items():
            self.ack(drone_id, job_id, seq)
        for doc in docs:
            del doc["_id"]  # the API and the browser see events without it
            topic = f"job:{doc['job']}"
            if self.hub.has_subscribers(topic):
                self.hub.publish(topic, doc)
        # Each change on its own, in order: a job that started and ended within
        # one batch is still seen running, then ended.
        for job_id, summary in changes:
            self.hub.publish("jobs", {"type": "job:update", "job": job_id, **summary})
        for drone_id, job_id, status, retry in finished:
            self._tracks.pop(job_id, None)
            self.done(drone_id, job_id, status, retry)


_INT64 = 2**63


def _retried(body: dict[str, Any], drone_id: str, attempt: int) -> dict[str, Any]:
    """The job's fields when attempt `attempt` could not be set up on `drone_id`: queued again, the attempt kept."""
    reason = f"setup failed on drone {drone_id}: {body.get('error') or 'no reason given'}"
    return {"status": JobStatus.QUEUED.value, "drone": None,
            f"history.{attempt}": {"attempt": attempt, "drone": drone_id, "ended": body.get("timestamp"),
                                   "reason": reason}}


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
