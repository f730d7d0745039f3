"""Small waits and signals on a command's processes, shared by the step runner, its child, the job network
and the sandboxes made ahead.

`readable` waits without blocking the event loop for a file descriptor to become readable (a pidfd:
its process ended; a pipe: it wrote or closed); `reaped` waits for a process to end and reaps it;
`kill_group` sends SIGKILL to a process group that may be gone already.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess


async def readable(fd: int, timeout: float | None = None) -> bool:
    """Until `fd` is readable: True, or False after `timeout` seconds (None: no limit).

    Not asyncio.wait_for: on Python 3.11 it loses a cancel that comes as the wait ends, and a cancelled
    job would run on.
    """
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        async with asyncio.timeout(timeout):
            await ready
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


def kill_group(pgid: int) -> None:
    """SIGKILL to process group `pgid`, if it still exists and may be signalled."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def reaped(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait (without blocking the loop) up to `timeout` seconds for `proc` to end; reap it. True if it did."""
    if proc.poll() is not None:
        return True
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        proc.wait()
        return True
    try:
        if not await readable(pidfd, timeout):
            return False
    finally:
        os.close(pidfd)
    proc.wait()
    return True
