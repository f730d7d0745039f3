"""Jobs are contained: each command in a sandbox of its own (bubblewrap), seeing nothing of other jobs, the drone or
the queen, leaving nothing behind; without the sandbox, what a command leaves is still killed."""

from __future__ import annotations

import asyncio
import os
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
    store_port = queen.store_port
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
                                       "APIARY_DRONE_JOB_MAX_MEMORY": str(2 * 2**30),
                                       "APIARY_DRONE_JOB_MAX_PROCESSES": "500"})
    await cluster.create_pipeline_repo("limits", 'stages: [{name: s, steps: ["ulimit -n; ulimit -d; ulimit -p"]}]')
    job = await cluster.wait_job((await cluster.trigger("limits"))["id"])
    assert output_lines(await cluster.events(job["id"]), "job:cmd:stdout") == ["1024", str(2 * 2**20), "500"]


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


def _own_address() -> str | None:
    """This machine's address on its way out (not loopback), or None when it has none."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # a UDP connect sends nothing: it only picks the route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


async def test_a_jobs_commands_share_one_network_that_reaches_out_but_not_the_loopback(queen: Cluster) -> None:
    """Every command of a job (parallel stages too) is in the job's network, which reaches the internet side of
    slirp4netns (here: a port of this machine's own address; DNS at 10.0.2.3) and not a port on 127.0.0.1;
    the next job has a network of its own."""
    import socket
    loopback = socket.create_server(("127.0.0.1", 0))
    address = _own_address()
    outside = socket.create_server((address, 0)) if address else None
    try:
        await queen.add_drone("d1", env=SANDBOXED)
        probe = ["import socket, struct",
                 f"print('loopback', socket.socket().connect_ex(('127.0.0.1', {loopback.getsockname()[1]})))",
                 *([f"print('outside', socket.socket().connect_ex(('{address}', {outside.getsockname()[1]})))"]
                   if outside else []),
                 "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)",
                 ("s.sendto(struct.pack('>6H', 7, 256, 1, 0, 0, 0) + b'\\x07example\\x03com\\x00\\x00\\x01\\x00\\x01', "
                  "('10.0.2.3', 53))"),
                 "try:", "    print('dns', 'answered, rcode', s.recv(512)[3] & 15)",
                 "except OSError as exc:", "    print('dns', exc)"]
        pipeline = ("parallel: 2\nstages:\n"
                    "  - name: a\n    steps:\n"
                    "      - echo a $(readlink /proc/self/ns/net)\n"
                    "      - |\n        python3 - <<'EOF'\n" + "".join(f"        {line}\n" for line in probe) +
                    "        EOF\n"
                    "      - echo tap0 $(grep -c tap0 /proc/net/dev)\n"
                    "  - name: b\n    steps:\n"
                    "      - echo b $(readlink /proc/self/ns/net)\n"
                    "      - echo b2 $(readlink /proc/self/ns/net)\n")
        await queen.create_pipeline_repo("net", pipeline)
        first = await queen.wait_job((await queen.trigger("net"))["id"])
        second = await queen.wait_job((await queen.trigger("net"))["id"])
        printed = {}
        for job in (first, second):
            lines = output_lines(await queen.events(job["id"]), "job:cmd:stdout")
            assert job["status"] == "passed", lines
            printed[job["id"]] = dict(line.split(" ", 1) for line in lines)
        said = printed[first["id"]]
        print(f"\nfirst job: {said}\nsecond job's network: {printed[second['id']]['a']}")
        assert said["a"] == said["b"] == said["b2"] != os.readlink("/proc/self/ns/net")
        assert said["a"].startswith("net:[") and said["tap0"] == "1"
        assert said["loopback"] == "111"  # refused: nothing on the machine's loopback answers a job
        if outside:
            assert said["outside"] == "0"  # through slirp4netns, as to any address out there
        assert printed[second["id"]]["a"] not in (said["a"], os.readlink("/proc/self/ns/net"))
    finally:
        loopback.close()
        if outside:
            outside.close()


async def test_the_drones_own_python_works_in_a_job_and_credentials_stay_hidden(queen: Cluster) -> None:
    """A drone running as root runs jobs as nobody: the Python it runs on (here under /root/.pyenv, in root's
    0700 home) is shown to them read-only (sandbox_show's default), and nothing else of that home. Shown
    folders never show a credential: the drone user's ~/.ssh stays hidden inside a shown home."""
    await queen.add_drone("d1", env=SANDBOXED)
    steps = [f"{sys.base_prefix}/bin/python3 -c 'import sys; print(sys.version_info[0])'",
             f"{sys.executable} -c 'print(\"venv\")'", "id -un"]
    await queen.create_pipeline_repo("py", "stages: [{name: s, steps: [" + ", ".join(map(_yaml, steps)) + "]}]")
    job = await queen.wait_job((await queen.trigger("py"))["id"])
    printed = output_lines(await queen.events(job["id"]), "job:cmd:stdout")
    print(f"\n{sys.base_prefix} in a job: {printed}")
    assert job["status"] == "passed", (printed, queen.all_logs()[-2000:])
    assert printed == ["3", "venv", "nobody" if os.geteuid() == 0 else printed[-1]]
    await queen.drones["d1"].stop()

    home = queen.tmp / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_test").write_text("PRIVATE-KEY-1234\n")
    (home / "notes.txt").write_text("notes in a shown home\n")
    for path in (home, home / "notes.txt"):
        path.chmod(0o755)
    await queen.add_drone("d2", env={**SANDBOXED, "HOME": str(home),
                                     "APIARY_DRONE_SANDBOX_SHOW": f"python,{home},{home}/.ssh/id_test"})
    steps = [f"cat {home}/notes.txt", f"cat {home}/.ssh/id_test 2>&1; ls -A {home}/.ssh 2>&1; true"]
    await queen.create_pipeline_repo("home", "stages: [{name: s, steps: [" + ", ".join(map(_yaml, steps)) + "]}]")
    job = await queen.wait_job((await queen.trigger("home"))["id"])
    printed = output_lines(await queen.events(job["id"]), "job:cmd:stdout")
    assert job["status"] == "passed", printed
    assert printed[0] == "notes in a shown home"
    # The key file is not there, and ~/.ssh is an empty folder (ls -A says nothing).
    assert len(printed) == 2 and "No such file" in printed[1] and "PRIVATE-KEY" not in printed[1], printed


async def test_a_job_cannot_put_its_own_programs_around_its_commands(queen: Cluster) -> None:
    """The programs that set a command up (setpriv, prlimit, nsenter, bubblewrap) run by full path: a job that
    ships its own and puts them first in its PATH still runs as the job's user, in its sandbox."""
    await queen.add_drone("d1", env=SANDBOXED)
    fakes = "; ".join(f"printf '#!/bin/sh\\necho FAKE {name}\\nwhile [ \"$1\" != -- ]; do shift; done; shift; "
                      f"exec \"$@\"\\n' > /tmp/bin/{name}; chmod +x /tmp/bin/{name}"
                      for name in ("setpriv", "prlimit", "nsenter", "bwrap"))
    pipeline = ("env: {PATH: /tmp/bin:/usr/local/bin:/usr/bin:/bin}\n"
                f"stages: [{{name: s, steps: [{_yaml('mkdir -p /tmp/bin; ' + fakes)}, 'echo uid $(id -u)']}}]")
    await queen.create_pipeline_repo("sneaky", pipeline)
    job = await queen.wait_job((await queen.trigger("sneaky"))["id"])
    said = output_lines(await queen.events(job["id"]), "job:cmd:stdout")
    assert job["status"] == "passed", said
    assert said == [f"uid {subprocess.run(['id', '-u', 'nobody'], capture_output=True, text=True).stdout.strip()}"]
