"""The resource sampler against real process trees (Linux /proc)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from apiary.drone.resources import TreeSampler

MB = 1024 * 1024
PY = shlex.quote(sys.executable)
BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < {}: pass"
Spawn = Callable[..., Awaitable[asyncio.subprocess.Process]]


def py(code: str) -> str:
    """A shell word running `code` in a Python grandchild."""
    return f"{PY} -c {shlex.quote(code)}"


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """Starts `/bin/sh -c CMD` as a session leader, as the drone does; kills every group afterwards."""
    procs: list[asyncio.subprocess.Process] = []

    async def start(command: str, stdout: int = asyncio.subprocess.DEVNULL) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", command, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=stdout, start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.communicate()


async def test_peak_rss_counts_a_grandchild(spawn: Spawn) -> None:
    proc = await spawn(py("b = bytearray(100 * 1024 * 1024); import time; time.sleep(0.6)") + "; :")
    sampler = TreeSampler(proc.pid, interval=0.1)
    sampler.start()
    await proc.wait()
    usage = await sampler.stop()
    assert usage.peak_rss >= 90 * MB


async def test_cpu_of_a_busy_grandchild(spawn: Spawn) -> None:
    proc = await spawn(py(BUSY.format(0.5)) + "; :")
    sampler = TreeSampler(proc.pid, interval=0.1)
    sampler.start()
    await proc.wait()
    usage = await sampler.stop()
    assert 0.3 <= usage.cpu_seconds < 2.0


async def test_cpu_of_a_child_never_sampled_is_recovered_from_its_parent(spawn: Spawn) -> None:
    # Only the first and last samples are taken; the child lives between them.
    proc = await spawn(py(BUSY.format(0.5)) + "; echo done; sleep 10", stdout=asyncio.subprocess.PIPE)
    sampler = TreeSampler(proc.pid, interval=60)
    sampler.start()
    assert proc.stdout is not None
    assert await proc.stdout.readline() == b"done\n"
    usage = await sampler.stop()
    assert 0.4 <= usage.cpu_seconds < 1.0


async def test_final_rusage_is_not_counted_twice(spawn: Spawn) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = await spawn(py(BUSY.format(0.5)) + "; :")
    sampler = TreeSampler(proc.pid, interval=0.1)
    sampler.start()
    await proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    final = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    usage = await sampler.stop(final_cpu=final)
    assert final * 0.95 <= usage.cpu_seconds <= final * 1.1 + 0.05


async def test_double_forked_daemon_is_counted(spawn: Spawn, tmp_path: Path) -> None:
    burnt = tmp_path / "burnt"
    daemon = py("b = bytearray(60 * 1024 * 1024)\n" + BUSY.format(0.4)
                + f"\nopen({str(burnt)!r}, 'w').close()\ntime.sleep(5)")
    proc = await spawn(f"( {daemon} & ) ; exit 0")
    sampler = TreeSampler(proc.pid, interval=0.1)
    sampler.start()
    await proc.wait()  # the leader is gone; the daemon lives on in its session
    # On a loaded machine the daemon's 0.4 s of CPU may take far longer than 0.4 s: wait for it to be spent.
    deadline = time.monotonic() + 30
    while not burnt.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # a sample or two after
    usage = await sampler.stop()
    assert usage.peak_rss >= 50 * MB
    assert usage.cpu_seconds >= 0.3


async def test_a_tree_that_exits_at_once_gives_a_small_usage(spawn: Spawn) -> None:
    proc = await spawn("exit 0")
    sampler = TreeSampler(proc.pid, interval=0.05)
    sampler.start()
    await proc.wait()
    await asyncio.sleep(0.1)
    usage = await sampler.stop()
    assert 0 <= usage.peak_rss < 50 * MB
    assert 0 <= usage.cpu_seconds < 0.5
    assert set(usage.to_dict()) == {"peak_rss", "cpu_seconds"}


async def test_sample_cost_for_twenty_processes(spawn: Spawn) -> None:
    proc = await spawn("for i in $(seq 19); do sleep 10 & done; wait")
    sampler = TreeSampler(proc.pid)
    deadline = time.monotonic() + 5
    while sampler.sample() < 20 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert sampler.sample() == 20
    rounds = 200
    began = time.perf_counter()
    for _ in range(rounds):
        sampler.sample()
    cost = (time.perf_counter() - began) / rounds
    print(f"\none sample of a 20-process tree, {len(os.listdir('/proc'))} /proc entries: {cost * 1e3:.3f} ms")
