"""A shell in a failed job's kept workspace, through the page's WebSocket, on a real queen and drone (issue 18.2)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Page, expect

from tests.browser import browser, page, shot  # noqa: F401  (fixtures)
from tests.cluster import Cluster, Proc, _env, output_lines
from tests.e2e.test_users import Caller, _close_callers, first_admin  # noqa: F401  (fixture)
from tests.unit.test_debug_masking import screen

SECRET = "s3cr3t-value-42"
PIPELINE = """
debug: {keep: true, idle: 3s, total: 60s}
env: {GREETING: hello}
stages:
  - name: build
    steps: ["echo made-by-the-job > made.txt", "exit 3"]
"""


def ws_url(cluster: Cluster) -> str:
    return cluster.api.replace("http://", "ws://").replace("/api/v1", "/ws")


async def until(ws: aiohttp.ClientWebSocketResponse, ok: Any, what: str, seen: list[dict[str, Any]],
                timeout: float = 20.0) -> dict[str, Any]:
    """The first message `ok` accepts (every message read lands in `seen`)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}; got {seen[-20:]}")
        try:
            message = await ws.receive(timeout=left)
        except TimeoutError:
            continue
        assert message.type is aiohttp.WSMsgType.TEXT, message
        item = json.loads(message.data)
        seen.append(item)
        if ok(item):
            return item


def output(seen: list[dict[str, Any]]) -> str:
    return "".join(m["text"] for m in seen if m.get("type") == "debug:output")


async def test_a_shell_in_a_failed_job(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", PIPELINE)
    await queen.request("PUT", "/repos/app/secrets/SOME_ENV", {"value": SECRET}, expect=200)
    failed = await queen.wait_job((await queen.trigger("app"))["id"])
    assert failed["status"] == "failed"
    state = await queen.get(f"/jobs/{failed['id']}/debug")
    assert state["available"] is True and state["keep"] is True and state["idle"] == 3.0, state

    await queen.create_pipeline_repo("plain", "stages: [{name: s, steps: ['true']}]")
    passed = await queen.wait_job((await queen.trigger("plain"))["id"])
    seen: list[dict[str, Any]] = []
    started = time.monotonic()
    async with queen.http.ws_connect(ws_url(queen)) as ws:
        # Refused, saying why: a job that passed.
        await ws.send_json({"op": "debug", "action": "open", "job": passed["id"], "rows": 24, "cols": 80})
        refused = await until(ws, lambda m: m.get("type") == "debug:refused", "a refusal", seen)
        assert "passed" in refused["error"] and "only in a failed job" in refused["error"]
        await ws.send_json({"op": "debug", "action": "open", "job": failed["id"], "rows": 0, "cols": 80})
        refused = await until(ws, lambda m: m.get("type") == "debug:refused", "a refusal", seen)
        assert refused["error"].startswith("rows:")

        await ws.send_json({"op": "debug", "action": "open", "job": failed["id"], "rows": 24, "cols": 80})
        opened = await until(ws, lambda m: m.get("type") == "debug:opened", "the shell", seen)
        session = opened["session"]
        print(f"shell opened in {time.monotonic() - started:.2f} s")
        # A second shell in the same job: past the cap (one by default).
        await ws.send_json({"op": "debug", "action": "open", "job": failed["id"], "rows": 24, "cols": 80})
        refused = await until(ws, lambda m: m.get("type") == "debug:refused", "a refusal", seen)
        assert "already open" in refused["error"]

        await ws.send_json({"op": "debug", "action": "input", "session": session, "data": "cat made.txt\r"})
        await until(ws, lambda m: "made-by-the-job" in output(seen).split("cat made.txt", 1)[-1], "cat's output",
                    seen)
        await ws.send_json({"op": "debug", "action": "input", "session": session,
                            "data": "echo \"[$GREETING] [$SOME_ENV]\"\r"})
        await until(ws, lambda m: "[hello] [********]" in output(seen), "the masked secret", seen)
        assert SECRET not in output(seen)
        # What the terminal shows is masked, whatever sits between the secret's characters: a " \b" after each
        # (written one at a time, with pauses), a colour reset in the middle.
        mark = len(output(seen))
        await ws.send_json({"op": "debug", "action": "input", "session": session, "data":
                            "T=$SOME_ENV; for i in $(seq 0 14); do printf %s \"${T:$i:1}\"; sleep 0.05; "
                            "printf ' \\b'; done; echo; printf '%s\\e[m%s\\n' \"${T:0:7}\" \"${T:7}\"; "
                            "echo fin$((6*7))\r"})
        await until(ws, lambda m: "fin42" in output(seen)[mark:], "the printed secret", seen)
        shown = [screen(line) for line in output(seen)[mark:].split("\n")]
        assert not [line for line in shown if any(SECRET[i:i + 3] in line for i in range(len(SECRET) - 2))], shown
        # 200 KB sent as fast as the socket takes it, in messages of at most 32 K characters: every byte arrives,
        # in order (the PTY takes 4 KiB lines at most in cooked mode: lines of 1000).
        await ws.send_json({"op": "debug", "action": "input", "session": session,
                            "data": "stty -echo; cat > in.txt\r"})
        await asyncio.sleep(0.3)
        lines = "".join(f"{i:05d} {'x' * 993}\n" for i in range(200))
        started = time.monotonic()
        for start in range(0, len(lines), 30_000):
            await ws.send_json({"op": "debug", "action": "input", "session": session,
                                "data": lines[start:start + 30_000]})
        await ws.send_json({"op": "debug", "action": "input", "session": session,
                            "data": "\x04stty echo; wc -c < in.txt; sha256sum in.txt\r"})
        want = hashlib.sha256(lines.encode()).hexdigest()
        await until(ws, lambda m: want in output(seen), "every byte of the input", seen)
        print(f"200 KB of input into the shell in {time.monotonic() - started:.2f} s")
        # Nothing more typed: it idles out after 3 s.
        closed = await until(ws, lambda m: m.get("type") == "debug:closed", "the idle end", seen)
        assert closed["how"] == "idle", closed
    state = await queen.get(f"/jobs/{failed['id']}/debug")
    [recorded] = state["sessions"]
    assert recorded["how"] == "idle" and recorded["drone"] == "d1" and recorded["duration"] >= 3, recorded
    assert recorded["user"]


async def test_the_page_opens_a_terminal(queen: Cluster, page: Page) -> None:  # noqa: F811  (the fixture)
    await queen.add_drone("d1")
    # Kept by the repository's setting (the settings page's checkbox) rather than the pipeline's keep.
    await queen.create_pipeline_repo("app", PIPELINE.replace("keep: true, ", ""))
    await page.goto("/repos/app/settings")
    await page.get_by_label("Keep a failed job's workspace for a debug shell").check()
    await shot(page, "debug-settings")
    await page.get_by_role("button", name="Save settings").click()
    await queen.wait_for(lambda: queen.get("/repos/app"), lambda r: r.get("debug_keep") is True, "the setting")
    await queen.request("PUT", "/repos/app/secrets/SOME_ENV", {"value": SECRET}, expect=200)
    failed = await queen.wait_job((await queen.trigger("app"))["id"])
    await page.goto(f"/jobs/{failed['id']}")
    await expect(page.locator("#debug-open")).to_be_enabled()
    await page.click("#debug-open")
    rows = page.locator("#debug-term .xterm-rows")
    await expect(rows).to_contain_text("debug:", timeout=15_000)  # the prompt
    await page.locator("#debug-term").click()
    await page.keyboard.type("cat made.txt; echo \"[$SOME_ENV]\"")
    await page.keyboard.press("Enter")
    await expect(rows).to_contain_text("made-by-the-job")
    await expect(rows).to_contain_text("[********]")
    assert SECRET not in await rows.inner_text()
    await shot(page, "debug-shell")
    await page.click("#debug-close")
    await expect(page.locator("#debug-note")).to_contain_text("shell ended:")  # closed (or idle, 3 s)
    await expect(page.locator("#debug-session-rows tr")).to_have_count(1)
    await shot(page, "debug-shell-ended")


def read_until(fd: int, want: str, seen: bytearray, timeout: float = 20.0) -> str:
    """What the terminal showed up to `want` (blocking reads of a pty's master, for a CLI under test)."""
    deadline = time.monotonic() + timeout
    while want.encode() not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {want!r} on the terminal; it showed {bytes(seen)[-2000:]!r}")
        os.set_blocking(fd, False)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.02)
            continue
        except OSError:  # EIO: the other side closed
            break
        seen += chunk
    return seen.decode("utf-8", "replace")


async def test_apiary_debug_in_a_terminal(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", PIPELINE)
    await queen.request("PUT", "/repos/app/secrets/SOME_ENV", {"value": SECRET}, expect=200)
    queen_job = (await queen.wait_job((await queen.trigger("app"))["id"]))["id"]
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APIARY_")}
    # A pty of its own, so that the test can see it go raw and come back (the CLI's stdin is the slave).
    cli = subprocess.Popen([sys.executable, "-m", "apiary.cli", "debug", "app#1", "--url", queen.api],  # noqa: ASYNC220
                           stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    seen = bytearray()
    try:
        await asyncio.to_thread(read_until, master, "exit to leave", seen)
        assert not termios.tcgetattr(slave)[3] & termios.ECHO  # raw: the shell echoes, not the terminal
        os.write(master, b"cat made.txt; echo \"[$SOME_ENV]\"\r")
        shown = await asyncio.to_thread(read_until, master, "[********]", seen)
        assert "made-by-the-job" in shown and SECRET not in shown
        os.write(master, b"exit 0\r")
        shown = await asyncio.to_thread(read_until, master, "the shell ended: exited", seen)
        assert await asyncio.to_thread(cli.wait, 20) == 0
        assert termios.tcgetattr(slave) == before  # the terminal as it was
        # A refusal (a job that passed) is one line and exit 1, and leaves the terminal as it was.
        await queen.create_pipeline_repo("plain", "stages: [{name: s, steps: ['true']}]")
        await queen.wait_job((await queen.trigger("plain"))["id"])
        refused = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "apiary.cli", "debug", "plain#1", "--url", queen.api],
            stdin=slave, capture_output=True, text=True, env=env, timeout=30, check=False)
        assert refused.returncode == 1, refused
        assert refused.stderr.strip().startswith("apiary: error: no debug shell: job ") and \
            "only in a failed job" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
        assert termios.tcgetattr(slave) == before
        # Input that is no terminal: refused before a shell opens, exit 2.
        sessions = len((await queen.get(f"/jobs/{queen_job}/debug"))["sessions"])
        for given in (subprocess.DEVNULL, None):
            piped = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "apiary.cli", "debug", "app#1", "--url", queen.api],
                stdin=given, input="id\n" if given is None else None, capture_output=True, text=True, env=env,
                timeout=30, check=False)
            assert piped.returncode == 2 and "needs a terminal" in piped.stderr, piped
        assert len((await queen.get(f"/jobs/{queen_job}/debug"))["sessions"]) == sessions
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        os.close(master)
        os.close(slave)


@contextlib.contextmanager
def run_debug(folder: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, bytearray]]:
    """`apiary run --debug FOLDER` on a terminal of its own: (the process, the terminal's master end, what was
    read from it so far). The process is killed and the terminal closed afterwards."""
    master, slave = os.openpty()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APIARY_")}, "SHELL": "/bin/sh"}
    run = subprocess.Popen([sys.executable, "-m", "apiary.cli", "run", "--debug", str(folder)],
                           stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    try:
        yield run, master, bytearray()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        os.close(master)
        os.close(slave)


async def test_apiary_run_debug_opens_a_shell_after_the_failing_step(tmp_path: Path) -> None:
    (tmp_path / ".apiary.yml").write_text("""
env: {GREETING: hello}
stages:
  - name: build
    steps: ["echo made-by-the-job > made.txt", "exit 3", "echo never"]
    on_failure: ["echo on_failure ran after the shell"]
""")
    with run_debug(tmp_path) as (run, master, seen):
        shown = await asyncio.to_thread(read_until, master, "exit to go on", seen)
        assert "on_failure ran" not in shown  # the shell comes right after the failing step
        os.write(master, b"cat made.txt; echo \"[$GREETING] [$APIARY_DEBUG]\"\n")
        await asyncio.to_thread(read_until, master, "[hello] [1]", seen)
        assert "made-by-the-job" in bytes(seen).decode()
        os.write(master, b"sleep 1.5; exit\n")
        shown = await asyncio.to_thread(read_until, master, "on_failure ran after the shell", seen)
        assert await asyncio.to_thread(run.wait, 30) == 1  # the job's result: failed
        assert "never" not in shown.split("exit to go on", 1)[1].replace("echo never", "")
        # The summary gives the job's time, the person's time in the shell apart.
        summary = await asyncio.to_thread(read_until, master, "in the debug shell)", seen)
        job, shell = re.search(r"Job failed in ([0-9.]+)s\S* \(and ([0-9.]+)s in the debug shell\)", summary).groups()
        assert float(shell) >= 1.5 > float(job), summary


async def test_apiary_run_debug_holds_the_other_stages_output_while_the_shell_is_open(tmp_path: Path) -> None:
    (tmp_path / ".apiary.yml").write_text("""
parallel: 2
stages:
  - name: breaks
    steps: ["exit 3"]
  - name: talks
    steps: ["sleep 1; echo other-stage-said-this"]
""")
    with run_debug(tmp_path) as (run, master, seen):
        await asyncio.to_thread(read_until, master, "exit to go on", seen)
        await asyncio.sleep(2)  # the other stage has printed by now
        os.write(master, b"echo shell-still-here\n")
        shown = await asyncio.to_thread(read_until, master, "shell-still-here\r\n", seen)
        assert "other-stage-said-this" not in shown.split("exit to go on", 1)[1], shown
        os.write(master, b"exit\n")
        shown = await asyncio.to_thread(read_until, master, "other-stage-said-this\r\n", seen)
        assert shown.index("the shell ended") < shown.rindex("other-stage-said-this")
        assert await asyncio.to_thread(run.wait, 30) == 1


async def test_the_shell_is_in_the_jobs_sandbox(queen: Cluster) -> None:
    await queen.add_drone("d1", env={"APIARY_DRONE_SANDBOX": "bwrap", "APIARY_DRONE_JOB_USER": "nobody"})
    await queen.create_pipeline_repo("app", PIPELINE)
    failed = await queen.wait_job((await queen.trigger("app"))["id"])
    assert failed["status"] == "failed", failed
    seen: list[dict[str, Any]] = []
    async with queen.http.ws_connect(ws_url(queen)) as ws:
        await ws.send_json({"op": "debug", "action": "open", "job": failed["id"], "rows": 24, "cols": 80})
        opened = await until(ws, lambda m: m.get("type") == "debug:opened", "the shell", seen)
        assert opened["sandboxed"] is True
        session = opened["session"]
        await ws.send_json({"op": "debug", "action": "input", "session": session,
                            "data": "echo \"<$(id -un)@$(hostname)> $(cat made.txt)\"; ls /proc | grep -c '^[0-9]'\r"})
        await until(ws, lambda m: "<nobody@apiary-job> made-by-the-job" in output(seen), "who and where", seen)
        await ws.send_json({"op": "debug", "action": "resize", "session": session, "rows": 40, "cols": 132})
        await ws.send_json({"op": "debug", "action": "input", "session": session, "data": "stty size\r"})
        await until(ws, lambda m: "40 132" in output(seen), "the new size", seen)
        await ws.send_json({"op": "debug", "action": "input", "session": session, "data": "exit\r"})
        closed = await until(ws, lambda m: m.get("type") == "debug:closed", "the end", seen)
        assert closed["how"] == "exited", closed
    # A drone killed with a workspace kept deletes it when it starts again; a shell there is then refused.
    drone = queen.drones["d1"]
    workspaces = queen.tmp / "drones" / "d1" / "workspaces"
    assert any((w / "made.txt").exists() for w in workspaces.iterdir())
    await drone.stop(signal.SIGKILL)
    await drone.start()
    await queen.wait_for(lambda: _kept(workspaces), lambda kept: not kept, "the kept workspace to go")
    async with queen.http.ws_connect(ws_url(queen)) as ws:
        # Until the restarted drone's new connection is admitted, the queen still holds the killed one
        # (a SIGKILL says no goodbye) and answers that the drone is gone: ask again until it is back.
        deadline = time.monotonic() + 20
        while True:
            await ws.send_json({"op": "debug", "action": "open", "job": failed["id"], "rows": 24, "cols": 80})
            refused = await until(ws, lambda m: m.get("type") == "debug:refused", "a refusal", seen)
            if "is gone" not in refused["error"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert "not kept on this drone" in refused["error"], refused
    # The drone said so: the API (and the page's button) say it too, until that drone process goes.
    state = await queen.get(f"/jobs/{failed['id']}/debug")
    assert state["available"] is False and "not kept on this drone" in state["why"], state
    state = await queen.get(f"/jobs/{failed['id']}/debug")
    assert [s["how"] for s in state["sessions"]] == ["exited", "refused"], state


async def test_a_drones_jobs_cannot_read_another_drones_workspaces_on_the_same_host(queen: Cluster) -> None:
    sandboxed = {"APIARY_DRONE_SANDBOX": "bwrap", "APIARY_DRONE_JOB_USER": "nobody"}
    # d2's work dir outside d1's hidden paths and outside /tmp (a job has its own /tmp), as an operator's would be.
    work = Path(tempfile.mkdtemp(prefix="apiary-test-d2-", dir="/var/lib"))
    work.chmod(0o755)  # as `mkdir` makes it
    other = Proc("drone-d2", ["drone", "--queen", queen.endpoint, "--id", "d2", "--work-dir", str(work)],
                 queen.tmp / "logs", _env(sandboxed))
    queen.drones["d2"] = other
    try:
        await other.start()
        await queen.wait_for(lambda: _is_dir(work / "tmp"), bool, "d2's folders")
        await _peek_at(queen, other, work, sandboxed)
    finally:
        await other.stop()
        shutil.rmtree(work, ignore_errors=True)


async def _peek_at(queen: Cluster, other: Proc, work: Path, sandboxed: dict[str, str]) -> None:
    # What a job running on d2 leaves there: its workspace and its /tmp, owned by the job user, as jobs make them.
    nobody = pwd.getpwnam("nobody")
    for top, name in ((work / "workspaces" / "k-0123456789abcdef", "private.txt"),
                      (work / "tmp" / "k-0123456789abcdef", "home/notes.txt")):
        (top / name).parent.mkdir(parents=True, mode=0o755)
        (top / name).write_text("d2-private-data\n")
        for path in (top, *(top / name).parents, top / name):
            if path.is_relative_to(top):
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
    await other.stop()
    await queen.add_drone("d1", env=sandboxed)
    await queen.create_pipeline_repo("peek", "stages: [{name: s, steps: ['" + "; ".join(
        f"ls {work}/{f}; cat {work}/{f}/*/private.txt {work}/{f}/k-0123456789abcdef/home/notes.txt"
        for f in ("workspaces", "tmp")) + "; true']}]")
    job = await queen.wait_job((await queen.trigger("peek"))["id"])
    assert job["status"] == "passed" and job["drone"] == "d1", job
    events = await queen.events(job["id"])
    shown = output_lines(events, "job:cmd:stdout") + output_lines(events, "job:cmd:stderr")
    assert not any("d2-private-data" in line or "k-0123456789abcdef" in line.split("/")[-1] for line in shown), shown
    assert any("Permission denied" in line for line in shown), shown


async def _is_dir(path: Path) -> bool:
    return path.is_dir()


async def test_a_shell_ends_on_the_drone_when_the_queen_lost_the_drone(queen: Cluster) -> None:
    drone = await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", PIPELINE.replace("idle: 3s", "idle: 60s"))
    failed = await queen.wait_job((await queen.trigger("app"))["id"])
    seen: list[dict[str, Any]] = []
    async with queen.http.ws_connect(ws_url(queen)) as ws:
        await ws.send_json({"op": "debug", "action": "open", "job": failed["id"], "rows": 24, "cols": 80})
        session = (await until(ws, lambda m: m.get("type") == "debug:opened", "the shell", seen))["session"]
        await ws.send_json({"op": "debug", "action": "input", "session": session, "data": "echo pid=$$.\r"})
        await until(ws, lambda m: re.search(r"pid=(\d+)\.", output(seen)) is not None, "the shell's pid", seen)
        pid = int(re.search(r"pid=(\d+)\.", output(seen)).group(1))  # type: ignore[union-attr]
        assert drone.proc is not None
        os.kill(drone.proc.pid, signal.SIGSTOP)  # paused longer than the queen waits for a drone
        try:
            closed = await until(ws, lambda m: m.get("type") == "debug:closed", "the queen to end it", seen, 40)
            assert closed["how"] == "drone gone", closed
        finally:
            os.kill(drone.proc.pid, signal.SIGCONT)
    await queen.wait_for(lambda: _alive(pid), lambda alive: not alive, "the orphaned shell to end on the drone", 30)


async def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")


async def test_quick_opens_and_closes_then_a_stopped_drone_leave_no_shell_processes(queen: Cluster) -> None:
    drone = await queen.add_drone("d1", env={"APIARY_DRONE_SANDBOX": "bwrap", "APIARY_DRONE_JOB_USER": "nobody"})
    await queen.create_pipeline_repo("app", PIPELINE.replace("idle: 3s", "idle: 60s"))
    failed = await queen.wait_job((await queen.trigger("app"))["id"])
    work = str(queen.tmp / "drones" / "d1")
    seen: list[dict[str, Any]] = []
    async with queen.http.ws_connect(ws_url(queen)) as ws:
        for _ in range(15):  # closed right after it is asked for, opened or not
            await ws.send_json({"op": "debug", "action": "open", "job": failed["id"], "rows": 24, "cols": 80})
            item = await until(ws, lambda m: m.get("type") in ("debug:opened", "debug:refused"), "an answer", seen)
            if item["type"] == "debug:opened":
                await ws.send_json({"op": "debug", "action": "close", "session": item["session"]})
                await until(ws, lambda m: m.get("type") == "debug:closed", "the end", seen)
        await ws.send_json({"op": "debug", "action": "open", "job": failed["id"], "rows": 24, "cols": 80})
        await until(ws, lambda m: m.get("type") == "debug:opened", "a shell left open", seen)
        assert _shells_of(work), "the open shell's processes"
        await drone.stop()  # with a shell open
    await queen.wait_for(lambda: _async(_shells_of(work)), lambda left: not left, "no shell processes", 15)


async def _async(value: Any) -> Any:
    return value


def _shells_of(work: str) -> list[int]:
    """Processes running in a kept workspace of the drone whose work dir is `work` (bwrap's and the shell)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if work.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return [p for p in found if p != os.getpid()]


async def _kept(workspaces: Path) -> bool:
    return any((w / "made.txt").exists() for w in workspaces.iterdir()) if workspaces.is_dir() else False


async def test_only_the_configured_role_opens_a_shell(queen: Cluster) -> None:
    await queen.add_drone("d1")
    admin = await first_admin(queen)
    assert (await admin.call("POST", "/repos", {"name": "app", "pipeline": PIPELINE}))[0] == 201
    assert (await admin.call("POST", "/users", {"username": "bob", "password": "bob's long pw",
                                                 "role": "member"}))[0] == 201
    status, job = await admin.call("POST", "/repos/app/jobs", {})
    assert status == 201, job
    await queen.wait_for(lambda: admin.call("GET", f"/jobs/{job['id']}"), lambda r: r[1]["status"] == "failed",
                         "the job to fail")
    bob = Caller(queen)
    status, _ = await bob.call("POST", "/session", {"username": "bob", "password": "bob's long pw"})
    assert status == 200
    status, state = await bob.call("GET", f"/jobs/{job['id']}/debug")
    assert status == 200 and state["available"] is False and "needs the admin role" in state["why"], state
    seen: list[dict[str, Any]] = []
    async with bob.http.ws_connect(ws_url(queen)) as ws:  # his session
        await ws.send_json({"op": "debug", "action": "open", "job": job["id"], "rows": 24, "cols": 80})
        refused = await until(ws, lambda m: m.get("type") == "debug:refused", "a refusal", seen)
        assert refused["error"] == "a debug shell needs the admin role; a member may not open one"
    async with admin.http.ws_connect(ws_url(queen)) as ws:  # hers
        await ws.send_json({"op": "debug", "action": "open", "job": job["id"], "rows": 24, "cols": 80})
        opened = await until(ws, lambda m: m.get("type") == "debug:opened", "the shell", seen)
        await ws.send_json({"op": "debug", "action": "close", "session": opened["session"]})
        await until(ws, lambda m: m.get("type") == "debug:closed", "the end", seen)
    status, state = await bob.call("GET", f"/jobs/{job['id']}/debug")
    assert [(s["user"], s["how"]) for s in state["sessions"]] == [("ada", "closed")], state
    # A token deleted while its connection stays open: the shell open on it ends, and no new one opens there.
    status, made = await admin.call("POST", "/tokens", {"name": "debugging"})
    assert status == 201, made
    async with admin.http.ws_connect(ws_url(queen), headers={"Authorization": f"Bearer {made['token']}"}) as ws:
        await ws.send_json({"op": "debug", "action": "open", "job": job["id"], "rows": 24, "cols": 80})
        opened = await until(ws, lambda m: m.get("type") == "debug:opened", "the shell", seen)
        assert (await admin.call("DELETE", f"/tokens/{made['id']}"))[0] == 200
        closed = await until(ws, lambda m: m.get("type") == "debug:closed", "the shell's end", seen)
        assert closed["session"] == opened["session"] and "may no longer" in closed["detail"], closed
        await ws.send_json({"op": "debug", "action": "open", "job": job["id"], "rows": 24, "cols": 80})
        refused = await until(ws, lambda m: m.get("type") == "debug:refused", "a refusal", seen)
        assert "someone not signed in may not open one" in refused["error"], refused
