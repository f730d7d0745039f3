"""Concurrency groups and auto-cancel: which jobs may run together, which a new job supersedes. Pure, no I/O.

``concurrency: {group: "deploy-{{ branch }}", cancel_in_progress: true}`` (top level of a pipeline):
at most one job of a group is dispatched, running or waiting for its child jobs at a time (`holds_group`);
the others wait in the queue, oldest first (`may_dispatch`). The group is a template: ``{{ branch }}``, ``{{ repo }}``, ``{{ type }}``,
``{{ event }}`` and ``{{ parameters.NAME }}`` (a declared parameter) are replaced when the job is
made (`group_name`). A group belongs to its repository: a job is held by its repository's group of that
name only (`group_key`), since a pipeline names any group it likes and another repository's, or a
fork's, must not keep this one's deploy waiting. A fork's pull or merge request job is in a group of
its own request's: it neither holds nor waits for the repository's jobs. With ``cancel_in_progress``
a new job cancels the older ones of its group (so of its repository, a fork's of its own request)
still queued or running (`superseded`).

Auto-cancel (a repository setting, ``auto_cancel``, on unless set to false): a new job of a push
to a branch cancels the older jobs of pushes to that branch still queued or running; a new job of
a pull or merge request those of the same request. Never for tags, manual triggers, schedules or
re-runs, and never a deploying job (DEPLOY, TEST_DEPLOY) already on a drone: a deploy is not cut off
halfway by a push (`superseded`); ``cancel_in_progress``, asked for by name, cancels those too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .conditions import ConditionError
from .fields import kind_of

KEYS = ("group", "cancel_in_progress")
MAX_GROUP = 200  # characters, once filled in
_PLACE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")
_PLAIN = ("branch", "repo", "type", "event")
_REQUEST_KINDS = ("pull_request", "merge_request")


def compile_concurrency(value: Any, parameters: Sequence[str] | None = None,
                        at: str = "concurrency") -> dict[str, Any] | None:
    """The compiled ``concurrency`` ({"group": template, "cancel_in_progress": bool}) or None.
    A string is the group alone. ConditionError names the path."""
    if value is None:
        return None
    if isinstance(value, str):
        value = {"group": value}
    if not isinstance(value, dict):
        raise ConditionError(at, f"must be a mapping with 'group' (and 'cancel_in_progress'), got {kind_of(value)}")
    for key in value:
        if key not in KEYS:
            raise ConditionError(f"{at}.{key}", f"unknown key {key!r} (allowed: {', '.join(KEYS)})")
    group = value.get("group")
    if not isinstance(group, str) or not group.strip() or len(group) > MAX_GROUP or "\n" in group:
        raise ConditionError(f"{at}.group", f"must be a one-line string of 1 to {MAX_GROUP} characters, "
                             f"got {kind_of(group)}")
    for match in _PLACE.finditer(group):
        name = match.group(1)
        if name in _PLAIN:
            continue
        param = name.removeprefix("parameters.")
        if not name.startswith("parameters.") or (parameters is not None and param not in parameters):
            raise ConditionError(f"{at}.group", f"unknown {{{{ {name} }}}}: use {{{{ branch }}}}, {{{{ repo }}}}, "
                                 "{{ type }}, {{ event }} or {{ parameters.NAME }} for a declared parameter")
    rest = _PLACE.sub("", group)
    if "{{" in rest or "}}" in rest:
        raise ConditionError(f"{at}.group", "a '{{' without its '}}' (write {{ branch }})")
    cancel = value.get("cancel_in_progress")
    if cancel is not None and not isinstance(cancel, bool):
        raise ConditionError(f"{at}.cancel_in_progress", f"must be true or false, got {kind_of(cancel)}")
    return {"group": group, "cancel_in_progress": bool(cancel)}


def group_name(template: str, *, branch: str, repo: str, job_type: str, event: str,
               parameters: Mapping[str, str]) -> str:
    """The group a job is in: `template` filled in (an unset parameter is ''), cut to MAX_GROUP."""
    values = {"branch": branch, "repo": repo, "type": job_type, "event": event}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(values[name] if name in values else parameters.get(name.removeprefix("parameters."), ""))

    return _PLACE.sub(fill, template)[:MAX_GROUP]


def group_key(job: Mapping[str, Any]) -> str | None:
    """What a job's concurrency group is held by (stored as ``concurrency.key``; None: it is in no group):
    its repository's id and the group, ``"app/deploy-main"``; a fork's request job's, its request's own,
    ``"app\0refs/pull/9/head\0deploy-main"`` (its fetch ref; without one, the job alone). Unambiguous:
    a repository's id has neither "/" nor NUL, a git ref no NUL. `job` needs ``repo``, ``kind``,
    ``ref`` and ``concurrency.group`` (``_id`` for a fork's job without a fetch ref)."""
    group = (job.get("concurrency") or {}).get("group")
    if group is None:
        return None
    repo = str(job.get("repo"))
    if job.get("kind") == "fork":
        # A fork's pipeline names any group: the base repository's deploy must not wait on it, nor it on that.
        own = (job.get("ref") or {}).get("fetch") or f"job {job.get('_id')}"
        return f"{repo}\0{own}\0{group}"
    return f"{repo}/{group}"


def holds_group(job: Mapping[str, Any]) -> bool:
    """Whether `job` (its ``status`` and ``pipeline``) holds its concurrency group now: it is on a drone, or it
    waits for its child jobs (spread cells, test shards: apiary.core.spread), since its deploy is under way
    in them and its continuation is still to run. A job waiting at an approval gate holds none (nobody may
    decide for days; a pipeline has gates or child jobs, never both). Its children are in no group."""
    status = job.get("status")
    if status in ("dispatched", "running"):
        return True
    stages = (job.get("pipeline") or {}).get("stages") if isinstance(job.get("pipeline"), Mapping) else None
    return status == "waiting" and isinstance(stages, list) and any(
        isinstance(s, Mapping) and s.get("remote") for s in stages)


def may_dispatch(key: str | None, busy: Iterable[str]) -> bool:
    """Whether a queued job whose group is held by `key` (`group_key`; None: in no group) may go to a
    drone while the group keys `busy` are held (`holds_group`)."""
    return key is None or key not in set(busy)


def supersede_key(job: Mapping[str, Any]) -> tuple[str, ...] | None:
    """What auto-cancel compares: a push's (repo, "push", branch), a pull or merge request's (repo,
    "request", the ref it fetches); None for every other job (tags, manual, schedules, re-runs)."""
    trigger = job.get("trigger") or {}
    ref = job.get("ref") or {}
    if job.get("kind") == "push" and trigger.get("type") == "push" and ref.get("branch"):
        return (str(job.get("repo")), "push", str(ref["branch"]))
    if job.get("kind") in ("pull_request", "fork") and trigger.get("type") in _REQUEST_KINDS and ref.get("fetch"):
        return (str(job.get("repo")), "request", str(ref["fetch"]))
    return None


def _deploying(job: Mapping[str, Any]) -> bool:
    """A job that may be deploying now: of a deploying type, and on a drone."""
    return job.get("type") in ("DEPLOY", "TEST_DEPLOY") and job.get("status") in ("dispatched", "running")


def superseded(new: Mapping[str, Any], older: Iterable[Mapping[str, Any]], auto_cancel: bool) -> list[str]:
    """The ids of the jobs in `older` (not ended, made before `new`) that `new` supersedes: those of its
    concurrency group when it cancels in progress; with `auto_cancel`, those of the same push branch or
    request (`supersede_key`). In the order given.

    A group is its repository's, a fork's request's its own (`group_key`): its cancel reaches only
    `new`'s repository (a pipeline names any group it likes: another repository's pusher must not
    cancel this one's deploy), and a fork's request only its own earlier jobs (a fork's pipeline naming
    the default branch's deploy group must not cut that deploy off)."""
    group = group_key(new)
    cancels_group = bool((new.get("concurrency") or {}).get("cancel_in_progress"))
    key = supersede_key(new) if auto_cancel else None
    out = []
    for job in older:
        if job.get("_id") == new.get("_id") or str(job.get("_id")) > str(new.get("_id")):
            continue  # itself, or newer (ids are in trigger order)
        if job.get("parent"):
            continue  # a child job goes with its parent, cancelled with it (apiary.core.spread)
        same_group = cancels_group and group is not None and group_key(job) == group
        if same_group or (key is not None and supersede_key(job) == key and not _deploying(job)):
            out.append(str(job["_id"]))
    return out
