"""A job end to end: triggered through the API, run by a real drone, stored, readable."""

from __future__ import annotations

import asyncio
import signal

from tests.cluster import Cluster, output_lines


async def test_job_runs_end_to_end_and_is_stored(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", """
parameters: {GREETING: {required: true}}
stages:
  - {name: build, steps: ["echo building; echo warn >&2"]}
  - {name: test, needs: [build], steps: ["echo $GREETING", "exit 3", "echo never"]}
""")
    job = await queen.trigger("app", branch="feature-x", parameters={"GREETING": "hi there"},
                              trigger={"source": "UI", "author": "ada", "message": "try it"})
    assert job["status"] in ("queued", "dispatched") and job["number"] == 1

    done = await queen.wait_job(job["id"])

    assert done["status"] == "failed"
    assert done["drone"] == "d1"
    assert done["ref"] == {"branch": "feature-x"}
    assert done["trigger"]["source"] == {"type": "UI"} and done["trigger"]["author"] == {"name": "ada"}
    assert done["created"] <= done["dispatched"] <= done["started"] <= done["finished"]
    assert [(c["num"], c["stage"], c["command"], c["exitCode"]) for c in done["commands"]] == [
        (1, "build", "echo building; echo warn >&2", 0), (2, "test", "echo $GREETING", 0), (3, "test", "exit 3", 3)]
    assert all(c["duration"] >= 0 for c in done["commands"])
    assert done["phases"]["test"]["code"] == 3

    events = await queen.events(job["id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "job:started" and kinds[-2:] == ["job:tested", "job:done"]
    assert kinds.count("job:cmd:start") == kinds.count("job:cmd:done") == 3
    assert output_lines(events, "job:cmd:stdout") == ["building", "hi there"]
    assert output_lines(events, "job:cmd:stderr") == ["warn"]
    assert events[-1]["result"] == "failed"

    listed = await queen.get("/repos/app/jobs")
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    assert (await queen.get("/repos/app/jobs?branch=main"))["jobs"] == []


async def test_ten_thousand_interleaved_lines_arrive_complete_and_in_order(queen: Cluster) -> None:
    await queen.add_drone("d1")
    loop = 'i=0; while [ $i -lt 5000 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done'
    await queen.create_repo("noisy", ("print", [loop]))
    job = await queen.trigger("noisy")

    assert (await queen.wait_job(job["id"]))["status"] == "passed"

    events = await queen.events(job["id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert output_lines(events, "job:cmd:stdout") == [f"out {i}" for i in range(5000)]
    assert output_lines(events, "job:cmd:stderr") == [f"err {i}" for i in range(5000)]
    # Coalesced: fewer events than lines (how many fewer depends on how fast the machine is at the time).
    assert len(events) < 10_000


async def test_jobs_wait_in_the_queue_while_every_drone_is_full(queen: Cluster) -> None:
    await queen.add_drone("only", capacity=1)
    await queen.create_repo("slow", ("wait", ["sleep 0.4"]))
    jobs = [await queen.trigger("slow") for _ in range(3)]

    first = await queen.wait_job(jobs[0]["id"], {"running"})
    waiting = [await queen.job(j["id"]) for j in jobs[1:]]
    assert first["drone"] == "only"
    assert [j["status"] for j in waiting] == ["queued", "queued"]

    done = [await queen.wait_job(j["id"]) for j in jobs]
    assert [j["status"] for j in done] == ["passed"] * 3
    # One slot: each started only after the one before it finished, oldest first.
    for before, after in zip(done, done[1:]):
        assert after["started"] >= before["finished"]


async def test_queued_job_survives_queen_restart(queen: Cluster) -> None:
    await queen.create_repo("app", ("test", ["echo survived"]))
    job = await queen.trigger("app")
    assert (await queen.job(job["id"]))["status"] == "queued"

    await queen.queen.stop()
    await queen.start_queen()
    assert (await queen.job(job["id"]))["status"] == "queued"
    await queen.add_drone("late")

    done = await queen.wait_job(job["id"])
    assert done["status"] == "passed" and done["drone"] == "late"
    assert output_lines(await queen.events(job["id"]), "job:cmd:stdout") == ["survived"]


async def test_drone_resends_unacked_events_after_queen_restart(queen: Cluster) -> None:
    await queen.add_drone("d1")
    # About 3 s of output, a line every few ms, across the queen's death and return.
    script = 'i=1; while [ $i -le 600 ]; do echo "line $i"; sleep 0.005; i=$((i+1)); done'
    await queen.create_repo("long", ("print", [script]))
    job = await queen.trigger("long")
    await queen.wait_for(lambda: queen.events(job["id"]),
                         lambda evs: len(output_lines(evs, "job:cmd:stdout")) >= 20, "some output stored")

    await queen.queen.stop(signal.SIGKILL)  # no goodbye, nothing flushed
    await asyncio.sleep(0.8)  # the job keeps printing to a drone with no queen
    await queen.start_queen()

    done = await queen.wait_job(job["id"])
    assert done["status"] == "passed"
    events = await queen.events(job["id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert output_lines(events, "job:cmd:stdout") == [f"line {i}" for i in range(1, 601)]
    assert [e["type"] for e in events].count("job:done") == 1
