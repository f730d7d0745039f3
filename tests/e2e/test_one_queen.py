"""One queen per data dir, one store per queen: a second queen on a data dir in use refuses to start, naming the
lock, and starts nothing; the embedded store never outlives its queen, even one killed with SIGKILL."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest
from pymongo import MongoClient

from tests.cluster import Cluster

pytestmark = pytest.mark.own_store  # about the queen's embedded store and its data dir


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, dead but not yet reaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pids_mentioning(text: str) -> set[int]:
    """Live processes whose command line contains `text`."""
    out = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and running(int(proc.name)):
                out.add(int(proc.name))
    return out


def store_pid(cluster: Cluster) -> int:
    pid = int((cluster.tmp / "queen" / "store" / "nx-27017.pid").read_text().strip())
    assert running(pid) and "nx-27017" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    return pid


async def test_a_second_queen_on_the_same_data_dir_refuses_naming_the_lock_and_starts_nothing(queen: Cluster) -> None:
    data = queen.tmp / "queen"
    assert queen.queen is not None and queen.queen.proc is not None
    first, store = queen.queen.proc.pid, store_pid(queen)
    before = pids_mentioning(str(data))

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "apiary.cli", "queen", "--data-dir", str(data), "--http-port", "0",
        "--drone-bind", "tcp://127.0.0.1:*", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)

    assert proc.returncode == 1, err.decode()
    assert err.decode().splitlines() == [(
        f"apiary: error: the data dir {data} is in use by another queen (pid {first}): it holds the lock "
        f"{data / 'queen.lock'}; stop it, or give this one another --data-dir")]
    assert out == b""
    assert pids_mentioning(str(data)) == before  # no second store was started, and the first one is untouched
    assert store_pid(queen) == store
    await queen.create_repo("still-served", ("s", ["true"]))  # the first queen goes on serving its store


async def test_the_embedded_store_dies_with_its_queen_even_when_the_queen_is_sigkilled(queen: Cluster) -> None:
    await queen.create_repo("kept", ("s", ["true"]))
    store = store_pid(queen)
    args = Path(f"/proc/{store}/cmdline").read_bytes().decode().split("\0")
    assert queen.queen is not None
    # A client of the store's own stays connected: nx-27017 told to stop waits for its clients to go.
    with MongoClient(f"mongodb://127.0.0.1:{args[args.index('--port') + 1]}/?directConnection=true") as other:
        other.admin.command("ping")
        await queen.queen.stop(signal.SIGKILL)

        deadline = time.monotonic() + 5
        while running(store) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not running(store), f"the store (pid {store}) outlived its queen by 5 s"

    # The kernel dropped the dead queen's lock: a new queen takes the data dir and its store's data.
    await queen.start_queen()
    assert store_pid(queen) != store
    assert (await queen.get("/repos/kept"))["name"] == "kept"
