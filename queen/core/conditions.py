"""`when:` conditions on stages and steps: compiled at trigger time, decided once per job. Pure, no I/O.

A condition (``when:`` on a stage or a step) is a mapping of tests, all of which must hold:

    branch:      [glob, ...]   the job's branch matches one (shell-style, as the repository's branch filters)
    not_branch:  [glob, ...]   the job's branch matches none
    event:       [push, tag, pull_request, fork, manual, schedule]   the job's kind (apiary.queen.trust)
    type:        [TEST, DEPLOY, TEST_DEPLOY]
    expression:  "PARAM == 'x' && (OTHER != 'y' || !FLAG)"   over the job's parameters
    changed:     [glob, ...]   a file matching one changed between the base commit and the job's commit

`compile_when` checks one as the pipeline compiler does (`ConditionError` names the path under
``when``); its compiled form compiles to itself. `decide` takes the facts of a job (`JobFacts`) and
returns, for every condition of the pipeline, whether that stage or step runs and why not
(`Decision`): the queen records them on the job (``conditions``) and the drone skips what they skip.

The expression language, parsed here and never evaluated by Python::

    expr    := or
    or      := and ('||' and)*
    and     := unary ('&&' unary)*
    unary   := '!' unary | '(' expr ')' | compare
    compare := operand (('==' | '!=') operand)?
    operand := NAME | 'text' | "text" | true | false

A NAME is a parameter the pipeline declares (its value; an unset one is ''). A lone operand is true
when its text is neither '', 'false' nor '0'. Comparisons are of text, exact.

Branches: a pull or merge request's job has no branch of its own: its ``branch`` is the request's
base (target) branch, as Woodpecker's is. A tag's job has none: ``branch`` never holds for it.
``fork`` jobs (pull requests from elsewhere) also count as ``pull_request``.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import globs
from .errors import InputError
from .fields import kind_of

EVENTS = ("push", "tag", "pull_request", "fork", "manual", "schedule")
TYPES = ("TEST", "DEPLOY", "TEST_DEPLOY")
KEYS = ("branch", "not_branch", "event", "type", "expression", "changed")
MAX_PATTERNS = 64  # per list
MAX_PATTERN = 256  # characters
MAX_EXPRESSION = 1000  # characters
MAX_DEPTH = 32  # nested parentheses and '!'
MAX_SHOWN = 3  # changed files named in a decision


class ConditionError(InputError):
    """A `when:` or `concurrency:` that does not validate: `path` below the key, `problem` what is wrong."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}", field=path)
        self.path, self.problem = path, problem


# -- compiling ------------------------------------------------------------------


def compile_when(value: Any, at: str, parameters: Sequence[str] | None = None) -> dict[str, Any] | None:
    """The compiled condition of `value` (a mapping of KEYS), or None when there is none (null, {}).

    `at` is the path of the ``when`` key (``stages[1].when``); `parameters` the names the pipeline
    declares (an expression naming another is refused); None skips that check.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConditionError(at, f"must be a mapping of {', '.join(KEYS)}, got {kind_of(value)}")
    for key in value:
        if key not in KEYS:
            raise ConditionError(f"{at}.{key}", f"unknown key {key!r} (allowed: {', '.join(KEYS)})")
    out: dict[str, Any] = {}
    for key in ("branch", "not_branch", "changed"):
        if key in value:
            out[key] = _patterns(value[key], f"{at}.{key}", paths=key == "changed")
    for key, allowed in (("event", EVENTS), ("type", TYPES)):
        if key in value:
            names = _patterns(value[key], f"{at}.{key}", paths=False)
            for i, name in enumerate(names):
                if name not in allowed:
                    raise ConditionError(f"{at}.{key}[{i}]", f"must be one of {', '.join(allowed)}, got {name!r}")
            out[key] = names
    if "expression" in value:
        text = value["expression"]
        if not isinstance(text, str) or not text.strip():
            raise ConditionError(f"{at}.expression", f"must be a non-empty string, got {kind_of(text)}")
        tree = parse_expression(text, f"{at}.expression")
        if parameters is not None:
            unknown = sorted(_names(tree) - set(parameters))
            if unknown:
                raise ConditionError(f"{at}.expression", f"names {', '.join(unknown)}, not a parameter the "
                                     f"pipeline declares (declared: {', '.join(parameters) or 'none'})")
        out["expression"] = text
    return out or None


def _patterns(value: Any, at: str, paths: bool) -> list[str]:
    if isinstance(value, str):
        value = [value]  # one pattern needs no list
    if not isinstance(value, list) or not value:
        raise ConditionError(at, f"must be a non-empty list, got {kind_of(value)}")
    if len(value) > MAX_PATTERNS:
        raise ConditionError(at, f"at most {MAX_PATTERNS} entries, got {len(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip() or len(item) > MAX_PATTERN or "\n" in item:
            raise ConditionError(f"{at}[{i}]", f"must be a one-line string of 1 to {MAX_PATTERN} characters")
        if paths and (item.startswith("/") or ".." in item.split("/")):
            raise ConditionError(f"{at}[{i}]", f"{item!r} is a path in the repository: no leading '/', no '..'")
    return list(value)


# -- the expression language ----------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<op>&&|\|\||==|!=|!|\(|\))|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|'(?P<sq>[^'\n]*)'|\"(?P<dq>[^\"\n]*)\")")


def parse_expression(text: str, at: str = "expression") -> Any:
    """The tree of `text`: ["or", a, b], ["and", a, b], ["not", a], ["==", a, b], ["!=", a, b],
    ["name", NAME], ["text", value]. ConditionError at `at` naming the column of a fault."""
    if len(text) > MAX_EXPRESSION:
        raise ConditionError(at, f"at most {MAX_EXPRESSION} characters, got {len(text)}")
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        match = _TOKEN.match(text, pos)
        if match is None:
            column = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
            raise ConditionError(at, f"cannot read {text[column - 1:column + 9]!r} at column {column} (operators:"
                                 " == != && || ! ( ), 'text', parameter names)")
        start = match.start(match.lastgroup or 0) + 1
        if match.group("op"):
            tokens.append(("op", match.group("op"), start))
        elif match.group("name"):
            word = match.group("name")
            tokens.append(("text", word, start) if word in ("true", "false") else ("name", word, start))
        else:
            tokens.append(("text", match.group("sq") if match.group("sq") is not None else match.group("dq"), start))
        pos = match.end()
    parser = _Parser(tokens, at, len(text))
    tree = parser.parse_or(0)
    if parser.i < len(tokens):
        parser.fail("expected an operator (&&, ||, ==, !=) or the end")
    return tree


class _Parser:
    def __init__(self, tokens: list[tuple[str, str, int]], at: str, length: int) -> None:
        self.tokens, self.at, self.i, self.length = tokens, at, 0, length

    def fail(self, problem: str) -> None:
        column = self.tokens[self.i][2] if self.i < len(self.tokens) else self.length + 1
        raise ConditionError(self.at, f"{problem} at column {column}")

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) and self.tokens[self.i][0] == "op" else None

    def parse_or(self, depth: int) -> Any:
        left = self.parse_and(depth)
        while self.peek() == "||":
            self.i += 1
            left = ["or", left, self.parse_and(depth)]
        return left

    def parse_and(self, depth: int) -> Any:
        left = self.parse_unary(depth)
        while self.peek() == "&&":
            self.i += 1
            left = ["and", left, self.parse_unary(depth)]
        return left

    def parse_unary(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            self.fail(f"nested more than {MAX_DEPTH} deep")
        op = self.peek()
        if op == "!":
            self.i += 1
            return ["not", self.parse_unary(depth + 1)]
        if op == "(":
            self.i += 1
            inner = self.parse_or(depth + 1)
            if self.peek() != ")":
                self.fail("expected ')'")
            self.i += 1
            return inner
        left = self.operand()
        op = self.peek()
        if op in ("==", "!="):
            self.i += 1
            return [op, left, self.operand()]
        return left

    def operand(self) -> Any:
        if self.i >= len(self.tokens) or self.tokens[self.i][0] == "op":
            self.fail("expected a parameter name or a 'text'")
        kind, value, _ = self.tokens[self.i]
        self.i += 1
        return [kind, value]


def _names(tree: Any) -> set[str]:
    if tree[0] == "name":
        return {tree[1]}
    if tree[0] == "text":
        return set()
    return set().union(*(_names(t) for t in tree[1:]))


def evaluate(tree: Any, values: Mapping[str, str]) -> bool:
    """Whether the expression `tree` (parse_expression) holds with parameter `values`."""
    kind = tree[0]
    if kind == "or":
        return evaluate(tree[1], values) or evaluate(tree[2], values)
    if kind == "and":
        return evaluate(tree[1], values) and evaluate(tree[2], values)
    if kind == "not":
        return not evaluate(tree[1], values)
    if kind in ("==", "!="):
        return (_value(tree[1], values) == _value(tree[2], values)) == (kind == "==")
    return _value(tree, values) not in ("", "false", "0")


def _value(tree: Any, values: Mapping[str, str]) -> str:
    return str(values.get(tree[1], "")) if tree[0] == "name" else str(tree[1])


# -- paths -------------------------------------------------------------------------


def changed_glob(pattern: str) -> str:
    """A ``when.changed`` pattern as an apiary.core.globs pattern: one without '/' matches the name in
    any folder (``*.sql``) and one ending in '/' everything under it (``docs/``), as .gitignore does."""
    if "/" not in pattern.rstrip("/"):
        pattern = "**/" + pattern
    return pattern.rstrip("/") + "/**" if pattern.endswith("/") else pattern


def matching_paths(paths: Sequence[str], patterns: Sequence[str], limit: int | None = None) -> list[str]:
    """The paths that match any of `patterns`, in order; the first `limit` of them if given. The
    patterns and paths are the pusher's (a fork's request too): apiary.core.globs matches them in
    time polynomial in both, never a backtracking expression holding the queen's interpreter lock."""
    matchers = [globs.matcher(changed_glob(p)) for p in patterns]
    hits = (p for p in paths if any(m(p) for m in matchers))
    return list(hits) if limit is None else list(itertools.islice(hits, limit))


# -- deciding ----------------------------------------------------------------------


@dataclass(frozen=True)
class Changes:
    """What changed for a job: `files` between `base` and the job's commit (None: every file counts as
    changed, with `why`, e.g. "no earlier passing job of main"); `since` names the base for people
    ("1a2b3c4 (job app#12)")."""

    files: tuple[str, ...] | None
    base: str | None = None  # the base commit's sha
    since: str = ""
    why: str = ""
    job: str | None = None  # the id of the passed job whose commit is the base, if one


@dataclass(frozen=True)
class JobFacts:
    branch: str  # "" for a tag
    event: str  # the job's kind (apiary.queen.trust.job_kind)
    type: str  # TEST, DEPLOY, TEST_DEPLOY
    parameters: Mapping[str, str] = field(default_factory=dict)
    changes: Changes | None = None  # None: not computed (no condition asks)


@dataclass(frozen=True)
class Decision:
    """One condition's verdict: stage `stage` (and its step number `step`, from 0, or None for the
    stage) runs or not; `reason` names the test that decided, in one line."""

    stage: str
    step: int | None
    run: bool
    reason: str

    def doc(self) -> dict[str, Any]:
        return {"stage": self.stage, "step": self.step, "run": self.run, "reason": self.reason}


def needs_changes(pipeline: Mapping[str, Any]) -> bool:
    """Whether any condition of `pipeline` asks what changed (so the queen computes it)."""
    return any("changed" in (when or {}) for when in _conditions(pipeline).values())


def decide(pipeline: Mapping[str, Any], facts: JobFacts) -> list[Decision]:
    """Every conditioned stage's and step's verdict, in pipeline order."""
    return [Decision(stage, step, *check(when, facts)) for (stage, step), when in _conditions(pipeline).items()]


def _conditions(pipeline: Mapping[str, Any]) -> dict[tuple[str, int | None], dict[str, Any]]:
    out: dict[tuple[str, int | None], dict[str, Any]] = {}
    for stage in pipeline.get("stages") or []:
        if stage.get("when"):
            out[(stage["name"], None)] = stage["when"]
        for i, step in enumerate(stage.get("steps") or []):
            if step.get("when"):
                out[(stage["name"], i)] = step["when"]
    return out


def check(when: Mapping[str, Any], facts: JobFacts) -> tuple[bool, str]:
    """(runs, why): the first test of `when` that fails says why not; when all hold, the last says why."""
    why = ""
    if "branch" in when:
        hit = [p for p in when["branch"] if facts.branch and fnmatch.fnmatchcase(facts.branch, p)]
        if not hit:
            shown = f"branch {facts.branch}" if facts.branch else "the job has no branch (a tag)"
            return False, f"when.branch: {shown} matches none of {', '.join(when['branch'])}"
        why = f"when.branch: {facts.branch} matches {hit[0]}"
    if "not_branch" in when:
        hit = [p for p in when["not_branch"] if facts.branch and fnmatch.fnmatchcase(facts.branch, p)]
        if hit:
            return False, f"when.not_branch: branch {facts.branch} matches {hit[0]}"
        why = "when.not_branch: " + (f"branch {facts.branch}" if facts.branch else "no branch") + " matches none"
    if "event" in when:
        kinds = {facts.event, "pull_request"} if facts.event == "fork" else {facts.event}
        if not kinds & set(when["event"]):
            return False, f"when.event: a {facts.event} job, not {' or '.join(when['event'])}"
        why = f"when.event: a {facts.event} job"
    if "type" in when:
        if facts.type not in when["type"]:
            return False, f"when.type: a {facts.type} job, not {' or '.join(when['type'])}"
        why = f"when.type: a {facts.type} job"
    if "expression" in when:
        text = " ".join(when["expression"].split())
        if not evaluate(parse_expression(when["expression"]), facts.parameters):
            return False, f"when.expression: {text} is false"
        why = f"when.expression: {text} is true"
    if "changed" in when:
        patterns = ", ".join(when["changed"])
        changes = facts.changes or Changes(None, why="what changed is not known")
        if changes.files is None:
            return True, f"when.changed: everything counts as changed ({changes.why})"
        hit = matching_paths(changes.files, when["changed"], MAX_SHOWN + 1)
        if not hit:
            return False, f"when.changed: nothing under {patterns} changed since {changes.since}"
        more = " and more" if len(hit) > MAX_SHOWN else ""
        why = f"when.changed: {', '.join(hit[:MAX_SHOWN])}{more} changed since {changes.since}"
    return True, why


def skipped(decisions: Sequence[Mapping[str, Any]]) -> tuple[dict[str, str], dict[tuple[str, int], str]]:
    """From a job's recorded ``conditions``: the stages skipped (name -> reason) and the steps skipped
    ((stage, step number from 0) -> reason). What the drone and the outcome read."""
    stages: dict[str, str] = {}
    steps: dict[tuple[str, int], str] = {}
    for d in decisions or []:
        if not isinstance(d, Mapping) or d.get("run") is not False:
            continue
        if d.get("step") is None:
            stages[str(d.get("stage"))] = str(d.get("reason") or "")
        else:
            steps[(str(d.get("stage")), int(d["step"]))] = str(d.get("reason") or "")
    return stages, steps


