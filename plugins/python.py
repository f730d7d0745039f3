"""The python plugin: a virtualenv, the project's installs, pytest, and the test counts.

    plugins:
      - name: python
        config:
          python: python3.12              # the interpreter that makes the virtualenv (default python3)
          venv: true                      # false: no virtualenv, `python` itself runs everything
          install: ["-r requirements-dev.txt", "-e .[test]"]   # each is `pip install <it>`
          test: pytest -q tests           # what `python -m` runs (default pytest)
          junit: .apiary/pytest.xml       # where pytest writes its report (the default)

Phase environment makes the virtualenv ``.venv`` in the workspace (after the
checkout); its ``bin`` leads ``PATH`` and ``VIRTUAL_ENV`` names it for every
command of the job, the pipeline's own stages included (a ``PATH`` set in the
pipeline's ``env`` is replaced). Phase prepare installs: without ``install``,
what the checkout has, decided when it runs: ``-r requirements.txt`` if
that file exists, ``-e .`` if there is a ``setup.py`` or a ``pyproject.toml``
with a ``[project]`` or ``[build-system]`` table, then pytest if the tests
need it and it is missing; ``install: []`` installs nothing. The test command
forms a stage named ``python``; ``test: ""`` leaves it out. When it runs pytest,
``--junitxml`` is added, the report is kept as an artifact and, after the
tests, its counts are sent as the plugin's results (the job's
``plugins.python``): tests, passed, failed, errors, skipped, seconds, and the
first failed tests' names.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Any

VENV = ".venv"
FAILED_SHOWN = 20  # failed tests named in the results

config_schema = {
    "python": {"type": "str", "default": "python3", "help": "the interpreter (a command) that makes the virtualenv"},
    "venv": {"type": "bool", "default": True, "help": "make a virtualenv .venv; false: use python as it is"},
    "install": {"type": "list", "items": "str",
                "help": "pip install arguments, one install each; unset: requirements.txt and the project if present"},
    "test": {"type": "str", "default": "pytest", "help": "what `python -m` runs as the tests; empty: no tests"},
    "junit": {"type": "str", "default": ".apiary/pytest.xml", "help": "pytest's JUnit XML report, in the workspace"},
}


def check_config(config: dict[str, Any]) -> None:
    if not config["python"].strip():
        raise ValueError("python: must not be empty")
    junit = PurePosixPath(config["junit"])
    if not config["junit"].strip() or junit.is_absolute() or ".." in junit.parts:
        raise ValueError("junit: must be a path inside the workspace")


def _runs_pytest(config: dict[str, Any]) -> bool:
    return config["test"].split()[:1] == ["pytest"]


def phases(job: dict[str, Any], config: dict[str, Any]) -> dict[str, list[Any]]:
    python = "python" if config["venv"] else config["python"]
    pip = f"{python} -m pip install"
    out: dict[str, list[Any]] = {}
    if config["venv"]:
        out["environment"] = [{"run": f"{config['python']} -m venv {VENV}", "title": f"make the virtualenv {VENV}"}]
    install = config.get("install")
    if install is None:
        install_steps: list[Any] = [
            {"run": f"if [ -f requirements.txt ]; then {pip} -r requirements.txt; fi",
             "title": "install requirements.txt (if there is one)"},
            {"run": f"if [ -f setup.py ] || grep -qsE '^\\[(project|build-system)\\]' pyproject.toml; "
                    f"then {pip} -e .; fi",
             "title": "install the project (if it is one)"},
        ]
        if _runs_pytest(config):
            install_steps.append({"run": f"{python} -c 'import pytest' 2>/dev/null || {pip} pytest",
                                  "title": "install pytest (if missing)"})
    else:
        install_steps = [f"{pip} {arguments}" for arguments in install]
    if install_steps:
        out["prepare"] = install_steps
    test = config["test"].strip()
    if test:
        if _runs_pytest(config) and "--junitxml" not in test:
            test += f" --junitxml={config['junit']}"
        out["test"] = [f"{python} -m {test}"]
    return out


def env(job: dict[str, Any], config: dict[str, Any]) -> dict[str, str]:
    out = {"PYTHONUNBUFFERED": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if config["venv"]:
        venv = str(Path(job["workspace"], VENV))
        out["VIRTUAL_ENV"] = venv
        out["PATH"] = os.pathsep.join(p for p in (f"{venv}/bin", os.environ.get("PATH", "")) if p)
    return out


def artifacts(job: dict[str, Any], config: dict[str, Any]) -> list[str]:
    return [config["junit"]] if config["test"].strip() and _runs_pytest(config) else []


def results(job: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The counts of the JUnit report; {} without one; a dict saying what is wrong with an unreadable one.

    A test run that crashed leaves no report or a broken one: that is the
    tests' failure, already shown by their exit code, not the plugin's.
    """
    path = Path(job["workspace"], config["junit"])
    if not path.is_file():
        return {}
    try:
        return junit_counts(ET.parse(path).getroot())
    except (ET.ParseError, OSError, ValueError) as exc:
        return {"junit": config["junit"], "error": f"cannot read the JUnit report: {exc}"}


def junit_counts(root: ET.Element) -> dict[str, Any]:
    """Sum a JUnit report's suites (pytest's ``<testsuites><testsuite …>`` or a lone ``<testsuite>``)."""
    if root.tag == "testsuite":
        suites = [root]
    elif root.tag == "testsuites":
        suites = root.findall("testsuite")
    else:
        raise ValueError(f"the root element is <{root.tag}>, not <testsuites> or <testsuite>")
    totals = {"tests": 0, "failed": 0, "errors": 0, "skipped": 0}
    seconds = 0.0
    failed: list[str] = []
    for suite in suites:
        for key, attribute in (("tests", "tests"), ("failed", "failures"), ("errors", "errors"),
                               ("skipped", "skipped")):
            totals[key] += int(suite.get(attribute) or 0)
        seconds += float(suite.get("time") or 0)
        for case in suite.findall("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(".".join(p for p in (case.get("classname"), case.get("name")) if p))
    passed = max(totals["tests"] - totals["failed"] - totals["errors"] - totals["skipped"], 0)
    out: dict[str, Any] = {"tests": totals["tests"], "passed": passed, "failed": totals["failed"],
                           "errors": totals["errors"], "skipped": totals["skipped"], "seconds": round(seconds, 3)}
    if failed:
        out["failed_tests"] = failed[:FAILED_SHOWN]
    return out
