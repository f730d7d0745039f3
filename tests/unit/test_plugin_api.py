"""The plugin contract's pure parts: config schemas, branch filters, what a plugin's answer adds to a job,
the API module itself (its errors, its context) and the queen's reactions. The API loaded in a Python without
Apiary (subprocesses): tests/e2e/test_plugin_api.py."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from aiohttp import web

from apiary.core.errors import ApiaryError
from apiary.core.fields import ENV_NAME
from apiary.drone.plugins import PluginError, plugin_contribution
from apiary.plugins import api
from apiary.plugins.api import ConfigProblem, PluginContext, TriggerRefused, check_config, check_schema
from apiary.queen import plugin_reactions
from apiary.queen.hub import Hub
from apiary.queen.plugin_context import QueenContext, branch_allowed
from apiary.queen.plugin_reactions import Reactions, supervise
from apiary.queen.plugin_registry import Plugins

SCHEMA = {
    "url": {"type": "str", "required": True},
    "retries": {"type": "int", "default": 3},
    "ratio": {"type": "float"},
    "loud": {"type": "bool", "default": False},
    "events": {"type": "list", "items": "str", "default": ["push"]},
    "mode": {"type": "str", "choices": ["fast", "thorough"], "default": "fast"},
}


def problem(config: object, schema: dict = SCHEMA, plugin: object = None) -> tuple[str, str]:
    with pytest.raises(ConfigProblem) as err:
        check_config(schema, config, plugin)
    return err.value.field, err.value.problem


def test_a_config_gets_its_defaults() -> None:
    assert check_config(SCHEMA, {"url": "http://x", "ratio": 2}) == {
        "url": "http://x", "retries": 3, "ratio": 2, "loud": False, "events": ["push"], "mode": "fast"}
    assert check_config(None, {"anything": 1}) == {"anything": 1}
    assert check_config({}, None) == {}


def test_each_config_mistake_names_its_field() -> None:
    assert problem({}) == ("url", "required")
    assert problem({"url": 5}) == ("url", "must be a string, got a number")
    assert problem({"url": "u", "retries": True}) == ("retries", "must be a whole number, got true/false")
    assert problem({"url": "u", "events": ["push", 3]}) == ("events[1]", "must be a string, got a number")
    assert problem({"url": "u", "mode": "slow"}) == ("mode", "must be one of fast, thorough, got 'slow'")
    assert problem({"url": "u", "colour": "red"})[0] == "colour"
    assert problem(["url"]) == ("", "must be a mapping of settings, got a list")


def test_a_plugins_own_check_may_raise_a_plain_value_error() -> None:
    class Plugin:
        @staticmethod
        def check_config(config: dict) -> None:
            if not config["url"].startswith("http"):
                raise ValueError("url: must be an http(s) URL")

    assert problem({"url": "ftp://x"}, plugin=Plugin) == ("", "url: must be an http(s) URL")


def test_a_malformed_schema_is_the_plugin_authors_mistake() -> None:
    with pytest.raises(ConfigProblem, match="config_schema.url.type"):
        check_schema({"url": {"type": "string"}})
    with pytest.raises(ConfigProblem, match="config_schema.url"):
        check_schema({"url": {"kind": "str"}})


def test_branch_filters_include_then_exclude() -> None:
    repo = {"branches": {"include": ["main", "release/*"], "exclude": ["release/old*"]}}
    assert branch_allowed(repo, "main") and branch_allowed(repo, "release/2.0")
    assert not branch_allowed(repo, "feature/x") and not branch_allowed(repo, "release/old-1")
    assert branch_allowed({}, "anything") and not branch_allowed({"branches": {"exclude": ["wip/*"]}}, "wip/a")


def test_a_plugins_commands_become_phase_steps_and_a_stage_named_after_it() -> None:
    answer = {"phases": {"prepare": ["make deps"], "test": ["make test", {"run": "make lint", "title": "lint",
                                                                          "ignore_exit_code": True}]},
              "env": {"LEVEL": 2}, "artifacts": ["out/*.xml"]}
    added = plugin_contribution("tool", answer, taken={"unit"})
    assert added["steps"] == {"prepare": [{"run": "make deps", "title": "make deps", "ignore_exit_code": False,
                                           "stage": "tool"}]}
    assert added["stages"] == [{"name": "tool", "needs": [], "deploy": False, "env": {}, "hooks": {}, "steps": [
        {"run": "make test", "title": "make test", "ignore_exit_code": False},
        {"run": "make lint", "title": "lint", "ignore_exit_code": True}]}]
    assert added["env"] == {"LEVEL": "2"} and added["artifacts"] == ["out/*.xml"]
    assert plugin_contribution("unit", {"phases": {"test": ["x"]}}, taken={"unit"})["stages"][0]["name"] == \
        "unit (plugin)"


@pytest.mark.parametrize(("answer", "fault"), [
    ({"phases": {"build": ["x"]}}, "unknown phase 'build'"),
    ({"phases": {"test": "make"}}, "test must be a list"),
    ({"phases": {"test": [""]}}, "test[0] must be a command"),
    ({"env": {"A": ["x"]}}, "env() must return"),
    ({"artifacts": ["../secret"]}, "inside the workspace"),
])
def test_a_malformed_answer_fails_naming_the_plugin(answer: dict, fault: str) -> None:
    with pytest.raises(PluginError) as err:
        plugin_contribution("tool", answer, set())
    assert str(err.value).startswith("plugin tool: ") and fault in str(err.value)


def test_every_built_in_plugin_loads() -> None:
    loaded = Plugins.discover().loaded
    assert {"shell", "python", "node", "github", "gitlab", "schedule", "after", "report"} <= set(loaded)


# -- the API module ---------------------------------------------------------------------------

def test_the_plugin_facing_errors_are_apiary_errors() -> None:
    assert issubclass(TriggerRefused, ApiaryError) and issubclass(ConfigProblem, ApiaryError)
    assert issubclass(ConfigProblem, ValueError)  # a plugin's check_config may raise either
    assert str(ConfigProblem("url", "required")) == "url: required"


def test_a_secrets_name_follows_the_queens_rule() -> None:
    assert api.SECRET_NAME.pattern == ENV_NAME.pattern


def test_the_queens_context_is_the_documented_one() -> None:
    ctx = QueenContext(web.Application(), "tool", http=object())  # type: ignore[arg-type]
    assert isinstance(ctx, PluginContext) and ctx.log.name == "apiary.plugin.tool"
    members = [n for n, v in vars(PluginContext).items() if inspect.isfunction(v) and not n.startswith("_")]
    assert {"trigger", "repos", "secret", "queued", "ignored", "job_url"} <= set(members)
    for name in members:
        documented = inspect.signature(getattr(PluginContext, name))
        given = inspect.signature(getattr(ctx, name))
        assert list(documented.parameters.values())[1:] == list(given.parameters.values()), name
        assert inspect.iscoroutinefunction(getattr(PluginContext, name)) == \
            inspect.iscoroutinefunction(getattr(ctx, name)), name


# -- reactions: the hub's internal job event, not the browsers' topic ------------------------------

class Store:
    def __init__(self, jobs: dict[str, dict[str, Any]]) -> None:
        self.jobs = jobs

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        return self.jobs.get(job_id)


class Recording:
    """A plugin that notes its reactions; `fail` makes job_done raise."""

    def __init__(self, told: list[tuple[str, str, str]], name: str, fail: bool = False) -> None:
        self.told, self.name, self.fail = told, name, fail

    async def job_started(self, job: dict[str, Any], ctx: Any) -> None:
        await asyncio.sleep(0.01)  # slower than the end arriving: job_done still waits for it
        self.told.append((self.name, "started", job["_id"]))

    async def job_done(self, job: dict[str, Any], ctx: Any) -> None:
        self.told.append((self.name, "done", job["_id"]))
        if self.fail:
            raise RuntimeError("broken on purpose")


async def reacting(jobs: dict[str, dict[str, Any]]) -> tuple[Hub, Reactions, list[tuple[str, str, str]]]:
    told: list[tuple[str, str, str]] = []
    plugins = Plugins({"a": Recording(told, "a", fail=True), "b": Recording(told, "b"), "quiet": object()})
    reactions = Reactions(plugins, {name: object() for name in plugins.loaded}, Store(jobs))  # type: ignore[misc]
    hub = Hub()
    hub.listen_jobs(reactions.on_status)
    return hub, reactions, told


async def settle(reactions: Reactions) -> None:
    while reactions._tasks:
        await asyncio.gather(*reactions._tasks)


def story(told: list[tuple[str, str, str]], job_id: str) -> list[tuple[str, set[str]]]:
    """What the plugins were told of `job_id`, in order, each step with the plugins told it."""
    out: list[tuple[str, set[str]]] = []
    for name, when, job in told:
        if job == job_id:
            if out and out[-1][0] == when:
                out[-1][1].add(name)
            else:
                out.append((when, {name}))
    return out


async def test_each_reaction_once_in_order_even_when_a_plugin_raises() -> None:
    hub, reactions, told = await reacting({"j1": {"_id": "j1", "started": 1.0}, "j2": {"_id": "j2", "started": 2.0}})
    assert reactions.wanted
    for status in ("dispatched", "running", "running", "passed", "passed", "cancelled"):
        hub.job_status("j1", status)
    hub.job_status("j2", "running")
    await settle(reactions)
    hub.job_status("j2", "failed")
    await settle(reactions)
    for job_id in ("j1", "j2"):
        assert story(told, job_id) == [("started", {"a", "b"}), ("done", {"a", "b"})]
    assert len(told) == 8
    await reactions.close()


async def test_a_job_that_ended_before_its_start_was_told_gets_both_in_order() -> None:
    hub, reactions, told = await reacting({"quick": {"_id": "quick", "started": 1.0}, "never": {"_id": "never"}})
    hub.job_status("quick", "passed")
    hub.job_status("never", "cancelled")  # cancelled in the queue: it never started
    await settle(reactions)
    assert story(told, "quick") == [("started", {"a", "b"}), ("done", {"a", "b"})]
    assert story(told, "never") == [("done", {"a", "b"})]
    await reactions.close()


async def test_reactions_do_not_hear_the_browsers_topic() -> None:
    hub, reactions, told = await reacting({"j1": {"_id": "j1", "started": 1.0}})
    hub.publish("jobs", {"type": "job:update", "job": "j1", "status": "running"})
    hub.publish("jobs", {"type": "job:update", "job": "j1", "status": "passed"})
    await settle(reactions)
    assert told == []
    hub.unlisten_jobs(reactions.on_status)
    hub.job_status("j1", "passed")
    await settle(reactions)
    assert told == []


def test_a_job_listener_that_raises_does_not_stop_the_others() -> None:
    hub, heard = Hub(), []

    def broken(job_id: str, status: str, job: dict | None) -> None:
        raise RuntimeError("broken on purpose")

    hub.listen_jobs(broken)
    hub.listen_jobs(lambda job_id, status, job: heard.append((job_id, status, job)))
    hub.job_status("j1", "running", {"_id": "j1", "status": "running"})
    hub.job_status("j2", "passed")  # a caller without the document: listeners read it themselves
    assert heard == [("j1", "running", {"_id": "j1", "status": "running"}), ("j2", "passed", None)]


async def test_a_background_task_that_raises_starts_again_after_a_growing_pause(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(plugin_reactions.asyncio, "sleep", sleep)

    class Flaky:
        runs = 0

        async def background(self, ctx: Any) -> None:
            self.runs += 1
            if self.runs < 4:
                raise RuntimeError("broken on purpose")

    plugin = Flaky()
    await asyncio.wait_for(supervise("flaky", plugin, object()), 5)  # type: ignore[arg-type]
    assert plugin.runs == 4 and pauses == [1.0, 2.0, 4.0]


async def test_reactions_use_the_job_the_write_returned_without_reading_it_again() -> None:
    hub, reactions, told = await reacting({})  # the store knows no job: only the documents given are used
    hub.job_status("given", "running", {"_id": "given", "started": 1.0})
    await settle(reactions)
    hub.job_status("given", "passed", {"_id": "given", "started": 1.0, "status": "passed"})
    await settle(reactions)
    assert story(told, "given") == [("started", {"a", "b"}), ("done", {"a", "b"})]
    await reactions.close()
