"""The drone's link to its queen: the only drone code that sees sockets and frames.

A ZeroMQ DEALER (the queen knows it as the drone of the ``drone:info`` it
sends; ZeroMQ names the connection). `emit(job, type, fields)` gives
a job event its seq, keeps it in the outbox and sends it once the job's window
allows (``send_window_bytes`` in flight at most; acks open it again: outbox.py);
nothing the drone emits is lost while it lives: unacked events go again when
the queen comes back (a new boot id in ``queen:heartbeat``, or
``drone:query-info``) or when they have waited too long. Sends never block:
with ZMQ_IMMEDIATE a frame is only queued on a live connection, so a queen that
is away costs a failed send, not a growing queue of stale frames; the outbox is
the queue.

Heartbeats go every ``heartbeat_interval``; a queen silent for ``interval *
liveness`` is reported as unreachable (ZeroMQ keeps reconnecting, with backoff
growing to a cap). Messages other than ``ack`` go to ``on_message``.

With ``curve_secret_key`` and ``queen_public_key`` the DEALER is a CurveZMQ
client. A refused handshake is logged with what to fix (at most once a
minute) and dialled again (keys.py).

Lifecycle: `start()` (in the running loop), then `run()` until cancelled, then `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from apiary.core.config import DroneConfig
from apiary.core.curve import LOG_EVERY, Every
from apiary.core.errors import ProtocolError
from apiary.core.protocol import DRONE_SENDS, MAX_MESSAGE_BYTES, QUEEN_SENDS, Msg, decode, encode
from apiary.shared.handshakes import HandshakeMonitor

from .keys import HANDSHAKE_FAILED, client_curve, drone_handshake_problem
from .outbox import Outbox

log = logging.getLogger(__name__)

# Seconds a job's event may wait for the ones emitted right after it, to go to the queen together.
SEND_DELAY = 0.001

OnMessage = Callable[[Msg, dict[str, Any]], None]
InfoFn = Callable[[], dict[str, Any]]


class Connection:
    def __init__(self, config: DroneConfig, drone_id: str, on_message: OnMessage, info: InfoFn,
                 heartbeat_body: InfoFn) -> None:
        self.config = config
        self.drone_id = drone_id
        self.on_message = on_message
        self.info = info
        self.heartbeat_body = heartbeat_body
        self.outbox = Outbox(config.resend_after, memory_limit=config.outbox_memory_bytes,
                             spill_dir=config.work_path / "outbox", window=config.send_window_bytes)
        # CurveZMQ keys (files read now: a bad one stops the drone at start); None: no CURVE.
        self.curve = client_curve(config)
        self._handshakes: HandshakeMonitor | None = None
        self._told = Every(LOG_EVERY)
        self._redial: asyncio.TimerHandle | None = None
        self._redial_after = 1.0
        self.ctx = zmq.asyncio.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self._raw = zmq.Socket.shadow(self.sock.underlying)
        self.queen_boot: str | None = None
        self.last_heard = 0.0
        self.reachable = False
        self.leaving = False
        self.bad_frames = 0
        self._due: set[str] = set()  # jobs with events waiting to be sent together (_send_soon)
        self._due_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        sock = self.sock
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if self.curve is not None:
            sock.setsockopt(zmq.CURVE_SECRETKEY, self.curve.keys.secret)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self.curve.keys.public)
            sock.setsockopt(zmq.CURVE_SERVERKEY, self.curve.server)
        # ZeroMQ tells a client nothing about a refused handshake but through a
        # monitor: watch it to say what is wrong, and to dial again.
        self._handshakes = HandshakeMonitor(sock, self._handshake,
                                            HANDSHAKE_FAILED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        sock.connect(self.config.queen)

    def _handshake(self, event: int, value: int) -> None:
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._told.clear()
            self._redial_after = 1.0
            return
        problem = drone_handshake_problem(self.config.queen, event, value, self.curve)
        if self._told.due(problem):
            log.warning("%s", problem)
        # A client whose key the queen refused may never try again by itself
        # (libzmq); dial again after a pause that grows to 10 s, so a drone
        # added to authorized_keys gets in without a restart.
        if self._redial is None:
            self._redial = asyncio.get_running_loop().call_later(self._redial_after, self._dial_again)
            self._redial_after = min(self._redial_after * 2, 10.0)

    def _dial_again(self) -> None:
        self._redial = None
        if self.sock.closed:
            return
        with contextlib.suppress(zmq.ZMQError):
            self.sock.disconnect(self.config.queen)
        self.sock.connect(self.config.queen)

    def _stop_handshakes(self) -> None:
        if self._redial is not None:
            self._redial.cancel()
            self._redial = None
        if self._handshakes is not None:
            self._handshakes.close()  # before the context ends: term() would wait for its socket
            self._handshakes = None

    # -- sending --------------------------------------------------------------------

    def _send(self, frame: bytes) -> bool:
        # Through the asyncio socket (see queen/broker.py): NOBLOCK resolves at once.
        sent = self.sock.send(frame, flags=zmq.NOBLOCK)
        return sent.done() and sent.exception() is None  # if not, the outbox keeps job events for later

    def send(self, msg: Msg, body: dict[str, Any]) -> bool:
        """Send a message that needs no delivery guarantee (info, heartbeat, bye)."""
        return self._send(encode(msg, body))

    def begin(self, job_id: str, first_seq: int, attempt: int = 1) -> None:
        """Attempt `attempt` of a job arrives; its events start at `first_seq` (it may be a retry)."""
        self.outbox.begin(job_id, first_seq, attempt)

    def emit(self, job_id: str, msg: Msg, fields: dict[str, Any]) -> None:
        """Send a job event (now, or once the job's window has room); it is kept until the queen acks it.
        The one place an event gets its ``id``, ``seq`` and ``attempt`` (protocol.JobEvent)."""
        seq = self.outbox.next_seq(job_id)
        head = {"id": job_id, "seq": seq, "attempt": self.outbox.attempt(job_id)}
        frame = encode(msg, {**fields, **head})
        try:
            decode(frame, DRONE_SENDS)
        except ProtocolError as exc:
            # The queen would refuse it each time it came, and the job would wait for it for ever:
            # its seq carries a line saying what was dropped instead (what emits it is at fault).
            log.error("job %s: not sending a %s the queen would refuse: %s", job_id, msg.value, exc)
            frame = encode(Msg.JOB_STDERR, {"text": f"apiary: the drone dropped a {msg.value} event the queen "
                                                    f"would refuse: {str(exc)[:500]}\n", **head})
        self.outbox.keep(job_id, seq, frame)
        self._send_soon(job_id, msg)

    def _send_soon(self, job_id: str, msg: Msg) -> None:
        """Send the job's events together: at most SEND_DELAY seconds after the first waiting one, and at once
        with a job:cmd:start or job:done (a command then runs, or nothing follows). A job's start (job:started,
        job:phase, job:cmd:start) and end (job:cmd:done, job:phase, job:tested, job:done) then reach the queen
        at once and are stored in one batch each: sent one by one as emitted (the stage runs in a task of its
        own, so they span turns of the loop, ~0.3 ms), the queen's recorder took the first ones alone and
        stored a trivial job in four or five batches, a pair of store round trips each, instead of two."""
        self._due.add(job_id)
        if msg is Msg.JOB_CMD_START or msg is Msg.JOB_DONE:
            self._send_due()
        elif self._due_timer is None:
            try:
                self._due_timer = asyncio.get_running_loop().call_later(SEND_DELAY, self._send_due)
            except RuntimeError:  # no loop (a caller outside one): at once, as before
                self._send_due()

    def _send_due(self) -> None:
        if self._due_timer is not None:
            self._due_timer.cancel()
            self._due_timer = None
        due, self._due = self._due, set()
        for job_id in due:
            self._send_ready(job_id)

    def _send_ready(self, job_id: str | None = None) -> None:
        """Send what the window lets go now, of one job or of all; stop at a failed send (the outbox
        keeps the rest and sends it when overdue or after a reconnect)."""
        for frame in self.outbox.ready(job_id):
            if not self._send(frame):
                break

    def goodbye(self) -> None:
        """Leave the pool: say drone:bye, and from now on neither heartbeat nor
        answer drone:query-info (which would register us again)."""
        self.leaving = True
        self.send(Msg.DRONE_BYE, {})

    def finish(self, job_id: str) -> None:
        self.outbox.finish(job_id)

    def hello(self) -> None:
        """Introduce this drone (again) and resend everything not yet acked."""
        self.send(Msg.DRONE_INFO, self.info())
        if self.outbox.unacked_count():
            log.info("registering with the queen; resending %d unacked events", self.outbox.unacked_count())
        self.resend_all()

    def resend_all(self) -> None:
        """Send every unacked event again, within each job's window: what was sent may be lost."""
        self.outbox.rewind()
        self._send_ready()

    # -- receiving ------------------------------------------------------------------

    async def run(self) -> None:
        beat = asyncio.create_task(self._beat())
        try:
            while True:
                self._receive(await self.sock.recv())
                while True:
                    try:
                        frame = self._raw.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._receive(frame)
        finally:
            beat.cancel()

    def _receive(self, frame: bytes) -> None:
        # Nothing one frame does may end the receive loop: the drone would stop hearing its queen
        # (acks, cancels, jobs) for good.
        try:
            self._take(frame)
        except Exception:
            if self._told.due("receive failed"):
                log.exception("error receiving a frame from the queen; going on (one line a minute)")

    def _take(self, frame: bytes) -> None:
        try:
            msg, body = decode(frame, QUEEN_SENDS)
        except ProtocolError as exc:
            self.bad_frames += 1
            if self._told.due("malformed"):
                log.warning("dropped a malformed frame from the queen: %s (%d so far; one line a minute)",
                            exc, self.bad_frames)
            return
        self.last_heard = time.monotonic()
        if not self.reachable:
            self.reachable = True
            log.info("queen %s reachable", self.config.queen)
            # Back after a silence: what was sent meanwhile may be lost, so send it
            # again now rather than when the backoff timer says.
            self.resend_all()
        if msg is Msg.ACK:
            self.outbox.ack(body["id"], body["seq"], body.get("attempt"))
            self._send_ready(body["id"])  # the window has room again
        elif msg is Msg.QUEEN_HEARTBEAT:
            if body["boot"] != self.queen_boot:
                if self.queen_boot is not None:
                    log.info("the queen restarted; resending %d unacked events", self.outbox.unacked_count())
                    self.resend_all()
                self.queen_boot = body["boot"]
        elif msg is Msg.QUERY_INFO and self.leaving:
            pass
        elif msg is Msg.QUERY_INFO:
            # A queen that does not know us (it restarted): its heartbeat with the
            # same boot id must not make us resend everything a second time.
            if isinstance(body.get("boot"), str):
                self.queen_boot = body["boot"]
            self.hello()
        else:
            try:
                self.on_message(msg, body)
            except Exception:
                if self._told.due(("handler", msg)):
                    log.exception("error handling %s (one line a minute)", msg.value)

    async def _beat(self) -> None:
        interval = self.config.heartbeat_interval
        timeout = interval * self.config.heartbeat_liveness
        retry = 0.05
        next_beat = time.monotonic() + interval
        while not self.leaving:
            if not self.reachable:
                # Introduce ourselves until the queen answers; quickly at first.
                self.send(Msg.DRONE_INFO, self.info())
                await asyncio.sleep(retry)
                retry = min(retry * 2, interval)
            else:
                retry = 0.05
                await asyncio.sleep(max(0.0, next_beat - time.monotonic()))
            now = time.monotonic()
            if now < next_beat:
                continue
            next_beat = now + interval
            self.send(Msg.DRONE_HEARTBEAT, self.heartbeat_body())
            if self.reachable and now - self.last_heard > timeout:
                self.reachable = False
                log.warning("queen %s silent for %.1fs; holding %d unacked events until it is back",
                            self.config.queen, timeout, self.outbox.unacked_count())
            for frame in self.outbox.overdue():
                if not self._send(frame):
                    break

    async def room(self, job_id: str, limit: int) -> None:
        """Wait until `job_id` has less than `limit` bytes unacked (flow control for artifacts)."""
        while self.outbox.unacked_bytes(job_id) >= limit:
            await asyncio.sleep(0.02)

    async def drain(self, timeout: float) -> bool:
        """Wait until every event is acked, up to `timeout` seconds; True if all were."""
        deadline = time.monotonic() + timeout
        while self.outbox.unacked_count() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return not self.outbox.unacked_count()

    def close(self) -> None:
        if self._due_timer is not None:  # what waited stays in the outbox, as anything unsent does
            self._due_timer.cancel()
            self._due_timer = None
        self._stop_handshakes()
        self.sock.close(linger=0)
        self.ctx.term()
