"""Faults with real processes: drones killed or paused mid-job. Each test prints what it did."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.browser import browser, page  # noqa: F401  (fixtures)
from tests.cluster import FINAL, Cluster, Proc, _env, output_lines

# First attempt: says so and hangs; any later one: says so and ends. A file in
# the test's directory tells them apart, as a flaky machine would not.
ONCE = 'if [ -e {flag} ]; then echo "second attempt"; else touch {flag}; echo "first attempt"; sleep 60; fi'


def pipeline(flag: Path) -> str:
    return f"stages: [{{name: s, steps: [{ONCE.format(flag=flag)!r}]}}]"


async def started_on(queen: Cluster, job_id: str, line: str) -> None:
    await queen.wait_for(lambda: queen.events(job_id), lambda evs: line in output_lines(evs, "job:cmd:stdout"),
                         f"{line!r} to be stored", timeout=30)


async def test_job_of_a_killed_drone_runs_again_on_another_and_keeps_what_it_printed(queen: Cluster,
                                                                                     tmp_path: Path,
                                                                                     page: Page) -> None:
    doomed = await queen.add_drone("doomed", speed=2.0)  # the faster one gets the job first
    await queen.add_drone("spare", speed=1.0)
    await queen.create_pipeline_repo("app", pipeline(tmp_path / "flag"))
    job = await queen.trigger("app")
    await started_on(queen, job["id"], "first attempt")
    await doomed.stop(signal.SIGKILL)

    done = await queen.wait_job(job["id"], timeout=30)
    assert (done["status"], done["drone"], done["attempts"]) == ("passed", "spare", 2)
    assert done["history"]["1"]["drone"] == "doomed" and "was lost" in done["history"]["1"]["reason"]
    events = await queen.events(job["id"])
    assert output_lines(events, "job:cmd:stdout") == ["first attempt", "second attempt"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # one run of seqs, nothing twice
    assert [e["attempt"] for e in events if e["type"] == "job:started"] == [1, 2]
    assert [c["num"] for c in done["commands"]] == [1, 2]  # both attempts' commands, numbered apart
    # The page lists the attempts and shows the lost one's command as never ended.
    await page.goto(f"/jobs/{job['id']}")
    await expect(page.locator(".attempts li")).to_have_count(2)
    await expect(page.locator(".attempts li").first).to_contain_text("doomed")
    await expect(page.locator("#steps")).to_contain_text("lost with its drone")
    await expect(page.locator("#job-status")).to_have_text("passed")
    print(f"\nkilled drone 'doomed' mid-job; attempt 2 passed on 'spare'; {len(events)} events stored once")


async def test_a_job_whose_drones_keep_dying_ends_errored_after_max_attempts(cluster: Cluster,
                                                                              tmp_path: Path) -> None:
    await cluster.start_queen(env={"APIARY_QUEEN_MAX_ATTEMPTS": "2"})
    await cluster.create_pipeline_repo("app", "stages: [{name: s, steps: ['echo up; sleep 60']}]")
    job = await cluster.trigger("app")
    kills = 0
    for n, name in enumerate(("one", "two"), 1):
        drone = await cluster.add_drone(name)
        await cluster.wait_for(lambda: cluster.events(job["id"]),
                               lambda evs, n=n: output_lines(evs, "job:cmd:stdout") == ["up"] * n,
                               f"the job's line from {name} to be stored")
        await drone.stop(signal.SIGKILL)
        kills += 1
    done = await cluster.wait_job(job["id"], timeout=30)
    assert done["status"] == "errored"
    assert done["error"] == "drone two was lost (silent for 0.8 s); 2 attempts made, none finished"
    assert [done["history"][n]["drone"] for n in ("1", "2")] == ["one", "two"]
    assert output_lines(await cluster.events(job["id"]), "job:cmd:stdout") == ["up", "up"]
    print(f"\n{kills} drones killed; the job ended errored after 2 attempts")


async def test_a_paused_drone_coming_back_cannot_run_the_same_job_twice(queen: Cluster, tmp_path: Path) -> None:
    sleeper = await queen.add_drone("sleeper", speed=2.0)
    await queen.add_drone("awake", speed=1.0)
    flag = tmp_path / "flag"
    await queen.create_pipeline_repo("app", f"""stages: [{{name: s, steps: [
  'if [ -e {flag} ]; then echo "second attempt"; sleep 3; else touch {flag}; echo "first attempt"; sleep 2; echo "late line"; fi']}}]""")
    job = await queen.trigger("app")
    await started_on(queen, job["id"], "first attempt")
    assert sleeper.proc is not None
    sleeper.proc.send_signal(signal.SIGSTOP)
    try:
        await queen.wait_for(lambda: queen.job(job["id"]), lambda j: j["drone"] == "awake" and j["status"] == "running",
                             "the second attempt to start", timeout=15)
    finally:
        sleeper.proc.send_signal(signal.SIGCONT)
    await queen.wait_for(queen.drone_ids, lambda ids: "sleeper" in ids, "the paused drone to come back")
    await asyncio.sleep(3)  # the first copy's step would have printed its late line by now
    done = await queen.wait_job(job["id"], timeout=30)
    assert (done["status"], done["drone"], done["attempts"]) == ("passed", "awake", 2)
    events = await queen.events(job["id"])
    lines = output_lines(events, "job:cmd:stdout")
    assert lines == ["first attempt", "second attempt"]  # the stale copy's late line was refused
    assert {e["attempt"] for e in events if e["seq"] > events[0]["seq"] and e["type"] != "job:cmd:stdout"} <= {1, 2}
    assert [e["type"] for e in events].count("job:done") == 1
    assert "stale copy" in queen.queen.logs() or "cancelling its copy" in queen.queen.logs()
    print("\npaused a drone past the timeout; its copy was cancelled, the job ran once more and passed")


@pytest.mark.own_store  # the queen's embedded store is killed
async def test_store_killed_and_restarted_mid_job_loses_and_doubles_nothing(queen: Cluster) -> None:
    await queen.add_drone("d1")
    lines = 400
    await queen.create_pipeline_repo("app", f"""stages: [{{name: s, steps: [
  'i=1; while [ $i -le {lines} ]; do echo "line $i"; sleep 0.01; i=$((i+1)); done']}}]""")
    job = await queen.trigger("app")
    await started_on(queen, job["id"], "line 20")
    pid = int((queen.tmp / "queen" / "store" / "nx-27017.pid").read_text())
    os.kill(pid, signal.SIGKILL)

    async def job_or_none() -> dict | None:
        try:
            return await queen.job(job["id"])
        except AssertionError:  # 503 while the store is away
            return None

    done = await queen.wait_for(job_or_none, lambda j: j is not None and j["status"] in FINAL,
                                "the job to end after the store came back", timeout=60)
    assert done["status"] == "passed"
    events = await queen.events(job["id"])
    stored = output_lines(events, "job:cmd:stdout")
    assert stored == [f"line {i}" for i in range(1, lines + 1)]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    new_pid = int((queen.tmp / "queen" / "store" / "nx-27017.pid").read_text())
    assert new_pid != pid and "starting it again" in queen.queen.logs()
    print(f"\nkilled the store (pid {pid}) mid-job; it came back as pid {new_pid}; "
          f"{lines} lines printed, {len(stored)} stored, each once")


async def test_queen_killed_while_a_job_prints_the_drone_holds_output_on_disk_and_loses_none(queen: Cluster) -> None:
    # A small memory allowance so the held output must spill to disk.
    drone = await queen.add_drone("d1", env={"APIARY_DRONE_OUTBOX_MEMORY_BYTES": "4096",
                                             "APIARY_DRONE_OUTPUT_FLUSH_MS": "1"})
    lines = 3000
    await queen.create_pipeline_repo("app", f"""stages: [{{name: s, steps: [
  'i=1; while [ $i -le {lines} ]; do echo "line $i of the output held while the queen is away"; i=$((i+1)); sleep 0.001; done']}}]""")
    job = await queen.trigger("app")
    await started_on(queen, job["id"], "line 20 of the output held while the queen is away")
    assert queen.queen is not None
    await queen.queen.stop(signal.SIGKILL)
    await asyncio.sleep(2)  # the job goes on printing; the drone holds what it says
    await queen.start_queen()
    done = await queen.wait_job(job["id"], timeout=60)
    assert done["status"] == "passed"
    events = await queen.events(job["id"])
    stored = output_lines(events, "job:cmd:stdout")
    assert stored == [f"line {i} of the output held while the queen is away" for i in range(1, lines + 1)]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert "holding further events on disk" in drone.logs()
    await queen.wait_for(lambda: _spill_files(queen), lambda files: files == [], "the spill file to go")
    print(f"\nkilled the queen for 2 s mid-job; the drone spilled to disk; {lines} lines printed, "
          f"{len(stored)} stored, each once")


async def _spill_files(queen: Cluster) -> list[str]:
    outbox = queen.tmp / "drones" / "d1" / "outbox"
    return sorted(p.name for p in outbox.iterdir()) if outbox.exists() else []


async def test_a_paused_only_drone_runs_the_retry_itself_and_the_job_passes(queen: Cluster, tmp_path: Path) -> None:
    # ../shared/cases/paused-drone-job-ends-cancelled: the cancel of the stale copy names attempt 1,
    # so attempt 2, sent back to the same drone, runs.
    only = await queen.add_drone("only")
    flag = tmp_path / "flag"
    await queen.create_pipeline_repo("app", f"""stages: [{{name: s, steps: [
  'if [ -e {flag} ]; then echo "second attempt"; else touch {flag}; echo "first attempt"; sleep 3; fi']}}]""")
    job = await queen.trigger("app")
    await started_on(queen, job["id"], "first attempt")
    assert only.proc is not None
    only.proc.send_signal(signal.SIGSTOP)
    try:
        await queen.wait_for(lambda: queen.job(job["id"]), lambda j: j["status"] == "queued",
                             "the queen to write the paused drone's attempt off", timeout=15)
    finally:
        only.proc.send_signal(signal.SIGCONT)
    done = await queen.wait_job(job["id"], timeout=60)
    assert (done["status"], done["drone"], done["attempts"]) == ("passed", "only", 2), (done, queen.queen.stderr.read_text()[-5000:])
    assert "was lost" in done["history"]["1"]["reason"]
    lines = output_lines(await queen.events(job["id"]), "job:cmd:stdout")
    assert lines == ["first attempt", "second attempt"]
    print("\npaused the only drone past the timeout; attempt 2 ran on it and passed")


async def test_apiary_up_stopped_with_ctrl_c_mid_job_runs_the_job_again_when_it_returns(tmp_path: Path) -> None:
    data, work, flag = tmp_path / "data", tmp_path / "work", tmp_path / "flag"
    args = ["up", "--data-dir", str(data), "--http-port", "0", "--drone-bind", "tcp://127.0.0.1:*",
            "--work-dir", str(work)]
    up = Proc("up", args, tmp_path / "logs", _env())
    await up.start()
    cluster = Cluster(tmp_path / "client")
    cluster.http = aiohttp.ClientSession()
    try:
        cluster.api = (await up.wait_output(r"API:\s+(\S+)")).group(1)
        port = cluster.api.rsplit(":", 1)[1].split("/")[0]
        await cluster.create_pipeline_repo("app", pipeline(flag))
        job = await cluster.trigger("app")
        await started_on(cluster, job["id"], "first attempt")
        assert await up.stop(signal.SIGINT) is not None  # Ctrl-C
        up.args = ["up", "--data-dir", str(data), "--http-port", port, "--drone-bind", "tcp://127.0.0.1:*",
                   "--work-dir", str(work)]
        await up.start()
        await up.wait_output(r"API:\s+(\S+)")
        done = await cluster.wait_job(job["id"], timeout=60)
    finally:
        await cluster.http.close()
        await up.stop()
    # Nobody cancelled it: the stopped attempt is retried, and the job passes.
    assert (done["status"], done["attempts"]) == ("passed", 2), done
    assert done["history"]["1"]["reason"] in ("drone local: stopped while the job ran",
                                              "drone local no longer runs this job (it restarted)")
    print(f"\napiary up stopped with SIGINT mid-job and started again: attempt 1 {done['history']['1']['reason']!r}; "
          "attempt 2 passed")


async def test_a_job_sent_to_a_drone_that_pauses_before_starting_it_still_runs(queen: Cluster) -> None:
    only = await queen.add_drone("only")
    await queen.create_pipeline_repo("app", "stages: [{name: s, steps: ['echo ran']}]")
    assert only.proc is not None
    only.proc.send_signal(signal.SIGSTOP)
    try:
        job = await queen.trigger("app")  # dispatched to the paused drone, which never says it started
        await queen.wait_for(lambda: queen.job(job["id"]), lambda j: j["status"] == "queued",
                             "the queen to take the job back from the paused drone", timeout=15)
    finally:
        only.proc.send_signal(signal.SIGCONT)
    done = await queen.wait_job(job["id"], timeout=60)
    assert (done["status"], done["drone"]) == ("passed", "only"), done
    assert output_lines(await queen.events(job["id"]), "job:cmd:stdout") == ["ran"]
    # Listed, but never started there: not counted against max_attempts.
    assert [r.get("counted") for r in (done.get("history") or {}).values()] in ([False], [0]), done
    print(f"\na job dispatched to a drone paused before it started ran once it was back (attempt {done['attempts']})")


async def test_a_cancel_while_the_drone_is_away_ends_the_job_cancelled_not_retried(queen: Cluster) -> None:
    only = await queen.add_drone("only")
    await queen.create_pipeline_repo("app", "stages: [{name: s, steps: ['echo started; sleep 30']}]")
    job = await queen.trigger("app")
    await started_on(queen, job["id"], "started")
    assert only.proc is not None
    only.proc.send_signal(signal.SIGSTOP)
    try:
        status, body = await queen.request("POST", f"/jobs/{job['id']}/cancel")
        assert status in (200, 202), body
        done = await queen.wait_job(job["id"], timeout=20)
    finally:
        only.proc.send_signal(signal.SIGCONT)
    assert done["status"] == "cancelled" and done["attempts"] == 1, done
    await asyncio.sleep(2)  # the drone returns: nothing runs again
    assert (await queen.job(job["id"]))["status"] == "cancelled"
    print("\ncancelled while the only drone was paused: the job ended cancelled, not retried")


async def test_a_drone_stopped_mid_job_costs_the_job_one_attempt(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.start_queen()
    first = await cluster.add_drone("first")
    await cluster.create_pipeline_repo("app", pipeline(tmp_path / "flag"))
    job = await cluster.trigger("app")
    await started_on(cluster, job["id"], "first attempt")
    await cluster.add_drone("second")
    await first.stop(signal.SIGTERM)
    done = await cluster.wait_job(job["id"], timeout=60)
    assert (done["status"], done["drone"], done["attempts"]) == ("passed", "second", 2), (done, cluster.all_logs())
    assert list(done["history"]) == ["1"] and done["history"]["1"]["reason"] == "drone first: stopped while the job ran"
    # Nobody cancelled it: the first attempt's drone says why it stopped.
    said = [e["text"] for e in await cluster.events(job["id"]) if e["type"] == "job:stderr" and e["attempt"] == 1]
    assert "job stopped: the drone is stopping\n" in said and "job cancelled\n" not in said, said
    print("\na drone stopped mid-job (SIGTERM): one attempt used, the job passed on the other drone")


async def test_a_cancel_heard_again_after_a_pause_still_lets_the_cleanup_run(queen: Cluster) -> None:
    only = await queen.add_drone("only")
    await queen.create_pipeline_repo("app", """
stages: [{name: s, steps: ['echo started; for i in $(seq 1 100); do sleep 0.1; done']}]
cleanup: ['echo cleanup-begins; sleep 0.5; echo cleanup-ends']
""")
    job = await queen.trigger("app")
    await started_on(queen, job["id"], "started")
    assert only.proc is not None
    only.proc.send_signal(signal.SIGSTOP)
    try:
        await queen.request("POST", f"/jobs/{job['id']}/cancel")
        await asyncio.sleep(3)  # past the heartbeat timeout: the queen hears nothing, then ends the job here
    finally:
        only.proc.send_signal(signal.SIGCONT)
    # Back, the drone hears the cancel from several places (the one that waited, the queen's reconciling):
    # one cancel all the same, so the cleanup runs to its end.
    await queen.wait_for(lambda: queen.events(job["id"]),
                         lambda evs: "cleanup-ends" in output_lines(evs, "job:cmd:stdout"),
                         "the cleanup to finish", timeout=30)
    assert (await queen.job(job["id"]))["status"] == "cancelled"
    print("\ncancelled during a long pause of the drone: the job ended cancelled and its cleanup ran to its end")

