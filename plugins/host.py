"""Runs plugins' drone-side hooks inside their own environment. Standard library only.

The drone starts ``<plugin env python> -I host.py`` with a JSON request on
stdin: ``{"hook": "setup" | "results", "job": {...}, "plugins": [{"name",
"config"}]}``. For each plugin, in order, it loads the entry point of that name
in group ``apiary.plugins`` from this environment, checks the config against
the plugin's ``config_schema`` and calls the hook's functions (setup:
``phases``, ``env``, ``artifacts``, ``reports``; results: ``results``). A job that names
a plugin by its requirement (``apiary-hello==1.0``) gets the distribution's
one entry point. It answers with
one JSON document on stdout: ``{"plugins": [{"name", ...what the hook gave}
or {"name", "error"}]}``. What plugin code prints goes to stderr, which the
drone shows in the job's log. A plugin that raises gets an ``error`` naming
the exception; the others still run.

Plugins import the plugin API as ``apiary.plugins.api`` here as on the queen:
where Apiary is not installed (a plugin's own environment), api.py is loaded
from beside this file and registered under that name.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import traceback
import types
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

GROUP = "apiary.plugins"
API = "apiary.plugins.api"


def _api() -> Any:
    """The plugin API: Apiary's own where it is installed, else api.py from beside this file, made
    importable as ``apiary.plugins.api`` (in empty ``apiary`` and ``apiary.plugins`` packages)."""
    try:
        return importlib.import_module(API)
    except ImportError:  # a plugin's own environment, without Apiary
        pass
    spec = importlib.util.spec_from_file_location(API, Path(__file__).with_name("api.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    holder = None
    for name in ("apiary", "apiary.plugins"):
        package = sys.modules.get(name)
        if package is None:
            package = sys.modules[name] = types.ModuleType(name)
            package.__path__ = []
        if holder is not None:
            holder.plugins = package
        holder = package
    sys.modules[API] = module
    spec.loader.exec_module(module)
    holder.api = module  # type: ignore[union-attr]
    return module


def _plain(value: Any, what: str) -> Any:
    """`value` if JSON can carry it; else a TypeError naming `what`."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} returned something that is not plain data: {exc}") from None
    return value


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def find(name: str, found: dict[str, Any]) -> Any:
    """The entry point `name`, else the only one of the distribution `name` (a job may name the requirement)."""
    if name in found:
        return found[name]
    of_dist = [ep for ep in found.values() if ep.dist is not None and _normal(ep.dist.name) == _normal(name)]
    return of_dist[0] if len(of_dist) == 1 else None


def run_hook(api: Any, hook: str, job: dict[str, Any], name: str, config: Any, found: dict[str, Any]) -> dict[str, Any]:
    ep = find(name, found)
    if ep is None:
        have = ", ".join(sorted(found)) or "none"
        return {"name": name, "error": f"no entry point {name!r} in group {GROUP} here (this environment has: {have})"}
    try:
        plugin = ep.load()
        config = api.check_config(getattr(plugin, "config_schema", None), config, plugin)
    except api.ConfigProblem as exc:
        return {"name": name, "error": f"config.{exc.field}: {exc.problem}" if exc.field else f"config: {exc}"}
    except Exception as exc:
        traceback.print_exc()
        return {"name": name, "error": f"{type(exc).__name__}: {exc}"}
    out: dict[str, Any] = {"name": name}
    functions = ("phases", "env", "artifacts", "reports") if hook == "setup" else ("results",)
    for fn_name in functions:
        fn = getattr(plugin, fn_name, None)
        if not callable(fn):
            continue
        try:
            value = fn(job, config)
            out[fn_name] = _plain(value, f"{fn_name}()")
        except Exception as exc:
            traceback.print_exc()
            return {"name": name, "error": f"{fn_name}() raised {type(exc).__name__}: {exc}"}
    if hook == "setup":
        out["has_results"] = callable(getattr(plugin, "results", None))
    return out


def main() -> int:
    request = json.load(sys.stdin)
    answer_to = sys.stdout
    sys.stdout = sys.stderr  # a plugin's print() must not break the answer
    api = _api()
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    answers = [run_hook(api, request["hook"], request["job"], p["name"], p.get("config"), found)
               for p in request["plugins"]]
    json.dump({"plugins": answers}, answer_to)
    answer_to.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
