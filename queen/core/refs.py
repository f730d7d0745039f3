"""A job's ref and a repository's credentials, as git is given them: the rules both sides check alike.

Pure, no I/O. The queen reads a job's pipeline at its ref (queen/gitread.py)
and the drone checks the same ref out (drone/checkout.py); both check it with
`parse_ref` and `check_url`, so a ref the queen accepted at trigger time names
the same commit on the drone. `git_env` is the environment that gives git a
repository's credentials without a command line or a URL ever holding them: an
https token as an ``http.<origin>.extraHeader`` set through
``GIT_CONFIG_COUNT``/``KEY``/``VALUE`` variables, an ssh key as a file the
caller writes (0600, in a private directory it removes) from `ssh_key_text`.
`secrets_of` and `mask` keep every form of a credential out of what is shown.

Errors: a bad ref, URL or credential raises `GitError` saying what is wrong.
"""

from __future__ import annotations

import base64
import contextlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import GitError

DEFAULT_USERNAME = "x-access-token"
# Transports a repository URL may use; `ext::` and friends run arbitrary commands.
ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
# Environment a git child keeps from ours: finding programs, and reaching the network through a proxy.
PASSED_ENV = ("PATH", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
              "all_proxy", "ALL_PROXY", "GIT_SSL_CAINFO", "SSL_CERT_FILE", "SSL_CERT_DIR")

_SHA = re.compile(r"[0-9a-fA-F]{4,64}")
# A whole commit id (sha-1 or sha-256): the only kind a server lets a client fetch by itself.
FULL_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
# What check-ref-format refuses, minus the subtleties git will catch itself.
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^[-/.]|[/.]$|\.lock$|/[.-]")


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


def parse_ref(ref: Mapping[str, Any]) -> Ref:
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
    if source is None and commit is not None and not FULL_SHA.fullmatch(commit):
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


# A URL's user and password, wherever a URL stands in a value: `scheme://USER:PASSWORD@`. The password runs to the
# last @ before the URL's path (a password may hold an @ or a : unencoded); a user alone is no secret.
_CREDENTIALS = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^\s/?#@:'\"]*):[^\s/?#'\"]*@", re.IGNORECASE)


def hide_password(text: str) -> str:
    """`text` with the password of every URL in it shown as *** ("--index-url https://u:TOKEN@pypi/simple" ->
    "--index-url https://u:***@pypi/simple")."""
    return _CREDENTIALS.sub(r"\g<head>:***@", text)


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
    """`text` with each of `secrets` replaced by ``***`` (the longest first, so no part of one is left)."""
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


def ssh_key_text(auth: dict[str, Any] | None) -> str | None:
    """The ssh private key of `auth` as its file must hold it, or None when `auth` gives no ssh key.

    The caller writes it to a 0600 file in a private directory, names that file
    to `git_env` and removes it when git is done.
    """
    if not auth or auth.get("type") != "ssh" or not auth.get("key"):
        return None
    return str(auth["key"]).replace("\r\n", "\n").strip() + "\n"  # ssh refuses a key without its last newline


def git_env(url: str, auth: dict[str, Any] | None, key_file: Path | None, *, isolated: bool) -> dict[str, str]:
    """Environment that makes git use `auth` for `url`: prompts off, allowed transports only, the credentials.

    Secrets go only into environment values and `key_file` (the ssh key, which
    the caller wrote from `ssh_key_text`): a process list or a log shows
    neither. `isolated` also keeps ssh from reading the user's ssh config (the queen).
    """
    config: list[tuple[str, str]] = []
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
    if key_file is not None:
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
    return env


def safe_directories(url: str) -> list[str]:
    """For a repository on this machine: the folders git must be told are meant when another user fetches
    from them (its ``safe.directory``: the sandbox's job user fetching the drone owner's repository). Git
    reads this only from a global or system config file (a local fetch clears ``GIT_CONFIG_*``)."""
    local = _local_path(url)
    return [local, local.rstrip("/") + "/.git"] if local else []


def _local_path(url: str) -> str | None:
    """The folder of a repository on this machine (``file://`` URL or absolute path), else None."""
    if url.startswith("/"):
        return url
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.scheme == "file" and parts.path:
            return parts.path
    return None

