"""A job's first command starts in a sandbox made before the job came (drone/jobkit.py, drone/warmbox.py),
and sees just what a command started cold sees: the same environment, workspace, user, limits, network,
/tmp, no stdin; its exit status and signal are its own."""

from __future__ import annotations

import asyncio

from tests.cluster import Cluster, output_lines
from tests.e2e.test_sandbox import SANDBOXED

# What a command can see of where it runs. Ticks (1/100 s) from the sandbox's pid 1 starting to this probe
# starting: a sandbox made ahead was there well before the command; one made for it, at the same moment.
PROBE = ("echo age $(( $(cut -d' ' -f22 /proc/self/stat) - $(cut -d' ' -f22 /proc/1/stat) )); "
         "echo env $(env | grep -vc ^APIARY_STEP_MARK=) $(env | grep -v ^APIARY_STEP_MARK= | sort | md5sum); "
         "echo pwd $(pwd); echo user $(id -un); echo files $(ulimit -n); echo host $(hostname); "
         "echo net $(readlink /proc/self/ns/net); echo procs $(ls /proc | grep -c '^[0-9]'); "
         "echo stdin $(cat | wc -c); echo tmp $(ls /tmp); touch /tmp/seen-$$")


async def test_the_first_command_runs_in_a_sandbox_made_ahead_and_sees_what_a_cold_one_sees(queen: Cluster) -> None:
    await queen.add_drone("d1", env=SANDBOXED)
    await queen.create_pipeline_repo("probe", f"stages: [{{name: s, steps: [{_yaml(PROBE)}, {_yaml(PROBE)}]}}]")
    await asyncio.sleep(0.5)  # the drone has made its first kit
    job = await queen.wait_job((await queen.trigger("probe"))["id"])
    assert job["status"] == "passed"
    lines = output_lines(await queen.events(job["id"]), "job:cmd:stdout")
    first, second = (dict(line.split(" ", 1) for line in lines[i * 10:(i + 1) * 10]) for i in range(2))
    print(f"\nfirst command: {first}\nsecond command: {second}")
    assert int(first["age"]) >= 20, "the first command's sandbox was made for it, not ahead"
    assert int(second["age"]) <= 5, "the second command started in an old sandbox"
    for seen in ("env", "pwd", "user", "files", "host", "net"):
        assert first[seen] == second[seen], seen
    assert first["user"] == "nobody" and first["stdin"] == second["stdin"] == "0"
    assert int(first["procs"]) < 10 and int(second["procs"]) < 10  # its own PID namespace
    assert int(first["env"].split()[0]) > 10  # (the job's variables, compared whole above)
    new_in_tmp = set(second["tmp"].split()) - set(first["tmp"].split())
    assert len(new_in_tmp) == 1 and new_in_tmp.pop().startswith("seen-")  # one /tmp for the job's commands
    assert "/workspaces/k-" in first["pwd"]  # a workspace made before its job, named on its own


async def test_the_first_commands_exit_status_and_signal_are_as_a_cold_ones(queen: Cluster) -> None:
    await queen.add_drone("d1", env=SANDBOXED)
    for n, command in enumerate(("exit 3", "kill -9 $$")):
        await queen.create_pipeline_repo(f"warm{n}", f"stages: [{{name: s, steps: [{_yaml(command)}]}}]")
        await queen.create_pipeline_repo(f"cold{n}", f"stages: [{{name: s, steps: [\"true\", {_yaml(command)}]}}]")
    codes = {}
    for repo in ("warm0", "cold0", "warm1", "cold1"):
        await asyncio.sleep(0.3)  # a kit made ahead for each
        job = await queen.wait_job((await queen.trigger(repo))["id"])
        assert job["status"] == "failed"
        codes[repo] = (await queen.commands(job["id"]))[-1]["exitCode"]
    print(f"\nexit codes: {codes}")
    assert codes["warm0"] == codes["cold0"] == 3
    assert codes["warm1"] == codes["cold1"] == 128 + 9  # bubblewrap's init says a signal so


async def test_a_kept_workspace_is_found_by_its_jobs_id(queen: Cluster) -> None:
    await queen.add_drone("d1", env={**SANDBOXED, "APIARY_DRONE_KEEP_WORKSPACES": "1"})
    await queen.create_pipeline_repo("keep", "stages: [{name: s, steps: ['echo kept > result.txt']}]")
    await asyncio.sleep(0.3)
    job = await queen.wait_job((await queen.trigger("keep"))["id"])
    assert job["status"] == "passed"
    kept = queen.tmp / "drones" / "d1" / "workspaces" / job["id"]
    await queen.wait_for(lambda: _exists(kept / "result.txt"), bool, "the kept workspace")
    assert kept.is_symlink() and (kept / "result.txt").read_text() == "kept\n"


async def _exists(path):  # type: ignore[no-untyped-def]
    return path.exists()


def _yaml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
