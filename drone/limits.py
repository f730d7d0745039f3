"""A job's limits on the drone: how much output it may send, how much disk its workspace may take,
how long its commands have to stop once told to.

`LogCap` counts the bytes of command output a job sends; past ``log_max_bytes``
the rest is dropped — the commands keep running and their exit codes count —
and one marker line says so in the log. `WorkspaceGuard` measures the job's
workspace now and then (a walk of its files, as ``du`` counts them, in a
thread) and, once it holds more than ``workspace_max_bytes``, gives the
executor's watchdog the reason to stop the job, which then fails. 0 turns
either off. Both are per job, made by the JobRun; neither knows of sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apiary.core.config import DroneConfig

log = logging.getLogger(__name__)

# Seconds between measurements of a workspace, at least; a walk that takes
# long spaces them further (WALK_SHARE of the time, at most, goes to walking).
CHECK_EVERY = 5.0
WALK_SHARE = 0.05


@dataclasses.dataclass(frozen=True)
class JobLimits:
    """The caps of one job, in bytes; 0: none (as in `apiary run`)."""

    log_max_bytes: int = 0
    workspace_max_bytes: int = 0
    check_every: float = CHECK_EVERY
    kill_grace: float = 10.0  # seconds between SIGTERM and SIGKILL when a job is stopped

    @classmethod
    def of(cls, config: DroneConfig) -> JobLimits:
        return cls(log_max_bytes=config.log_max_bytes, workspace_max_bytes=config.workspace_max_bytes,
                   kill_grace=config.kill_grace)


def human(size: int) -> str:
    """``104857600`` as ``100 MiB``; a size that is no whole number of KiB, MiB or GiB in bytes."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


class LogCap:
    """A job's allowance of output: the bytes (UTF-8) of command output sent, up to `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent = 0
        self.reached = False
        self._line_open = False  # the last text sent did not end its line

    def take(self, text: str) -> tuple[str, bool]:
        """The part of `text` that may be sent, and True the one time the cap is reached (say so then)."""
        if not self.limit:
            return text, False
        if self.reached:
            return "", False
        data = text.encode()
        cut = self.sent + len(data) > self.limit
        if cut:
            data = data[:self.limit - self.sent]
            text = data.decode(errors="ignore")  # no half character
            self.reached = True
        self.sent += len(data)
        if text:
            self._line_open = not text.endswith("\n")
        return text, cut

    @property
    def marker(self) -> str:
        """The line that tells the log's reader what happened."""
        return ("\n" if self._line_open else "") + (
            f"apiary: output cut: this job printed more than {human(self.limit)}; the rest is not kept "
            "(log_max_bytes)\n")


class WorkspaceGuard:
    """Measures a workspace from time to time; says, once, when it holds more than `limit` bytes.

    `over()` is polled by the executor's watchdog (often, and cheaply): it
    starts a measurement when one is due and returns the reason to stop the
    job once the last one found too much. `close()` when the job ends.
    """

    def __init__(self, path: Path, limit: int, every: float = CHECK_EVERY) -> None:
        self.path = path
        self.limit = limit
        self.every = every
        self.used: int | None = None  # bytes, as last measured
        self._next = 0.0  # the first measurement right away
        self._task: asyncio.Future[int] | None = None
        self._said = False

    def over(self) -> str | None:
        if not self.limit or self._said:
            return None
        if self.used is not None and self.used > self.limit:
            self._said = True
            return f"workspace over {human(self.limit)} (cap workspace_max_bytes)"
        if self._task is None and time.monotonic() >= self._next:
            started = time.monotonic()
            self._task = asyncio.ensure_future(asyncio.to_thread(disk_usage, self.path))
            self._task.add_done_callback(lambda task: self._measured(task, started))
        return None

    def _measured(self, task: asyncio.Future[int], started: float) -> None:
        self._task = None
        if task.cancelled():
            return
        if task.exception() is not None:
            log.warning("cannot measure workspace %s: %s", self.path, task.exception())
        else:
            self.used = task.result()
        took = time.monotonic() - started
        self._next = time.monotonic() + max(self.every, took / WALK_SHARE)

    def close(self) -> None:
        """Stop waiting for a measurement under way (its thread finishes its walk alone)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None


def disk_usage(root: Path) -> int:
    """Bytes `root` takes on disk, as ``du`` counts them: allocated blocks, each hard-linked file once,
    symbolic links not followed. What vanishes or cannot be read during the walk is skipped."""
    total = 0
    seen: set[tuple[int, int]] = set()
    todo = [str(root)]
    while todo:
        with contextlib.suppress(OSError), os.scandir(todo.pop()) as entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                    if (info.st_dev, info.st_ino) in seen:
                        continue
                    seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
                if stat.S_ISDIR(info.st_mode):
                    todo.append(entry.path)
    return total
