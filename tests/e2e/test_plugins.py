"""Plugins on drones: built in, installed from a wheel folder, failing, hanging, and where jobs go.

The worked example of docs/plugins.md (docs/example-plugin) is built into a
wheel here and installed by real drones with pip from a local folder.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.browser import browser, page, shot  # noqa: F401  (fixtures)
from tests.cluster import Cluster, output_lines
from tests.unit.test_plugins import EXAMPLE

BROKEN = '''
import time

config_schema = {"mode": {"type": "str", "choices": ["raise", "hang", "print"], "required": True}}


def phases(job, config):
    if config["mode"] == "raise":
        raise RuntimeError("the plugin broke on purpose")
    if config["mode"] == "hang":
        time.sleep(600)
    print("plugin code may print; it lands in the log")
    return {"test": ["echo tested by broken"]}
'''


def one_module_plugin(folder: Path, name: str, code: str, out: Path, version: str = "1.0.0") -> None:
    """Build the wheel of plugin `name` (distribution apiary-NAME, module apiary_NAME holding `code`) into `out`."""
    folder.mkdir(parents=True)
    (folder / f"apiary_{name}.py").write_text(code)
    (folder / "pyproject.toml").write_text(textwrap.dedent(f'''
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "apiary-{name}"
        version = "{version}"
        [project.entry-points."apiary.plugins"]
        {name} = "apiary_{name}"
        [tool.setuptools]
        py-modules = ["apiary_{name}"]
    '''))
    build_wheel(folder, out)


def build_wheel(source: Path, out: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(out), str(source)], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of plugin wheels: the worked example at 1.0.0 and 2.0.0, and a plugin that misbehaves."""
    root = tmp_path_factory.mktemp("plugins")
    out = root / "wheels"
    v1 = root / "hello-1"
    shutil.copytree(EXAMPLE, v1)  # built from a copy: a build leaves files beside its source
    build_wheel(v1, out)
    v2 = root / "hello-2"
    shutil.copytree(EXAMPLE, v2)
    pyproject = v2 / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "1.0.0"', 'version = "2.0.0"'))
    module = v2 / "apiary_hello.py"
    module.write_text(module.read_text().replace('"default": "hello"', '"default": "hello again"'))
    build_wheel(v2, out)
    one_module_plugin(root / "broken", "broken", BROKEN, out, version="0.1")
    return out


def from_wheels(wheels: Path, **extra: str) -> dict[str, str]:
    return {"APIARY_DRONE_PIP_ARGS": f"--no-index --find-links {wheels}", **extra}


def text_of(events: list[dict], kind: str) -> str:
    return "".join(e["text"] for e in events if e["type"] == kind)


async def test_the_shell_plugin_adds_commands_to_the_phases(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", """
plugins:
  - name: shell
    config:
      prepare: ["echo preparing"]
      test: ["echo testing from shell", "test -f made-by-prepare"]
      cleanup: ["echo cleaning"]
phases:
  prepare: ["touch made-by-prepare"]
stages:
  - {name: unit, steps: ["echo unit"]}
""")
    job = await queen.wait_job((await queen.trigger("app"))["id"])
    assert job["status"] == "passed", job
    runs = [(c["phase"], c.get("stage"), c["command"]) for c in job["commands"]]
    assert runs[:2] == [("prepare", "shell", "echo preparing"), ("prepare", None, "touch made-by-prepare")]
    assert {r for r in runs[2:5]} == {("test", "shell", "echo testing from shell"),
                                      ("test", "shell", "test -f made-by-prepare"), ("test", "unit", "echo unit")}
    assert runs[-1] == ("cleanup", "shell", "echo cleaning")


async def test_a_drone_installs_the_worked_example_once_and_reuses_it(queen: Cluster, wheels: Path) -> None:
    await queen.add_drone("d1", capacity=2, env=from_wheels(wheels))
    await queen.create_pipeline_repo("greeter", """
plugins:
  - {name: hello, pip: "apiary-hello==1.0.0", config: {greeting: hi, loud: true}}
stages:
  - {name: check, steps: ["echo greeting=$HELLO_GREETING"]}
""")
    # Two jobs at once on a drone with two slots: one installs, the other waits for it.
    first, second = [await queen.trigger("greeter") for _ in range(2)]
    jobs = [await queen.wait_job(j["id"], timeout=120) for j in (first, second)]
    assert [j["status"] for j in jobs] == ["passed", "passed"], jobs
    events = [await queen.events(j["id"]) for j in jobs]
    installs = [text_of(e, "job:stdout").count("installing plugin hello") for e in events]
    assert sorted(installs) == [0, 1]
    installer = events[installs.index(1)]
    assert "Successfully installed apiary-hello-1.0.0" in text_of(installer, "job:stdout")
    plugin_events = [e for e in installer if e["type"] == "job:plugin"]
    assert plugin_events[0]["plugin"] == "hello" and plugin_events[0]["data"]["installed"] == "apiary-hello==1.0.0"

    for job, evs in zip(jobs, events):
        assert "HI, greeter" in output_lines(evs, "job:cmd:stdout")
        assert "greeting=hi" in output_lines(evs, "job:cmd:stdout")
        results = [e["data"] for e in evs if e["type"] == "job:plugin" and "files" in e["data"]]
        assert results == [{"files": 0}]  # a stored pipeline, no checkout: an empty workspace
        assert job["plugins"]["hello"]["files"] == 0
        artifacts = (await queen.get(f"/jobs/{job['id']}/artifacts"))["artifacts"]
        assert [a["name"] for a in artifacts] == ["hello-count.txt"]

    drones = (await queen.get("/drones"))["drones"]
    assert "apiary-hello==1.0.0" in drones[0]["plugins"] and "shell" in drones[0]["plugins"]
    third = await queen.wait_job((await queen.trigger("greeter"))["id"])
    assert "installing plugin" not in text_of(await queen.events(third["id"]), "job:stdout")


async def test_two_repositories_pinning_different_versions_do_not_clash(queen: Cluster, wheels: Path) -> None:
    await queen.add_drone("d1", env=from_wheels(wheels))
    for version in ("1.0.0", "2.0.0"):
        await queen.create_pipeline_repo(f"v{version[0]}", f"""
plugins: ["apiary-hello=={version}"]
stages: [{{name: t, steps: ["echo greeting=$HELLO_GREETING"]}}]
""")
    lines = {}
    for name in ("v1", "v2", "v1"):
        job = await queen.wait_job((await queen.trigger(name))["id"], timeout=120)
        assert job["status"] == "passed", job
        lines.setdefault(name, set()).update(output_lines(await queen.events(job["id"]), "job:cmd:stdout"))
    assert "greeting=hello" in lines["v1"] and "greeting=hello again" in lines["v2"]
    envs = list((queen.tmp / "drones" / "d1" / "plugins").glob("apiary-hello-*/.apiary-ready"))
    assert sorted(p.read_text() for p in envs) == ["apiary-hello==1.0.0", "apiary-hello==2.0.0"]


async def test_a_failed_install_is_a_setup_error_with_pips_message(queen: Cluster, wheels: Path) -> None:
    await queen.add_drone("d1", env=from_wheels(wheels))
    await queen.create_pipeline_repo("app", """
plugins: ["apiary-missing==9.9"]
stages: [{name: t, steps: ["echo never runs"]}]
""")
    job = await queen.wait_job((await queen.trigger("app"))["id"], timeout=120)
    assert job["status"] == "errored"
    assert "plugin apiary-missing: pip install failed" in job["error"]
    # A setup failure is the infrastructure's: tried max_attempts (3) times, each attempt kept.
    assert job["attempts"] == 3 and sorted(job["history"]) == ["1", "2", "3"]
    assert "drone d1: setup failed: plugin apiary-missing: pip install failed" in job["history"]["1"]["reason"]
    assert "No matching distribution found for apiary-missing==9.9" in job["error"]
    events = await queen.events(job["id"])
    assert "No matching distribution" in text_of(events, "job:stdout")
    assert not any(e["type"] == "job:cmd:start" for e in events)
    assert not list((queen.tmp / "drones" / "d1" / "plugins").glob("apiary-missing-*/.apiary-ready"))


async def test_a_plugin_that_raises_or_hangs_fails_its_job_and_the_drone_carries_on(queen: Cluster,
                                                                                     wheels: Path) -> None:
    await queen.add_drone("d1", env=from_wheels(wheels, APIARY_DRONE_PLUGIN_TIMEOUT="3"))
    for mode in ("raise", "hang", "print"):
        await queen.create_pipeline_repo(mode, f"""
plugins: [{{name: broken, pip: apiary-broken, config: {{mode: {mode}}}}}]
stages: [{{name: t, steps: ["echo ok"]}}]
""")
    raised = await queen.wait_job((await queen.trigger("raise"))["id"], timeout=120)
    assert raised["status"] == "failed"
    assert raised["error"] == "plugin broken: phases() raised RuntimeError: the plugin broke on purpose"
    assert "Traceback" in text_of(await queen.events(raised["id"]), "job:stdout")
    hung = await queen.wait_job((await queen.trigger("hang"))["id"], timeout=60)
    assert hung["status"] == "failed" and hung["error"] == "plugin broken: setup did not answer within 3 s"
    fine = await queen.wait_job((await queen.trigger("print"))["id"], timeout=60)
    assert fine["status"] == "passed"
    events = await queen.events(fine["id"])
    assert "plugin code may print; it lands in the log" in text_of(events, "job:stdout")
    assert "tested by broken" in output_lines(events, "job:cmd:stdout")


async def test_a_plugins_bad_config_fails_the_job_naming_the_field(queen: Cluster, wheels: Path) -> None:
    await queen.add_drone("d1", env=from_wheels(wheels))
    await queen.create_pipeline_repo("app", """
plugins: [{name: hello, pip: "apiary-hello==1.0.0", config: {greeting: "  "}}]
stages: [{name: t, steps: ["true"]}]
""")
    job = await queen.wait_job((await queen.trigger("app"))["id"], timeout=120)
    assert (job["status"], job["error"]) == ("failed", "plugin hello: config.greeting: must not be empty")


async def test_a_plugin_config_the_queen_can_check_is_refused_at_trigger_time(queen: Cluster) -> None:
    await queen.create_pipeline_repo("app", """
plugins: [{name: shell, config: {test: "make test"}}]
""")
    status, body = await queen.request("POST", "/repos/app/jobs", {})
    assert status == 400
    assert body["field"] == "pipeline.plugins[0].config.test"
    assert body["error"] == "pipeline.plugins[0].config.test: must be a list, got a string"
    assert (await queen.get("/repos/app/jobs"))["jobs"] == []


async def test_a_drone_that_never_installs_takes_only_jobs_whose_plugins_it_has(queen: Cluster,
                                                                               wheels: Path) -> None:
    await queen.add_drone("frozen", env=from_wheels(wheels, APIARY_DRONE_INSTALL_PLUGINS="false"))
    await queen.create_pipeline_repo("needs-hello", """
plugins: ["apiary-hello==1.0.0"]
stages: [{name: t, steps: ["true"]}]
""")
    await queen.create_pipeline_repo("builtin", """
plugins: [{name: shell, config: {test: ["echo built in"]}}]
""")
    waiting = await queen.trigger("needs-hello")
    done = await queen.wait_job((await queen.trigger("builtin"))["id"])
    assert (done["status"], done["drone"]) == ("passed", "frozen")
    assert (await queen.job(waiting["id"]))["status"] == "queued"
    drones = (await queen.get("/drones"))["drones"]
    assert drones[0]["installs_plugins"] is False

    await queen.add_drone("installer", env=from_wheels(wheels))
    job = await queen.wait_job(waiting["id"], timeout=120)
    assert (job["status"], job["drone"]) == ("passed", "installer")


async def test_repository_settings_refuse_plugins_the_queen_lacks(queen: Cluster) -> None:
    status, body = await queen.request("POST", "/repos", {"name": "app", "pipeline": "plugins: [shell]",
                                                          "plugins": [{"name": "nope"}]})
    assert status == 400 and body["field"] == "plugins[0].name"
    assert re.search(r"no plugin 'nope' is installed on the queen \(installed: .*github.*\)", body["error"])
    assert (await queen.get("/repos"))["repos"] == []


async def test_the_job_page_shows_the_install_and_the_plugins_figures(queen: Cluster, wheels: Path,
                                                                     page: Page) -> None:
    await queen.add_drone("d1", env=from_wheels(wheels))
    await queen.create_pipeline_repo("greeter", """
plugins: [{name: hello, pip: "apiary-hello==1.0.0"}]
stages: [{name: wait, steps: ["sleep 1"]}]
""")
    job = await queen.trigger("greeter")
    await page.goto(f"/jobs/{job['id']}")
    log = page.locator("#steps")
    await expect(log).to_contain_text("installing plugin hello", timeout=60_000)
    await expect(log).to_contain_text("plugin hello: files 0", timeout=60_000)
    figures = page.locator(".plugin-figures[data-plugin=hello]")
    await expect(figures).to_contain_text("files 0")
    await expect(figures).to_contain_text("installed apiary-hello==1.0.0")
    await shot(page, "job-plugin")


async def test_a_private_requirements_token_comes_from_a_secret_and_never_shows(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", """
plugins: [{name: private, pip: "git+https://${GIT_TOKEN}@127.0.0.1:9/team/apiary-private.git"}]
stages: [{name: t, steps: ["true"]}]
""")
    token = "tok-5f3a9c1e77"
    await queen.request("PUT", "/repos/app/secrets/GIT_TOKEN", {"value": token}, expect=200)
    job = await queen.wait_job((await queen.trigger("app"))["id"], timeout=120)
    assert job["status"] == "errored" and "plugin private: pip install failed" in job["error"]
    events = await queen.events(job["id"])
    assert "git+https://${GIT_TOKEN}@127.0.0.1:9" in text_of(events, "job:stdout")  # what was asked, as written
    assert token not in repr(events) and token not in repr(job)
    plugin_dirs = [p.name for p in (queen.tmp / "drones" / "d1" / "plugins").iterdir()]
    assert plugin_dirs and not any(token in name for name in plugin_dirs)
