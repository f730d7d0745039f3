"""The resource sampler's parts that need no process tree: a pid that never existed, the final rusage
alone, usages combined. Against real process trees: tests/e2e/test_resources.py."""

from __future__ import annotations

import asyncio

import pytest

from apiary.drone.resources import TreeSampler, Usage


async def test_final_rusage_counts_when_nothing_was_seen() -> None:
    usage = await TreeSampler(2**22 + 12345).stop(final_cpu=1.5)
    assert usage == Usage(0, 1.5)


async def test_a_pid_that_never_existed_gives_zero() -> None:
    sampler = TreeSampler(2**22 + 12345, interval=0.01)
    sampler.start()
    await asyncio.sleep(0.05)
    assert await sampler.stop() == Usage(0, 0.0)


def test_combine_keeps_the_peak_and_adds_cpu() -> None:
    total = Usage(100, 1.25).combine(Usage(50, 0.5)).combine(Usage(300, 0.0004))
    assert total.peak_rss == 300
    assert total.cpu_seconds == pytest.approx(1.7504)
    assert total.to_dict() == {"peak_rss": 300, "cpu_seconds": 1.75}
    assert Usage().combine(Usage(7, 0.1)) == Usage(7, 0.1)
