"""`spread: true` matrix cells (apiary.core.spread, apiary.queen.spread): each cell a child job on a drone slot of
its own, the parent waiting for them and going on from them, with a real queen, two drones and the store."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser import browser, page, shot  # noqa: F401  (fixtures)
from tests.cluster import Cluster
from tests.e2e.test_client import apiary, url

PIPELINE = """
artifacts: ["out/*"]
stages:
  - {{name: build, steps: ["mkdir -p out && echo built-once > out/app.txt"]}}
  - name: test
    needs: [build]
    matrix: {{n: ["1", "2"], spread: true}}
    steps: ["sleep 0.3", "cat out/app.txt", "{check}", "echo cell-$n > out/cell-$n.txt"]
  - {{name: report, needs: [test], steps: ["cat out/app.txt out/cell-1.txt out/cell-2.txt"]}}
"""


def _stages(outcome: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in outcome["stages"]}


async def test_spread_cells_run_as_child_jobs_on_both_drones(queen: Cluster, tmp_path: Path, page: Page) -> None:
    await queen.add_drone("d1")
    await queen.add_drone("d2")
    await queen.create_pipeline_repo("spread", PIPELINE.format(check="true"))
    fixed = tmp_path / "fixed"
    await queen.create_pipeline_repo("spreadfail", PIPELINE.format(check=f"test $n = 1 || test -f {fixed}"))
    await queen.create_pipeline_repo("spreadcancel", PIPELINE.format(check="sleep 60"))
    parent = await queen.trigger("spread")

    job = await queen.wait_job(parent["id"])
    assert job["status"] == "passed", (job.get("error"), queen.all_logs())
    children = job["children"]
    assert sorted(c["unit"] for c in children) == ["test (1)", "test (2)"]
    assert all(c["status"] == "passed" for c in children)
    kids = [await queen.job(c["job"]) for c in children]
    assert {k["parent"]["id"] for k in kids} == {job["id"]}
    assert {k["drone"] for k in kids} == {"d1", "d2"}  # each cell on a slot of its own, anywhere in the pool
    assert all(k["ref"] == job["ref"] and not k.get("concurrency") for k in kids)
    # The child ran its cell alone, on the parent's artifact; the parent ran the rest, the cells' artifacts restored.
    kid_printed = "".join(e.get("text", "") for e in await queen.events(kids[0]["id"]) if e["type"] == "job:cmd:stdout")
    assert "built-once" in kid_printed
    assert {c["stage"] for c in kids[0]["commands"] if c.get("stage") != "checkout"} == {kids[0]["parent"]["unit"]}
    printed = "".join(e.get("text", "") for e in await queen.events(job["id"]) if e["type"] == "job:cmd:stdout")
    assert "built-once\ncell-1\ncell-2\n" in printed
    assert sum(1 for c in job["commands"] if c.get("stage") == "build") == 1  # not run again by the continuation
    outcome = await queen.get(f"/jobs/{job['id']}/outcome")
    assert _stages(outcome) == {"build": "passed", "test (1)": "passed", "test (2)": "passed", "report": "passed"}
    cell = next(s for s in outcome["stages"] if s["name"] == "test (2)")
    assert cell["child"]["job"] == next(c["job"] for c in children if c["unit"] == "test (2)")

    failed = await queen.wait_job((await queen.trigger("spreadfail"))["id"])
    assert failed["status"] == "failed"
    bad = next(c for c in failed["children"] if c["unit"] == "test (2)")
    assert bad["status"] == "failed"
    assert failed["error"].startswith(f"test (2) failed in job #{bad['number']}"), failed["error"]
    outcome = await queen.get(f"/jobs/{failed['id']}/outcome")
    assert _stages(outcome) == {"build": "passed", "test (1)": "passed", "test (2)": "failed", "report": "not_run"}
    status, refused = await queen.request("POST", f"/jobs/{bad['job']}/rerun", {})
    assert status == 409 and "re-run that job" in refused["error"]  # a child is a part of its parent's run
    # Re-run from the failed cell: the passed cell is reused (its child's artifact restored), the failed one spread.
    fixed.write_text("")
    _, again = await queen.request("POST", f"/jobs/{failed['id']}/rerun", {"from_failed": True}, expect=201)
    again = await queen.wait_job(again["id"])
    assert again["status"] == "passed", again.get("error")
    assert [c["unit"] for c in again["children"]] == ["test (2)"]
    printed = "".join(e.get("text", "") for e in await queen.events(again["id"]) if e["type"] == "job:cmd:stdout")
    assert "built-once\ncell-1\ncell-2\n" in printed

    # A job-level matrix: each cell's stages together in one child; nothing left after them, the job passes.
    await queen.create_pipeline_repo("whole", 'matrix: {os: [linux, bsd], spread: true}\nstages:\n'
                                              '  - {name: build, steps: ["echo built-$os > b.txt"]}\n'
                                              '  - {name: test, needs: [build], steps: ["grep built-$os b.txt"]}\n')
    whole = await queen.wait_job((await queen.trigger("whole"))["id"])
    assert whole["status"] == "passed", whole.get("error")
    assert sorted(c["unit"] for c in whole["children"]) == ["bsd", "linux"]
    kid = await queen.job(whole["children"][0]["job"])
    assert [s["name"] for s in kid["pipeline"]["stages"]] == ["build (linux)", "test (linux)"]
    assert all(s["status"] == "passed" for s in (await queen.get(f"/jobs/{whole['id']}/outcome"))["stages"])

    # Artifacts a child could not be given fail the job, saying so, before any child is made.
    await queen.create_pipeline_repo("big", PIPELINE.replace("echo built-once > out/app.txt",
                                                             "head -c 13000000 /dev/zero > out/app.txt")
                                     .format(check="true"))
    big = await queen.wait_job((await queen.trigger("big"))["id"])
    assert big["status"] == "failed" and "more than a child job restores" in big["error"], big.get("error")
    assert not big.get("children")

    # apiary ls shows the family.
    listed = await apiary(tmp_path, "ls", "spread", *url(queen))
    assert listed.code == 0, listed
    assert f"child of #{job['number']}" in listed.out, listed.out

    # The page: the cells with their child jobs, live; a child links its parent; cancelling the parent cancels them.
    long = await queen.trigger("spreadcancel")
    waiting = await queen.wait_for(lambda: queen.job(long["id"]),
                                   lambda j: len(j.get("children") or []) == 2
                                   and all(c["status"] == "running" for c in j["children"]), "both cells running")
    assert waiting["status"] == "waiting"  # both cells run on the two drones of one slot each: it holds none
    await page.goto(f"/jobs/{long['id']}")
    cell = page.locator('.g-stage[data-stage="test (1)"]')
    await expect(cell).to_have_attribute("data-state", "running")
    link = cell.locator("a.g-child-link")
    await expect(link).to_have_text(f"job #{waiting['children'][0]['number']}")
    await expect(page.locator('.g-stage[data-stage="build"]')).to_have_attribute("data-state", "passed")
    await shot(page, "spread-parent-running")
    await link.click()
    await expect(page.locator("#job-parent")).to_have_attribute("href", f"/jobs/{long['id']}")
    await expect(page.locator("#rerun")).to_be_hidden()  # a child is re-run with its parent
    await expect(page.locator("#rerun-failed")).to_have_count(0)
    await shot(page, "spread-child")
    await page.go_back()
    status, _ = await queen.request("POST", f"/jobs/{long['id']}/cancel")
    assert status in (200, 202)
    cancelled = await queen.wait_job(long["id"])
    assert cancelled["status"] == "cancelled" and cancelled["error"] == "cancelled while its child jobs ran"
    for entry in waiting["children"]:
        kid = await queen.wait_job(entry["job"])
        assert kid["status"] == "cancelled" and f"its parent job #{long['number']} cancelled" in kid["error"]
    await expect(cell).to_have_attribute("data-state", "cancelled")
    await shot(page, "spread-parent-cancelled")


FAMILY = """
{top}
stages:
  - name: d
    matrix: {{r: [{cells}], spread: true}}
    steps: ['{step}']
  - {{name: after, needs: [d], steps: ["ls -l out || true"]}}
"""


async def test_a_family_holds_its_group_keeps_its_timeout_and_stops_with_its_first_failure(
        queen: Cluster, tmp_path: Path) -> None:
    await queen.add_drone("d1")
    await queen.add_drone("d2")
    # A concurrency group is held while the job waits for its children: a second deploy waits for the first.
    await queen.create_pipeline_repo("held", FAMILY.format(top="concurrency: {group: deploy}", cells="eu",
                                                           step="sleep 1.5"))
    first, second = await queen.trigger("held"), await queen.trigger("held")
    first, second = await queen.wait_job(first["id"]), await queen.wait_job(second["id"])
    assert first["status"] == second["status"] == "passed", (first.get("error"), second.get("error"))
    began = min(r["started"] for r in second["history"].values() if r.get("started"))
    assert began >= first["finished"], "the second job ran while the first one's child deployed"
    kid = await queen.job(first["children"][0]["job"])
    assert not kid.get("concurrency")  # a child is in no group: it never waits behind its own parent

    # The job's timeout counts from its start across its wait: 3 cells of 3 s on 2 slots pass 4 s. The cells it
    # stopped are cancelled for it, saying so (not timed out on their own: a child has what is left of it).
    await queen.create_pipeline_repo("slow", FAMILY.format(top="timeout: 4s", cells="'1', '2', '3'", step="sleep 30"))
    slow = await queen.wait_job((await queen.trigger("slow"))["id"])
    assert slow["status"] == "failed" and slow["error"].startswith("the job timed out after 4 s"), slow.get("error")
    kids = [await queen.wait_job(c["job"]) for c in slow["children"]]
    assert [(k["status"], k.get("error")) for k in kids] == [
        ("cancelled", f"cancelled: its parent job #{slow['number']} timed out after 4 s")] * len(kids), kids

    # Once a cell fails no new cell starts: the third waits for a slot, and is cancelled instead.
    await queen.create_pipeline_repo("stop", FAMILY.format(top="", cells="a, b, c",
                                                           step='test "$r" != a && sleep 3'))
    stop = await queen.wait_job((await queen.trigger("stop"))["id"])
    by_unit = {c["unit"]: c for c in stop["children"]}
    assert stop["status"] == "failed" and stop["error"] == f"d (a) failed in job #{by_unit['d (a)']['number']}", \
        stop.get("error")
    third = await queen.wait_job(by_unit["d (c)"]["job"])
    assert third["status"] == "cancelled", third
    assert "d (a) failed in job #" in third["error"] and "no new stage of the job starts" in third["error"]
    assert (await queen.wait_job(by_unit["d (b)"]["job"]))["status"] == "passed"  # running: it finished

    # Children's artifacts that the continuation could not restore fail the job, naming them and the cap.
    await queen.create_pipeline_repo("heavy", FAMILY.format(
        top='artifacts: ["out/*"]', cells="m, n", step="mkdir -p out && head -c 7000000 /dev/zero > out/big-$r.bin"))
    heavy = await queen.wait_job((await queen.trigger("heavy"))["id"])
    assert heavy["status"] == "failed", heavy.get("error")
    assert "more than the 12,582,912 bytes its continuation restores: out/big-n.bin" in heavy["error"], heavy["error"]
