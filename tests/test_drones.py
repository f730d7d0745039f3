"""Drones joining and leaving the pool, and a drone port that garbage cannot break."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import msgpack
import zmq
import zmq.asyncio

from queen.protocol import Msg, decode, encode
from tests.cluster import Cluster


async def test_drones_joining_and_leaving_show_in_the_api(queen: Cluster) -> None:
    assert (await queen.get("/drones"))["drones"] == []
    await queen.add_drone("alpha", capacity=2, speed=1.5)
    beta = await queen.add_drone("beta", capacity=1)

    drones = {d["id"]: d for d in (await queen.get("/drones"))["drones"]}
    assert drones["alpha"]["capacity"] == 2 and drones["alpha"]["speed"] == 1.5
    assert drones["alpha"]["running"] == 0 and drones["alpha"]["jobs"] == []
    first_beat = drones["alpha"]["last_heartbeat"]
    assert abs(first_beat - time.time()) < 5

    await queen.wait_for(lambda: queen.get("/drones"),
                         lambda d: d["drones"][0]["last_heartbeat"] > first_beat, "a heartbeat")

    await beta.stop()  # a clean stop says goodbye
    assert await queen.drone_ids() == {"alpha"}

    await queen.drones["alpha"].stop(signal.SIGKILL)  # a dead drone falls silent
    await queen.wait_for(queen.drone_ids, lambda ids: ids == set(), "alpha to be declared lost", timeout=10)


async def test_garbage_on_the_drone_port_is_dropped_and_the_queen_serves_on(queen: Cluster) -> None:
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, b"vandal")
    sock.connect(queen.endpoint)
    garbage = [
        [b"\xc1\xff not msgpack"],
        [msgpack.packb({"type": "drone:info"})],
        [msgpack.packb(["no:such-type", {}])],
        [msgpack.packb(["drone:info", "not a map"])],
        [msgpack.packb(["drone:info", {"id": "vandal"}])],
        [msgpack.packb(["job:cmd:stdout", {"id": "x", "seq": True, "num": 1, "text": "t"}])],
        [encode(Msg.JOB_CMD_STDOUT, {"id": "no-such-job", "seq": 1, "num": 1, "text": "forged\n"})],
        [encode(Msg.ACK, {"id": "x", "seq": 1})],
        [b"two", b"frames"],
        [b""],
    ]
    for _ in range(50):
        for frames in garbage:
            await sock.send_multipart(frames)
    # A drone of another protocol version is told so, not admitted.
    await sock.send(encode(Msg.DRONE_INFO, {"id": "vandal", "capacity": 1, "speed": 1.0, "version": 999, "jobs": []}))
    replies = []  # a drone:info it could not read is refused too, saying what is wrong
    while not replies or "protocol version" not in replies[-1][1].get("reason", ""):
        replies.append(decode(await asyncio.wait_for(sock.recv(), 10)))
    assert "protocol version 999" in replies[-1][1]["reason"]
    assert any("field 'capacity' missing" in body.get("reason", "") for kind, body in replies if kind is Msg.REFUSED)
    sock.close()
    ctx.term()

    await queen.add_drone("honest")
    await queen.create_repo("app", ("test", ["echo still serving"]))
    job = await queen.trigger("app")
    assert (await queen.wait_job(job["id"]))["status"] == "passed"
    assert await queen.drone_ids() == {"honest"}
    assert queen.queen is not None and queen.queen.alive
    log = queen.queen.stderr.read_text()
    assert "malformed frame" in log and "unknown job no-such-job" in log
    assert "Traceback" not in log


def _strict(raw: bytes) -> object:
    """JSON as a browser's JSON.parse reads it: no NaN, no Infinity."""
    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")
    return json.loads(raw, parse_constant=refuse)


async def test_a_drone_reporting_numbers_json_cannot_carry_is_refused_and_the_pool_stays_valid_json(
        queen: Cluster) -> None:
    assert queen.http is not None
    ctx = zmq.asyncio.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IDENTITY, b"nan-drone")
        sock.connect(queen.endpoint)
        for body, words in [({"speed": float("nan")}, "'speed' is not a finite number"),
                            ({"speed": float("inf")}, "'speed' is not a finite number"),
                            ({"capacity": 10**9}, "capacity must be between 1 and 4096")]:
            info = {"id": "nan-drone", "capacity": 1, "speed": 1.0, "version": 1, "jobs": [], **body}
            await sock.send(msgpack.packb(["drone:info", info]))
            kind, reply = decode(await asyncio.wait_for(sock.recv(), 10))
            assert kind is Msg.REFUSED and words in reply["reason"], reply
        assert await queen.drone_ids() == set()

        # An admitted drone whose heartbeat says load inf: the beat is dropped, the pool reads as strict JSON.
        await queen.add_drone("honest")
        honest = ctx.socket(zmq.DEALER)
        honest.setsockopt(zmq.LINGER, 0)
        honest.setsockopt(zmq.IDENTITY, b"honest")
        honest.connect(queen.endpoint)
        await honest.send(msgpack.packb(["drone:heartbeat", {"jobs": [], "load": float("inf")}]))
        await asyncio.sleep(0.5)
        async with queen.http.get(queen.api + "/drones") as resp:
            drones = _strict(await resp.read())
        assert [d["id"] for d in drones["drones"]] == ["honest"]  # type: ignore[index]
    finally:
        ctx.destroy(linger=0)
    log = queen.queen.stderr.read_text() if queen.queen else ""
    assert "'load' is not a finite number" in log and "Traceback" not in log
