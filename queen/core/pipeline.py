"""The pipeline a job runs (DESIGN.md §5): `.apiary.yml` parsed and validated into its compiled form.

Pure, no I/O. `load_pipeline` reads `.apiary.yml` text, `parse_pipeline` takes
plain data (JSON from the API); both return the compiled form the queen stores
and sends in ``queue:new``, or raise `PipelineError` naming the file, the line
and the path of the fault. Compiling a compiled pipeline returns it unchanged.
The decisions made from a compiled pipeline, at trigger time and while a job
runs, are core/stages.py's.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .approvals import ApprovalError, compile_approval
from .caches import CacheError, compile_caches
from .concurrency import compile_concurrency
from .conditions import ConditionError, compile_when
from .debug import DebugError, compile_debug
from .errors import InputError
from .fields import kind_of
from .matrix import MatrixError, is_cell
from .matrix import expand as expand_matrix
from .models import Parameter, Pipeline, PluginUse, Stage, Step
from .reports import ReportsError, compile_reports
from .retry import RetryError, compile_retry
from .shards import ShardsError, compile_shards, written_name
from .shards import expand as expand_shards
from .spread import SpreadError, compile_remote
from .spread import check as check_remote
from .storable import unstorable
from .yamlread import YamlFault, join_path, line_of, read_yaml

_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._\-]{0,63}$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"^(?:{_NUMBER}h)?(?:{_NUMBER}m)?(?:{_NUMBER}s)?$")
# Where `.apiary.yml` holds text for the shell: env values (top and stages) and parameter defaults (also the
# `NAME: value` shorthand) and descriptions. The reader keeps these as written (`3.10` is not 3.1).
_TEXT_PATHS = re.compile(r"(?:stages\[\d+\]\.)?env\.[^.\[\]]+|parameters\.[^.\[\]]+(?:\.default|\.description)?"
                         r"|(?:stages\[\d+\]\.)?matrix\.(?:[^.\[\]]+\[\d+\]|(?:in|ex)clude\[\d+\]\.[^.\[\]]+)")
MAX_PARALLEL = 64
DEFAULT_PARALLEL = 4
MAX_TITLE = 80

HOOKS = ("on_start", "on_success", "on_failure")
PHASES = ("environment", "prepare", "cleanup")
_TOP_KEYS = {"env", "parameters", "timeout", "output_timeout", "parallel", "artifacts", *HOOKS, "hooks", *PHASES,
             "phases", "stages", "plugins", "concurrency", "cache", "reports", "debug"}
_STAGE_KEYS = {"name", "needs", "deploy", "env", "steps", *HOOKS, "hooks", "when", "approval", "matrix", "shards",
               "remote"}
_STEP_KEYS = {"run", "title", "ignore_exit_code", "merge_output", "when", "retry", "timeout"}
_PARAM_KEYS = {"required", "default", "description"}
_PLUGIN_KEYS = {"name", "pip", "config"}
_PLUGIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$")
# What makes a string a pip requirement rather than a plugin's name: a version, a URL, extras.
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._\-]*)\s*(\[[^\]]*\])?\s*(==|>=|<=|~=|!=|<|>|===)")


class PipelineError(InputError):
    """A pipeline that does not parse or validate; says where: file, line, path (``stages[1].needs[0]``)."""

    def __init__(self, problem: str, path: str = "", line: int | None = None,
                 filename: str | None = None, where: str = "pipeline") -> None:
        field = f"{where}.{path}" if path else where
        if filename is None:
            message = f"{field}: {problem}"
        else:
            place = f"{filename}, line {line}: " if line else f"{filename}: "
            message = place + (f"{path}: " if path else "") + problem
        super().__init__(message, field=field)
        self.problem, self.path, self.line, self.filename = problem, path, line, filename


class _Invalid(InputError):
    """What the validators raise: the path of the fault; the entry points say the rest (and find its line)."""

    def __init__(self, path: str, problem: str, line: int | None = None) -> None:
        super().__init__(f"{path}: {problem}", field=path)
        self.path, self.problem, self.line = path, problem, line


# -- entry points ------------------------------------------------------------------

def load_pipeline(text: str, filename: str = ".apiary.yml") -> Pipeline:
    """Compile `.apiary.yml` text; every error names `filename` and the line of the offending key or value."""
    lines: dict[str, int] = {}
    try:
        return _pipeline(read_yaml(text, lines, empty="the file is empty; a pipeline needs 'stages'",
                                   as_text=_TEXT_PATHS.fullmatch))
    except (YamlFault, _Invalid) as fault:
        raise PipelineError(fault.problem, fault.path, fault.line or line_of(lines, fault.path), filename) from None


def parse_pipeline(data: Any, where: str = "pipeline") -> Pipeline:
    """Compile already-parsed data (JSON from the API); errors start with ``where.path`` and have no line."""
    try:
        return _pipeline(data)
    except _Invalid as fault:
        raise PipelineError(fault.problem, fault.path, where=where) from None


# -- validation and compilation ----------------------------------------------------------


def _known(obj: dict[Any, Any], allowed: set[str], at: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _Invalid(join_path(at, key), f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")


def _mapping(value: Any, at: str) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid(at, f"must be a mapping, got {kind_of(value)}")
    return value


def _text(value: Any, at: str) -> str:
    """Environment values and defaults: the strings the shell sees.

    From YAML they are already the text as written (load_pipeline); JSON from
    the API may also give numbers and true/false, written as JSON writes them.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    if value is None:
        raise _Invalid(at, "has no value: write '' for an empty one")
    raise _Invalid(at, f"must be one value (text), got {kind_of(value)}")


def _flag(value: Any, at: str) -> bool:
    if value is not None and not isinstance(value, bool):
        raise _Invalid(at, f"must be true or false, got {kind_of(value)}")
    return bool(value)


def _list(value: Any, at: str, what: str) -> list[Any]:
    if value is not None and not isinstance(value, list):
        raise _Invalid(at, f"must be a list of {what}, got {kind_of(value)}")
    return value or []


def _pipeline(data: Any) -> Pipeline:
    """Matrices expanded first (core/matrix.py); a fault in a cell names the stage as written."""
    if not isinstance(data, dict):
        return _compile(data)
    try:
        expanded, origin = expand_matrix(data)
        if isinstance(expanded.get("stages"), list):  # a sharded stage's listing stage (core/shards.py)
            stages, origin = expand_shards(expanded["stages"], origin)
            expanded = {**expanded, "stages": stages}
    except (MatrixError, ShardsError) as fault:
        raise _Invalid(fault.path, fault.problem) from None
    try:
        return _compile(expanded)
    except _Invalid as fault:
        if origin and (found := re.match(r"stages\[(\d+)\]", fault.path)) and int(found.group(1)) < len(origin):
            fault.path = f"stages[{origin[int(found.group(1))]}]" + fault.path[found.end():]
        raise


def _compile(data: Any) -> Pipeline:
    if not isinstance(data, dict):
        raise _Invalid("", f"must be a mapping with 'stages', got {kind_of(data)}")
    _known(data, _TOP_KEYS, "")
    compiled: Pipeline = {
        "env": _env(data.get("env"), "env"),
        "parameters": _parameters(data.get("parameters")),
        "timeout": parse_duration(data.get("timeout"), "timeout"),
        "output_timeout": parse_duration(data.get("output_timeout"), "output_timeout"),
        "parallel": _parallel(data.get("parallel")),
        "artifacts": _artifacts(data.get("artifacts")),
        "hooks": _step_lists(data, HOOKS, "hooks", ""),
        "phases": _step_lists(data, PHASES, "phases", ""),
        "stages": _stages(data.get("stages"), bool(data.get("plugins"))),
        "plugins": _plugins(data.get("plugins")),
    }
    _conditions(data, compiled)
    try:  # caches (core/caches.py): keys checked against the declared parameters
        if (caches := compile_caches(data.get("cache"), list(compiled["parameters"]))):
            compiled["cache"] = caches
    except CacheError as fault:
        raise _Invalid(fault.path, fault.problem) from None
    try:  # test reports (core/reports.py)
        if (reports := compile_reports(data.get("reports"))):
            compiled["reports"] = reports
    except ReportsError as fault:
        raise _Invalid(fault.path, fault.problem) from None
    try:  # a failed job's workspace kept for a debug shell (core/debug.py)
        if (debug := compile_debug(data.get("debug"), parse_duration)) is not None:
            compiled["debug"] = debug
    except DebugError as fault:
        raise _Invalid(fault.path, fault.problem) from None
    return compiled


def _conditions(data: dict[str, Any], compiled: Pipeline) -> None:
    """`when:` (stages, steps) and `concurrency:`, checked against the declared parameters (core/conditions.py)."""
    names = list(compiled["parameters"])
    try:
        for i, stage in enumerate(compiled["stages"]):
            if (when := compile_when(data["stages"][i].get("when"), f"stages[{i}].when", names)) is not None:
                stage["when"] = when
            for j, step in enumerate(stage["steps"]):
                given = data["stages"][i]["steps"][j]
                when = compile_when(given.get("when") if isinstance(given, dict) else None,
                                    f"stages[{i}].steps[{j}].when", names)
                if when is not None:
                    step["when"] = when
        if (concurrency := compile_concurrency(data.get("concurrency"), names)) is not None:
            compiled["concurrency"] = concurrency
    except ConditionError as fault:
        raise _Invalid(fault.path, fault.problem) from None
    # Hooks and phases always run: a `when:` there would be ignored, so it is refused.
    places = [(data, "", HOOKS, "hooks"), (data, "", PHASES, "phases")]
    places += [(s, f"stages[{i}].", HOOKS, "hooks") for i, s in enumerate(data.get("stages") or [])]
    for owner, at, names_, group in places:
        grouped = owner.get(group) if isinstance(owner.get(group), dict) else {}
        for name in names_:
            for path, steps in ((f"{at}{name}", owner.get(name)), (f"{at}{group}.{name}", grouped.get(name))):
                for j, step in enumerate(steps if isinstance(steps, list) else []):
                    if isinstance(step, dict) and "when" in step:
                        raise _Invalid(f"{path}[{j}].when", "only a stage or a stage's step takes a 'when'; "
                                       f"{name} always runs")


def _names(value: Any, at: str, what: str) -> dict[str, Any]:
    """A mapping keyed by environment variable names (env, parameters)."""
    for name in _mapping(value, at):
        if not isinstance(name, str) or not _VAR_NAME.match(name):
            raise _Invalid(join_path(at, name), f"a {what} name is letters, digits and '_', not starting with a digit")
    return _mapping(value, at)


def _env(value: Any, at: str) -> dict[str, str]:
    return {name: _text(text, join_path(at, name)) for name, text in _names(value, at, "variable").items()}


def _parameters(value: Any) -> dict[str, Parameter]:
    out: dict[str, Parameter] = {}
    for name, spec in _names(value, "parameters", "parameter").items():
        at = join_path("parameters", name)
        if spec is not None and not isinstance(spec, (dict, list)):
            spec = {"default": spec}  # `NAME: value` declares a default
        spec = _mapping(spec, at)
        _known(spec, _PARAM_KEYS, at)
        required = _flag(spec.get("required"), f"{at}.required")
        default = spec.get("default")
        if default is not None:
            if required:
                raise _Invalid(f"{at}.default", "a required parameter takes no default")
            default = _text(default, f"{at}.default")
        description = spec.get("description", "")
        if not isinstance(description, str):
            raise _Invalid(f"{at}.description", f"must be a string, got {kind_of(description)}")
        out[name] = {"required": required, "default": default, "description": description}
    return out


def parse_duration(value: Any, where: str) -> float | None:
    """Seconds from a number or ``"90s"``, ``"10m"``, ``"1h30m"``; None stays None. InputError names `where`."""
    if value is None:
        return None
    if isinstance(value, str) and (text := value.strip()):
        if re.fullmatch(_NUMBER, text):
            seconds = float(text)
        elif match := _DURATION.match(text):
            hours, minutes, secs = (float(part or 0) for part in match.groups())
            seconds = hours * 3600 + minutes * 60 + secs
        else:
            raise _Invalid(where, f"{value!r} is not a duration: give seconds or e.g. '90s', '10m', '1h30m'")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise _Invalid(where, f"must be seconds or a duration like '90s', '10m', '1h30m', got {kind_of(value)}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise _Invalid(where, f"must be more than zero seconds and finite, got {value!r}")
    return seconds


def _parallel(value: Any) -> int:
    value = DEFAULT_PARALLEL if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARALLEL:
        raise _Invalid("parallel", f"must be a whole number from 1 to {MAX_PARALLEL}, got {value!r}")
    return value


def _artifacts(value: Any) -> list[str]:
    for i, glob in enumerate(_list(value, "artifacts", "globs")):
        if not isinstance(glob, str) or not glob.strip():
            raise _Invalid(f"artifacts[{i}]", f"must be a non-empty glob, got {kind_of(glob)}")
        if glob.startswith("/") or ".." in glob.split("/"):
            raise _Invalid(f"artifacts[{i}]", f"{glob!r} must stay inside the workspace (no leading '/', no '..')")
    return list(value or [])


def _step_lists(data: dict[str, Any], names: tuple[str, ...], group: str, at: str) -> dict[str, list[Step]]:
    """Hooks or phases, written flat (``on_start``) or, as compiled, grouped (``hooks.on_start``)."""
    grouped = _mapping(data.get(group), join_path(at, group))
    _known(grouped, set(names), join_path(at, group))
    out = {}
    for name in names:
        if name in grouped and name in data:
            raise _Invalid(join_path(at, name), f"given twice, as {name!r} and as '{group}.{name}'")
        path = join_path(at, f"{group}.{name}" if name in grouped else name)
        out[name] = _steps(grouped[name] if name in grouped else data.get(name), path, required=False)
    return out


def _steps(value: Any, at: str, required: bool) -> list[Step]:
    if required and not _list(value, at, "steps"):
        raise _Invalid(at, "must be a non-empty list of steps")
    return [_step(step, f"{at}[{i}]") for i, step in enumerate(_list(value, at, "steps"))]


def _step(step: Any, at: str) -> Step:
    if isinstance(step, str):
        step = {"run": step}
    if not isinstance(step, dict):
        raise _Invalid(at, f"must be a command string or a mapping with 'run', got {kind_of(step)}")
    _known(step, _STEP_KEYS, at)
    run = step.get("run")
    if not isinstance(run, str) or not run.strip():
        got = "" if isinstance(run, str) else f", got {kind_of(run)}"
        raise _Invalid(f"{at}.run", f"must be a non-empty command{got}")
    title = step.get("title")
    if title is None:
        title = run.strip().splitlines()[0].strip()[:MAX_TITLE]
    elif not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE or "\n" in title:
        raise _Invalid(f"{at}.title", f"must be a one-line string of 1 to {MAX_TITLE} characters")
    ignore = _flag(step.get("ignore_exit_code"), f"{at}.ignore_exit_code")
    compiled: Step = {"run": run, "title": title, "ignore_exit_code": ignore}
    if _flag(step.get("merge_output"), f"{at}.merge_output"):
        # stderr into the same pipe as stdout: the exact order written, all of it stored as stdout.
        compiled["merge_output"] = True
    try:  # retry and a step's own timeout (core/retry.py)
        if (timeout := parse_duration(step.get("timeout"), f"{at}.timeout")) is not None:
            compiled["timeout"] = timeout
        if (rule := compile_retry(step.get("retry"), f"{at}.retry")) is not None:
            if ignore:
                raise _Invalid(f"{at}.retry", "a step whose exit code is ignored has nothing to retry")
            written = step.get("retry")
            if timeout is None and isinstance(written, dict) and "when" in written and "timeout" in rule["when"]:
                # Only a step's own timeout is retried: without one, `timeout` could never happen.
                raise _Invalid(f"{at}.retry.when", "timeout is retried only for a step with a timeout of its own: "
                                                   "give the step `timeout: 10m` too")
            compiled["retry"] = rule
    except RetryError as fault:
        raise _Invalid(fault.path, fault.problem) from None
    return compiled


def _plugins(value: Any) -> list[PluginUse]:
    """``plugins:``: each a name (``python``), a pip requirement (``apiary-hello==1.0``) or
    {name, pip, config}. Compiled: {"name", "pip" (None: the drone has it or installs the name), "config"}."""
    out: list[PluginUse] = []
    for i, item in enumerate(_list(value, "plugins", "plugins")):
        at = f"plugins[{i}]"
        if isinstance(item, str):
            match = _REQUIREMENT.match(item.strip())
            item = {"name": match.group(1), "pip": item.strip()} if match else {"name": item.strip()}
        item = _mapping(item, at)
        _known(item, _PLUGIN_KEYS, at)
        name = item.get("name")
        if not isinstance(name, str) or not _PLUGIN_NAME.match(name):
            raise _Invalid(f"{at}.name", "must be a plugin's entry-point name (letters, digits, '.', '_', '-')")
        pip = item.get("pip")
        if pip is not None and (not isinstance(pip, str) or not pip.strip() or pip.strip().startswith("-")):
            raise _Invalid(f"{at}.pip", "must be a pip requirement such as 'apiary-hello==1.0' or 'git+https://…'")
        if any(p["name"] == name for p in out):
            raise _Invalid(f"{at}.name", f"plugin {name!r} is named twice")
        config = _mapping(item.get("config"), f"{at}.config")
        if (fault := unstorable(config)) is not None:  # YAML can say what no job document holds (dates…)
            raise _Invalid(f"{at}.config{fault[0]}", fault[1])
        out.append({"name": name, "pip": pip.strip() if pip else None, "config": config})
    return out


def _stages(value: Any, optional: bool = False) -> list[Stage]:
    if optional and value is None:
        return []  # the plugins bring the commands
    if not isinstance(value, list) or not value:
        raise _Invalid("stages", f"must be a non-empty list of stages, got {kind_of(value)}")
    deploy: dict[str, bool] = {}
    for i, stage in enumerate(value):  # names and kinds first: `needs` may point forward
        at = f"stages[{i}]"
        if not isinstance(stage, dict):
            raise _Invalid(at, f"must be a mapping with 'name' and 'steps', got {kind_of(stage)}")
        _known(stage, _STAGE_KEYS, at)
        name = stage.get("name")
        written = stage["matrix"]["group"] if is_cell(stage) else written_name(stage) or name  # made: a cell, a shard
        if not isinstance(name, str) or not _STAGE_NAME.match(written):
            raise _Invalid(f"{at}.name", "must be a name of letters, digits, spaces, '.', '_' or '-' (at most 64)")
        if name in deploy:
            raise _Invalid(f"{at}.name", f"stage {name!r} appears twice (also stages[{list(deploy).index(name)}])")
        deploy[name] = _flag(stage.get("deploy"), f"{at}.deploy")
    out = [_stage(stage, f"stages[{i}]", deploy) for i, stage in enumerate(value)]
    for i, stage in enumerate(value):  # a matrix cell says which (core/matrix.py)
        if is_cell(stage):
            out[i]["matrix"] = {"group": stage["matrix"]["group"], "values": dict(stage["matrix"]["values"])}
    for i, stage in enumerate(value):  # test shards (core/shards.py): a test stage's own, not a cell's
        try:
            if written_name(stage) is not None:  # a listing stage or a shard (core/shards.py expand)
                out[i]["shards"] = dict(stage["shards"])
            elif (shards := compile_shards(stage.get("shards"), f"stages[{i}].shards")):
                if out[i]["deploy"] or is_cell(stage):
                    raise _Invalid(f"stages[{i}].shards", "only a test stage without a matrix is sharded")
                out[i]["shards"] = shards
        except ShardsError as fault:
            raise _Invalid(fault.path, fault.problem) from None
    for i, stage in enumerate(value):  # approval gates (core/approvals.py)
        try:
            if (gate := compile_approval(stage.get("approval"), f"stages[{i}].approval", parse_duration)):
                out[i]["approval"] = gate
        except ApprovalError as fault:
            raise _Invalid(fault.path, fault.problem) from None
    try:  # remote stages, each unit a child job (core/spread.py): spread: true cells, shards
        for i, stage in enumerate(value):
            if (remote := compile_remote(stage.get("remote"), f"stages[{i}].remote", stage)):
                out[i]["remote"] = remote
        check_remote(out)
    except SpreadError as fault:
        raise _Invalid(fault.path, fault.problem) from None
    _refuse_cycles(out)
    return out


def _stage(stage: dict[str, Any], at: str, deploy: dict[str, bool]) -> Stage:
    name = stage["name"]
    needs = _list(stage.get("needs"), f"{at}.needs", "stage names")
    for j, need in enumerate(needs):
        path = f"{at}.needs[{j}]"
        if not isinstance(need, str) or need not in deploy:
            raise _Invalid(path, f"unknown stage {need!r} (stages: {', '.join(deploy)})")
        if need in needs[:j]:
            raise _Invalid(path, f"stage {need!r} is listed twice")
        if deploy[need] and not deploy[name]:
            raise _Invalid(path, f"test stage {name!r} cannot need deploy stage {need!r}: deploys run after the tests")
    return {"name": name, "needs": list(needs), "deploy": deploy[name], "env": _env(stage.get("env"), f"{at}.env"),
            "steps": _steps(stage.get("steps"), f"{at}.steps", required=True),
            "hooks": _step_lists(stage, HOOKS, "hooks", at)}


def _refuse_cycles(stages: list[Stage]) -> None:
    """Depth-first, without recursion (a long chain must not hit Python's limit); names the first cycle found."""
    needs = {s["name"]: s["needs"] for s in stages}
    index = {s["name"]: i for i, s in enumerate(stages)}
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    for root in needs:
        if root in state:
            continue
        state[root], path, todo = 1, [root], [iter(needs[root])]
        while todo:
            node, need = path[-1], next(todo[-1], None)
            if need is None:
                state[node] = 2
                path.pop()
                todo.pop()
            elif state.get(need) == 1:
                cycle = [node] + path[path.index(need):]
                raise _Invalid(f"stages[{index[node]}].needs[{needs[node].index(need)}]",
                               f"needs form a cycle: {' -> '.join(cycle)}")
            elif need not in state:
                state[need] = 1
                path.append(need)
                todo.append(iter(needs[need]))
