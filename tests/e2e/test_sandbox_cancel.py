"""Cancelled as its sandbox starts, a job leaves no bubblewrap behind.

An isolated network's sandbox starts in steps (bubblewrap waits on its block fd while the drone waits for
the sandbox's loopback and starts slirp4netns); a cancel in that window used to kill bubblewrap's first
process only, and its child waited on the block fd for ever with parent init.
"""

from __future__ import annotations

import asyncio

from tests.cluster import Cluster
from tests.e2e.test_sandbox import SANDBOXED, _alive


async def test_jobs_cancelled_as_they_start_leave_no_sandbox_behind(queen: Cluster) -> None:
    await queen.add_drone("d1", capacity=4, env=SANDBOXED)
    await queen.create_pipeline_repo("race", 'cleanup: ["echo cleanup"]\nstages: [{name: s, steps: ["echo hi; sleep 5"]}]')
    ids: list[str] = []
    for delay in (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12):
        jobs = [(await queen.trigger("race"))["id"] for _ in range(4)]
        await queen.wait_for(lambda: queen.job(jobs[-1]), lambda j: j["status"] != "queued", "a dispatch",
                             timeout=20)
        await asyncio.sleep(delay)
        for job in jobs:
            await queen.request("POST", f"/jobs/{job}/cancel")
        ids += jobs
        for job in jobs:
            assert (await queen.wait_job(job, timeout=30))["status"] == "cancelled"
    await asyncio.sleep(0.5)
    assert _alive(f"bwrap.*{queen.tmp}") == []
    assert queen.drones["d1"].alive
    assert "Traceback" not in queen.all_logs()
