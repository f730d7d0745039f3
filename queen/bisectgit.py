"""Reading a repository's history for a bisect, on the queen: the commits between good and bad, and the
message and author of the commits a bisect tried.

The queen's trigger-time cache (queen/gitread.py, ``data_dir/git``) holds shallow copies of single
commits; a bisect needs the history behind the bad commit, so it keeps its own bare copies under
``data_dir/bisect-git`` (one per URL, named by a hash), whether the repository is a path on the queen's
machine or a remote URL: git reads a local path through the same upload-pack a remote uses, and the
repository's own configuration (hooks, fsmonitor) is never run. The fetch is bounded: at most
``MAX_COMMITS + 2`` commits deep behind the bad commit (``--depth``), no tags, no submodules, and
FETCH_TIMEOUT seconds; a repository that cannot be read in that time is a clear error, nothing else.

Git runs as apiary.queen.gitread runs it (no shell, no prompts, no system or user configuration,
credentials in the environment only, git's words masked). Errors: BadRequest naming ``good``, ``bad``
or ``branch`` for what the user gave wrong (a short sha that names several commits, a branch the
repository does not have or the bad commit is not on); GitError (said as is) when git cannot read the repository.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from apiary.core.bisect import MAX_COMMITS, commit_line
from apiary.core.context import MESSAGE_MAX, NAME_MAX
from apiary.core.errors import BadRequest, GitError
from apiary.core.refs import FULL_SHA, PASSED_ENV, check_url, display_url, git_env, secrets_of, ssh_key_text
from apiary.queen.gitread import _Git, _lock, cache_path
from apiary.shared.private import write_private

log = logging.getLogger(__name__)

FETCH_TIMEOUT = 300.0  # seconds for the fetch of the history behind the bad commit
READ_TIMEOUT = 60.0  # seconds for each read in the copy
SHA_LIKE = 4, 64  # a commit as given: 4 to 64 hex digits


@contextlib.asynccontextmanager
async def _git(cache_dir: Path, url: str, auth: Mapping[str, Any] | None, what: str,
               timeout: float) -> AsyncIterator[_Git]:
    """Git in the bisect copy of `url`, with `auth` (the repository's credentials), under its lock."""
    repo = cache_path(cache_dir, url)
    cache_dir.mkdir(parents=True, exist_ok=True)
    async with _lock(repo):
        with tempfile.TemporaryDirectory(prefix="apiary-bisect-") as private:
            home = Path(private) / "home"
            home.mkdir(mode=0o700)
            env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
            env.update({"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C", "LANG": "C"})
            key = ssh_key_text(dict(auth) if auth else None)
            key_file = write_private(Path(private) / "keys", key) if key is not None else None
            env.update(git_env(url, dict(auth) if auth else None, key_file, isolated=True))
            git = _Git(repo, env, timeout, what, secrets_of(url, dict(auth) if auth else None))
            if not (repo / "HEAD").exists():
                await git.run("init", "--bare", "--quiet", str(repo), cwd=cache_dir)
            yield git


def check_sha(value: Any, name: str) -> str:
    """A request's ``good`` or ``bad``: 4 to 64 hex digits (a commit, short or whole), lower case."""
    if not isinstance(value, str) or not SHA_LIKE[0] <= len(value) <= SHA_LIKE[1] \
            or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise BadRequest(f"{name}: a commit sha is required (4 to 64 hex digits)", field=name)
    return value.lower()


AMBIGUOUS_SHOWN = 5  # commits an ambiguous short sha's error names


async def _resolve(git: _Git, sha: str, name: str) -> str | None:
    """The whole sha of the commit `sha` names (None: none here); BadRequest naming `name` when a short
    sha names several commits (git would pick none), with a few of them."""
    found = await git.run("rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}", check=False)
    if found.code == 0:
        return found.out.strip()
    if FULL_SHA.fullmatch(sha):
        return None
    listed = (await git.run("rev-parse", f"--disambiguate={sha}", check=False)).out.split()
    commits = []
    for candidate in listed[:50]:
        kind = await git.run("cat-file", "-t", candidate, check=False)
        if kind.out.strip() == "commit":
            commits.append(candidate)
    if len(commits) < 2:
        return None
    shown = (await git.run("show", "--no-patch", "--no-walk=unsorted", "--format=%h %s",
                           *commits[:AMBIGUOUS_SHOWN], check=False)).out.splitlines()
    more = f", and {len(commits) - AMBIGUOUS_SHOWN} more" if len(commits) > AMBIGUOUS_SHOWN else ""
    raise BadRequest(f"{name}: {sha} is ambiguous: it starts {len(commits)} commits ("
                     + "; ".join(line[:80] for line in shown) + f"{more}); give more of it", field=name)


async def _branch_tip(git: _Git, url: str, branch: str) -> str:
    """The commit `branch` is at in the repository; BadRequest naming ``branch`` when it has none."""
    listed = (await git.run("ls-remote", "--heads", "--", url, f"refs/heads/{branch}")).out.split()
    if not listed or not FULL_SHA.fullmatch(listed[0]):
        raise BadRequest(f"branch: no branch {branch!r} in {display_url(url)}", field="branch")
    return listed[0]


async def read_line(cache_dir: Path, url: str, auth: Mapping[str, Any] | None, branch: str, good: str, bad: str,
                    limit: int = MAX_COMMITS, *, good_among: Sequence[str] = ()) -> tuple[str, str, list[str]]:
    """(good, bad as whole shas, the commits to search oldest first ending with bad: apiary.core.bisect.
    commit_line) of the repository at `url`, fetching what it needs. `branch` is fetched when a commit is
    not there yet (a short sha is found on it). `good_among` (whole shas, best first: the commits of
    passed jobs): good is the first of them that is an ancestor of bad (not bad itself); BadRequest
    naming ``from_job`` when none is."""
    check_url(url)
    depth = str(limit + 2)
    fetch = ["fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--no-write-fetch-head", "--depth", depth,
             "--", url]
    what = f"the history of {display_url(url)}"
    async with _git(cache_dir, url, auth, what, FETCH_TIMEOUT) as git:
        tip = await _branch_tip(git, url, branch)  # the jobs build this branch: it must be there
        whole_bad = await _resolve(git, bad, "bad")
        if whole_bad is None and FULL_SHA.fullmatch(bad):
            with contextlib.suppress(GitError):  # a server that refuses a commit by itself: its branch next
                await git.run(*fetch, bad)
            whole_bad = await _resolve(git, bad, "bad")
        if whole_bad is None or await _resolve(git, tip, "branch") is None:
            try:
                await git.run(*fetch, f"+refs/heads/{branch}:refs/bisect/{branch}")
            except GitError as exc:
                raise GitError(f"cannot read {branch} of {display_url(url)} to find {bad[:12]}: {exc}") from None
            whole_bad = whole_bad or await _resolve(git, bad, "bad")
        if whole_bad is None:
            raise BadRequest(f"bad: no commit {bad[:12]} in {display_url(url)} (looked on branch {branch})",
                             field="bad")
        # The jobs check out the branch at each commit: commits of another branch would be tried in vain.
        if (await git.run("merge-base", "--is-ancestor", whole_bad, tip, check=False)).code != 0:
            raise BadRequest(f"branch: {whole_bad[:12]} is not on branch {branch} (not among its last {limit} "
                             "commits): give the branch the commits are on", field="branch")
        if good_among:
            good = await _first_ancestor(git, good_among, whole_bad, branch)
        whole_good = await _resolve(git, good, "good")
        if whole_good is None and FULL_SHA.fullmatch(good):
            with contextlib.suppress(GitError):
                await git.run("fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--no-write-fetch-head",
                              "--depth=1", "--", url, good)
            whole_good = await _resolve(git, good, "good")
        if whole_good is None:
            raise BadRequest(f"good: no commit {good[:12]} in the {limit} commits before {whole_bad[:12]} "
                             f"(give its whole sha if it is further back)", field="good")
        git.timeout = READ_TIMEOUT
        ancestor = (await git.run("merge-base", "--is-ancestor", whole_good, whole_bad, check=False)).code == 0
        listed = (await git.run("rev-list", "--first-parent", f"--max-count={limit + 1}", whole_bad,
                                f"^{whole_good}")).out.split() if ancestor else []
        if not ancestor and int((await git.run("rev-list", "--first-parent", "--count", whole_bad)).out or 0) > limit:
            raise BadRequest(f"good: {whole_good[:12]} is not among the {limit} commits before {whole_bad[:12]} "
                             "(a bisect covers at most that many)", field="good")
    return whole_good, whole_bad, commit_line(listed, whole_good, whole_bad, ancestor=ancestor, limit=limit)


async def _first_ancestor(git: _Git, among: Sequence[str], bad: str, branch: str) -> str:
    """The first of `among` that is an ancestor of `bad` and not `bad` (a passed job at a later commit,
    or on a line the bad commit is not on, says nothing of the commits before bad)."""
    for sha in among:
        if sha != bad and FULL_SHA.fullmatch(sha) and await _resolve(git, sha, "good") is not None \
                and (await git.run("merge-base", "--is-ancestor", sha, bad, check=False)).code == 0:
            return sha
    raise BadRequest(f"from_job: no passed job of {branch} at a commit before {bad[:12]} (among the last "
                     f"{len(among)}): give a good commit (apiary bisect --good SHA)", field="from_job")


async def commit_facts(cache_dir: Path, url: str, shas: list[str]) -> dict[str, dict[str, Any]]:
    """{sha: {"subject", "message", "author", "email", "at"}} of `shas` as the bisect copy holds them
    (those it does not hold are left out); messages cut at MESSAGE_MAX characters."""
    shas = [s for s in shas if FULL_SHA.fullmatch(s)]
    if not shas:
        return {}
    out: dict[str, dict[str, Any]] = {}
    try:
        async with _git(cache_dir, url, None, f"commits of {display_url(url)}", READ_TIMEOUT) as git:
            text = (await git.run("show", "--no-patch", "--no-walk=unsorted", "--format=%H%x00%an%x00%ae%x00%at%x00%B%x1e",
                                  *shas, check=False)).out
    except GitError as exc:
        log.warning("bisect: %s", exc)
        return {}
    for record in text.split("\x1e"):
        parts = record.strip("\n").split("\x00", 4)
        if len(parts) != 5 or not FULL_SHA.fullmatch(parts[0]):
            continue
        sha, name, email, at, message = parts
        message = message.strip("\n")[:MESSAGE_MAX]
        out[sha] = {"subject": message.split("\n", 1)[0][:200], "message": message, "author": name[:NAME_MAX],
                    "email": email[:NAME_MAX], "at": float(at) if at.isdigit() else None}
    return out
