"""Events a drone has sent, or is yet to send, that the queen has not acked; how many may be on their way.

Each job's events get seq 1, 2, 3…; they stay here, encoded, until an ``ack``
covers them. A job leaves the outbox once it has finished and all is acked.

Flow control: a job's events go only while the bytes it has in flight (sent,
not yet acked) stay within `window`; the rest waits here and goes as acks come
back (`ready`). So a job that prints faster than the queen stores waits on the
drone, not in the queen's memory. An event larger than the window still goes
when nothing of its job is in flight: a window never stalls a job. After a
reconnect (`rewind`), or when a job's oldest event in flight has waited too
long (`overdue`), what is in flight counts as lost and goes again, within the
window too (the queen ignores repeats: exactly once, in order, is its side).

Memory is bounded: past `memory_limit` bytes of unacked frames (a queen away
or slow while jobs print), a job's further frames go to a spill file of its own
under `spill_dir` and are read back from there to be sent; the file goes once
they are acked. Appends and reads are small and sequential, done in place.
Once a burst is acked and nothing is held in memory, what it took goes back to
the system (apiary.shared.memory).
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from apiary.shared import memory

log = logging.getLogger(__name__)

# (seq, the frame or None when it is in the spill file, its offset there, its length)
_Entry = tuple[int, bytes | None, int, int]

# Bytes of a job's events in flight at most (DroneConfig.send_window_bytes sets it).
DEFAULT_WINDOW = 4 * 2**20
# Bytes of frames acked, once none is held in memory, before freed memory goes back to the system.
TRIM_AFTER = 16 * 2**20


def window_take(in_flight: int, sizes: Iterable[int], window: int) -> int:
    """How many of a job's next frames may be sent now: `sizes` are their lengths in bytes, in seq order,
    `in_flight` the bytes of the job sent and not yet acked. Frames go while what is in flight stays
    within `window`; with nothing in flight the next one goes whatever its size (never a stall).
    Reads `sizes` only as far as it needs."""
    count = 0
    for size in sizes:
        if in_flight and in_flight + size > window:
            break
        in_flight += size
        count += 1
    return count


class _JobOut:
    __slots__ = ("attempt", "bytes", "finished", "flight", "in_flight", "next_seq", "on_disk", "queued", "sent_at",
                 "spill", "spill_path", "wait")

    def __init__(self, first_wait: float) -> None:
        self.attempt = 1  # the job's attempt these frames belong to: acks of another attempt are not theirs
        self.next_seq = 1
        self.flight: collections.deque[_Entry] = collections.deque()  # sent, not acked; seqs below queued's
        self.queued: collections.deque[_Entry] = collections.deque()  # not sent (or to send again)
        self.in_flight = 0  # bytes of `flight`
        self.sent_at = 0.0  # when the oldest frame in flight was sent
        self.wait = first_wait
        self.finished = False
        self.bytes = 0  # bytes unacked, in flight or queued
        self.on_disk = 0  # unacked frames in the spill file
        self.spill: BinaryIO | None = None
        self.spill_path: Path | None = None

    def unacked(self) -> int:
        return len(self.flight) + len(self.queued)

    def rewind(self, now: float) -> None:
        """What is in flight may be lost: queue it again, in front."""
        self.queued.extendleft(reversed(self.flight))
        self.flight.clear()
        self.in_flight = 0
        self.sent_at = now


class Outbox:
    def __init__(self, resend_after: float, resend_max: float = 30.0, memory_limit: int = 64 * 2**20,
                 spill_dir: Path | None = None, window: int = DEFAULT_WINDOW) -> None:
        self.resend_after = resend_after
        self.resend_max = resend_max
        self.memory_limit = memory_limit
        self.spill_dir = spill_dir
        self.window = window
        self.memory = 0  # bytes of unacked frames held in memory
        self._freed = 0  # bytes of frames acked since memory was last given back
        self.spilled = 0  # frames ever written to spill files (a figure for logs and tests)
        self._jobs: dict[str, _JobOut] = {}

    def begin(self, job_id: str, first_seq: int, attempt: int = 1) -> None:
        """Number attempt `attempt` of a job's events from `first_seq` (a retry goes on from its earlier
        attempts' seqs). What an earlier attempt left unacked is dropped: the queen gave the job a new
        attempt, so it refuses those events anyway, and they must not take the new attempt's seqs."""
        job = self._jobs.get(job_id)
        if job is not None and job.attempt != attempt:
            self._drop(job)
            job = None
        if job is None:
            job = self._jobs[job_id] = _JobOut(self.resend_after)
            job.attempt = attempt
        if not job.unacked():
            job.next_seq = max(job.next_seq, first_seq)

    def _drop(self, job: _JobOut) -> None:
        for frames in (job.flight, job.queued):
            for _, frame, _, size in frames:
                if frame is not None:
                    self.memory -= size
            frames.clear()
        job.in_flight = job.bytes = job.on_disk = 0
        self._close_spill(job)

    def attempt(self, job_id: str) -> int:
        """The attempt of the job whose events are being numbered (1 until `begin` says otherwise)."""
        job = self._jobs.get(job_id)
        return job.attempt if job is not None else 1

    def next_seq(self, job_id: str) -> int:
        job = self._jobs.get(job_id)
        if job is None:
            job = self._jobs[job_id] = _JobOut(self.resend_after)
        seq = job.next_seq
        job.next_seq += 1
        return seq

    def keep(self, job_id: str, seq: int, frame: bytes) -> None:
        """Hold a job's next frame until it is acked; `ready` says when it may go."""
        job = self._jobs[job_id]
        size = len(frame)
        job.bytes += size
        # Once a job spills, its frames keep going to disk until those are acked: seq order holds.
        if self.spill_dir is not None and (job.on_disk or self.memory + size > self.memory_limit):
            job.queued.append((seq, None, self._spill(job_id, job, frame), size))
            return
        job.queued.append((seq, frame, 0, size))
        self.memory += size

    def _spill(self, job_id: str, job: _JobOut, frame: bytes) -> int:
        if job.spill is None:
            assert self.spill_dir is not None
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            job.spill_path = self.spill_dir / f"{job_id}.spill"
            job.spill = open(job.spill_path, "w+b")  # noqa: SIM115 - closed when its frames are acked
            log.warning("job %s: %d bytes unacked in memory; holding further events on disk (%s)", job_id,
                        self.memory, job.spill_path)
        offset = job.spill.seek(0, os.SEEK_END)
        job.spill.write(frame)
        job.spill.flush()
        job.on_disk += 1
        self.spilled += 1
        return offset

    def _close_spill(self, job: _JobOut) -> None:
        if job.spill is not None:
            job.spill.close()
            job.spill = None
        if job.spill_path is not None:
            job.spill_path.unlink(missing_ok=True)
            job.spill_path = None

    def _read(self, job: _JobOut, entry: _Entry) -> bytes:
        _, frame, offset, size = entry
        if frame is None:
            assert job.spill is not None
            frame = os.pread(job.spill.fileno(), size, offset)
        return frame

    def ready(self, job_id: str | None = None) -> Iterator[bytes]:
        """The frames of job `job_id` (or of every job) that may go now, in seq order, within the window.

        Each counts as in flight once yielded: a caller whose send fails stops iterating, and that frame
        goes again when overdue or after a reconnect; the ones after it stay queued. Iterate it at once
        (no await in between: an ack meanwhile would change what it walks)."""
        if job_id is None:
            jobs = list(self._jobs.values())
        else:
            jobs = [self._jobs[job_id]] if job_id in self._jobs else []
        for job in jobs:
            for _ in range(window_take(job.in_flight, (entry[3] for entry in job.queued), self.window)):
                entry = job.queued.popleft()
                if not job.flight:
                    job.sent_at = time.monotonic()
                job.flight.append(entry)
                job.in_flight += entry[3]
                yield self._read(job, entry)

    def finish(self, job_id: str) -> None:
        """The job emitted its last event; forget it once everything is acked."""
        job = self._jobs.get(job_id)
        if job is not None:
            job.finished = True
            self._forget_if_done(job_id, job)

    def ack(self, job_id: str, seq: int, attempt: int | None = None) -> None:
        """The queen holds the job's events up to `seq` (of attempt `attempt`, when it says)."""
        job = self._jobs.get(job_id)
        if job is None or attempt is not None and attempt != job.attempt:
            return
        progressed = False
        # In flight first; then queued ones the queen got before a rewind queued them again.
        for frames in (job.flight, job.queued):
            while frames and frames[0][0] <= seq:
                _, frame, _, size = frames.popleft()
                job.bytes -= size
                if frames is job.flight:
                    job.in_flight -= size
                if frame is None:
                    job.on_disk -= 1
                else:
                    self.memory -= size
                    self._freed += size
                progressed = True
        if job.on_disk == 0 and job.spill is not None:
            self._close_spill(job)
        if not self.memory and self._freed >= TRIM_AFTER:
            # A burst of output is through and nothing is held: let glibc give its memory back.
            self._freed = 0
            memory.trim()
        if progressed:
            job.sent_at = time.monotonic()
            job.wait = self.resend_after
        self._forget_if_done(job_id, job)

    def _forget_if_done(self, job_id: str, job: _JobOut) -> None:
        if job.finished and not job.unacked():
            self._close_spill(job)
            del self._jobs[job_id]

    def held(self) -> list[str]:
        """Jobs with unacked events."""
        return [j for j, out in self._jobs.items() if out.unacked()]

    def unacked_bytes(self, job_id: str) -> int:
        job = self._jobs.get(job_id)
        return job.bytes if job is not None else 0

    def unacked_count(self) -> int:
        return sum(out.unacked() for out in self._jobs.values())

    def in_flight(self, job_id: str) -> int:
        """Bytes of the job's frames sent and not yet acked."""
        job = self._jobs.get(job_id)
        return job.in_flight if job is not None else 0

    def rewind(self) -> None:
        """After a reconnect: nothing sent before counts as arrived; `ready` sends it again."""
        now = time.monotonic()
        for out in self._jobs.values():
            out.rewind(now)

    def overdue(self) -> Iterator[bytes]:
        """Frames to send again: of jobs whose oldest frame in flight waited past its deadline (sent
        again from there, within the window), and of jobs with frames queued and none in flight (a
        send that failed stopped them).

        Each resend without progress doubles that job's wait, up to resend_max,
        so a queen that is merely slow is not buried in repeats.
        """
        now = time.monotonic()
        for job_id, out in list(self._jobs.items()):
            if out.flight and now - out.sent_at >= out.wait:
                out.rewind(now)
                out.wait = min(out.wait * 2, self.resend_max)
            if out.queued and not out.flight:
                yield from self.ready(job_id)
