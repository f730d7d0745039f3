"""Bounding and steering jobs: timeouts, cancel (the whole process tree, politely, then firmly), re-run."""

from __future__ import annotations

import asyncio
import os
import signal
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


async def test_cancel_stops_the_whole_tree_and_keeps_the_output(queen: Cluster, tmp_path: Path) -> None:
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


async def test_cancel_lets_a_steps_trap_clean_up_before_it_kills(queen: Cluster, tmp_path: Path) -> None:
    """SIGTERM first: the step's trap runs and what it prints is kept; cleanup still runs."""
    await queen.add_drone("d1")
    mark = tmp_path / "trap-ran"
    step = f"trap 'echo got-TERM; touch {mark}; exit 143' TERM INT; echo waiting; sleep 60 & wait"
    await queen.create_pipeline_repo("trap", f'cleanup: ["echo cleanup ran"]\nstages: [{{name: s, steps: ["{step}"]}}]\n')
    job = await queen.trigger("trap")
    await queen.wait_for(lambda: queen.events(job["id"]),
                         lambda evs: "waiting" in output_lines(evs, "job:cmd:stdout"), "the step to start")
    await queen.request("POST", f"/jobs/{job['id']}/cancel", expect=202)
    done = await queen.wait_job(job["id"], timeout=20)
    events = await queen.events(job["id"])
    assert done["status"] == "cancelled" and mark.exists()
    assert output_lines(events, "job:cmd:stdout")[:2] == ["waiting", "got-TERM"]
    assert done["commands"][0]["exitCode"] == 143
    assert "cleanup ran" in output_lines(events, "job:cmd:stdout")


async def test_a_step_that_ignores_sigterm_is_killed_after_the_grace_or_at_a_second_cancel(cluster: Cluster) -> None:
    await cluster.start_queen()
    await cluster.add_drone("d1", env={"APIARY_DRONE_KILL_GRACE": "1"})
    await cluster.create_pipeline_repo("stubborn", 'stages: [{name: s, steps: ["trap \'\' TERM; echo deaf; '
                                                   'while true; do sleep 1; done"]}]')
    for second_cancel in (False, True):
        job = await cluster.trigger("stubborn")
        await cluster.wait_for(lambda: cluster.events(job["id"]),
                               lambda evs: "deaf" in output_lines(evs, "job:cmd:stdout"), "the step to start")
        started = asyncio.get_running_loop().time()
        await cluster.request("POST", f"/jobs/{job['id']}/cancel", expect=202)
        if second_cancel:
            await cluster.request("POST", f"/jobs/{job['id']}/cancel")
        done = await cluster.wait_job(job["id"], timeout=20)
        took = asyncio.get_running_loop().time() - started
        print(f"\nignoring SIGTERM, {'two cancels' if second_cancel else 'one cancel'}: stopped in {took:.2f} s "
              "(kill_grace 1 s)")
        assert done["status"] == "cancelled" and done["commands"][0]["exitCode"] == -signal.SIGKILL


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


async def test_a_timeout_still_runs_the_failure_hooks_the_artifacts_and_cleanup(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("late", """
timeout: 1
on_failure: [echo failure-hook]
artifacts: [report.txt]
cleanup: [echo cleaned]
stages: [{name: s, steps: ["echo partial > report.txt; sleep 30"]}]
""")
    job = await queen.wait_job((await queen.trigger("late"))["id"], timeout=20)
    assert job["status"] == "failed" and "timed out" in job["error"]
    out = output_lines(await queen.events(job["id"]), "job:cmd:stdout")
    assert out == ["failure-hook", "cleaned"]
    assert [a["name"] for a in (await queen.get(f"/jobs/{job['id']}/artifacts"))["artifacts"]] == ["report.txt"]


async def test_cleanup_runs_after_a_cancel_and_a_second_cancel_stops_it(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("c", """
cleanup: ["echo cleaning; sleep 30; echo never"]
stages: [{name: s, steps: ["echo working; sleep 30"]}]
""")
    job = await queen.trigger("c")
    await queen.wait_for(lambda: queen.events(job["id"]),
                         lambda evs: "working" in output_lines(evs, "job:cmd:stdout"), "the step")
    await queen.request("POST", f"/jobs/{job['id']}/cancel", expect=202)
    await queen.wait_for(lambda: queen.events(job["id"]),
                         lambda evs: "cleaning" in output_lines(evs, "job:cmd:stdout"), "the cleanup")
    await queen.request("POST", f"/jobs/{job['id']}/cancel", expect=202)
    done = await queen.wait_job(job["id"], timeout=10)
    assert done["status"] == "cancelled"
    events = await queen.events(job["id"])
    assert "never" not in output_lines(events, "job:cmd:stdout")
    assert [e["type"] for e in events].count("job:done") == 1 and [e["type"] for e in events].count("job:started") == 1


async def test_a_job_cancelled_while_its_drone_is_away_stays_cancelled(queen: Cluster) -> None:
    drone = await queen.add_drone("d1")
    await queen.create_pipeline_repo("away", 'stages: [{name: s, steps: ["echo begun; sleep 6; echo after"]}]')
    job = await queen.trigger("away")
    await queen.wait_for(lambda: queen.events(job["id"]),
                         lambda evs: "begun" in output_lines(evs, "job:cmd:stdout"), "the step")
    assert drone.proc is not None
    drone.proc.send_signal(signal.SIGSTOP)
    try:
        await queen.wait_for(queen.drone_ids, lambda ids: "d1" not in ids, "the drone to be lost", timeout=10)
        status, answer = await queen.request("POST", f"/jobs/{job['id']}/cancel")
        assert status == 202 and answer["status"] == "cancelled"
    finally:
        drone.proc.send_signal(signal.SIGCONT)
    await queen.wait_for(queen.drone_ids, lambda ids: "d1" in ids, "the drone to come back", timeout=10)
    # The drone's copy is told to stop when it registers again; what it still says
    # carries the old attempt and is refused.
    async def drone_log() -> str:
        return drone.logs()

    await queen.wait_for(drone_log, lambda text: f"job {job['id']}: cancelled" in text, "the copy to end", timeout=15)
    await asyncio.sleep(6)  # past the step's end, had it not been killed
    done = await queen.job(job["id"])
    assert done["status"] == "cancelled"
    assert "after" not in output_lines(await queen.events(job["id"]), "job:cmd:stdout")
