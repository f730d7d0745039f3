"""The client commands (trigger, ls, logs, cancel, drones) as subprocesses against a real queen and drone."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import sys
import time
from pathlib import Path

from tests.cluster import Cluster

ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("APIARY_")}, "USER": "tester"}
TICKS = 'i=1; while [ $i -le {n} ]; do echo "tick $i"; sleep {pause}; i=$((i+1)); done'
PIPELINE = r"""
parameters: {GREETING: {default: hello}, CODE: {default: "0"}}
stages:
  - name: greet
    steps:
      - run: printf '\033[32mgreen\033[0m %s\n' "$GREETING"; echo to-stderr >&2; exit $CODE
        title: Say it
"""


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str


class Command:
    """`apiary ARGS` in the background, its output in files to watch while it runs."""

    def __init__(self, tmp: Path, args: tuple[str, ...]) -> None:
        self.args = args
        self.out, self.err = tmp / f"cmd{id(self)}.out", tmp / f"cmd{id(self)}.err"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Command:
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "apiary.cli", *self.args, stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=err, env=ENV)
        return self

    async def wait_output(self, text: str, stream: str = "out", timeout: float = 20.0) -> None:
        path = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout
        while text not in path.read_text():
            assert time.monotonic() < deadline, f"{self.args}: no {text!r} in {timeout}s: {self.result()}"
            await asyncio.sleep(0.02)

    def result(self) -> Result:
        assert self.proc is not None
        return Result(self.proc.returncode or 0, self.out.read_text(), self.err.read_text())

    async def finish(self, timeout: float = 30.0) -> Result:
        assert self.proc is not None
        await asyncio.wait_for(self.proc.wait(), timeout)
        return self.result()


async def apiary(tmp: Path, *args: str) -> Result:
    return await (await Command(tmp, args).start()).finish()


def url(queen: Cluster) -> list[str]:
    return ["--url", queen.api.rsplit("/api", 1)[0]]


def ticks(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^tick (\d+)$", text, re.M)]


async def test_drones_none_then_one_and_a_job_waiting_for_it(queen: Cluster, tmp_path: Path) -> None:
    none = await apiary(tmp_path, "drones", *url(queen))
    assert none == Result(0, f"no drones yet: run apiary drone --queen {queen.endpoint}\n", "")  # its real port
    await queen.create_pipeline_repo("app", PIPELINE)
    follow = await Command(tmp_path, ("trigger", "app", "--follow", *url(queen))).start()
    await follow.wait_output("queued… waiting for a drone", "err")

    await queen.add_drone("d1", capacity=2, speed=1.5)
    pool = await apiary(tmp_path, "drones", *url(queen))
    assert pool.code == 0, pool
    header, row = pool.out.splitlines()
    assert header.split() == ["ID", "HOST", "CAPACITY", "RUNNING", "SPEED", "VERSION", "HEARTBEAT"]
    cells = row.split()
    assert (cells[0], cells[2], cells[4]) == ("d1", "2", "1.5") and row.endswith("s ago"), pool.out
    done = await follow.finish()
    assert done.code == 0 and "green hello" in done.out and "Job passed" in done.out, done


async def test_trigger_follow_ls_logs_and_cancel_of_an_ended_job(queen: Cluster, tmp_path: Path) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", PIPELINE)
    passed = await apiary(tmp_path, "trigger", "app", "--param", "GREETING=hi", "--follow", *url(queen))
    assert passed.code == 0, passed
    first, rest = passed.out.split("\n", 1)
    match = re.fullmatch(r"app #1 (queued|dispatched): (\S+)/jobs/(\w+)", first)
    assert match and match.group(2) == url(queen)[1], first
    job_id = match.group(3)
    assert "▶ [test/greet] Say it\n" in rest and "\ngreen hi\n" in rest and "\x1b" not in rest  # no tty: no ANSI
    assert re.search(r"^✓ \d+\.\d\ds$", rest, re.M) and re.search(r"^Job passed in \d+\.\d\ds$", rest, re.M)
    assert "to-stderr\n" in passed.err

    failed = await apiary(tmp_path, "trigger", "app", "--param", "CODE=3", "--follow", *url(queen))
    assert failed.code == 1 and "✗ exit 3" in failed.out and "Job failed" in failed.out, failed
    unknown = await apiary(tmp_path, "trigger", "nope", "--follow", *url(queen))
    assert unknown == Result(2, "", "apiary: error: no repository 'nope'\n")
    bad_param = await apiary(tmp_path, "trigger", "app", "--param", "NOPE=1", *url(queen))
    assert bad_param.code == 2 and "parameters.NOPE: not declared by the pipeline" in bad_param.err

    listing = await apiary(tmp_path, "ls", *url(queen))
    assert listing.code == 0, listing
    header, *rows = listing.out.splitlines()
    assert header.split() == ["ID", "JOB", "STATUS", "REF", "TRIGGER", "DRONE", "DURATION", "AGE"]
    assert [r.split()[:4] for r in rows] == [[rows[0].split()[0], "app#2", "failed", "main"],
                                             [job_id, "app#1", "passed", "main"]]
    assert all(r.split()[4:7] == ["API", "tester", "d1"] for r in rows)
    assert header.index("STATUS") == rows[0].index("failed")  # aligned
    one = await apiary(tmp_path, "ls", "app", "--limit", "1", *url(queen))
    assert [r.split()[1] for r in one.out.splitlines()[1:]] == ["app#2"]
    assert (await apiary(tmp_path, "ls", "nope", *url(queen))).code == 2

    logs = await apiary(tmp_path, "logs", job_id, *url(queen))
    assert logs == Result(0, rest, "to-stderr\n")
    again = await apiary(tmp_path, "cancel", job_id, *url(queen))
    assert again == Result(1, "", f"apiary: error: job {job_id} has already ended (passed)\n")


async def test_logs_follow_and_cancel_of_a_running_job(queen: Cluster, tmp_path: Path) -> None:
    await queen.add_drone("d1")
    await queen.create_repo("slow", ("tick", [TICKS.format(n=400, pause=0.05)]))
    job = await queen.trigger("slow")
    follow = await (Command(tmp_path, ("logs", job["id"], "--follow", *url(queen)))).start()
    await follow.wait_output("tick 5\n")

    cancel = await apiary(tmp_path, "cancel", job["id"], *url(queen))
    assert cancel == Result(0, "cancelling\n", "")
    done = await follow.finish()
    assert done.code == 130 and "Job cancelled" in done.out, done
    seen = ticks(done.out)
    assert seen == list(range(1, len(seen) + 1)) and len(seen) < 400
    assert (await queen.job(job["id"]))["status"] == "cancelled"


async def test_follow_outlives_a_queen_restart_without_losing_or_doubling_a_line(queen: Cluster,
                                                                               tmp_path: Path) -> None:
    await queen.add_drone("d1")
    await queen.create_repo("slow", ("tick", [TICKS.format(n=50, pause=0.08)]))
    follow = await Command(tmp_path, ("trigger", "slow", "--follow", *url(queen))).start()
    await follow.wait_output("tick 3\n")
    assert queen.queen is not None
    await queen.queen.stop()
    await follow.wait_output("reconnecting…", "err")
    await queen.start_queen()

    done = await follow.finish()
    assert done.code == 0 and "Job passed" in done.out, done
    assert ticks(done.out) == list(range(1, 51))
    assert "Traceback" not in done.err


async def test_without_a_queen_every_command_says_so(tmp_path: Path) -> None:
    commands = [("ls",), ("drones",), ("trigger", "app", "--follow"), ("logs", "J"), ("cancel", "J"), ("prune",)]
    results = await asyncio.gather(*(apiary(tmp_path, *c, "--url", "http://127.0.0.1:9") for c in commands))
    for result in results:
        assert result == Result(1, "", "apiary: error: no queen answers at http://127.0.0.1:9 (from --url): "
                                       "start one with apiary up, or give its address with --url\n")
    bad = await apiary(tmp_path, "ls", "--url", "queen:8420")
    assert bad.code == 2 and "--url: must be an http:// or https:// URL" in bad.err


async def test_the_client_url_comes_from_the_environment_or_the_config_file(queen: Cluster, tmp_path: Path) -> None:
    await queen.create_repo("app", ("t", ["true"]))
    base = queen.api.rsplit("/api", 1)[0]
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "apiary.cli", "ls", stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env={**ENV, "APIARY_CLIENT_URL": base})
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    config = tmp_path / "apiary.toml"
    config.write_text(f'[client]\nurl = "{base}"\n')
    assert (await apiary(tmp_path, "ls", "--config", str(config))).code == 0
    # Nothing else says: the address a queen on this machine wrote down (none under this HOME), else the default
    # (asked of `apiary config`, which says where the address comes from without calling it: something else
    # on this machine may listen on 8420).
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "apiary.cli", "config", stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env={**ENV, "HOME": str(tmp_path)})
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert 'url = "http://127.0.0.1:8420"  # default' in out.decode().split("[client]", 1)[1]
