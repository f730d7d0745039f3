"""Apiary's benchmark: starts a real queen and drones and prints figures.

    python bench/bench.py [--jobs 100] [--burst 200] [--lines 200000]

Measures, through the public API and the browser WebSocket (a job's state
change is published only once it is stored, so "seen on the WebSocket" is
"stored"):
  * dispatch latency: trigger (POST) -> job:started stored, median and p99;
  * a trivial job: trigger -> job:done stored;
  * throughput: a burst of trivial jobs on 4 drones of capacity 1;
  * output: one job printing N lines of 77 bytes (the peer benchmark's workload), seconds and lines/s,
    every line checked in order; then its raw log fetched as a zstd client does (the compression at rest);
  * the server's peak RSS: the queen and its embedded store;
  * CPU per trivial job (one at a time, and in the burst) of the server (queen, store) and of the drones
    with their jobs' processes: what a job costs, where wall-clock figures on a shared machine vary.
Figures are printed, never asserted: machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apiary.queen.store.chunks import zstd  # noqa: E402
from tests.cluster import Cluster, all_events, output_lines  # noqa: E402

# As deployed: default heartbeats, and jobs in the sandbox drones use by default (tests/cluster.py turns it off).
NORMAL = {"APIARY_QUEEN_HEARTBEAT_INTERVAL": "1.0", "APIARY_DRONE_HEARTBEAT_INTERVAL": "1.0",
          "APIARY_DRONE_RESEND_AFTER": "2.0", "APIARY_DRONE_SANDBOX": "auto", "APIARY_DRONE_JOB_USER": "nobody"}


class Watcher:
    """Follows the `jobs` topic; records when each job was seen running and finished."""

    def __init__(self) -> None:
        self.running: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self.changed = asyncio.Event()

    async def follow(self, cluster: Cluster) -> None:
        assert cluster.http is not None
        url = cluster.api.replace("http://", "ws://").replace("/api/v1", "/ws")
        async with cluster.http.ws_connect(url) as ws:
            await ws.send_json({"op": "subscribe", "topic": "jobs"})
            async for frame in ws:
                now = time.perf_counter()
                msg = json.loads(frame.data)
                status = msg.get("status")
                if msg.get("type") != "job:update" or status is None:
                    continue
                job = msg["job"]
                self.status[job] = status
                if status == "running":
                    self.running[job] = now
                elif status in ("passed", "failed", "errored", "cancelled"):
                    self.done[job] = now
                    self.changed.set()

    async def until_done(self, job_ids: list[str], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not all(j in self.done for j in job_ids):
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{sum(j in self.done for j in job_ids)}/{len(job_ids)} jobs finished")
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                pass


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int, reaped: bool = False) -> float:
    """CPU seconds (user + system) of process `pid`; with `reaped`, also of the children it has waited for
    (a drone's: its jobs' commands, their sandboxes and networks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
    return used / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds of the queen, its embedded store and the drones with their jobs, between two readings:
    on a machine shared with other work, what a job costs where wall-clock figures only say how busy it was."""

    def __init__(self, cluster: Cluster) -> None:
        assert cluster.queen is not None and cluster.queen.proc is not None
        self.queen = cluster.queen.proc.pid
        self.store = children(self.queen)
        self.drones = [d.proc.pid for d in cluster.drones.values() if d.proc is not None]

    def read(self) -> dict[str, float]:
        return {"queen": cpu_seconds(self.queen), "store": sum(cpu_seconds(p) for p in self.store),
                "drones": sum(cpu_seconds(p, reaped=True) for p in self.drones)}

    @staticmethod
    def per_job(before: dict[str, float], after: dict[str, float], jobs: int) -> str:
        """'queen Q, store S, drones D ms' of CPU per job between the readings."""
        ms = {k: (after[k] - before[k]) * 1000 / jobs for k in before}
        return (f"server {ms['queen'] + ms['store']:.1f} ms (queen {ms['queen']:.1f}, store {ms['store']:.1f}), "
                f"drones and their jobs {ms['drones']:.1f} ms")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


async def trigger(cluster: Cluster, repo: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    job = await cluster.trigger(repo)
    return job["id"], t0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100, help="sequential trivial jobs for latency")
    parser.add_argument("--burst", type=int, default=200, help="trivial jobs for throughput")
    parser.add_argument("--lines", type=int, default=200_000, help="lines printed by the output job")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="apiary-bench-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            await run(cluster, args)
        finally:
            await cluster.close()


async def run(cluster: Cluster, args: argparse.Namespace) -> None:
    await cluster.start_queen(env=NORMAL)
    for i in range(4):
        await cluster.add_drone(f"d{i}", capacity=1, env=NORMAL)
    await cluster.create_repo("trivial", ("test", ["true"]))
    # The peer benchmark's workload (../shared/peer-bench): lines of 70 x's, a space and the line's number.
    printer = (f"awk 'BEGIN {{ x = sprintf(\"%70s\", \"\"); gsub(/ /, \"x\", x); "
               f"for (i = 0; i < {args.lines}; i++) print x, i }}'")
    await cluster.create_repo("loud", ("print", [printer]))
    watcher = Watcher()
    follower = asyncio.create_task(watcher.follow(cluster))
    await asyncio.sleep(0.3)

    # 1 and 2: one job at a time, so latency is not queueing.
    for _ in range(5):  # warm-up: first inserts create the store's tables
        job_id, _ = await trigger(cluster, "trivial")
        await watcher.until_done([job_id])
    meter = CpuMeter(cluster)
    cpu_before = meter.read()
    dispatch, done = [], []
    for _ in range(args.jobs):
        job_id, t0 = await trigger(cluster, "trivial")
        await watcher.until_done([job_id])
        dispatch.append((watcher.running[job_id] - t0) * 1000)
        done.append((watcher.done[job_id] - t0) * 1000)

    cpu_seq = meter.per_job(cpu_before, meter.read(), args.jobs)

    # 3: a burst on 4 drones of capacity 1.
    cpu_before = meter.read()
    t0 = time.perf_counter()
    burst = await asyncio.gather(*(cluster.trigger("trivial") for _ in range(args.burst)))
    ids = [j["id"] for j in burst]
    await watcher.until_done(ids)
    burst_s = max(watcher.done[j] for j in ids) - t0
    passed = sum(watcher.status[j] == "passed" for j in ids)
    await asyncio.sleep(0.2)  # the drones' last cleanups
    cpu_burst = meter.per_job(cpu_before, meter.read(), args.burst)

    # 4: one job printing many lines.
    job_id, t0 = await trigger(cluster, "loud")
    await watcher.until_done([job_id])
    lines_s = watcher.done[job_id] - t0
    events = await all_events(cluster.get, job_id)
    lines = output_lines(events, "job:cmd:stdout")
    in_order = lines == [f"{'x' * 70} {i}" for i in range(args.lines)]
    chunks = sum(e["type"] == "job:cmd:stdout" for e in events)
    # The raw log as a client that accepts zstd gets it: the stored frames, so its size is the size at rest.
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(auto_decompress=False) as http, \
            http.get(cluster.api.removesuffix("/api/v1") + f"/jobs/{job_id}/log",
                     headers={"Accept-Encoding": "zstd"}) as resp:
        sent = await resp.read()
    fetch_s = time.perf_counter() - t0
    raw = zstd.decompress(sent) if resp.headers.get("Content-Encoding") == "zstd" else sent

    follower.cancel()
    assert cluster.queen is not None and cluster.queen.proc is not None
    queen_pid = cluster.queen.proc.pid
    queen_rss = peak_rss_mib(queen_pid)
    store_rss = sum(peak_rss_mib(p) for p in children(queen_pid))

    sandbox = next((line.split("apiary.drone.sandbox: ", 1)[1] for line in cluster.drones["d0"].stderr.read_text()
                    .splitlines() if "apiary.drone.sandbox: " in line), "?")
    print()
    print(f"Apiary benchmark ({args.jobs} sequential jobs, {args.burst}-job burst, {args.lines:,}-line job)")
    print(f"  drones: {sandbox}")
    print(f"  dispatch, trigger -> job:started stored   p50 {statistics.median(dispatch):6.1f} ms   "
          f"p99 {pct(dispatch, 0.99):6.1f} ms   (aim: p50 <= 5, p99 <= 25)")
    print(f"  trivial job, trigger -> job:done stored   p50 {statistics.median(done):6.1f} ms   "
          f"p99 {pct(done, 0.99):6.1f} ms   (aim: <= 20; Buildbot 4.3: 390)")
    print(f"  throughput, {args.burst} jobs on 4 drones x 1    {args.burst / burst_s:6.1f} jobs/s  "
          f"({burst_s:.2f} s, {passed} passed)   (aim: >= 100; Buildbot 4.3: 4.9)")
    print(f"  CPU per trivial job, one at a time: {cpu_seq}")
    print(f"  CPU per trivial job in the burst:   {cpu_burst}   (Buildbot 4.3's master: ~175 ms)")
    print(f"  output, {args.lines:,} lines of 77 B       {lines_s:6.2f} s  {args.lines / lines_s:10,.0f} lines/s  "
          f"{len(lines):,} lines stored in {chunks} chunks, {'all in order' if in_order else 'NOT ALL IN ORDER'}   "
          f"(aim: <= 0.4 s; Buildbot 4.3: 4.5-8.4 s)")
    print(f"  that log fetched raw                     {fetch_s:6.2f} s  {len(raw) / 2**20:.1f} MiB sent as "
          f"{len(sent) / 2**20:.2f} MiB ({resp.headers.get('Content-Encoding') or 'plain'}); compressed at rest "
          f"x{len(raw) / max(1, len(sent)):.1f}")
    print(f"  server peak RSS (queen + store)          {queen_rss + store_rss:6.1f} MiB   (queen {queen_rss:.1f}, "
          f"embedded store {store_rss:.1f})   (aim: <= Buildbot's master, 115 MB)")


def _figures(_: Any = None) -> None:  # pragma: no cover - keeps `python -m bench.bench` working
    asyncio.run(main())


if __name__ == "__main__":
    _figures()
