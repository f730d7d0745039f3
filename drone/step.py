"""Runs one command of a job as a child process and reports it as events.

A command runs as ``/bin/sh -c COMMAND`` in the job's workspace, in a session
(and process group) of its own, so cancelling or timing out kills its whole tree
at once — grandchildren and background processes included — and the resource
sampler can find every process of it. Output is read in large chunks, masked,
coalesced and emitted as ``job:cmd:stdout`` / ``job:cmd:stderr``.

`StepRunner.run` returns the exit code; it raises CancelledError after killing
the process group when the job is cancelled or times out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from queen.protocol import Msg

from .masking import Masker
from .output import OutputBuffer
from .resources import TreeSampler, Usage

EmitFn = Callable[[Msg, dict[str, Any]], None]
READ_SIZE = 65536
# Seconds to read what is left in the pipes once the command has exited.
DRAIN_AFTER_EXIT = 2.0
KILLED = -int(signal.SIGKILL)


class StepRunner:
    """Runs a job's commands, numbering them 1, 2, 3… in the order they start."""

    def __init__(self, workspace: Path, emit: EmitFn, masker: Masker, flush_after: float, chunk_bytes: int,
                 sample_interval: float = 0.25) -> None:
        self.workspace = workspace
        self.emit = emit
        self.masker = masker
        self.flush_after = flush_after
        self.chunk_bytes = chunk_bytes
        self.sample_interval = sample_interval
        self.num = 0
        self.usage = Usage(0, 0.0)
        self.last_output = time.monotonic()
        self._groups: set[int] = set()
        self._samplers: set[TreeSampler] = set()
        self._job_peak = 0

    async def run(self, command: str, env: Mapping[str, str], *, title: str = "", phase: str,
                  stage: str | None = None, hook: str | None = None) -> int:
        """Run `command`; return its exit code (negative: killed by that signal)."""
        self.num += 1
        num = self.num
        shown = self.masker.mask(command)
        start: dict[str, Any] = {"num": num, "command": shown, "screencmd": shown, "phase": phase,
                                 "title": (self.masker.mask(title or command).splitlines() or [""])[0][:80],
                                 "timestamp": time.time()}
        if stage is not None:
            start["stage"] = stage
        if hook is not None:
            start["hook"] = hook
        self.emit(Msg.JOB_CMD_START, start)
        started = time.monotonic()

        def emit_output(stream: str, text: str) -> None:
            self.last_output = time.monotonic()
            kind = Msg.JOB_CMD_STDOUT if stream == "stdout" else Msg.JOB_CMD_STDERR
            self.emit(kind, {"num": num, "text": text})

        buffer = OutputBuffer(emit_output, self.flush_after, self.chunk_bytes, self.masker)
        usage = Usage(0, 0.0)
        code = KILLED  # unless the command gets to end by itself
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    "/bin/sh", "-c", command, cwd=self.workspace, env=dict(env), stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
            except OSError as exc:
                buffer.feed("stderr", f"apiary: cannot start the command: {exc}\n".encode())
                code = 127
                return code
            self._groups.add(proc.pid)
            sampler = TreeSampler(proc.pid, self.sample_interval, self._job_sample)
            self._samplers.add(sampler)
            # No sample at the start: a /proc scan costs about a millisecond, and a
            # command that ends at once shows its CPU in the exit sample below.
            sampler.start(immediate=False)
            pumps = asyncio.gather(_pump(proc.stdout, "stdout", buffer), _pump(proc.stderr, "stderr", buffer))
            try:
                # The command ends when its shell does, even if something it left
                # in the background still holds the pipes open (asyncio's wait()
                # would wait for the pipes too).
                await _exited(proc.pid)
                sampler.sample_leader()  # a zombie now: its CPU and its children's, before reaping
                _kill_group(proc.pid)
                try:
                    await asyncio.wait_for(asyncio.shield(pumps), DRAIN_AFTER_EXIT)
                except TimeoutError:
                    buffer.feed("stderr", b"apiary: output left open by a process outside the command's group "
                                          b"was cut off\n")
                code = await proc.wait()
            finally:
                pumps.cancel()
                await asyncio.gather(pumps, return_exceptions=True)
                # Cancelled, timed out or done: whatever is left of its tree goes.
                _kill_group(proc.pid)
                self._groups.discard(proc.pid)
                if proc.returncode is None:
                    await proc.wait()
                usage = await sampler.stop(final_sample=False)  # the tree is gone by now
                self._samplers.discard(sampler)
                self.usage = self.usage.combine(usage)
        finally:
            buffer.close()
            self._done(num, code, started, usage)
        return code

    def _job_sample(self) -> None:
        # Commands of parallel stages run at once: the job's peak is their sum.
        self._job_peak = max(self._job_peak, sum(s.current_rss for s in self._samplers))

    @property
    def job_usage(self) -> Usage:
        """The job's usage: CPU of every command, peak memory of those running together."""
        return Usage(max(self._job_peak, self.usage.peak_rss), self.usage.cpu_seconds)

    def _done(self, num: int, code: int, started: float, usage: Usage) -> None:
        self.emit(Msg.JOB_CMD_DONE, {"num": num, "exitCode": code, "duration": round(time.monotonic() - started, 6),
                                     "usage": usage.to_dict()})

    def kill_all(self) -> None:
        """Kill every running command's process group (cancel, timeout)."""
        for pgid in list(self._groups):
            _kill_group(pgid)


async def _pump(stream: asyncio.StreamReader | None, name: str, buffer: OutputBuffer) -> None:
    assert stream is not None
    while chunk := await stream.read(READ_SIZE):
        buffer.feed(name, chunk)


async def _exited(pid: int) -> None:
    """Return once process `pid` has exited (a pidfd turns readable), without reaping it."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # gone and reaped already
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(fd, lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
