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
``--junitxml`` is added and the report is kept as an artifact. After the
stages, the file at ``junit`` (pytest's, or one the job's own steps wrote) is
one of the job's test reports when it is there (``reports()``: read by the
drone like the pipeline's ``reports.junit``, shown on the job page with every
test), and its counts are the plugin's figures (the job's ``plugins.python``):
tests, passed, failed, errors, skipped, seconds, and the first failed tests'
names.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

VENV = ".venv"

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


def reports(job: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The JUnit report (pytest's, or one a step of the job wrote there) is a test report of the job: the
    drone reads it, when it is there, with the pipeline's (apiary.drone.testreports, the one parser) and
    sends its counts as this plugin's figures."""
    return [config["junit"]]
