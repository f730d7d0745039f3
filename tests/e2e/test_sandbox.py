"""Jobs are contained: each command in a sandbox of its own (bubblewrap), seeing nothing of other jobs, the drone or
the queen, leaving nothing behind; without the sandbox, what a command leaves is still killed."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.cluster import Cluster, Proc, _env, output_lines

# The default a drone has (tests/cluster.py turns the sandbox off for the other tests).
SANDBOXED = {"APIARY_DRONE_SANDBOX": "auto", "APIARY_DRONE_JOB_USER": "nobody"}


def _alive(marker: str) -> list[str]:
    """Processes on this machine whose command line holds `marker` (pgrep)."""
    found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


SNOOP = ("echo procs $(ls /proc | grep -c '^[0-9]'); cat /proc/[0-9]*/environ 2>/dev/null | tr '\\\\0' '\\\\n' "
         "| grep -c VICTIM_TOKEN; echo")


async def test_a_job_sees_no_other_job_nor_the_drone(cluster: Cluster) -> None:
    await cluster.start_queen()
    await cluster.add_drone("d1", capacity=2, env=SANDBOXED)
    await cluster.create_pipeline_repo("victim", 'stages: [{name: s, steps: ["echo started; sleep 20"]}]')
    await cluster.request("PUT", "/repos/victim/secrets/VICTIM_TOKEN", {"value": "victim-value-1234"}, expect=200)
    await cluster.create_pipeline_repo("thief", f'stages: [{{name: s, steps: ["{SNOOP}"]}}]')
    victim = await cluster.trigger("victim")
    await cluster.wait_for(lambda: cluster.events(victim["id"]),
                           lambda evs: "started" in output_lines(evs, "job:cmd:stdout"), "the victim to run")
    thief = await cluster.wait_job((await cluster.trigger("thief"))["id"])
    printed = output_lines(await cluster.events(thief["id"]), "job:cmd:stdout")
    await cluster.request("POST", f"/jobs/{victim['id']}/cancel", expect=202)
    procs = int(printed[0].split()[1])
    print(f"\nprocesses a job sees in /proc: {procs}; the other job's secret found in their environments: "
          f"{printed[1]}")
    assert procs < 10 and printed[1] == "0"


@pytest.mark.parametrize(("how", "seconds"), [("setsid sleep {} &", 3001), ("(sleep {} &);", 3002),
                                              ("nohup sleep {} >/dev/null 2>&1 &", 3003)])
async def test_nothing_a_job_starts_outlives_it(queen: Cluster, how: str, seconds: int) -> None:
    """Daemonised (setsid), double-forked or nohup'd: when the job ends, it is gone."""
    await queen.add_drone("d1", env=SANDBOXED)
    await queen.create_pipeline_repo("daemon", "stages: [{name: s, steps: [" + _yaml(how.format(seconds) +
                                                                             " sleep 0.5; echo started") + "]}]")
    job = await queen.wait_job((await queen.trigger("daemon"))["id"])
    said = "".join(e.get("text", "") for e in await queen.events(job["id"]))
    assert job["status"] == "passed", said
    await asyncio.sleep(0.5)
    assert _alive(f"sleep {seconds}") == [], f"{how!r} left a process running"


async def test_without_a_sandbox_what_a_command_leaves_is_killed_and_root_runs_jobs_as_nobody(cluster: Cluster) -> None:
    await cluster.start_queen()
    await cluster.add_drone("plain", env={"APIARY_DRONE_SANDBOX": "off", "APIARY_DRONE_JOB_USER": "nobody"})
    marker = "sleep 3004"
    step = f"setsid {marker} & id -un; sleep 0.3"
    await cluster.create_pipeline_repo("plain", f'stages: [{{name: s, steps: ["{step}"]}}]')
    job = await cluster.wait_job((await cluster.trigger("plain"))["id"])
    events = await cluster.events(job["id"])
    assert job["status"] == "passed"
    await asyncio.sleep(0.3)
    assert _alive(marker) == []
    assert "process(es) the command left running were stopped" in "".join(e.get("text", "") for e in events)
    user = output_lines(events, "job:cmd:stdout")[0]
    import os
    assert user == ("nobody" if os.geteuid() == 0 else subprocess.run(["id", "-un"], capture_output=True,
                                                                          text=True).stdout.strip())
    drone = cluster.drones["plain"]
    assert "no sandbox (bubblewrap not in use)" in drone.stderr.read_text()


async def test_a_jobs_network_keeps_the_machines_loopback_out_of_reach(queen: Cluster) -> None:
    """On one machine the queen's store and API listen on 127.0.0.1: a job cannot connect to either, or read
    the queen's data dir, while it still has a network of its own."""
    assert queen.queen is not None
    store_port = int(re.search(r"on port (\d+)", queen.queen.logs())[1])  # type: ignore[index]
    api_port = int(queen.api.split(":")[-1].split("/")[0])
    data = queen.tmp / "queen"
    await queen.add_drone("d1", env={**SANDBOXED, "APIARY_DRONE_SANDBOX_HIDE": str(data)})
    steps = [f"python3 -c \"import socket; print({port}, socket.socket().connect_ex(('127.0.0.1', {port})))\""
             for port in (store_port, api_port)]
    steps.append(f"ls {data} 2>&1 | head -1; cat {data}/secrets.key {data}/setup-token 2>&1 | head -c 80; echo")
    await queen.create_pipeline_repo("probe", "stages: [{name: s, steps: [" + ", ".join(map(_yaml, steps)) + "]}]")
    job = await queen.wait_job((await queen.trigger("probe"))["id"])
    printed = output_lines(await queen.events(job["id"]), "job:cmd:stdout")
    print("\n" + "\n".join(printed))
    assert [line.split() for line in printed[:2]] == [[str(store_port), "111"], [str(api_port), "111"]]
    key = (data / "secrets.key").read_text().strip()
    assert key not in "\n".join(printed)
    assert not any(line.startswith(("store", "setup")) for line in printed)


def _yaml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def test_apiary_up_keeps_its_jobs_from_the_queens_data(tmp_path: Path) -> None:
    data, work = tmp_path / "data", tmp_path / "work"
    up = Proc("up", ["up", "--data-dir", str(data), "--http-port", "0", "--drone-bind", "tcp://127.0.0.1:*",
                     "--work-dir", str(work)], tmp_path / "logs", _env(SANDBOXED))
    await up.start()
    try:
        api = (await up.wait_output(r"API:\s+(\S+)")).group(1)
        cluster = Cluster(tmp_path / "client")
        cluster.api = api
        import aiohttp
        cluster.http = aiohttp.ClientSession()
        try:
            await cluster.create_pipeline_repo("peek", 'stages: [{name: s, steps: ["cat ' + str(data) +
                                                       '/secrets.key ' + str(data) + '/setup-token 2>&1; true"]}]')
            job = await cluster.wait_job((await cluster.trigger("peek"))["id"])
            printed = "\n".join(output_lines(await cluster.events(job["id"]), "job:cmd:stdout"))
        finally:
            await cluster.http.close()
        assert (data / "secrets.key").read_text().strip() not in printed
        assert (data / "setup-token").read_text().strip() not in printed
        assert printed.count("No such file") + printed.count("Permission denied") == 2, printed
    finally:
        await up.stop()


async def test_a_jobs_limits_are_set(cluster: Cluster) -> None:
    await cluster.start_queen()
    await cluster.add_drone("d1", env={**SANDBOXED, "APIARY_DRONE_JOB_MAX_OPEN_FILES": "1024",
                                       "APIARY_DRONE_JOB_MAX_MEMORY": str(2 * 2**30)})
    await cluster.create_pipeline_repo("limits", 'stages: [{name: s, steps: ["ulimit -n; ulimit -d"]}]')
    job = await cluster.wait_job((await cluster.trigger("limits"))["id"])
    assert output_lines(await cluster.events(job["id"]), "job:cmd:stdout") == ["1024", str(2 * 2**20)]


def test_sandbox_settings_are_checked() -> None:
    result = subprocess.run([sys.executable, "-m", "apiary.cli", "config"], capture_output=True, text=True,
                            env={**_env(), "APIARY_DRONE_JOB_NETWORK": "open"}, timeout=60)
    assert result.returncode == 2 and "job_network: must be one of isolated, host, none" in result.stderr


async def test_a_sandboxed_job_runs_without_privileges_and_cannot_undo_its_sandbox(cluster: Cluster) -> None:
    """Even when the drone runs as root: the job is job_user, holds no capability, and cannot remount or unmount
    what hides the queen's files."""
    await cluster.start_queen()
    data = cluster.tmp / "queen"
    await cluster.add_drone("d1", env={**SANDBOXED, "APIARY_DRONE_SANDBOX_HIDE": str(data)})
    steps = ["id -u; grep CapEff /proc/self/status | awk '{print $2}'",
             "mount -o remount,rw,bind / 2>/dev/null && echo remounted || echo no-remount",
             f"umount -l {data} 2>/dev/null && echo unmounted || echo no-umount; ls {data} 2>&1 | head -1",
             "touch /PWNED 2>/dev/null && echo wrote || echo read-only"]
    await cluster.create_pipeline_repo("escape", "stages: [{name: s, steps: [" + ", ".join(map(_yaml, steps)) + "]}]")
    job = await cluster.wait_job((await cluster.trigger("escape"))["id"])
    events = await cluster.events(job["id"])
    printed = output_lines(events, "job:cmd:stdout")
    assert len(printed) == 6, "".join(e.get("text", "") for e in events)
    import os
    if os.geteuid() == 0:
        assert printed[0] == "65534", printed  # nobody
    assert printed[1] == "0000000000000000", printed
    assert printed[2:4] == ["no-remount", "no-umount"], printed
    assert "No such file" in printed[4] or "Permission denied" in printed[4], printed
    assert printed[-1] == "read-only" and not Path("/PWNED").exists()


async def test_cancel_in_a_sandbox_lets_the_traps_finish(cluster: Cluster) -> None:
    await cluster.start_queen()
    await cluster.add_drone("d1", env={**SANDBOXED, "APIARY_DRONE_KILL_GRACE": "5"})
    # The grace lasts until the command's shell ends (or kill_grace): the child's trap is the quicker one here.
    step = ("trap 'echo got-TERM; sleep 1; echo trap-done; exit 143' TERM; "
            "(trap 'echo child-got-TERM; sleep 0.2; echo child-done; exit 0' TERM; while true; do sleep 0.1; done) & "
            "echo waiting; while true; do sleep 0.1; done")
    await cluster.create_pipeline_repo("trap", "stages: [{name: s, steps: [" + _yaml(step) + "]}]")
    job = await cluster.trigger("trap")
    await cluster.wait_for(lambda: cluster.events(job["id"]),
                           lambda evs: "waiting" in output_lines(evs, "job:cmd:stdout"), "the step to start")
    await cluster.request("POST", f"/jobs/{job['id']}/cancel", expect=202)
    done = await cluster.wait_job(job["id"], timeout=20)
    printed = output_lines(await cluster.events(job["id"]), "job:cmd:stdout")
    assert done["status"] == "cancelled"
    assert {"got-TERM", "trap-done", "child-got-TERM", "child-done"} <= set(printed), printed


async def test_apiary_up_with_relative_folders_runs_sandboxed_jobs(tmp_path: Path) -> None:
    # Both children read their paths elsewhere: the embedded store from inside its folder, bubblewrap
    # from the sandbox. Relative --data-dir and --work-dir must still work.
    up = Proc("up", ["up", "--data-dir", "data", "--http-port", "0", "--drone-bind", "tcp://127.0.0.1:*",
                     "--work-dir", "work"], tmp_path / "logs", _env(SANDBOXED), cwd=tmp_path)
    await up.start()
    try:
        cluster = Cluster(tmp_path / "client")
        cluster.api = (await up.wait_output(r"API:\s+(\S+)")).group(1)
        import aiohttp
        cluster.http = aiohttp.ClientSession()
        try:
            await cluster.create_pipeline_repo("rel", 'stages: [{name: s, steps: ["echo from the sandbox"]}]')
            job = await cluster.wait_job((await cluster.trigger("rel"))["id"])
            printed = output_lines(await cluster.events(job["id"]), "job:cmd:stdout")
        finally:
            await cluster.http.close()
        assert (job["status"], printed) == ("passed", ["from the sandbox"]), (job, up.logs())
        assert (tmp_path / "data" / "store" / "nx-27017.pid").exists()
    finally:
        await up.stop()



async def test_a_sandboxed_checkout_as_the_job_user_fetches_a_repository_of_this_machine(cluster: Cluster) -> None:
    # The drone runs as root with its work dir under a folder only root may pass (pytest's tmp dir), the
    # repository belongs to root: the checkout runs as nobody in the sandbox and still gets the job its commit.
    repo = Path(tempfile.mkdtemp(prefix="apiary-shared-repo-"))
    try:
        repo.chmod(0o755)
        git = ["git", "-C", str(repo), "-c", "user.email=a@example.org", "-c", "user.name=A"]
        subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
        (repo / ".apiary.yml").write_text('stages: [{name: s, steps: ["id -un", "cat hello.txt"]}]\n')
        (repo / "hello.txt").write_text("hello from the repository\n")
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", "first"], check=True)
        await cluster.start_queen()
        await cluster.add_drone("boxed", env=SANDBOXED)
        await cluster.request("POST", "/repos", {"name": "shared", "url": f"file://{repo}"}, expect=201)
        job = await cluster.wait_job((await cluster.trigger("shared", branch="main"))["id"])
        printed = output_lines(await cluster.events(job["id"]), "job:cmd:stdout")
        assert job["status"] == "passed", (job, printed, cluster.all_logs()[-3000:])
        assert printed[-2:] == ["nobody", "hello from the repository"]
        assert len(job["ref"]["id"]) == 40
    finally:
        shutil.rmtree(repo, ignore_errors=True)
