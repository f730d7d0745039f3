"""Samples the CPU and memory of one command's process tree.

The tree is every process whose session id is the step's pid: the step runs as
the leader of a new session, and a process can leave a session only by calling
setsid, so grandchildren and double-forked daemons are all found even after
they are reparented away from the leader.

We read ``/proc/PID/stat`` directly rather than use psutil: psutil exposes no
session id, and one read of that file gives everything needed (session, ppid,
start time, own and reaped CPU ticks, RSS) at about 6 µs a process, with no
dependency. Linux only, as Apiary is.

CPU of processes that exit between samples is recovered as far as the kernel
keeps it: a process's ``cutime``/``cstime`` hold the CPU of the children it
reaped, so a child the sampler never saw still counts once its parent has
waited for it; children it did see are subtracted so nothing counts twice.
RSS sums resident pages per process, so pages shared after fork count in each.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
FINAL = float("inf")  # the sample index of a leader whose final rusage is known


@dataclass(frozen=True)
class Usage:
    """What one command (or a whole job) used: peak RSS in bytes, CPU seconds."""

    peak_rss: int = 0
    cpu_seconds: float = 0.0

    def combine(self, other: Usage) -> Usage:
        """Usage of commands run one after another: the larger peak, the summed CPU."""
        return Usage(max(self.peak_rss, other.peak_rss), self.cpu_seconds + other.cpu_seconds)

    def to_dict(self) -> dict[str, Any]:
        return {"peak_rss": self.peak_rss, "cpu_seconds": round(self.cpu_seconds, 3)}


@dataclass
class _Seen:
    """The last sight of one process: own and reaped-children CPU in ticks."""

    ppid: int
    own: float
    reaped: float
    sample: float


def _read_stat(pid: str) -> tuple[int, int, int, int, int, int] | None:
    """(session, ppid, starttime, own ticks, reaped ticks, rss pages), or None if it vanished."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)  # half the cost of open()
        try:
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = data[data.rindex(b")") + 2:].split()
        return (int(fields[3]), int(fields[1]), int(fields[19]),
                int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]), int(fields[21]))
    except (OSError, ValueError, IndexError):  # exited, or a kernel we do not understand
        return None


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` now."""
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if name.isdigit() and (stat := _read_stat(name)) is not None and stat[1] == pid:
            found.append(int(name))
    return found


def descendants(pid: int) -> list[int]:
    """The processes descended from `pid` now (children, theirs, …), found through /proc's parent links."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if name.isdigit() and (stat := _read_stat(name)) is not None:
            children.setdefault(stat[1], []).append(int(name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


class TreeSampler:
    """Samples the session led by `pid` every `interval` seconds.

    Lifecycle: `start()` once in a running loop, then `await stop()` once, best
    after the leader has been waited for; `stop()` without `start()` takes one
    sample. Sampling never raises: processes vanishing mid-read are skipped.
    Cancelling `stop()` is safe; the sampling task is always cancelled.
    """

    def __init__(self, pid: int, interval: float = 0.25,
                 on_sample: Callable[[], None] | None = None) -> None:
        self.pid = pid
        self.interval = interval
        self.on_sample = on_sample  # told after each sample (a job adds up its running trees)
        self.peak_rss = 0
        self.current_rss = 0
        self._seen: dict[tuple[int, int], _Seen] = {}
        self._samples = 0
        self._task: asyncio.Task[None] | None = None

    def start(self, immediate: bool = True) -> None:
        """Sample now (short-lived trees are seen at all), unless not `immediate`, then every interval."""
        if immediate:
            self.sample()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"sampler-{self.pid}")

    def sample_leader(self) -> None:
        """Read the leader alone: cheap, and, once it has exited but is not yet reaped,
        its CPU with that of every child it waited for."""
        stat = _read_stat(str(self.pid))
        if stat is None:
            return
        self._samples += 1
        _, ppid, start, own, reaped, pages = stat
        self._seen[(self.pid, start)] = _Seen(ppid, own, reaped, self._samples)
        self.peak_rss = max(self.peak_rss, pages * PAGE)

    async def stop(self, final_cpu: float | None = None, final_sample: bool = True) -> Usage:
        """Stop sampling, take a last sample and summarise.

        `final_cpu` is the leader's rusage (user + system, its waited-for
        descendants included, as os.wait4 gives it); it replaces the leader's
        last-seen CPU if larger, less the descendants already counted.
        """
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
        if final_sample:
            self.sample()
        return Usage(self.peak_rss, self._cpu_ticks(final_cpu) / TICKS)

    def sample(self) -> int:
        """Take one sample now; returns how many processes the tree has."""
        self._samples += 1
        rss = count = 0
        try:
            names = os.listdir("/proc")
        except OSError:
            return 0
        for name in names:
            if not name.isdigit() or (stat := _read_stat(name)) is None or stat[0] != self.pid:
                continue
            _, ppid, start, own, reaped, pages = stat
            self._seen[(int(name), start)] = _Seen(ppid, own, reaped, self._samples)
            rss += pages * PAGE
            count += 1
        self.peak_rss = max(self.peak_rss, rss)
        self.current_rss = rss
        if self.on_sample is not None:
            self.on_sample()
        return count

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.sample()
            except Exception:  # never let a sampling bug break the step
                log.exception("sampler %s: sample failed", self.pid)

    def _cpu_ticks(self, final_cpu: float | None) -> float:
        """Own CPU of every process seen, plus reaped CPU not already counted."""
        seen = dict(self._seen)
        leader = next((k for k in seen if k[0] == self.pid), (self.pid, -1))
        if final_cpu is not None:
            last = seen.get(leader, _Seen(0, 0, 0, 0))
            final = final_cpu * TICKS
            if final > last.own + last.reaped:
                seen[leader] = _Seen(last.ppid, last.own, final - last.own, FINAL)
        # Children last seen before their parent's last sample were waited for by it
        # (or orphaned, in which case they are subtracted and the result only undercounts).
        counted: dict[int, float] = {}
        by_pid = {pid: s for (pid, _), s in seen.items()}
        for child in seen.values():
            parent = by_pid.get(child.ppid)
            if parent is not None and child.sample < parent.sample:
                counted[child.ppid] = counted.get(child.ppid, 0.0) + child.own + child.reaped
        return sum(s.own + max(0.0, s.reaped - counted.get(pid, 0)) for (pid, _), s in seen.items())
