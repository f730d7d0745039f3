"""apiary run --debug: a shell in the working copy when a step fails, before the job goes on (drone/local.py).

The first step that fails (not a hook's, not cleanup's, not one whose exit
code is ignored) stops the run in a shell: ``$SHELL -i`` (``/bin/sh -i``
without one) in the working copy, with the job's environment, on this
terminal. When it exits the job goes on as it would have: the stage's
``on_failure``, the job's, cleanup; the result is the job's, whatever the
shell did. The job's timeouts do not run while the shell is open, and Ctrl-C
there reaches the shell alone (apiary run's own Ctrl-C handling resumes
afterwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

from apiary.core.protocol import Msg

from .executor import JobRun


HELD_TEXT = 8 * 2**20  # bytes of other stages' output held while the shell is open; past that it is counted, not shown


class DebugRun(JobRun):
    """A local JobRun that opens a shell after its first failing step. While the shell is open, what the job's
    other stages print (``parallel:``) is held and shown when it ends, not written over the person's shell."""

    debugged = False
    in_shell = 0.0  # seconds the person spent in the shell: not the job's time (the summary leaves it out)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._show = self.emit
        self._held: list[tuple[Msg, dict[str, Any]]] | None = None
        self._held_text = self._dropped = 0
        self.emit = self._emit_or_hold

    def _emit_or_hold(self, msg: Msg, body: dict[str, Any]) -> None:
        if self._held is None:
            self._show(msg, body)
            return
        text = body.get("text")
        if isinstance(text, str):
            if self._held_text + len(text) > HELD_TEXT:
                self._dropped += len(text)
                return
            self._held_text += len(text)
        self._held.append((msg, dict(body)))  # every other event is kept: the summary needs them

    def _replay(self) -> None:
        held, self._held = self._held or [], None
        for msg, body in held:
            self._show(msg, body)
        if self._dropped:
            sys.stderr.write(f"apiary: {self._dropped:,} bytes of other stages' output printed while the shell was "
                             "open are not shown (more than 8 MiB)\n")
        self._held_text = self._dropped = 0

    async def _step(self, step: Mapping[str, Any], env: dict[str, str], phase: str, stage: str | None,
                    hook: str | None = None) -> int:
        code = await super()._step(step, env, phase, stage, hook)
        if code != 0 and hook is None and phase != "cleanup" and not step.get("ignore_exit_code") and \
                not self.debugged and stage != "checkout":
            self.debugged = True
            await self._shell(step, env, code, stage)
        return code

    async def _shell(self, step: Mapping[str, Any], env: dict[str, str], code: int, stage: str | None) -> None:
        shell = os.environ.get("SHELL") or "/bin/sh"
        self._held = []  # from now on other stages' output waits for the shell's end
        where = f"stage {stage}" if stage else "its phase"
        sys.stdout.flush()
        sys.stderr.write(f"\napiary: {step.get('title') or step['run']!r} failed (exit {code}) in {where}: a shell in "
                         f"{self.workspace} with the job's environment; exit to go on\n")
        sys.stderr.flush()
        deadline, self._deadline = self._deadline, None  # the job's timeout waits for the person
        started = time.monotonic()
        try:
            with _interrupts_to_the_shell():
                await asyncio.to_thread(subprocess.run, [shell, "-i"], cwd=self.workspace,
                                        env={**env, "APIARY_DEBUG": "1"}, check=False)
        finally:
            paused = time.monotonic() - started
            self.in_shell += paused
            self._deadline = deadline + paused if deadline is not None else None
            self.steps.last_output = time.monotonic()  # nor is the shell's time silence
            sys.stderr.write("apiary: the shell ended; the job goes on\n")
            sys.stderr.flush()
            self._replay()


@contextlib.contextmanager
def _interrupts_to_the_shell() -> Iterator[None]:
    """While the shell runs, this process ignores Ctrl-C (the shell, in the same terminal, gets it); then
    whatever handled SIGINT before (apiary run's cancel) handles it again."""
    loop = asyncio.get_running_loop()
    # asyncio keeps a loop's signal handlers in _signal_handlers (CPython's unix event loop)
    before = getattr(loop, "_signal_handlers", {}).get(signal.SIGINT)
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    try:
        yield
    finally:
        if before is not None:
            loop.add_signal_handler(signal.SIGINT, before._callback, *before._args)
        else:
            loop.remove_signal_handler(signal.SIGINT)
