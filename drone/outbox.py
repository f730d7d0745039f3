"""Events a drone has sent but the queen has not yet acked.

Each job's events get seq 1, 2, 3…; they stay here, encoded, until an ``ack``
covers them. After a reconnect, or when a job's oldest event has waited too
long, the connection sends the job's unacked events again (the queen ignores
repeats). A job leaves the outbox once it has finished and all is acked.

Memory is bounded: past `memory_limit` bytes of unacked frames (a queen away
while jobs print), a job's further frames go to a spill file of its own under
`spill_dir` and are read back from there to be sent again; the file goes once
they are acked. Appends and reads are small and sequential, done in place.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

# (seq, the frame or None when it is in the spill file, its offset there, its length)
_Entry = tuple[int, bytes | None, int, int]


class _JobOut:
    __slots__ = ("attempt", "bytes", "finished", "frames", "next_seq", "on_disk", "sent_at", "spill", "spill_path",
                 "wait")

    def __init__(self, first_wait: float) -> None:
        self.attempt = 1  # the job's attempt these frames belong to: acks of another attempt are not theirs
        self.next_seq = 1
        self.frames: collections.deque[_Entry] = collections.deque()
        self.sent_at = 0.0  # when the oldest unacked frame was last sent
        self.wait = first_wait
        self.finished = False
        self.bytes = 0
        self.on_disk = 0  # unacked frames in the spill file
        self.spill: BinaryIO | None = None
        self.spill_path: Path | None = None


class Outbox:
    def __init__(self, resend_after: float, resend_max: float = 30.0, memory_limit: int = 64 * 2**20,
                 spill_dir: Path | None = None) -> None:
        self.resend_after = resend_after
        self.resend_max = resend_max
        self.memory_limit = memory_limit
        self.spill_dir = spill_dir
        self.memory = 0  # bytes of unacked frames held in memory
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
        if not job.frames:
            job.next_seq = max(job.next_seq, first_seq)

    def _drop(self, job: _JobOut) -> None:
        for _, frame, _, size in job.frames:
            if frame is not None:
                self.memory -= size
        job.frames.clear()
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
        job = self._jobs[job_id]
        if not job.frames:
            job.sent_at = time.monotonic()
        size = len(frame)
        job.bytes += size
        # Once a job spills, its frames keep going to disk until those are acked: seq order holds.
        if self.spill_dir is not None and (job.on_disk or self.memory + size > self.memory_limit):
            job.frames.append((seq, None, self._spill(job_id, job, frame), size))
            return
        job.frames.append((seq, frame, 0, size))
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

    def _frames(self, job: _JobOut) -> Iterator[bytes]:
        for _, frame, offset, size in list(job.frames):
            if frame is None:
                assert job.spill is not None
                frame = os.pread(job.spill.fileno(), size, offset)
            yield frame

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
        while job.frames and job.frames[0][0] <= seq:
            _, frame, _, size = job.frames.popleft()
            job.bytes -= size
            if frame is None:
                job.on_disk -= 1
            else:
                self.memory -= size
            progressed = True
        if job.on_disk == 0 and job.spill is not None:
            self._close_spill(job)
        if progressed:
            job.sent_at = time.monotonic()
            job.wait = self.resend_after
        self._forget_if_done(job_id, job)

    def _forget_if_done(self, job_id: str, job: _JobOut) -> None:
        if job.finished and not job.frames:
            self._close_spill(job)
            del self._jobs[job_id]

    def held(self) -> list[str]:
        """Jobs with unacked events."""
        return [j for j, out in self._jobs.items() if out.frames]

    def unacked_bytes(self, job_id: str) -> int:
        job = self._jobs.get(job_id)
        return job.bytes if job is not None else 0

    def unacked_count(self) -> int:
        return sum(len(out.frames) for out in self._jobs.values())

    def all_frames(self) -> Iterator[bytes]:
        """Every unacked frame, job by job in seq order (after a reconnect)."""
        now = time.monotonic()
        for out in self._jobs.values():
            if out.frames:
                out.sent_at = now
            yield from self._frames(out)

    def overdue(self) -> Iterator[bytes]:
        """Unacked frames of jobs whose oldest event waited past its deadline.

        Each resend without progress doubles that job's wait, up to resend_max,
        so a queen that is merely slow is not buried in repeats.
        """
        now = time.monotonic()
        for out in self._jobs.values():
            if out.frames and now - out.sent_at >= out.wait:
                out.sent_at = now
                out.wait = min(out.wait * 2, self.resend_max)
                yield from self._frames(out)
