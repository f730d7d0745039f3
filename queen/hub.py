"""Fan-out of live messages to browser subscribers, by topic. No I/O of its own.

Topics: ``job:<id>`` (the job's stored events, in seq order), ``jobs`` (status
changes of every job), ``drones`` (the pool changed). The recorder publishes an
event only after it is stored, so a subscriber that registers first and then
reads the store misses nothing (see queen/ws.py).

A subscriber that falls `limit` messages, or `max_bytes` of their text,
behind is cut off (its ``overflowed`` flag set, its queue woken with None)
rather than let the queen's memory grow; the browser reconnects and catches up
from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

log = logging.getLogger(__name__)


MAX_BYTES = 16 * 2**20  # output text a subscriber may have waiting


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
