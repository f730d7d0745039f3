"""Retention: old jobs go with their events and artifacts; the last pass of each branch stays."""

from __future__ import annotations

import subprocess
import sys

from tests.cluster import Cluster


async def test_prune_deletes_old_jobs_with_events_and_artifacts(queen: Cluster) -> None:
    await queen.add_drone("d1", capacity=2)
    await queen.create_pipeline_repo("app", """
parameters: {CODE: {default: "0"}}
artifacts: [a.txt]
stages: [{name: t, steps: ["echo x > a.txt; exit $CODE"]}]
""", retention={"keep_jobs": 1})
    ids = []
    for code in ("0", "1", "1", "1"):
        ids.append((await queen.wait_job((await queen.trigger("app", parameters={"CODE": code}))["id"]))["id"])
    # Spread cells' child jobs: not counted among the newest, never the branch's last pass (a passed cell of a
    # failed run), kept and deleted with their parent.
    await queen.create_pipeline_repo("sp", """
parameters: {CODE: {default: "0"}}
artifacts: [c.txt]
stages: [{name: t, matrix: {N: ["1", "2"], spread: true}, steps: ['echo $N > c.txt; [ "$N" = 1 ] || exit $CODE']}]
""", retention={"keep_jobs": 1})
    parents = []
    for code in ("0", "1", "1"):
        parents.append(await queen.wait_job((await queen.trigger("sp", parameters={"CODE": code}))["id"]))
    kids = [[c["job"] for c in p["children"]] for p in parents]
    # A re-run from the failed stage reuses the passed cell from the last parent's child: that parent stays
    # (with its children) as long as the re-run does, though it is no longer among the newest.
    _, again = await queen.request("POST", f"/jobs/{parents[2]['id']}/rerun", {"from_failed": True}, expect=201)
    again = await queen.wait_job(again["id"])
    assert again["status"] == "failed" and len(again["children"]) == 1, again

    result = subprocess.run([sys.executable, "-m", "apiary.cli", "prune", "--url", queen.api.rsplit("/api", 1)[0]],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "app: 2 jobs deleted" in result.stdout
    assert "sp: 3 jobs deleted" in result.stdout

    left = [j["id"] for j in (await queen.get("/repos/app/jobs"))["jobs"]]
    assert left == [ids[3], ids[0]]  # the newest, and the last pass of main
    for gone in (ids[1], ids[2]):
        status, _ = await queen.request("GET", f"/jobs/{gone}")
        assert status == 404
    assert (await queen.get(f"/jobs/{ids[0]}/artifacts"))["artifacts"][0]["name"] == "a.txt"

    left = [j["id"] for j in (await queen.get("/repos/sp/jobs"))["jobs"]]
    assert sorted(left) == sorted([again["id"], again["children"][0]["job"], parents[2]["id"], *kids[2],
                                   parents[0]["id"], *kids[0]])
    for gone in (parents[1]["id"], *kids[1]):
        status, _ = await queen.request("GET", f"/jobs/{gone}")
        assert status == 404
    assert (await queen.get(f"/jobs/{kids[0][1]}/artifacts"))["artifacts"][0]["name"] == "c.txt"


def test_prune_without_a_queen_says_so(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "apiary.cli", "prune", "--url", "http://127.0.0.1:9"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1 and "no queen answers at http://127.0.0.1:9 (from --url)" in result.stderr
    assert "Traceback" not in result.stderr
