"""Test shards (issue 18, item 3) on a real repository with a small pytest suite, a real queen, two drones and
the store: the list made on the parent's drone, split over shards run as child jobs on both drones, levelled
by the durations the first job's reports recorded, and a failing test in one shard failing the job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from playwright.async_api import Page

from tests.browser import browser, page, shot  # noqa: F401  (fixtures)
from tests.cluster import Cluster
from tests.e2e.test_client import apiary, url
from tests.gitserver import commit, git

PIPELINE = f"""\
parameters:
  BREAK: {{default: "no"}}
reports:
  junit: [junit.xml]
stages:
  - name: build
    steps: ["echo built"]
  - name: test
    needs: [build]
    shards: {{count: 2, tests: "{sys.executable} -m pytest --collect-only -q -p no:cacheprovider tests"}}
    steps:
      - 'echo "shard $APIARY_SHARD_INDEX of $APIARY_SHARD_COUNT: $APIARY_SHARD_TESTS tests"'
      - '{sys.executable} -m pytest -q -p no:cacheprovider --junitxml=junit.xml $(cat "$APIARY_SHARD_FILE")'
  - name: after
    needs: [test]
    steps: ["echo every shard passed"]
"""
EMPTY_LIST = """\
stages:
  - name: test
    shards: {count: 2, tests: "echo; echo '# nothing here'"}
    steps: ["exit 1"]
"""
QUICK = "".join(f"def test_quick_{i}():\n    assert True\n\n\n" for i in range(6))
SLOW = """import os
import time


def test_slow_a():
    time.sleep(1.5)
    assert os.environ.get("BREAK") != "yes", "broken on purpose"


def test_slow_b():
    time.sleep(1.5)
"""


def _repo(root: Path) -> str:
    work = root / "work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    # A committed file where the shards' lists go changes nothing: each shard runs the list the queen gave it.
    commit(work, {".apiary.yml": PIPELINE, "pytest.ini": "[pytest]\n", "tests/test_quick.py": QUICK,
                  "tests/test_slow.py": SLOW, ".apiary/shard-tests.txt": "tests/test_quick.py\n"}, "a small suite")
    bare = root / "suite.git"
    git(root, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", str(bare), "main")
    return bare.as_uri()


def _printed(events: list[dict]) -> str:
    return "".join(e.get("text", "") for e in events if e["type"] == "job:cmd:stdout")


async def test_shards_on_two_drones_levelled_by_past_durations(queen: Cluster, page: Page,  # noqa: F811
                                                                tmp_path: Path) -> None:
    await queen.add_drone("d1")
    await queen.add_drone("d2")
    await queen.request("POST", "/repos", {"name": "suite", "url": _repo(tmp_path / "git")}, expect=201)

    first = await queen.wait_job((await queen.trigger("suite"))["id"], timeout=120)
    assert first["status"] == "passed", (first.get("error"), queen.all_logs())
    kids = [await queen.job(c["job"]) for c in first["children"]]
    assert sorted(c["unit"] for c in first["children"]) == ["test (shard 1 of 2)", "test (shard 2 of 2)"]
    assert {k["drone"] for k in kids} == {"d1", "d2"}  # each shard on a drone of its own
    # Each shard ran its own part of the list, given as a file, and nothing else.
    ran = [_printed(await queen.events(k["id"])) for k in kids]
    assert all("shard " in text and " of 2: " in text for text in ran), ran
    assert sum(k["report"]["tests"] for k in kids) == 8 and all(k["report"]["tests"] > 0 for k in kids), ran
    said = ["".join(e.get("text", "") for e in await queen.events(k["id"]) if e["type"] == "job:stdout") for k in kids]
    assert all("this job's file from the queen: written (the checkout's copy replaced)" in t for t in said), said
    assert "every shard passed" in _printed(await queen.events(first["id"]))
    plan = (await queen.get(f"/jobs/{first['id']}/shards"))["stages"]
    assert [(p["stage"], p["count"], p["tests"], p["known"]) for p in plan] == [("test", 2, 8, 0)]
    assert all(s["real"] is not None and s["status"] == "passed" for s in plan[0]["shards"])
    print(f"\nno history: planned {[s['seconds'] for s in plan[0]['shards']]} s, "
          f"ran {[s['real'] for s in plan[0]['shards']]} s")

    # The second job levels by what the first job's shards reported; one run with a failing test fails the job.
    second = await queen.trigger("suite")
    broken = await queen.trigger("suite", parameters={"BREAK": "yes"})
    await queen.create_pipeline_repo("nolist", EMPTY_LIST)
    nothing = await queen.trigger("nolist")
    await page.goto(f"/jobs/{second['id']}")  # open while it runs: the Shards panel appears and follows it live
    second = await queen.wait_job(second["id"], timeout=120)
    assert second["status"] == "passed", (second.get("error"), queen.all_logs())
    plan = (await queen.get(f"/jobs/{second['id']}/shards"))["stages"][0]
    assert plan["known"] == 8 and plan["history_jobs"] >= 2
    slow = sorted(s["seconds"] for s in plan["shards"])
    assert slow[0] >= 1.5  # one slow test in each shard: levelled by their recorded seconds
    print(f"history: planned {[s['seconds'] for s in plan['shards']]} s (makespan {plan['makespan']} s, "
          f"split by count {plan['even_makespan']} s), ran {[s['real'] for s in plan['shards']]} s")

    broken = await queen.wait_job(broken["id"], timeout=120)
    assert broken["status"] == "failed"
    bad = [c for c in broken["children"] if c["status"] == "failed"]
    assert len(bad) == 1 and broken["error"].startswith(f"{bad[0]['unit']} failed in job #{bad[0]['number']}"), \
        broken["error"]
    assert "broken on purpose" in _printed(await queen.events(bad[0]["job"]))
    # The child that failed it, as a field (a bisect reads a cancelled one as untested, a failed one as bad).
    assert broken["failed_child"] == {"unit": bad[0]["unit"], "job": bad[0]["job"], "number": bad[0]["number"],
                                      "status": "failed"}, broken
    # The shards' test reports add up on the job, each test with the shard job it ran in.
    tests = await queen.get(f"/jobs/{broken['id']}/tests")
    assert tests["report"]["tests"] == 8 and tests["report"]["failed"] == 1 and tests["total"] == 8, tests["report"]
    assert (tests["tests"][0]["status"], tests["tests"][0]["number"]) == ("failed", bad[0]["number"]), tests["tests"][0]
    assert (await queen.job(broken["id"]))["report"]["tests"] == 8
    # Re-run from the failed stage: only the failed shard runs again, with the very list it had.
    _, again = await queen.request("POST", f"/jobs/{broken['id']}/rerun", {"from_failed": True}, expect=201)
    again = await queen.wait_job(again["id"], timeout=120)
    assert again["status"] == "failed" and [c["unit"] for c in again["children"]] == [bad[0]["unit"]], again
    lists = [(await queen.job(j))["resume"]["given"] for j in (bad[0]["job"], again["children"][0]["job"])]
    assert lists[0] == lists[1] and lists[0][0]["text"].count("\n") >= 1
    shown = (await queen.get(f"/jobs/{again['id']}/shards"))["stages"][0]["shards"]
    assert sorted(s["status"] for s in shown) == ["failed", "reused"], shown
    reused = next(s for s in shown if s["status"] == "reused")  # with the job that ran it, not "not made"
    assert reused["number"] == next(c["number"] for c in broken["children"] if c["status"] == "passed"), shown
    counted = (await queen.get(f"/jobs/{again['id']}/tests"))["report"]  # the reused shard's tests count too
    assert counted["tests"] == 8 and counted["failed"] == 1, counted

    nothing = await queen.wait_job(nothing["id"], timeout=120)
    assert nothing["status"] == "failed" and not nothing.get("children"), nothing
    assert nothing["error"].endswith("stage test: the tests command listed no tests"), nothing["error"]

    # What people see: apiary shards, and the job page's Shards panel with each shard's planned and real time.
    shown = await apiary(tmp_path, "shards", f"suite#{second['number']}", *url(queen))
    assert shown.code == 0, shown
    assert shown.out.startswith("test: 8 tests in 2 shards, 8 with past durations"), shown.out
    assert shown.out.count(" passed   job #") == 2, shown.out
    print(shown.out)
    panel = page.locator("#shards")
    await page.wait_for_function("[...document.querySelectorAll('#shards tbody tr td:nth-child(5)')]"
                                 ".filter((td) => td.innerText.trim() === 'passed').length === 2")
    text = await panel.inner_text()
    assert "test · 8 tests in 2 shards" in text and "Levelled by past durations: 8 of 8 tests" in text, text
    assert await panel.locator("tbody tr").count() == 2 and "not made" not in text
    await shot(page, "shards-panel")
    await page.goto(f"/jobs/{broken['id']}")  # the Tests panel: the failed test first, linked to its shard's job
    ran = page.locator("#tests-list li.t-failed a.t-job")
    await ran.first.wait_for()
    assert await ran.first.inner_text() == f"job #{bad[0]['number']}"
    await shot(page, "shards-parent-tests")
    kid = broken["children"][0]
    # "Find the commit that broke this" from a shard's job bisects its parent job (a shard alone cannot be):
    # here it has no passed job at an earlier commit, and says so of the parent.
    status, refused = await queen.request("POST", "/repos/suite/bisects", {"from_job": bad[0]["job"]})
    assert (status, refused["field"]) == (400, "from_job") and f"suite#{broken['number']}:" in refused["error"], \
        refused
    none = await apiary(tmp_path, "shards", kid["job"], *url(queen))
    assert none.code == 0 and f"is shard {kid['unit'].split()[2]} of 2 of job #{broken['number']} (test)" in none.out, none
    assert (await queen.get(f"/jobs/{kid['job']}/shards"))["shard_of"] == {  # the API says so too
        "job": broken["id"], "number": broken["number"], "stage": "test", "shard": int(kid["unit"].split()[2]),
        "count": 2}
    none = await apiary(tmp_path, "shards", nothing["id"], *url(queen))
    assert none.code == 0 and "failed and ran no shards: " in none.out and "listed no tests" in none.out, none


LOCAL = """\
stages:
  - name: test
    shards: {count: 3, tests: "printf 'tests/a.sh\\\\ntests/b.sh\\\\ntests/c.sh\\\\ntests/d.sh\\\\n'"}
    steps: ['echo "shard $APIARY_SHARD_INDEX of $APIARY_SHARD_COUNT ran" $(cat "$APIARY_SHARD_FILE")']
"""


def test_apiary_run_splits_the_list_here_and_runs_every_shard(tmp_path: Path) -> None:
    """No queen, no history: the list is split evenly and each shard runs in the working copy."""
    (tmp_path / ".apiary.yml").write_text(LOCAL)
    done = subprocess.run([sys.executable, "-m", "apiary.cli", "run", str(tmp_path)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 tests in 3 shards: 2, 1, 1" in done.stdout, done.stdout
    ran = sorted(line for line in done.stdout.splitlines() if line.startswith("shard "))
    assert ran == ["shard 1 of 3 ran tests/a.sh tests/d.sh", "shard 2 of 3 ran tests/b.sh",
                   "shard 3 of 3 ran tests/c.sh"], done.stdout
