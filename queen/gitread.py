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

The pure helpers (`parse_ref`, `auth_env`, `mask`) are shared with the drone's
checkout (drone/checkout.py), so both sides read a ref and credentials alike.

Errors: everything that goes wrong raises `GitError`, whose message names the
URL and the ref and carries git's own stderr. Concurrency: fetches of one URL
into one cache are serialised; reads of different URLs run in parallel.
Cancellation kills git's whole process group.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import re
import shlex
import signal
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from apiary.core.errors import ApiaryError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
DEFAULT_USERNAME = "x-access-token"
# Transports a repository URL may use; `ext::` and friends run arbitrary commands.
ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
# Environment a git child keeps from ours: finding programs, and reaching the network through a proxy.
PASSED_ENV = ("PATH", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
              "all_proxy", "ALL_PROXY", "GIT_SSL_CAINFO", "SSL_CERT_FILE", "SSL_CERT_DIR")

_SHA = re.compile(r"[0-9a-fA-F]{4,64}")
_FULL_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
# What check-ref-format refuses, minus the subtleties git will catch itself.
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^[-/.]|[/.]$|\.lock$|/[.-]")


class GitError(ApiaryError):
    """Git could not fetch or read what a job names; the message carries git's own words."""


@dataclass(frozen=True)
class Ref:
    """A job's ref, checked: what to fetch from the remote and which commit to end on.

    `source` is the remote ref to fetch (``refs/heads/main``, ``refs/pull/7/merge``),
    None when only a commit is named; `commit` is the sha the job wants, if any.
    """

    source: str | None
    commit: str | None
    text: str

    @property
    def local(self) -> str | None:
        """Where a fetched `source` is kept locally, so the next fetch negotiates from it."""
        if self.source is None:
            return None
        if self.source.startswith("refs/heads/"):
            return "refs/remotes/origin/" + self.source.removeprefix("refs/heads/")
        return "refs/apiary/" + self.source.removeprefix("refs/")


def parse_ref(ref: dict[str, Any]) -> Ref:
    """Check a job's ref (`{"branch"}`, `{"branch", "id"}`, `{"id"}` or `{"fetch"}`); raise GitError if it is bad."""
    if not isinstance(ref, dict):
        raise GitError(f"a ref must be a mapping, got {ref!r}")
    branch, commit, fetch = (ref.get(k) or None for k in ("branch", "id", "fetch"))
    for name, value in (("branch", branch), ("id", commit), ("fetch", fetch)):
        if value is not None and not isinstance(value, str):
            raise GitError(f"ref {name}: must be a string, got {value!r}")
    if commit is not None and not _SHA.fullmatch(commit):
        raise GitError(f"ref id: {commit!r} is not a commit sha")
    if branch is not None and fetch is not None:
        raise GitError("a ref names a branch or a fetch refspec, not both")
    if fetch is not None:
        source = fetch.split(":", 1)[0].removeprefix("+")  # a full refspec's destination is ours to choose
        if source != "HEAD" and not source.startswith("refs/"):
            source = "refs/heads/" + source
    elif branch is not None:
        source = "refs/heads/" + branch.removeprefix("refs/heads/")
    else:
        source = None
    if source is not None and source != "HEAD" and _BAD_REF.search(source):
        raise GitError(f"ref {source!r} is not a valid ref name")
    if source is None and commit is None:
        raise GitError(f"a ref needs a branch, an id or a fetch refspec, got {ref!r}")
    if source is None and commit is not None and not _FULL_SHA.fullmatch(commit):
        raise GitError(f"ref id {commit!r}: a commit fetched without a branch must be a full sha")
    if source is None:
        text = f"commit {commit}"
    else:
        text = f"branch {source[11:]}" if source.startswith("refs/heads/") else f"ref {source}"
        text += f" at {commit}" if commit else ""
    return Ref(source=source, commit=commit.lower() if commit else None, text=text)


def check_url(url: str) -> None:
    """Refuse a URL git would read as an option or that carries no location."""
    if not isinstance(url, str) or not url or url.startswith("-") or any(c in url for c in "\x00\n\r"):
        raise GitError(f"repository URL {url!r} is not valid")


def display_url(url: str) -> str:
    """The URL with any password in it replaced, fit for logs and messages."""
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.password:
            netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
    return url


def secrets_of(url: str, auth: dict[str, Any] | None) -> list[str]:
    """Every string that must never be shown: the token, its header form, a password in the URL."""
    found: list[str] = []
    if auth and auth.get("type") == "https" and auth.get("token"):
        found += [str(auth["token"]), _basic(auth).removeprefix("Basic ")]
    with contextlib.suppress(ValueError):
        if password := urlsplit(url).password:
            found.append(password)
    return [s for s in found if s]


def mask(text: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _basic(auth: dict[str, Any]) -> str:
    user = auth.get("username") or DEFAULT_USERNAME
    return "Basic " + base64.b64encode(f"{user}:{auth['token']}".encode()).decode()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "") + "/"


def auth_env(url: str, auth: dict[str, Any] | None, private_dir: Path, *,
             isolated: bool) -> tuple[dict[str, str], Path | None]:
    """Environment that makes git use `auth` for `url`, and the key file written for it (or None).

    Secrets go only into environment values and a 0600 file in `private_dir`
    (which the caller removes): a process list or a log shows neither.
    `isolated` also keeps ssh from reading the user's ssh config (the queen).
    """
    config: list[tuple[str, str]] = []
    key_file: Path | None = None
    kind = (auth or {}).get("type")
    if kind not in (None, "https", "ssh"):
        raise GitError(f"unknown auth type {kind!r} for {display_url(url)} (https or ssh)")
    if kind == "https" and auth and auth.get("token"):
        if not url.lower().startswith(("http://", "https://")):
            raise GitError(f"https credentials given for {display_url(url)}, which is not an http(s) URL")
        # Scoped to the repository's origin, so a redirect or submodule elsewhere never sees the token.
        config.append((f"http.{_origin(url)}.extraHeader", "Authorization: " + _basic(auth)))
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
           "-o", "LogLevel=ERROR"]
    if isolated:
        ssh += ["-F", "/dev/null"]
    if kind == "ssh" and auth and auth.get("key"):
        private_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix="key-", dir=private_dir)  # mode 0600
        key = str(auth["key"]).replace("\r\n", "\n").strip() + "\n"  # ssh refuses a key without its last newline
        with os.fdopen(fd, "w") as f:
            f.write(key)
        key_file = Path(name)
        ssh += ["-i", str(key_file), "-o", "IdentitiesOnly=yes"]
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
        "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
        "GIT_SSH_COMMAND": shlex.join(ssh),
        "GIT_CONFIG_COUNT": str(len(config)),
    }
    for n, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{n}"] = key
        env[f"GIT_CONFIG_VALUE_{n}"] = value
    return env, key_file


# One lock per cache repository and event loop (a Lock belongs to the loop it first waits on).
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, asyncio.Lock]] = weakref.WeakKeyDictionary()


def _lock(repo: Path) -> asyncio.Lock:
    per_loop = _locks.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault(repo, asyncio.Lock())


def cache_path(cache_dir: Path, url: str) -> Path:
    """The bare cache repository of `url`: named by a hash, so any URL makes a safe directory name."""
    return cache_dir / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".git")


async def read_at_ref(cache_dir: Path, url: str, ref: dict[str, Any], auth: dict[str, Any] | None,
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
            creds, _ = auth_env(url, auth, Path(private) / "keys", isolated=True)
            env.update(creds)
            git = _Git(repo, env, timeout, what, secrets)
            if not (repo / "HEAD").exists():
                await git.run("init", "--bare", "--quiet", str(repo), cwd=cache_dir)
            sha = await _fetch(git, url, wanted)
            blob = await git.run("rev-parse", "--verify", "--quiet", f"{sha}:{path}", check=False)
            if blob.code != 0:
                log.debug("%s has no %s at %s", display_url(url), path, sha)
                return sha, None
            return sha, (await git.run("cat-file", "blob", blob.out.strip())).out


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
        if not _FULL_SHA.fullmatch(ref.commit):
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
