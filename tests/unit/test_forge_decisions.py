"""The forge plugins' pure decisions, as tables: a tag's job type, a delivery's key, a pull request's
branches in its trigger; and the per-delivery lock that makes identical deliveries wait for each other."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from apiary.core.jobrequest import job_request
from apiary.plugins.forge import tag_job_type
from apiary.queen.plugin_context import KeyedLock, delivery_key


# (the repository's deploy_tags, the plugin's tag_type, the job type a tag push starts)
@pytest.mark.parametrize(("deploy_tags", "tag_type", "expected"), [
    (None, "TEST_DEPLOY", "TEST"),  # a repository saved before the setting existed: no deploys
    (False, "TEST_DEPLOY", "TEST"),
    (False, "DEPLOY", "TEST"),  # the plugin's type alone does not deploy on tags
    (True, "TEST_DEPLOY", "TEST_DEPLOY"),
    (True, "DEPLOY", "DEPLOY"),
    (True, "TEST", "TEST"),
    (True, None, "TEST_DEPLOY"),  # a config without the key: the plugin's default
    ("yes", "TEST_DEPLOY", "TEST"),  # only true asks
])
def test_a_tag_deploys_only_when_the_repository_asks(deploy_tags: Any, tag_type: str | None, expected: str) -> None:
    repo: dict[str, Any] = {"_id": "app"} if deploy_tags is None else {"_id": "app", "deploy_tags": deploy_tags}
    config = {} if tag_type is None else {"tag_type": tag_type}
    assert tag_job_type(repo, config) == expected


# (the source a plugin gives, the key its job keeps)
@pytest.mark.parametrize(("source", "expected"), [
    (None, None),
    ({}, None),
    ({"delivery": ""}, None),
    ({"delivery": "  "}, None),
    ({"delivery": None}, None),
    ({"delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}, "github/app/72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ({"delivery": "x" * 500}, "github/app/" + "x" * 200),  # kept to 200 characters
    ({"delivery": 42}, "github/app/42"),
])
def test_a_delivery_is_known_per_plugin_and_repository(source: dict[str, Any] | None, expected: str | None) -> None:
    assert delivery_key("github", "app", source) == expected


def test_one_delivery_in_two_repositories_or_plugins_is_two_keys() -> None:
    source = {"delivery": "13792a34"}
    assert len({delivery_key("gitlab", "app", source), delivery_key("gitlab", "docs", source),
                delivery_key("github", "app", source)}) == 3


# (what a plugin reports, the branches its trigger records)
@pytest.mark.parametrize(("reported", "expected"), [
    ({"type": "pull_request", "fork": True, "head_branch": "farewell", "base_branch": "main"},
     {"fork": True, "head_branch": "farewell", "base_branch": "main"}),
    ({"type": "merge_request", "fork": False, "head_branch": "ms-viewport", "base_branch": None},
     {"fork": False, "head_branch": "ms-viewport"}),
    ({"type": "pull_request", "head_branch": "", "base_branch": 7}, {"base_branch": "7"}),
    ({"type": "push"}, {}),
])
def test_a_pull_requests_branches_are_recorded_in_its_trigger(reported: dict[str, Any],
                                                              expected: dict[str, Any]) -> None:
    trigger = dict(job_request({"_id": "app"}, {"fetch": "refs/pull/7/head", "trigger": reported}, 1.0,
                               plugin="github")["trigger"])
    recorded = {k: trigger[k] for k in ("fork", "head_branch", "base_branch") if k in trigger}
    assert recorded == expected


def test_identical_deliveries_wait_for_each_other_and_the_lock_is_dropped() -> None:
    async def run() -> tuple[list[str], KeyedLock]:
        lock, order = KeyedLock(), []

        async def deliver(key: str, name: str) -> None:
            async with lock.hold(key):
                order.append(f"{name} in")
                await asyncio.sleep(0.01)
                order.append(f"{name} out")

        await asyncio.gather(deliver("a", "first"), deliver("a", "again"), deliver("b", "other"))
        return order, lock

    order, lock = asyncio.run(run())
    assert order.index("first out") < order.index("again in")  # the same key: one after the other
    assert order.index("other in") < order.index("first out")  # another key: at once
    assert lock._locks == {}
