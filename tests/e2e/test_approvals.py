"""Approval gates (apiary.core.approvals): a job waits at a gate on no drone, and goes on, fails or is
cancelled as people decide, with a real queen, drone and store."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import zmq
import zmq.asyncio
from playwright.async_api import Page, expect

from apiary.core.protocol import PROTOCOL_VERSION, Msg, decode, encode
from tests.browser import browser, page, shot  # noqa: F401  (fixtures)
from tests.cluster import Cluster
from tests.e2e.test_client import ENV, Command, Result, url
from tests.e2e.test_users import Caller, _close_callers, first_admin  # noqa: F401  (fixture)

GATED = """
artifacts: ["out/*"]
stages:
  - {name: build, steps: ["mkdir -p out && echo v1 > out/app.txt", "echo build ran"]}
  - {name: release, needs: [build], approval: {role: admin, timeout: TIMEOUT}, steps: ["echo releasing $(cat out/app.txt)"]}
  - {name: announce, needs: [release], steps: ["echo announced", "echo v2 > out/app.txt"]}
  - {name: lint, steps: ["echo lint ran"]}
"""


SETTLED = {"waiting", "passed", "failed", "errored", "cancelled"}


async def _waiting(queen: Cluster, repo: str, timeout: str = "1h", call: Caller | None = None) -> dict:
    pipeline = GATED.replace("TIMEOUT", timeout)
    if call is None:
        await queen.create_pipeline_repo(repo, pipeline)
        return await queen.wait_job((await queen.trigger(repo))["id"], SETTLED)
    assert (await call.call("POST", "/repos", {"name": repo, "pipeline": pipeline, "pipeline_source": "queen"}))[0] == 201
    job = (await call.call("POST", f"/repos/{repo}/jobs", {}))[1]
    return await _settled(queen, call, job["id"], SETTLED)


async def _settled(queen: Cluster, call: Caller, job_id: str, statuses: set[str]) -> dict:
    return (await queen.wait_for(lambda: call.call("GET", f"/jobs/{job_id}"), lambda r: r[1]["status"] in statuses,
                                 f"job {job_id}"))[1]


async def _cli(token: str, *args: str) -> Result:
    """`apiary ARGS` with an API token, as a person at a terminal."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "apiary.cli", *args,
                                                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE,
                                                env={**ENV, "APIARY_CLIENT_TOKEN": token})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return Result(proc.returncode or 0, out.decode(), err.decode())


def _printed(events: list[dict]) -> str:
    return "".join(e.get("text", "") for e in events if e["type"] in ("job:cmd:stdout", "job:stderr"))


async def test_a_job_waits_at_its_gate_on_no_drone_then_goes_on_once_approved(queen: Cluster) -> None:
    await queen.add_drone("d1")  # one slot
    job = await _waiting(queen, "gated")
    assert job["status"] == "waiting" and job["drone"] == "d1"
    outcome = await queen.get(f"/jobs/{job['id']}/outcome")
    shown = {s["name"]: (s["status"], s["reason"]) for s in outcome["stages"]}
    assert shown == {"build": ("passed", None), "release": ("waiting", "waits for an approval by an admin"),
                     "announce": ("waiting", "waits for release"), "lint": ("passed", None)}
    # The drone is free: another job runs on its one slot meanwhile.
    await queen.create_repo("other", ("only", ["echo other"]))
    other = await queen.wait_job((await queen.trigger("other"))["id"])
    assert other["status"] == "passed" and other["drone"] == "d1"

    status, body = await queen.request("POST", f"/jobs/{job['id']}/approvals", {"stage": "announce",
                                                                                 "decision": "approve"})
    assert status == 409 and "waits at release" in body["error"]
    status, body = await queen.request("POST", f"/jobs/{job['id']}/approvals", {"stage": "release",
                                                                                 "decision": "maybe"})
    assert status == 400 and body["field"] == "decision"
    status, body = await queen.request("POST", f"/jobs/{job['id']}/approvals",
                                       {"stage": "release", "decision": "approve", "comment": "ship it"})
    assert status == 200, body
    assert body["approvals"][0]["stage"] == "release" and body["approvals"][0]["decision"] == "approved"
    done = await queen.wait_job(job["id"])
    assert done["status"] == "passed", done.get("error")
    assert done["attempts"] == 2 and done["approvals"][0]["comment"] == "ship it"
    commands = [c["command"] for c in done["commands"]]
    assert sum("build ran" in c for c in commands) == 1 and sum("lint ran" in c for c in commands) == 1  # once
    assert any("echo announced" in c for c in commands)
    printed = _printed(await queen.events(job["id"]))
    assert "releasing v1" in printed  # the gate's stage saw build's artifact, restored into the new workspace
    # Its artifacts are what its last part left: announce rewrote the file build made.
    assert queen.http is not None
    async with queen.http.get(queen.api + f"/jobs/{job['id']}/artifacts/out/app.txt") as resp:
        assert resp.status == 200 and await resp.read() == b"v2\n"
    outcome = await queen.get(f"/jobs/{job['id']}/outcome")
    assert {s["name"]: s["status"] for s in outcome["stages"]} == {"build": "passed", "release": "passed",
                                                                    "announce": "passed", "lint": "passed"}
    status, body = await queen.request("POST", f"/jobs/{job['id']}/approvals", {"stage": "release",
                                                                                 "decision": "approve"})
    assert status == 409 and "waits for no approval" in body["error"]


async def test_rejected_by_an_admin_a_member_refused_and_cli_approval(queen: Cluster) -> None:
    await queen.add_drone("d1")
    admin = await first_admin(queen)
    assert (await admin.call("POST", "/users", {"username": "bob", "password": "bob's long pw", "role": "member"}))[0] == 201
    bob = Caller(queen)
    status, body = await bob.call("POST", "/session", {"username": "bob", "password": "bob's long pw"})
    bob.csrf = body["csrf"]

    job = await _waiting(queen, "rejected", call=admin)
    assert job["status"] == "waiting"
    status, body = await bob.call("POST", f"/jobs/{job['id']}/approvals", {"stage": "release", "decision": "approve"})
    assert status == 403 and "needs an approval by an admin" in body["error"]
    status, body = await admin.call("POST", f"/jobs/{job['id']}/approvals", {"stage": "release", "decision": "reject"})
    assert status == 200 and body["status"] == "failed"
    done = await _settled(queen, admin, job["id"], {"failed"})
    assert done["error"] == "stage release was rejected by ada"
    assert done["approvals"][0]["by"] == "ada" and done["approvals"][0]["decision"] == "rejected"

    # From the command line, with an admin's token.
    status, made = await admin.call("POST", "/tokens", {"name": "cli"})
    job = await _waiting(queen, "by-cli", call=admin)
    said = await _cli(made["token"], "approve", f"by-cli#{job['number']}", "release", *url(queen))
    assert said.code == 0 and "approved stage release" in said.out, said
    assert (await _settled(queen, admin, job["id"], {"passed", "failed", "errored"}))["status"] == "passed"
    job = await _waiting(queen, "rejected-by-cli", call=admin)
    said = await _cli(made["token"], "approve", job["id"], "release", "--reject", "--comment", "not today", *url(queen))
    assert said.code == 0 and "rejected stage release" in said.out, said
    status, body = await admin.call("GET", f"/jobs/{job['id']}")
    assert body["status"] == "failed" and body["approvals"][0]["comment"] == "not today"


async def test_a_gate_nobody_decides_on_times_out_and_a_waiting_job_can_be_cancelled(queen: Cluster) -> None:
    await queen.add_drone("d1")
    job = await _waiting(queen, "late", timeout="1s")
    assert job["status"] in ("waiting", "failed")
    done = await queen.wait_job(job["id"], timeout=30)
    assert done["status"] == "failed" and done["error"] == "nobody approved stage release within 1s"
    assert done["approvals"][0]["decision"] == "timed_out"

    job = await _waiting(queen, "cancelled")
    assert job["status"] == "waiting"
    status, body = await queen.request("POST", f"/jobs/{job['id']}/cancel")
    assert status == 202 and body["status"] == "cancelled"
    done = await queen.job(job["id"])
    assert done["status"] == "cancelled" and done["error"] == "cancelled while it waited for an approval"


async def test_the_job_page_shows_the_wait_and_approves(queen: Cluster, page: Page) -> None:
    await queen.add_drone("d1")
    job = await _waiting(queen, "on-the-page")
    await page.goto(f"/jobs/{job['id']}")
    await expect(page.locator("#job-status")).to_have_text("waiting")
    gate = page.locator('#gates .gate[data-stage="release"]')
    await expect(gate).to_contain_text("runs once an admin approves it")
    await expect(page.locator('.g-stage[data-stage="release"] .g-reason')).to_have_text(
        "waits for an approval by an admin")
    await shot(page, "approval-waiting")
    await gate.locator(".gate-comment").fill("looks good")
    await gate.locator("button.gate-approve").click()
    await expect(page.locator("#job")).to_have_attribute("data-status", "passed", timeout=30_000)
    await page.reload()
    decision = page.locator('#gates .decisions li[data-decision="approved"]')
    await expect(decision).to_contain_text("Stage release approved by")
    await expect(decision).to_contain_text("looks good")
    await expect(page.locator('.g-stage[data-stage="build"]')).to_have_attribute("data-state", "passed")
    await expect(page.locator('.g-stage[data-stage="announce"]')).to_have_attribute("data-state", "passed")
    await shot(page, "approval-approved")
    assert (await queen.job(job["id"]))["approvals"][0]["comment"] == "looks good"


async def test_a_member_sees_the_wait_but_no_buttons_on_an_admin_gate_and_the_dashboard_says_waiting(
        queen: Cluster, page: Page) -> None:
    await queen.add_drone("d1")
    admin = await first_admin(queen)
    await admin.call("POST", "/users", {"username": "bob", "password": "bob's long pw", "role": "member"})
    job = await _waiting(queen, "members", call=admin)
    assert job["status"] == "waiting"

    await page.goto(f"/jobs/{job['id']}")
    await page.get_by_label("Username").fill("bob")
    await page.get_by_label("Password").fill("bob's long pw")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"**/jobs/{job['id']}")
    gate = page.locator('#gates .gate[data-stage="release"]')
    await expect(gate).to_contain_text("Only an admin may decide; you are member")
    assert await gate.locator("button").count() == 0
    await expect(page.locator("#steps .cmd").first).to_be_visible()  # its log drawn (its job:started replayed)
    await expect(page.locator("#job-status")).to_have_text("waiting")
    await expect(page.locator(".attempts li")).to_have_count(1)  # one attempt so far: up to the gate
    await shot(page, "approval-member")
    await page.goto("/")
    row = page.locator(f'a[href="/jobs/{job["id"]}"]').first
    await expect(row).to_be_visible()
    await expect(page.locator(".status.st-waiting").first).to_have_text("waiting")
    await shot(page, "approval-dashboard")


async def test_trigger_follow_waits_at_the_gate_and_follows_the_job_to_its_end_once_approved(queen: Cluster,
                                                                                            tmp_path: Path) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("followed", GATED.replace("TIMEOUT", "1h"))
    follow = await Command(tmp_path, ("trigger", "followed", "--follow", *url(queen))).start()
    await follow.wait_output("waits for an approval (an admin, within 1h)", stream="err")
    job = await queen.wait_job((await queen.get("/repos/followed/jobs"))["jobs"][0]["id"], {"waiting"})
    await queen.request("POST", f"/jobs/{job['id']}/approvals", {"stage": "release", "decision": "approve"},
                        expect=200)
    done = await follow.finish(60)
    assert done.code == 0, done
    assert "releasing v1" in done.out and "Job passed" in done.out
    assert "stage release approved by the queen's owner (no users yet): the job goes on (attempt 2)" in done.out


async def test_a_gate_before_a_deploy_stage_of_a_test_deploy_job(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("deploys", """
artifacts: ["dist/*"]
stages:
  - {name: test, steps: ["mkdir -p dist && echo pkg > dist/app.pkg"]}
  - {name: production, deploy: true, needs: [test], approval: {role: member}, steps: ["cat dist/app.pkg"]}
""")
    job = await queen.wait_job((await queen.trigger("deploys", type="TEST_DEPLOY"))["id"], SETTLED)
    assert job["status"] == "waiting"
    outcome = await queen.get(f"/jobs/{job['id']}/outcome")
    assert [(s["name"], s["status"]) for s in outcome["stages"]] == [("test", "passed"), ("production", "waiting")]
    await queen.request("POST", f"/jobs/{job['id']}/approvals", {"stage": "production", "decision": "approve"},
                        expect=200)
    done = await queen.wait_job(job["id"])
    assert done["status"] == "passed", done.get("error")
    assert [c["stage"] for c in done["commands"] if c.get("stage") in ("test", "production")] == ["test", "production"]
    assert "pkg" in _printed(await queen.events(job["id"]))


async def test_a_drone_cannot_leave_a_job_without_a_gate_waiting(queen: Cluster) -> None:
    """A drone that is not Apiary's (a bare socket) says a job with no approval gate stopped at one: nobody
    could decide on it and no timeout would end it, so the job ends errored, saying why, its slot freed."""
    await queen.create_pipeline_repo("plain", 'stages: [{name: build, steps: ["true"]}]')
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(queen.endpoint)
    try:
        await sock.send(encode(Msg.DRONE_INFO, {"id": "liar", "capacity": 1, "speed": 1.0,
                                                "version": PROTOCOL_VERSION, "jobs": []}))
        job = await queen.trigger("plain")
        while True:
            kind, body = decode(await asyncio.wait_for(sock.recv(), 10))
            if kind is Msg.QUEUE_NEW:
                break
        head = {"id": body["id"], "attempt": body["attempt"]}
        seq = int(body.get("first_seq") or 1)
        for msg, fields in [(Msg.JOB_STARTED, {"timestamp": time.time()}),
                            (Msg.JOB_DONE, {"timestamp": time.time(), "result": "waiting", "at_gate": True})]:
            await sock.send(encode(msg, {**head, "seq": seq, **fields}))
            seq += 1
        ended = await queen.wait_job(job["id"], SETTLED)
        await sock.send(encode(Msg.DRONE_BYE, {}))
    finally:
        sock.close()
        ctx.term()
    assert ended["status"] == "errored", ended
    assert ended["error"] == "drone liar reported a wait at no approval gate"
