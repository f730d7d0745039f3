from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster import Cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A cluster with nothing started yet; everything it starts is stopped afterwards."""
    c = Cluster(tmp_path)
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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _layers:
        return
    order = sorted(_layers, key=lambda name: (name != "unit", name != "e2e", name))
    shares = [f"{name} {len(_layers[name][0])} tests in {_layers[name][1][0]:.1f} s (sum of test times)"
              for name in order]
    terminalreporter.write_line(f"layers: {'; '.join(shares)}; wall {time.monotonic() - _started:.0f} s")
