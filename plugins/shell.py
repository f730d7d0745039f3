"""The shell plugin: your own commands, per phase.

    plugins:
      - name: shell
        config:
          environment: ["./configure"]
          prepare: ["make deps"]
          test: ["make test", "make lint"]
          deploy: ["make release"]
          cleanup: ["make clean"]

Each phase takes a list of commands, run in order in the job's workspace; test and deploy commands form a stage named
``shell``. The same as writing the pipeline's phases and stages by hand, for
repositories whose settings would rather list commands than a pipeline.
"""

from __future__ import annotations

from typing import Any

PHASES = ("environment", "prepare", "test", "deploy", "cleanup")

config_schema = {phase: {"type": "list", "items": "str", "help": f"commands for the {phase} phase"}
                 for phase in PHASES}


def phases(job: dict[str, Any], config: dict[str, Any]) -> dict[str, list[str]]:
    return {phase: list(config[phase]) for phase in PHASES if config.get(phase)}
