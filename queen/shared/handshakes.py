"""A ZeroMQ socket's handshake events, reported to a callback from a task (CurveZMQ diagnostics).

The queen's broker logs what a drone got wrong; a drone dials again itself and logs what is wrong
(a client refused by the queen's ZAP handler may stop reconnecting: libzmq issues #990, #3519).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger(__name__)


class HandshakeMonitor:
    """Reports a socket's `events` (``zmq.EVENT_HANDSHAKE_*``) to ``on_event(event, value)``, from a task.

    Lifecycle: made in the running loop before the socket connects or binds;
    `close()` before the socket and its context are closed (a monitor socket
    left open would make the context's term() wait forever).
    """

    def __init__(self, sock: zmq.Socket[Any], on_event: Callable[[int, int], None], events: int) -> None:
        self._sock = sock
        self._monitor = sock.get_monitor_socket(events)
        self._task = asyncio.get_running_loop().create_task(self._run(on_event))

    async def _run(self, on_event: Callable[[int, int], None]) -> None:
        while True:
            event = await recv_monitor_message(self._monitor)
            if event["event"] == zmq.EVENT_MONITOR_STOPPED:
                return
            try:
                on_event(event["event"], event["value"])
            except Exception:
                log.exception("error handling handshake event %s", event["event"])

    def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self._monitor.close(linger=0)
