"""The pipeline a job runs: parsed and validated on the queen, executed by the drone.

This is the minimal model — named stages of ``run`` steps, run in order — that
the full model of DESIGN.md §5 (phases, needs, hooks, parameters…) extends.
Pure: `parse_pipeline` takes plain data and returns the normalised pipeline the
drone receives in ``queue:new``, or raises BadRequest naming the faulty field.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import BadRequest

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._\-]{0,63}$")
_STAGE_KEYS = {"name", "steps"}
_STEP_KEYS = {"run", "title"}


def parse_pipeline(data: Any, where: str = "pipeline") -> dict[str, Any]:
    """Validate `data` and return ``{"stages": [{"name", "steps": [{"run", "title"}]}]}``."""
    if not isinstance(data, dict):
        raise BadRequest(f"{where}: must be an object with 'stages'", field=where)
    _no_unknown(data, {"stages"}, where)
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        raise BadRequest(f"{where}.stages: must be a non-empty list of stages", field=f"{where}.stages")
    seen: set[str] = set()
    out = []
    for i, stage in enumerate(stages):
        at = f"{where}.stages[{i}]"
        if not isinstance(stage, dict):
            raise BadRequest(f"{at}: must be an object with 'name' and 'steps'", field=at)
        _no_unknown(stage, _STAGE_KEYS, at)
        name = stage.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise BadRequest(f"{at}.name: must be a name of letters, digits, spaces, '.', '_' or '-'", field=f"{at}.name")
        if name in seen:
            raise BadRequest(f"{at}.name: stage {name!r} appears twice", field=f"{at}.name")
        seen.add(name)
        steps = stage.get("steps")
        if not isinstance(steps, list) or not steps:
            raise BadRequest(f"{at}.steps: must be a non-empty list of steps", field=f"{at}.steps")
        out.append({"name": name, "steps": [_step(step, f"{at}.steps[{j}]") for j, step in enumerate(steps)]})
    return {"stages": out}


def _step(step: Any, at: str) -> dict[str, str]:
    if isinstance(step, str):
        step = {"run": step}
    if not isinstance(step, dict):
        raise BadRequest(f"{at}: must be a command string or an object with 'run'", field=at)
    _no_unknown(step, _STEP_KEYS, at)
    run = step.get("run")
    if not isinstance(run, str) or not run.strip():
        raise BadRequest(f"{at}.run: must be a non-empty command", field=f"{at}.run")
    title = step.get("title", run.splitlines()[0][:80])
    if not isinstance(title, str):
        raise BadRequest(f"{at}.title: must be a string", field=f"{at}.title")
    return {"run": run, "title": title}


def _no_unknown(obj: dict[str, Any], known: set[str], at: str) -> None:
    for key in obj:
        if key not in known:
            raise BadRequest(f"{at}.{key}: unknown key (known: {', '.join(sorted(known))})", field=f"{at}.{key}")
