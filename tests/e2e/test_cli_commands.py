"""What users do from the terminal, as subprocesses against a real queen and drone: repositories (repo add, ls,
show), a job again (rerun), its artifacts (list, download)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cluster import Cluster
from tests.e2e.test_client import Result, apiary, url

PIPELINE = """parameters: {WHO: {default: world}}
stages:
  - name: build
    steps:
      - mkdir -p dist && printf 'hello %s\\n' "$WHO" > dist/greeting.txt && head -c 300000 /dev/zero > dist/zeros.bin
artifacts: ["dist/*"]
"""


async def test_repo_add_ls_show(queen: Cluster, tmp_path: Path) -> None:
    pipeline = tmp_path / "pipeline.yml"
    pipeline.write_text(PIPELINE)
    added = await apiary(tmp_path, "repo", "add", "try", "--pipeline", str(pipeline), "--default-branch", "trunk",
                         "--queen-url", url(queen)[1])
    assert added.code == 0, added
    assert added.out.splitlines()[0] == "try: pipeline kept on the queen; default branch trunk"
    again = await apiary(tmp_path, "repo", "add", "try", "--pipeline", str(pipeline), "--queen-url", url(queen)[1])
    assert again.code == 1 and "already exists" in again.err and "--replace" in again.err, again
    other = await apiary(tmp_path, "repo", "add", "app", "--url", "https://git.example.com/team/app.git",
                         "--provider", "github", "--queen-url", url(queen)[1])
    assert other.code == 0 and "read from .apiary.yml at each job's commit" in other.out, other
    neither = await apiary(tmp_path, "repo", "add", "bare", "--queen-url", url(queen)[1])
    assert neither.code == 2 and "give --url" in neither.err, neither
    bad = await apiary(tmp_path, "repo", "add", "bad name", "--pipeline", str(pipeline), "--queen-url",
                       url(queen)[1])
    assert bad.code == 2 and bad.err.startswith("apiary: error: name:"), bad
    await queen.request("PUT", "/repos/try/secrets/TOKEN", {"value": "s3cret-value"}, expect=200)

    listing = await apiary(tmp_path, "repo", "ls", *url(queen))
    assert listing.code == 0, listing
    rows = [line.split() for line in listing.out.splitlines()]
    assert rows[0] == ["NAME", "PIPELINE", "BRANCH", "URL", "PLUGINS"]
    assert rows[1] == ["app", ".apiary.yml", "main", "https://git.example.com/team/app.git", "-"]
    assert rows[2] == ["try", "on", "the", "queen", "trunk", "-", "-"]

    shown = await apiary(tmp_path, "repo", "show", "try", *url(queen))
    assert shown.code == 0, shown
    assert re.search(r"^default branch: trunk$", shown.out, re.M) and re.search(r"^secrets: +TOKEN$", shown.out, re.M)
    assert "s3cret-value" not in shown.out
    assert "stored pipeline:\n  parameters: {WHO: {default: world}}\n" in shown.out
    assert (await apiary(tmp_path, "repo", "show", "nope", *url(queen))) == Result(
        2, "", "apiary: error: no repository 'nope'\n")


async def test_rerun_and_artifacts(queen: Cluster, tmp_path: Path) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("art", PIPELINE)
    first = await apiary(tmp_path, "trigger", "art", "--param", "WHO=ada", "--follow", *url(queen))
    assert first.code == 0, first
    job_id = first.out.split("\n", 1)[0].rsplit("/", 1)[1]

    again = await apiary(tmp_path, "rerun", job_id, "--follow", *url(queen))
    assert again.code == 0 and again.out.startswith("art #2 "), again
    second = (await queen.get("/repos/art/jobs"))["jobs"][0]
    assert second["number"] == 2 and second["parameters"] == {"WHO": "ada"}  # the same job again
    assert second["rerun_of"] == job_id
    quiet = await apiary(tmp_path, "rerun", job_id, *url(queen))
    assert quiet.code == 0 and re.fullmatch(r"art #3 \w+: \S+/jobs/\w+\n", quiet.out), quiet

    listed = await apiary(tmp_path, "artifacts", job_id, *url(queen))
    assert listed.code == 0, listed
    assert [line.split() for line in listed.out.splitlines()] == [
        ["NAME", "SIZE"], ["dist/greeting.txt", "10", "B"], ["dist/zeros.bin", "293.0", "KiB"]]
    work = tmp_path / "work"
    work.mkdir()
    got = await apiary(tmp_path, "artifacts", job_id, "dist/zeros.bin", "-o", str(work / "z.bin"), *url(queen))
    assert got.code == 0 and got.err == f"dist/zeros.bin: 293.0 KiB written to {work / 'z.bin'}\n", got
    assert (work / "z.bin").read_bytes() == b"\0" * 300000
    assert sorted(p.name for p in work.iterdir()) == ["z.bin"]  # nothing left beside it
    piped = await apiary(tmp_path, "artifacts", job_id, "dist/greeting.txt", "-o", "-", *url(queen))
    assert piped == Result(0, "hello ada\n", "")
    missing = await apiary(tmp_path, "artifacts", job_id, "dist/nope", *url(queen))
    assert missing.code == 2 and "has no artifact 'dist/nope' (it has: dist/greeting.txt, dist/zeros.bin)" in \
        missing.err, missing
    unknown = await apiary(tmp_path, "artifacts", "NOJOB", *url(queen))
    assert unknown.code == 2 and "no job 'NOJOB'" in unknown.err, unknown
