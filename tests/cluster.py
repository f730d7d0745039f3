"""Real queens and drones as child processes on ports the OS gives, for end-to-end tests.

Each process is ``sys.executable -m apiary.cli …`` with its own data directory
under the test's tmp_path; its stdout and stderr go to files there, which a
failing test prints. Heartbeats are fast so that joins, leaves and restarts
show within a second.

A queen stores in a database of its own (named after its cluster) on the test
worker's one embedded store (nx-27017, `shared_store` in tests/conftest.py),
as several queens share one MongoDB in production: starting a store for every
test cost about a second of each. A cluster made with ``store_url=None`` runs
the queen's own embedded store instead, for the tests about that store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import resource
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from pymongo import MongoClient
from pymongo.database import Database

FAST = {
    # Jobs here run as plain processes of the drone (as root in CI), so that tests can look at what they do on
    # this machine (files, process ids); tests/e2e/test_sandbox.py runs them in the sandbox, as drones do by default.
    "APIARY_DRONE_SANDBOX": "off",
    "APIARY_DRONE_JOB_USER": "",
    "APIARY_QUEEN_HEARTBEAT_INTERVAL": "0.2",
    "APIARY_QUEEN_HEARTBEAT_LIVENESS": "4",
    "APIARY_DRONE_HEARTBEAT_INTERVAL": "0.2",
    "APIARY_DRONE_HEARTBEAT_LIVENESS": "4",
    "APIARY_DRONE_RESEND_AFTER": "0.5",
}
FINAL = {"passed", "failed", "errored", "cancelled"}


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APIARY_")}
    env.update(FAST)
    env.update(extra or {})
    return env


class Proc:
    """A running apiary process with its output in files."""

    def __init__(self, name: str, args: list[str], directory: Path, env: dict[str, str],
                 file_limit: int | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.cwd = cwd  # where it runs (relative paths in its arguments are read from there)
        self.args = args
        self.dir = directory
        self.env = env
        self.file_limit = file_limit  # RLIMIT_NOFILE, soft and hard, as `ulimit -n N` sets it
        self.proc: asyncio.subprocess.Process | None = None
        self.runs = 0

    @property
    def stdout(self) -> Path:
        return self.dir / f"{self.name}.{self.runs}.out"

    @property
    def stderr(self) -> Path:
        return self.dir / f"{self.name}.{self.runs}.err"

    async def start(self) -> None:
        self.runs += 1
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "apiary.cli", *self.args, stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=err, env=self.env, preexec_fn=self._limits if self.file_limit else None,
                cwd=self.cwd)

    def _limits(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.file_limit, self.file_limit))

    async def wait_output(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.stdout.read_text(errors="replace"), re.M)
            if match:
                return match
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not print {pattern!r} in {timeout}s:\n{self.logs()}")
            await asyncio.sleep(0.02)

    def logs(self) -> str:
        return (self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace"))[-6000:]

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if not self.alive:
            return self.proc.returncode if self.proc else None
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()


class Cluster:
    """A queen, any number of drones, and an HTTP session for the queen's API."""

    def __init__(self, tmp: Path, store_url: str | None = None) -> None:
        self.tmp = tmp
        self.store_url = store_url  # a shared store's mongodb:// URL; None: the queen runs its embedded one
        # A database of its own on the shared store (a plain name, as the queen's config requires).
        self.database = "t_" + hashlib.sha1(str(tmp).encode()).hexdigest()[:20] if store_url else "apiary"
        self.queen: Proc | None = None
        self.drones: dict[str, Proc] = {}
        self.http: aiohttp.ClientSession | None = None
        self.api = ""
        self.endpoint = ""

    async def start_queen(self, env: dict[str, str] | None = None, file_limit: int | None = None) -> Proc:
        """Start the queen; on a restart it takes the same ports and data directory."""
        if self.queen is None:
            args = ["queen", "--data-dir", str(self.tmp / "queen"), "--http-port", "0",
                    "--drone-bind", "tcp://127.0.0.1:*"]
            store = ({"APIARY_QUEEN_MONGODB_URL": self.store_url, "APIARY_QUEEN_DATABASE": self.database}
                     if self.store_url else {})
            self.queen = Proc("queen", args, self.tmp / "logs", _env({**store, **(env or {})}), file_limit)
        else:
            port = self.api.rsplit(":", 1)[1].split("/")[0]
            self.queen.args = ["queen", "--data-dir", str(self.tmp / "queen"), "--http-port", port,
                               "--drone-bind", self.endpoint]
        await self.queen.start()
        self.api = (await self.queen.wait_output(r"API:\s+(\S+)")).group(1)
        self.endpoint = (await self.queen.wait_output(r"drones:\s+(\S+)")).group(1)
        if self.http is None:
            self.http = aiohttp.ClientSession()
        return self.queen

    async def add_drone(self, name: str, capacity: int = 1, speed: float = 1.0, wait: bool = True,
                        env: dict[str, str] | None = None) -> Proc:
        args = ["drone", "--queen", self.endpoint, "--id", name, "--capacity", str(capacity),
                "--speed", str(speed), "--work-dir", str(self.tmp / "drones" / name)]
        drone = Proc(f"drone-{name}", args, self.tmp / "logs", _env(env))
        self.drones[name] = drone
        await drone.start()
        if wait:
            await self.wait_for(lambda: self.drone_ids(), lambda ids: name in ids, f"drone {name} to join")
        return drone

    @property
    def store_port(self) -> int:
        """The loopback port of the store the queen uses (the shared one, or its own embedded one)."""
        if self.store_url is not None:
            return int(self.store_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        assert self.queen is not None
        port = re.search(r"embedded store \(nx-27017\) pid \d+ on port (\d+)", self.queen.logs())
        assert port, self.queen.logs()  # the queen's own embedded store: its port is in the queen's log
        return int(port[1])

    @contextlib.contextmanager
    def raw_store(self) -> Iterator[Database[dict[str, Any]]]:
        """The queen's database through a plain PyMongo client, to look at (or age) what it stored."""
        with MongoClient(f"mongodb://127.0.0.1:{self.store_port}/?directConnection=true") as client:
            yield client[self.database]

    async def drone_ids(self) -> set[str]:
        return {d["id"] for d in (await self.get("/drones"))["drones"]}

    # -- the API ---------------------------------------------------------------------

    async def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                      expect: int | None = None) -> tuple[int, Any]:
        assert self.http is not None
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.http.request(method, self.api + path, data=data,
                                     headers={"Content-Type": "application/json"}) as resp:
            payload = await resp.json(content_type=None)
            if expect is not None:
                assert resp.status == expect, f"{method} {path}: {resp.status} {payload}"
            return resp.status, payload

    async def get(self, path: str) -> Any:
        return (await self.request("GET", path, expect=200))[1]

    async def create_repo(self, name: str, *stages: tuple[str, list[str]]) -> dict[str, Any]:
        body = {"name": name, "pipeline": {"stages": [{"name": n, "steps": [{"run": s} for s in steps]}
                                                      for n, steps in stages]}}
        return (await self.request("POST", "/repos", body, expect=201))[1]

    async def create_pipeline_repo(self, name: str, pipeline: str, **settings: Any) -> dict[str, Any]:
        """A repository whose pipeline (YAML text) is stored on the queen."""
        body = {"name": name, "pipeline": pipeline, "pipeline_source": "queen", **settings}
        return (await self.request("POST", "/repos", body, expect=201))[1]

    async def commands(self, job_id: str) -> list[dict[str, Any]]:
        return (await self.job(job_id))["commands"]

    async def trigger(self, repo: str, **body: Any) -> dict[str, Any]:
        return (await self.request("POST", f"/repos/{repo}/jobs", body, expect=201))[1]

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self.get(f"/jobs/{job_id}")

    async def wait_job(self, job_id: str, statuses: set[str] = FINAL, timeout: float = 60.0) -> dict[str, Any]:
        return await self.wait_for(lambda: self.job(job_id), lambda j: j["status"] in statuses,
                                   f"job {job_id} to be {'/'.join(sorted(statuses))}", timeout)

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        return await all_events(self.get, job_id)

    async def wait_for(self, fetch: Any, ok: Any, what: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await fetch()
            if ok(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last: {value!r}\n{self.all_logs()}")
            await asyncio.sleep(0.02)

    def all_logs(self) -> str:
        procs = ([self.queen] if self.queen else []) + list(self.drones.values())
        return "\n".join(f"--- {p.name} ---\n{p.logs()}" for p in procs if p.runs)

    async def close(self) -> None:
        await asyncio.gather(*(drone.stop() for drone in self.drones.values()))
        if self.queen is not None:
            await self.queen.stop()
        if self.http is not None:
            await self.http.close()


async def all_events(get: Any, job_id: str) -> list[dict[str, Any]]:
    """Every stored event of a job, page after page (`get(path)` answers the API's JSON)."""
    events: list[dict[str, Any]] = []
    while True:
        page = await get(f"/jobs/{job_id}/events?after={events[-1]['seq'] if events else 0}")
        events += page["events"]
        if not page["more"]:
            return events


def output_lines(events: list[dict[str, Any]], kind: str) -> list[str]:
    """The lines a job printed on one stream ("job:cmd:stdout" or "job:cmd:stderr")."""
    return "".join(e["text"] for e in events if e["type"] == kind).splitlines()
