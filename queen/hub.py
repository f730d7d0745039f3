"""Fan-out of live messages to browser subscribers, by topic. No I/O of its own.

Topics: ``job:<id>`` (the job's stored events, in seq order, and ``job:comment`` messages as its
comments change: apiary.queen.comments), ``jobs`` (status
changes of every job), ``drones`` (the pool changed). The recorder publishes an
event only after it is stored, so a subscriber that registers first and then
reads the store misses nothing (see queen/ws.py).

A subscriber that falls `limit` messages, or `max_bytes` of their text,
behind is cut off (its ``overflowed`` flag set, its queue woken with None)
rather than let the queen's memory grow; the browser reconnects and catches up
from the store.

Apart from the browsers' topics, the queen's own code (plugins' reactions)
hears jobs start, go back to the queue and end through `Hub.listen_jobs`:
wherever a job's status changes the queen calls `Hub.job_status`, so what
browsers are sent may change shape without touching those listeners.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


MAX_BYTES = 16 * 2**20  # output text a subscriber may have waiting

# (job id, its status now): called at once, in order, for each change; it must not block
# (job id, its status now, the job document as stored then when the caller has it, else None)
JobListener = Callable[[str, str, "dict[str, Any] | None"], None]


class Subscriber:
    def __init__(self, topics: set[str], limit: int, max_bytes: int = MAX_BYTES) -> None:
        self.topics = topics
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.limit = limit
        self.max_bytes = max_bytes
        self.bytes = 0
        self.overflowed = False

    def put(self, message: dict[str, Any]) -> None:
        if self.overflowed:
            return
        size = len(message.get("text") or "")
        if self.queue.qsize() >= self.limit or self.bytes + size > self.max_bytes:
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.bytes += size
        self.queue.put_nowait(message)

    async def get(self) -> dict[str, Any] | None:
        """The next message (None: cut off)."""
        message = await self.queue.get()
        if message is not None:
            self.bytes -= len(message.get("text") or "")
        return message


class Hub:
    def __init__(self, limit: int = 50_000) -> None:
        self._topics: dict[str, set[Subscriber]] = defaultdict(set)
        self.limit = limit
        self._job_listeners: list[JobListener] = []

    def subscribe(self, sub: Subscriber | None, topic: str) -> Subscriber:
        if sub is None:
            sub = Subscriber(set(), self.limit)
        sub.topics.add(topic)
        self._topics[topic].add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber, topic: str | None = None) -> None:
        for t in [topic] if topic else list(sub.topics):
            sub.topics.discard(t)
            subs = self._topics.get(t)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._topics[t]

    def has_subscribers(self, topic: str) -> bool:
        return topic in self._topics

    def publish(self, topic: str, message: dict[str, Any]) -> None:
        for sub in self._topics.get(topic, ()):
            sub.put(message)

    # -- the queen's own listeners (not browsers) -------------------------------------

    def listen_jobs(self, listener: JobListener) -> None:
        """Call `listener(job_id, status, job)` whenever a job starts, goes back to the queue or ends."""
        self._job_listeners.append(listener)

    def unlisten_jobs(self, listener: JobListener) -> None:
        if listener in self._job_listeners:
            self._job_listeners.remove(listener)

    def job_status(self, job_id: str, status: str, job: dict[str, Any] | None = None) -> None:
        """Job `job_id` is now `status` (running, queued for another attempt, or a final status), as
        stored (`job`: the document the write returned, when the caller has it: listeners need not read it
        again): tell the queen's own listeners. A listener that raises is logged; the others are told."""
        for listener in list(self._job_listeners):
            try:
                listener(job_id, status, job)
            except Exception:
                log.exception("job %s (%s): a job listener failed", job_id, status)
