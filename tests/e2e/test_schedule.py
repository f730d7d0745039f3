"""The schedule plugin on a real queen: entries validated when saved, due entries fired. Parsing, next times and
the timetable: tests/unit/test_schedule.py."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.cluster import Cluster

PIPELINE = "stages:\n  - {name: hello, steps: [\"echo hi\"]}\n"


# -- a real queen ---------------------------------------------------------------------------

async def jobs_of(queen: Cluster, repo: str) -> list[dict[str, Any]]:
    return (await queen.get(f"/repos/{repo}/jobs"))["jobs"]


async def test_every_entries_fire_on_their_branches_and_stop_when_removed(queen: Cluster) -> None:
    await queen.add_drone("d1", capacity=4)
    plugins = [{"name": "schedule", "config": {"schedules": [
        {"every": "1s"},
        {"every": "1s", "branch": "nightly", "type": "TEST", "parameters": {"WHO": "night"}}]}}]
    pipeline = "parameters: {WHO: {default: day}}\n" + PIPELINE
    await queen.create_pipeline_repo("tick", pipeline, plugins=plugins, default_branch="trunk")

    jobs = await queen.wait_for(lambda: jobs_of(queen, "tick"),
                                lambda js: {j["ref"]["branch"] for j in js} >= {"trunk", "nightly"},
                                "jobs on both branches", timeout=10)
    by_branch = {j["ref"]["branch"]: j for j in jobs}
    trunk, nightly = by_branch["trunk"], by_branch["nightly"]
    assert trunk["trigger"]["type"] == "schedule" and trunk["trigger"]["message"] == "schedule: every 1s"
    assert trunk["trigger"]["author"] == {"name": "schedule"}
    assert trunk["trigger"]["source"]["type"] == "plugin" and trunk["trigger"]["source"]["plugin"] == "schedule"
    assert trunk["trigger"]["source"]["schedule"] == "every 1s"
    assert trunk["parameters"] == {"WHO": "day"}
    assert nightly["parameters"] == {"WHO": "night"} and nightly["type"] == "TEST"
    assert (await queen.wait_job(nightly["id"]))["status"] == "passed"

    # Settings changes are picked up: without the plugin, no more jobs.
    await queen.request("PUT", "/repos/tick", {"pipeline": pipeline, "pipeline_source": "queen",
                                               "default_branch": "trunk"}, expect=200)
    await asyncio.sleep(1.5)  # a fire under way when the settings changed may still land
    settled = len(await jobs_of(queen, "tick"))
    await asyncio.sleep(2.5)
    assert len(await jobs_of(queen, "tick")) == settled


async def test_a_refused_fire_is_logged_and_other_entries_go_on(queen: Cluster) -> None:
    pipeline = "parameters: {TARGET: {required: true}}\n" + PIPELINE
    plugins = [{"name": "schedule", "config": {"schedules": [
        {"every": "1s"}, {"every": "1s", "parameters": {"TARGET": "lab"}}]}}]
    await queen.create_pipeline_repo("needy", pipeline, plugins=plugins)

    await queen.wait_for(lambda: jobs_of(queen, "needy"), lambda js: len(js) >= 2, "two jobs", timeout=10)
    assert {j["parameters"]["TARGET"] for j in await jobs_of(queen, "needy")} == {"lab"}
    assert queen.queen is not None
    log = await queen.wait_for(lambda: asyncio.to_thread(queen.queen.stderr.read_text),
                               lambda text: "repository needy: schedule every 1s on the default branch: job refused" in text,
                               "the refusal in the queen's log", timeout=5)
    assert "TARGET" in log.split("job refused", 1)[1].splitlines()[0]


async def test_an_invalid_schedule_is_refused_when_saved_and_nothing_is_saved(queen: Cluster) -> None:
    for entry, field in [({"cron": "*/15 * * *"}, "plugins[0].config.schedules[0].cron"),
                         ({"cron": "99 * * * *"}, "plugins[0].config.schedules[0].cron"),
                         ({"every": "0s"}, "plugins[0].config.schedules[0].every"),
                         ({"every": "1m", "timezone": "Mars/Olympus"}, "plugins[0].config.schedules[0].timezone")]:
        status, body = await queen.request("POST", "/repos", {
            "name": "bad", "pipeline": PIPELINE, "pipeline_source": "queen",
            "plugins": [{"name": "schedule", "config": {"schedules": [entry]}}]})
        assert status == 400 and body["field"] == field and body["error"].startswith(f"{field}: "), body
        assert (await queen.request("GET", "/repos/bad"))[0] == 404

    # A later entry is named by its index; a PUT that does not validate leaves the settings as they were.
    good = [{"name": "schedule", "config": {"schedules": [{"cron": "0 3 * * *"}]}}]
    await queen.create_pipeline_repo("kept", PIPELINE, plugins=good)
    status, body = await queen.request("PUT", "/repos/kept", {
        "pipeline": PIPELINE, "pipeline_source": "queen",
        "plugins": [{"name": "schedule", "config": {"schedules": [{"cron": "0 3 * * *"}, {"cron": "nope"}]}}]})
    assert status == 400 and body["field"] == "plugins[0].config.schedules[1].cron"
    assert (await queen.get("/repos/kept"))["plugins"] == [
        {"name": "schedule", "config": {"schedules": [{"cron": "0 3 * * *"}], "timezone": "UTC"}}]
