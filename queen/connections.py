"""The queen's HTTP connections, bounded in time and number, so slow or half-open clients cannot shut its port.

A connection must deliver a request's headers within `HEADER_TIMEOUT` of
opening, and the next request within `IDLE_TIMEOUT` of the last answer (idle
keep-alive); a request body must arrive within `BODY_TIMEOUT` of its headers,
and a client must keep reading its answer (or WebSocket messages): one that
reads none of it for `IDLE_TIMEOUT` is closed, with what was waiting for it. No more than `cap` connections are open at
once: at the cap a new connection makes room by closing the longest-idle ones
(a half-open connection that never sent its headers is idle from its start),
so clients that do send requests keep being answered. `cap` comes from the
open-file limit, which the queen first raises to its hard limit
(`raise_file_limit`), leaving room for the store, the drones' sockets and
files.

Decisions (`overdue`, `make_room`) are pure; `Connections` applies them:
``factory`` wraps aiohttp's protocol factory to see each connection open,
``middleware`` marks a connection busy while a request runs and sets its
body's deadline, ``sweep`` closes the overdue once a second. The same
defence as a reverse proxy's ``client_header_timeout``,
``client_body_timeout`` and ``keepalive_timeout`` (nginx), which the docs
still advise in front of a queen on an untrusted network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import resource
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

# Defaults; the queen takes them from [queen] http_timeout (headers, body) and IDLE_FACTOR times it (idle).
HEADER_TIMEOUT = 10.0  # seconds from opening to a request's headers
BODY_TIMEOUT = 10.0  # seconds for a request's body, once its headers are in
IDLE_FACTOR = 3  # idle keep-alive: longer than clients' own (aiohttp's client keeps 15 s), so they close first
IDLE_TIMEOUT = IDLE_FACTOR * HEADER_TIMEOUT  # seconds from an answer to the next request's headers
MAX_CONNECTIONS = 10_000
# Bytes of answer a client may leave unread (asyncio's high-water mark): above it for IDLE_TIMEOUT, it is cut
# off. A download must so go at ~35 KB/s at least (a 1 MiB piece per 30 s).
DRAINED = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass
class State:
    """One connection as the guard sees it (times from time.monotonic)."""

    opened: float
    idle_since: float
    busy: int = 0  # requests in progress
    requests: int = 0  # requests started so far
    doomed: bool = False  # opened when the cap was reached and nothing could make room
    buffered: int = 0  # bytes of answer waiting for the client to read them, at the last look
    stalled_since: float | None = None  # since when that has not gone down

    def observe(self, buffered: int, now: float) -> None:
        """Note how much answer waits for the client. A client that reads drains it to DRAINED (the queen
        then writes the next piece); one that stays above that is not keeping up."""
        if buffered <= DRAINED:
            self.stalled_since = None
        elif self.stalled_since is None:
            self.stalled_since = now
        self.buffered = buffered


def overdue(states: Mapping[Hashable, State], now: float, header_timeout: float = HEADER_TIMEOUT,
            idle_timeout: float = IDLE_TIMEOUT) -> list[Hashable]:
    """The connections to close now: no headers in time, idle too long, doomed, or (busy) not reading
    their answer for longer than idle_timeout: a client that stops reading holds memory for nothing."""
    out = []
    for key, st in states.items():
        if st.busy:
            if st.stalled_since is not None and now - st.stalled_since > idle_timeout:
                out.append(key)
            continue
        limit = header_timeout if st.requests == 0 else idle_timeout
        if st.doomed or now - st.idle_since > limit:
            out.append(key)
    return out


def make_room(states: Mapping[Hashable, State], cap: int) -> list[Hashable]:
    """The longest-idle connections to close so that one more fits under `cap` (fewer if too many are busy)."""
    excess = len(states) + 1 - cap
    if excess <= 0:
        return []
    idle = sorted((st.idle_since, i, key) for i, (key, st) in enumerate(states.items()) if not st.busy)
    return [key for _, _, key in idle[:excess]]


def raise_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.info("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft if soft != resource.RLIM_INFINITY else 65536


def cap_for(file_limit: int) -> int:
    """Connections allowed with `file_limit` open files: a quarter (at least 128) stays for everything else."""
    return max(16, min(MAX_CONNECTIONS, file_limit - max(128, file_limit // 4)))


class Connections:
    """Tracks the queen's HTTP connections and closes the overdue (see the module's docstring)."""

    def __init__(self, cap: int, header_timeout: float = HEADER_TIMEOUT, idle_timeout: float = IDLE_TIMEOUT,
                 body_timeout: float = BODY_TIMEOUT) -> None:
        self.cap = cap
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.body_timeout = body_timeout
        self.states: dict[Any, State] = {}
        self.closed_overdue = 0
        self.closed_for_room = 0
        self.closed_not_reading = 0
        self._warned = float("-inf")

    def factory(self, make: Callable[[], Any]) -> Callable[[], Any]:
        """Wrap aiohttp's protocol factory (``runner.server``): each new connection is tracked."""
        def new_connection() -> Any:
            now = time.monotonic()
            evict = make_room(self.states, self.cap)
            for handler in evict:
                self._close(handler)
                self.closed_for_room += 1
            if evict and now - self._warned >= 10.0:  # a flood must not flood the log too
                self._warned = now
                log.warning("%d HTTP connections open (the cap): closing the longest idle to make room "
                            "(%d so far)", self.cap, self.closed_for_room)
            handler = make()
            self.states[handler] = State(opened=now, idle_since=now, doomed=len(self.states) >= self.cap)
            return handler
        return new_connection

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks the connection busy while the request runs; reads a body within body_timeout."""
        st = self.states.get(request.protocol)
        if st is not None:
            st.busy += 1
            st.requests += 1
        deadline = None
        if request.body_exists:
            deadline = asyncio.get_running_loop().call_later(self.body_timeout, self._body_overdue, request)
        try:
            return await handler(request)
        finally:
            if deadline is not None:
                deadline.cancel()
            if st is not None:
                st.busy -= 1
                st.idle_since = time.monotonic()

    def _body_overdue(self, request: web.Request) -> None:
        """The body is not all in after body_timeout: a slow (or stalled) client; its connection is closed."""
        if not request.content.is_eof():
            log.warning("%s %s from %s: the body did not arrive within %g s; connection closed", request.method,
                        request.path, request.remote, self.body_timeout)
            self.closed_overdue += 1
            request.protocol.force_close()

    def sweep_once(self, alive: set[Any]) -> None:
        """Close the overdue; forget connections aiohttp has let go (`alive`: its open ones)."""
        now = time.monotonic()
        for handler in [h for h, st in self.states.items() if h not in alive and now - st.opened > 2.0]:
            del self.states[handler]
        for handler, st in self.states.items():
            if st.busy and handler.transport is not None:
                st.observe(handler.transport.get_write_buffer_size(), now)
        not_reading = 0
        for handler in overdue(self.states, now, self.header_timeout, self.idle_timeout):
            not_reading += self.states[handler].busy > 0
            self._close(handler)
            self.closed_overdue += 1
        if not_reading:
            self.closed_not_reading += not_reading
            log.warning("closed %d connection(s) whose clients read none of their answer for %g s", not_reading,
                        self.idle_timeout)

    async def sweep(self, server: web.Server, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep_once(set(server.connections))
            except Exception:
                log.exception("sweeping HTTP connections failed")

    def _close(self, handler: Any) -> None:
        self.states.pop(handler, None)
        try:
            transport = handler.transport
            handler.force_close()
            if transport is not None:
                # Not a close, which waits to send what the client never reads (the socket would stay open,
                # uncounted, holding its unsent answer): the connection goes now, its answer dropped.
                transport.abort()
        except Exception:  # already gone
            log.debug("closing a connection failed", exc_info=True)
