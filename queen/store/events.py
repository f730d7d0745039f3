"""The store's events: append-only, unique on ``(job, seq)``, output as compressed chunks (chunks.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from apiary.core.models import Event

from . import chunks

log = logging.getLogger(__name__)

_DUPLICATE_KEY = 11000
READ_BATCH = 5000
READ_BYTES = 2**20  # output text read at once for one page of events (a stalled client holds no more)
EVENT_BATCH = 64  # events fetched at once for a page: most are small; 64 of the largest output chunks are ~4 MiB
FRAME_BATCH = 16  # output events fetched from the store at once for the raw log: ~1 MiB when they do not compress


class EventQueries:
    """A job's events: stored once each, read in seq order, paged by bytes."""

    events: AsyncCollection

    async def insert_events(self, docs: list[Event]) -> None:
        """Store events (their output text compressed; `docs` themselves unchanged); one already stored
        (same job and seq) is skipped silently."""
        if not docs:
            return
        try:
            await self.events.insert_many([chunks.pack(doc) for doc in docs], ordered=False)
        except BulkWriteError as exc:
            others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != _DUPLICATE_KEY]
            if others or exc.details.get("writeConcernErrors"):
                raise

    async def job_history(self, job_id: str, output_types: Iterable[str]) -> list[Event]:
        """A job's stored events other than output, in seq order."""
        cursor = self.events.find({"job": job_id, "type": {"$nin": list(output_types)}}, {"_id": 0})
        return await cursor.sort("seq", ASCENDING).batch_size(READ_BATCH).to_list(None)

    async def events_of_types(self, job_id: str, types: Iterable[str]) -> list[Event]:
        """A job's stored events of the given types, in seq order (output among them with its text)."""
        cursor = self.events.find({"job": job_id, "type": {"$in": list(types)}}, {"_id": 0})
        return [chunks.expand(e) for e in await cursor.sort("seq", ASCENDING).batch_size(READ_BATCH).to_list(None)]

    async def command_tail(self, job_id: str, num: int, output_types: Iterable[str], events: int = 8) -> str:
        """The end of command `num`'s output, both streams: the text of its last `events` output events, in
        order (a job's summary shows the last lines of the command that failed it; an event is at most a chunk)."""
        cursor = self.events.find({"job": job_id, "num": num, "type": {"$in": list(output_types)}}, {"_id": 0})
        docs = await cursor.sort("seq", DESCENDING).limit(events).to_list(None)
        return "".join(chunks.expand(d).get("text", "") for d in reversed(docs))

    async def stage_command(self, job_id: str, stage: str) -> tuple[Event | None, Event | None]:
        """The newest command a job ran as a step of `stage` (not a hook): its ``job:cmd:start`` and
        ``job:cmd:done`` events (None for one not stored)."""
        start = await self.events.find_one({"job": job_id, "type": "job:cmd:start", "stage": stage,
                                            "hook": {"$exists": False}}, {"_id": 0}, sort=[("seq", DESCENDING)])
        if start is None:
            return None, None
        done = await self.events.find_one({"job": job_id, "type": "job:cmd:done", "num": start.get("num")},
                                          {"_id": 0}, sort=[("seq", DESCENDING)])
        return start, done

    async def command_text(self, job_id: str, num: int, output_type: str, max_bytes: int) -> str:
        """Command `num`'s output of `output_type` (``job:cmd:stdout``), in order, read until it passes
        `max_bytes` (so a caller can tell "more than" from "all")."""
        cursor = self.events.find({"job": job_id, "num": num, "type": output_type}, {"_id": 0})
        parts: list[str] = []
        size = 0
        async for event in cursor.sort("seq", ASCENDING).batch_size(EVENT_BATCH):
            parts.append(chunks.expand(event).get("text", ""))
            size += len(parts[-1])
            if size > max_bytes:
                break
        await cursor.close()
        return "".join(parts)

    async def drone_lines(self, job_id: str, up_to: int, limit: int = 1000) -> list[str]:
        """The drone's own lines about a job (``job:stderr``) up to seq `up_to`, the first `limit`."""
        cursor = self.events.find({"job": job_id, "type": "job:stderr", "seq": {"$lte": up_to}}, {"_id": 0})
        return [chunks.expand(e).get("text", "") for e in await cursor.sort("seq", ASCENDING).limit(limit).to_list(None)]

    async def last_seq(self, job_id: str) -> int:
        doc = await self.events.find_one({"job": job_id}, {"seq": 1}, sort=[("seq", DESCENDING)])
        return int(doc["seq"]) if doc else 0

    async def events_after(self, job_id: str, after: int = 0, limit: int | None = None,
                           max_bytes: int = READ_BYTES) -> tuple[list[Event], bool]:
        """(events after seq `after` in seq order, whether more follow): at most `limit` of them, and output
        text of about `max_bytes` (one event more at most): a page of a log-heavy job stays small in memory."""
        cursor = self.events.find({"job": job_id, "seq": {"$gt": after}}, {"_id": 0}).sort("seq", ASCENDING)
        if limit is not None:
            cursor = cursor.limit(limit + 1)
        events: list[Event] = []
        size, more = 0, False
        async for event in cursor.batch_size(EVENT_BATCH):
            if (limit is not None and len(events) >= limit) or size >= max_bytes:
                more = True
                break
            size += chunks.text_size(event)
            events.append(chunks.expand(event))
        await cursor.close()
        return events, more

    async def output_frames(self, job_id: str, output_types: Iterable[str]) -> AsyncIterator[bytes]:
        """A job's output, in seq order, as zstd frames (one per event; concatenated, one zstd stream).

        Read in pages of about `READ_BYTES` of compressed output, a few events at a time (an output event
        is at most a chunk of ~64 KiB, and output that does not compress stays that big), so a stalled
        client holds no more than a page here and in the store; the cursor is closed when the reader stops
        (`aclose`), not left open in the store.
        """
        after = 0
        types = list(output_types)
        while True:
            cursor = self.events.find({"job": job_id, "seq": {"$gt": after}, "type": {"$in": types}},
                                      {"_id": 0, "seq": 1, "z": 1, "text": 1}).sort("seq", ASCENDING)
            size, more = 0, False
            try:
                async for event in cursor.batch_size(FRAME_BATCH):
                    frame = chunks.frame_of(event)
                    after = event["seq"]
                    size += len(frame)
                    if frame:
                        yield frame
                    if size >= READ_BYTES:
                        more = True
                        break
            finally:
                await cursor.close()
            if not more:
                return
