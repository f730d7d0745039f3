"""Debug shells in failed jobs (issue 18, item 2): the rules, pure. No I/O.

A repository keeps a failed job's workspace on its drone for a while when its
pipeline says so::

    debug: {keep: true, idle: 15m, total: 60m}

and then a person with the queen's ``debug_role`` (admin by default) may open
a shell there: on the drone, in the job's workspace, with its environment, in
its sandbox. `compile_debug` checks the key when a job is triggered;
`refusal` says why a shell cannot open (None: it may); `expired` says when an
open shell ends (idle: nothing typed and nothing printed for ``idle``
seconds; total: ``total`` seconds since it opened); `kept_until` is when the
drone deletes the kept workspace (``total`` after the job ended, or when the
last shell there ends, whichever is later). `ended` is how a session is
recorded on the job.

Sizes on the wire: a frame of shell output or input holds at most
MAX_CHUNK bytes; a drone has at most WINDOW bytes of a session's output
unacknowledged (the queen acks what its browser has room for), so a shell
that prints without end is slowed, not buffered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import InputError
from .fields import kind_of

DEFAULT_IDLE = 15 * 60.0  # seconds
DEFAULT_TOTAL = 60 * 60.0
MAX_IDLE = 4 * 3600.0  # what a pipeline may ask for at most: a pusher must not keep workspaces for days
MAX_TOTAL = 8 * 3600.0
MAX_CHUNK = 16 * 1024  # bytes of input or output in one message
WINDOW = 256 * 1024  # bytes of output a drone may have in flight for one session
MAX_INPUT = 32 * 1024  # characters a client may send in one message (a paste; the socket takes 64 KiB frames)
MAX_ROWS = 500
MAX_COLS = 1000
DEFAULT_CAP = 1  # shells open at once in one job
ROLES = ("admin", "member")
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# How a session ends, as recorded on the job.
ENDINGS = ("closed", "exited", "idle", "total", "drone gone", "window ended", "refused", "error")
MAX_RECORDED = 100  # sessions kept on a job (the oldest go first)


class DebugError(InputError):
    """A ``debug:`` key that cannot be used: `path` (``debug.idle``) and `problem`."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}", field=path)
        self.path, self.problem = path, problem


def compile_debug(value: Any, duration: Callable[[Any, str], float | None]) -> dict[str, Any] | None:
    """The pipeline's ``debug:`` as {"keep": bool, "idle": s, "total": s}, or None when absent.

    `duration` reads ``90s``/``10m``/seconds (pipeline.parse_duration); it raises naming the path."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DebugError("debug", f"must be a mapping like {{keep: true}}, got {kind_of(value)}")
    for key in value:
        if key not in ("keep", "idle", "total"):
            raise DebugError(f"debug.{key}", "unknown key (allowed: idle, keep, total)")
    keep = value.get("keep", False)
    if not isinstance(keep, bool):
        raise DebugError("debug.keep", f"must be true or false, got {kind_of(keep)}")
    out = {"keep": keep, "idle": DEFAULT_IDLE, "total": DEFAULT_TOTAL}
    for name, top in (("idle", MAX_IDLE), ("total", MAX_TOTAL)):
        seconds = duration(value.get(name), f"debug.{name}")
        if seconds is None:
            continue
        if seconds > top:
            raise DebugError(f"debug.{name}", f"at most {top / 3600:g} h, got {seconds:g} s")
        out[name] = seconds
    if out["idle"] > out["total"]:
        raise DebugError("debug.idle", f"must not be longer than debug.total ({out['total']:g} s)")
    return out


def with_repository(pipeline: dict[str, Any], repo: Mapping[str, Any]) -> None:
    """A job's compiled pipeline, with its repository's ``debug_keep`` setting (an admin's, on the settings page):
    on, it keeps the workspace whatever the pipeline says; the pipeline's idle and total still apply."""
    if repo.get("debug_keep") is True:
        given = pipeline.get("debug") or {}
        pipeline["debug"] = {"keep": True, "idle": given.get("idle", DEFAULT_IDLE),
                             "total": given.get("total", DEFAULT_TOTAL)}


def settings_of(job: Mapping[str, Any]) -> dict[str, Any]:
    """A job's debug settings: its pipeline's, or the defaults with keep off."""
    given = (job.get("pipeline") or {}).get("debug") or {}
    return {"keep": given.get("keep") is True, "idle": float(given.get("idle") or DEFAULT_IDLE),
            "total": float(given.get("total") or DEFAULT_TOTAL)}


def role_allows(role: str | None, needed: str) -> bool:
    """Whether someone with `role` ("admin", "member"; None: not signed in) may open a shell needing `needed`."""
    if role is None:
        return False
    return role == "admin" or (needed == "member" and role == "member")


def kept_until(ended_at: float | None, total: float) -> float | None:
    """When a failed job's kept workspace goes (seconds since 1970), without shells open; None: never kept."""
    return None if ended_at is None else ended_at + total


def refusal(job: Mapping[str, Any], role: str | None, needed: str, open_sessions: int, cap: int,
            drone_connected: bool, now: float) -> str | None:
    """Why `role` may not open a shell in `job` now, as the person is told; None: they may. The queen's
    `GET /jobs/ID/debug` and its open both ask this (the job's recorded shells count: MAX_RECORDED at most).

    Checked in the order a person can act on: who they are, then the job, then the drone, then the cap."""
    if not role_allows(role, needed):
        who = f"a {role}" if role else "someone not signed in"
        return f"a debug shell needs the {needed} role; {who} may not open one"
    status = job.get("status")
    if status != "failed":
        return f"job {job.get('_id')} is {status}: a debug shell opens only in a failed job"
    settings = settings_of(job)
    if not settings["keep"]:
        return ("this job's workspace was not kept: an admin turns on the repository's `debug_keep` setting (the "
                "settings page, or PUT /repos/NAME with all its settings: docs/debug.md), or the pipeline says "
                "`debug: {keep: true}`; then a failed job's workspace stays on its drone for a debug shell")
    until = kept_until(job.get("finished"), settings["total"])
    if until is not None and now > until and open_sessions == 0:
        return f"this job's workspace is no longer kept: it went {_ago(now - until)} ago"
    if not job.get("drone"):
        return "this job ran on no drone"
    if not drone_connected:
        return f"drone {job.get('drone')} is gone (not connected to this queen): its kept workspace is out of reach"
    if open_sessions >= cap:
        return f"{open_sessions} debug shell{'s' if open_sessions != 1 else ''} already open in this job (at most {cap})"
    if len(job.get("debug_sessions") or {}) >= MAX_RECORDED:
        return f"this job has had {MAX_RECORDED} debug shells, the most one job may have"
    return None


def expired(opened: float, last_active: float, now: float, idle: float, total: float) -> str | None:
    """How an open shell ends now ("idle", "total"), or None while it may go on. Seconds (monotonic or not,
    all of the same clock)."""
    if now - opened >= total:
        return "total"
    if now - last_active >= idle:
        return "idle"
    return None


def next_check(opened: float, last_active: float, now: float, idle: float, total: float) -> float:
    """Seconds until `expired` may say otherwise (at least 0.05)."""
    return max(0.05, min(opened + total, last_active + idle) - now)


def size(rows: Any, cols: Any) -> tuple[int, int]:
    """A terminal's (rows, cols) from a client, bounded; raise InputError naming the field."""
    for name, value, top in (("rows", rows, MAX_ROWS), ("cols", cols, MAX_COLS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise InputError(f"{name}: a whole number from 1 to {top}, got {str(value)[:20]!r}", field=name)
    return rows, cols


def record(session: str, user: str, opened: float, drone: str) -> dict[str, Any]:
    """A session as the job keeps it, once it opens."""
    return {"id": session, "user": user, "opened": opened, "drone": drone, "ended": None, "duration": None,
            "how": None}


def ended(entry: Mapping[str, Any], now: float, how: str, detail: str = "") -> dict[str, Any]:
    """The recorded session, ended `how` (one of ENDINGS) at `now`."""
    how = how if how in ENDINGS else "error"
    return {**entry, "ended": now, "duration": round(max(0.0, now - float(entry["opened"])), 3), "how": how,
            **({"detail": detail[:300]} if detail else {})}


def _ago(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
