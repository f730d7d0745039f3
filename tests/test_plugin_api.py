"""The plugin contract's pure parts: config schemas, branch filters, what a plugin's answer adds to a job."""

from __future__ import annotations

import pytest

from apiary.drone.plugins import PluginError, plugin_contribution
from apiary.plugins.api import ConfigProblem, check_config, check_schema
from apiary.queen.plugins import branch_allowed

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
    from apiary.queen.plugins import Plugins

    loaded = Plugins.discover().loaded
    assert {"shell", "python", "node", "github", "gitlab", "schedule", "after", "report"} <= set(loaded)
