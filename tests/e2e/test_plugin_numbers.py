"""A plugin reporting numbers the wire cannot carry: its job still finishes, saying what was dropped.

NaN, infinities and whole numbers beyond 2**53 are refused by the queen (JSON and a browser cannot
hold them); a drone that sent them would send the event again for ever and the job would hang in
``running``, uncancellable, holding a slot.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster import Cluster
from tests.e2e.test_plugins import from_wheels, one_module_plugin, text_of

NUMBERS = '''
def phases(job, config):
    return {"test": ["echo testing"]}


def results(job, config):
    kind = job["parameters"].get("KIND", "nan")
    return {"nan": {"coverage": float("nan"), "lines": 5},
            "big": {"lines": 2**60, "suites": [{"time": float("inf")}, {"time": 1.5}]},
            "ok": {"lines": 5}}[kind]
'''


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("numbers")
    one_module_plugin(root / "numbers", "numbers", NUMBERS, root / "wheels")
    return root / "wheels"


async def test_a_plugins_nan_or_huge_results_become_null_and_the_job_finishes(queen: Cluster,
                                                                               wheels: Path) -> None:
    await queen.add_drone("d1", env=from_wheels(wheels))
    await queen.create_pipeline_repo("app", """
plugins: [{name: numbers, pip: "apiary-numbers==1.0.0"}]
parameters: {KIND: {default: nan}}
stages: [{name: t, steps: ["echo hi"]}]
""")
    finished = {}
    for kind in ("nan", "big", "ok"):
        job = await queen.trigger("app", parameters={"KIND": kind})
        finished[kind] = await queen.wait_job(job["id"], timeout=120)
        assert finished[kind]["status"] == "passed", (kind, finished[kind])

    nan = finished["nan"]
    assert nan["plugins"]["numbers"]["coverage"] is None and nan["plugins"]["numbers"]["lines"] == 5
    said = text_of(await queen.events(nan["id"]), "job:stdout")
    assert "plugin numbers: results field(s) coverage set to null" in said

    big = finished["big"]
    assert big["plugins"]["numbers"]["lines"] is None
    assert big["plugins"]["numbers"]["suites"] == [{"time": None}, {"time": 1.5}]
    said = text_of(await queen.events(big["id"]), "job:stdout")
    assert "results field(s) lines, suites[0].time set to null" in said

    assert finished["ok"]["plugins"]["numbers"]["lines"] == 5
    assert "set to null" not in text_of(await queen.events(finished["ok"]["id"]), "job:stdout")
    log = queen.all_logs()
    assert "malformed frame" not in log and "Traceback" not in log
