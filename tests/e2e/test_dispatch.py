"""The scheduler's rule through real drones: most spare capacity first, then speed."""

from __future__ import annotations

from tests.cluster import Cluster


async def test_each_job_goes_to_the_drone_with_the_most_spare_capacity(queen: Cluster) -> None:
    await queen.add_drone("big", capacity=3, speed=1.0)
    await queen.add_drone("fast", capacity=1, speed=2.0)
    await queen.create_repo("hold", ("hold", ["sleep 30"]))

    placed = []
    for _ in range(4):
        job = await queen.trigger("hold")
        running = await queen.wait_job(job["id"], {"running"})
        placed.append(running["drone"])

    # big: spare 3 > 1, then 2 > 1; then 1 = 1 and fast is faster; then only big has room.
    assert placed == ["big", "big", "fast", "big"]

    drones = {d["id"]: d for d in (await queen.get("/drones"))["drones"]}
    assert (drones["big"]["running"], drones["fast"]["running"]) == (3, 1)

    extra = await queen.trigger("hold")
    assert (await queen.job(extra["id"]))["status"] == "queued"
