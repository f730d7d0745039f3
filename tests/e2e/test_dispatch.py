"""The scheduler's rule through real drones: most spare capacity first, then speed."""

from __future__ import annotations

from typing import Any

import ulid
from cryptography.fernet import Fernet

from apiary.core.jobstate import JobState, Policy
from apiary.core.protocol import PROTOCOL_VERSION, Msg
from apiary.queen.dispatcher import Dispatcher
from apiary.queen.hub import Hub
from apiary.queen.pool import Drone, Pool
from apiary.queen.recorder import Recorder
from apiary.queen.sealing import Sealer
from apiary.queen.store import Store
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


# Heartbeats 10 times as often as the other tests': the queue:new of the parent's continuation, which reads each child
# job's artifacts (their copies of the parent's), is prepared for longer than two of them. It was written off as
# never started meanwhile, its slot given to another job, and its copy on the drone refused: again and again.
TIGHT = {"APIARY_QUEEN_HEARTBEAT_INTERVAL": "0.02", "APIARY_DRONE_HEARTBEAT_INTERVAL": "0.02",
         "APIARY_QUEEN_HEARTBEAT_LIVENESS": "100", "APIARY_DRONE_HEARTBEAT_LIVENESS": "100"}
CELLS = 24
BURST = """
artifacts: ["out/*"]
stages:
  - {name: build, steps: ["mkdir -p out && for i in $(seq 4); do echo $i > out/f$i.txt; done",
                          "mkdir junk && cd junk && seq 20000 | xargs touch"]}
  - {name: cells, needs: [build], matrix: {x: [CELLS], spread: true}, steps: ["true"]}
  - {name: after, needs: [cells], steps: ["test -f out/f4.txt"]}
""".replace("CELLS", ", ".join(f'"{i}"' for i in range(CELLS)))


async def test_a_burst_never_runs_a_drone_over_its_slots_nor_writes_off_a_late_start(cluster: Cluster) -> None:
    await cluster.start_queen(env=TIGHT)
    await cluster.add_drone("d1", env=TIGHT)
    await cluster.add_drone("d2", env=TIGHT)
    await cluster.create_pipeline_repo("cells", BURST)
    await cluster.create_repo("tiny", ("s", ["sleep 0.2"]))

    parent = await cluster.trigger("cells")
    await cluster.wait_job(parent["id"], {"waiting"})
    # Queued behind the child jobs, still queued when the parent's continuation (older than them) goes.
    tiny = [await cluster.trigger("tiny") for _ in range(8)]
    assert (await cluster.wait_job(parent["id"], timeout=60))["status"] == "passed", cluster.all_logs()
    ids = [j["id"] for j in tiny] + [c["job"] for c in (await cluster.job(parent["id"]))["children"]]
    assert len(ids) == 8 + CELLS
    for job_id in ids:
        job = await cluster.wait_job(job_id)
        # One attempt each: none was taken back from a drone that had it, none had to run again.
        assert (job["status"], job["attempts"]) == ("passed", 1), (job, cluster.all_logs())

    assert cluster.queen is not None
    logs = "".join(p.stdout.read_text() + p.stderr.read_text() for p in [cluster.queen, *cluster.drones.values()])
    assert "never started" not in logs
    assert "running it anyway" not in logs  # no drone was sent more jobs than its slots
    assert "dropped; cancelling its copy" not in logs


def _job(job_id: str, number: int, status: str = "queued", parent: str | None = None) -> dict[str, Any]:
    return {"_id": job_id, "repo": "app", "number": number, **JobState().fields(), "status": status,
            "ref": {"branch": "main"}, "type": "TEST", "trigger": {"type": "manual"}, "parameters": {},
            "pipeline": {"stages": []}, "created": 1.0, "commands": {}, "phases": {},
            **({"parent": {"id": parent, "number": 1, "unit": "x=1", "wave": 1}} if parent else {})}


async def test_a_cancelled_parents_queued_children_are_never_claimed(shared_store: str) -> None:
    """The dispatcher over the real store, its drone a send that keeps what it is given: once a parent's cancel
    has begun (hive.cancel calls stop_children before its first await), or its cancel has landed in the store
    before its children's, none of its queued children goes to a drone (one did, and started its checkout)."""
    store = await Store.connect(shared_store, f"dispatch-{ulid.ULID()}", Sealer(Fernet.generate_key()))
    try:
        pool = Pool()
        pool.join(Drone("d1", capacity=8, speed=1.0, version=PROTOCOL_VERSION, route=b"d1"))
        sent: list[str] = []

        def send(drone: str, msg: Msg, body: dict[str, Any]) -> bool:
            sent.append(body["id"])
            return True

        recorder = Recorder(store, Hub(), lambda *a: None, lambda *a: None, Policy())
        dispatcher = Dispatcher(store, pool, Hub(), send, recorder)
        for doc in (_job("p-cancelling", 1, "waiting"), _job("p-cancelled", 2, "cancelled"),
                    _job("p-waiting", 3, "waiting"), _job("c-cancelling", 4, parent="p-cancelling"),
                    _job("c-cancelled", 5, parent="p-cancelled"), _job("c-waiting", 6, parent="p-waiting"),
                    _job("other", 7), _job("c-gone", 8, parent="p-gone")):
            await store.insert_job(doc)  # type: ignore[arg-type]
        dispatcher.stop_children("p-cancelling")
        await dispatcher.dispatch()
        assert sorted(sent) == ["c-waiting", "other"]
        states = {j["_id"]: j["status"] for j in await store.job_states(["c-cancelling", "c-cancelled", "c-gone"])}
        assert states == {"c-cancelling": "queued", "c-cancelled": "queued", "c-gone": "queued"}  # spread's to cancel
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
