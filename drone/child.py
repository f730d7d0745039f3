"""A job command's process: started (in the sandbox or not), watched until it exits, reaped, its output read.

The step runner (step.py) decides what runs and when it stops; `Child` only
starts the process, as ``/bin/sh -c COMMAND`` in a session of its own, and
reports what it does.

A sandboxed command starts with no code of the drone's in the forked child
(no ``preexec_fn``): its limits, its job's network and its user are programs
in its command line (Sandbox.command), so Python vforks the
drone, about 0.4 ms of its event loop, where a fork of the drone's 50 MB cost
about 4 ms a command. Only without bubblewrap, the rare path, does the child
run the drone's code (limits, the drop to job_user) and the drone fork.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .jobnet import JobNet
from .processes import readable
from .sandbox import JobPaths, Sandbox
from .warmbox import WarmBox

READ_SIZE = 65536


class Child:
    """A command's process, reaped by us rather than by asyncio's child watcher.

    Its exit shows through a pidfd without reaping it, so the sampler can still
    read the zombie; then os.wait4 gives the exit status and the CPU time of the
    command and of every process it waited for. No watcher thread per command.
    In a sandbox with an isolated network, the command joins its job's network
    (jobnet.py) before bubblewrap runs: it is given the namespace files the
    drone holds open.
    """

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.pidfd = os.pidfd_open(self.pid)
        self.returncode: int | None = None

    @classmethod
    async def start(cls, command: str, cwd: Path, env: Mapping[str, str], sandbox: Sandbox | None,
                    paths: JobPaths, network: str | None, merge_output: bool = False,
                    job_net: JobNet | None = None, box: WarmBox | None = None) -> Child:
        """Start `command`. `network` overrides the sandbox's job_network; `job_net` is the job's network,
        which an isolated command joins (without one it has no way out). `box`: a sandbox made ahead for
        this job that fits the command (warmbox.py), where it starts at once (or cold if the box has gone).

        Raises OSError (or subprocess.SubprocessError, from the preexec without bubblewrap) when it cannot start;
        a sandboxed command whose limits or network cannot be set starts, says why on stderr and exits 1
        (prlimit, nsenter)."""
        argv = ["/bin/sh", "-c", command]
        # Two pipes keep the streams apart but not their order when both fill before a read; one keeps the order.
        stderr = subprocess.STDOUT if merge_output else subprocess.PIPE
        options: dict[str, Any] = {"cwd": cwd, "env": dict(env), "stdin": subprocess.DEVNULL,
                                   "stdout": subprocess.PIPE, "stderr": stderr, "start_new_session": True}
        if sandbox is None:
            return cls(subprocess.Popen(argv, **options))
        if box is not None and (proc := box.launch(command, env)) is not None:
            return cls(proc)
        join = job_net if (network or sandbox.network) == "isolated" and job_net is not None else None
        if join is not None:
            if not join.alive:
                raise OSError("the job's network has ended")
            options["pass_fds"] = join.fds
        if sandbox.needs_preexec:  # without bubblewrap only
            options["preexec_fn"] = sandbox.preexec
        argv = sandbox.command(argv, paths, network=network, join=join.namespaces if join is not None else ())
        return cls(subprocess.Popen(argv, **options))

    async def exited(self) -> None:
        await readable(self.pidfd)

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
