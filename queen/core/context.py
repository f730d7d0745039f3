"""A job's context, as the queen knows it: who or what triggered it, the commit it runs, and web links.

Pure, no I/O; the queen's job factory (apiary.queen.jobs) and the pages call these.

`triggered_by` decides who asked from what the queen itself knows (the request's signed-in identity,
the plugin calling, whether that call came in through a webhook), never from a client's word: an API
client's ``trigger.author`` is only a label, kept as given. The record, ``job.triggered_by``::

    {"kind": "user" | "token" | "setup" | "rerun" | "webhook" | "schedule" | "chain" | "plugin" | "bisect",
     "name": the user (user, token, rerun), the plugin or forge (webhook, plugin), the schedule's
             spec (schedule), the upstream job's id (chain); "" when there is none (setup),
     "job": the repeated job's id (rerun only), "via": "session" | "token" (rerun only),
     "bisect": the bisect's id (bisect only: its name is "#N", apiary.queen.bisects)}

`commit_facts` picks what the job records of its commit (``job.commit``: message, author, time and
where they came from) from a forge's payload (a push's or a tag's trigger) or from the commit object
the queen read (apiary.queen.gitread.read_commit); when the queen knew no commit (a pipeline stored on
the queen, a branch only), `checkout_facts` takes the subject and author the drone's checkout printed
(``job:checkout``). `repo_web_url`, `commit_url` and `branch_url` make
web links of a repository's clone URL, "" when it names no web page one can tell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypedDict
from urllib.parse import quote, urlsplit

from .models import Trigger

MESSAGE_MAX = 4096  # characters of a commit message kept on the job
NAME_MAX = 256  # characters of an author's name or email


class TriggeredBy(TypedDict, total=False):
    kind: str
    name: str
    job: str  # rerun: the job it repeats
    via: str  # rerun: session or token
    bisect: str  # bisect: the bisect's id


class CommitAuthor(TypedDict, total=False):
    name: str
    email: str


class CommitFacts(TypedDict, total=False):
    """``job.commit``: what the job page shows of the commit (its id is ``job.ref.id``)."""

    message: str  # whole, at most MESSAGE_MAX characters
    author: CommitAuthor
    at: float  # the author's time, seconds since 1970; absent when unknown
    source: str  # webhook (a forge's payload), repository (the commit object) or checkout (the drone's)


# -- who triggered it ------------------------------------------------------------------------

def triggered_by(identity: Mapping[str, Any] | None = None, *, plugin: str | None = None,
                 trigger: Mapping[str, Any] | None = None, webhook: bool = False,
                 rerun_of: str | None = None) -> TriggeredBy:
    """Who or what asked for a job (the module's docstring has the shape).

    `identity`: the request's ({"user", "via": session or token}), None when nobody signed in (a queen
    in setup, open on loopback). `plugin`: the queen plugin that called ``ctx.trigger`` (then
    `identity` is not used); `webhook`: that call came in through ``POST /hooks/<plugin>/...``;
    `trigger`: the plugin's recorded trigger (its type and source say schedule or chain).
    `rerun_of`: the job a user's re-run repeats.
    """
    if plugin is not None:
        trigger = trigger or {}
        source = trigger.get("source") or {}
        if webhook:
            return {"kind": "webhook", "name": plugin}
        if trigger.get("type") == "schedule" and source.get("schedule"):
            return {"kind": "schedule", "name": str(source["schedule"])}
        if trigger.get("type") == "after" and source.get("job"):
            return {"kind": "chain", "name": str(source["job"])}
        return {"kind": "plugin", "name": plugin}
    user = str((identity or {}).get("user") or "")
    via = str((identity or {}).get("via") or "")
    if rerun_of is not None:
        by: TriggeredBy = {"kind": "rerun", "name": user, "job": rerun_of}
        if via:
            by["via"] = via
        return by
    if not user:
        return {"kind": "setup", "name": ""}
    return {"kind": "token" if via == "token" else "user", "name": user}


def describe_trigger(by: Mapping[str, Any] | None) -> str:
    """One line for people: "ada", "ada (API token)", "webhook github", "schedule every 1h"..."""
    if not by:
        return ""
    kind, name = str(by.get("kind") or ""), str(by.get("name") or "")
    if kind == "user":
        return name
    if kind == "token":
        return f"{name} (API token)"
    if kind == "rerun":
        return f"{name or 'nobody signed in'} (re-run)"
    if kind == "setup":
        return "nobody signed in (queen in setup)"
    if kind == "chain":
        return "another job (after)"
    return f"{kind} {name}".strip()


# -- the commit -------------------------------------------------------------------------------

def commit_facts(trigger: Trigger | Mapping[str, Any], read: Mapping[str, Any] | None = None) -> CommitFacts | None:
    """What the job records of its commit: a forge's push or tag payload (its trigger's message and
    author are the head commit's), else `read` (the commit object: message, author, email, at), else None.

    A pull request's trigger holds its title, not a commit's message: the commit object is used.
    """
    source = trigger.get("source") or {}
    if source.get("type") == "plugin" and trigger.get("type") in ("push", "tag") and trigger.get("message"):
        author = trigger.get("author") or {}
        facts: CommitFacts = {"message": str(trigger["message"])[:MESSAGE_MAX],
                              "author": _author(author.get("name") or author.get("username")
                                                or author.get("login") or "", author.get("email") or ""),
                              "source": "webhook"}
        if isinstance(trigger.get("timestamp"), (int, float)):
            facts["at"] = float(trigger["timestamp"])
        return facts
    if read:
        facts = {"message": str(read.get("message") or "")[:MESSAGE_MAX],
                 "author": _author(read.get("author") or "", read.get("email") or ""), "source": "repository"}
        if isinstance(read.get("at"), (int, float)):
            facts["at"] = float(read["at"])
        return facts
    return None


def checkout_facts(body: Mapping[str, Any]) -> CommitFacts | None:
    """What a drone's ``job:checkout`` says of the commit (its subject and author, as the checkout
    printed them), or None when it says nothing."""
    message = body.get("message")
    if not isinstance(message, str):
        return None
    facts: CommitFacts = {"message": message[:MESSAGE_MAX], "author": _author(body.get("author") or "", ""),
                          "source": "checkout"}
    if isinstance(body.get("at"), (int, float)) and not isinstance(body.get("at"), bool):
        facts["at"] = float(body["at"])
    return facts


def _author(name: Any, email: Any) -> CommitAuthor:
    out: CommitAuthor = {"name": str(name)[:NAME_MAX]}
    if email:
        out["email"] = str(email)[:NAME_MAX]
    return out


def parse_commit_object(text: str) -> dict[str, Any] | None:
    """`git cat-file commit SHA`'s text as {"message", "author", "email", "at"}; None if it is not one.

    The headers end at the first empty line; ``author NAME <EMAIL> SECONDS ZONE`` names the author.
    """
    head, sep, message = text.partition("\n\n")
    if not sep and not head.startswith("tree "):
        return None
    for line in head.splitlines():
        if line.startswith("author "):
            m = re.fullmatch(r"author (.*?) <([^>]*)> (\d+) [+-]\d{4}", line)
            if m:
                return {"message": message.rstrip("\n"), "author": m[1], "email": m[2], "at": float(m[3])}
            return {"message": message.rstrip("\n"), "author": line[7:], "email": "", "at": None}
    return {"message": message.rstrip("\n"), "author": "", "email": "", "at": None}


# -- links --------------------------------------------------------------------------------------

_SCP = re.compile(r"^(?:[A-Za-z0-9._-]+@)?([A-Za-z0-9.-]+):(?!//)([^\s]+)$")  # git@host:owner/repo.git
_HOST = re.compile(r"^[A-Za-z0-9.-]+$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")


def repo_web_url(url: str | None) -> str:
    """The web page of the repository cloned from `url` (https://host/owner/repo), or "".

    For GitHub-, GitLab- and Gitea-style addresses: https://, http://, ssh://[user@]host[:port]/ and
    [user@]host:owner/repo, with or without ``.git`` (credentials and ports are dropped; an http URL's
    page is http). A local path, file://, or a path of fewer than two parts names no page: "".
    """
    if not url:
        return ""
    scheme = "https"
    m = _SCP.match(url)
    if m and "/" not in m[1]:
        host, path = m[1], m[2]
    else:
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
        except ValueError:
            return ""
        if parts.scheme not in ("https", "http", "ssh", "git+ssh", "git"):
            return ""
        if parts.scheme == "http":
            scheme = "http"
            if parts.port not in (None, 80):
                host = f"{host}:{parts.port}"
        elif parts.scheme == "https" and parts.port not in (None, 443):
            host = f"{host}:{parts.port}"
        path = parts.path
    path = path.strip("/").removesuffix(".git").strip("/")
    segments = path.split("/")
    if not host or not _HOST.match(host.split(":")[0]) or len(segments) < 2:
        return ""
    if not all(_SEGMENT.match(s) for s in segments):
        return ""
    return f"{scheme}://{host.lower()}/{path}"


def _gitlab(web: str, provider: str | None) -> bool:
    return provider == "gitlab" or "://gitlab." in web


def commit_url(url: str | None, sha: str | None, provider: str | None = None) -> str:
    """The commit's web page (https://host/owner/repo/commit/SHA; GitLab's /-/commit/SHA), or ""."""
    web = repo_web_url(url)
    if not web or not sha or not re.fullmatch(r"[0-9a-fA-F]{4,64}", sha):
        return ""
    return f"{web}/-/commit/{sha}" if _gitlab(web, provider) else f"{web}/commit/{sha}"


def branch_url(url: str | None, branch: str | None, provider: str | None = None) -> str:
    """The branch's web page on GitHub (/tree/B) or GitLab (/-/tree/B), or "" (other forges: unknown)."""
    web = repo_web_url(url)
    if not web or not branch:
        return ""
    if _gitlab(web, provider):
        return f"{web}/-/tree/{quote(branch)}"
    if provider == "github" or "://github.com/" in web:
        return f"{web}/tree/{quote(branch)}"
    return ""


def links(job: Mapping[str, Any]) -> dict[str, str]:
    """A job's web links, those known: commit, branch, pull_request (the forge's page of it)."""
    ref = job.get("ref") or {}
    trigger = job.get("trigger") or {}
    url, provider = job.get("repo_url"), job.get("provider")
    out = {"commit": commit_url(url, ref.get("id"), provider), "branch": branch_url(url, ref.get("branch"), provider)}
    if trigger.get("type") in ("pull_request", "merge_request") and trigger.get("url"):
        out["pull_request"] = str(trigger["url"])
    return {k: v for k, v in out.items() if v}


def view(job: Mapping[str, Any]) -> dict[str, Any]:
    """What the pages show of a stored job's context (added to apiary.queen.pages.job_view):

    ``by`` (its triggered_by, or None for a job from before it was recorded) and ``by_text``;
    ``author``: the person who triggered it when the queen knows one (else the page keeps the
    trigger's own label); ``commit_info`` (its CommitFacts, or {}), ``commit_subject`` (the message's
    first line); ``links`` (commit, branch, pull_request: those known).
    """
    by = job.get("triggered_by") or None
    facts = job.get("commit") if isinstance(job.get("commit"), Mapping) else {}
    out: dict[str, Any] = {"by": by, "by_text": describe_trigger(by), "commit_info": facts,
                           "commit_subject": str(facts.get("message") or "").split("\n", 1)[0],
                           "links": links(job)}
    if by and by.get("kind") in ("user", "token", "rerun") and by.get("name"):
        out["author"] = by["name"]
    return out
