"""The schedule plugin: jobs on a timetable, per repository and branch.

A repository's config::

    {"timezone": "Europe/Paris",                 # for cron entries; default UTC
     "schedules": [
        {"cron": "*/15 * * * *"},                # 5 fields, or @hourly, @daily…
        {"cron": "0 3 * * 1-5", "branch": "release", "type": "TEST_DEPLOY",
         "parameters": {"TARGET": "staging"}, "timezone": "UTC"},
        {"every": "30s"}]}                       # or 10m, 1h30m, or seconds; at least 1 s

Each entry builds ``branch`` (default: the repository's default_branch) as a
job of ``type`` (TEST, DEPLOY, TEST_DEPLOY; default TEST) with ``parameters``.
The job's trigger has type ``schedule`` and ``source.schedule`` the entry's
spec (``*/15 * * * *`` or ``every 30s``).

Times are kept in memory, per repository and entry: an entry first fires at
its next cron time after the queen (or a settings change) brings it in, an
``every`` entry one interval later. After a stall (a sleeping machine, a
restarted queen) the next time is computed from now: missed fires are not
made up. A fire the queen refuses (a required parameter missing, a branch git
cannot find) is logged; the other entries go on.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from apiary.plugins.api import ConfigProblem, PluginContext, TriggerRefused

config_schema = {
    "schedules": {"type": "list", "items": "dict", "required": True,
                  "help": "entries of {cron or every, branch, type, parameters, timezone}"},
    "timezone": {"type": "str", "default": "UTC", "help": "the time zone of cron entries (e.g. Europe/Paris)"},
}

TICK = 1.0  # longest sleep: settings are read again at least this often
MIN_EVERY = 1.0
JOB_TYPES = ("TEST", "DEPLOY", "TEST_DEPLOY")
ENTRY_KEYS = ("cron", "every", "branch", "type", "parameters", "timezone")
ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
           "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@dataclass(frozen=True)
class Entry:
    """One validated schedule entry; `spec` names it in triggers and logs."""

    spec: str
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    branch: str | None = None
    type: str = "TEST"
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.spec} on {self.branch or 'the default branch'}"

    @property
    def key(self) -> str:
        return json.dumps([self.spec, self.timezone, self.branch, self.type, self.parameters], sort_keys=True)

    def next_after(self, now: float, due: float | None = None) -> float:
        """The next fire time after `now` (epoch seconds); `due` is the time that just fired, if any."""
        if self.every is not None:
            if due is not None and due + self.every > now:
                return due + self.every  # keep the rhythm when on time
            return now + self.every
        assert self.cron is not None
        return next_cron(self.cron, self.timezone, now)


def next_cron(expr: str, timezone: str, after: float) -> float:
    """The first time strictly after `after` (epoch seconds) that the 5-field cron `expr` matches in `timezone`."""
    start = datetime.fromtimestamp(after, ZoneInfo(timezone))
    return next(CronSim(ALIASES.get(expr.strip().lower(), expr), start)).timestamp()


def parse_duration(value: Any) -> float:
    """Seconds from a number or ``"30s"``, ``"10m"``, ``"1h30m"``; ValueError saying why not."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.strip() and (m := _DURATION.match(value.strip())):
        h, mins, s = m.groups()
        seconds = int(h or 0) * 3600 + int(mins or 0) * 60 + float(s or 0)
    else:
        raise ValueError(f"{value!r} is not a duration: give seconds or e.g. '30s', '10m', '1h30m'")
    if seconds < MIN_EVERY:
        raise ValueError(f"must be at least {MIN_EVERY:g} s, got {value!r}")
    return seconds


def parse_entry(item: Any, where: str, timezone: str = "UTC") -> Entry:
    """One entry of ``schedules``, validated; ConfigProblem names the field under `where`."""
    if not isinstance(item, dict):
        raise ConfigProblem(where, "must be a mapping with cron or every")
    for key in item:
        if key not in ENTRY_KEYS:
            raise ConfigProblem(f"{where}.{key}", f"unknown setting (known: {', '.join(ENTRY_KEYS)})")
    tz = item.get("timezone", timezone)
    _check_timezone(tz, f"{where}.timezone")
    cron, every = item.get("cron"), item.get("every")
    if (cron is None) == (every is None):
        raise ConfigProblem(where, "give either cron (e.g. '*/15 * * * *') or every (e.g. '30s')")
    branch = item.get("branch")
    if branch is not None and (not isinstance(branch, str) or not branch.strip()):
        raise ConfigProblem(f"{where}.branch", "must be a branch name")
    job_type = item.get("type", "TEST")
    if job_type not in JOB_TYPES:
        raise ConfigProblem(f"{where}.type", f"must be one of {', '.join(JOB_TYPES)}, got {job_type!r}")
    parameters = check_parameters(item.get("parameters"), f"{where}.parameters")
    common = {"timezone": tz, "branch": branch, "type": job_type, "parameters": parameters}
    if every is not None:
        try:
            seconds = parse_duration(every)
        except ValueError as exc:
            raise ConfigProblem(f"{where}.every", str(exc)) from None
        return Entry(spec=f"every {every}" if isinstance(every, str) else f"every {seconds:g}s", every=seconds,
                     **common)
    if not isinstance(cron, str) or len(ALIASES.get(cron.strip().lower(), cron).split()) != 5:
        raise ConfigProblem(f"{where}.cron", f"not a cron expression: {cron!r} (give 5 fields: minute hour "
                                             "day-of-month month day-of-week, e.g. '*/15 * * * *')")
    try:
        next_cron(cron, tz, time.time())
    except (CronSimError, StopIteration, ValueError) as exc:
        raise ConfigProblem(f"{where}.cron", f"not a cron expression: {cron!r}: {exc}") from None
    return Entry(spec=" ".join(cron.split()), cron=cron, **common)


def check_parameters(value: Any, where: str) -> dict[str, str]:
    """A mapping of parameter names to strings (numbers are turned into strings)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigProblem(where, "must be a mapping of parameter names to values")
    out = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _NAME.match(key):
            raise ConfigProblem(f"{where}.{key}", "not a parameter name (letters, digits, _)")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise ConfigProblem(f"{where}.{key}", "must be a string")
        out[key] = str(val)
    return out


def _check_timezone(name: Any, where: str) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigProblem(where, "must be a time zone name such as UTC or Europe/Paris")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError, ValueError: a malformed name
        raise ConfigProblem(where, f"unknown time zone {name!r} (e.g. UTC, Europe/Paris)") from None


def check_config(config: dict[str, Any]) -> None:
    _check_timezone(config.get("timezone", "UTC"), "timezone")
    if not config["schedules"]:
        raise ConfigProblem("schedules", "give at least one entry")
    for i, item in enumerate(config["schedules"]):
        parse_entry(item, f"schedules[{i}]", config.get("timezone", "UTC"))


def entries_of(config: dict[str, Any]) -> list[Entry]:
    """A repository's entries; ConfigProblem if its saved config no longer validates."""
    tz = config.get("timezone") or "UTC"
    return [parse_entry(item, f"schedules[{i}]", tz) for i, item in enumerate(config.get("schedules") or [])]


class Timetable:
    """The next fire time of each (repository, entry); pure, the clock is passed in."""

    def __init__(self) -> None:
        self.next: dict[tuple[str, str], float] = {}

    def due(self, entries: list[tuple[str, Entry]], now: float) -> list[tuple[str, Entry, float]]:
        """The entries due at `now` (with the time each was due); their next times move past `now`.

        Entries seen for the first time are given their first time; entries
        no longer given are forgotten.
        """
        out, current = [], {}
        for repo, entry in entries:
            key = (repo, entry.key)
            when = self.next.get(key)
            if when is None:
                when = entry.next_after(now)
            elif when <= now:
                out.append((repo, entry, when))
                when = entry.next_after(now, when)
            current[key] = when
        self.next = current
        return out

    def sleep(self, now: float) -> float:
        """How long to sleep: until the next fire time, but at most TICK."""
        soonest = min(self.next.values(), default=now + TICK)
        return max(0.01, min(TICK, soonest - now))


async def background(ctx: PluginContext) -> None:
    """Fire due entries until cancelled; settings are read again at every wake-up (at least once a second).

    A store error ends the task (the queen starts it again); a repository
    whose saved config no longer validates is logged once and left out.
    """
    table = Timetable()
    firing: dict[tuple[str, str], asyncio.Task[None]] = {}
    parsed: dict[tuple[str, str], list[Entry] | str] = {}  # (repository, config) -> entries or the problem
    try:
        while True:
            entries, seen = [], {}
            for repo, config in await ctx.repos():
                key = (repo["_id"], json.dumps(config, sort_keys=True, default=str))
                got = parsed.get(key)
                if got is None:
                    try:
                        got = entries_of(config)
                    except ConfigProblem as exc:
                        ctx.log.warning("repository %s: schedule config ignored: %s", repo["_id"], exc)
                        got = str(exc)
                seen[key] = got
                entries += [(repo["_id"], e) for e in got] if isinstance(got, list) else []
            parsed = seen
            for name, entry, due in table.due(entries, time.time()):
                key = (name, entry.key)
                if key in firing:
                    ctx.log.warning("repository %s: schedule %s skipped: the previous fire is not done",
                                    name, entry.label)
                    continue
                firing[key] = task = asyncio.create_task(_fire(ctx, name, entry, due))
                task.add_done_callback(lambda _t, k=key: firing.pop(k, None))
            await asyncio.sleep(table.sleep(time.time()))
    finally:
        for task in list(firing.values()):
            task.cancel()


async def _fire(ctx: PluginContext, name: str, entry: Entry, due: float) -> None:
    source = {"schedule": entry.spec, "due": due, **({"timezone": entry.timezone} if entry.cron else {})}
    try:
        repo = await ctx.repo(name)
        if repo is None:
            return
        job = await ctx.trigger(repo, branch=entry.branch, job_type=entry.type, parameters=entry.parameters,
                                trigger={"type": "schedule", "message": f"schedule: {entry.spec}",
                                         "author": {"name": "schedule"}}, source=source)
    except TriggerRefused as exc:
        ctx.log.warning("repository %s: schedule %s: job refused: %s", name, entry.label, exc)
        return
    except Exception:
        ctx.log.exception("repository %s: schedule %s: trigger failed", name, entry.label)
        return
    ctx.log.info("repository %s: schedule %s queued job #%s (%s)", name, entry.label, job.get("number"),
                 job["_id"])
