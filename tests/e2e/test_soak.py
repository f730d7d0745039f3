"""A soak: hundreds of jobs through four drones while drones and the queen are killed at random moments."""

from __future__ import annotations

import asyncio
import collections
import random
import re
import signal
import time

import pytest

from tests.cluster import FINAL, Cluster

JOBS = 200
LINES = 40
# Each line says which attempt printed it, so every attempt's lines can be checked apart.
SCRIPT = (f'i=1; while [ $i -le {LINES} ]; do echo "attempt $APIARY_JOB_ATTEMPT line $i"; i=$((i+1)); '
          'sleep 0.004; done')
LINE = re.compile(r"^attempt (\d+) line (\d+)$")


async def statuses(queen: Cluster) -> dict[str, str] | None:
    try:
        jobs = (await queen.get(f"/repos/soak/jobs?limit={JOBS}"))["jobs"]
    except Exception:  # the queen is being killed or restarted
        return None
    return {j["id"]: j["status"] for j in jobs}


@pytest.mark.timeout(400)
async def test_soak_every_job_ends_and_every_attempts_lines_are_stored_once_in_order(cluster: Cluster) -> None:
    rng = random.Random(20261123)
    await cluster.start_queen(env={"APIARY_QUEEN_MAX_ATTEMPTS": "6"})
    names = ["d1", "d2", "d3", "d4"]
    for name in names:
        await cluster.add_drone(name, capacity=2)
    await cluster.create_pipeline_repo("soak", f"stages: [{{name: s, steps: [{SCRIPT!r}]}}]")
    ids = [(await cluster.trigger("soak"))["id"] for _ in range(JOBS)]

    drone_kills = queen_kills = 0
    started = time.monotonic()
    next_queen_kill = started + 4.0
    while True:
        seen = await statuses(cluster)
        if seen is not None and len(seen) == JOBS and all(s in FINAL for s in seen.values()):
            break
        assert time.monotonic() - started < 300, f"jobs still not final: {collections.Counter((seen or {}).values())}"
        await asyncio.sleep(rng.uniform(0.3, 1.2))
        if queen_kills < 2 and time.monotonic() > next_queen_kill:
            assert cluster.queen is not None
            await cluster.queen.stop(signal.SIGKILL)
            queen_kills += 1
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            await cluster.start_queen()
            next_queen_kill = time.monotonic() + 5.0
        elif drone_kills < 12:
            name = rng.choice(names)
            await cluster.drones[name].stop(signal.SIGKILL)
            drone_kills += 1
            await asyncio.sleep(rng.uniform(0.0, 1.5))
            await cluster.add_drone(name, capacity=2, wait=False)

    took = time.monotonic() - started
    final = await statuses(cluster)
    assert final is not None and sorted(final) == sorted(ids)
    counts = collections.Counter(final.values())
    attempts: collections.Counter[int] = collections.Counter()
    printed_by_final_attempts = stored_total = 0
    for job_id in ids:
        job = await cluster.job(job_id)
        events = await cluster.events(job_id)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), job_id
        assert [e["type"] for e in events].count("job:done") <= 1
        by_attempt: dict[int, list[int]] = collections.defaultdict(list)
        text = "".join(e["text"] for e in events if e["type"] == "job:cmd:stdout")
        for line in text.splitlines():
            match = LINE.match(line)
            assert match, f"job {job_id}: unexpected line {line!r}"
            by_attempt[int(match[1])].append(int(match[2]))
        # Every attempt's lines are stored once and in order: 1..k, no gap, no repeat.
        for attempt, numbers in by_attempt.items():
            assert numbers == list(range(1, len(numbers) + 1)), f"job {job_id} attempt {attempt}: {numbers}"
        stored_total += sum(len(n) for n in by_attempt.values())
        attempts[job["attempts"]] += 1
        if job["status"] == "passed":
            assert by_attempt[job["attempts"]] == list(range(1, LINES + 1)), job_id
            printed_by_final_attempts += LINES
        else:
            assert job["status"] == "errored", (job_id, job["status"], job.get("error"))
    assert counts["passed"] >= JOBS * 0.95, counts
    print(f"\nsoak: {JOBS} jobs in {took:.1f} s on 4 drones x 2; {drone_kills} drone kills, {queen_kills} queen kills; "
          f"ended {dict(counts)}; attempts {dict(sorted(attempts.items()))}; passing attempts printed "
          f"{printed_by_final_attempts} lines and all are stored; {stored_total} lines stored in all, none twice")
