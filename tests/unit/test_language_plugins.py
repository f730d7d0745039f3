"""The python and node plugins' pure parts: their commands, their config checks, and the python plugin's
reading of JUnit reports written here. What runs pip, pytest or npm, alone or in real jobs on a real queen and drone:
tests/e2e/test_language_plugins.py (which imports configured and run_report from here)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from apiary.core.protocol import Msg
from apiary.drone.testreports import send_reports
from apiary.plugins import node
from apiary.plugins import python as python_plugin
from apiary.plugins.api import ConfigProblem, check_config, check_schema


def configured(plugin: Any, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """`config` as the plugin's host gives it: checked, with the defaults filled in."""
    check_schema(plugin.config_schema)
    return check_config(plugin.config_schema, config or {}, plugin)


def run_report(workspace: Path, **config: Any) -> dict[str, Any]:
    """The python plugin's figures as a drone sends them: its ``reports()`` read by apiary.drone.testreports
    (the one JUnit parser); {} when it sent none. Lines the drone wrote about the files: `said`."""
    globs = python_plugin.reports({"workspace": str(workspace)}, configured(python_plugin, config))
    sent: list[tuple[Msg, dict[str, Any]]] = []
    asyncio.run(send_reports(workspace, {}, {"python": globs}, lambda m, b: sent.append((m, b)), str))
    said.clear()
    said.extend(b["text"] for m, b in sent if m in (Msg.JOB_STDOUT, Msg.JOB_STDERR))
    return next((b["data"] for m, b in sent if m is Msg.JOB_PLUGIN), {})


said: list[str] = []


# -- python: the commands ---------------------------------------------------------------------------------

def test_python_by_default_makes_a_virtualenv_installs_what_is_there_and_runs_pytest(tmp_path: Path) -> None:
    config = configured(python_plugin)
    steps = python_plugin.phases({"workspace": str(tmp_path)}, config)
    assert steps["environment"] == [{"run": "python3 -m venv .venv", "title": "make the virtualenv .venv"}]
    assert [s["title"] for s in steps["prepare"]] == ["install requirements.txt (if there is one)",
                                                      "install the project (if it is one)",
                                                      "install pytest (if missing)"]
    assert steps["test"] == ["python -m pytest --junitxml=.apiary/pytest.xml"]
    env = python_plugin.env({"workspace": str(tmp_path)}, config)
    assert env["VIRTUAL_ENV"] == f"{tmp_path}/.venv"
    assert env["PATH"] == f"{tmp_path}/.venv/bin:{os.environ['PATH']}"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert python_plugin.artifacts({}, config) == [".apiary/pytest.xml"]


def test_python_with_its_own_interpreter_installs_and_tests_what_it_is_told() -> None:
    config = configured(python_plugin, {"venv": False, "python": "/opt/py/bin/python3", "install": [
        "-r dev.txt", "-e .[test]"], "test": "pytest -q tests --junitxml=out/report.xml", "junit": "out/report.xml"})
    assert python_plugin.phases({}, config) == {
        "prepare": ["/opt/py/bin/python3 -m pip install -r dev.txt", "/opt/py/bin/python3 -m pip install -e .[test]"],
        "test": ["/opt/py/bin/python3 -m pytest -q tests --junitxml=out/report.xml"]}
    assert "PATH" not in python_plugin.env({"workspace": "/w"}, config)
    assert python_plugin.artifacts({}, config) == ["out/report.xml"]

    other = configured(python_plugin, {"install": [], "test": "unittest discover"})
    assert python_plugin.phases({}, other) == {"environment": [{"run": "python3 -m venv .venv",
                                                                "title": "make the virtualenv .venv"}],
                                               "test": ["python -m unittest discover"]}
    assert python_plugin.artifacts({}, other) == []
    assert "test" not in python_plugin.phases({}, configured(python_plugin, {"test": ""}))


@pytest.mark.parametrize(("config", "field"), [({"junit": "/tmp/report.xml"}, "junit"),
                                               ({"junit": "../report.xml"}, "junit"),
                                               ({"python": " "}, "python"),
                                               ({"install": "-r requirements.txt"}, "install")])
def test_python_refuses_a_config_that_cannot_work(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigProblem) as caught:
        configured(python_plugin, config)
    assert str(caught.value).startswith(f"{field}: ")


# -- python: the results ------------------------------------------------------------------------------------

def test_python_counts_a_lone_testsuite_and_sums_several(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    report.write_text('<testsuite tests="3" failures="0" errors="0" skipped="1" time="1.5">'
                      '<testcase classname="a" name="t1"/><testcase classname="a" name="t2"/>'
                      '<testcase classname="a" name="t3"><skipped/></testcase></testsuite>')
    assert run_report(tmp_path, junit="report.xml") == {"tests": 3, "passed": 2, "failed": 0, "errors": 0,
                                                       "skipped": 1, "seconds": 1.5}
    report.write_text('<testsuites><testsuite tests="2" failures="1" time="0.25">'
                      '<testcase classname="a.B" name="t1"><failure message="no"/></testcase><testcase name="t2"/>'
                      '</testsuite><testsuite tests="4" errors="1" time="0.5"><testcase name="t3"><error/></testcase>'
                      '</testsuite></testsuites>')
    # The tests are those the report lists (a suite's tests="4" with one <testcase> counts one)
    assert run_report(tmp_path, junit="report.xml") == {"tests": 3, "passed": 1, "failed": 1, "errors": 1,
                                                       "skipped": 0, "seconds": 0.75,
                                                       "failed_tests": ["a.B.t1", "t3"]}


@pytest.mark.parametrize(("text", "problem"), [
    ('<testsuites><testsuite tests="4" failures="1">', "not well-formed XML: no element found"),
    ("<html><body>502</body></html>", "the root element is <html>"),
])
def test_python_sends_no_counts_for_an_unreadable_report_and_the_job_output_says_why(tmp_path: Path, text: str,
                                                                                    problem: str) -> None:
    (tmp_path / ".apiary").mkdir()
    (tmp_path / ".apiary" / "pytest.xml").write_text(text)
    assert run_report(tmp_path) == {}
    assert said == [f"reports: .apiary/pytest.xml skipped: {problem}" + said[0].split(problem, 1)[1]], said


def test_python_reports_nothing_without_a_report(tmp_path: Path) -> None:
    assert run_report(tmp_path) == {}
    assert said == []  # the tests may not have run: nothing to say
    (tmp_path / ".apiary").mkdir()
    (tmp_path / ".apiary" / "pytest.xml").write_text("<testsuites/>")
    assert run_report(tmp_path) == {"tests": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "seconds": 0.0}


# -- node: the commands ---------------------------------------------------------------------------------------

def test_node_installs_runs_scripts_then_tests() -> None:
    steps = node.phases({}, configured(node, {"scripts": ["lint", "build"]}))
    assert steps["prepare"] == [{"run": "if [ -f package-lock.json ] || [ -f npm-shrinkwrap.json ]; then npm ci; "
                                        "else npm install; fi", "title": "npm ci (with a lockfile) or npm install"}]
    assert steps["test"] == ["npm run lint", "npm run build", "npm test"]
    assert node.env({}, configured(node)) == {"npm_config_fund": "false", "npm_config_audit": "false",
                                              "npm_config_update_notifier": "false"}
    custom = configured(node, {"npm": "/opt/node/bin/npm", "install": "/opt/node/bin/npm ci --ignore-scripts"})
    assert node.phases({}, custom) == {"prepare": ["/opt/node/bin/npm ci --ignore-scripts"],
                                       "test": ["/opt/node/bin/npm test"]}
    assert node.phases({}, configured(node, {"install": "", "test": ""})) == {}
    with pytest.raises(ConfigProblem, match=r"^scripts\[1\]: must not be empty"):
        configured(node, {"scripts": ["lint", ""]})
