"""A job's limits on the drone: its log stops at log_max_bytes with one marker; its workspace may not
grow past workspace_max_bytes. A JobRun in this process (its commands are real processes), and a real drone;
the pieces alone: tests/unit/test_limits.py."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from apiary.core.pipeline import parse_pipeline
from apiary.core.protocol import Msg
from apiary.drone.executor import JobRun
from apiary.drone.limits import JobLimits
from tests.cluster import Cluster
from tests.unit.test_limits import MARK

# -- a JobRun in this process ------------------------------------------------------------

async def run_job(tmp_path: Path, pipeline: dict[str, Any], limits: JobLimits) -> tuple[str, list[tuple[Msg, dict]]]:
    events: list[tuple[Msg, dict[str, Any]]] = []
    workspace = tmp_path / "ws"
    workspace.mkdir(parents=True)
    job = {"id": "job1", "number": 1, "type": "TEST", "repo": {"name": "r"}, "ref": {"branch": "main"},
           "pipeline": parse_pipeline(pipeline)}
    run = JobRun(job, workspace, lambda msg, fields: events.append((msg, fields)), {"PATH": os.environ["PATH"]},
                 flush_after=0.005, chunk_bytes=65536, private_dir=None, limits=limits)
    return await run.run(), events


def output(events: list[tuple[Msg, dict]]) -> str:
    return "".join(f["text"] for m, f in events if m in (Msg.JOB_CMD_STDOUT, Msg.JOB_CMD_STDERR))


def said(events: list[tuple[Msg, dict]]) -> str:
    return "".join(f["text"] for m, f in events if m is Msg.JOB_STDERR)


async def test_output_past_the_cap_is_dropped_the_commands_run_on_and_their_codes_count(tmp_path: Path) -> None:
    steps = ["head -c 300000 /dev/zero | tr '\\0' x", "echo still running >&2", "true"]
    status, events = await run_job(tmp_path, {"stages": [{"name": "s", "steps": steps}]}, JobLimits(50_000))
    assert status == "passed"
    assert len(output(events).encode()) == 50_000 and output(events) == "x" * 50_000
    assert said(events).count(MARK) == 1 and "more than 50000 bytes" in said(events)
    assert [f["exitCode"] for m, f in events if m is Msg.JOB_CMD_DONE] == [0, 0, 0]
    status, events = await run_job(tmp_path / "2", {"stages": [{"name": "s", "steps": [
        "head -c 300000 /dev/zero; exit 3"]}]}, JobLimits(1000))
    assert status == "failed" and said(events).count(MARK) == 1


async def test_output_dropped_past_the_cap_still_keeps_the_output_timeout_away(tmp_path: Path) -> None:
    loop = "for i in $(seq 25); do head -c 20000 /dev/zero; sleep 0.1; done"
    status, events = await run_job(tmp_path, {"output_timeout": 1, "stages": [{"name": "s", "steps": [loop]}]},
                                   JobLimits(1000))
    assert status == "passed", said(events)
    assert said(events).count(MARK) == 1


async def test_a_workspace_past_its_cap_fails_the_job_and_kills_its_commands(tmp_path: Path) -> None:
    pipeline = {"stages": [{"name": "s", "steps": ["head -c 3000000 /dev/urandom > big; sleep 60"]}],
                "on_failure": ["echo hook ran"], "cleanup": ["rm big"]}
    started = time.monotonic()
    status, events = await run_job(tmp_path, pipeline, JobLimits(workspace_max_bytes=1_000_000, check_every=0.2))
    took = time.monotonic() - started
    print(f"\nworkspace cap: job stopped after {took:.1f} s")
    assert status == "failed" and took < 15
    done = [f for m, f in events if m is Msg.JOB_DONE][0]
    assert done["error"] == "workspace over 1000000 bytes (cap workspace_max_bytes)"
    assert "apiary: workspace over 1000000 bytes (cap workspace_max_bytes); stopped" in said(events)
    codes = [f["exitCode"] for m, f in events if m is Msg.JOB_CMD_DONE]
    assert codes[0] < 0 and codes[1:] == [0, 0]  # the step killed; the hook and the cleanup ran
    assert "hook ran" in output(events) and not (tmp_path / "ws" / "big").exists()


async def test_without_limits_nothing_is_cut_or_measured(tmp_path: Path) -> None:
    status, events = await run_job(tmp_path, {"stages": [{"name": "s", "steps": [
        "head -c 200000 /dev/zero | tr '\\0' y; head -c 2000000 /dev/zero > big"]}]}, JobLimits())
    assert status == "passed" and len(output(events)) == 200_000 and MARK not in said(events)


# -- a real drone ---------------------------------------------------------------------------

async def test_a_drone_keeps_a_jobs_log_under_log_max_bytes(queen: Cluster) -> None:
    await queen.add_drone("d1", env={"APIARY_DRONE_LOG_MAX_BYTES": "100000"})
    await queen.create_repo("loud", ("talk", ["seq 1 200000", "echo done >&2"]))
    job = await queen.wait_job((await queen.trigger("loud"))["id"])
    events = await queen.events(job["id"])
    stored = "".join(e["text"] for e in events if e["type"] in ("job:cmd:stdout", "job:cmd:stderr"))
    markers = [e["text"] for e in events if e["type"] == "job:stderr" and MARK in e["text"]]
    size, printed = len(stored.encode()), sum(len(str(i)) + 1 for i in range(1, 200_001))
    print(f"\nlog cap: {size} bytes stored of {printed} printed")
    assert job["status"] == "passed" and [c["exitCode"] for c in job["commands"]] == [0, 0]
    assert size == 100_000
    assert stored[:6] == "1\n2\n3\n" and stored[-10:] != "200000\ndone\n"[-10:]
    assert markers == [f"\n{MARK}: this job printed more than 100000 bytes; the rest is not kept (log_max_bytes)\n"]


async def test_a_drone_fails_a_job_whose_workspace_outgrows_workspace_max_bytes(queen: Cluster) -> None:
    await queen.add_drone("d1", env={"APIARY_DRONE_WORKSPACE_MAX_BYTES": "2000000"})
    await queen.create_repo("fat", ("fill", ["head -c 5000000 /dev/urandom > blob", "sleep 60"]))
    started = time.monotonic()
    job = await queen.wait_job((await queen.trigger("fat"))["id"], timeout=30)
    print(f"\nworkspace cap: job ended {time.monotonic() - started:.1f} s after the trigger")
    assert job["status"] == "failed", job
    assert job["error"] == "workspace over 2000000 bytes (cap workspace_max_bytes)"
    assert [c["exitCode"] for c in job["commands"]][0] == 0 and job["commands"][-1]["exitCode"] < 0
