"""Debug shells in failed jobs, on the queen: between a person's WebSocket and the job's drone (issue 18.2).

A person opens a shell on the page's WebSocket (/ws, queen/ws.py)::

    {"op": "debug", "action": "open", "job": ID, "rows": 24, "cols": 80}
    {"op": "debug", "action": "input", "session": S, "data": "ls\\r"}        (at most 64 KiB of text)
    {"op": "debug", "action": "resize", "session": S, "rows": 40, "cols": 120}
    {"op": "debug", "action": "close", "session": S}

and is sent ``{"type": "debug:opened", "session", "job", "idle", "total"}``,
``{"type": "debug:output", "session", "text"}`` (the job's secrets masked by
the drone) and ``{"type": "debug:closed", "session", "how", "detail"}``, or
``{"type": "debug:refused", "job", "error"}`` saying why not (apiary.core.debug.refusal:
the role, the job's state, the kept workspace, the drone, the cap). The `apiary
debug` command speaks the same on the same socket, with an API token.

Each session is authorised when it opens, for that connection only, against
the store as it is then (the connection's token, session, user and role:
`current`, not what they were when the socket opened); its input and its output
go nowhere else, and it ends when the connection goes, or within RECHECK_EVERY
once its person's token, session or account is deleted or their role no longer
allows a shell.
The queen relays ``debug:*`` messages (apiary.core.protocol) to the job's
drone, acking output only while the person's connection has room
(ROOM bytes waiting at most), so a shell that prints without end is slowed at
the drone rather than buffered here. A session whose drone leaves or is lost
ends ("drone gone"); one the drone never answers ends after OPEN_TIMEOUT.

Every session is recorded on the job (``debug_sessions``: by id, {user, opened,
drone, ended, duration, how}) and shown by ``GET /api/v1/jobs/{id}/debug``
and on the job page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from apiary.core import debug
from apiary.core.errors import InputError
from apiary.core.protocol import Msg
from apiary.queen import keys
from apiary.queen.strict_json import json_response

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 15.0  # seconds a drone has to answer debug:open
ROOM = 1 * 2**20  # bytes of output waiting for one connection before the drone is held back
CHECK_EVERY = 1.0  # seconds between checks of sessions' drones and limits
RECHECK_EVERY = 5.0  # seconds between looking up again who holds open shells (auth caches a token 30 s; a delete clears it)
ORPHAN_WAIT = 8 * 3600.0  # seconds a lost drone's sessions are remembered, to close them when it is back
GRACE = 10.0  # seconds past a session's limits before the queen ends it itself (the drone ends it first)
PER_CONNECTION = 4  # shells one WebSocket connection may have open at once

routes = web.RouteTableDef()


class _Session:
    def __init__(self, sid: str, job: str, drone: str, user: str, owner: Any, idle: float, total: float) -> None:
        self.id, self.job, self.drone, self.user, self.owner = sid, job, drone, user, owner
        self.idle, self.total = idle, total
        self.opened = time.time()
        self.active = time.monotonic()
        self.started = time.monotonic()
        self.answered = False
        self.unacked = 0  # output bytes passed on and not acked to the drone yet
        self.ended = False


class DebugShells:
    """The queen's open debug sessions."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.sessions: dict[str, _Session] = {}
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._left: weakref.WeakSet[Any] = weakref.WeakSet()  # connections that closed
        # job -> (drone, its process's session, the drone's words): the drone said it does not keep the job's
        # workspace (it restarted since); true for as long as that drone process runs.
        self.not_kept: dict[str, tuple[str, str, str]] = {}
        self._checked = 0.0  # monotonic: when open sessions' people were last looked up again
        # Sessions ended because their drone was lost: (drone, session) -> when. Told to close when the drone is
        # back (paused, its link down a while), so that the shell does not run on there unseen, past the cap.
        self._orphans: dict[tuple[str, str], float] = {}

    @property
    def hive(self) -> Any:
        return self.app[keys.HIVE]

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            await self._end(session, "closed", "the queen is stopping", tell_drone=True)
        for task in [self._task, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in [self._task, *self._tasks] if t is not None), return_exceptions=True)

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- from the person's connection --------------------------------------------------------

    def handle(self, conn: Any, cmd: dict[str, Any]) -> None:
        """One ``{"op": "debug", …}`` from a WebSocket connection (`conn`: queen/ws.py's, with .sub and .request)."""
        action = cmd.get("action")
        if action == "open":
            self.spawn(self._open(conn, cmd))
            return
        sid = cmd.get("session")
        session = self.sessions.get(sid) if isinstance(sid, str) else None
        if session is None or session.owner is not conn:
            # Only the connection that opened a session may use it: an id alone is worth nothing.
            conn.sub.put({"type": "error", "error": "session: no such debug session open on this connection"})
            return
        if action == "input":
            data = cmd.get("data")
            if not isinstance(data, str) or len(data) > debug.MAX_INPUT:
                conn.sub.put({"type": "error", "error": f"data: text of at most {debug.MAX_INPUT} characters"})
                return
            raw = data.encode("utf-8", "replace")
            session.active = time.monotonic()
            for start in range(0, len(raw), debug.MAX_CHUNK):
                self.hive.send(session.drone, Msg.DEBUG_INPUT, {"session": sid, "data": raw[start:start + debug.MAX_CHUNK]})
        elif action == "resize":
            try:
                rows, cols = debug.size(cmd.get("rows"), cmd.get("cols"))
            except InputError as exc:
                conn.sub.put({"type": "error", "error": str(exc)})
                return
            self.hive.send(session.drone, Msg.DEBUG_RESIZE, {"session": sid, "rows": rows, "cols": cols})
        elif action == "close":
            self.spawn(self._end(session, "closed", f"closed by {session.user}", tell_drone=True))
        else:
            conn.sub.put({"type": "error", "error": "action: must be open, input, resize or close"})

    def left(self, conn: Any) -> None:
        """The connection closed: its sessions end (and one still opening ends once it is: `_open`)."""
        self._left.add(conn)
        for session in [s for s in self.sessions.values() if s.owner is conn]:
            self.spawn(self._end(session, "closed", "the person's connection closed", tell_drone=True))

    async def _open(self, conn: Any, cmd: dict[str, Any]) -> None:
        job_id = cmd.get("job")

        def refuse(error: str) -> None:
            conn.sub.put({"type": "debug:refused", "job": job_id if isinstance(job_id, str) else None,
                          "error": error})

        if not isinstance(job_id, str) or not job_id or len(job_id) > 64 or not job_id.isascii():
            return refuse("job: a job id is required")
        try:
            rows, cols = debug.size(cmd.get("rows", 24), cmd.get("cols", 80))
        except InputError as exc:
            return refuse(str(exc))
        user, role = await current(conn.request)
        config = self.app[keys.CONFIG]
        store = self.app[keys.STORE]
        job = await store.jobs.find_one({"_id": job_id}, {"status": 1, "drone": 1, "finished": 1, "pipeline": 1,
                                                          "debug_sessions": 1})
        if job is None:
            return refuse(f"job: no job {job_id!r}")
        open_here = sum(1 for s in self.sessions.values() if s.job == job_id)
        drone = self.hive.pool.get(job.get("drone") or "")
        why = debug.refusal(job, role, config.debug_role, open_here, config.debug_max_sessions,
                            drone is not None and drone.route is not None, time.time()) or self.gone(job_id, drone)
        if why is None and sum(1 for s in self.sessions.values() if s.owner is conn) >= PER_CONNECTION:
            why = f"{PER_CONNECTION} debug shells are open on this connection already, the most one may have"
        if why is not None:
            return refuse(why)
        settings = debug.settings_of(job)
        sid = secrets.token_hex(12)
        session = _Session(sid, job_id, job["drone"], user, conn, settings["idle"], settings["total"])
        self.sessions[sid] = session
        sent = self.hive.send(session.drone, Msg.DEBUG_OPEN, {"session": sid, "job": job_id, "rows": rows, "cols": cols,
                                                              "idle": settings["idle"], "total": settings["total"]})
        if not sent:
            self.sessions.pop(sid, None)
            return refuse(f"drone {session.drone} is gone (not connected to this queen)")
        await store.jobs.update_one({"_id": job_id}, {"$set": {f"debug_sessions.{sid}": debug.record(
            sid, user, session.opened, session.drone)}})
        log.info("job %s: %s opens debug shell %s on drone %s", job_id, user, sid, session.drone)
        if conn in self._left or session.ended:
            # The connection closed while this shell was opening: nobody will close it, so end it now.
            await self._end(session, "closed", "the person's connection closed", tell_drone=True)

    # -- from the drone ---------------------------------------------------------------------

    def on_drone(self, drone_id: str, msg: Msg, body: dict[str, Any]) -> None:
        """A ``debug:*`` message from drone `drone_id` (queen/hive.py); only about a session on that drone."""
        session = self.sessions.get(str(body.get("session")))
        if session is None or session.drone != drone_id or session.ended:
            if msg in (Msg.DEBUG_OPENED, Msg.DEBUG_OUTPUT) and isinstance(body.get("session"), str):
                # A shell the queen does not hold open (ended here while the drone was away or paused): it must
                # not run on unseen, past the job's cap. The drone ignores a close for a shell it no longer has.
                self.hive.send(drone_id, Msg.DEBUG_CLOSE, {"session": body["session"]})
            return
        sub = session.owner.sub
        if msg is Msg.DEBUG_OPENED:
            session.answered = True
            sub.put({"type": "debug:opened", "session": session.id, "job": session.job, "drone": session.drone,
                     "idle": session.idle,
                     "total": session.total, "sandboxed": body.get("sandboxed") is True})
        elif msg is Msg.DEBUG_OUTPUT:
            data: bytes = body["data"][:debug.MAX_CHUNK]
            session.active = time.monotonic()
            sub.put({"type": "debug:output", "session": session.id, "text": data.decode("utf-8", "replace")})
            session.unacked += len(body["data"])
            self._ack(session)
        elif msg is Msg.DEBUG_CLOSED:
            how = str(body.get("how")) if body.get("how") in debug.ENDINGS else "error"  # a drone's word, checked
            drone = self.hive.pool.get(drone_id)
            if how == "refused" and not session.answered and drone is not None and \
                    "not kept on this drone" in str(body.get("detail")):
                if len(self.not_kept) > 10_000:
                    self.not_kept.clear()
                self.not_kept[session.job] = (drone_id, drone.session, str(body.get("detail"))[:300])
            self.spawn(self._end(session, how, str(body.get("detail") or "")[:300], tell_drone=False))

    def gone(self, job_id: str, drone: Any) -> str | None:
        """The drone's own word that it no longer keeps the job's workspace, while that drone process runs."""
        known = self.not_kept.get(job_id)
        if known is None or drone is None or (known[0], known[1]) != (drone.id, drone.session):
            return None
        return f"drone {drone.id}: {known[2]}"

    def _ack(self, session: _Session) -> None:
        """Ack what the person's connection has room for; the watcher acks the rest once it has."""
        if session.unacked and session.owner.sub.bytes < ROOM:
            self.hive.send(session.drone, Msg.DEBUG_ACK, {"session": session.id, "bytes": session.unacked})
            session.unacked = 0

    # -- ends -----------------------------------------------------------------------------

    async def _end(self, session: _Session, how: str, detail: str, tell_drone: bool) -> None:
        if session.ended:
            return
        session.ended = True
        self.sessions.pop(session.id, None)
        if tell_drone:
            self.hive.send(session.drone, Msg.DEBUG_CLOSE, {"session": session.id})
        refused = how == "refused" and not session.answered
        session.owner.sub.put({"type": "debug:refused", "job": session.job, "error": detail} if refused else
                              {"type": "debug:closed", "session": session.id, "how": how, "detail": detail})
        store = self.app[keys.STORE]
        entry = debug.record(session.id, session.user, session.opened, session.drone)
        with contextlib.suppress(Exception):  # the store gone (the queen stopping): the record stays open
            await store.jobs.update_one({"_id": session.job}, {"$set": {
                f"debug_sessions.{session.id}": debug.ended(entry, time.time(), how, detail)}})
        log.info("job %s: debug shell %s ended (%s) %s", session.job, session.id, how, detail)

    async def _recheck(self) -> None:
        """End the shells of people whose token, session or account went, or whose role no longer allows one."""
        needed = self.app[keys.CONFIG].debug_role
        owners = {id(s.owner): s.owner for s in self.sessions.values()}
        for owner in owners.values():
            user, role = await current(owner.request)
            if not debug.role_allows(role, needed):
                for session in [s for s in self.sessions.values() if s.owner is owner]:
                    await self._end(session, "closed", f"{session.user} may no longer open debug shells (token, "
                                                       "session or account gone, or role changed)", True)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY)
            now = time.monotonic()
            for (drone_id, sid), since in list(self._orphans.items()):
                back = self.hive.pool.get(drone_id)
                if back is not None and back.route is not None:
                    self.hive.send(drone_id, Msg.DEBUG_CLOSE, {"session": sid})
                if (back is not None and back.route is not None) or now - since > ORPHAN_WAIT:
                    del self._orphans[(drone_id, sid)]  # a drone away longer has ended its shells itself
            if self.sessions and now - self._checked >= RECHECK_EVERY:
                self._checked = now
                with contextlib.suppress(Exception):  # the store away a moment: checked again next time
                    await self._recheck()
            for session in list(self.sessions.values()):
                drone = self.hive.pool.get(session.drone)
                if drone is None or drone.route is None:
                    self._orphans[(session.drone, session.id)] = now
                    await self._end(session, "drone gone", f"drone {session.drone} left or was lost", False)
                elif not session.answered and now - session.started > OPEN_TIMEOUT:
                    await self._end(session, "refused", f"drone {session.drone} did not answer (an older Apiary "
                                                        "without debug shells?)", True)
                elif debug.expired(session.started, session.active, now, session.idle + GRACE,
                                   session.total + GRACE):
                    await self._end(session, "idle" if now - session.started < session.total else "total",
                                    "ended by the queen", True)
                else:
                    self._ack(session)


def who(request: web.Request) -> tuple[str, str | None]:
    """(user name, role) of a request; a queen with no users yet (open on loopback) lets its visitor act as admin."""
    identity = request.get("identity")
    if identity:
        return identity["user"], identity["role"].value
    if not request.app[keys.GATE].users_exist:
        return "(no users yet)", "admin"
    return "(not signed in)", None


async def current(request: web.Request) -> tuple[str, str | None]:
    """(user name, role) of a WebSocket's upgrade request now, from the store: its token, session or user may have
    been deleted, or its role changed, since the connection opened (what `who` says is from then)."""
    gate = request.app[keys.GATE]
    if not gate.users_exist:
        return who(request)
    identity = await gate.identity(request)
    if identity is None:
        return "(not signed in)", None
    return identity["user"], identity["role"].value


DEBUG: web.AppKey[DebugShells] = web.AppKey("debug_shells", DebugShells)


async def debug_ctx(app: web.Application) -> AsyncIterator[None]:
    """The sessions, for as long as the queen runs (a cleanup context after the hive's)."""
    shells = DebugShells(app)
    app[DEBUG] = shells
    app[keys.HIVE].on_debug = shells.on_drone
    shells.start()
    try:
        yield
    finally:
        app[keys.HIVE].on_debug = None
        await shells.close()


def ws_op(conn: Any, cmd: dict[str, Any]) -> None:
    """``{"op": "debug", …}`` on /ws (queen/ws.py)."""
    shells = conn.app.get(DEBUG)
    if shells is None:
        conn.sub.put({"type": "error", "error": "debug shells are not available on this queen now"})
        return
    shells.handle(conn, cmd)


def ws_closed(conn: Any) -> None:
    shells = conn.app.get(DEBUG)
    if shells is not None:
        shells.left(conn)


def public_sessions(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's recorded sessions, oldest first."""
    recorded = job.get("debug_sessions") or {}
    return sorted((dict(v) for v in recorded.values() if isinstance(v, dict)), key=lambda s: s.get("opened") or 0)


async def state(request: web.Request, job_id: str) -> dict[str, Any] | None:
    """What the API and the page show: {available, why, role, idle, total, kept_until, sessions}; None: no job."""
    store = request.app[keys.STORE]
    job = await store.jobs.find_one({"_id": job_id}, {"status": 1, "drone": 1, "finished": 1, "pipeline": 1,
                                                      "debug_sessions": 1})
    if job is None:
        return None
    config = request.app[keys.CONFIG]
    shells = request.app.get(DEBUG)
    open_here = sum(1 for s in shells.sessions.values() if s.job == job_id) if shells else 0
    hive = request.app.get(keys.HIVE)
    drone = hive.pool.get(job.get("drone") or "") if hive is not None else None
    _, role = await current(request)
    settings = debug.settings_of(job)
    why = debug.refusal(job, role, config.debug_role, open_here, config.debug_max_sessions,
                        drone is not None and drone.route is not None, time.time())
    if why is None and shells is not None:
        why = shells.gone(job_id, drone)
    until = debug.kept_until(job.get("finished"), settings["total"]) if settings["keep"] and \
        job.get("status") == "failed" else None
    return {"job": job_id, "available": why is None, "why": why, "role": config.debug_role, "drone": job.get("drone"),
            "keep": settings["keep"], "idle": settings["idle"], "total": settings["total"], "kept_until": until,
            "open": open_here, "sessions": public_sessions(job)}


@routes.get("/api/v1/jobs/{job}/debug")
async def get_debug(request: web.Request) -> web.Response:
    found = await state(request, request.match_info["job"])
    if found is None:
        return json_response({"error": f"job: no job {request.match_info['job']!r}", "field": "job"}, status=404)
    return json_response(found)


def setup(app: web.Application) -> None:
    """Debug shells on the queen: the API and the relay (a cleanup context after the hive's)."""
    app.add_routes(routes)
    app.cleanup_ctx.append(debug_ctx)
