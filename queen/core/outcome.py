"""Why a job ended as it did, and where each of its stages stands: its outcome. Pure, no I/O.

`job_outcome(job, events)` reads the job document (its compiled pipeline, its
``commands`` and ``phases``) and the job's stored events other than command
output (``job:cmd:start`` / ``job:cmd:done`` for the order things happened
in and the attempt they belong to, and the drone's own ``job:stderr`` lines,
which say why a stage was skipped and when a cancel arrived). The API serves
what it returns (``GET /api/v1/jobs/{id}/outcome``), the job page draws it and
the CLI ends a followed job with it. Shape (JSON; times in seconds since 1970,
durations in seconds)::

    {"status": the job's status, "error": the job's error or None,
     "stages": [{"name", "needs": [names], "deploy": bool,
                 "status": passed|failed|skipped|cancelled|running|waiting|not_run|reused,
                 "reason": why skipped or not run (or what a waiting stage waits for) | None,
                 "reused_from": {"job", "number"} (reused: the job it passed in, apiary.core.partial),
                 "started": time | None, "duration": s | None,
                 "commands": [{"num": int | None (None: never ran), "title", "hook": name | None,
                               "status": passed|failed|cancelled|running|waiting|not_run|skipped,
                               "reason": why a `when:` skipped it (skipped only), "ignored": bool,
                               "exitCode": int | None, "signal": "SIGKILL" | None,
                               "shell_signal": "SIGSEGV" | None, "duration": s | None,
                               "attempt": {"attempt", "of"} | None, "retried": bool (a later attempt ran),
                               "flaky": bool (passed on attempt 2 or later), "timed_out": bool}],
                 "flaky": bool (it passed, a step of it only on a retry), "matrix": {"group", "values"} | None}],
     "failure": None | {"stage", "num", "title", "command", "exitCode", "signal", "shell_signal",
                        "also": [{"stage", "num", "title", "anchor"}] (the other commands that failed),
                        "last_lines": [the command's last lines, masked as stored], "anchor": "cmd-N",
                        "error": the job's error | None},
     "ran_nothing": None | why a job that passed ran no stage ("the pipeline has no deploy stages for a
                    DEPLOY job")}

A step that has not run is ``waiting`` while its stage may still run it (the job is not over and the
stage is running or waiting), else ``not_run``. A title is the one the pipeline gave, or its command's
first line cut at a word boundary with an ellipsis (`short_title`), never in the middle of a word.

Only the current attempt counts: the commands of an attempt lost with its
drone are not this outcome's. A command ended by a cancel is ``cancelled``,
not ``failed``: the drone says so (``stopped`` on ``job:cmd:done``); for an
older drone's events it is guessed from the exit code and where the cancel
came. A command killed by a signal names it: ``signal`` for a negative exit code (the drone's own
process), ``shell_signal`` for 128+N (129..192, N a signal): a command in the sandbox or under any
shell that a signal killed ends so (139: SIGSEGV, 143: SIGTERM).
The failing command's ``last_lines`` need its output, which this module does
not read: the caller fetches the output of ``failure["num"]`` and sets
``last_lines`` with `last_lines(text)`. `layout(stages)` puts stages in
columns by how deep their ``needs`` go, for the stage graph.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import approvals, partial, spread
from .conditions import skipped
from .errors import InputError
from .protocol import CANCELLED_LINE, FINAL_STATES
from .shown import plain  # noqa: F401  (re-exported: what a line shows, for a failure's last lines)
from .stages import blocked_stages, runnable_stages

MAX_LINES = 10  # lines of the failed command's output in a failure summary
MAX_LINE_CHARS = 400  # a longer line is cut there (a minified file on one line)
MAX_TITLE = 80  # characters of a title made from a command (the compiler's and the drone's cut)

_FINAL = {s.value for s in FINAL_STATES}
# Exit statuses a shell gives a command ended by a signal (128 + n): SIGINT, SIGKILL, SIGTERM.
_SHELL_KILLED = {128 + int(signal.SIGINT), 128 + int(signal.SIGKILL), 128 + int(signal.SIGTERM)}
_SKIPPED = "apiary: stage "  # the drone's line: "apiary: stage NAME skipped: REASON"
_CANCELLED = CANCELLED_LINE.strip()  # the drone's line when a cancel stopped the job
_PLAIN_PHASES = ("environment", "prepare", "cleanup")  # phases without stages


def signal_name(exit_code: int | None) -> str | None:
    """The signal a negative exit code means (-9: "SIGKILL"), else None."""
    if exit_code is None or exit_code >= 0:
        return None
    try:
        return signal.Signals(-exit_code).name
    except ValueError:
        return f"signal {-exit_code}"


def shell_signal(exit_code: int | None) -> str | None:
    """The signal a shell's exit status 128+N names (139: "SIGSEGV", 143: "SIGTERM"); None for any
    other code, and for 128+N where N is no signal of this system (SIGRTMIN+1..SIGRTMAX-1 have no name)."""
    if not isinstance(exit_code, int) or isinstance(exit_code, bool) or not 129 <= exit_code <= 192:
        return None
    try:
        return signal.Signals(exit_code - 128).name
    except ValueError:
        return None


def short_title(text: str, limit: int = MAX_TITLE) -> str:
    """`text`'s first line, at most `limit` characters: a longer one is cut at the last space that keeps
    at least half of it, with "…" (mid-word only when no space is that late: a long path)."""
    lines = text.strip().splitlines()
    line = lines[0].strip() if lines else ""
    if len(line) <= limit:
        return line
    cut = line[:limit]  # limit - 1 characters and the ellipsis, or fewer at a space
    space = cut.rfind(" ", 0, limit - 1)
    cut = cut[:space] if space >= limit // 2 else cut[:limit - 1]
    return cut.rstrip() + "…"


def _title(title: str | None, command: str | None) -> str:
    """A command's title: the pipeline's own, or its command's first line cut by `short_title` (a title
    the compiler or the drone made is the first MAX_TITLE characters, which may end mid-word)."""
    title, command = title or "", command or ""
    first = (command.strip().splitlines() or [""])[0].strip()
    if not title or (len(title) >= MAX_TITLE and len(first) > len(title) and first.startswith(title)):
        return short_title(first)
    return title


def last_lines(text: str, count: int = MAX_LINES) -> list[str]:
    """The last `count` non-empty-tailed lines of `text`, each cut at MAX_LINE_CHARS."""
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return [line[:MAX_LINE_CHARS] for line in lines[-count:]]


def layout(stages: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Stage names in columns: a stage's column is one past the deepest of its needs (0 without any).

    Needs naming no stage in `stages` are left out. Within a column, pipeline order. A cycle (which the
    compiler refuses) cannot loop: depths are relaxed at most len(stages) times.
    """
    names = [s["name"] for s in stages]
    known = set(names)
    needs = {s["name"]: [n for n in s.get("needs") or [] if n in known] for s in stages}
    depth = dict.fromkeys(names, 0)
    for _ in names:
        changed = False
        for name in names:
            d = max((depth[n] + 1 for n in needs[name]), default=0)
            if d != depth[name] and d < len(names):
                depth[name], changed = d, True
        if not changed:
            break
    columns: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in names:
        columns[depth[name]].append(name)
    return columns


def job_outcome(job: Mapping[str, Any], events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The outcome of `job` (a stored job document, or the API's form of one) given its stored events
    (any subset; output events are ignored). See the module's docstring for the shape."""
    status = job.get("status") or "queued"
    final = status in _FINAL
    events = sorted(events, key=lambda e: e.get("seq", 0))
    attempt = max([int(job.get("attempts") or 0)] + [int(e.get("attempt") or 0) for e in events]) or 1
    current = [e for e in events if (e.get("attempt") or attempt) == attempt]
    # Queued (again, after an attempt lost with its drone): the attempt to come has run nothing yet.
    requeued = status == "queued"
    if requeued:
        current = []

    started_now = {e["num"] for e in current if e.get("type") == "job:cmd:start"}
    done_seq = {e["num"]: e["seq"] for e in current if e.get("type") == "job:cmd:done"}
    start_seqs = [e["seq"] for e in current if e.get("type") == "job:cmd:start"]
    said = [line for e in current if e.get("type") == "job:stderr"
            for line in str(e.get("text") or "").splitlines()]
    cancel_seq = next((e["seq"] for e in current if e.get("type") == "job:stderr"
                       and str(e.get("text") or "").strip() == _CANCELLED), None)

    raw = job.get("commands") or {}
    commands = sorted(raw.values() if isinstance(raw, Mapping) else raw, key=lambda c: int(c.get("num") or 0))
    if requeued:
        commands = []
    elif any(e.get("type") == "job:cmd:start" for e in events):  # else: no events given, take every command
        commands = [c for c in commands if c.get("num") in started_now]

    # The command a cancel ended last: done before the drone said "job cancelled", nothing started since.
    last_before_cancel = None
    if status == "cancelled" and cancel_seq is not None:
        before = [(seq, num) for num, seq in done_seq.items() if seq < cancel_seq]
        if before:
            seq, num = max(before)
            if not any(seq < s < cancel_seq for s in start_seqs):
                last_before_cancel = num

    def command_status(c: Mapping[str, Any]) -> str:
        code = c.get("exitCode")
        if code is None:
            if not final:
                return "running"
            return "cancelled" if status == "cancelled" else "failed"  # the job ended without its end
        if code == 0:
            return "passed"
        if isinstance(c.get("stopped"), bool):  # the drone said whether it stopped the command
            return "cancelled" if c["stopped"] and status == "cancelled" and c.get("phase") != "cleanup" else "failed"
        # An older drone's: guessed from the exit code and where the cancel came.
        seq = done_seq.get(c.get("num"))
        if (status == "cancelled" and c.get("phase") != "cleanup"
                and (seq is None or cancel_seq is None or seq < cancel_seq)
                and (code < 0 or code in _SHELL_KILLED or c.get("num") == last_before_cancel)):
            return "cancelled"
        return "failed"

    pipeline = job.get("pipeline") or {}
    try:
        planned = runnable_stages(pipeline, job.get("type") or "TEST") if pipeline.get("stages") else []
    except (InputError, KeyError, TypeError):  # a job stored by another version: show what ran
        planned = [dict(s) for s in pipeline.get("stages") or []]
    staged = [c for c in commands if c.get("stage") and c.get("phase") not in _PLAIN_PHASES]
    for c in staged:  # stages a plugin brought: not in the pipeline, shown after its stages
        if all(s["name"] != c["stage"] for s in planned):
            planned.append({"name": c["stage"], "needs": [], "deploy": c.get("phase") == "deploy", "steps": []})

    # What a `when:` left out (apiary.core.conditions): known from the job before its drone says so.
    when_stages, step_skips = skipped(job.get("conditions") or [])
    skip_reasons = {**when_stages, **_skip_reasons(said, [s["name"] for s in planned])}
    phases = job.get("phases") or {}
    stages: list[dict[str, Any]] = []
    ended: dict[str, bool] = {}  # a finished stage -> whether it passed (for why others did not run)
    for stage in planned:
        ran = [c for c in staged if c["stage"] == stage["name"]]
        shown = _stage_commands(stage, ran, command_status,
                                {i: why for (name, i), why in step_skips.items() if name == stage["name"]})
        entry: dict[str, Any] = {"name": stage["name"], "needs": list(stage.get("needs") or []),
                                 "deploy": bool(stage.get("deploy")), "status": "", "reason": None,
                                 "started": None, "duration": None, "commands": shown,
                                 "flaky": any(c.get("flaky") and not c["hook"] for c in shown),
                                 "matrix": stage.get("matrix")}
        if ran:
            entry["status"] = _ran_status(stage, shown, final, status)
            starts = [c["started"] for c in ran if isinstance(c.get("started"), (int, float))]
            if starts:
                entry["started"] = min(starts)
                if entry["status"] not in ("running",):
                    ends = [c["started"] + (c.get("duration") or 0) for c in ran
                            if isinstance(c.get("started"), (int, float))]
                    entry["duration"] = round(max(ends) - entry["started"], 6)
            entry["flaky"] = entry["flaky"] and entry["status"] == "passed"  # failed anyway: not "flaky"
            if entry["status"] in ("passed", "failed"):
                ended[stage["name"]] = entry["status"] == "passed"
        elif (reused := partial.reused_stage(job, said, stage["name"])) is not None:  # passed in another job
            entry.update(reused)
            ended[stage["name"]] = True
            if reused["reused_from"]["job"] == job.get("_id", job.get("id")):  # its own, before an approval: shown
                before = [c for c in raw.values() if c.get("stage") == stage["name"]] if isinstance(raw, Mapping) else []
                entry.update(status="passed", reason=None, reused_from=None,
                             commands=_stage_commands(stage, sorted(before, key=lambda c: int(c.get("num") or 0)),
                                                      command_status))
                timed = [c for c in before if isinstance(c.get("started"), (int, float))]
                if timed:
                    entry["started"] = min(c["started"] for c in timed)
                    entry["duration"] = round(max(c["started"] + (c.get("duration") or 0) for c in timed)
                                              - entry["started"], 6)
        stages.append(entry)

    spread.mark(job, stages, ended)  # remote stages: the child jobs that run them (apiary.core.spread)
    ended.update({name: True for name in when_stages if name not in ended})  # as passed, for what needs it
    blocked = set(blocked_stages(planned, ended))
    for entry, stage in zip(stages, planned):
        if entry["status"]:
            if not final and entry["status"] == "running":  # its steps to come are not "not run" yet
                _still_waiting(entry)
            continue
        if stage["name"] in skip_reasons:
            entry["status"], entry["reason"] = "skipped", skip_reasons[stage["name"]]
        elif stage.get("deploy") and (phases.get("deploy") or {}).get("state") == "skipped":
            entry["status"], entry["reason"] = "skipped", "the test stages failed"
        elif not final:
            entry["status"] = "waiting"
            _still_waiting(entry)
            waits = [n for n in entry["needs"] if not ended.get(n)]
            entry["reason"] = ("waits for " + ", ".join(waits)) if waits else None
            if stage.get("approval") and not waits and status == "waiting":  # at its gate (apiary.core.approvals)
                entry["reason"] = approvals.reason(stage)
        else:
            entry["status"] = "not_run"
            entry["reason"] = _not_run_reason(stage["name"], status, job.get("error"), phases, blocked)

    ran_nothing = None
    if status == "passed" and not any(c.get("stage") and not c.get("hook") for c in staged) \
            and not any(e.get("child") and e["status"] == "passed" for e in stages):  # ran in its child jobs
        ran_nothing = _why_nothing_ran(pipeline, job.get("type") or "TEST")
    return {"status": status, "error": job.get("error"), "stages": stages,
            "failure": _failure(job, status, commands, command_status, done_seq, stages),
            "ran_nothing": ran_nothing}


def _still_waiting(entry: dict[str, Any]) -> None:
    """A stage that may still run its steps: those it has not started wait (they are not "not run")."""
    for c in entry["commands"]:
        if c["status"] == "not_run":
            c["status"] = "waiting"


def _why_nothing_ran(pipeline: Mapping[str, Any], job_type: str) -> str:
    """Why a job of `job_type` on `pipeline` had no stage to run (it passed without one)."""
    stages = pipeline.get("stages") or []
    plugins = [str(p.get("name") or p.get("pip") or "?") if isinstance(p, Mapping) else str(p)
               for p in pipeline.get("plugins") or []]
    deploys = sum(1 for s in stages if s.get("deploy"))
    if not stages:
        why = "the pipeline has no stages of its own"
    elif job_type == "DEPLOY" and not deploys:
        why = "the pipeline has no deploy stages for a DEPLOY job"
    elif job_type == "TEST" and deploys == len(stages):
        why = "the pipeline has only deploy stages, which a TEST job does not run"
    else:
        why = "no stage of the pipeline ran"
    if plugins:
        why += f" and its plugins ({', '.join(plugins)}) added none"
    return why


def _skip_reasons(said: list[str], names: list[str]) -> dict[str, str]:
    """Stage -> why the drone skipped it, from its lines "apiary: stage NAME skipped: REASON"."""
    out = {}
    for line in said:
        if not line.startswith(_SKIPPED):
            continue
        for name in names:  # a name may hold spaces: match the names the pipeline has
            head = f"{_SKIPPED}{name} skipped: "
            if line.startswith(head):
                out[name] = line[len(head):].strip()
    return out


def _stage_commands(stage: Mapping[str, Any], ran: list[Mapping[str, Any]], status_of: Any,
                    skips: Mapping[int, str] | None = None) -> list[dict[str, Any]]:
    """The stage's commands as run (hooks too), then its steps that never ran: those a `when:` skipped
    (`skips`: step number from 0 -> why) are ``skipped`` with their ``reason``."""
    skips = skips or {}
    steps = [s for i, s in enumerate(stage.get("steps") or []) if i not in skips]
    out, step_index = [], 0
    for k, c in enumerate(ran):
        ignored = False
        attempt = _attempt(c)
        if not c.get("hook") and (attempt is None or attempt["attempt"] == 1):  # a retry is the same step again
            if step_index < len(steps):
                ignored = bool(steps[step_index].get("ignore_exit_code"))
            step_index += 1
        code = c.get("exitCode")
        then = _attempt(ran[k + 1]) if k + 1 < len(ran) else None
        out.append({"num": c.get("num"), "title": _title(c.get("title"), c.get("command")), "hook": c.get("hook"),
                    "status": status_of(c), "ignored": ignored and code not in (None, 0),
                    "exitCode": code, "signal": signal_name(code), "shell_signal": shell_signal(code),
                    "duration": c.get("duration"), "attempt": attempt,
                    "retried": attempt is not None and then is not None and then["attempt"] == attempt["attempt"] + 1,
                    "flaky": attempt is not None and attempt["attempt"] > 1 and code == 0,
                    "timed_out": bool(c.get("timedOut"))})
    for step in steps[step_index:]:
        out.append({"num": None, "title": _title(step.get("title"), step.get("run")),
                    "hook": None, "status": "not_run", "ignored": False, "exitCode": None, "signal": None,
                    "shell_signal": None, "duration": None})
    for i, why in sorted(skips.items()):
        step = (stage.get("steps") or [])[i] if i < len(stage.get("steps") or []) else {}
        out.append({"num": None, "title": _title(step.get("title"), step.get("run")), "hook": None,
                    "status": "skipped", "reason": why, "ignored": False, "exitCode": None, "signal": None,
                    "shell_signal": None, "duration": None})
    return out


def _retried(commands: Sequence[Mapping[str, Any]]) -> set[int]:
    """The numbers of the commands that a later attempt of the same step followed (retry:), wherever
    they ran (a stage, a phase, a hook): the next command of their phase and stage is attempt + 1.
    Such an attempt is not the job's failure: the last attempt decides."""
    by_place: dict[tuple[Any, Any, Any], list[Mapping[str, Any]]] = {}
    for c in sorted(commands, key=lambda c: int(c.get("num") or 0)):
        by_place.setdefault((c.get("phase"), c.get("stage"), c.get("hook")), []).append(c)
    out = set()
    for ran in by_place.values():
        for c, then in itertools.pairwise(ran):
            now, nxt = _attempt(c), _attempt(then)
            if now is not None and nxt is not None and nxt["attempt"] == now["attempt"] + 1:
                out.add(c["num"])
    return out


def _attempt(c: Mapping[str, Any]) -> dict[str, int] | None:
    """A command's {attempt, of} when its step has a retry (apiary.core.retry), else None."""
    value = c.get("retry")
    return {"attempt": int(value["attempt"]), "of": int(value["of"])} if isinstance(value, Mapping) and isinstance(
        value.get("attempt"), int) and isinstance(value.get("of"), int) else None


def _ran_status(stage: Mapping[str, Any], shown: list[dict[str, Any]], final: bool, status: str) -> str:
    steps = [c for c in shown if not c["hook"] and not c.get("retried")]  # an attempt retried does not decide
    if any(c["status"] == "running" for c in shown):
        return "running"
    if any(c["status"] == "cancelled" for c in steps):
        return "cancelled"
    if any(c["status"] == "failed" and not c["ignored"] for c in steps):
        return "failed"
    if any(c["status"] == "not_run" for c in steps) or not steps:
        if not final:
            return "running"  # between two of its steps, or in a hook
        return "cancelled" if status == "cancelled" else "failed"
    return "passed"


def _not_run_reason(name: str, status: str, error: str | None, phases: Mapping[str, Any],
                    blocked: set[str]) -> str:
    for phase in ("environment", "prepare"):
        if (phases.get(phase) or {}).get("state") == "failed":
            return f"the {phase} phase failed"
    if name in blocked:  # could not have run, cancel or not
        return "a stage it needs failed"
    if status == "cancelled":
        return "the job was cancelled"
    if error and error != status:
        return f"the job ended first: {error}"
    return "the job ended first"


def _failure(job: Mapping[str, Any], status: str, commands: list[Mapping[str, Any]], status_of: Any,
             done_seq: Mapping[int, int], stages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The command that failed the job, first to end; None unless the job failed or errored, or was cancelled
    after a command had failed (a cancel does not hide the failure before it)."""
    if status not in ("failed", "errored", "cancelled"):
        return None
    ignored = {c["num"] for s in stages for c in s["commands"] if c["ignored"]} | _retried(commands)
    failed = [c for c in commands if not c.get("hook") and c.get("phase") != "cleanup"
              and c.get("num") not in ignored and status_of(c) == "failed"]
    error = job.get("error") if job.get("error") != status else None
    if not failed and status == "cancelled":
        return None
    if not failed:
        return {"stage": None, "num": None, "title": None, "command": None, "exitCode": None, "signal": None,
                "shell_signal": None, "last_lines": [], "anchor": None, "error": error}

    def ended(c: Mapping[str, Any]) -> tuple[float, float]:
        end = (c.get("started") or 0) + (c.get("duration") or 0)
        return (done_seq.get(c["num"], float("inf")), end)

    first, *others = sorted(failed, key=ended)
    code = first.get("exitCode")
    # The other commands that failed too (parallel stages): named, so that none is found only in the graph.
    also = [{"stage": c.get("stage") or c.get("phase"), "num": c["num"],
             "title": _title(c.get("title"), c.get("command")), "anchor": f"cmd-{c['num']}"} for c in others]
    return {"stage": first.get("stage") or first.get("phase"), "num": first["num"],
            "title": _title(first.get("title"), first.get("command")), "command": first.get("command"),
            "exitCode": code, "signal": signal_name(code), "shell_signal": shell_signal(code), "last_lines": [],
            "anchor": f"cmd-{first['num']}", "error": error, "also": also}
