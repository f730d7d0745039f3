"""The pipeline model run by real drones: phases, stages, needs, hooks, deploy, parameters."""

from __future__ import annotations

import json
import sys

from tests.cluster import Cluster, output_lines

HOOKS = """
on_start: [echo job-start]
on_success: [echo job-success]
on_failure: [echo job-failure]
environment: [echo env-phase]
prepare: [echo prepare-phase]
cleanup: [echo cleanup-phase]
stages:
  - name: build
    on_start: [echo build-start]
    on_success: [echo build-success]
    on_failure: [echo build-failure]
    steps:
      - echo building
      - run: exit 4
        ignore_exit_code: true
  - name: test
    needs: [build]
    on_start: [echo test-start]
    on_success: [echo test-success]
    on_failure: [echo test-failure; exit 9]
    steps: ["echo testing", "exit $FAIL", "echo never"]
"""


def lines(events: list[dict]) -> list[str]:
    return output_lines(events, "job:cmd:stdout")


async def test_phases_hooks_and_stages_run_in_the_documented_order(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("hooks", HOOKS + "parameters:\n  FAIL: {default: '0'}\n")

    passed = await queen.wait_job((await queen.trigger("hooks"))["id"])
    assert passed["status"] == "passed"
    assert lines(await queen.events(passed["id"])) == [
        "job-start", "env-phase", "prepare-phase", "build-start", "building", "build-success",
        "test-start", "testing", "never", "test-success", "job-success", "cleanup-phase"]
    assert passed["phases"]["test"]["code"] == 0

    failed = await queen.wait_job((await queen.trigger("hooks", parameters={"FAIL": "3"}))["id"])
    assert failed["status"] == "failed"
    assert lines(await queen.events(failed["id"])) == [
        "job-start", "env-phase", "prepare-phase", "build-start", "building", "build-success",
        "test-start", "testing", "test-failure", "job-failure", "cleanup-phase"]
    # The hook's own exit 9 changes nothing; the failing step's code is what fails the stage.
    by_title = {c["title"]: c for c in failed["commands"]}
    assert by_title["exit $FAIL"]["exitCode"] == 3 and by_title["exit $FAIL"]["stage"] == "test"
    assert by_title["echo test-failure; exit 9"]["hook"] == "on_failure"
    assert by_title["exit 4"]["exitCode"] == 4  # ignored
    assert failed["phases"]["test"]["code"] != 0


async def test_independent_stages_overlap_and_needs_wait(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("par", """
parallel: 2
stages:
  - {name: a, steps: [sleep 0.6]}
  - {name: b, steps: [sleep 0.6]}
  - {name: c, steps: [sleep 0.6]}
  - {name: after, needs: [a, b], steps: [echo done]}
""")
    job = await queen.wait_job((await queen.trigger("par"))["id"])
    assert job["status"] == "passed"
    cmds = {c["stage"]: c for c in job["commands"]}
    ends = {s: cmds[s]["started"] + cmds[s]["duration"] for s in cmds}
    # a and b ran at the same time (parallel: 2) ...
    assert cmds["b"]["started"] < ends["a"] and cmds["a"]["started"] < ends["b"]
    # ... c waited for a free slot, and `after` for both of its needs.
    assert cmds["c"]["started"] >= min(ends["a"], ends["b"]) - 0.05
    assert cmds["after"]["started"] >= max(ends["a"], ends["b"]) - 0.05


async def test_a_failed_stage_skips_the_stages_that_need_it(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("skip", """
stages:
  - {name: a, steps: [exit 1]}
  - {name: b, needs: [a], steps: [echo never]}
""")
    job = await queen.wait_job((await queen.trigger("skip"))["id"])
    assert job["status"] == "failed"
    events = await queen.events(job["id"])
    assert "never" not in lines(events)
    assert any("stage b skipped" in e.get("text", "") for e in events)


DEPLOY = """
stages:
  - {name: test, steps: ["echo test; exit $TEST_EXIT"]}
  - {name: ship, deploy: true, needs: [test], steps: [echo shipping]}
parameters:
  TEST_EXIT: {default: "0"}
"""


async def test_deploy_stages_run_only_for_deploy_jobs_and_only_after_tests_pass(queen: Cluster) -> None:
    await queen.add_drone("d1", capacity=3)
    await queen.create_pipeline_repo("app", DEPLOY)

    async def run(**body: object) -> tuple[dict, list[str]]:
        job = await queen.wait_job((await queen.trigger("app", **body))["id"])
        return job, lines(await queen.events(job["id"]))

    job, out = await run(type="TEST")
    assert out == ["test"] and job["status"] == "passed" and "deploy" not in job["phases"]
    job, out = await run(type="TEST_DEPLOY")
    assert out == ["test", "shipping"] and job["phases"]["deploy"]["code"] == 0 and job["deployed"]
    job, out = await run(type="TEST_DEPLOY", parameters={"TEST_EXIT": "1"})
    assert out == ["test"] and job["status"] == "failed" and job["phases"]["deploy"]["state"] == "skipped"
    job, out = await run(type="DEPLOY")
    assert out == ["shipping"] and job["status"] == "passed"


async def test_parameters_and_env_reach_the_steps_and_a_missing_one_is_refused(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("params", """
env: {GREETING: hello, NUMBER: 7}
parameters:
  TARGET: {required: true}
  MODE: {default: fast}
stages:
  - name: show
    env: {STAGE_ONLY: "yes"}
    steps: ["echo $GREETING $NUMBER $TARGET $MODE $STAGE_ONLY"]
""")
    status, answer = await queen.request("POST", "/repos/params/jobs", {})
    assert status == 400 and answer["field"] == "parameters.TARGET" and "required" in answer["error"]
    status, answer = await queen.request("POST", "/repos/params/jobs", {"parameters": {"TARGET": "x", "MDOE": "y"}})
    assert status == 400 and answer["field"] == "parameters.MDOE"
    assert (await queen.get("/repos/params/jobs"))["jobs"] == []

    job = await queen.wait_job((await queen.trigger("params", parameters={"TARGET": "moon"}))["id"])
    assert job["parameters"] == {"TARGET": "moon", "MODE": "fast"}
    assert lines(await queen.events(job["id"])) == ["hello 7 moon fast yes"]


async def test_an_invalid_stored_pipeline_is_refused_naming_line_and_field(queen: Cluster) -> None:
    bad = "stages:\n  - name: a\n    steps: [x]\n  - name: b\n    needs: [c]\n    steps: [y]\n"
    status, answer = await queen.request("POST", "/repos", {"name": "bad", "pipeline": bad})
    assert status == 400
    assert "line 5" in answer["error"] and "unknown stage 'c'" in answer["error"], answer
    assert (await queen.get("/repos"))["repos"] == []


async def test_resource_usage_is_reported_per_command_and_job(queen: Cluster) -> None:
    await queen.add_drone("d1")
    grow = f"{sys.executable} -c 'b = bytearray(60 * 1024 * 1024); import time; time.sleep(1.2)'"
    spin = f"{sys.executable} -c 'import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass'"
    # Two stages at once, each holding 60 MB: the job's peak is their sum.
    await queen.create_pipeline_repo("mem", f"""
stages:
  - {{name: a, steps: [{json.dumps(grow)}]}}
  - {{name: b, steps: [{json.dumps(grow)}]}}
  - {{name: c, needs: [a, b], steps: [{json.dumps(spin)}]}}
""")
    job = await queen.wait_job((await queen.trigger("mem"))["id"])
    assert job["status"] == "passed", job
    by_stage = {c["stage"]: c["usage"] for c in job["commands"]}
    assert by_stage["a"]["peak_rss"] >= 55 * 2**20 and by_stage["b"]["peak_rss"] >= 55 * 2**20
    assert by_stage["a"]["peak_rss"] < 100 * 2**20
    assert job["usage"]["peak_rss"] >= 110 * 2**20
    assert by_stage["c"]["cpu_seconds"] >= 0.3
    assert job["usage"]["cpu_seconds"] >= by_stage["c"]["cpu_seconds"]
