"""Ctrl-C in the terminal stops the queen cleanly: the embedded store is out of the terminal's process group,
so only the queen gets the SIGINT and stops the store itself, last; nothing is restarted on the way out."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.e2e.test_one_queen import running


async def test_ctrl_c_on_the_queens_process_group_stops_it_without_an_error(tmp_path: Path) -> None:
    data = tmp_path / "queen"
    # A session of its own: the test plays the terminal, whose Ctrl-C signals the whole foreground group.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "apiary.cli", "queen", "--data-dir", str(data), "--http-port", "0",
        "--drone-bind", "tcp://127.0.0.1:*", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True)
    try:
        pid_file = data / "store" / "nx-27017.pid"
        for _ in range(600):
            if (data / "queen.url").exists() and pid_file.exists() and pid_file.read_text().strip():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the queen did not start")
        store = int(pid_file.read_text().strip())
        assert os.getpgid(store) != proc.pid  # not in the group a terminal signals
        await asyncio.sleep(1.0)  # the supervisor has looked at the store a few times
        os.killpg(proc.pid, signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = err.decode(errors="replace")
    assert proc.returncode == 0, log
    assert " ERROR " not in log and "starting it again" not in log and "store write failed" not in log, log
    for _ in range(100):  # stopped by the queen on its way out
        if not running(store):
            break
        await asyncio.sleep(0.05)
    assert not running(store), log
