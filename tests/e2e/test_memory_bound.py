"""The queen's memory stays bounded whatever jobs print, and goes back once their output is stored.

Drones send a job's events only while what the queen has not acked stays within their send window
(``send_window_bytes``), so jobs printing far faster than the store writes wait on their drone, not
in the queen's memory; a drone that ignores the window cannot make the queen hold more than its own
caps either. The queen's RSS is read from /proc: its peak (VmHWM) is printed and bounded generously,
well above what it takes (15-30 MB above its baseline here) and far below what it took with nothing
holding the drones back (1.5 GB for three jobs of 80 MB; a drone ignoring the window, 3 GB in 5 s).
Once the output is stored the queen gives the memory back (within 50 MB of its baseline, where it
stayed 50-70 MB above before).
"""

from __future__ import annotations

import asyncio
import time

import zmq

from apiary.core.protocol import PROTOCOL_VERSION, Msg, encode
from tests.cluster import FINAL, Cluster

LINES = 20
LINE_BYTES = 2_000_000
# 20 lines of 2 MB, each with its number in front: 40 MB a job, printed in a few seconds.
PRINT = (f"for i in $(seq 1 {LINES}); do printf 'line-%02d ' $i; head -c {LINE_BYTES} /dev/zero | tr '\\0' b; echo; "
         "done")
EXPECTED = "".join(f"line-{i:02d} {'b' * LINE_BYTES}\n" for i in range(1, LINES + 1))
MB = 2**20
BOUND = 150 * MB  # above the queen's RSS before the jobs


def memory(pid: int) -> tuple[int, int]:
    """The process's resident memory now and at its peak (VmRSS, VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


async def raw_log(cluster: Cluster, job_id: str) -> str:
    assert cluster.http is not None
    base = cluster.api.removesuffix("/api/v1")
    async with cluster.http.get(f"{base}/jobs/{job_id}/log", headers={"Accept-Encoding": "identity"}) as resp:
        assert resp.status == 200
        return await resp.text()


async def test_three_jobs_printing_40_mb_each_keep_the_queen_within_bounds(cluster: Cluster) -> None:
    queen = await cluster.start_queen()
    await cluster.add_drone("d1", capacity=3)
    await cluster.create_pipeline_repo("chatty", f"stages: [{{name: s, steps: [{PRINT!r}]}}]")
    assert queen.proc is not None
    pid = queen.proc.pid
    baseline, _ = memory(pid)
    started = time.monotonic()
    jobs = [await cluster.trigger("chatty") for _ in range(3)]
    peak_sampled = baseline
    while True:
        peak_sampled = max(peak_sampled, memory(pid)[0])
        states = [(await cluster.job(j["id"]))["status"] for j in jobs]
        if all(s in FINAL for s in states):
            break
        assert time.monotonic() - started < 120, f"jobs still {states}\n{cluster.all_logs()}"
        await asyncio.sleep(0.1)
    took = time.monotonic() - started
    await asyncio.sleep(1)
    after, peak = memory(pid)
    print(f"\n3 jobs x {LINES * LINE_BYTES / 1e6:.0f} MB on a drone of capacity 3 in {took:.1f} s: queen RSS "
          f"{baseline / MB:.0f} MB before, peak {peak / MB:.0f} MB (sampled {peak_sampled / MB:.0f}), "
          f"{after / MB:.0f} MB after")
    assert states == ["passed"] * 3
    for job in jobs:
        log = await raw_log(cluster, job["id"])
        assert len(log) == len(EXPECTED) and log == EXPECTED  # every line once, in order
    assert peak < baseline + BOUND
    assert after < baseline + 50 * MB
    # The drone kept within its window: the queen never had to leave events with it for want of room.
    assert "wait for the store" not in queen.logs()


async def test_a_drone_ignoring_its_window_cannot_grow_the_queen_and_others_still_run(queen: Cluster) -> None:
    assert queen.queen is not None and queen.queen.proc is not None
    pid = queen.queen.proc.pid
    baseline, _ = memory(pid)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(queen.endpoint)
    sock.send(encode(Msg.DRONE_INFO, {"id": "flood", "capacity": 1, "speed": 1.0, "version": PROTOCOL_VERSION,
                                      "jobs": []}))
    await queen.wait_for(queen.drone_ids, lambda ids: "flood" in ids, "the flooding drone to join")
    # 4 MiB events, as fast as libzmq takes them, for 5 s, never reading an ack.
    frame = encode(Msg.JOB_CMD_STDOUT, {"id": "flooded", "seq": 1, "attempt": 1, "num": 1, "text": "x" * 4 * MB})
    sent, end = 0, time.monotonic() + 5
    while time.monotonic() < end:
        try:
            sock.send(frame, zmq.NOBLOCK, copy=False)
            sent += 1
        except zmq.Again:
            await asyncio.sleep(0.001)
    sock.close()
    ctx.term()
    await queen.wait_for(queen.drone_ids, lambda ids: "flood" not in ids, "the flooding drone to be lost")
    _, peak = memory(pid)
    print(f"\na drone ignoring its window sent {sent * 4} MiB in 5 s: queen RSS {baseline / MB:.0f} MB before, "
          f"peak {peak / MB:.0f} MB")
    assert peak < baseline + BOUND
    await queen.add_drone("honest")
    await queen.create_repo("app", ("test", ["echo still serving"]))
    job = await queen.trigger("app")
    assert (await queen.wait_job(job["id"]))["status"] == "passed"



async def test_one_line_far_beyond_the_log_cap_keeps_the_queen_within_bounds(cluster: Cluster) -> None:
    """A job printing 400 MB without a newline (the case's 1 GB line, scaled to the test's time): the drone
    stores up to log_max_bytes (64 MiB here) and drops the rest; the queen holds a window's worth at a time."""
    queen = await cluster.start_queen()
    await cluster.add_drone("d1", env={"APIARY_DRONE_LOG_MAX_BYTES": str(64 * MB)})
    await cluster.create_pipeline_repo("oneline", "stages: [{name: s, steps: [\"head -c 400000000 /dev/zero | "
                                                  "tr '\\\\0' b\"]}]")
    assert queen.proc is not None
    pid = queen.proc.pid
    baseline, _ = memory(pid)
    job = await cluster.wait_job((await cluster.trigger("oneline"))["id"], timeout=120)
    await asyncio.sleep(1)
    after, peak = memory(pid)
    log = await raw_log(cluster, job["id"])
    print(f"\none line of 400 MB, stored up to 64 MiB: queen RSS {baseline / MB:.0f} MB before, peak "
          f"{peak / MB:.0f} MB, {after / MB:.0f} MB after")
    assert job["status"] == "passed"
    # The cap's worth, then the marker saying the rest was dropped.
    assert log.startswith("b" * 64 * MB) and log[64 * MB] != "b" and "log_max_bytes" in log[64 * MB:]
    assert peak < baseline + BOUND
    assert after < baseline + 50 * MB
