"""A job's limits on the drone, the pieces alone: the log cap, sizes, disk usage, the workspace guard.
A JobRun in this process and a real drone: tests/e2e/test_limits.py (which imports MARK from here)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from apiary.drone.limits import LogCap, WorkspaceGuard, disk_usage, human

MARK = "apiary: output cut"


# -- the pieces -----------------------------------------------------------------------

def test_the_log_cap_cuts_once_at_the_limit_and_never_in_a_character() -> None:
    cap = LogCap(10)
    assert cap.take("abcd") == ("abcd", False)
    assert cap.take("efgh\n") == ("efgh\n", False)
    assert cap.take("ééé") == ("", True)  # 1 byte left: half an é is not sent
    assert cap.take("more") == ("", False) and cap.reached
    assert cap.marker == f"{MARK}: this job printed more than 10 bytes; the rest is not kept (log_max_bytes)\n"
    cut = LogCap(4)
    assert cut.take("abcdef") == ("abcd", True)
    assert cut.marker.startswith("\n" + MARK)  # on a line of its own
    assert LogCap(0).take("x" * 10**6) == ("x" * 10**6, False)


def test_sizes_read_as_people_write_them() -> None:
    assert [human(n) for n in (100 * 2**20, 20 * 2**30, 4096, 2_000_000)] == [
        "100 MiB", "20 GiB", "4 KiB", "2000000 bytes"]


def test_disk_usage_counts_blocks_once_and_does_not_follow_links(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "data").write_bytes(os.urandom(300_000))
    empty = disk_usage(tmp_path)
    os.link(tmp_path / "d" / "e" / "data", tmp_path / "hardlink")
    (tmp_path / "symlink").symlink_to("/usr")
    assert disk_usage(tmp_path) - empty < 8192  # the link's entry, not its data again; /usr not walked
    assert 300_000 <= empty < 400_000
    assert disk_usage(tmp_path / "gone") == 0


async def test_the_workspace_guard_says_once_when_the_workspace_is_too_big(tmp_path: Path) -> None:
    guard = WorkspaceGuard(tmp_path, 100_000, every=0.05)
    assert guard.over() is None
    (tmp_path / "big").write_bytes(os.urandom(200_000))
    reasons = []
    deadline = time.monotonic() + 5
    while not reasons and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        reasons += [r for r in [guard.over()] if r]
    assert reasons == ["workspace over 100000 bytes (cap workspace_max_bytes)"]
    assert guard.used is not None and guard.used >= 200_000
    await asyncio.sleep(0.2)
    assert guard.over() is None  # said once
    guard.close()
    assert WorkspaceGuard(tmp_path, 0).over() is None
