"""A job command's process: started (in the sandbox or not), watched until it exits, reaped, its output read.

The step runner (step.py) decides what runs and when it stops; `Child` only
starts the process, as ``/bin/sh -c COMMAND`` in a session of its own, and
reports what it does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .sandbox import JobPaths, Sandbox

READ_SIZE = 65536
SANDBOX_START = 10.0  # seconds a sandbox (and its network) may take to start


class Child:
    """A command's process, reaped by us rather than by asyncio's child watcher.

    Its exit shows through a pidfd without reaping it, so the sampler can still
    read the zombie; then os.wait4 gives the exit status and the CPU time of the
    command and of every process it waited for. No watcher thread per command.
    In a sandbox with an isolated network, `start` also starts slirp4netns for
    it and lets the command run once its network is up.
    """

    def __init__(self, proc: subprocess.Popen[bytes], slirp: subprocess.Popen[bytes] | None = None,
                 slirp_exit: int | None = None) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.pidfd = os.pidfd_open(self.pid)
        self.returncode: int | None = None
        self._slirp, self._slirp_exit = slirp, slirp_exit

    @classmethod
    async def start(cls, command: str, cwd: Path, env: Mapping[str, str], sandbox: Sandbox | None,
                    paths: JobPaths, network: str | None, merge_output: bool = False) -> Child:
        argv = ["/bin/sh", "-c", command]
        # Two pipes keep the streams apart but not their order when both fill before a read; one keeps the order.
        stderr = subprocess.STDOUT if merge_output else subprocess.PIPE
        options: dict[str, Any] = {"cwd": cwd, "env": dict(env), "stdin": subprocess.DEVNULL,
                                   "stdout": subprocess.PIPE, "stderr": stderr, "start_new_session": True}
        if sandbox is not None and sandbox.needs_preexec:
            options["preexec_fn"] = sandbox.preexec
        if sandbox is None:
            return cls(subprocess.Popen(argv, **options))
        net = network or sandbox.network
        if net != "isolated" or sandbox.slirp is None:
            return cls(subprocess.Popen(sandbox.command(argv, paths, network=net), **options))
        # Isolated: the sandbox waits (block fd) until slirp4netns has given it a network.
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        try:
            proc = subprocess.Popen(sandbox.command(argv, paths, network=net, info_fd=info_w, block_fd=block_r),
                                    pass_fds=(info_w, block_r), **options)
        except BaseException:
            for fd in (info_r, block_w):
                os.close(fd)
            raise
        finally:
            os.close(info_w)
            os.close(block_r)
        ready_r = exit_w = -1
        slirp: subprocess.Popen[bytes] | None = None
        try:
            info = json.loads(await _read_until(info_r, b"}", SANDBOX_START))
            # bubblewrap reports its child before that child has set its loopback up; slirp4netns configuring
            # the namespace meanwhile makes one of them fail now and then: wait for the loopback first.
            await _loopback_up(int(info["child-pid"]), SANDBOX_START)
            ready_r, ready_w = os.pipe()
            exit_r, exit_w = os.pipe()
            try:
                slirp = subprocess.Popen(sandbox.slirp_command(int(info["child-pid"]), ready_w, exit_r),
                                         pass_fds=(ready_w, exit_r), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            finally:
                os.close(ready_w)
                os.close(exit_r)
            if not await _read_until(ready_r, b"1", SANDBOX_START):
                raise OSError("slirp4netns could not give the sandbox a network")
        except BaseException:
            # Cancelled (the job was) or failed while the sandbox waits on its block fd: its whole group
            # goes, not only bubblewrap's first process; its child, not yet bound to die with it, would
            # wait for ever with parent init (the block fd's writer is ours: it is closed too).
            _kill_group(proc.pid)
            proc.kill()
            proc.wait()
            os.close(block_w)
            if exit_w >= 0:
                os.close(exit_w)
            if slirp is not None:
                slirp.kill()
                slirp.wait()
            raise
        finally:
            os.close(info_r)
            if ready_r >= 0:
                os.close(ready_r)
        os.write(block_w, b"1")
        os.close(block_w)
        return cls(proc, slirp, exit_w)

    async def exited(self) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.add_reader(self.pidfd, lambda: done.done() or done.set_result(None))
        try:
            await done
        finally:
            loop.remove_reader(self.pidfd)

    def reap(self) -> tuple[int, float]:
        """Exit code (negative: killed by that signal) and CPU seconds; the process must have exited."""
        _, status, rusage = os.wait4(self.pid, 0)
        self.returncode = self.proc.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode, rusage.ru_utime + rusage.ru_stime

    def read_output(self, feed: Callable[[str, bytes], None]) -> asyncio.Future[None]:
        """Give what both pipes say to `feed(stream, data)` until they close; the future is done then
        (cancel it to stop reading).

        One loop reads both pipes, each read as the kernel reports it readable, so the two streams keep
        the order they were written in as far as that can tell (two writes that both wait in their pipes
        before a read have no order the kernel keeps). The readers are watching when this returns: call it
        right after `start`, before anything the command writes can pile up in both pipes.
        """
        assert self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()
        open_fds = {self.proc.stdout.fileno(): "stdout"}
        if self.proc.stderr is not None:  # None: merged into stdout
            open_fds[self.proc.stderr.fileno()] = "stderr"

        def readable(fd: int) -> None:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                feed(open_fds[fd], data)
                return
            loop.remove_reader(fd)
            del open_fds[fd]
            if not open_fds and not closed.done():
                closed.set_result(None)

        def stop(_: asyncio.Future[None]) -> None:
            for fd in list(open_fds):
                loop.remove_reader(fd)

        for fd in open_fds:
            os.set_blocking(fd, False)
            loop.add_reader(fd, readable, fd)
        closed.add_done_callback(stop)
        return closed

    def close(self) -> None:
        os.close(self.pidfd)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        if self._slirp is not None and self._slirp_exit is not None:
            os.close(self._slirp_exit)  # slirp4netns ends when this closes
            try:
                self._slirp.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._slirp.kill()
                self._slirp.wait()
            self._slirp = None


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


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
            raise OSError("the sandbox ended while it was being set up") from None
        if time.monotonic() > deadline:
            raise TimeoutError("the sandbox did not set its network up in time")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.01)


async def _read_until(fd: int, end: bytes, timeout: float) -> bytes:
    """What `fd` says up to and including `end` (or until it closes), within `timeout` seconds."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    data = b""
    while end not in data:
        ready = loop.create_future()
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await asyncio.wait_for(ready, timeout)
        except TimeoutError:
            raise TimeoutError("the sandbox did not start in time") from None
        finally:
            loop.remove_reader(fd)
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            continue
        if not chunk:
            break
        data += chunk
    return data
