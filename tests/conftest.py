from __future__ import annotations

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
