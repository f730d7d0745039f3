"""Retention: old jobs go with their events and artifacts; the last pass of each branch stays."""

from __future__ import annotations

import subprocess
import sys

from apiary.queen.retention import DAY, select_prunable
from tests.cluster import Cluster


def job(i: int, status: str, branch: str = "main", age_days: float = 0) -> dict:
    return {"_id": f"j{i}", "status": status, "ref": {"branch": branch}, "created": 1000 * DAY - age_days * DAY}


def test_keep_the_newest_n_plus_the_last_pass_of_each_branch() -> None:
    jobs = [job(9, "failed"), job(8, "failed"), job(7, "passed", "dev"), job(6, "passed"), job(5, "passed"),
            job(4, "running"), job(3, "failed")]
    assert select_prunable(jobs, {"keep_jobs": 2}, now=1000 * DAY) == ["j5", "j3"]


def test_keep_what_is_younger_than_d_days() -> None:
    jobs = [job(3, "failed", age_days=1), job(2, "failed", age_days=5), job(1, "failed", age_days=9)]
    assert select_prunable(jobs, {"keep_days": 7}, now=1000 * DAY) == ["j1"]
    assert select_prunable(jobs, {}, now=1000 * DAY) == []


async def test_prune_deletes_old_jobs_with_events_and_artifacts(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", """
parameters: {CODE: {default: "0"}}
artifacts: [a.txt]
stages: [{name: t, steps: ["echo x > a.txt; exit $CODE"]}]
""", retention={"keep_jobs": 1})
    ids = []
    for code in ("0", "1", "1", "1"):
        ids.append((await queen.wait_job((await queen.trigger("app", parameters={"CODE": code}))["id"]))["id"])

    result = subprocess.run([sys.executable, "-m", "apiary.cli", "prune", "--url", queen.api.rsplit("/api", 1)[0]],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "app: 2 jobs deleted" in result.stdout

    left = [j["id"] for j in (await queen.get("/repos/app/jobs"))["jobs"]]
    assert left == [ids[3], ids[0]]  # the newest, and the last pass of main
    for gone in (ids[1], ids[2]):
        status, _ = await queen.request("GET", f"/jobs/{gone}")
        assert status == 404
    assert (await queen.get(f"/jobs/{ids[0]}/artifacts"))["artifacts"][0]["name"] == "a.txt"


def test_prune_without_a_queen_says_so(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "apiary.cli", "prune", "--url", "http://127.0.0.1:9"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1 and "cannot reach the queen" in result.stderr and "Traceback" not in result.stderr
