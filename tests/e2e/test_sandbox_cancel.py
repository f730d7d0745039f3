"""Nothing of a sandboxed job outlives it: no bubblewrap, no network namespace, no slirp4netns.

An isolated network is one namespace per job (drone/jobnet.py): a holder process (bubblewrap) and
slirp4netns beside it, made before the job comes (one is kept ready) and joined by each of its commands.
Whether the job passes, is cancelled, times out, or its drone stops or is killed, the namespace and its
processes go; a job cancelled as its sandbox starts leaves no bubblewrap behind either.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from tests.cluster import Cluster, output_lines
from tests.e2e.test_sandbox import SANDBOXED, _alive


async def test_jobs_cancelled_as_they_start_leave_no_sandbox_behind(queen: Cluster) -> None:
    """And their commands are stopped, not left to run on: one cancelled before its sandbox had started it
    used to get its SIGTERM sent to nobody, and ran to its end within the kill_grace."""
    await queen.add_drone("d1", capacity=4, env={**SANDBOXED, "APIARY_DRONE_KILL_GRACE": "30"})
    await queen.create_pipeline_repo("race", 'cleanup: ["echo cleanup"]\n'
                                             'stages: [{name: s, steps: ["echo hi; sleep 5; echo slept"]}]')
    ids: list[str] = []
    for delay in (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12):
        jobs = [(await queen.trigger("race"))["id"] for _ in range(4)]
        await queen.wait_for(lambda: queen.job(jobs[-1]), lambda j: j["status"] != "queued", "a dispatch",
                             timeout=20)
        await asyncio.sleep(delay)
        for job in jobs:
            await queen.request("POST", f"/jobs/{job}/cancel")
        ids += jobs
        for job in jobs:
            assert (await queen.wait_job(job, timeout=30))["status"] == "cancelled"
    await asyncio.sleep(0.5)
    assert _left_by_jobs(queen.tmp) == []
    for job in ids:
        assert "slept" not in output_lines(await queen.events(job), "job:cmd:stdout"), job
    assert queen.drones["d1"].alive
    assert "Traceback" not in queen.all_logs()


def _left_by_jobs(tmp: Path) -> list[str]:
    """bubblewrap processes under `tmp` other than those of the one sandbox a drone keeps ready for its next
    job (drone/warmbox.py: it waits for a command, in a workspace of its own that no job has had)."""
    alive = _alive(f"bwrap.*{tmp}")
    ready = [line for line in alive if line.endswith(f'-- /bin/sh -c eval "$(/bin/cat)"')]
    workspaces = {line.split(" --chdir ", 1)[1].split()[0] for line in ready}
    assert len(workspaces) <= 1, f"more than one sandbox kept ready: {ready}"
    for workspace in workspaces:
        assert not any(Path(workspace).iterdir()), f"the sandbox kept ready has had a job: {workspace}"
    return [line for line in alive if line not in ready]


# -- a job's network namespace -------------------------------------------------------------------------


def _processes() -> dict[int, tuple[int, str, list[str]]]:
    """Every live process on the machine (not a zombie: it has ended, only its parent has yet to hear it):
    pid -> (parent pid, start time in ticks, command line)."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            continue
        found[int(name)] = (int(fields[1]), int(fields[19]), cmdline)
    return found


def _in_netns(ns: str) -> set[int]:
    """Processes in the network namespace `ns` (as /proc/PID/ns/net names it: net:[INODE])."""
    inside = set()
    for pid in _processes():
        try:
            if os.readlink(f"/proc/{pid}/ns/net") == ns:
                inside.add(pid)
        except OSError:
            continue
    return inside


def _network_of(drone_pid: int) -> dict[tuple[int, int], str]:
    """The drone's job networks' processes (its bubblewraps and slirp4netns), by (pid, start time)."""
    procs = _processes()
    return {(pid, start): " ".join(cmd) for pid, (ppid, start, cmd) in procs.items()
            if ppid == drone_pid and cmd and cmd[0].endswith(("bwrap", "slirp4netns"))}


def _still_there(seen: dict[tuple[int, int], str]) -> list[str]:
    procs = _processes()
    return [cmd for (pid, start), cmd in seen.items() if pid in procs and procs[pid][1] == start]


@pytest.mark.parametrize("ending", ["passes", "is cancelled", "times out", "drone stops", "drone is killed"])
async def test_nothing_of_a_jobs_network_outlives_it(queen: Cluster, ending: str) -> None:
    drone = await queen.add_drone("d1", env=SANDBOXED)
    assert drone.proc is not None
    sleep = "sleep 1" if ending == "passes" else "sleep 60"
    timeout = "timeout: 3\n" if ending == "times out" else ""
    await queen.create_pipeline_repo("net", timeout + 'stages: [{name: s, steps: ["readlink /proc/self/ns/net; '
                                     + sleep + '"]}]')
    job = await queen.trigger("net")
    events = await queen.wait_for(lambda: queen.events(job["id"]),
                                  lambda evs: output_lines(evs, "job:cmd:stdout"), "the step to start")
    ns = output_lines(events, "job:cmd:stdout")[0]
    assert ns.startswith("net:[") and ns != os.readlink("/proc/self/ns/net")
    inside = _in_netns(ns)  # the holder and the command's own processes
    drones = _network_of(drone.proc.pid)  # the job's network and the one kept ready for the next job
    procs = _processes()
    slirps = [cmd for cmd in drones.values() if cmd.startswith(("slirp4netns", "/usr/bin/slirp4netns"))]
    ours = [cmd for cmd in slirps if int(cmd.split()[-2]) in inside]
    assert len(ours) == 1, (ns, inside, drones)  # one slirp4netns, attached to the job's namespace
    print(f"\njob network {ns}: {len(inside)} processes inside; the drone's network processes: "
          f"{sorted(c.split()[0].rsplit('/', 1)[-1] for c in drones.values())}")
    assert all(procs[p][2][:1] != ["slirp4netns"] for p in inside)

    started = time.monotonic()
    if ending == "is cancelled":
        await queen.request("POST", f"/jobs/{job['id']}/cancel", expect=202)
    if ending == "drone stops":
        await drone.stop(signal.SIGTERM)
    elif ending == "drone is killed":
        await drone.stop(signal.SIGKILL)
    else:
        done = await queen.wait_job(job["id"], timeout=30)
        assert done["status"] == {"passes": "passed", "is cancelled": "cancelled", "times out": "failed"}[ending]
    # The job's network goes with the job; with the drone, the one it kept ready too.
    mine = {key: cmd for key, cmd in drones.items() if ending.startswith("drone") or
            (cmd.split()[0].endswith("slirp4netns") and int(cmd.split()[-2]) in inside)}
    # Only the processes seen inside count: once the namespace is freed, the kernel may give its inode
    # number to the next namespace the drone keeps ready.
    while (_in_netns(ns) & inside or _still_there(mine)) and time.monotonic() - started < 10:
        await asyncio.sleep(0.05)
    print(f"gone {time.monotonic() - started:.2f} s after the job {ending.removeprefix('drone ')}")
    assert _in_netns(ns) & inside == set(), f"processes left in the job's network after it {ending}"
    assert _still_there(mine) == [], f"left after the job {ending}"
    if not ending.startswith("drone"):
        # The drone keeps one ready for the next job: a fresh namespace, never the one this job used.
        after = _network_of(drone.proc.pid)
        assert len([c for c in after.values() if c.split()[0].endswith("slirp4netns")]) == 1, after
        assert drone.alive
