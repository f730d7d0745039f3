"""Matrix (issue 17): a stage, or the whole job, expanded over combinations of values at compile time. Pure.

Written on a stage, or at the top of `.apiary.yml` for every stage::

    matrix:
      python: ["3.11", "3.12"]
      db: [sqlite, postgres]
      exclude: [{python: "3.11", db: postgres}]
      include: [{python: "3.13", db: sqlite}]

The cells are the combinations of the variables' values in the order written
(the last variable changing fastest), less those an ``exclude`` entry matches
(all of its pairs), then GitHub Actions' ``include``: an entry's pairs are added
to every original cell whose matrix values it does not change (an extra
variable may be overwritten, a matrix value never); an entry that fits no
original cell is a cell of its own. Each cell is a stage named
``NAME (v1, v2)``, its values in its environment (over the stage's own ``env``)
and ``matrix: {"group": NAME, "values": {VAR: text}}`` on it, for the page.
``needs: [NAME]`` elsewhere means every cell of NAME. A job-level matrix
expands every stage per cell, a cell's ``needs`` naming the stages of the same
cell. Values are text as written (``3.10`` stays 3.10), one line, at most
MAX_VALUE characters. A matrix gives at most MAX_CELLS cells, and a pipeline at
most MAX_CELLS stages once expanded. ``spread: true`` runs each cell as a child job
on a drone slot of its own: its cells carry ``remote: {kind: spread, unit}``
(apiary.core.spread; a stage matrix's unit is the cell's stage, a job-level
matrix's every stage of the cell). The stages copied into cells may come to MAX_EXPANDED characters.

`expand(data)` works on the pipeline as written (before the compiler checks
the stages) and returns it expanded with, for each stage, the index of the
stage it came from, so that the compiler's errors name the written stage.
A compiled cell (its ``matrix`` is {group, values}) is left as it is.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

from .errors import InputError

# What a value that names a cell must not hold: control characters (C0, DEL, C1) and format characters that
# hide or reorder what is shown (bidirectional overrides and isolates, zero-width ones, the BOM, soft hyphen).
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_UNSHOWN = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]")

MAX_CELLS = 256
MAX_VALUE = 64  # characters of one value (it is part of the cell's stage name)
# Characters (as repr() writes them) the stages may come to once expanded: each cell copies its stage, and the
# compiled pipeline is part of every job's document.
MAX_EXPANDED = 4_000_000
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = ("include", "exclude", "spread")


class MatrixError(InputError):
    """A matrix that does not validate; `path` is the field as written (``stages[1].matrix.exclude[0].db``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}", field=path)
        self.path, self.problem = path, problem


def cell_name(group: str, values: dict[str, str]) -> str:
    """The stage name of a cell: ``test (3.11, sqlite)``."""
    return f"{group} ({', '.join(values.values())})"


def is_cell(stage: Any) -> bool:
    """Whether `stage` (as written or compiled) is a compiled cell, named as its group and values say."""
    spec = stage.get("matrix") if isinstance(stage, dict) else None
    return (isinstance(spec, dict) and set(spec) == {"group", "values"} and isinstance(spec["group"], str)
            and isinstance(spec["values"], dict) and bool(spec["values"])
            and all(isinstance(k, str) and isinstance(v, str) for k, v in spec["values"].items())
            and stage.get("name") == cell_name(spec["group"], spec["values"]))


def expand(data: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """`data` (a pipeline as written) with its matrices expanded, and for each of its stages the index of
    the written stage it came from. `data` is not changed; without a matrix it is returned as it is."""
    stages = data.get("stages")
    if not isinstance(stages, list):
        if "matrix" in data:  # the stages' own error comes first, from the compiler
            cells(data["matrix"], "matrix")
        return {k: v for k, v in data.items() if k != "matrix"}, []
    top = cells(data["matrix"], "matrix") if data.get("matrix") is not None else None
    top_spread = top is not None and spread(data["matrix"], "matrix")
    out: list[Any] = []
    origin: list[int] = []
    groups: dict[str, list[str]] = {}  # a stage with a matrix -> its cells' names
    size = 0
    for i, stage in enumerate(stages):
        written = isinstance(stage, dict) and isinstance(stage.get("name"), str) and not is_cell(stage)
        if written and "matrix" in stage and top is not None:
            raise MatrixError(f"stages[{i}].matrix", "the job has a matrix already: a stage of it takes none")
        if not written or (stage.get("matrix") is None and top is None):
            if isinstance(stage, dict) and "matrix" in stage and not is_cell(stage) and stage["matrix"] is None:
                stage = {k: v for k, v in stage.items() if k != "matrix"}
            out.append(stage)
            origin.append(i)
            continue
        own = top if top is not None else cells(stage["matrix"], f"stages[{i}].matrix")
        spread_on = top_spread if top is not None else spread(stage["matrix"], f"stages[{i}].matrix")
        size += len(repr(stage)) * len(own)
        if size > MAX_EXPANDED:
            raise MatrixError("matrix" if top is not None else f"stages[{i}].matrix",
                              f"the stages would come to more than {MAX_EXPANDED // 1_000_000} million characters "
                              "once copied into each cell: fewer cells, or shorter steps (a script in the repository)")
        names = []
        for values in own:
            cell = {k: v for k, v in stage.items() if k != "matrix"}
            env = stage.get("env")
            cell["env"] = {**env, **values} if isinstance(env, dict) else env if env is not None else dict(values)
            cell["name"] = cell_name(stage["name"], values)
            cell["matrix"] = {"group": stage["name"], "values": dict(values)}
            if spread_on:  # a child job of its own per cell (apiary.core.spread)
                cell["remote"] = {"kind": "spread",
                                  "unit": cell["name"] if top is None else ", ".join(values.values())}
            if top is not None and isinstance(stage.get("needs"), list):  # within the cell
                cell["needs"] = [cell_name(n, values) if isinstance(n, str) else n for n in stage["needs"]]
            names.append(cell["name"])
            out.append(cell)
            origin.append(i)
        groups[stage["name"]] = names
        if len(out) > MAX_CELLS:
            at = "matrix" if top is not None else f"stages[{i}].matrix"
            raise MatrixError(at, f"the pipeline would have more than {MAX_CELLS} stages once its matrix is expanded")
    if top is None and groups:  # `needs: [test]` means every cell of test
        for k, stage in enumerate(out):
            if isinstance(stage, dict) and isinstance(stage.get("needs"), list):
                needs: list[Any] = []
                for need in stage["needs"]:
                    mapped = groups.get(need, [need]) if isinstance(need, str) else [need]
                    needs.extend(n for n in mapped if need == n or n not in needs)
                out[k] = {**stage, "needs": needs}
    expanded = {k: v for k, v in data.items() if k != "matrix"}
    expanded["stages"] = out
    return expanded, origin


def cells(value: Any, at: str) -> list[dict[str, str]]:
    """A matrix as written -> its cells, each {variable: text} in the order above; MatrixError names the field."""
    if not isinstance(value, dict) or not value:
        raise MatrixError(at, "must be a mapping of variables to lists of values, such as "
                              "{python: ['3.11', '3.12']}, with exclude and include if wanted")
    spread(value, at)  # true or false, nothing else
    variables: dict[str, list[str]] = {}
    for name, values in value.items():
        if name in _RESERVED:
            continue
        path = f"{at}.{name}"
        _variable(name, path)
        if not isinstance(values, list) or not values:
            raise MatrixError(path, "must be a non-empty list of values")
        texts = [_value(v, f"{path}[{j}]") for j, v in enumerate(values)]
        seen: set[str] = set()  # a set: a pushed list of 100 000 values must not cost minutes of the queen
        for j, text in enumerate(texts):
            if text in seen:
                raise MatrixError(f"{path}[{j}]", f"value {text!r} is listed twice")
            seen.add(text)
        variables[name] = texts
    exclude = _entries(value.get("exclude"), f"{at}.exclude", variables, known_only=True)
    include = _entries(value.get("include"), f"{at}.include", variables, known_only=False)
    if not variables and not include:
        raise MatrixError(at, "has no variables: give at least one, such as python: ['3.11', '3.12'], or include")
    count = math.prod(len(v) for v in variables.values()) if variables else 0
    if count > MAX_CELLS * 16:  # too many to even list before exclude
        raise MatrixError(at, f"gives {count} combinations; a matrix has at most {MAX_CELLS} cells")
    combos = [dict(zip(variables, combo)) for combo in itertools.product(*variables.values())] if variables else []
    combos = [c for c in combos if not any(all(c[k] == v for k, v in e.items()) for e, _ in exclude)]
    if variables and not combos and not include:
        raise MatrixError(f"{at}.exclude", "leaves no cell: every combination is excluded")
    added: list[dict[str, str]] = []
    original = [dict(c) for c in combos]
    for entry, path in include:
        fits = [c for c, o in zip(combos, original)
                if all(o[k] == v for k, v in entry.items() if k in variables)]
        for cell in fits:
            cell.update(entry)
        if not fits:
            added.append(dict(entry))
    out = combos + added
    names: dict[str, int] = {}
    for k, cell in enumerate(out):
        key = cell_name("", cell)
        if key in names:
            raise MatrixError(f"{at}.include", f"gives the cell {key.strip()} twice")
        names[key] = k
    if len(out) > MAX_CELLS:
        raise MatrixError(at, f"gives {len(out)} cells; a matrix has at most {MAX_CELLS}")
    return out


def spread(value: Any, at: str) -> bool:
    """A matrix's ``spread`` (true: each cell a child job on a drone slot of its own; false, the default: on the
    job's drone). Only true or false."""
    flag = value.get("spread", False) if isinstance(value, dict) else False
    if not isinstance(flag, bool):
        raise MatrixError(f"{at}.spread", f"must be true or false, got {flag!r}")
    return flag


def _variable(name: Any, path: str) -> None:
    if not isinstance(name, str) or not _VAR_NAME.match(name):
        raise MatrixError(path, "a matrix variable is an environment variable's name: letters, digits and '_', "
                                "not starting with a digit")
    if name.upper().startswith("APIARY_"):  # Apiary's own (APIARY_JOB_ID, a shard's list): a cell must not change them
        raise MatrixError(path, f"{name!r}: names starting with APIARY_ are Apiary's own variables")


def _value(value: Any, path: str) -> str:
    """A value as the shell sees it (as env values are): text as written; from JSON, numbers and true/false."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float, str)):
        text = str(value)
    else:
        raise MatrixError(path, "must be one value (text, a number, true/false), not a list or mapping"
                          if value is not None else "has no value: write '' for an empty one")
    if len(text) > MAX_VALUE:
        raise MatrixError(path, f"must be at most {MAX_VALUE} characters (it names the cell), got {len(text)}")
    if any(ch in "\n\r\u2028\u2029" for ch in text):
        raise MatrixError(path, "must be one line (it names the cell)")
    if bad := _UNSHOWN.search(text):
        code = ord(bad.group())
        if code < 0xa0:
            raise MatrixError(path, f"has a control character (U+{code:04X}): it names the cell")
        what = "a bidirectional control" if bad.group() in _BIDI else "an invisible formatting character"
        raise MatrixError(path, f"has {what} (U+{code:04X}): it names the cell, and would show reordered or "
                                "hidden text in job lists and pages")
    return text


def _entries(value: Any, at: str, variables: dict[str, list[str]],
             known_only: bool) -> list[tuple[dict[str, str], str]]:
    """`exclude` (every key a variable of the matrix) or `include` (new variables allowed) entries."""
    if value is None:
        return []
    if not isinstance(value, list) or not value:
        raise MatrixError(at, "must be a non-empty list of mappings of variables to values")
    if len(value) > MAX_CELLS:  # each entry is held against every combination (up to MAX_CELLS * 16)
        raise MatrixError(at, f"at most {MAX_CELLS} entries, got {len(value)}")
    out = []
    for j, entry in enumerate(value):
        path = f"{at}[{j}]"
        if not isinstance(entry, dict) or not entry:
            raise MatrixError(path, "must be a non-empty mapping of variables to values, such as {python: '3.11'}")
        texts = {}
        for name, text in entry.items():
            _variable(name, f"{path}.{name}")
            if name in _RESERVED:
                raise MatrixError(f"{path}.{name}", f"{name!r} is not a variable")
            if known_only and name not in variables:
                raise MatrixError(f"{path}.{name}", f"unknown matrix variable {name!r} "
                                                    f"(variables: {', '.join(variables) or 'none'})")
            texts[name] = _value(text, f"{path}.{name}")
        out.append((texts, path))
    return out


# What a group of cells shows: the first of these states that one of its cells has.
_GROUP_STATES = ("failed", "cancelled", "running", "waiting", "not_run", "passed", "reused", "skipped")


def grouped(column: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stage graph's column (outcome stages) with the cells of each matrix together, where the first of them
    was: ``{"group": name, "status": the cells' worst, "counts": {status: n}, "cells": [stages], "after":
    the needs all its cells share (None: they differ)}``; other stages as they are."""
    out: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    for stage in column:
        spec = stage.get("matrix")
        if not isinstance(spec, dict) or not isinstance(spec.get("group"), str):
            out.append(stage)
            continue
        if spec["group"] not in groups:
            groups[spec["group"]] = {"group": spec["group"], "cells": [], "counts": {}}
            out.append(groups[spec["group"]])
        group = groups[spec["group"]]
        group["cells"].append(stage)
        group["counts"][stage["status"]] = group["counts"].get(stage["status"], 0) + 1
    for group in groups.values():
        group["status"] = next((s for s in _GROUP_STATES if s in group["counts"]),
                               group["cells"][0]["status"])
        afters = [tuple(c.get("after") or c.get("needs") or ()) for c in group["cells"]]
        group["after"] = list(afters[0]) if len(set(afters)) == 1 else None  # said once when the cells agree
    return out


def short_needs(stages: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Stage name -> its needs as the page says them: every cell of a matrix named once, by its group
    (``after build, test`` rather than each of test's cells)."""
    cells_of: dict[str, set[str]] = {}
    group_of: dict[str, str] = {}
    for stage in stages:
        spec = stage.get("matrix")
        if isinstance(spec, dict) and isinstance(spec.get("group"), str):
            cells_of.setdefault(spec["group"], set()).add(stage["name"])
            group_of[stage["name"]] = spec["group"]
    out: dict[str, list[str]] = {}
    for stage in stages:
        needs = list(stage.get("needs") or [])
        given = set(needs)
        whole = {g for g in {group_of[n] for n in needs if n in group_of} if cells_of[g] <= given}
        shown: list[str] = []
        for need in needs:
            group = group_of.get(need)
            if group not in whole:
                shown.append(need)
            elif group not in shown:
                shown.append(group)
        out[stage["name"]] = shown
    return out
