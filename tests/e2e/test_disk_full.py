"""The queen's disk fills while a job prints, then space comes back: nothing is lost, nothing is
stored twice, the job's end waits for its log, and the queen serves again within seconds.

The queen's data dir is a small tmpfs (mounting needs root, as CI runs)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.cluster import Cluster, output_lines

LINES = 3000
# 3,000 lines of about 1 KB: a few MB, printed while the store has no room for them.
PRINT = f"for i in $(seq 1 {LINES}); do printf 'line-%05d %01000d\\n' $i 0; done"


def fill(folder: Path, leave: int) -> Path:
    """A file taking all but `leave` bytes of `folder`'s filesystem."""
    stat = os.statvfs(folder)
    ballast = folder / "ballast"
    with open(ballast, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
    return ballast


@pytest.mark.own_store  # the store's files are on the queen's small disk
async def test_a_full_disk_loses_no_line_and_the_queen_recovers_when_space_returns(cluster: Cluster) -> None:
    data = cluster.tmp / "queen"
    data.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(data)], check=True)
    try:
        await cluster.start_queen()
        await cluster.add_drone("d1")
        await cluster.create_pipeline_repo("fill", f"stages: [{{name: s, steps: [{PRINT!r}]}}]")
        ballast = fill(data, leave=256 * 1024)
        job = await cluster.trigger("fill")
        assert cluster.queen is not None
        queen = cluster.queen
        await cluster.wait_for(lambda: asyncio.sleep(0, queen.logs()), lambda logs: "store's disk is full" in logs,
                               "the store to say its disk is full", timeout=60)
        # While it cannot write, the job is not ended with part of its log.
        await asyncio.sleep(2)
        assert (await cluster.job(job["id"]))["status"] in ("dispatched", "running")
        status, body = await cluster.request("POST", "/repos/fill/jobs", {})
        if status == 503:
            assert "disk is full" in body["error"]
        ballast.unlink()
        freed = time.monotonic()
        done = await cluster.wait_job(job["id"], timeout=120)
        took = time.monotonic() - freed
        events = await cluster.events(job["id"])
        lines = output_lines(events, "job:cmd:stdout")
        assert done["status"] == "passed"
        assert lines == [f"line-{i:05d} {0:01000d}" for i in range(1, LINES + 1)]  # each once, in order
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        # And it serves new jobs again.
        after = await cluster.wait_job((await cluster.trigger("fill"))["id"], timeout=60)
        assert after["status"] == "passed"
        print(f"\ndisk full while a job printed {LINES} lines of 1 KB; space freed: the job passed "
              f"{took:.1f} s later with all {len(lines)} lines stored once; a new job passed too")
    finally:
        await cluster.close()
        subprocess.run(["umount", "-l", str(data)], check=False)
