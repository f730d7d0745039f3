"""A drone's plugins (DESIGN.md §6): what it has, installing what a job lacks, calling plugin code.

A job names plugins as {"name", "pip", "config"} (queen/pipeline.py). A plugin
without ``pip`` that the drone's own environment has (the built-ins, or one
installed next to Apiary) runs from there. Any other is installed with pip
into an environment of its own, ``work_dir/plugins/<name>-<hash>``, one per
requirement as written (so two repositories pinning different versions
never share one), once: later jobs reuse it. ``${NAME}`` in a requirement is
replaced with the job's secret NAME (``git+https://${TOKEN}@host/…``); the
directory is named after the requirement as written, so no token lands on
disk. One install of a requirement at a time, on this drone and on any other
drone sharing the work directory (a file lock).

Plugin code runs in a child process (plugins/host.py) under the plugin's
environment's Python, with a time limit: a plugin that raises, hangs or
crashes fails its job, never the drone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import apiary.plugins as builtin_plugins
from apiary.core.config import DroneConfig
from apiary.core.errors import ApiaryError
from apiary.core.reports import glob_problem
from apiary.core.stages import plugin_key

log = logging.getLogger(__name__)

GROUP = "apiary.plugins"
HOST = Path(builtin_plugins.__file__).with_name("host.py")
READY = ".apiary-ready"  # written last: an environment without it is an unfinished install
_SECRET_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_OUTPUT_TAIL = 2000  # characters of pip's output quoted in the job's error

Say = Callable[[str], None]


class PluginError(ApiaryError):
    """A plugin could not be set up or its code failed; ends the job naming the plugin.

    `setup` marks an install failure: the job ends ``errored``, not ``failed``.
    """

    def __init__(self, name: str, message: str, setup: bool = False) -> None:
        super().__init__(f"plugin {name}: {message}")
        self.plugin, self.setup = name, setup


class PluginManager:
    """The plugins this drone has, and the means to install and call them."""

    def __init__(self, config: DroneConfig) -> None:
        self.root = config.work_path / "plugins"
        self.installs = config.install_plugins
        self.pip_args = shlex.split(config.pip_args)
        self.timeout = config.plugin_timeout
        self.install_timeout = config.plugin_install_timeout
        self.own = {ep.name for ep in entry_points(group=GROUP)}
        self.envs: dict[str, Path] = {}  # requirement as written -> its environment
        self._locks: dict[str, asyncio.Lock] = {}
        self._scan()

    def _scan(self) -> None:
        if not self.root.is_dir():
            return
        for env in self.root.iterdir():
            key_file = env / READY
            if key_file.is_file():
                self.envs[key_file.read_text()] = env

    def have(self) -> list[str]:
        """What ``drone:info`` lists: plugin names of this environment and the requirements installed."""
        return sorted(self.own | set(self.envs))

    def _python(self, plugin: dict[str, Any]) -> str | None:
        if not plugin.get("pip") and plugin["name"] in self.own:
            return sys.executable
        env = self.envs.get(plugin_key(plugin))
        return str(env / "bin" / "python") if env else None

    # -- installing ------------------------------------------------------------------------

    async def ensure(self, plugins: list[dict[str, Any]], secrets: dict[str, str], say: Say) -> list[dict[str, Any]]:
        """Install the plugins this drone lacks, in order; return what was installed, for ``job:plugin``."""
        installed = []
        for plugin in plugins:
            if self._python(plugin) is None:
                started = time.monotonic()
                if await self._install(plugin, secrets, say):
                    installed.append({"plugin": plugin["name"], "installed": plugin_key(plugin),
                                      "seconds": round(time.monotonic() - started, 3)})
        return installed

    async def _install(self, plugin: dict[str, Any], secrets: dict[str, str], say: Say) -> bool:
        name, key = plugin["name"], plugin_key(plugin)
        if not self.installs:
            raise PluginError(name, f"this drone does not install plugins (install_plugins = false) and lacks {key}",
                              setup=True)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self.envs:
                return False  # another job installed it while this one waited
            self.root.mkdir(parents=True, exist_ok=True)
            env = self.root / _dir_name(name, key)
            with await _file_lock(env.with_suffix(".lock")):
                if (env / READY).is_file():  # another drone sharing the work directory did it
                    self.envs[key] = env
                    return False
                requirement = _expand(key, secrets, name)
                say(f"apiary: installing plugin {name} ({key})\n")
                try:
                    await self._run([sys.executable, "-m", "venv", "--without-pip", str(env)], say, name)
                    await self._run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install",
                                     "--disable-pip-version-check", "--no-input", *self.pip_args, requirement],
                                    say, name)
                except BaseException:
                    await asyncio.to_thread(shutil.rmtree, env, True)
                    raise
                (env / READY).write_text(key)
                self.envs[key] = env
                say(f"apiary: plugin {name} installed\n")
                return True

    async def _run(self, argv: list[str], say: Say, name: str) -> None:
        """Run an install command, its output streamed to the job's log; PluginError(setup) if it fails."""
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                    start_new_session=True)
        tail = ""
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(self.install_timeout):
                while chunk := await proc.stdout.read(65536):
                    text = chunk.decode("utf-8", "replace")
                    say(text)
                    tail = (tail + text)[-_OUTPUT_TAIL:]
                code = await proc.wait()
        except TimeoutError:
            raise PluginError(name, f"the install took longer than {self.install_timeout:g} s", setup=True) from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                await proc.wait()
        if code != 0:
            what = "pip install" if "pip" in argv else "creating its environment"
            raise PluginError(name, f"{what} failed (exit {code}): {tail.strip()[-_OUTPUT_TAIL:]}", setup=True)

    # -- calling plugin code ------------------------------------------------------------------

    async def call(self, hook: str, plugins: list[dict[str, Any]], job: dict[str, Any], cwd: Path,
                   env: dict[str, str], say: Say) -> list[dict[str, Any]]:
        """Call `hook` (setup or results) of each plugin, in order; raise PluginError for the first that failed.

        Plugins sharing an environment are called by one child process.
        """
        groups: dict[str, list[dict[str, Any]]] = {}
        for plugin in plugins:
            python = self._python(plugin)
            if python is None:
                raise PluginError(plugin["name"], "not installed on this drone", setup=True)
            groups.setdefault(python, []).append(plugin)
        answers: dict[str, dict[str, Any]] = {}
        for python, group in groups.items():
            for answer in await self._host(python, hook, group, job, cwd, env, say):
                answers[answer.get("name", "")] = answer
        out = []
        for plugin in plugins:
            answer = answers.get(plugin["name"]) or {"error": "gave no answer"}
            if "error" in answer:
                raise PluginError(plugin["name"], str(answer["error"]))
            out.append(answer)
        return out

    async def _host(self, python: str, hook: str, group: list[dict[str, Any]], job: dict[str, Any], cwd: Path,
                    env: dict[str, str], say: Say) -> list[dict[str, Any]]:
        names = ", ".join(p["name"] for p in group)
        request = json.dumps({"hook": hook, "job": job,
                              "plugins": [{"name": p["name"], "config": p.get("config") or {}} for p in group]})
        proc = await asyncio.create_subprocess_exec(python, "-I", str(HOST), stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                    cwd=cwd, env=env, start_new_session=True)
        try:
            async with asyncio.timeout(self.timeout):
                out, err = await proc.communicate(request.encode())
        except TimeoutError:
            raise PluginError(names, f"{hook} did not answer within {self.timeout:g} s") from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                await proc.wait()
        if err:
            say(err.decode("utf-8", "replace"))
        try:
            answer = json.loads(out)
            return list(answer["plugins"])
        except (ValueError, KeyError, TypeError):
            tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            raise PluginError(names, f"{hook} crashed: {tail[0]}") from None


def _dir_name(name: str, key: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name)[:40]
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _expand(requirement: str, secrets: dict[str, str], name: str) -> str:
    def value(match: re.Match[str]) -> str:
        if match.group(1) not in secrets:
            raise PluginError(name, f"pip: the repository has no secret {match.group(1)!r}", setup=True)
        return secrets[match.group(1)]
    return _SECRET_REF.sub(value, requirement)


async def _file_lock(path: Path) -> contextlib.AbstractContextManager[Any]:
    """An exclusive lock on `path`, taken without blocking the event loop; release by leaving the context."""
    fh = open(path, "a")  # noqa: SIM115 - closed by the returned context
    try:
        await asyncio.to_thread(fcntl.flock, fh, fcntl.LOCK_EX)
    except BaseException:
        fh.close()
        raise
    return contextlib.closing(fh)


PLUGIN_PHASES = ("environment", "prepare", "test", "deploy", "cleanup")


def plugin_contribution(name: str, answer: dict[str, Any], taken: set[str]) -> dict[str, Any]:
    """What a plugin's setup answer adds to the job, checked: steps per phase, stages, env, artifacts.

    Test and deploy commands become a stage named after the plugin (``name
    (plugin)`` if the pipeline has a stage of that name). Raise PluginError
    naming the plugin for anything malformed.
    """
    phases = answer.get("phases") or {}
    if not isinstance(phases, dict):
        raise PluginError(name, f"phases() must return {{phase: [command]}}, not {type(phases).__name__}")
    steps: dict[str, list[dict[str, Any]]] = {}
    stages = []
    for phase, commands in phases.items():
        if phase not in PLUGIN_PHASES:
            raise PluginError(name, f"phases(): unknown phase {phase!r} (phases: {', '.join(PLUGIN_PHASES)})")
        if not isinstance(commands, list):
            raise PluginError(name, f"phases(): {phase} must be a list of commands")
        phase_steps = [_plugin_step(name, phase, i, c) for i, c in enumerate(commands)]
        if not phase_steps:
            continue
        if phase in ("test", "deploy"):
            stage = name if name not in taken else f"{name} (plugin)"
            stages.append({"name": stage, "needs": [], "deploy": phase == "deploy", "env": {}, "hooks": {},
                           "steps": phase_steps})
        else:
            steps[phase] = [{**s, "stage": name} for s in phase_steps]
    env = answer.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, (str, int, float))
                                            for k, v in env.items()):
        raise PluginError(name, "env() must return {NAME: value} of strings")
    artifacts = answer.get("artifacts") or []
    if not isinstance(artifacts, list) or not all(isinstance(g, str) and g and not g.startswith("/") and
                                                  ".." not in g.split("/") for g in artifacts):
        raise PluginError(name, "artifacts() must return a list of globs inside the workspace")
    reports = answer.get("reports") or []
    if not isinstance(reports, list) or any(glob_problem(g) for g in reports):
        raise PluginError(name, "reports() must return a list of JUnit report globs inside the workspace")
    return {"steps": steps, "stages": stages, "env": {k: str(v) for k, v in env.items()}, "artifacts": artifacts,
            "reports": reports}


def _plugin_step(name: str, phase: str, i: int, command: Any) -> dict[str, Any]:
    if isinstance(command, str):
        command = {"run": command}
    if not isinstance(command, dict) or not isinstance(command.get("run"), str) or not command["run"].strip():
        raise PluginError(name, f"phases(): {phase}[{i}] must be a command or {{run, title, ignore_exit_code}}")
    title = command.get("title") or command["run"].split("\n")[0][:80]
    return {"run": command["run"], "title": str(title), "ignore_exit_code": bool(command.get("ignore_exit_code"))}
