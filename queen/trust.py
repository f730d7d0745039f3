"""Which secrets a job gets: by the kind of job, and never the queen's plugins' own credentials. No I/O.

A job's *kind* says how far its code can be trusted (`job_kind`): ``push``,
``tag``, ``manual`` (the trigger button, the API, the CLI, and jobs a queen
plugin starts on its own account, such as ``after``), ``schedule``,
``pull_request`` (from a branch of the same repository) and ``fork`` (a pull or
merge request from another repository, or one whose origin the forge did not
say). A re-run keeps the kind of the job it repeats.

Each repository secret names the kinds that get it (`DEFAULT_KINDS` unless an
admin says otherwise): pushes, tags, manual triggers and schedules. Pull
requests from the same repository get what pushes get when the repository
says ``pull_request_secrets: true``; jobs from forks get only secrets that name
``fork`` explicitly. The secrets a queen plugin uses itself (a webhook's
secret, a forge token for commit statuses: config fields its schema marks
``secret``) stay on the queen whatever they say. The same rule as GitHub
Actions' and GitLab's for forked pull requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

KINDS = ("push", "tag", "manual", "schedule", "pull_request", "fork")
DEFAULT_KINDS = ("push", "tag", "manual", "schedule")
_REQUESTS = ("pull_request", "merge_request")


def job_kind(trigger: Mapping[str, Any]) -> str:
    """The kind of a job from its trigger (``type``, ``fork``, ``source``).

    Only a plugin (a forge's webhook, the schedule) says what happened; what an
    API client writes in ``trigger.type`` is a label, and its job is ``manual``.
    """
    source = trigger.get("source")
    if not isinstance(source, Mapping) or source.get("type") != "plugin":
        return "manual"
    kind = trigger.get("type")
    if kind in _REQUESTS:
        # Only a forge that says so makes a request trusted as coming from the repository itself.
        return "pull_request" if trigger.get("fork") is False else "fork"
    if kind in ("push", "tag", "schedule"):
        return str(kind)
    return "manual"


def secret_kinds(doc: Mapping[str, Any]) -> tuple[str, ...]:
    """The kinds a stored secret is for (secrets stored before kinds existed: the default)."""
    kinds = doc.get("kinds")
    return tuple(kinds) if isinstance(kinds, list) else DEFAULT_KINDS


def given_secrets(kind: str, secrets: Iterable[Mapping[str, Any]], repo: Mapping[str, Any],
                  queen_only: Iterable[str] = ()) -> list[str]:
    """The names of the secrets a job of `kind` gets, sorted.

    `secrets`: the repository's secrets as stored (``name``, ``kinds``);
    `queen_only`: names the queen's plugins use themselves, never given.
    """
    kept_back = set(queen_only)
    as_kind = {kind}
    if kind == "pull_request" and repo.get("pull_request_secrets"):
        as_kind.add("push")
    return sorted(s["name"] for s in secrets
                  if s["name"] not in kept_back and as_kind & set(secret_kinds(s)))
