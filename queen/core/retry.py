"""Step retry (issue 17): a step's ``retry:`` compiled, and whether an attempt's end calls for another. Pure.

Written in `.apiary.yml` as ``retry: 3`` (three attempts, on any failure or a
timeout) or ``retry: {attempts: 3, when: [exit 1, timeout]}``. Compiled::

    {"attempts": 2..10, "when": ["exit 1", "exit any", "timeout", ...]}

``exit N`` (N 1..255) retries an attempt that exited N, ``exit any`` (also
written ``failure``) any that did not exit 0 (killed by a signal too),
``timeout`` one that the step's own ``timeout:`` stopped (`TIMED_OUT`). The
job's timeout or a cancel never leads to another attempt: they stop the job.
``attempts: 1`` compiles to no retry at all. The drone (apiary.drone.executor)
runs each attempt as a command of its own, numbered on, and asks `again`.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import InputError

MAX_ATTEMPTS = 10
# The exit code a step stopped by its own `timeout:` ends with (as GNU timeout's); job:cmd:done says timedOut.
TIMED_OUT = 124
DEFAULT_WHEN = ["exit any", "timeout"]


class TimedOut(int):
    """TIMED_OUT as the drone's step runner returns it for a step its own timeout stopped: told apart from a
    command that exits 124 by itself (``isinstance(code, TimedOut)``)."""
_EXIT = re.compile(r"^exit\s+(\d{1,3}|any)$")


class RetryError(InputError):
    """A `retry:` that does not validate; `path` is the field (``stages[0].steps[1].retry.when[0]``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}", field=path)
        self.path, self.problem = path, problem


def compile_retry(value: Any, at: str) -> dict[str, Any] | None:
    """`retry:` as written (None: absent) -> its compiled form, or None when it allows one attempt only."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"attempts": value}
    if not isinstance(value, dict):
        raise RetryError(at, "must be a number of attempts (retry: 3) or a mapping such as "
                             "{attempts: 3, when: [exit 1, timeout]}")
    for key in value:
        if key not in ("attempts", "when"):
            raise RetryError(f"{at}.{key}", f"unknown key {key!r} (allowed: attempts, when)")
    attempts = value.get("attempts")
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
        raise RetryError(f"{at}.attempts", f"must be a whole number from 1 to {MAX_ATTEMPTS}, got {attempts!r}")
    when = value.get("when", DEFAULT_WHEN)
    if isinstance(when, str):
        when = [when]
    if not isinstance(when, list) or not when:
        raise RetryError(f"{at}.when", "must be a non-empty list of: exit N, exit any (or failure), timeout")
    out: list[str] = []
    for i, item in enumerate(when):
        kind = _kind(item, f"{at}.when[{i}]")
        if kind not in out:
            out.append(kind)
    if attempts == 1:
        return None
    return {"attempts": attempts, "when": out}


def _kind(item: Any, at: str) -> str:
    text = " ".join(str(item).split()).lower() if isinstance(item, str) else None
    if text in ("failure", "exit any"):
        return "exit any"
    if text == "timeout":
        return "timeout"
    match = _EXIT.match(text or "")
    if match and match.group(1) != "any" and 1 <= int(match.group(1)) <= 255:
        return f"exit {int(match.group(1))}"
    raise RetryError(at, f"{item!r} is not a reason to retry: write exit N (1 to 255), exit any (or failure), "
                         "or timeout")


def attempts(rule: dict[str, Any] | None) -> int:
    """How many attempts a step with `rule` may take (1 without a retry)."""
    return int(rule["attempts"]) if rule else 1


def again(rule: dict[str, Any] | None, attempt: int, code: int, timed_out: bool) -> bool:
    """Whether attempt `attempt` (from 1) of a step, ended with exit `code` (negative: a signal; `timed_out`:
    its own timeout stopped it), is followed by another."""
    if not rule or attempt >= attempts(rule) or (code == 0 and not timed_out):
        return False
    when = rule.get("when") or DEFAULT_WHEN
    if timed_out:
        return "timeout" in when
    return "exit any" in when or f"exit {code}" in when


def why(code: int, timed_out: bool, timeout: float | None = None) -> str:
    """An attempt's end in words, for the line the drone writes before the next one."""
    if timed_out:
        return f"timed out after {timeout:g} s" if timeout else "timed out"
    return f"killed by signal {-code}" if code < 0 else f"exited {code}"


def retry_attempt(value: Any) -> dict[str, int] | None:
    """A ``job:cmd:start``'s ``retry`` as the queen keeps it: {attempt, of} (1 <= attempt <= of <= MAX_ATTEMPTS),
    else None (a drone's message is not trusted to be well formed)."""
    if not isinstance(value, dict):
        return None
    attempt, of = value.get("attempt"), value.get("of")
    if any(isinstance(n, bool) or not isinstance(n, int) for n in (attempt, of)):
        return None
    return {"attempt": attempt, "of": of} if 1 <= attempt <= of <= MAX_ATTEMPTS else None
