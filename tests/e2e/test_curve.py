"""CurveZMQ on the drone port: apiary keys, only authorized drones get in, and floods do not stop the queen.
The settings and key files without processes: tests/unit/test_curve.py."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import zmq
import zmq.asyncio
import zmq.auth

from apiary.core.protocol import PROTOCOL_VERSION, Msg, decode, encode
from apiary.core.tokens import make_token
from tests.cluster import Cluster, Proc, _env, output_lines
from tests.unit.test_curve import Keys, keys  # noqa: F401  (the keys fixture)


def dealer(ctx: zmq.Context, endpoint: str, identity: bytes, keys: tuple[bytes, bytes] | None,
           server: bytes | None) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, identity)
    if keys is not None and server is not None:
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys[0])
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys[1])
        sock.setsockopt(zmq.CURVE_SERVERKEY, server)
    sock.connect(endpoint)
    return sock


def info(name: str) -> bytes:
    return encode(Msg.DRONE_INFO, {"id": name, "capacity": 1, "speed": 1.0, "version": PROTOCOL_VERSION, "jobs": []})


def full_log(proc: Proc) -> str:
    return proc.stdout.read_text(errors="replace") + proc.stderr.read_text(errors="replace")


async def wait_text(proc: Proc, *texts: str, timeout: float = 10.0) -> None:
    """Until `proc` has logged one of `texts`."""
    deadline = time.monotonic() + timeout
    while not any(text in full_log(proc) for text in texts):
        assert time.monotonic() < deadline, f"{proc.name} did not log any of {texts!r}:\n{proc.logs()}"
        await asyncio.sleep(0.05)


# -- apiary keys -------------------------------------------------------------------------


def test_apiary_keys_writes_key_pairs_that_zmq_loads(tmp_path: Path) -> None:
    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("APIARY_")}
        env["APIARY_QUEEN_DATA_DIR"] = str(tmp_path / "qdata")
        return subprocess.run([sys.executable, "-m", "apiary.cli", "keys", *args], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path, env=env)

    made = keys()  # the queen's pair, in data_dir/keys
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "qdata" / "keys"
    public, secret = zmq.auth.load_certificate(folder / "queen.key_secret")
    assert secret is not None and len(public) == 40 and len(secret) == 40
    assert zmq.auth.load_certificate(folder / "queen.key") == (public, None)
    assert (folder / "queen.key_secret").stat().st_mode & 0o777 == 0o600
    assert (folder / "authorized").is_dir()
    assert f'curve_secret_key = "{folder / "queen.key_secret"}"' in made.stdout
    assert f'authorized_keys = "{folder / "authorized"}"' in made.stdout
    assert public.decode() in made.stdout and "queen_public_key" in made.stdout

    drone = keys("--drone", "--name", "build-1", "--dir", str(tmp_path / "d"))
    assert drone.returncode == 0, drone.stderr
    drone_public, drone_secret = zmq.auth.load_certificate(tmp_path / "d" / "build-1.key_secret")
    assert drone_secret is not None and drone_public != public
    assert (tmp_path / "d" / "build-1.key_secret").stat().st_mode & 0o777 == 0o600
    assert "copy build-1.key into the queen's authorized_keys folder" in drone.stdout
    assert f'curve_secret_key = "{tmp_path / "d" / "build-1.key_secret"}"' in drone.stdout

    again = keys()  # never overwrites a key pair by accident
    assert again.returncode == 1 and "exists; --force replaces it" in again.stderr, again.stderr
    assert zmq.auth.load_certificate(folder / "queen.key_secret") == (public, secret)
    forced = keys("--force")
    assert forced.returncode == 0 and zmq.auth.load_certificate(folder / "queen.key_secret")[0] != public
    bad = keys("--name", "../escape")
    assert bad.returncode == 1 and "--name: must be letters" in bad.stderr


# -- real queens and drones ------------------------------------------------------------------


async def test_an_authorized_drone_joins_and_runs_a_job(cluster: Cluster, keys: Keys) -> None:
    queen = await cluster.start_queen(env=keys.queen)
    await cluster.add_drone("worker", env=keys.drone("worker"))
    await cluster.create_repo("hello", ("greet", ["echo hello over curve"]))
    job = await cluster.trigger("hello")
    done = await cluster.wait_job(job["id"])
    assert done["status"] == "passed" and done["drone"] == "worker"
    assert output_lines(await cluster.events(job["id"]), "job:cmd:stdout") == ["hello over curve"]
    assert "drones authenticate with CurveZMQ" in full_log(queen)


async def test_a_key_registers_one_drone_id_and_another_process_with_it_replaces_the_first(
        cluster: Cluster, keys: Keys) -> None:
    await cluster.start_queen(env=keys.queen)
    first = await cluster.add_drone("worker", env=keys.drone("worker"))
    ctx = zmq.asyncio.Context()
    try:
        # The worker's key claiming another drone's id: refused for good, saying which id it may take.
        liar = dealer(ctx, cluster.endpoint, b"liar", keys.pair("worker"), keys.queen_public)
        await liar.send(encode(Msg.DRONE_INFO, {"id": "stranger", "session": "x", "capacity": 1, "speed": 1.0,
                                                 "version": PROTOCOL_VERSION, "jobs": []}))
        kind, reply = decode(await asyncio.wait_for(liar.recv(), 10))
        assert kind is Msg.REFUSED and "its id must be 'worker'" in reply["reason"] and reply["retry"] is False
        assert await cluster.drone_ids() == {"worker"}
    finally:
        ctx.destroy(linger=0)
    # The same key from a second process (a reinstalled machine, a copied key): the key decides; the first stops.
    second = Proc("drone-worker-again", ["drone", "--queen", cluster.endpoint, "--id", "worker", "--capacity", "1",
                                         "--work-dir", str(cluster.tmp / "drones" / "again")],
                  cluster.tmp / "logs", _env(keys.drone("worker")))
    cluster.drones["worker-again"] = second
    await second.start()
    await wait_text(first, "the queen refused this drone: drone worker connected again with its key")
    assert first.proc is not None and await asyncio.wait_for(first.proc.wait(), 10) != 0
    await cluster.create_repo("hello", ("greet", ["echo hello"]))
    job = await cluster.wait_job((await cluster.trigger("hello"))["id"])
    assert (job["status"], job["drone"]) == ("passed", "worker")


async def test_unauthorized_peers_receive_nothing_and_never_join(cluster: Cluster, keys: Keys) -> None:
    queen = await cluster.start_queen(env=keys.queen)
    await cluster.add_drone("worker", env=keys.drone("worker"))
    stranger = await cluster.add_drone("stranger", env=keys.drone("stranger"), wait=False)

    ctx = zmq.asyncio.Context()
    wrong_key = dealer(ctx, cluster.endpoint, b"intruder", keys.pair("stranger"), keys.queen_public)
    no_key = dealer(ctx, cluster.endpoint, b"plain", None, None)
    try:
        for sock, name in ((wrong_key, "intruder"), (no_key, "plain")):
            await sock.send(info(name))
        polls = await asyncio.gather(wrong_key.poll(2000), no_key.poll(2000))
        assert polls == [0, 0], "an unauthenticated peer was sent something"
    finally:
        ctx.destroy(linger=0)

    await wait_text(stranger, "refused this drone's key")
    await wait_text(queen, "refused a drone handshake from 127.0.0.1")
    assert await cluster.drone_ids() == {"worker"}
    assert stranger.alive  # it waits, and says why


async def test_a_key_added_to_the_folder_lets_a_waiting_drone_in(cluster: Cluster, keys: Keys) -> None:
    await cluster.start_queen(env=keys.queen)
    late = await cluster.add_drone("late", env=keys.drone("late"), wait=False)
    await wait_text(late, "refused this drone's key")
    assert await cluster.drone_ids() == set()
    shutil.copy(keys.dir / "late.key", keys.authorized / "late.key")
    added = time.monotonic()
    await cluster.wait_for(cluster.drone_ids, lambda ids: ids == {"late"}, "late to join", timeout=15)
    print(f"\nlate joined {time.monotonic() - added:.1f} s after its key was added, the queen not restarted")


async def test_a_drone_and_a_queen_that_disagree_about_curve_say_so(cluster: Cluster, keys: Keys,
                                                                    tmp_path: Path) -> None:
    plain = await cluster.start_queen()  # loopback, no keys: the default
    assert "drones are not authenticated (loopback only)" in full_log(plain)
    keyed = await cluster.add_drone("keyed", env=keys.drone("worker"), wait=False)
    other = Cluster(tmp_path / "other")
    try:
        await other.start_queen(env=keys.queen)
        keyless = await other.add_drone("keyless", wait=False)
        # libzmq reports a mechanism mismatch, or (depending on timing) a handshake failure without detail.
        await wait_text(keyless, f"the queen at {other.endpoint} requires CURVE: set [drone] curve_secret_key",
                        f"the handshake with the queen at {other.endpoint} failed (HANDSHAKE_FAILED_NO_DETAIL 32): "
                        "if it requires CURVE, set [drone] curve_secret_key")
        await wait_text(keyed, f"the queen at {cluster.endpoint} does not use CURVE: unset [drone] curve_secret_key",
                        f"the CURVE handshake with the queen at {cluster.endpoint} failed: check that [drone] "
                        "queen_public_key is this queen's public key and that the queen has curve_secret_key set")
        assert await cluster.drone_ids() == set() and await other.drone_ids() == set()
    finally:
        await other.close()


async def test_a_public_drone_port_needs_keys_or_an_explicit_choice(tmp_path: Path) -> None:
    args = ["queen", "--data-dir", str(tmp_path / "q"), "--http-port", "0", "--drone-bind", "tcp://0.0.0.0:*"]
    refused = subprocess.run([sys.executable, "-m", "apiary.cli", *args], capture_output=True, text=True, timeout=60,
                             env=_env(), cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert "drone_bind: tcp://0.0.0.0:* accepts drones from other machines" in refused.stderr
    assert "curve_secret_key" in refused.stderr and "allow_insecure_drones" in refused.stderr

    insecure = Proc("queen", args, tmp_path / "logs", _env({"APIARY_QUEEN_ALLOW_INSECURE_DRONES": "true"}))
    await insecure.start()
    try:
        await insecure.wait_output(r"drones:\s+tcp://0\.0\.0\.0:\d+")
        await wait_text(insecure, "drones are not authenticated on tcp://0.0.0.0:")
    finally:
        await insecure.stop()


async def test_apiary_up_with_keys_lets_its_own_drone_in(tmp_path: Path, keys: Keys) -> None:
    up = Proc("up", ["up", "--data-dir", str(tmp_path / "q"), "--http-port", "0", "--drone-bind", "tcp://127.0.0.1:*",
                     "--work-dir", str(tmp_path / "w"), "--capacity", "1"], tmp_path / "logs", _env(keys.queen))
    cluster = Cluster(tmp_path)
    await up.start()
    try:
        cluster.queen = up
        cluster.api = (await up.wait_output(r"API:\s+(\S+)")).group(1)
        cluster.http = aiohttp.ClientSession()
        await cluster.wait_for(cluster.drone_ids, lambda ids: ids == {"local"}, "the local drone to join")
    finally:
        await cluster.close()


async def test_a_flood_on_the_drone_port_leaves_an_authorized_drone_served(cluster: Cluster, keys: Keys) -> None:
    queen = await cluster.start_queen(env=keys.queen)
    await cluster.add_drone("worker", capacity=2, env=keys.drone("worker"))
    await cluster.create_repo("hello", ("greet", ["echo served"]))

    async def run_jobs(count: int) -> list[float]:
        async def one() -> float:
            started = time.monotonic()
            job = await cluster.trigger("hello")
            done = await cluster.wait_job(job["id"], timeout=30)
            assert done["status"] == "passed", done
            return time.monotonic() - started
        return list(await asyncio.gather(*(one() for _ in range(count))))

    async def two_at_a_time(count: int) -> list[float]:
        took: list[float] = []
        while len(took) < count:
            took += await run_jobs(2)
        return sorted(took)

    host, port = cluster.endpoint.removeprefix("tcp://").rsplit(":", 1)
    garbage = b"\xff\x00\x00\x00\x00\x00\x00\x00\x01\x7f" + os.urandom(512)
    churned = 0
    stop = threading.Event()

    def churn() -> None:  # connect, send garbage, hang up, again and again, from a thread
        nonlocal churned
        while not stop.is_set():
            try:
                with socket.create_connection((host, int(port)), timeout=5) as conn:
                    conn.sendall(garbage)
            except OSError:
                pass  # the queen hung up on the garbage first (a reset): that one counts too
            churned += 1

    quiet = await two_at_a_time(10)
    ctx = zmq.Context()
    raw: list[asyncio.StreamWriter] = []
    socks: list[zmq.Socket] = []
    started = time.monotonic()
    try:
        for n in range(200):  # TCP connections that send garbage instead of a ZMTP greeting, and stay open
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(garbage)
            raw.append(writer)
        for n in range(100):  # ZeroMQ peers with a key the queen does not know
            socks.append(dealer(ctx, cluster.endpoint, b"bad-%d" % n, keys.pair("stranger"), keys.queen_public))
        for n in range(100):  # and peers without CURVE
            socks.append(dealer(ctx, cluster.endpoint, b"plain-%d" % n, None, None))
        for sock in socks:
            sock.send(info(sock.getsockopt(zmq.IDENTITY).decode()), zmq.NOBLOCK)  # queued until a handshake
        opened_in = time.monotonic() - started
        churning = threading.Thread(target=churn)
        churning.start()
        during: list[float] = []
        try:  # jobs, two at a time, until 10 ran and 200 connections came and went (or 8 s passed)
            flood_started = time.monotonic()
            while len(during) < 10 or (churned < 200 and time.monotonic() - flood_started < 8):
                during += await run_jobs(2)
        finally:
            stop.set()
            churning.join()
        during.sort()
        heard = sum(1 for sock in socks if sock.poll(0))
        assert heard == 0, f"{heard} unauthenticated peers were sent something"
        assert await cluster.drone_ids() == {"worker"}
        assert "refused a drone handshake from 127.0.0.1" in full_log(queen)
    finally:
        for writer in raw:
            writer.close()
        ctx.destroy(linger=0)
    after = await two_at_a_time(10)
    assert churned >= 50, f"the churn made only {churned} connections"
    print(f"\nflood: {len(raw)} garbage TCP connections and {len(socks)} unauthenticated ZeroMQ peers held open "
          f"(opened in {opened_in:.2f} s), plus {churned} more garbage connections made and dropped while "
          f"{len(during)} jobs ran; trigger->passed, 2 jobs at a time on 2 slots, median/max: quiet "
          f"{quiet[5] * 1000:.0f}/{quiet[-1] * 1000:.0f} ms, flooded {during[len(during) // 2] * 1000:.0f}/"
          f"{during[-1] * 1000:.0f} ms, after {after[5] * 1000:.0f}/{after[-1] * 1000:.0f} ms; "
          f"unauthenticated peers sent anything: {heard}")


async def test_a_drone_joins_with_a_one_time_token(cluster: Cluster, keys: Keys, tmp_path: Path) -> None:
    await cluster.start_queen(env=keys.queen)
    env = {**_env(), "APIARY_CLIENT_URL": cluster.api.removesuffix("/api/v1")}
    (tmp_path / "admin").mkdir()  # not tmp_path itself: its queen/ folder would shadow the package
    made = subprocess.run([sys.executable, "-m", "apiary.cli", "join-token", "--id", "newbie"], capture_output=True,
                          text=True, timeout=60, env=env, cwd=tmp_path / "admin")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("apiary_join_") and "apiary drone --queen" in made.stderr

    def joiner(name: str, work: str, tok: str = token) -> Proc:
        proc = Proc(name, ["drone", "--queen", cluster.endpoint, "--join", tok, "--work-dir",
                           str(tmp_path / work)], cluster.tmp / "logs", _env())
        cluster.drones[name] = proc
        return proc

    newbie = joiner("newbie", "w1")
    await newbie.start()
    await cluster.wait_for(cluster.drone_ids, lambda ids: ids == {"newbie"}, "newbie to join", timeout=20)
    assert (keys.authorized / "newbie.key").exists() and (tmp_path / "w1" / "keys" / "newbie.key_secret").exists()
    await cluster.create_repo("hello", ("greet", ["echo joined"]))
    job = await cluster.wait_job((await cluster.trigger("hello"))["id"])
    assert (job["status"], job["drone"]) == ("passed", "newbie")
    # Once: the same token from another machine is refused, and nothing is written for it.
    again = joiner("again", "w2")
    await again.start()
    assert await asyncio.wait_for(again.proc.wait(), 30) != 0 if again.proc else False
    assert "token: unknown, used or expired" in full_log(again) and "Traceback" not in full_log(again)
    # A token whose queen key was changed: the drone will not trust the queen that answers.
    forged = make_token(cluster.api.removesuffix("/api/v1"), keys.pair("stranger")[0].decode(), "guess", "x")
    liar = joiner("liar", "w3", forged)
    await liar.start()
    assert await asyncio.wait_for(liar.proc.wait(), 30) != 0 if liar.proc else False
    assert "refused: token" in full_log(liar) and not (keys.authorized / "x.key").exists()
    # The newbie restarts with the same (used) token: it has joined already and asks nothing.
    await newbie.stop()
    await newbie.start()
    await newbie.wait_output("apiary drone newbie", timeout=20)
    await cluster.wait_for(cluster.drone_ids, lambda ids: ids == {"newbie"}, "newbie to come back", timeout=20)
