"""The commands that check a job's ref out into its workspace.

`checkout_plan` decides, the executor runs: each command goes through
``/bin/sh -c`` in the workspace with `CheckoutPlan.env` added to the job's
environment, and its output streams into the job's log like any step's. The
commands are shown in that log, so they never hold a secret: an https token
travels as an ``http.<origin>.extraHeader`` set through ``GIT_CONFIG_*``
variables, an ssh key as a 0600 file in the job's private directory named by
``GIT_SSH_COMMAND``. Call `CheckoutPlan.cleanup()` when the job ends, whatever
happened, to remove the key.

Ref and credential rules are the core's (core/refs.py), the queen's too, so a
ref the queen accepted at trigger time checks out the same commit here. A bad ref or
refused credentials fail the fetch with git's own message and a line saying
what could not be fetched.

`checked_out` reads the commit the checkout ended on, so the drone can report
it (``job:checkout``) for a job whose ref named only a branch or a refspec;
`shown_commit` reads its subject and author from what the last checkout
command (SHOW_COMMIT) printed, for the job page (display only: the id is
HEAD's, and what the command printed must name that id).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from apiary.core.refs import FULL_SHA, check_url, display_url, git_env, parse_ref, safe_directories, ssh_key_text
from apiary.shared.private import write_private

log = logging.getLogger(__name__)

SHOWN_MAX = 1024  # characters of a commit's subject or author reported
SHOW_COMMIT = "git log -1 --no-decorate --format='checked out %H%n  %s%n  %an, %ad' --date=iso"


@dataclass(frozen=True)
class CheckoutPlan:
    """Shell commands to run in order in the workspace, the environment they need, and the key to remove."""

    commands: list[str]
    env: dict[str, str]
    key_file: Path | None = field(default=None, repr=False)

    config_file: Path | None = None

    def cleanup(self) -> None:
        """Remove the key file and the git config, if any; safe to call more than once."""
        for path in (self.key_file, self.config_file):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def checkout_plan(url: str, ref: dict[str, Any], auth: dict[str, Any] | None, private_dir: Path, *,
                  depth: int | None = None, owner: tuple[int, int] | None = None) -> CheckoutPlan:
    """Plan the checkout of `ref` of `url`; writes an ssh key (and, for a repository on this machine, a git
    config naming it safe) into `private_dir` (outside the workspace).

    `depth` limits the history fetched (None: all of it, so `git describe` and
    merge-base work in the job). `owner` (uid, gid): the user the checkout runs as, when not the drone's
    (the sandbox's job user): the private files become theirs, for the checkout only (the executor
    removes them right after it, and only the checkout's commands see the folder). Raises GitError
    for a malformed URL or ref.
    """
    check_url(url)
    wanted = parse_ref(ref)
    key = ssh_key_text(auth)
    key_file = write_private(private_dir, key) if key is not None else None
    env = git_env(url, auth, key_file, isolated=False)
    gitconfig: Path | None = None
    if safe := safe_directories(url):
        private_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        gitconfig = private_dir / "gitconfig"
        gitconfig.write_text("[safe]\n" + "".join(f"\tdirectory = {d}\n" for d in safe))
        env["GIT_CONFIG_GLOBAL"] = str(gitconfig)
    if owner is not None and private_dir.exists():
        for path in (private_dir, *private_dir.iterdir()):
            os.chown(path, *owner)
    # Quiet about the initial branch name and a detached HEAD; both are expected here.
    base = int(env["GIT_CONFIG_COUNT"])
    for n, (key, value) in enumerate((("init.defaultBranch", "apiary"), ("advice.detachedHead", "false"))):
        env[f"GIT_CONFIG_KEY_{base + n}"] = key
        env[f"GIT_CONFIG_VALUE_{base + n}"] = value
    env["GIT_CONFIG_COUNT"] = str(base + 2)

    q = shlex.quote
    fetch = "git fetch --no-tags" + (f" --depth={int(depth)}" if depth else "") + " origin"
    failed = f"echo {q(f'apiary: could not fetch {wanted.text} from {display_url(url)}')} >&2; exit $code"
    commands = ["git init -q", f"git remote add origin {q(url)}"]
    if wanted.source is not None:
        commands.append(f"{fetch} {q(f'+{wanted.source}:{wanted.local}')} || {{ code=$?; {failed}; }}")
    if wanted.commit is not None:
        if wanted.source is not None:
            # The id is usually on the branch; if not (an older commit beyond `depth`, a force push), fetch it alone.
            commands.append(f"git cat-file -e {q(wanted.commit + '^{commit}')} 2>/dev/null || "
                            f"{fetch} {q(wanted.commit)} || {{ code=$?; {failed}; }}")
        else:
            commands.append(f"{fetch} {q(wanted.commit)} || {{ code=$?; {failed}; }}")
        commands.append(f"git checkout -q --detach {q(wanted.commit)}")
    else:
        commands.append("git checkout -q --detach FETCH_HEAD")
    commands.append(SHOW_COMMIT)
    log.debug("checkout of %s from %s: %d commands", wanted.text, display_url(url), len(commands))
    return CheckoutPlan(commands=commands, env=env, key_file=key_file, config_file=gitconfig)


def shown_commit(text: str, sha: str) -> dict[str, Any] | None:
    """{"message": subject, "author": name, "at": seconds since 1970 if readable} from SHOW_COMMIT's
    output `text` when its first line names commit `sha`; else None. At most SHOWN_MAX characters each."""
    lines = text.splitlines()
    if len(lines) < 3 or lines[0].strip() != f"checked out {sha}":
        return None
    author, _, when = lines[2].strip().rpartition(", ")
    shown: dict[str, Any] = {"message": lines[1].strip()[:SHOWN_MAX], "author": (author or when)[:SHOWN_MAX]}
    with contextlib.suppress(ValueError):
        shown["at"] = datetime.strptime(when, "%Y-%m-%d %H:%M:%S %z").timestamp()
    return shown


def checked_out(workspace: Path) -> str | None:
    """The full sha (lower case) in ``workspace/.git/HEAD`` after `checkout_plan`'s commands, else None.

    The checkout leaves HEAD detached, so the file holds the sha itself. Read
    without git (whose config the job's workspace could carry) and without
    following a symlink or opening anything but a small regular file: an
    ``on_start`` hook runs before the checkout and could have planted one, and
    the drone must not read a file outside the workspace for it.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        gitdir = os.open(workspace / ".git", flags | os.O_DIRECTORY)
    except OSError as exc:
        log.debug("no commit to report: %s/.git: %s", workspace, exc)
        return None
    try:
        head = os.open("HEAD", flags, dir_fd=gitdir)
        try:
            if not stat.S_ISREG(os.fstat(head).st_mode):  # a fifo would block, a device never end
                return None
            text = os.read(head, 200).decode("ascii", errors="replace").strip()
        finally:
            os.close(head)
    except OSError as exc:
        log.debug("no commit to report: %s/.git/HEAD: %s", workspace, exc)
        return None
    finally:
        os.close(gitdir)
    return text.lower() if FULL_SHA.fullmatch(text) else None


