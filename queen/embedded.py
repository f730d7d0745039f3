"""The embedded store: nx-27017 (a MongoDB wire-protocol server over SQLite) as a child.

`mongodb_url = "embedded"` makes the queen run one of these on a free loopback
port with its data under the queen's data directory, so a new user needs no
database. The child dies with the queen even when the queen is killed: the
kernel sends it SIGKILL when the queen's process ends (PR_SET_PDEATHSIG), not
SIGTERM, on which nx-27017 can hang closing its clients' connections. So a
restarted queen never finds a stale server holding its files, and no store
outlives its queen. A queen that stops normally still stops it with SIGTERM.

The child runs in a session (and process group) of its own: a terminal's Ctrl-C
signals the foreground group, which would stop the store under a queen still
writing its last events; the queen alone gets it and stops the store last. Nor
is a store that exits while the queen stops started again (`stopping`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from pymongo import AsyncMongoClient

from apiary.core.errors import StoreError

log = logging.getLogger(__name__)

# nx-27017 logs every command at INFO; a WARNING root logger keeps its log (and
# its hot path) quiet. basicConfig in its main() is then a no-op.
_LAUNCH = (
    "import logging, sys; logging.basicConfig(level=logging.WARNING);"
    "from nx_27017.nx_27017 import main; sys.argv[0] = 'nx-27017'; sys.exit(main())"
)

_PR_SET_PDEATHSIG = 1


def _dies_with(parent: int) -> Callable[[], None]:
    """What the child runs before exec: be SIGKILLed when process `parent` (the queen) ends.

    The kernel ties the signal to the thread that forks: `_Server.start` runs on
    the event loop's thread, which lives as long as the queen.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: no dynamic loading in the forked child

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the queen died before prctl: no signal will come
            os._exit(1)

    return preexec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_until_up(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 20.0) -> None:
    """Return once the store at `url` answers a ping; StoreError if it exits or stays silent `timeout` s.

    The port is polled first with plain TCP connects (every 20 ms): a driver whose first check failed waits
    its minimum heartbeat (500 ms) before the next, which would add up to half a second to every start."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)

    def exited() -> StoreError | None:
        if proc.poll() is None:
            return None
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        return StoreError(f"the embedded store (nx-27017) exited with code {proc.returncode}: {tail.strip()}")

    def too_late() -> StoreError:
        return StoreError(f"the embedded store did not answer within {timeout:.0f}s (log: {log_path})")

    while True:
        if (fault := exited()) is not None:
            raise fault
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.0)
        except (OSError, TimeoutError):
            if loop.time() > deadline:
                raise too_late() from None
            await asyncio.sleep(0.02)
            continue
        writer.close()
        break
    client: AsyncMongoClient = AsyncMongoClient(url, serverSelectionTimeoutMS=1000)
    try:
        while True:
            if (fault := exited()) is not None:
                raise fault
            try:
                await client.admin.command("ping")
                return
            except Exception:
                if loop.time() > deadline:
                    raise too_late() from None
                await asyncio.sleep(0.05)
    finally:
        await client.close()


class _Server:
    """One nx-27017 child on a fixed port; started again on the same port and data if it dies."""

    def __init__(self, store_dir: Path, port: int, stopping: asyncio.Event) -> None:
        self.stopping = stopping  # set when the queen begins to stop: no restart from then on
        # Absolute: the child runs in this folder, so a relative --data-dir would be read from inside it.
        self.store_dir, self.port = store_dir.absolute(), port
        self.pid_file = self.store_dir / "nx-27017.pid"
        self.log_path = self.store_dir / "nx-27017.log"
        self.url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        # A pid file left by a killed server would stop the new one from starting.
        self.pid_file.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCH, "--data-dir", str(self.store_dir), "--pid-file", str(self.pid_file),
                 "--log-file", str(self.log_path), "--host", "127.0.0.1", "--port", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                # Out of the terminal's process group (setsid runs before preexec_fn, which keeps the death signal).
                start_new_session=True, preexec_fn=_dies_with(os.getpid()), cwd=self.store_dir,
            )
        return self.proc

    async def supervise(self, interval: float = 0.2) -> None:
        """Start the server again whenever it exits; the queen's writes wait and retry meanwhile."""
        pause = 0.2
        while True:
            await asyncio.sleep(interval)
            proc = self.proc
            if proc is None or proc.poll() is None:
                continue
            if self.stopping.is_set():
                log.warning("the embedded store (pid %d) exited with code %s while the queen stops; not starting "
                            "it again", proc.pid, proc.returncode)
                return
            log.error("the embedded store (pid %d) exited with code %s; starting it again", proc.pid, proc.returncode)
            try:
                await _wait_until_up(self.url, self.start(), self.log_path)
                log.warning("the embedded store is back (pid %d)", self.proc.pid if self.proc else 0)
                pause = 0.2
            except StoreError as exc:
                log.error("%s; trying again in %.1f s", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)

    async def stop(self) -> None:
        self.stopping.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        with contextlib.suppress(OSError):
            os.unlink(self.pid_file)


@contextlib.asynccontextmanager
async def embedded_store(data_path: Path, stopping: asyncio.Event | None = None) -> AsyncIterator[str]:
    """Run nx-27017 with its data in `data_path/store`; yield its mongodb:// URL.

    The server is watched: if it dies it is started again on the same port with
    the same data, and the driver reconnects by itself; not once `stopping` is
    set (the queen is shutting down) or the context is left.
    """
    store_dir = data_path / "store"
    store_dir.mkdir(parents=True, exist_ok=True)
    server = _Server(store_dir, _free_port(), stopping or asyncio.Event())
    watcher: asyncio.Task[None] | None = None
    try:
        await _wait_until_up(server.url, server.start(), server.log_path)
        log.info("embedded store (nx-27017) pid %d on port %d, data in %s", server.proc.pid if server.proc else 0,
                 server.port, store_dir)
        watcher = asyncio.create_task(server.supervise())
        yield server.url
    finally:
        server.stopping.set()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await server.stop()
