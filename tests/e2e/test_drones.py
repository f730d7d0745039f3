"""Drones joining and leaving the pool, and a drone port that garbage cannot break."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time

import msgpack
import zmq
import zmq.asyncio

from apiary.core.protocol import PROTOCOL_VERSION, Msg, decode, encode
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
        [encode(Msg.JOB_CMD_STDOUT, {"id": "no-such-job", "seq": 1, "attempt": 1, "num": 1, "text": "forged\n"})],
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
    assert "malformed frame" in log  # and the forged event of a connection no drone was admitted on: dropped
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
            info = {"id": "nan-drone", "capacity": 1, "speed": 1.0, "version": PROTOCOL_VERSION, "jobs": [], **body}
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


def _impostor(ctx: zmq.asyncio.Context, endpoint: str, name: str) -> zmq.asyncio.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, name.encode())  # asking for the real drone's routing id changes nothing
    sock.connect(endpoint)
    return sock


async def test_a_connected_drones_id_cannot_be_taken_and_a_refused_drone_comes_back(queen: Cluster) -> None:
    real = await queen.add_drone("d1")
    await queen.create_pipeline_repo("secret", 'stages: [{name: s, steps: ["echo $TOPSECRET | rev"]}]')
    await queen.request("PUT", "/repos/secret/secrets/TOPSECRET", {"value": "example-secret-1234"}, expect=200)
    ctx = zmq.asyncio.Context()
    try:
        fake = _impostor(ctx, queen.endpoint, "d1")
        await fake.send(encode(Msg.DRONE_INFO, {"id": "d1", "session": "impostor", "capacity": 8, "speed": 1e6,
                                                "version": PROTOCOL_VERSION, "jobs": [], "host": "elsewhere"}))
        kind, reply = decode(await asyncio.wait_for(fake.recv(), 10))
        assert kind is Msg.REFUSED and "in use by another connected drone" in reply["reason"] and reply["retry"]
        job = await queen.wait_job((await queen.trigger("secret"))["id"])
        assert (job["status"], job["drone"]) == ("passed", "d1")
        # It heard nothing of the job, and what it forges for it is not taken.
        await fake.send(encode(Msg.JOB_CMD_STDOUT, {"id": job["id"], "seq": 99, "num": 1, "text": "forged\n",
                                                    "attempt": 1}))
        got = []
        with contextlib.suppress(TimeoutError):
            while True:
                got.append(decode(await asyncio.wait_for(fake.recv(), 1.0))[0])
        assert Msg.QUEUE_NEW not in got and Msg.ACK not in got
        assert "forged" not in "".join(e.get("text", "") for e in await queen.events(job["id"]))

        # The real drone stops answering: once it is lost, the id is free, and the impostor holds it...
        assert real.proc is not None
        real.proc.send_signal(signal.SIGSTOP)
        await queen.wait_for(queen.drone_ids, lambda ids: "d1" not in ids, "d1 to be lost", timeout=15)
        await fake.send(encode(Msg.DRONE_INFO, {"id": "d1", "session": "impostor", "capacity": 1, "speed": 1.0,
                                                "version": PROTOCOL_VERSION, "jobs": []}))

        async def beat() -> None:
            while True:
                await fake.send(encode(Msg.DRONE_HEARTBEAT, {"jobs": []}))
                await asyncio.sleep(0.1)

        beating = asyncio.create_task(beat())
        await queen.wait_for(lambda: queen.get("/drones"), lambda d: [x["host"] for x in d["drones"]] == [""],
                             "the impostor to hold d1")
        real.proc.send_signal(signal.SIGCONT)
        await asyncio.sleep(2.0)
        assert [d["host"] for d in (await queen.get("/drones"))["drones"]] == [""]  # refused while it is held
        beating.cancel()
        fake.close()  # ...until it goes quiet: then the real drone is admitted again
        await queen.wait_for(lambda: queen.get("/drones"),
                             lambda d: [x["host"] for x in d["drones"]] == [socket.gethostname()],
                             "the real d1 to be back", timeout=20)
    finally:
        ctx.destroy(linger=0)
    assert (await queen.wait_job((await queen.trigger("secret"))["id"]))["status"] == "passed"
    assert "in use by another connected drone" in queen.queen.stderr.read_text() if queen.queen else False


def _nasty_frames(first: str) -> list[bytes]:
    """Frames that once broke a receive loop or could: msgpack nested far deeper than any message
    (1 KB, 1000 levels: a RecursionError, not a ProtocolError, that ended the broker's receive task),
    extension types, truncated frames."""
    head = msgpack.packb([first, {"jobs": [], "x": 0}])[:-1]  # the body's last value still to come
    return [
        head + b"\x91" * 1000 + b"\x90",
        head + b"\x81\xa1k" * 900 + b"\x90",
        head + b"\x91" * 100_000 + b"\xc0",
        head + b"\xd4\x05x",
        head + b"\xd6\xff\x00\x00\x00\x01",  # a msgpack timestamp
        head,
    ]


async def test_deeply_nested_frames_do_not_stop_the_queen_hearing_drones(queen: Cluster) -> None:
    steady = await queen.add_drone("steady")
    ctx = zmq.asyncio.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(queen.endpoint)  # a loopback queen admits an unkeyed peer: anyone on this machine
        for _ in range(20):
            for frame in _nasty_frames("drone:heartbeat") + _nasty_frames("drone:info"):
                await sock.send(frame)
        await asyncio.sleep(0.5)
    finally:
        ctx.destroy(linger=0)

    # The queen still hears: a new drone joins and runs a job, and the one already there is not lost
    # (drones silent for 4 beats of 0.2 s are; this takes longer than that).
    await queen.add_drone("honest")
    await queen.create_repo("app", ("test", ["echo still serving"]))
    job = await queen.trigger("app")
    assert (await queen.wait_job(job["id"]))["status"] == "passed"
    await asyncio.sleep(1.5)
    assert await queen.drone_ids() == {"steady", "honest"}
    assert steady.alive
    assert queen.queen is not None and queen.queen.alive
    log = queen.queen.stderr.read_text()
    assert "nested more than 64 levels deep" in log and "silent for" not in log
    assert "Traceback" not in log


async def test_deeply_nested_frames_from_a_queen_do_not_stop_the_drone_hearing_it(cluster: Cluster) -> None:
    ctx = zmq.asyncio.Context()
    try:
        fake = ctx.socket(zmq.ROUTER)
        fake.setsockopt(zmq.LINGER, 0)
        port = fake.bind_to_random_port("tcp://127.0.0.1")
        cluster.endpoint = f"tcp://127.0.0.1:{port}"
        drone = await cluster.add_drone("d1", wait=False)

        async def heard(kind: Msg, timeout: float = 10.0) -> bytes:
            deadline = time.monotonic() + timeout
            while True:
                route, frame = await asyncio.wait_for(fake.recv_multipart(), deadline - time.monotonic())
                if decode(frame)[0] is kind:
                    return route

        route = await heard(Msg.DRONE_INFO)
        beat = encode(Msg.QUEEN_HEARTBEAT, {"boot": "b1"})
        await fake.send_multipart([route, beat])  # the queen is reachable now: the drone listens for it
        for frame in _nasty_frames("queen:heartbeat") * 20:
            await fake.send_multipart([route, frame])
        # It still hears its queen: beating every 0.1 s, it is never silent (4 beats of 0.2 s) ...
        for _ in range(15):
            await fake.send_multipart([route, beat])
            await asyncio.sleep(0.1)
        # ... and asked who it is, it answers.
        await fake.send_multipart([route, encode(Msg.QUERY_INFO, {"boot": "b1"})])
        await heard(Msg.DRONE_INFO, timeout=2.0)
        assert drone.alive
    finally:
        ctx.destroy(linger=0)
    log = drone.stderr.read_text()
    assert "nested more than 64 levels deep" in log and "Traceback" not in log
    assert "silent for" not in log
