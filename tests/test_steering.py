"""Bounding and steering jobs: timeouts, cancel (the whole process tree), re-run."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.cluster import Cluster, output_lines


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


async def test_cancel_kills_the_whole_tree_at_once_and_keeps_the_output(queen: Cluster, tmp_path: Path) -> None:
    await queen.add_drone("d1")
    pids = tmp_path / "pids"
    # The step starts a grandchild and a detached great-grandchild, then waits.
    step = (f"echo started; sleep 300 & echo $! >> {pids}; "
            f"sh -c 'sleep 301 & echo $! >> {pids}; wait' & wait")
    await queen.create_pipeline_repo("long", f'stages:\n  - name: wait\n    steps: ["{step}"]\n')
    job = await queen.trigger("long")
    await queen.wait_for(lambda: queen.events(job["id"]),
                         lambda evs: "started" in output_lines(evs, "job:cmd:stdout"), "the step to start")
    await queen.wait_for(lambda: asyncio.sleep(0, pids.read_text().split() if pids.exists() else []),
                         lambda p: len(p) == 2, "both sleepers")
    sleepers = [int(p) for p in pids.read_text().split()]
    assert all(alive(p) for p in sleepers)

    status, answer = await queen.request("POST", f"/jobs/{job['id']}/cancel")
    assert status == 202 and answer["status"] == "cancelling"
    done = await queen.wait_job(job["id"], timeout=10)

    assert done["status"] == "cancelled"
    assert not any(alive(p) for p in sleepers)
    assert done["commands"][0]["exitCode"] < 0
    events = await queen.events(job["id"])
    assert "started" in output_lines(events, "job:cmd:stdout")
    assert events[-1]["type"] == "job:done" and events[-1]["result"] == "cancelled"
    status, answer = await queen.request("POST", f"/jobs/{job['id']}/cancel")
    assert status == 409


async def test_a_queued_job_is_cancelled_at_once(queen: Cluster) -> None:
    await queen.create_pipeline_repo("app", 'stages: [{name: t, steps: ["true"]}]')
    job = await queen.trigger("app")
    status, answer = await queen.request("POST", f"/jobs/{job['id']}/cancel")
    assert status == 202 and answer["status"] == "cancelled"
    await queen.add_drone("d1")
    await asyncio.sleep(0.5)
    assert (await queen.job(job["id"]))["status"] == "cancelled"


async def test_the_job_timeout_and_the_output_timeout_stop_a_job(queen: Cluster) -> None:
    await queen.add_drone("d1", capacity=2)
    await queen.create_pipeline_repo("slow", """
timeout: 1
cleanup: [echo cleaned]
stages: [{name: s, steps: ["while true; do echo tick; sleep 0.1; done"]}]
""")
    await queen.create_pipeline_repo("quiet", """
output_timeout: 0.8
stages: [{name: s, steps: ["echo one; sleep 30"]}]
""")
    slow = await queen.trigger("slow")
    quiet = await queen.trigger("quiet")
    slow_done = await queen.wait_job(slow["id"], timeout=15)
    quiet_done = await queen.wait_job(quiet["id"], timeout=15)

    assert slow_done["status"] == "failed" and "timed out after 1 s" in slow_done["error"]
    assert output_lines(await queen.events(slow["id"]), "job:cmd:stdout")[-1] == "cleaned"
    assert quiet_done["status"] == "failed" and "no output for 0.8 s" in quiet_done["error"]
    assert quiet_done["finished"] - quiet_done["started"] < 10


async def test_rerun_makes_a_new_job_with_the_same_ref_type_and_parameters(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", """
parameters: {WHO: {default: nobody}}
stages: [{name: s, steps: ["echo $WHO"]}]
""")
    first = await queen.wait_job((await queen.trigger("app", branch="dev", type="TEST_DEPLOY",
                                                     parameters={"WHO": "ada"}))["id"])
    status, again = await queen.request("POST", f"/jobs/{first['id']}/rerun", expect=201)
    second = await queen.wait_job(again["id"])

    assert second["id"] != first["id"] and second["number"] == first["number"] + 1
    assert (second["ref"], second["type"], second["parameters"]) == (first["ref"], first["type"], first["parameters"])
    assert second["rerun_of"] == first["id"] and second["trigger"]["type"] == "rerun"
    assert output_lines(await queen.events(second["id"]), "job:cmd:stdout") == ["ada"]
