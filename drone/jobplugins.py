"""One job's plugins (DESIGN.md §6): set up before the job's phases, asked for their results after its tests.

The executor (executor.py) runs the job; this module speaks to its plugins
through the drone's PluginManager (plugins.py) and keeps what they bring:
steps per phase, stages, artifacts and environment variables (never over the
job's parameters, secrets or ``APIARY_*`` ones). Plugin code sees the job
without its secrets (`view`); what it prints goes to the job's log, masked.
Faults raise PluginError: a failed install is a setup error, a plugin that
raises or answers wrongly fails the job.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apiary.core.protocol import MAX_NUMBER, JobType, Msg

from .masking import Masker
from .plugins import PluginError, PluginManager, plugin_contribution
from .step import EmitFn

log = logging.getLogger(__name__)


class JobPlugins:
    """The plugins a job names, and what they contributed once `setup` ran."""

    def __init__(self, job: dict[str, Any], workspace: Path, base_env: Mapping[str, str], emit: EmitFn,
                 masker: Masker, manager: PluginManager | None) -> None:
        self.job = job
        self.workspace = workspace
        self.base_env = base_env
        self.emit = emit
        self.masker = masker
        self.manager = manager  # None: plugins cannot run here (a job naming one is a setup error)
        self.steps: dict[str, list[dict[str, Any]]] = {}  # per phase, in the order the job names the plugins
        self.stages: list[dict[str, Any]] = []
        self.artifacts: list[str] = []
        self.reports: dict[str, list[str]] = {}  # plugin -> its JUnit report globs (apiary.drone.testreports)
        self._with_results: list[dict[str, Any]] = []

    def view(self) -> dict[str, Any]:
        """The job as plugin code sees it: no secrets."""
        job = self.job
        repo = job.get("repo") or {}
        return {"id": job["id"], "number": job.get("number"), "type": job.get("type", JobType.TEST.value),
                "repo": {k: repo.get(k) for k in ("name", "url", "provider")}, "ref": job.get("ref") or {},
                "trigger": job.get("trigger") or {}, "parameters": job.get("parameters") or {},
                "workspace": str(self.workspace)}

    def _say_out(self, text: str) -> None:
        self.emit(Msg.JOB_STDOUT, {"text": self.masker.mask(text)})

    async def setup(self, env: dict[str, str]) -> None:
        """Install what the job's plugins need, then take their commands, artifacts and environment (into `env`)."""
        plugins = self.job.get("plugins") or []
        if not plugins:
            return
        if self.manager is None:
            raise PluginError(plugins[0]["name"], "plugins cannot run here", setup=True)
        for note in await self.manager.ensure(plugins, self.job.get("secrets") or {}, self._say_out):
            self.emit(Msg.JOB_PLUGIN, {"plugin": note.pop("plugin"), "data": note})
        answers = await self.manager.call("setup", plugins, self.view(), self.workspace,
                                          dict(self.base_env), self._say_out)
        protected = {*(self.job.get("parameters") or {}), *(self.job.get("secrets") or {})}
        taken = {s["name"] for s in self.job["pipeline"].get("stages") or []}
        for plugin, answer in zip(plugins, answers):
            name = plugin["name"]
            contributed = plugin_contribution(name, answer, taken)
            for phase, steps in contributed["steps"].items():
                self.steps.setdefault(phase, []).extend(steps)
            self.stages.extend(contributed["stages"])
            taken.update(s["name"] for s in contributed["stages"])
            env.update({k: v for k, v in contributed["env"].items() if k not in protected and
                        not k.startswith("APIARY_")})
            self.artifacts.extend(contributed["artifacts"])
            if contributed["reports"]:
                self.reports[name] = contributed["reports"]
            if answer.get("has_results"):
                self._with_results.append(plugin)

    async def results(self) -> None:
        """After the tests: each plugin's figures (test counts…) as ``job:plugin`` events."""
        if not self._with_results or self.manager is None:
            return
        answers = await self.manager.call("results", self._with_results, self.view(), self.workspace,
                                          dict(self.base_env), self._say_out)
        for plugin, answer in zip(self._with_results, answers):
            data = answer.get("results")
            if data is not None:
                if not isinstance(data, dict) or not _plain_keys(data):
                    raise PluginError(plugin["name"], "results() must return a dict whose keys are strings "
                                      "without '.' or a leading '$'")
                dropped: list[str] = []
                data = carried(data, "", dropped)
                if dropped:
                    # The queen refuses these (JSON and a browser cannot hold them) and the drone would
                    # send the event again for ever: the job's log says what became null.
                    shown = ", ".join(dropped[:10]) + (f" and {len(dropped) - 10} more" if len(dropped) > 10 else "")
                    self._say_out(f"apiary: plugin {plugin['name']}: results field(s) {shown} set to null: "
                                  f"not a finite number within ±2**53\n")
                self.emit(Msg.JOB_PLUGIN, {"plugin": plugin["name"], "data": data})


def _plain_keys(value: Any, depth: int = 0) -> bool:
    """Whether every mapping key in `value` can be a stored field name."""
    if depth > 8:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and k and "." not in k and not k.startswith("$") and
                   _plain_keys(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_keys(v, depth + 1) for v in value)
    return True


def carried(value: Any, path: str, dropped: list[str]) -> Any:
    """`value` (JSON a plugin answered) with every number the wire refuses (NaN, ±inf, beyond ±2**53:
    apiary.core.protocol) as None, naming each in `dropped` (``coverage``, ``suites[2].time``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, dict, list)):
        return value
    if isinstance(value, dict):
        return {k: carried(v, f"{path}.{k}" if path else str(k), dropped) for k, v in value.items()}
    if isinstance(value, list):
        return [carried(v, f"{path}[{i}]", dropped) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value) or abs(value) > MAX_NUMBER:
        dropped.append(path or "(the value)")
        return None
    return value
