"""Test sharding (issue 18, item 3): a stage's ``shards:`` key, the test list, the levelled split. Pure, no I/O.

    stages:
      - name: test
        shards: {count: 4, tests: "pytest --collect-only -q"}
        steps: ['pytest $(cat "$APIARY_SHARD_FILE")']

`compile_shards` checks the key at trigger time. The ``tests`` command runs in
the job's workspace before the shards; `parse_tests` reads what it printed
(pytest's ``-q`` node ids, ``-qq``'s ``file: N`` lines, or one name a line),
bounded by MAX_OUTPUT_BYTES, MAX_TESTS and MAX_NAME. `plan` splits the list
over the shards by expected time: each test's seconds from past reports
(`known`, built by `durations`: the median of its RUNS_PER_TEST newest), the median of the known ones for a test
without history (UNKNOWN_SECONDS when nothing is known), each at least MIN_SECONDS (near-zero records
would weigh nothing: such tests are split by count), then longest
processing time first: the longest test goes to the shard with the least
planned time so far (ties: the lower index; tests of equal time: by name), so
the same inputs always give the same split. `even_split` (by count) is what
it is measured against.

A test's history names it as its JUnit report does, ``classname.name``;
`report_name` turns a pytest node id into that (``tests/test_a.py::TestX::
test_y[1]`` is ``tests.test_a.TestX.test_y[1]``), and a file named alone
(``tests/test_a.py``, from ``-qq`` or a plain list) is expected to take what
its known tests took together.
"""

from __future__ import annotations

import bisect
import re
import shlex
import statistics
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from .errors import InputError
from .fields import kind_of
from .matrix import MAX_CELLS, is_cell

MAX_SHARDS = 64
MAX_STAGES = MAX_CELLS  # stages of a pipeline once its shards are made, as once its matrices are expanded
MAX_COMMAND = 4096  # characters of the `tests` command
MAX_OUTPUT_BYTES = 4 * 2**20  # what the tests command may print
MAX_TESTS = 50_000  # names listed
MAX_NAME = 1000  # characters of one name
UNKNOWN_SECONDS = 1.0  # a test's expected time when no test of the list has any history
MIN_SECONDS = 0.01  # a test's expected time at least (its setup and teardown; a record of ~0 s is no weight)
HISTORY_JOBS = 40  # the newest reported jobs of a branch read for durations (a sharded job's are its shards')
HISTORY_ROWS = 200_000  # test results read for them at most
RUNS_PER_TEST = 5  # a test's newest results its expected time is the median of
_KEYS = {"count", "tests"}
_LISTING = "{stage} · list"  # the listing stage's name: a '·' no written name has
_SUMMARY = re.compile(r"^(?:\d+(?:/\d+)? tests? (?:collected|selected)|no tests (?:ran|collected)|=+ |-+ |"
                      r"collected \d+ items?)")
_FILE_COUNT = re.compile(r"^(\S+\.py): (\d+)$")  # pytest -qq: one line per file
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class ShardsError(InputError):
    """A ``shards:`` key or a test list that cannot be used: `path` (``stages[1].shards.count``) and `problem`."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem, field=path or None)
        self.path, self.problem = path, problem


class Shard(TypedDict):
    index: int  # from 1
    tests: list[str]  # in the order the tests command listed them
    seconds: float  # planned: the sum of its tests' expected seconds
    known: int  # how many of its tests had a recorded duration


def compile_shards(value: Any, at: str) -> dict[str, Any] | None:
    """``{count, tests}`` from a stage's ``shards:`` value (`at` is its path); None when absent."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ShardsError(at, "must be a mapping such as {count: 4, tests: 'pytest --collect-only -q'}, "
                              f"got {kind_of(value)}")
    for key in value:
        if key not in _KEYS:
            raise ShardsError(f"{at}.{key}", f"unknown key {key!r} (allowed: {', '.join(sorted(_KEYS))})")
    count = value.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SHARDS:
        got = (repr(count) if isinstance(count, (int, float)) else  # the value named: "got 'three'"
               f"{kind_of(count)} {count[:40]!r}{'…' if len(count) > 40 else ''}" if isinstance(count, str) else
               kind_of(count))
        raise ShardsError(f"{at}.count", f"must be a whole number from 1 to {MAX_SHARDS}, got {got}")
    tests = value.get("tests")
    if isinstance(tests, str) and not tests.strip():
        raise ShardsError(f"{at}.tests", "is empty: give the command that lists the tests, one a line "
                                         "(e.g. 'pytest --collect-only -q')")
    if not isinstance(tests, str):
        raise ShardsError(f"{at}.tests", "must be a command that lists the tests, one a line "
                                         f"(e.g. 'pytest --collect-only -q'), got {kind_of(tests)}")
    if len(tests) > MAX_COMMAND or "\x00" in tests:
        raise ShardsError(f"{at}.tests", f"must be a command of at most {MAX_COMMAND} characters, without NUL")
    return {"count": count, "tests": tests}


def listing_name(stage: str) -> str:
    """The name of the stage that lists sharded stage `stage`'s tests."""
    return _LISTING.format(stage=stage)


def shard_name(stage: str, index: int, count: int) -> str:
    """The name of shard `index` (from 1) of `count` of sharded stage `stage`: ``test (shard 2 of 4)``."""
    return f"{stage} (shard {index} of {count})"


def is_listing(stage: Any) -> bool:
    """Whether `stage` (as written or compiled) is a listing stage made by `expand`: ``shards: {lists: NAME}``
    and named for NAME (its name is let past the stage name rule, as a matrix cell's is)."""
    spec = stage.get("shards") if isinstance(stage, dict) else None
    return (isinstance(spec, dict) and set(spec) == {"lists"} and isinstance(spec["lists"], str)
            and stage.get("name") == listing_name(spec["lists"]))


def is_shard(stage: Any) -> bool:
    """Whether `stage` is a shard made by `expand`: ``shards: {of: NAME, index, count, tests}``, named so."""
    spec = stage.get("shards") if isinstance(stage, dict) else None
    return (isinstance(spec, dict) and set(spec) == {"of", "index", "count", "tests"} and isinstance(spec["of"], str)
            and all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("index", "count"))
            and 1 <= spec["index"] <= spec["count"] <= MAX_SHARDS
            and isinstance(spec["tests"], str) and 0 < len(spec["tests"]) <= MAX_COMMAND
            and stage.get("name") == shard_name(spec["of"], spec["index"], spec["count"]))


def written_name(stage: Any) -> str | None:
    """The name as written of a stage `expand` made (a listing or a shard), else None."""
    if is_listing(stage):
        return str(stage["shards"]["lists"])
    if is_shard(stage):
        return str(stage["shards"]["of"])
    return None


def expand(stages: Any, origin: list[int]) -> tuple[Any, list[int]]:
    """`stages` (as written, matrices expanded; `origin` their written indexes) with each sharded stage
    turned into its listing stage and its shards, and their written indexes.

    The listing stage (``test · list``) has the ``tests`` command as its one step and the stage's needs,
    env and when: it runs on the job's own drone, and its stdout is the list (apiary.queen.shards). Each
    shard (``test (shard 2 of 4)``) is the stage as written, needing the listing too, run as a job of its
    own (``remote: {kind: shard, unit: its name}``, apiary.core.spread) with its part of the list. A stage
    that needs the sharded one needs every shard. A key that does not check, a cell or a deploy stage is
    left as it is (the compiler says what is wrong); a compiled pipeline has nothing left to expand."""
    if not isinstance(stages, list):
        return stages, origin
    names = {s.get("name") for s in stages if isinstance(s, dict)}
    out: list[Any] = []
    where: list[int] = []
    split: dict[str, list[str]] = {}  # a sharded stage -> its shards' names
    for i, stage in enumerate(stages):
        at = origin[i] if i < len(origin) else i
        spec = None
        if isinstance(stage, dict) and isinstance(stage.get("name"), str) and isinstance(stage.get("shards"), dict) \
                and written_name(stage) is None and not is_cell(stage) and stage.get("deploy") is not True \
                and listing_name(stage["name"]) not in names and isinstance(stage.get("needs", []), list):
            try:
                spec = compile_shards(stage["shards"], "shards")
            except ShardsError:
                spec = None
        if spec is None:
            out.append(stage)
            where.append(at)
            continue
        name, count = stage["name"], spec["count"]
        listing = {"name": listing_name(name), "shards": {"lists": name},
                   "steps": [{"run": spec["tests"], "title": f"list the tests for {count} shards"}],
                   **{k: stage[k] for k in ("needs", "env", "when") if k in stage}}
        out.append(listing)
        where.append(at)
        split[name] = []
        for index in range(1, count + 1):
            shard = {**stage, "name": shard_name(name, index, count),
                     "needs": [*(stage.get("needs") or []), listing["name"]],
                     "shards": {"of": name, "index": index, "count": count, "tests": spec["tests"]}}
            shard["remote"] = {"kind": "shard", "unit": shard["name"]}
            split[name].append(shard["name"])
            out.append(shard)
            where.append(at)
    if len(out) > MAX_STAGES:
        first = next((i for i, s in enumerate(stages) if isinstance(s, dict) and s.get("name") in split), None)
        if first is not None:
            raise ShardsError(f"stages[{origin[first] if first < len(origin) else first}].shards.count",
                              f"the pipeline would have more than {MAX_STAGES} stages once sharded: fewer shards")
        # No shards: its matrices' cells and the other stages come to too many (each matrix alone is bounded).
        cell = next((i for i, s in enumerate(stages) if is_cell(s)), None)
        raise ShardsError("stages" if cell is None else f"stages[{origin[cell] if cell < len(origin) else cell}]"
                          ".matrix", f"the pipeline would have {len(out)} stages once its matrices are expanded, "
                          f"more than {MAX_STAGES}: fewer cells or stages")
    if split:  # `needs: [test]` elsewhere: every shard of test
        for i, stage in enumerate(out):
            if isinstance(stage, dict) and isinstance(stage.get("needs"), list) \
                    and any(isinstance(n, str) and n in split for n in stage["needs"]):
                out[i] = {**stage, "needs": [m for n in stage["needs"]
                                             for m in (split[n] if isinstance(n, str) and n in split else [n])]}
    return out, where


def here(pipeline: Mapping[str, Any], python: str, folder: str) -> dict[str, Any]:
    """`pipeline` (compiled) as ``apiary run`` runs it, with no queen and no history: each listing stage
    writes the list to a file in `folder` and splits it there (``python -m apiary.drone.shardsplit``, every
    test taken to last the same), and each shard runs here, with APIARY_SHARD_FILE naming its part and
    APIARY_SHARD_INDEX / _COUNT (no APIARY_SHARD_TESTS: the split is made while the job runs)."""
    out = dict(pipeline)
    stages = []
    order = {name: k for k, name in enumerate(dict.fromkeys(s["shards"]["lists"] for s in pipeline.get("stages") or []
                                                            if is_listing(s)))}
    for stage in pipeline.get("stages") or []:
        stage = dict(stage)
        if is_listing(stage) and stage["shards"]["lists"] in order:
            base = shlex.quote(f"{folder}/s{order[stage['shards']['lists']]}")
            count = sum(1 for s in pipeline["stages"] if is_shard(s) and s["shards"]["of"] == stage["shards"]["lists"])
            listing = stage["steps"][0]
            stage["steps"] = [{**listing, "run": f"{{ {listing['run']}\n}} > {base}.list"},
                              {"run": f"{shlex.quote(python)} -m apiary.drone.shardsplit {base}.list {count} {base}",
                               "title": f"split them over {count} shards (apiary run: no past durations)",
                               "ignore_exit_code": False}]
        elif is_shard(stage) and stage["shards"]["of"] in order:
            spec = stage["shards"]
            stage.pop("remote", None)
            path = f"{folder}/s{order[spec['of']]}-{spec['index']}.txt"
            env = shard_env(spec["index"], spec["count"], path, 0)
            env.pop("APIARY_SHARD_TESTS")
            stage["env"] = {**(stage.get("env") or {}), **env}
        stages.append(stage)
    out["stages"] = stages
    return out


def parse_tests(output: bytes | str) -> list[str]:
    """The names the tests command printed, each once, in its order; ShardsError saying why when unusable.

    Read: pytest ``--collect-only -q`` (node ids, then a blank line and ``N tests collected``; its
    ``=== warnings summary ===`` and what follows are not tests), ``-qq`` (``tests/test_a.py: 3``: the
    file is the name) and a plain list of one name a line. Blank lines and lines starting with '#' are
    skipped."""
    if isinstance(output, str):
        output = output.encode("utf-8", "surrogateescape")
    if len(output) > MAX_OUTPUT_BYTES:
        raise ShardsError("", f"the tests command printed more than {MAX_OUTPUT_BYTES // 2**20} MiB; "
                              "list the tests one a line (or list files instead of tests)")
    text = output.decode("utf-8", "replace")
    names: dict[str, None] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if _SUMMARY.match(line):
            if line.startswith("="):  # pytest's closing sections (warnings, errors): nothing more to read
                break
            continue
        if (per_file := _FILE_COUNT.match(line)):
            line = per_file.group(1)
        if len(line) > MAX_NAME:
            raise ShardsError("", f"the tests command's line {number} is longer than {MAX_NAME} characters")
        if _CONTROL.search(line) or "\ufffd" in line:
            raise ShardsError("", f"the tests command's line {number} holds control characters or is not UTF-8")
        names[line] = None
        if len(names) > MAX_TESTS:
            raise ShardsError("", f"the tests command listed more than {MAX_TESTS:,} tests; list files instead")
    if not names:
        raise ShardsError("", "the tests command listed no tests")
    return list(names)


def report_name(name: str) -> str:
    """The name a JUnit report gives the test `name` lists: a pytest node id's path with '.' for '/' and
    without '.py', '.' for '::' (parameters in [...] kept as written); any other name unchanged."""
    head, bracket, params = name.partition("[")
    if "::" not in head:
        return name.removesuffix(".py").replace("/", ".") if head.endswith(".py") and not bracket else name
    path, _, rest = head.partition("::")
    return ".".join([path.removesuffix(".py").replace("/", "."), *rest.split("::")]) + bracket + params


def durations(runs: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Each test's expected seconds: the median of its first RUNS_PER_TEST `runs` ({test, seconds}, newest
    first); runs without a finite, non-negative duration are left out."""
    seen: dict[str, list[float]] = {}
    for run in runs:
        test, seconds = run.get("test"), run.get("seconds")
        if isinstance(test, str) and isinstance(seconds, (int, float)) and not isinstance(seconds, bool) \
                and 0 <= seconds < 10**7 and len(seen.setdefault(test, [])) < RUNS_PER_TEST:
            seen[test].append(float(seconds))
    return {test: statistics.median(values) for test, values in seen.items()}


def expected(tests: list[str], known: Mapping[str, float]) -> tuple[dict[str, float], set[str]]:
    """Each listed test's expected seconds and the names that had history; unknown ones get the median of
    the known ones (UNKNOWN_SECONDS when none is known)."""
    keys = sorted(known)
    found: dict[str, float] = {}
    for name in tests:
        if name in known:
            found[name] = known[name]
        elif (key := report_name(name)) in known:
            found[name] = known[key]
        elif name.endswith(".py") and "::" not in name:  # a file: what its tests took together
            prefix = key + "."
            start = bisect.bisect_left(keys, prefix)
            end = bisect.bisect_left(keys, prefix + "\U0010ffff")
            if end > start:
                found[name] = sum(known[k] for k in keys[start:end])
    guess = statistics.median(found.values()) if found else UNKNOWN_SECONDS
    # Every test counts at least MIN_SECONDS: recorded times near zero (a fast suite, a clock's grain) would
    # otherwise weigh nothing, and the split put nearly every test, unknown ones too, in one shard; equal
    # floors split such tests by count.
    return {name: max(found.get(name, guess), MIN_SECONDS) for name in tests}, set(found)


def plan(tests: list[str], known: Mapping[str, float], count: int) -> list[Shard]:
    """`tests` split into `count` shards of about equal expected time (longest processing time first,
    deterministic). With fewer tests than shards the last shards are empty (their steps see
    APIARY_SHARD_TESTS=0: a bare ``pytest`` would run everything)."""
    seconds, had = expected(tests, known)
    count = max(1, count)
    loads = [0.0] * count
    members: list[list[str]] = [[] for _ in range(count)]
    for name in sorted(tests, key=lambda t: (-seconds[t], t)):
        least = min(range(count), key=lambda i: (loads[i], i))
        loads[least] += seconds[name]
        members[least].append(name)
    order = {name: i for i, name in enumerate(tests)}
    return [{"index": i + 1, "tests": sorted(group, key=order.__getitem__), "seconds": round(loads[i], 3),
             "known": sum(1 for t in group if t in had)} for i, group in enumerate(members)]


def even_split(tests: list[str], known: Mapping[str, float], count: int) -> list[Shard]:
    """The split by count alone, in listed order (what `plan` is measured against): equal numbers of
    tests, each shard's planned seconds from the same expectations."""
    seconds, had = expected(tests, known)
    count = max(1, count)
    size, extra = divmod(len(tests), count)
    out: list[Shard] = []
    start = 0
    for i in range(count):
        group = tests[start:start + size + (1 if i < extra else 0)]
        start += len(group)
        out.append({"index": i + 1, "tests": group, "seconds": round(sum(seconds[t] for t in group), 3),
                    "known": sum(1 for t in group if t in had)})
    return out


def makespan(shards: list[Shard]) -> float:
    """The planned time of the longest shard: when the stage would end, all shards started together."""
    return max((s["seconds"] for s in shards), default=0.0)


def shard_env(index: int, count: int, path: str, tests: int) -> dict[str, str]:
    """What a shard's commands are given: its list's path (one name a line, relative to the workspace), its
    index (from 1), the count and how many tests its list holds."""
    return {"APIARY_SHARD_FILE": path, "APIARY_SHARD_INDEX": str(index), "APIARY_SHARD_COUNT": str(count),
            "APIARY_SHARD_TESTS": str(tests)}


def shard_file(tests: list[str]) -> bytes:
    """A shard's list as the file it gets: one name a line."""
    return "".join(f"{name}\n" for name in tests).encode()


def shard_of(job: Mapping[str, Any]) -> dict[str, Any] | None:
    """Which shard `job` is, when it is a shard's child job: ``{job (its parent's id), number (its parent's),
    stage (the sharded stage), shard (from 1), count}``; else None. What GET /jobs/{id}/shards and `apiary
    shards` say of a shard's own job."""
    parent = job.get("parent")
    if not isinstance(parent, Mapping):
        return None
    for stage in (job.get("pipeline") or {}).get("stages") or []:
        spec = stage.get("shards") if isinstance(stage, Mapping) else None
        if isinstance(spec, Mapping) and isinstance(spec.get("index"), int):
            return {"job": parent.get("id"), "number": parent.get("number"), "stage": spec.get("of"),
                    "shard": spec["index"], "count": spec.get("count")}
    return None
