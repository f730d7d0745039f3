"""The queen's ZeroMQ ROUTER: the only place that sees sockets and frames.

Each drone connection has a *route*: the ROUTER's routing id for it, chosen
by ZeroMQ (the drone sets none), never taken over by another connection
(no ROUTER_HANDOVER). The broker decodes each frame into a typed message and
hands it to ``handler(route, msg, body, key)``, `key` being the name of the
drone's authorized key file under CurveZMQ (the ZAP handler's User-Id; empty
without keys, or for the queen's own key); which drone a route is, the hive
decides (queen/hive.py). Malformed frames and unknown types
are logged and dropped. `send` never blocks: a frame for a connection that is
gone or too far behind is reported as not sent and the caller decides
(requeue, forget).

With a `ServerCurve` the ROUTER is a CurveZMQ server: a ZAP handler on the
broker's context admits only authorized drone keys, so an unauthenticated
peer's frames never reach `handler` and it is sent nothing (queen/curve.py).
Without one, drones are not authenticated: the queen's start refuses that on
a drone port other machines reach (`curve.server_curve`).

Lifecycle: `start()` (in the running loop) starts the ZAP handler and binds
(and returns the bound endpoint, useful with port ``*``), `run()` receives
until cancelled, `close()` closes with linger 0.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from apiary.core.curve import LOG_EVERY, Every, is_loopback
from apiary.core.errors import ApiaryError, ProtocolError
from apiary.core.protocol import DRONE_SENDS, MAX_MESSAGE_BYTES, Msg, decode, encode
from apiary.queen.curve import (
    ZAP_DOMAIN,
    DroneAuthenticator,
    ServerCurve,
    queen_handshake_problem,
)
from apiary.shared.handshakes import HandshakeMonitor

log = logging.getLogger(__name__)

Handler = Callable[[bytes, Msg, dict[str, Any], str], None]

_DRAIN_MAX = 1000  # frames taken per wakeup before yielding to other tasks
# Frames libzmq holds per connection for the broker to take, at most: with the largest frame a drone
# may send, 4 x 16 MiB. Past that libzmq stops reading the connection (TCP pushes back on the drone)
# instead of holding whatever a drone that ignores its send window sends; the broker drains eagerly,
# and a drone within its window never has this much waiting.
RCVHWM = 4
_HANDSHAKE_MS = 10_000  # a peer that connects and does not complete a handshake is dropped after this


class Broker:
    def __init__(self, endpoint: str, handler: Handler, curve: ServerCurve | None = None) -> None:
        self.endpoint = endpoint
        self.handler = handler
        self.curve = curve
        self.auth: DroneAuthenticator | None = None
        self._handshakes: HandshakeMonitor | None = None
        self._told = Every(LOG_EVERY)  # one line a minute per kind of refused handshake
        self.ctx = zmq.asyncio.Context()
        self.sock = self._make_socket()
        # A plain (synchronous) view of the same socket for non-blocking drains:
        # no future per frame.
        self._raw = zmq.Socket.shadow(self.sock.underlying)
        self._bad_logged: dict[bytes, float] = {}
        self.bad_frames = 0
        self.failed_frames = 0  # frames whose handling raised: a bug, logged once a minute per kind

    def _make_socket(self) -> zmq.asyncio.Socket:
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # No connection takes over another's route, whatever routing id it asks for.
        sock.setsockopt(zmq.ROUTER_HANDOVER, 0)
        # Sending to a drone that is not connected raises instead of vanishing.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        sock.setsockopt(zmq.RCVHWM, RCVHWM)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.HANDSHAKE_IVL, _HANDSHAKE_MS)
        if self.curve is not None:
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self.curve.keys.secret)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self.curve.keys.public)
            sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
            # Without a ZAP handler libzmq would admit every client key; with
            # this it refuses every handshake instead.
            sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        return sock

    def start(self) -> str:
        """Start the ZAP handler, bind; return the endpoint actually bound (port filled in)."""
        if self.curve is not None:
            self.auth = DroneAuthenticator(self.ctx, self.curve)
            self.auth.start()
        self._handshakes = HandshakeMonitor(self.sock, self._handshake_failed, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
        try:
            self.sock.bind(self.endpoint)
        except zmq.ZMQError as exc:
            self._stop_security()
            raise ApiaryError(f"cannot bind the drone endpoint {self.endpoint} (drone_bind): {exc}") from None
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if self.auth is not None:
            log.info("drones authenticate with CurveZMQ (authorized keys: %s)", self.auth.keys.folder)
        elif is_loopback(self.endpoint):
            log.info("drones are not authenticated (loopback only)")
        else:
            log.warning("drones are not authenticated on %s (allow_insecure_drones): any peer that reaches it can "
                        "join as a drone and receive jobs with their secrets", self.endpoint)
        return self.endpoint

    def _handshake_failed(self, event: int, value: int) -> None:
        problem = queen_handshake_problem(self.endpoint, event, value, self.curve is not None)
        if problem is not None and self._told.due(problem):
            log.warning("%s", problem)

    def _stop_security(self) -> None:
        if self._handshakes is not None:
            self._handshakes.close()
            self._handshakes = None
        if self.auth is not None:
            self.auth.stop()
            self.auth = None

    async def run(self) -> None:
        sock = self.sock
        while True:
            # An awaited receive, not poll(): zmq.asyncio re-checks the socket
            # after our own sends, which consume the edge-triggered FD's signal.
            # Frames, not bytes: a drone:info's User-Id (its key's name) is on its frame.
            self._receive(await sock.recv_multipart(copy=False))
            # Then drain without awaiting each frame: 2x the throughput.
            for _ in range(_DRAIN_MAX):
                try:
                    frames = self._raw.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._receive(frames)

    def _receive(self, frames: list[zmq.Frame]) -> None:
        # Nothing one frame does may end the receive loop: the queen would stop hearing every drone.
        try:
            self._take(frames)
        except Exception:
            self.failed_frames += 1
            if self._told.due("receive failed"):
                log.exception("error receiving a frame (%d so far); the broker goes on", self.failed_frames)

    def _take(self, frames: list[zmq.Frame]) -> None:
        route = frames[0].bytes
        try:
            if len(frames) != 2:
                raise ProtocolError(f"expected one frame after the identity, got {len(frames) - 1}")
            msg, body = decode(frames[1].bytes, DRONE_SENDS)
        except ProtocolError as exc:
            self._log_bad(route, exc)
            if exc.kind is Msg.DRONE_INFO:
                # A drone that cannot register must hear why, not retry in silence.
                self.send(route, Msg.REFUSED, {"reason": str(exc)})
            return
        key = ""
        if msg is Msg.DRONE_INFO and self.curve is not None:
            with contextlib.suppress(zmq.ZMQError):
                key = frames[1].get("User-Id") or ""
        try:
            self.handler(route, msg, body, key)
        except Exception:
            # A bug handling one message must not stop the broker.
            self.failed_frames += 1
            if self._told.due(("handler", msg)):
                log.exception("error handling %s from connection %r (%d so far; one line a minute)",
                              msg.value, route[:64], self.failed_frames)

    def _log_bad(self, identity: bytes, exc: Exception) -> None:
        self.bad_frames += 1
        now = time.monotonic()
        # One line per peer per second: a flood of garbage must not flood the log.
        if now - self._bad_logged.get(identity, 0.0) >= 1.0:
            self._bad_logged[identity] = now
            if len(self._bad_logged) > 10_000:
                self._bad_logged.clear()
            log.warning("dropped a malformed frame from %r: %s (%d dropped so far)", identity[:64], exc, self.bad_frames)

    def send(self, route: bytes, msg: Msg, body: dict[str, Any]) -> bool:
        """Queue one message on the connection `route`; False when it cannot be delivered now."""
        # Through the asyncio socket: it resolves at once with NOBLOCK and wakes
        # a pending receive if the send consumed the socket's readiness signal.
        sent = self.sock.send_multipart([route, encode(msg, body)], flags=zmq.NOBLOCK)
        exc = sent.exception() if sent.done() else None
        if exc is not None:
            log.debug("cannot send %s on connection %r: %s", msg.value, route[:64], exc)
            return False
        return True

    def close(self) -> None:
        self._stop_security()  # their sockets are on our context: term() would wait for them
        self.sock.close(linger=0)
        self.ctx.term()
