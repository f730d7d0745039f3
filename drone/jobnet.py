"""A network per job: one network namespace, with slirp4netns beside it, that every command of the job joins.

With ``job_network = "isolated"`` each command still runs in a bubblewrap sandbox of its own (sandbox.py);
what it no longer gets is a network namespace of its own. Making one (bubblewrap's loopback, then
slirp4netns started, attached and reporting ready) cost about 35 ms a command; joining one costs an
``nsenter`` before bubblewrap runs (util-linux's: the drone starts the command without code of its own in
the child, sandbox.py). So a job's network is made once, before the job needs it:

- the *holder* is ``bwrap --unshare-net … sleep infinity`` (with a user namespace of its own when the drone
  is not root: bubblewrap makes one, and a command joins it first, then the network namespace, then
  bubblewrap makes the command's own user namespace inside it);
- slirp4netns attaches to the holder and gives the namespace a way out (``--disable-host-loopback``: not
  to the machine's 127.0.0.1);
- the drone keeps the namespace's files open (``/proc/HOLDER/ns/net``, and ``ns/user``), opened once while
  the holder is known to be ours: a command is given those fds and joins them (``nsenter
  --net=/proc/self/fd/FD``), never a path naming a process id that could be reused.

A job's network is made before the job comes, with the rest of its kit (jobkit.py), so a job takes one at
once. A job's commands (parallel stages too) share its namespace: they can reach each other's ports, as
processes of one job; another job has another namespace.

Lifecycle: `make` makes one; `JobNet.close` ends its slirp4netns and holder when the job is over (reaped in
the background). A drone that dies leaves nothing either: the holder is bubblewrap's ``--die-with-parent``
(PR_SET_PDEATHSIG), slirp4netns exits when its exit fd, whose writer only the drone holds, closes, and the
namespace ends with its last process. Errors: `make` raises OSError, TimeoutError or ValueError when a
namespace cannot be made (jobkit.py says it as a JobNetError).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import time

from apiary.core.errors import ApiaryError

from .processes import kill_group, readable, reaped
from .sandbox import Sandbox

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0  # seconds a job's network may take to be made


class JobNetError(ApiaryError):
    """A job's network could not be made here."""


class JobNet:
    """One job's network namespace: its holder, its slirp4netns, and the namespace files commands join."""

    def __init__(self, holder: subprocess.Popen[bytes], inner: int, slirp: subprocess.Popen[bytes], exit_fd: int,
                 namespaces: tuple[tuple[str, int], ...], inode: int) -> None:
        self.holder = holder
        self._inner = inner  # pidfd of the process in the namespace (bubblewrap's child)
        self.slirp = slirp
        self._exit_fd = exit_fd
        # (namespace, fd): ("user", fd) when the holder has a user namespace of its own, then ("net", fd).
        self.namespaces = namespaces
        self.inode = inode  # of the network namespace, as /proc/PID/ns/net names it: net:[INODE]
        self.closed = False
        self._reaping: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return not self.closed and self.holder.poll() is None and self.slirp.poll() is None

    @property
    def fds(self) -> tuple[int, ...]:
        """The namespace files a command is given (pass_fds) to join them (Sandbox.command)."""
        return tuple(fd for _, fd in self.namespaces)

    def close(self) -> asyncio.Task[None]:
        """End slirp4netns and the holder now; the task reaps them (slirp4netns takes 10 to 40 ms to go,
        SIGKILL or not, as the kernel takes its tap device down: nobody need wait for that)."""
        if self._reaping is None:
            self.closed = True
            self.slirp.kill()
            os.close(self._exit_fd)
            # bubblewrap's child first: bubblewrap reaps it and ends, leaving no orphan for init to reap.
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._inner, signal.SIGKILL)
            for fd in (self._inner, *self.fds):
                os.close(fd)
            self._reaping = asyncio.create_task(self._reap())
        return self._reaping

    async def _reap(self) -> None:
        if not await reaped(self.holder, 2.0):
            kill_group(self.holder.pid)
            await reaped(self.holder, 2.0)
        if not await reaped(self.slirp, 5.0):
            log.warning("slirp4netns (pid %d) of a job network did not end after SIGKILL", self.slirp.pid)


async def make(sandbox: Sandbox) -> JobNet:
    """A new job network: the holder started, its namespaces opened, slirp4netns ready.

    Raises OSError, TimeoutError or ValueError when it cannot be made; leaves nothing running then, or
    when cancelled.
    """
    info_r, info_w = os.pipe()
    try:
        # Its own session: its group goes at once, bubblewrap and the process holding the namespace.
        holder = subprocess.Popen(sandbox.holder_command(info_w), pass_fds=(info_w,), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    except BaseException:
        os.close(info_r)
        raise
    finally:
        os.close(info_w)
    namespaces: list[tuple[str, int]] = []
    slirp: subprocess.Popen[bytes] | None = None
    exit_w = inner = -1
    try:
        said = await _read_until(info_r, b"}", START_TIMEOUT)
        if not said:
            raise OSError("bubblewrap could not make the job's network: " + _said(holder))
        pid = int(json.loads(said)["child-pid"])
        inner = os.pidfd_open(pid)  # alive: bubblewrap just said so, and it waits for ever
        inode = _open_namespaces(pid, namespaces)
        # bubblewrap reports its child before that child has set its loopback up; slirp4netns configuring
        # the namespace meanwhile makes one of them fail now and then: wait for the loopback first.
        await _loopback_up(pid, START_TIMEOUT)
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        try:
            slirp = subprocess.Popen(sandbox.slirp_command(pid, ready_w, exit_r), pass_fds=(ready_w, exit_r),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(ready_w)
            os.close(exit_r)
        try:
            if not await _read_until(ready_r, b"1", START_TIMEOUT):
                raise OSError("slirp4netns could not give the job's network a way out")
        finally:
            os.close(ready_r)
    except BaseException:
        kill_group(holder.pid)
        holder.wait()
        if slirp is not None:
            slirp.kill()
            slirp.wait()
        for fd in [*(fd for _, fd in namespaces), *(fd for fd in (exit_w, inner) if fd >= 0)]:
            os.close(fd)
        assert holder.stderr is not None
        holder.stderr.close()
        raise
    finally:
        os.close(info_r)
    assert holder.stderr is not None
    holder.stderr.close()  # it says nothing more once it runs
    return JobNet(holder, inner, slirp, exit_w, tuple(namespaces), inode)


def _open_namespaces(pid: int, opened: list[tuple[str, int]]) -> int:
    """Open the holder's user namespace (when not the drone's own) and network namespace into `opened`, in
    the order to join them; return the network namespace's inode. The holder is alive (it just reported to
    us and waits for ever), so these are its namespaces, not a later process's with its id."""
    own_user = os.stat("/proc/self/ns/user").st_ino
    user = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)
    if os.fstat(user).st_ino != own_user:
        opened.append(("user", user))
    else:
        os.close(user)
    net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    opened.append(("net", net))
    inode = os.fstat(net).st_ino
    if inode == os.stat("/proc/self/ns/net").st_ino:
        raise OSError("the job's network holder shares the drone's network")
    return inode


def _said(holder: subprocess.Popen[bytes]) -> str:
    assert holder.stderr is not None
    try:
        holder.wait(timeout=2)
        return holder.stderr.read().decode(errors="replace").strip() or f"exit {holder.returncode}"
    except subprocess.TimeoutExpired:
        return "it said nothing"


async def _loopback_up(pid: int, timeout: float) -> None:
    """Until the network namespace of `pid` has 127.0.0.1 (bubblewrap's own set-up is done)."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            with open(f"/proc/{pid}/net/fib_trie", "rb") as fh:
                if b"127.0.0.1" in fh.read():
                    return
        except OSError:
            raise OSError("the job's network holder ended while it was being set up") from None
        if time.monotonic() > deadline:
            raise TimeoutError("the job's network holder did not set its loopback up in time")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.01)


async def _read_until(fd: int, end: bytes, timeout: float) -> bytes:
    """What `fd` says up to and including `end` (or until it closes), within `timeout` seconds."""
    os.set_blocking(fd, False)
    data = b""
    while end not in data:
        if not await readable(fd, timeout):
            raise TimeoutError("the job's network did not start in time")
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            continue
        if not chunk:
            break
        data += chunk
    return data
