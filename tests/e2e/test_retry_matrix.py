"""Step retry and matrices through a real queen and drone: a flaky step passes on its second attempt with both
attempts' output kept, `when` chooses what is retried, a step's own timeout is retried; a matrix stage and a
job-level matrix run every cell with its values in the environment; the job page shows attempts and cells."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.browser import browser, page  # noqa: F401  (fixtures)
from tests.cluster import Cluster
from tests.e2e.test_conditions import local_repo
from tests.e2e.test_sandbox import SANDBOXED

SHOTS = Path("/tmp/shots")
# Fails the first time (a file in the workspace counts the attempts), passes the second.
FLAKY = ("n=$(cat .tries 2>/dev/null || echo 0); n=$((n+1)); echo $n > .tries; echo \"attempt $n\"; "
         "[ $n -ge 2 ] || { echo \"failing on purpose\" >&2; exit 1; }")

RETRY = f"""
stages:
  - name: flaky
    steps:
      - run: '{FLAKY}'
        title: flaky test
        timeout: 1m
        retry: {{attempts: 3, when: [exit 1, timeout]}}
      - echo after
"""


async def _output(queen: Cluster, job_id: str) -> dict[int, str]:
    """Each command's output (stdout and stderr) by its number."""
    out: dict[int, str] = {}
    for e in await queen.events(job_id):
        if e["type"] in ("job:cmd:stdout", "job:cmd:stderr"):
            out[e["num"]] = out.get(e["num"], "") + e["text"]
    return out


def _by_name(outcome: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in outcome["stages"]}


async def _run(queen: Cluster, name: str, pipeline: str) -> tuple[dict[str, Any], dict[str, Any]]:
    await queen.create_pipeline_repo(name, pipeline)
    job = await queen.trigger(name)
    done = await queen.wait_job(job["id"])
    return done, await queen.get(f"/jobs/{job['id']}/outcome")


async def test_a_flaky_step_passes_on_its_second_attempt_with_both_attempts_kept(queen: Cluster) -> None:
    await queen.add_drone("d1")
    done, outcome = await _run(queen, "flaky", RETRY)
    assert done["status"] == "passed", done.get("error")
    commands = {c["num"]: c for c in done["commands"]}
    assert [(c["title"], c["exitCode"], c.get("retry")) for c in commands.values()] == [
        ("flaky test", 1, {"attempt": 1, "of": 3}), ("flaky test", 0, {"attempt": 2, "of": 3}),
        ("echo after", 0, None)]
    output = await _output(queen, done["id"])
    first, second = sorted(commands)[:2]
    assert "attempt 1" in output[first] and "failing on purpose" in output[first]
    assert "attempt 2" in output[second] and "failing" not in output[second]
    stage = _by_name(outcome)["flaky"]
    assert stage["status"] == "passed" and stage["flaky"] is True and outcome["failure"] is None
    assert [(c["status"], c["retried"], c["flaky"]) for c in stage["commands"]] == [
        ("failed", True, False), ("passed", False, True), ("passed", False, False)]
    said = "".join(e["text"] for e in await queen.events(done["id"]) if e["type"] == "job:stderr")
    assert "apiary: flaky test exited 1 (attempt 1 of 3); running it again" in said


async def test_retry_when_exit_1_does_not_retry_exit_2(queen: Cluster) -> None:
    await queen.add_drone("d1")
    done, outcome = await _run(queen, "exit2", """
stages:
  - name: t
    steps:
      - run: echo once >> count; exit 2
        retry: {attempts: 3, when: [exit 1]}
""")
    assert done["status"] == "failed"
    assert [(c["exitCode"], c["retry"]) for c in done["commands"]] == [(2, {"attempt": 1, "of": 3})]
    assert outcome["failure"]["exitCode"] == 2 and _by_name(outcome)["t"]["flaky"] is False


async def test_a_step_stopped_by_its_own_timeout_is_retried(queen: Cluster) -> None:
    await queen.add_drone("d1")
    done, outcome = await _run(queen, "slow", """
stages:
  - name: t
    steps:
      - run: 'if [ -f .slow ]; then echo quick this time; else touch .slow; echo slow; sleep 60; fi'
        title: sometimes slow
        timeout: 1s
        retry: {attempts: 2, when: [timeout]}
""")
    assert done["status"] == "passed", done.get("error")
    first, second = done["commands"]
    assert (first["exitCode"], first.get("timedOut"), second["exitCode"]) == (124, True, 0)
    output = await _output(queen, done["id"])
    assert "apiary: the step timed out after 1 s; stopped" in output[first["num"]]
    assert "quick this time" in output[second["num"]]
    assert [c["timed_out"] for c in _by_name(outcome)["t"]["commands"]] == [True, False]

    # Without a retry, a step's own timeout fails the job with the timeout's exit code.
    done, outcome = await _run(queen, "slower", "stages: [{name: t, steps: [{run: sleep 60, timeout: 1s}]}]")
    assert done["status"] == "failed" and outcome["failure"]["exitCode"] == 124

    # A command that exits 124 by itself did not time out: `when: [timeout]` does not retry it.
    done, _ = await _run(queen, "own124", "stages: [{name: t, steps: [{run: exit 124, timeout: 30s, "
                                          "retry: {attempts: 2, when: [timeout]}}]}]")
    assert done["status"] == "failed" and [(c["exitCode"], c.get("timedOut")) for c in done["commands"]] == [(124, None)]


async def test_in_the_sandbox_a_steps_timeout_stops_it_with_its_traps_and_the_retry_runs(queen: Cluster) -> None:
    await queen.add_drone("d1", env={**SANDBOXED, "APIARY_DRONE_KILL_GRACE": "5"})
    done, _ = await _run(queen, "boxed", """
stages:
  - name: t
    steps:
      - run: 'if [ -f .slow ]; then echo quick; else touch .slow; trap "echo got-TERM; exit 143" TERM; while true; do sleep 0.1; done; fi'
        timeout: 1s
        retry: {attempts: 2, when: [timeout]}
""")
    assert done["status"] == "passed", done.get("error")
    first, second = done["commands"]
    assert (first["exitCode"], first.get("timedOut"), second["exitCode"]) == (124, True, 0)
    output = await _output(queen, done["id"])
    assert "got-TERM" in output[first["num"]] and "quick" in output[second["num"]]


MATRIX = """
stages:
  - name: build
    steps: ["echo built > built.txt"]
  - name: test
    needs: [build]
    matrix:
      python: ["3.11", "3.12", 3.10]
      db: [sqlite, postgres]
      exclude: [{python: "3.11", db: postgres}]
      include: [{python: "3.13", db: sqlite}]
    steps: ['echo "cell python=$python db=$db built=$(cat built.txt)"']
  - name: report
    needs: [test]
    steps: ["echo all cells done"]
"""
CELLS = ["test (3.11, sqlite)", "test (3.12, sqlite)", "test (3.12, postgres)", "test (3.10, sqlite)",
         "test (3.10, postgres)", "test (3.13, sqlite)"]


async def test_a_matrix_stage_runs_every_cell_with_its_values(queen: Cluster) -> None:
    await queen.add_drone("d1")
    done, outcome = await _run(queen, "cells", MATRIX)
    assert done["status"] == "passed", done.get("error")
    stages = _by_name(outcome)
    assert list(stages) == ["build", *CELLS, "report"]
    assert all(s["status"] == "passed" for s in stages.values())
    assert stages["test (3.10, postgres)"]["matrix"] == {"group": "test", "values": {"python": "3.10", "db": "postgres"}}
    output = await _output(queen, done["id"])
    by_stage = {c["stage"]: output.get(c["num"], "") for c in done["commands"]}
    for name in CELLS:
        python, db = name[len("test ("):-1].split(", ")
        assert by_stage[name].strip() == f"cell python={python} db={db} built=built"
    # `needs: [test]`: the report ran after every cell
    nums = {c["stage"]: c["num"] for c in done["commands"]}
    assert nums["report"] > max(nums[name] for name in CELLS)


async def test_a_matrixs_cells_run_at_once_up_to_parallel(queen: Cluster) -> None:
    # A barrier: each cell waits until every cell has started; run one after another, they would time out.
    await queen.add_drone("d1")
    done, outcome = await _run(queen, "together", """
parallel: 3
stages:
  - name: t
    matrix: {cell: [a, b, c]}
    steps:
      - run: 'touch here-$cell; until [ -e here-a ] && [ -e here-b ] && [ -e here-c ]; do sleep 0.05; done'
        timeout: 30s
""")
    assert done["status"] == "passed", done.get("error")
    assert [s["name"] for s in outcome["stages"]] == ["t (a)", "t (b)", "t (c)"]


async def test_a_job_matrix_runs_every_stage_per_cell(queen: Cluster) -> None:
    await queen.add_drone("d1")
    done, outcome = await _run(queen, "jobmatrix", """
matrix:
  os: [linux, bsd]
stages:
  - name: build
    steps: ["echo $os > built-$os"]
  - name: test
    needs: [build]
    steps: ["cat built-$os"]
""")
    assert done["status"] == "passed", done.get("error")
    stages = _by_name(outcome)
    assert {n: s["needs"] for n, s in stages.items()} == {
        "build (linux)": [], "build (bsd)": [], "test (linux)": ["build (linux)"], "test (bsd)": ["build (bsd)"]}
    output = await _output(queen, done["id"])
    assert {c["stage"]: output[c["num"]].strip() for c in done["commands"] if c["stage"].startswith("test")} == {
        "test (linux)": "linux", "test (bsd)": "bsd"}


async def test_a_bad_matrix_or_retry_is_refused_at_trigger_time_naming_line_and_field(queen: Cluster,
                                                                                      tmp_path: Path) -> None:
    bad = MATRIX.replace('exclude: [{python: "3.11", db: postgres}]', 'exclude: [{pyhton: "3.11"}]')
    _, bare, _ = local_repo(tmp_path / "git", {".apiary.yml": bad})
    await queen.request("POST", "/repos", {"name": "bad", "url": bare.as_uri()}, expect=201)
    status, body = await queen.request("POST", "/repos/bad/jobs", {})
    assert status == 400
    assert body["error"].startswith(".apiary.yml, line 10: stages[1].matrix.exclude[0].pyhton: "
                                    "unknown matrix variable 'pyhton' (variables: python, db)")
    # A pipeline kept on the queen is checked when it is saved, the same way.
    status, body = await queen.request("POST", "/repos", {"name": "bad2", "pipeline_source": "queen",
                                                          "pipeline": RETRY.replace("attempts: 3", "attempts: 11")})
    assert status == 400 and "stages[0].steps[0].retry.attempts: must be a whole number from 1 to 10" in body["error"]
    assert (await queen.get("/jobs"))["jobs"] == []  # nothing changed


async def test_the_job_page_shows_attempts_and_cells_grouped(queen: Cluster, page: Page) -> None:  # noqa: F811
    await queen.add_drone("d1", capacity=1)
    flaky, _ = await _run(queen, "flaky", RETRY)
    await page.goto(f"/jobs/{flaky['id']}")
    stage = page.locator('.g-stage[data-stage="flaky"]')
    await expect(stage).to_have_attribute("data-state", "passed")
    await expect(stage.locator(".g-flaky")).to_have_text("flaky: passed on a retry")
    first, second = sorted(c["num"] for c in flaky["commands"])[:2]
    await expect(page.locator(f"#cmd-{first} .cmd-attempt")).to_have_text("attempt 1 of 3")
    await expect(page.locator(f"#cmd-{second} .cmd-attempt")).to_have_text("attempt 2 of 3")
    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=SHOTS / "retry-job.png", full_page=True)

    cells, _ = await _run(queen, "cells", MATRIX)
    await page.goto(f"/jobs/{cells['id']}")
    group = page.locator('.g-group[data-group="test"]')
    await expect(group.locator(".g-stage")).to_have_count(len(CELLS))
    await expect(group.locator(".g-group-name")).to_have_text("test · 6 cells")
    await expect(group.locator('.g-stage[data-stage="test (3.10, postgres)"] .g-name')).to_have_text("3.10, postgres")
    await expect(group.locator(":scope > .g-needs")).to_have_text("after build")  # once, for every cell
    await expect(page.locator('.g-stage[data-stage="report"] .g-needs')).to_have_text("after test")
    await page.screenshot(path=SHOTS / "matrix-job.png", full_page=True)


def test_apiary_run_runs_cells_and_retries_and_says_each_attempt(tmp_path: Path) -> None:
    import subprocess
    import sys
    (tmp_path / ".apiary.yml").write_text("""
stages:
  - name: t
    matrix: {py: ["3.10", "3.12"]}
    steps:
      - run: 'n=$(cat .tries-$py 2>/dev/null || echo 0); n=$((n+1)); echo $n > .tries-$py; echo "py $py try $n"; [ $n -ge 2 ]'
        title: flaky on $py
        retry: 2
""")
    run = subprocess.run([sys.executable, "-m", "apiary.cli", "run", str(tmp_path)], capture_output=True, text=True,
                         check=False, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "py 3.10 try 2" in run.stdout and "py 3.12 try 2" in run.stdout  # 3.10 as written
    assert "▶ [test/t (3.10)] flaky on $py (attempt 2 of 2)" in run.stdout and "Job passed" in run.stdout
