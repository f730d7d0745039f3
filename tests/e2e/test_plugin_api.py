"""The plugin API loadable without Apiary: by path in a bare Python, and through plugins/host.py in a plugin's own
environment (subprocesses). The contract's pure parts: tests/unit/test_plugin_api.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from apiary.plugins import api


def test_the_api_loads_by_path_without_apiary() -> None:
    """As plugins/host.py loads it in a plugin's own environment: no Apiary, no aiohttp."""
    code = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("_api", sys.argv[1])
api = importlib.util.module_from_spec(spec)
spec.loader.exec_module(api)
assert "apiary" not in sys.modules and "aiohttp" not in sys.modules, sorted(sys.modules)
assert api.ApiaryError.__module__ == "_api" and issubclass(api.ConfigProblem, ValueError)
try:
    api.check_config({"n": {"type": "int"}}, {"n": "x"})
except api.ConfigProblem as exc:
    print(exc.field, exc.problem)
"""
    path = Path(api.__file__)
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "n must be a whole number, got a string\n"


GREETER = """
import apiary.plugins.api
from apiary.plugins.api import ConfigProblem

config_schema = {"greeting": {"type": "str", "default": "hello"}}


def check_config(config):
    if not config["greeting"].strip():
        raise ConfigProblem("greeting", "must not be empty")


def env(job, config):
    return {"GREETING": config["greeting"], "ROOT": apiary.plugins.api.ApiaryError.__module__}
"""


def test_a_plugin_without_apiary_beside_it_imports_the_api_by_its_name(tmp_path: Path) -> None:
    """plugins/host.py in a plugin's own environment: the plugin imports apiary.plugins.api, which host
    provides from beside itself, and its ConfigProblem names the field."""
    (tmp_path / "greeter.py").write_text(GREETER)
    info = tmp_path / "greeter-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: greeter\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[apiary.plugins]\ngreeter = greeter\n")
    host = Path(api.__file__).with_name("host.py")
    run = (f"import sys, runpy; sys.path.insert(0, {str(tmp_path)!r}); "
           f"runpy.run_path({str(host)!r}, run_name='__main__')")
    answers = []
    for config in ({"greeting": "hi"}, {"greeting": " "}):
        request = {"hook": "setup", "job": {"id": "j"}, "plugins": [{"name": "greeter", "config": config}]}
        done = subprocess.run([sys.executable, "-I", "-S", "-c", run], input=json.dumps(request),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        answers.append(json.loads(done.stdout)["plugins"][0])
    assert answers[0]["env"] == {"GREETING": "hi", "ROOT": "apiary.plugins.api"}
    assert answers[1] == {"name": "greeter", "error": "config.greeting: must not be empty"}
