"""The browser WebSocket at /ws: live job events, job status changes, the drone pool.

Client -> queen, JSON:
    {"op": "subscribe", "topic": "job", "job": ID, "after": SEQ}   the job's events after SEQ, then live
    {"op": "subscribe", "topic": "jobs"}                             status changes of all jobs
    {"op": "subscribe", "topic": "drones"}                           the pool now, then each change
    {"op": "subscribe", "topic": "bisect", "bisect": ID}             each change of a bisect (then read it)
    {"op": "unsubscribe", "topic": ..., "job": ID}
Queen -> client, JSON: stored events as the API returns them (``job``, ``seq``,
``type``, …), ``{"type": "job:update", …}``, ``{"type": "drones", "drones": […]}``,
``{"type": "subscribed", …}`` once a job's history is sent, ``{"type": "error", "error": …}``.

Bounded work: a connection holds at most MAX_JOB_SUBSCRIPTIONS job
subscriptions; subscribing again to a job it follows already is answered
without resending the history (once per subscription); a subscription
dropped before its history went out costs no read; everything a connection
is sent waits in its one bounded queue (a client that does not read is cut
off, see queen/hub.py). Which pages may open the socket at all is decided
before it opens (queen/web_guard.py: the queen's own origin only).

No gap, no duplicate: a job subscription puts a catch-up marker in the
connection's queue and registers for live events in one synchronous step; the
one sender task then sends the stored history and skips live events it has
already sent (by seq). The recorder publishes only stored events, so whatever
the history read misses is in the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from apiary.queen.hub import Subscriber
from apiary.queen.store.events import READ_BATCH
from apiary.queen.strict_json import dumps

from . import debugshells, keys

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4008
MAX_JOB_SUBSCRIPTIONS = 64


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=64 * 1024)
    await ws.prepare(request)
    conn = _Connection(request.app, ws)
    conn.request = request  # who is connected: a debug shell is authorised per session (queen/debugshells.py)
    sender = asyncio.create_task(conn.send_loop())
    sender.add_done_callback(lambda task: _sender_ended(task, ws))
    try:
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            conn.handle(message.data)
    finally:
        # Whatever the sender ended with: a subscriber left in the hub would keep its queue (up to
        # hub.MAX_BYTES of output) and its topics for the queen's life.
        request.app[keys.HUB].unsubscribe(conn.sub)
        debugshells.ws_closed(conn)  # its debug shells end with it
        # A sender that ended is not awaited: its exception (logged by _sender_ended) raised again
        # here would tie this frame, the task and the queue in a cycle only the GC frees.
        if not sender.done():
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
    return ws


def _sender_ended(task: asyncio.Task[None], ws: web.WebSocketResponse) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, ConnectionError):
        log.error("WebSocket sender failed", exc_info=exc)
    if not ws.closed:
        # Ends the receive loop in websocket() too.
        asyncio.ensure_future(ws.close(code=1011 if exc else 1000))


class _Connection:
    def __init__(self, app: web.Application, ws: web.WebSocketResponse) -> None:
        self.app = app
        self.ws = ws
        self.hub = app[keys.HUB]
        self.sub = Subscriber(set(), self.hub.limit)
        self.sent_seq: dict[str, int] = {}
        self.pending: set[str] = set()  # jobs whose history is still to be sent, once

    def error(self, text: str) -> None:
        self.sub.put({"type": "error", "error": text})

    def handle(self, data: str) -> None:
        try:
            cmd = json.loads(data)
        except json.JSONDecodeError as exc:
            return self.error(f"not JSON: {exc.msg}")
        except RecursionError:
            return self.error("not JSON we accept: nested too deeply")
        if isinstance(cmd, dict) and cmd.get("op") == "debug":  # a debug shell (queen/debugshells.py)
            return debugshells.ws_op(self, cmd)
        if not isinstance(cmd, dict) or cmd.get("op") not in ("subscribe", "unsubscribe"):
            return self.error('expected {"op": "subscribe" or "unsubscribe", "topic": ...}')
        topic = cmd.get("topic")
        if topic == "job":
            job_id, after = cmd.get("job"), cmd.get("after", 0)
            if not isinstance(job_id, str) or not job_id or len(job_id) > 64 or not job_id.isascii():
                return self.error("job: a job id is required")
            if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < 2**62:
                return self.error("after: must be a sequence number, 0 or more")
            name = f"job:{job_id}"
            if cmd["op"] == "unsubscribe":
                self.hub.unsubscribe(self.sub, name)
                self.sent_seq.pop(job_id, None)
                self.pending.discard(job_id)
                return
            if name in self.sub.topics:
                # Followed already: its history went (or goes) out once; live events keep coming.
                return self.sub.put({"type": "subscribed", "topic": "job", "job": job_id, "already": True})
            if sum(t.startswith("job:") for t in self.sub.topics) >= MAX_JOB_SUBSCRIPTIONS:
                return self.error(f"job: at most {MAX_JOB_SUBSCRIPTIONS} jobs followed at once on one connection; "
                                  "unsubscribe from one first")
            # Marker first, then registration, with no await between: every live
            # event of this job lands in the queue behind the marker.
            self.sub.put({"_catchup": job_id, "after": after})
            self.pending.add(job_id)
            self.hub.subscribe(self.sub, name)
        elif topic in ("jobs", "drones"):
            if cmd["op"] == "unsubscribe":
                self.hub.unsubscribe(self.sub, topic)
                return
            if topic in self.sub.topics:
                return self.sub.put({"type": "subscribed", "topic": topic, "already": True})
            if topic == "drones":
                self.sub.put({"type": "drones", "drones": self.app[keys.HIVE].drones()})
            self.hub.subscribe(self.sub, topic)
            self.sub.put({"type": "subscribed", "topic": topic})
        elif topic == "bisect":  # a bisect's changes, for its page (apiary.queen.bisects)
            from apiary.queen.bisects import ws_topic

            ws_topic(self.hub, self.sub, cmd)
        else:
            self.error("topic: must be job, jobs, drones or bisect")

    async def send_loop(self) -> None:
        store = self.app[keys.STORE]
        while True:
            item = await self.sub.get()
            if item is None:  # the hub cut us off: too far behind
                await self.ws.close(code=CLOSE_TOO_SLOW, message=b"too slow: reconnect with after=<last seq>")
                return
            if "_catchup" in item:
                if item["_catchup"] in self.pending:  # not dropped meanwhile, not sent already
                    self.pending.discard(item["_catchup"])
                    await self._catch_up(store, item["_catchup"], item["after"])
                continue
            job_id = item.get("job")
            seq = item.get("seq")
            if seq is not None and job_id in self.sent_seq:
                if seq <= self.sent_seq[job_id]:
                    continue  # already sent from the store
                self.sent_seq[job_id] = seq
            await self.ws.send_str(dumps(item))

    async def _catch_up(self, store: Any, job_id: str, after: int) -> None:
        job = await store.get_job(job_id)
        if job is None:
            self.hub.unsubscribe(self.sub, f"job:{job_id}")
            await self.ws.send_str(dumps({"type": "error", "error": f"no job {job_id!r}", "job": job_id}))
            return
        last = after
        while True:
            events, more = await store.events_after(job_id, last, READ_BATCH)
            for event in events:
                await self.ws.send_str(dumps(event))
            if events:
                last = events[-1]["seq"]
            if not more:
                break
        self.sent_seq[job_id] = last
        await self.ws.send_str(dumps({"type": "subscribed", "topic": "job", "job": job_id, "last": last}))
