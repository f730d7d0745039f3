"""A repository's plugins setting, typed as YAML on the settings page: the job parameters a plugin passes on
stay as written, and a mistake names the setting and the line."""

from __future__ import annotations

import pytest

from apiary.core.errors import BadRequest
from apiary.queen.plugin_registry import Plugins


def test_a_plugins_job_parameters_are_text_as_written() -> None:
    plugins = Plugins.discover()
    text = ("- name: schedule\n  config:\n    schedules:\n"
            "      - every: 60\n        parameters: {PY: 3.10, MODE: yes, PERMS: 0755}\n")
    [setting] = plugins.check_settings(text)
    assert setting["config"]["schedules"][0]["parameters"] == {"PY": "3.10", "MODE": "yes", "PERMS": "0755"}
    assert setting["config"]["schedules"][0]["every"] == 60  # other values keep their kind


def test_bad_yaml_in_the_plugins_setting_names_it_and_the_line() -> None:
    with pytest.raises(BadRequest, match=r"^plugins: not valid YAML: .*\(line 2\)"):
        Plugins.discover().check_settings("- name: schedule\n  config: {every: 60]\n")
