"""Runs one command of a job as a child process and reports it as events.

A command runs as ``/bin/sh -c COMMAND`` in the job's workspace, in a session
(and process group) of its own, so the resource sampler can find every process
of it. Stopping it (cancel, timeout) is polite, then firm: SIGTERM to all of
its processes, `kill_grace` seconds to finish (its traps run, their output is
kept), then SIGKILL; a second cancel meanwhile kills at once. Output is read in large chunks, masked,
coalesced and emitted as ``job:cmd:stdout`` / ``job:cmd:stderr`` — until the
job's LogCap is reached: then one ``job:stderr`` marker says so, the rest of
every command's output is read and dropped, and the commands run on.

`StepRunner.run` returns the exit code; it raises CancelledError after killing
the process group when the job is cancelled or times out. The process itself
(started in the sandbox or not, reaped, its pipes read) is child.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from apiary.core.protocol import Msg
from apiary.core.retry import TIMED_OUT, TimedOut

from .child import Child
from .jobnet import JobNet
from .limits import LogCap
from .masking import Masker
from .output import OutputBuffer
from .processes import kill_group
from .resources import TreeSampler, Usage, children, descendants
from .sandbox import STEP_MARK, JobPaths, Sandbox, marked
from .warmbox import WarmBox

EmitFn = Callable[[Msg, dict[str, Any]], None]
# Seconds to read what is left in the pipes once the command has exited.
DRAIN_AFTER_EXIT = 2.0
# Seconds a command cancelled as its sandbox starts may take to be running (to be told to stop).
SANDBOX_SETUP = 2.0
KILLED = -int(signal.SIGKILL)


class StepRunner:
    """Runs a job's commands, numbering them 1, 2, 3… in the order they start."""

    def __init__(self, workspace: Path, emit: EmitFn, masker: Masker, flush_after: float, chunk_bytes: int,
                 sample_interval: float = 0.25, log_cap: LogCap | None = None, kill_grace: float = 10.0,
                 sandbox: Sandbox | None = None, paths: JobPaths | None = None, job_net: JobNet | None = None,
                 box: WarmBox | None = None) -> None:
        self.kill_grace = kill_grace
        self.sandbox = sandbox  # None: plain processes (apiary run, on the developer's own machine)
        self.job_net = job_net  # the job's isolated network, which each command joins (jobnet.py)
        self.box = box  # a sandbox made ahead, for the first command that fits it (warmbox.py)
        self.paths = paths or JobPaths(workspace, workspace)
        self.workspace = workspace
        self.emit = emit
        self.masker = masker
        self.flush_after = flush_after
        self.chunk_bytes = chunk_bytes
        self.sample_interval = sample_interval
        self.log_cap = log_cap or LogCap(0)
        self.num = 0
        self.usage = Usage(0, 0.0)
        self.last_output = time.monotonic()
        self._groups: set[int] = set()
        self._samplers: set[TreeSampler] = set()
        self._job_peak = 0

    async def run(self, command: str, env: Mapping[str, str], *, title: str = "", phase: str,
                  stage: str | None = None, hook: str | None = None, network: str | None = None,
                  merge_output: bool = False, timeout: float | None = None,
                  retry: dict[str, int] | None = None) -> int:
        """Run `command`; return its exit code (negative: killed by that signal). `network` overrides the
        sandbox's job_network for this command (the checkout's: the drone's own); `merge_output` gives it
        one pipe for both streams (their exact order, all stored as stdout). After `timeout` seconds it is
        stopped as a cancel stops it and ends TIMED_OUT (``timedOut`` on job:cmd:done); `retry`
        ({attempt, of}) says which attempt of its step this is (apiary.core.retry)."""
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
        if retry is not None:
            start["retry"] = retry
        self.emit(Msg.JOB_CMD_START, start)
        started = time.monotonic()

        def emit_output(stream: str, text: str) -> None:
            self.last_output = time.monotonic()
            text, cut = self.log_cap.take(text)
            if text:
                kind = Msg.JOB_CMD_STDOUT if stream == "stdout" else Msg.JOB_CMD_STDERR
                self.emit(kind, {"num": num, "text": text})
            if cut:
                self.emit(Msg.JOB_STDERR, {"text": self.log_cap.marker})

        buffer = OutputBuffer(emit_output, self.flush_after, self.chunk_bytes, self.masker)

        def feed(stream: str, data: bytes) -> None:
            if self.log_cap.reached:  # dropped unread by the buffer; still a sign of life
                self.last_output = time.monotonic()
            else:
                buffer.feed(stream, data)

        usage = Usage(0, 0.0)
        code = KILLED  # unless the command gets to end by itself
        stopped = timed_out = False
        try:
            # A mark on each of its processes: without a sandbox, what outlives the command is found by it.
            marked_env = {**env, STEP_MARK: f"{env.get('APIARY_JOB_ID', '')}:{num}"}
            try:
                # The first command that fits it takes it (the checkout, on the drone's network, does not).
                box = self.box if self.box is not None and self.box.fits(network, merge_output) else None
                if box is not None:
                    self.box = None
                child = await Child.start(command, self.workspace, marked_env, self.sandbox, self.paths, network,
                                          merge_output=merge_output, job_net=self.job_net, box=box)
            except (OSError, ValueError, TimeoutError, subprocess.SubprocessError) as exc:
                buffer.feed("stderr", f"apiary: cannot start the command: {exc}\n".encode())
                code = 127
                return code
            pipes = child.read_output(feed)  # first: what the command writes is read as it comes
            self._groups.add(child.pid)
            sampler = TreeSampler(child.pid, self.sample_interval, self._job_sample)
            self._samplers.add(sampler)
            # No sample at the start: a /proc scan costs about a millisecond, and the
            # exit status below brings the CPU of a command that ends at once.
            sampler.start(immediate=False)
            cpu: float | None = None
            try:
                # The command ends when its shell does, even if something it left
                # in the background still holds the pipes open.
                try:
                    await asyncio.wait_for(child.exited(), timeout)
                except asyncio.CancelledError:
                    await self._stop(child, pipes)
                    raise
                except TimeoutError:  # its own timeout: stopped as a cancel would, then reaped as usual
                    timed_out = True
                    buffer.feed("stderr", f"apiary: the step timed out after {timeout:g} s; stopped\n".encode())
                    await self._stop(child, pipes)
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():  # a cancel came during the grace
                        raise asyncio.CancelledError from None
                sampler.sample_leader()  # a zombie until we reap it: its last memory figures
                kill_group(child.pid)
                try:
                    await asyncio.wait_for(asyncio.shield(pipes), DRAIN_AFTER_EXIT)
                except TimeoutError:
                    buffer.feed("stderr", b"apiary: output left open by a process outside the command's group "
                                          b"was cut off\n")
                code, cpu = child.reap()
                if timed_out:
                    code = TimedOut(TIMED_OUT)
            finally:
                # Cancelled, timed out or done: whatever is left of its tree goes.
                kill_group(child.pid)
                pipes.cancel()
                await asyncio.gather(pipes, return_exceptions=True)
                if child.returncode is None:
                    await child.exited()
                    code, cpu = child.reap()  # how it really ended (a trap may exit 143)
                self._groups.discard(child.pid)
                child.close()
                if self.sandbox is None or not self.sandbox.isolated:
                    # No PID namespace to end with it: what it left running (daemons too) goes now.
                    left = await asyncio.to_thread(marked, STEP_MARK, marked_env[STEP_MARK])
                    if left:
                        _signal_all(left, signal.SIGKILL)
                        buffer.feed("stderr", f"apiary: {len(left)} process(es) the command left running "
                                              "were stopped\n".encode())
                usage = await sampler.stop(final_cpu=cpu, final_sample=False)
                self._samplers.discard(sampler)
                self.usage = self.usage.combine(usage)
        except asyncio.CancelledError:
            stopped = True  # a cancel, the job's timeout or a limit: not the command's own end
            raise
        finally:
            buffer.close()
            self._done(num, code, started, usage, stopped, timed_out)
        return code

    async def _stop(self, child: Child, pipes: asyncio.Future[None]) -> None:
        """Cancelled or timed out: SIGTERM to the command's processes, kill_grace to end, then SIGKILL.

        The task stays cancelled for its caller; a second cancel during the grace stops waiting at once.
        """
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # let this wait run; CancelledError is raised again by the caller
        if self.sandbox is not None and self.sandbox.isolated:
            # Not to bubblewrap and its init, whose end would end the sandbox at once (SIGKILL): to the
            # command's own processes, below them.
            inner = await _command_processes(child)
            if inner:
                _signal_all(sorted(inner), signal.SIGTERM)
            else:  # its sandbox never got to start it: nothing of it runs that could finish
                _signal_tree(child.pid, signal.SIGKILL)
        else:
            _signal_tree(child.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(child.exited(), self.kill_grace)
        except (TimeoutError, asyncio.CancelledError):
            pass
        _signal_tree(child.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            # What the command's traps said on the way out.
            await asyncio.wait_for(asyncio.shield(pipes), DRAIN_AFTER_EXIT)

    def _job_sample(self) -> None:
        # Commands of parallel stages run at once: the job's peak is their sum.
        self._job_peak = max(self._job_peak, sum(s.current_rss for s in self._samplers))

    @property
    def job_usage(self) -> Usage:
        """The job's usage: CPU of every command, peak memory of those running together."""
        return Usage(max(self._job_peak, self.usage.peak_rss), self.usage.cpu_seconds)

    def _done(self, num: int, code: int, started: float, usage: Usage, stopped: bool, timed_out: bool) -> None:
        done = {"num": num, "exitCode": int(code), "duration": round(time.monotonic() - started, 6),
                "usage": usage.to_dict(), "stopped": stopped}
        if timed_out and not stopped:
            done["timedOut"] = True
        self.emit(Msg.JOB_CMD_DONE, done)

    def kill_all(self) -> None:
        """Kill every running command's process group (cancel, timeout)."""
        for pgid in list(self._groups):
            kill_group(pgid)


async def _command_processes(child: Child) -> set[int]:
    """The command's own processes in its sandbox (below bubblewrap and its init). A command cancelled as
    its sandbox starts has none yet: look again every 5 ms, for SANDBOX_SETUP seconds at most, until it has
    (else the SIGTERM would reach nobody and the command run on for the whole kill_grace)."""
    deadline = time.monotonic() + SANDBOX_SETUP
    while True:
        inner = set(descendants(child.pid)) - set(children(child.pid))
        if inner or time.monotonic() > deadline or _ended(child.pid):
            return inner
        await asyncio.sleep(0.005)


def _ended(pid: int) -> bool:
    """Whether `pid` (our child) has exited, without reaping it."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _signal_tree(pid: int, sig: int) -> None:
    """`sig` to the command's process group and to every process descended from it (those that left
    the group with setsid, too, while their parents live)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    for other in descendants(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(other, sig)
