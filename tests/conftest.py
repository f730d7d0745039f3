from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from apiary.queen.embedded import embedded_store
from tests.cluster import Cluster


@pytest.fixture(scope="session")
async def shared_store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """One embedded store (nx-27017) for every cluster of this test process; each queen has a database on it."""
    async with embedded_store(tmp_path_factory.mktemp("shared-store")) as url:
        yield url


@pytest.fixture
async def cluster(request: pytest.FixtureRequest, tmp_path: Path, shared_store: str) -> AsyncIterator[Cluster]:
    """A cluster with nothing started yet; everything it starts is stopped afterwards.

    Its queen stores on the shared store, or (a test marked `own_store`) on an embedded store of its own."""
    own = request.node.get_closest_marker("own_store") is not None
    c = Cluster(tmp_path, None if own else shared_store)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def queen(cluster: Cluster) -> Cluster:
    """A cluster with a running queen and no drones."""
    await cluster.start_queen()
    return cluster


# -- each layer's time, printed at the end of a run ------------------------------------------------
# The layer is the folder under tests/ (unit: pure; e2e: real processes). pytest_runtest_logreport runs
# where the reports arrive: in this process without xdist, on the controller with it (the workers send
# theirs there), so every test is counted once. A test's time is its setup + call + teardown.

_layers: dict[str, tuple[set[str], list[float]]] = {}  # layer -> (node ids, [seconds])
_started = time.monotonic()


def pytest_sessionstart(session: pytest.Session) -> None:
    global _started
    _started = time.monotonic()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    parts = report.nodeid.split("::")[0].split("/")
    layer = parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"
    ids, seconds = _layers.setdefault(layer, (set(), [0.0]))
    ids.add(report.nodeid)
    seconds[0] += report.duration


# -- no process left behind ---------------------------------------------------------------------------
# Every queen, drone and store a test starts has its data under the run's pytest tmp dir (basetemp; under xdist
# the workers' are below the controller's), so its command line names it; other runs on this machine have
# basetemps of their own and do not count. Checked once, on the controller, when every worker has finished.

_left_behind: list[str] = []  # "pid: command line" of each process still alive at the end


def _ancestors() -> set[int]:
    """This process and its parents (a `timeout … pytest --basetemp=…` wrapper names the basetemp too)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def _still_running(base: str) -> list[str]:
    """Live processes (zombies are not) whose command line names a path in `base`: "pid: command line"."""
    mine, out = _ancestors(), []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in mine:
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if state != "Z" and any(arg == base or base + "/" in arg for arg in args):
            out.append(f"{proc.name}: {' '.join(args).strip()}")
    return out


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller checks for the whole run
        return
    base = getattr(getattr(session.config, "_tmp_path_factory", None), "_basetemp", None)
    if base is None:  # no test had a tmp dir, so none started a process in one
        return
    deadline = time.monotonic() + 5  # a process stopped just now may still be on its way out
    while (left := _still_running(str(base))) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        _left_behind[:] = left
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _left_behind:
        terminalreporter.write_line(f"processes started by the tests and still running, so the run fails: "
                                    f"{len(_left_behind)}", red=True, bold=True)
        for line in _left_behind:
            terminalreporter.write_line(f"  {line}", red=True)
    if not _layers:
        return
    order = sorted(_layers, key=lambda name: (name != "unit", name != "e2e", name))
    shares = [f"{name} {len(_layers[name][0])} tests in {_layers[name][1][0]:.1f} s (sum of test times)"
              for name in order]
    terminalreporter.write_line(f"layers: {'; '.join(shares)}; wall {time.monotonic() - _started:.0f} s")
