"""Bisect across drones on a real repository: a queen, two drones, git history made here with a known
breaking commit among 12 (and one commit whose pipeline does not validate, skipped). The CLI finds it
and prints it; the API refuses what cannot be bisected, naming the field; the failed job's page starts
one with its button and the bisect's page shows its progress and its answer."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser import base_url, browser, page, shot  # noqa: F401  (fixtures)
from tests.cluster import Cluster, _env
from tests.gitserver import commit, git, git_env

PIPELINE = """stages:
  - name: build
    steps: ["true"]
  - name: test
    steps: ["sleep {pause}", "test ! -f broken"]
"""
BROKEN_AT = 7  # the commit (counted from 1 after good) that adds the file the test stage refuses
# A commit whose pipeline does not validate: with two free slots the first round splits the 12 commits
# at the 4th and the 8th, so it is tried (and skipped) whatever the jobs' timing.
UNBUILDABLE = 4


def make_history(root: Path, pause: float = 0.2) -> tuple[Path, str, list[str]]:
    """A bare repository: a good commit, then 12 commits on main, the 7th adds `broken`, the 4th's pipeline
    does not validate (fixed in the 5th). (bare, good, the 12 commits oldest first)."""
    work = root / "work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    pipeline = PIPELINE.format(pause=pause)
    good = commit(work, {".apiary.yml": pipeline, "app.txt": "0\n"}, "a good start")
    shas = []
    for i in range(1, 13):
        files: dict[str, str | None] = {"app.txt": f"{i}\n"}
        if i == BROKEN_AT:
            files["broken"] = "yes\n"
        if i == UNBUILDABLE:
            files[".apiary.yml"] = "stages: [oops\n"
        if i == UNBUILDABLE + 1:
            files[".apiary.yml"] = pipeline
        message = "Refactor the parser\n\nIt reads the file twice now." if i == BROKEN_AT else f"change {i}"
        shas.append(commit(work, files, message))
    bare = root / "project.git"
    git(root, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", str(bare), "main:refs/heads/main")
    return bare, good, shas


async def cli(cluster: Cluster, *args: str, timeout: float = 120.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "apiary.cli", *args, "--url", cluster.api, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=_env())
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode()


async def test_the_cli_finds_the_commit_that_broke_the_pipeline_on_two_drones(queen: Cluster, tmp_path: Path) -> None:
    bare, good, shas = make_history(tmp_path / "git")
    await queen.add_drone("d1")
    await queen.add_drone("d2")
    await queen.request("POST", "/repos", {"name": "proj", "url": str(bare)}, expect=201)

    # What cannot be bisected is refused, naming the field, and starts nothing.
    status, body = await queen.request("POST", "/repos/proj/bisects", {"good": shas[5], "bad": shas[2]})
    assert (status, body["field"]) == (400, "good") and "not an ancestor" in body["error"], body
    status, body = await queen.request("POST", "/repos/proj/bisects", {"good": good, "bad": "zz"})
    assert (status, body["field"]) == (400, "bad"), body
    status, body = await queen.request("POST", "/repos/proj/bisects", {"good": good, "bad": shas[-1], "stage": 5})
    assert (status, body["field"]) == (400, "stage"), body
    status, body = await queen.request("POST", "/repos/proj/bisects", {"good": good, "bad": shas[-1], "stage": "lint"})
    assert (status, body["field"]) == (400, "stage") and "its stages: build, test" in body["error"], body
    await queen.request("POST", "/repos", {"name": "gone", "url": str(tmp_path / "nowhere.git")}, expect=201)
    status, body = await queen.request("POST", "/repos/gone/bisects", {"good": good, "bad": shas[-1]})
    assert (status, body["field"]) == (400, "url") and "nowhere.git" in body["error"], body
    assert (await queen.get("/repos/proj/bisects"))["bisects"] == []

    # Bad means the stage test failed (the page's bisect below: the job failed).
    code, out = await cli(queen, "bisect", "proj", "--good", good[:10], "--bad", shas[-1], "--stage", "test")
    assert code == 0, out
    first_bad = shas[BROKEN_AT - 1]
    assert f"first bad commit: {first_bad}" in out, out
    assert "Refactor the parser" in out and "author: Ada Tester <ada@example.com>" in out, out
    assert "cannot be built" in out, out  # the commit whose pipeline does not validate was skipped

    found = (await queen.get("/repos/proj/bisects"))["bisects"][0]
    assert found["status"] == "found" and found["commits"] == 12 and found["stage"] == "test"
    answer = found["result"]["first_bad"]
    assert answer["commit"] == first_bad and answer["job"], found
    job = await queen.job(answer["job"])
    assert job["status"] == "failed" and job["ref"]["id"] == first_bad
    assert job["triggered_by"] == {"kind": "bisect", "name": "#1", "bisect": found["id"]}
    verdicts = {t["commit"]: t["verdict"] for t in found["tries"]}
    assert verdicts[first_bad] == "bad" and verdicts.get(shas[BROKEN_AT - 2]) == "good", found["tries"]
    assert all(v == ("bad" if shas.index(c) >= BROKEN_AT - 1 else "good") for c, v in verdicts.items()
               if v in ("good", "bad")), found["tries"]  # not skip (untestable), nor unneeded (cancelled)
    rounds = found["rounds"]
    print(f"bisect of 12 commits on 2 drones: {len(found['tries'])} tries in {rounds} rounds")
    assert f"in {rounds} rounds" in out
    code, out = await cli(queen, "bisect", "proj", "--list")
    assert code == 0 and f"#1   found         {good[:10]}..{shas[-1][:10]}  12 commits" in out, out
    assert "12 commits     stage test  " in out, out  # what bad meant: that stage (or the job)


async def test_a_failed_jobs_page_starts_a_bisect_whose_page_shows_progress_and_the_answer(
        queen: Cluster, page: Page, tmp_path: Path) -> None:  # noqa: F811  (the fixture)
    bare, good, shas = make_history(tmp_path / "git", pause=1.0)
    await queen.add_drone("d1", capacity=2)
    await queen.request("POST", "/repos", {"name": "proj", "url": str(bare)}, expect=201)
    passed = await queen.wait_job((await queen.trigger("proj", branch="main", commit=good))["id"])
    failed = await queen.wait_job((await queen.trigger("proj", branch="main", commit=shas[-1]))["id"])
    assert (passed["status"], failed["status"]) == ("passed", "failed")

    await page.goto(f"/jobs/{failed['id']}")
    await page.get_by_role("button", name="Find the commit that broke this").click()
    await page.wait_for_url("**/bisects/*")
    await expect(page.locator("#bisect-progress")).to_contain_text("left to search")
    await shot(page, "bisect-running")
    first = page.locator("#first-bad")
    await expect(first).to_contain_text("Refactor the parser", timeout=90_000)
    await expect(first).to_contain_text(shas[BROKEN_AT - 1][:12])
    await expect(page.locator("#bisect-status")).to_have_text("found")
    await expect(page.locator("#bisect-tries tr[data-verdict=skip]")).to_have_count(1)
    await expect(page.get_by_role("button", name="Cancel")).to_be_disabled()
    await first.get_by_role("link").click()
    await page.wait_for_url("**/jobs/*")
    await expect(page.locator("#job-commit")).to_contain_text(shas[BROKEN_AT - 1][:10])
    await expect(page.locator("#job-bisect")).to_have_text("bisect #1")  # its page links its bisect
    await page.go_back()
    await shot(page, "bisect-found")
    await page.goto("/repos/proj")  # the repository's page links its bisects
    await page.get_by_role("link", name="Bisects").click()
    await expect(page.locator("#bisects tbody tr")).to_have_count(1)
    await expect(page.locator("#bisects")).to_contain_text("Refactor the parser")
    await shot(page, "bisect-list")


async def test_a_bisect_goes_on_after_a_queen_restart_one_runs_at_a_time_and_cancel_stops_it(
        queen: Cluster, page: Page, tmp_path: Path) -> None:  # noqa: F811  (the fixture)
    bare, good, shas = make_history(tmp_path / "git", pause=1.5)
    await queen.add_drone("d1", capacity=2)
    await queen.request("POST", "/repos", {"name": "proj", "url": bare.as_uri()}, expect=201)
    first = (await queen.request("POST", "/repos/proj/bisects", {"good": good, "bad": shas[-1]}, expect=201))[1]
    assert first["status"] == "running" and any(t["verdict"] is None for t in first["tries"]), first
    status, body = await queen.request("POST", "/repos/proj/bisects", {"good": good, "bad": shas[-1]})
    assert (status, body["field"]) == (409, "repo") and "running already (#1: /bisects/" in body["error"], body

    # apiary bisect --follow, then the queen stops while the first round's jobs run (longer than the CLI's
    # poll); the one that starts again takes the bisect up, and the CLI follows it to its end.
    following = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "apiary.cli", "bisect", "proj", "--follow", "1", "--url", queen.api,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=_env())
    assert following.stdout is not None
    seen = b""
    while b"round 1:" not in seen:
        line = await asyncio.wait_for(following.stdout.readline(), 30)
        assert line, seen
        seen += line
    await queen.queen.stop()  # type: ignore[union-attr]
    await asyncio.sleep(2.5)
    await queen.start_queen()
    done = await queen.wait_for(lambda: queen.get(f"/bisects/{first['id']}"), lambda b: b["status"] != "running",
                                "the bisect to end after the restart", timeout=90)
    assert done["status"] == "found" and done["result"]["first_bad"]["commit"] == shas[BROKEN_AT - 1], done
    assert "taken up again" in queen.queen.stderr.read_text()  # type: ignore[union-attr]
    rest, _ = await asyncio.wait_for(following.communicate(), 60)
    out = (seen + rest).decode()
    assert following.returncode == 0 and "lost the queen" in out, out
    assert f"first bad commit: {shas[BROKEN_AT - 1]}" in out, out

    # A history whose jobs take a minute, so that none ends by itself before the cancel reaches its drone.
    slow, slow_good, slow_shas = make_history(tmp_path / "slow", pause=60)
    await queen.request("POST", "/repos", {"name": "slow", "url": slow.as_uri()}, expect=201)
    # Two at once: one starts; the other is told another is being started (not yet numbered: not "#None").
    both = await asyncio.gather(*(queen.request("POST", "/repos/slow/bisects", {"good": slow_good, "bad": slow_shas[-1]})
                                  for _ in range(2)))
    assert sorted(status for status, _ in both) == [201, 409], both
    second, refused = (both[0][1], both[1][1]) if both[0][0] == 201 else (both[1][1], both[0][1])
    assert refused["field"] == "repo" and "None" not in refused["error"], refused
    assert "is being started" in refused["error"] or f"(#{second['number']}: " in refused["error"], refused
    running = [t["job"] for t in second["tries"] if t["verdict"] is None]
    assert running, second
    # Its page's Cancel asks to be pressed again (no dialog), then cancels and says who did.
    await page.goto(second["url"])
    button = page.locator("#bisect-cancel")
    await button.click()
    await expect(button).to_have_text("Press again to cancel the bisect")
    await expect(page.locator("#bisect-status")).to_have_text("running")
    await shot(page, "bisect-cancel-armed")
    await button.click()
    await expect(page.locator("#bisect-status")).to_have_text("cancelled")
    await expect(page.locator("#cancelled-by")).to_have_text("nobody signed in")  # an open queen on loopback
    await expect(button).to_be_disabled()
    await shot(page, "bisect-cancelled")
    cancelled = await queen.get(f"/bisects/{second['id']}")
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_by"]["kind"] == "setup", cancelled
    ends = [await queen.wait_job(job_id) for job_id in running]
    assert all(j["status"] == "cancelled" for j in ends), ends
    ended = await queen.get(f"/bisects/{second['id']}")
    assert {t["verdict"] for t in ended["tries"] if t.get("job") in running} == {"cancelled"}, ended["tries"]
    status, body = await queen.request("POST", f"/bisects/{second['id']}/cancel", {})
    assert status == 409 and f"bisect #{second['number']} of slow has already ended (cancelled)" in body["error"], body
    assert (await queen.request("GET", "/bisects/nosuchbisect"))[0] == 404


SETTINGS_PIPELINE = """parameters:
  FAIL: {default: "no"}
reports: {junit: ["junit.xml"]}
stages:
  - name: build
    steps: ["true"]
  - name: test
    steps:
      - |
        if [ "$FAIL" = yes ]; then r='<failure message="asked to"/>'; else r=''; fi
        echo "<testsuite><testcase classname=\\"t\\" name=\\"ok\\">$r</testcase></testsuite>" > junit.xml
        test "$FAIL" != yes
  - name: ship
    deploy: true
    steps: ["true"]
"""


def make_settings_history(root: Path) -> tuple[Path, str, list[str], str]:
    """good, four commits on main (none breaks anything: a failure comes only from FAIL=yes), a later one;
    and a branch `old` forked at good. (bare, good, the four, later)."""
    work = root / "work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    good = commit(work, {".apiary.yml": SETTINGS_PIPELINE, "app.txt": "0\n"}, "a good start")
    git(work, "branch", "old")
    shas = [commit(work, {"app.txt": f"{i}\n"}, f"change {i}") for i in range(1, 5)]
    later = commit(work, {"app.txt": "5\n"}, "change 5")
    bare = root / "project.git"
    git(root, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", str(bare), "main:refs/heads/main", "old:refs/heads/old")
    return bare, good, shas, later


async def test_a_bisect_reproduces_the_bad_end_with_its_own_settings_and_stays_out_of_other_features(
        queen: Cluster, page: Page, tmp_path: Path) -> None:  # noqa: F811  (the fixture)
    bare, good, shas, later = make_settings_history(tmp_path / "git")
    await queen.add_drone("d1", capacity=2)
    await queen.request("POST", "/repos", {"name": "proj", "url": str(bare)}, expect=201)

    # Refused at the start, naming the field: a branch the repository does not have, one the bad commit
    # is not on, a stage its (TEST) jobs never run, a parameter the pipeline does not declare.
    for body, field, words in [({"branch": "nosuch"}, "branch", "no branch 'nosuch'"),
                               ({"branch": "old"}, "branch", "is not on branch old"),
                               ({"stage": "ship"}, "stage", "ship is a deploy stage"),
                               ({"parameters": {"X": "1"}}, "parameters.X", "not declared by the pipeline")]:
        status, answer = await queen.request("POST", "/repos/proj/bisects", {"good": good, "bad": shas[-1], **body})
        assert (status, answer.get("field")) == (400, field) and words in answer["error"], answer
    assert (await queen.get("/repos/proj/bisects"))["bisects"] == []

    # The branch's jobs: good passed, the bad commit failed only because FAIL=yes, a later commit passed.
    ran = [await queen.wait_job((await queen.trigger("proj", branch="main", commit=sha, **extra))["id"])
           for sha, extra in ((good, {}), (shas[-1], {"parameters": {"FAIL": "yes"}}), (later, {}))]
    assert [j["status"] for j in ran] == ["passed", "failed", "passed"]

    # Bad means stage build failed, but build passes everywhere: not reproduced, nobody blamed, exit 4.
    code, out = await cli(queen, "bisect", "proj", "--good", good, "--bad", shas[-1], "--stage", "build")
    assert code == 4, out
    assert f"could not reproduce: stage build passed at {shas[-1][:12]}" in out, out
    assert "first bad commit" not in out, out
    done = (await queen.get("/repos/proj/bisects"))["bisects"][0]
    assert done["status"] == "unreproduced" and done["result"]["try"]["job"], done
    assert (await queen.job(done["result"]["try"]["job"]))["triggered_by"]["bisect"] == done["id"]
    await page.goto(done["url"])
    await expect(page.locator("#bisect-status")).to_have_text("unreproduced")
    await expect(page.locator("#bisect-unreproduced")).to_contain_text("did not fail as asked")
    await shot(page, "bisect-unreproduced")

    # From the failed job: its parameters go with the bisect, good is the newest passed ancestor (not the
    # later commit's job). With FAIL=yes every commit fails: the first one after good is the answer.
    status, started = await queen.request("POST", "/repos/proj/bisects", {"from_job": ran[1]["id"]})
    assert status == 201 and started["good"] == good and started["parameters"] == {"FAIL": "yes"}, started
    found = await queen.wait_for(lambda: queen.get(f"/bisects/{started['id']}"), lambda b: b["status"] != "running",
                                 "the bisect to end", timeout=90)
    assert found["status"] == "found" and found["result"]["first_bad"]["commit"] == shas[0], found
    assert found["result"]["good_assumed"] is True and found["result"]["first_bad"]["job"], found
    assert shas[-1] in {t["commit"] for t in found["tries"]}  # the bad end was run by this bisect
    for t in found["tries"]:
        assert (await queen.job(t["job"]))["parameters"] == {"FAIL": "yes"}
    await page.goto(found["url"])
    await expect(page.locator("#last-good")).to_contain_text("assumed good")
    await shot(page, "bisect-found-from-job")
    # The CLI's --param says the same.
    code, out = await cli(queen, "bisect", "proj", "--good", good, "--bad", shas[1], "--param", "FAIL=yes")
    assert code == 0 and f"first bad commit: {shas[0]}" in out and "assumed good" in out, out

    # The bisects' jobs (old commits, FAIL=yes) are not the branch's state: its badge is the later
    # commit's job, the test is not flaky, and apiary ls says whose jobs they are.
    assert queen.http is not None
    async with queen.http.get(base_url(queen) + "/badge/proj.svg") as resp:
        assert ">passed<" in await resp.text()
    history = await queen.get("/repos/proj/tests/history?test=t.ok")
    assert history["flaky"] is False and len(history["runs"]) == 3, history
    code, out = await cli(queen, "ls", "proj")
    assert code == 0 and "bisect #2" in out, out


GATED_PIPELINE = """stages:
  - {name: build, steps: ["true"]}
  - {name: test, needs: [build], steps: ["test ! -f broken"]}
  - {name: release, needs: [test], approval: {role: admin, timeout: 20s}, steps: ["echo RELEASING an old commit"]}
  - {name: announce, needs: [release], steps: ["true"]}
"""


async def test_a_bisect_never_runs_nor_waits_at_an_approval_gate(queen: Cluster, page: Page,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    """A pipeline whose release waits for an admin: a bisect's jobs run the test only (a job at a good
    commit would otherwise wait at the gate, and fail when nobody approved: blamed on the wrong commit)."""
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    good = commit(work, {".apiary.yml": GATED_PIPELINE, "app.txt": "0\n"}, "a good start")
    shas = [commit(work, {"app.txt": f"{i}\n", **({"broken": "yes\n"} if i == 3 else {})}, f"change {i}")
            for i in range(1, 5)]
    git(work, "checkout", "-q", "-b", "gated")  # a later pipeline with nothing a bisect may run
    only_gated = commit(work, {".apiary.yml": "stages:\n  - {name: release, approval: true, steps: ['true']}\n"},
                        "release only")
    bare = tmp_path / "gate.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", str(bare), "main:refs/heads/main", "gated:refs/heads/gated")
    await queen.add_drone("d1", capacity=2)
    await queen.request("POST", "/repos", {"name": "gate", "url": str(bare), "retention": {"keep_jobs": 1}},
                        expect=201)

    for body, field, words in [({"stage": "release"}, "stage", "release is behind an approval gate"),
                               ({"stage": "announce"}, "stage", "announce needs release"),
                               ({"bad": only_gated, "branch": "gated"}, "bad", "no stage a bisect may run")]:
        status, answer = await queen.request("POST", "/repos/gate/bisects", {"good": good, "bad": shas[-1], **body})
        assert (status, answer.get("field")) == (400, field) and words in answer["error"], answer

    code, out = await cli(queen, "bisect", "gate", "--good", good, "--bad", shas[-1])
    assert code == 0 and f"first bad commit: {shas[2]}" in out, out
    found = (await queen.get("/repos/gate/bisects"))["bisects"][0]
    for t in found["tries"]:
        job = await queen.job(t["job"])
        assert [s["name"] for s in job["pipeline"]["stages"]] == ["build", "test"], job["pipeline"]
        assert job["status"] in ("passed", "failed") and not job.get("approvals"), job
    assert [s["stage"] for s in found["left_out"]] == ["release", "announce"], found  # its page says so
    await page.goto(found["url"])
    await expect(page.locator("#left-out")).to_have_text("release (behind an approval gate), "
                                                         "announce (needs release)")
    await shot(page, "bisect-left-out")

    # A re-run of a bisect's job stays a bisect's: the same trimmed pipeline (no gate waiting to release an
    # old commit), and it does not speak for the branch.
    first_bad = found["result"]["first_bad"]
    _, again = await queen.request("POST", f"/jobs/{first_bad['job']}/rerun", {}, expect=201)
    again = await queen.wait_job(again["id"])
    assert [s["name"] for s in again["pipeline"]["stages"]] == ["build", "test"] and again["status"] == "failed", \
        again
    assert (again["triggered_by"]["kind"], again["triggered_by"]["bisect"]) == ("bisect", found["id"]), again
    # From its failed stage too: compared with the trimmed pipeline it ran (it said "the pipeline changed").
    _, partial = await queen.request("POST", f"/jobs/{first_bad['job']}/rerun", {"from_failed": True}, expect=201)
    partial = await queen.wait_job(partial["id"])
    assert partial["status"] == "failed" and list(partial["resume"]["stages"]) == ["build"], partial
    assert partial["triggered_by"]["kind"] == "bisect", partial
    # Retention (keep 1 job) keeps the jobs the answer cites: the first bad commit's, the last good one's and
    # the bad end's; the others go, and the bisect says "pruned" rather than link to a job that is gone.
    await queen.request("POST", "/prune", {}, expect=200)
    view = await queen.get(f"/bisects/{found['id']}")
    cited = {first_bad["job"]} | {t["job"] for t in view["tries"]
                                  if t["index"] == view["commits"] - 1 or t["commit"] == view["result"]["last_good"]}
    for t in (t for t in view["tries"] if t.get("job")):
        status, _ = await queen.request("GET", f"/jobs/{t['job']}")
        assert (status, t["status"] == "pruned") == ((200, False) if t["job"] in cited else (404, True)), (t, cited)
    assert view["result"]["first_bad"].get("pruned") is None
    if any(t["status"] == "pruned" for t in view["tries"]):
        await page.goto(found["url"])
        assert "pruned" in await page.locator("#bisect-tries").inner_text()
        await shot(page, "bisect-pruned")


async def test_a_short_sha_that_names_several_commits_is_refused_naming_a_few(tmp_path: Path) -> None:
    """Commits made (deterministically) until two share their first four hex digits; a bisect given
    those four is told they are ambiguous and shown the commits, not that there is no such commit."""
    from apiary.core.errors import BadRequest
    from apiary.queen.bisectgit import read_line

    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    tree = git(work, "write-tree").strip()  # the empty tree: every commit is a commit, nothing else
    env = {"GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    script = (f"p=$(git commit-tree {tree} -m start); echo $p; seen=\" ${{p%${{p#????}}}} \"; i=0; "
              f"while [ $i -lt 3000 ]; do i=$((i+1)); p=$(git commit-tree {tree} -p $p -m \"change $i\"); "
              f"echo $p; four=${{p%${{p#????}}}}; case \"$seen\" in *\" $four \"*) break;; esac; "
              f"seen=\"$seen$four \"; done")
    proc = await asyncio.create_subprocess_exec("sh", "-c", script, cwd=work, stdout=asyncio.subprocess.PIPE,
                                                env={**git_env(work), **env})
    out, _ = await proc.communicate()
    shas = out.decode().split()
    seen: dict[str, str] = {}
    for sha in shas:
        if sha[:4] in seen:
            prefix, upto = sha[:4], sha
            break
        seen[sha[:4]] = sha
    else:
        raise AssertionError("no two commits share four hex digits")
    git(work, "update-ref", "refs/heads/main", upto)
    try:
        await read_line(tmp_path / "cache", str(work), None, "main", prefix, upto)
    except BadRequest as exc:
        assert exc.field == "good" and f"{prefix} is ambiguous" in str(exc), exc
        assert seen[prefix][:7] in str(exc) and upto[:7] in str(exc), exc
    else:
        raise AssertionError("an ambiguous good was taken")
