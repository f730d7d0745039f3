"""Events a drone has sent but the queen has not yet acked. State only, no I/O.

Each job's events get seq 1, 2, 3…; they stay here, encoded, until an ``ack``
covers them. After a reconnect, or when a job's oldest event has waited too
long, the connection sends the job's unacked events again (the queen ignores
repeats). A job leaves the outbox once it has finished and all is acked.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator


class _JobOut:
    __slots__ = ("next_seq", "frames", "sent_at", "wait", "finished", "bytes")

    def __init__(self, first_wait: float) -> None:
        self.next_seq = 1
        self.frames: collections.deque[tuple[int, bytes]] = collections.deque()
        self.sent_at = 0.0  # when the oldest unacked frame was last sent
        self.wait = first_wait
        self.finished = False
        self.bytes = 0


class Outbox:
    def __init__(self, resend_after: float, resend_max: float = 30.0) -> None:
        self.resend_after = resend_after
        self.resend_max = resend_max
        self._jobs: dict[str, _JobOut] = {}

    def begin(self, job_id: str, first_seq: int) -> None:
        """Number a job's events from `first_seq` (a retried job continues its earlier attempts' seqs)."""
        job = self._jobs.get(job_id)
        if job is None:
            job = self._jobs[job_id] = _JobOut(self.resend_after)
        if not job.frames:
            job.next_seq = max(job.next_seq, first_seq)

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
        job.frames.append((seq, frame))
        job.bytes += len(frame)

    def finish(self, job_id: str) -> None:
        """The job emitted its last event; forget it once everything is acked."""
        job = self._jobs.get(job_id)
        if job is not None:
            job.finished = True
            self._forget_if_done(job_id, job)

    def ack(self, job_id: str, seq: int) -> None:
        job = self._jobs.get(job_id)
        if job is None:
            return
        progressed = False
        while job.frames and job.frames[0][0] <= seq:
            job.bytes -= len(job.frames.popleft()[1])
            progressed = True
        if progressed:
            job.sent_at = time.monotonic()
            job.wait = self.resend_after
        self._forget_if_done(job_id, job)

    def _forget_if_done(self, job_id: str, job: _JobOut) -> None:
        if job.finished and not job.frames:
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
            for _, frame in out.frames:
                yield frame

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
                for _, frame in out.frames:
                    yield frame
