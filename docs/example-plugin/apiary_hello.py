"""apiary-hello: an Apiary plugin that greets in the job's log and counts the workspace's files.

It uses every drone-side part of the plugin contract: a config schema,
commands for two phases, an environment variable, an artifact and results.
It imports nothing of Apiary but the plugin API, which drones provide in the
plugin's own environment.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from apiary.plugins.api import ConfigProblem

config_schema = {
    "greeting": {"type": "str", "default": "hello", "help": "what to say"},
    "loud": {"type": "bool", "default": False, "help": "say it in capitals"},
}


def check_config(config: dict[str, Any]) -> None:
    if not config["greeting"].strip():
        raise ConfigProblem("greeting", "must not be empty")


def phases(job: dict[str, Any], config: dict[str, Any]) -> dict[str, list[Any]]:
    words = config["greeting"].upper() if config["loud"] else config["greeting"]
    return {
        "prepare": [f"echo {shlex.quote(words)}, {shlex.quote(job['repo']['name'])}"],
        "test": [{"run": "ls -A | grep -v '^hello-count.txt$' | wc -l > hello-count.txt", "title": "count files"}],
    }


def env(job: dict[str, Any], config: dict[str, Any]) -> dict[str, str]:
    return {"HELLO_GREETING": config["greeting"]}


def artifacts(job: dict[str, Any], config: dict[str, Any]) -> list[str]:
    return ["hello-count.txt"]


def results(job: dict[str, Any], config: dict[str, Any]) -> dict[str, int]:
    counted = Path(job["workspace"], "hello-count.txt")
    return {"files": int(counted.read_text())} if counted.exists() else {}
