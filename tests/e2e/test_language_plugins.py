"""The python and node plugins where pip, pytest or npm run: alone, and in real jobs on a real queen and drone.
Their pure parts (commands, config checks, JUnit reports): tests/unit/test_language_plugins.py.

The python jobs check out a real git repository over file:// and run the test
runner's own interpreter (which has pytest), or a virtualenv made from it, so
no package index is needed. npm is an external tool: like the fake forge, a
stand-in ``npm`` first on the drone's PATH says what it was asked and fails
when told to.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from apiary.plugins import python as python_plugin
from tests.cluster import Cluster, output_lines
from tests.gitserver import commit, git
from tests.unit.test_language_plugins import configured, run_report

# The sample repository's own tests: two pass, one fails, one is skipped (a
# unittest-style skip, which pytest counts as skipped like its own).
SAMPLE = '''import unittest

import pytest


def test_adds():
    assert 1 + 1 == 2


def test_joins():
    assert "-".join("ab") == "a-b"


def test_divides():
    assert 7 // 2 == {answer}


@unittest.skip("not today")
def test_later():
    pass
'''

FAKE_NPM = '''#!/bin/sh
# A stand-in for npm: says what it was asked, with which settings; fails when $FAKE_NPM_FAILS names the command.
echo "fake npm: $* (fund=$npm_config_fund audit=$npm_config_audit CI=$CI)"
if [ "$*" = "${FAKE_NPM_FAILS:-}" ]; then echo "fake npm: $* failed" >&2; exit 1; fi
'''


def git_project(root: Path, *commits: dict[str, str]) -> tuple[str, list[str]]:
    """A bare repository with `commits` (files each) on main; its file:// URL and the commits' shas."""
    work = root / "work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    shas = [commit(work, files, f"commit {i}") for i, files in enumerate(commits)]
    bare = root / "project.git"
    git(root, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", str(bare), "main:refs/heads/main")
    return bare.as_uri(), shas


def runs(job: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [(c["phase"], c.get("stage"), c["command"]) for c in job["commands"] if c.get("stage") != "checkout"]


def plugin_data(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == "job:plugin" and e["plugin"] == name]


# -- python: the commands, run --------------------------------------------------------------------------

@pytest.mark.parametrize(("files", "calls"), [
    ({"requirements.txt": "six\n", "pyproject.toml": "[project]\nname = 'x'\n"},
     ["-m pip install -r requirements.txt", "-m pip install -e .", "-c import pytest", "-m pip install pytest"]),
    ({"setup.py": ""}, ["-m pip install -e .", "-c import pytest", "-m pip install pytest"]),
    ({"pyproject.toml": "[tool.ruff]\nline-length = 120\n"}, ["-c import pytest", "-m pip install pytest"]),
])
def test_python_decides_what_to_install_when_the_commands_run(tmp_path: Path, files: dict[str, str],
                                                              calls: list[str]) -> None:
    # A stand-in interpreter that notes its arguments and has no pytest.
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$*" >> "$(dirname "$0")/calls"\n[ "$1" != -c ]\n')
    fake.chmod(0o755)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    for name, text in files.items():
        (workspace / name).write_text(text)
    steps = python_plugin.phases({}, configured(python_plugin, {"venv": False, "python": str(fake)}))
    for step in steps["prepare"]:
        subprocess.run(["/bin/sh", "-c", step["run"]], cwd=workspace, check=True)
    assert (fake.parent / "calls").read_text().splitlines() == calls


# -- python: the results ------------------------------------------------------------------------------------

def test_python_counts_a_real_pytest_report(tmp_path: Path) -> None:
    (tmp_path / "test_mixed.py").write_text(SAMPLE.format(answer=4) + '''

@pytest.fixture
def broken():
    raise RuntimeError("no fixture today")


def test_needs_broken(broken):
    pass
''')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--junitxml=.apiary/pytest.xml"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    counts = run_report(tmp_path)
    seconds = counts.pop("seconds")
    assert counts == {"tests": 5, "passed": 2, "failed": 1, "errors": 1, "skipped": 1,
                      "failed_tests": ["test_mixed.test_divides", "test_mixed.test_needs_broken"]}
    assert isinstance(seconds, float) and 0 <= seconds < 60


# -- in real jobs ----------------------------------------------------------------------------------------------

async def test_python_runs_pytest_in_a_job_and_reports_the_counts(queen: Cluster, tmp_path: Path) -> None:
    pipeline = f"plugins:\n  - name: python\n    config: {{venv: false, python: {sys.executable}}}\n"
    url, (broken, fixed) = git_project(
        tmp_path / "git",
        {".apiary.yml": pipeline, "requirements.txt": "pytest\n", "test_sample.py": SAMPLE.format(answer=4)},
        {"test_sample.py": SAMPLE.format(answer=3)})
    await queen.add_drone("d1")
    await queen.request("POST", "/repos", {"name": "py", "url": url}, expect=201)

    job = await queen.wait_job((await queen.trigger("py", commit=broken))["id"], timeout=90)
    assert job["status"] == "failed" and "error" not in job, job
    pip = f"{sys.executable} -m pip install"
    assert runs(job) == [
        ("prepare", "python", f"if [ -f requirements.txt ]; then {pip} -r requirements.txt; fi"),
        ("prepare", "python", (f"if [ -f setup.py ] || grep -qsE '^\\[(project|build-system)\\]' pyproject.toml; "
                               f"then {pip} -e .; fi")),
        ("prepare", "python", f"{sys.executable} -c 'import pytest' 2>/dev/null || {pip} pytest"),
        ("test", "python", f"{sys.executable} -m pytest --junitxml=.apiary/pytest.xml")]
    assert [c["exitCode"] for c in job["commands"][-4:]] == [0, 0, 0, 1]
    events = await queen.events(job["id"])
    stdout = output_lines(events, "job:cmd:stdout")
    assert any(line.startswith("Requirement already satisfied: pytest") for line in stdout)
    assert any("1 failed, 2 passed, 1 skipped" in line for line in stdout), stdout
    [counts] = plugin_data(events, "python")
    assert counts.pop("seconds") >= 0
    assert counts == {"tests": 4, "passed": 2, "failed": 1, "errors": 0, "skipped": 1,
                      "failed_tests": ["test_sample.test_divides"]}
    assert job["plugins"]["python"]["tests"] == 4 and job["plugins"]["python"]["failed"] == 1
    artifacts = (await queen.get(f"/jobs/{job['id']}/artifacts"))["artifacts"]
    assert [a["name"] for a in artifacts] == [".apiary/pytest.xml"]
    # The same report is the job's test report: each test listed, failed first (apiary.drone.testreports)
    assert job["report"]["tests"] == 4 and job["report"]["files"] == [{"path": ".apiary/pytest.xml", "tests": 4}]
    tests = (await queen.get(f"/jobs/{job['id']}/tests"))["tests"]
    assert [(t["test"], t["status"]) for t in tests][:2] == [("test_sample.test_divides", "failed"),
                                                             ("test_sample.test_later", "skipped")], tests
    assert tests[0]["message"].startswith("assert"), tests[0]

    job = await queen.wait_job((await queen.trigger("py", commit=fixed))["id"], timeout=90)
    assert job["status"] == "passed", job
    assert {k: job["plugins"]["python"][k] for k in ("tests", "passed", "failed", "skipped")} == {
        "tests": 4, "passed": 3, "failed": 0, "skipped": 1}
    assert "failed_tests" not in job["plugins"]["python"]


async def test_python_makes_a_virtualenv_every_command_of_the_job_uses(queen: Cluster, tmp_path: Path) -> None:
    pipeline = f"""plugins:
  - name: python
    config: {{python: {sys.executable}, install: [], test: unittest discover -v}}
stages:
  - name: where
    steps:
      - echo "python=$(command -v python) VIRTUAL_ENV=$VIRTUAL_ENV workspace=$APIARY_WORKSPACE"
      - python -c "import importlib.util as u, sys; print(sys.prefix, u.find_spec('pytest') is not None)"
"""
    unit = "import unittest\n\n\nclass T(unittest.TestCase):\n    def test_ok(self):\n        pass\n"
    url, _ = git_project(tmp_path / "git", {".apiary.yml": pipeline, "test_it.py": unit})
    await queen.add_drone("d1")
    await queen.request("POST", "/repos", {"name": "venv", "url": url}, expect=201)
    job = await queen.wait_job((await queen.trigger("venv"))["id"], timeout=90)
    assert job["status"] == "passed", job
    assert runs(job)[0] == ("environment", "python", f"{sys.executable} -m venv .venv")
    assert ("test", "python", "python -m unittest discover -v") in runs(job)
    events = await queen.events(job["id"])
    workspace = next(e for e in output_lines(events, "job:cmd:stdout") if "workspace=" in e).split("workspace=")[1]
    venv = f"{workspace}/.venv"
    stdout = output_lines(events, "job:cmd:stdout")
    assert f"python={venv}/bin/python VIRTUAL_ENV={venv} workspace={workspace}" in stdout
    assert f"{venv} False" in stdout  # its own environment: the drone's pytest is not in it
    assert "test_ok (test_it.T.test_ok) ... ok" in output_lines(events, "job:cmd:stderr")
    # No pytest, no report: no figures (the job's output says no file matched)
    assert plugin_data(events, "python") == [] and "tests" not in (job.get("plugins") or {}).get("python", {})


@pytest.fixture
def fake_npm(tmp_path: Path) -> dict[str, str]:
    """A drone environment whose PATH finds the stand-in npm first."""
    npm = tmp_path / "fakebin" / "npm"
    npm.parent.mkdir()
    npm.write_text(FAKE_NPM)
    npm.chmod(0o755)
    return {"PATH": f"{npm.parent}:{os.environ['PATH']}"}


async def test_node_installs_with_npm_runs_the_scripts_and_the_tests(queen: Cluster,
                                                                     fake_npm: dict[str, str]) -> None:
    await queen.add_drone("d1", capacity=4, env=fake_npm)
    await queen.create_pipeline_repo("locked", """
plugins: [{name: node, config: {scripts: [lint, build]}}]
phases: {environment: ["echo {} > package-lock.json"]}
""")
    await queen.create_pipeline_repo("unlocked", "plugins: [node]\n")
    await queen.create_pipeline_repo("failing", "env: {FAKE_NPM_FAILS: test}\nplugins: [node]\n")
    await queen.create_pipeline_repo("bad-lint", """
env: {FAKE_NPM_FAILS: run lint}
plugins: [{name: node, config: {scripts: [lint]}}]
""")
    jobs = {name: (await queen.trigger(name))["id"] for name in ("locked", "unlocked", "failing", "bad-lint")}
    done = {name: await queen.wait_job(job_id) for name, job_id in jobs.items()}
    install = "if [ -f package-lock.json ] || [ -f npm-shrinkwrap.json ]; then npm ci; else npm install; fi"

    locked = done["locked"]
    assert locked["status"] == "passed", locked
    assert runs(locked) == [("environment", None, "echo {} > package-lock.json"), ("prepare", "node", install),
                            ("test", "node", "npm run lint"), ("test", "node", "npm run build"),
                            ("test", "node", "npm test")]
    settings = "(fund=false audit=false CI=true)"
    assert output_lines(await queen.events(locked["id"]), "job:cmd:stdout") == [
        f"fake npm: ci {settings}", f"fake npm: run lint {settings}", f"fake npm: run build {settings}",
        f"fake npm: test {settings}"]

    unlocked = done["unlocked"]
    assert unlocked["status"] == "passed", unlocked
    assert runs(unlocked) == [("prepare", "node", install), ("test", "node", "npm test")]
    assert output_lines(await queen.events(unlocked["id"]), "job:cmd:stdout") == [
        f"fake npm: install {settings}", f"fake npm: test {settings}"]

    failing = done["failing"]
    assert failing["status"] == "failed" and failing["phases"]["test"]["code"] == 1, failing
    assert [(c["command"], c["exitCode"]) for c in failing["commands"]] == [(install, 0), ("npm test", 1)]
    assert "fake npm: test failed" in output_lines(await queen.events(failing["id"]), "job:cmd:stderr")

    bad_lint = done["bad-lint"]
    assert bad_lint["status"] == "failed"
    assert [(c["command"], c["exitCode"]) for c in bad_lint["commands"]] == [(install, 0), ("npm run lint", 1)]
