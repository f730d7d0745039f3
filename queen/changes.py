"""What changed for a new job, for ``when: {changed: [...]}`` (apiary.core.conditions): the base commit and
the files that differ between it and the job's commit, read with git in the queen's cache (queen/gitread.py).

The base: for a pull or merge request the head of its base (target) branch — not the merge base: the
cache holds shallow copies, so changes made on the base branch since the request forked count too;
otherwise the commit of the last passed job of the same repository and branch. With neither (the
first job of a branch, a tag, a job whose commit is not known), or when git cannot compare them,
every file counts as changed, and `Changes.why` says so.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from apiary.core.conditions import Changes
from apiary.core.errors import BadRequest, GitError
from apiary.core.models import Job, Repository
from apiary.core.refs import FULL_SHA, PASSED_ENV, display_url
from apiary.queen.gitread import _Git, cache_path, read_at_ref
from apiary.queen.repos import repo_auth
from apiary.queen.store import Store

log = logging.getLogger(__name__)

MAX_FILES = 20_000  # a diff naming more counts as "everything changed"
TIMEOUT = 30.0  # seconds for each git command


async def job_changes(store: Store, git_cache: Path, repo: Repository, job: Job) -> Changes:
    """The base of `job` (made, not yet stored) and the files changed since it."""
    head = (job.get("ref") or {}).get("id") or ""
    url = repo.get("url") or ""
    if not url or not FULL_SHA.fullmatch(head):
        return Changes(None, why="the job's commit is not known before it runs (a pipeline kept on the queen)")
    trigger = job.get("trigger") or {}
    branch = (job.get("ref") or {}).get("branch")
    try:
        auth = repo_auth(repo, await store.secret_values(repo["_id"]))
    except BadRequest as exc:
        return Changes(None, why=str(exc))
    base_job = None  # the passed job whose commit is the base
    try:
        if trigger.get("base_branch") and not branch:
            target = str(trigger["base_branch"])
            base, _ = await read_at_ref(git_cache, url, {"branch": target}, auth, timeout=TIMEOUT)
            since = f"{base[:12]} (the head of {target})"
        elif branch:
            last = await store.last_passed_job(repo["_id"], branch)
            base = str(((last or {}).get("ref") or {}).get("id") or "")
            if not FULL_SHA.fullmatch(base):
                return Changes(None, why=f"no earlier passed job of {branch}")
            since = f"{base[:12]} (job {repo['_id']}#{last['number']})"  # type: ignore[index]
            base_job = str(last["_id"])  # type: ignore[index]
            await read_at_ref(git_cache, url, {"id": base}, auth, timeout=TIMEOUT)  # in the cache from now on
        else:
            return Changes(None, why="the job has no branch to compare with (a tag, or a ref fetched by name)")
        files = await _diff(git_cache, url, base, head)
    except GitError as exc:
        log.warning("job of %s at %s: what changed is not known: %s", repo["_id"], head[:12], exc)
        return Changes(None, why="git could not compare: " + str(exc).splitlines()[0][:200])
    if files is None:
        return Changes(None, base=base, since=since, why=f"more than {MAX_FILES} files changed since {since}",
                       job=base_job)
    return Changes(tuple(files), base=base, since=since, job=base_job)


async def _diff(git_cache: Path, url: str, base: str, head: str) -> list[str] | None:
    """The paths that differ between commits `base` and `head` (both in the cache), None if too many."""
    with tempfile.TemporaryDirectory(prefix="apiary-git-") as private:
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env.update({"HOME": private, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C", "LANG": "C"})
        git = _Git(cache_path(git_cache, url), env, TIMEOUT, f"{base[:12]}..{head[:12]} of {display_url(url)}", [])
        out = (await git.run("diff-tree", "-r", "--name-only", "--no-renames", "--no-commit-id", "-z",
                             base, head)).out
    files = [f for f in out.split("\0") if f]
    return None if len(files) > MAX_FILES else files


def base_doc(changes: Changes) -> dict[str, Any]:
    """What the job records of its base (``changes_base``): {commit, since, why, job (the passed job
    whose commit it is, if one)}."""
    return {"commit": changes.base, "since": changes.since, "why": changes.why,
            **({"job": changes.job} if changes.job else {})}
