"""Reading one file of a repository at a job's commit, on the queen, at trigger time.

The queen validates a job's pipeline (``.apiary.yml`` at the job's commit)
before the job is stored, so a broken pipeline never reaches a drone. It keeps
one bare cache repository per URL under ``cache_dir`` and fetches only the ref
the job names (``--depth=1``), then reads the file straight from the object
store: no work tree, no checkout.

Git runs as a child process (never through a shell) with prompts disabled, no
system or user configuration (a private ``HOME`` per call, ssh with
``-F /dev/null``) and credentials passed through the environment only:
an https token as an ``http.<origin>.extraHeader`` given by
``GIT_CONFIG_COUNT``/``KEY``/``VALUE`` variables, an ssh key as a 0600 file in a
private directory removed afterwards. Neither is ever on a command line or in
a URL, and git's messages are masked before they reach an error.

The ref and credential rules (`parse_ref`, `git_env`, `mask`) are core/refs.py's,
shared with the drone's checkout (drone/checkout.py), so both sides read a ref
and credentials alike.

Errors: everything that goes wrong raises `GitError`, whose message names the
URL and the ref and carries git's own stderr. Concurrency: fetches of one URL
into one cache are serialised; reads of different URLs run in parallel.
Cancellation kills git's whole process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import tempfile
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apiary.core.context import parse_commit_object
from apiary.core.errors import GitError
from apiary.core.refs import (
    FULL_SHA,
    PASSED_ENV,
    Ref,
    check_url,
    display_url,
    git_env,
    mask,
    parse_ref,
    secrets_of,
    ssh_key_text,
)
from apiary.shared.private import write_private

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0


# One lock per cache repository and event loop (a Lock belongs to the loop it first waits on).
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, asyncio.Lock]] = weakref.WeakKeyDictionary()


def _lock(repo: Path) -> asyncio.Lock:
    per_loop = _locks.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault(repo, asyncio.Lock())


def cache_path(cache_dir: Path, url: str) -> Path:
    """The bare cache repository of `url`: named by a hash, so any URL makes a safe directory name."""
    return cache_dir / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".git")


async def read_at_ref(cache_dir: Path, url: str, ref: Mapping[str, Any], auth: dict[str, Any] | None,
                      path: str = ".apiary.yml", timeout: float = DEFAULT_TIMEOUT) -> tuple[str, str | None]:
    """Fetch `ref` of `url` into the cache and return (commit sha, text of `path` there or None if absent)."""
    check_url(url)
    wanted = parse_ref(ref)
    path = path.lstrip("/")
    repo = cache_path(cache_dir, url)
    what = f"{wanted.text} of {display_url(url)}"
    secrets = secrets_of(url, auth)
    cache_dir.mkdir(parents=True, exist_ok=True)
    async with _lock(repo):
        with tempfile.TemporaryDirectory(prefix="apiary-git-") as private:
            home = Path(private) / "home"
            home.mkdir(mode=0o700)
            env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
            env.update({"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C", "LANG": "C"})
            key = ssh_key_text(auth)
            key_file = write_private(Path(private) / "keys", key) if key is not None else None
            env.update(git_env(url, auth, key_file, isolated=True))
            git = _Git(repo, env, timeout, what, secrets)
            if not (repo / "HEAD").exists():
                await git.run("init", "--bare", "--quiet", str(repo), cwd=cache_dir)
            sha = await _fetch(git, url, wanted)
            blob = await git.run("rev-parse", "--verify", "--quiet", f"{sha}:{path}", check=False)
            if blob.code != 0:
                log.debug("%s has no %s at %s", display_url(url), path, sha)
                return sha, None
            return sha, (await git.run("cat-file", "blob", blob.out.strip())).out



async def read_commit(cache_dir: Path, url: str, sha: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any] | None:
    """The commit `sha` of `url` as the cache holds it (after `read_at_ref` fetched it):
    {"message", "author", "email", "at"} (apiary.core.context.parse_commit_object), or None when the
    cache does not have it. Fetches nothing; one ``git cat-file`` in the bare cache."""
    repo = cache_path(cache_dir, url)
    if not FULL_SHA.fullmatch(sha) or not (repo / "HEAD").exists():
        return None
    with tempfile.TemporaryDirectory(prefix="apiary-git-") as private:
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env.update({"HOME": private, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C", "LANG": "C"})
        git = _Git(repo, env, timeout, f"commit {sha[:12]} of {display_url(url)}", [])
        try:
            found = await git.run("cat-file", "commit", sha, check=False)
        except GitError as exc:
            log.warning("%s", exc)
            return None
    if found.code != 0:
        return None
    return parse_commit_object(found.out)

async def _fetch(git: _Git, url: str, ref: Ref) -> str:
    """Fetch what `ref` names and return the commit it ends on."""
    fetch = ["fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--no-write-fetch-head", "--depth=1",
             "--", url]
    if ref.source is not None:
        await git.run(*fetch, f"+{ref.source}:{ref.local}")
        tip = (await git.run("rev-parse", "--verify", f"{ref.local}^{{commit}}")).out.strip()
        if ref.commit is None:
            return tip
        if tip.startswith(ref.commit):
            return tip
        # The id is older than the tip (or no longer on the branch): fetch it by itself.
        found = await git.run("rev-parse", "--verify", "--quiet", f"{ref.commit}^{{commit}}", check=False)
        if found.code == 0:
            return found.out.strip()
        if not FULL_SHA.fullmatch(ref.commit):
            raise GitError(f"cannot read {git.what}: {ref.commit} is not on the branch, and a short sha "
                           "cannot be fetched by itself")
    assert ref.commit is not None
    if ref.source is None:  # a commit never changes: one already in the cache needs no fetch
        found = await git.run("rev-parse", "--verify", "--quiet", f"{ref.commit}^{{commit}}", check=False)
        if found.code == 0:
            return found.out.strip()
    await git.run(*fetch, ref.commit)
    return (await git.run("rev-parse", "--verify", f"{ref.commit}^{{commit}}")).out.strip()


@dataclass
class _Result:
    code: int
    out: str
    err: str


class _Git:
    """Runs git in one cache repository and turns failures into GitError."""

    def __init__(self, repo: Path, env: dict[str, str], timeout: float, what: str, secrets: list[str]) -> None:
        self.repo, self.env, self.timeout, self.what, self.secrets = repo, env, timeout, what, secrets

    async def run(self, *args: str, check: bool = True, cwd: Path | None = None) -> _Result:
        argv = ["git", *args] if cwd is not None else ["git", "--git-dir", str(self.repo), *args]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=cwd or self.repo, env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise GitError(f"cannot run git to read {self.what}: {exc}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            raise GitError(f"git {args[0]} of {self.what} timed out after {self.timeout:g} s") from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: ssh and helpers go too
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        result = _Result(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and result.code != 0:
            message = mask(result.err.strip(), self.secrets) or f"exit code {result.code}"
            if "terminal prompts disabled" in message or "could not read Username" in message:
                message += "\n(the server asked for credentials: the repository's token is missing or refused)"
            raise GitError(f"git {args[0]} of {self.what} failed:\n{message}")
        return result
