"""Per-job directories: a fresh workspace for each job, and a private one for its credentials.

A job's workspace is removed when the job ends, unless the drone keeps the
last ``keep`` workspaces for inspection (``keep_workspaces``); then the oldest
beyond that number goes. A workspace made before its job came (jobkit.py) has
a name of its own; kept, it is also found by its job's id, a link beside it.
Private directories are always removed.

A drone killed outright (SIGKILL, a crash, the machine's power) removes nothing: when it starts again,
`sweep` removes what no job of its own can own yet (`leftovers`): every job's /tmp and private folder,
and every workspace but those ``keep_workspaces`` keeps (a workspace named by its job, and one a job's
link names). A previous run's debug-kept workspaces go too (debugshell.py deletes them at start, as
documented).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections import deque
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)
KIT_PREFIX = "k-"  # a workspace made before its job came (jobkit.py): never named by a job


def leftovers(entries: Mapping[str, str | None], keep: int) -> set[str]:
    """Which of a starting drone's ``workspaces`` entries to remove: `entries` maps a name to the name its link
    points to (None: not a link). With `keep` 0 nothing was meant to outlive its job: all. Else the kept ones
    stay: a workspace named by its job, and a made-ahead one (``k-…``) a job's link names; a made-ahead one
    no link names was the spare kit or a killed job's, and a link to nothing goes too."""
    if keep <= 0:
        return set(entries)
    linked = {target for target in entries.values() if target is not None}
    gone = {name for name, target in entries.items() if target is None and name.startswith(KIT_PREFIX)
            and name not in linked}
    return gone | {name for name, target in entries.items() if target is not None and
                   (target not in entries or target in gone or entries[target] is not None)}


class Workspaces:
    def __init__(self, root: Path, keep: int = 0) -> None:
        self.root = root
        self.keep = keep
        self._kept: deque[tuple[Path, Path | None]] = deque()  # (workspace, its job's link)

    def seal(self, passable: bool) -> None:
        """Make the folders that hold jobs' workspaces and /tmps (``workspaces``, ``tmp``, ``private``) closed to
        other users, so that another drone's jobs on the machine (the same job user, often) cannot list or read
        them: 0700, or 0711 (entered, not listed: a workspace's name is random) when `passable`, a job that
        runs as its own user without bubblewrap reaching its workspace through them. A sandbox binds the
        workspace itself, so its job needs nothing of these folders' modes."""
        for folder, mode in ((self.root, 0o711 if passable else 0o700),
                             (self.root.parent / "tmp", 0o711 if passable else 0o700),
                             (self.root.parent / "private", 0o700)):
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, mode)

    def sweep(self) -> int:
        """At the drone's start, before any job: remove what a previous run left (`leftovers`); how many."""
        removed = 0
        for folder in (self.root.parent / "tmp", self.root.parent / "private"):
            for path in folder.iterdir() if folder.is_dir() else ():
                _remove_now(path)
                removed += 1
        entries: dict[str, str | None] = {}
        for path in self.root.iterdir() if self.root.is_dir() else ():
            entries[path.name] = os.readlink(path) if path.is_symlink() else None
        for name in leftovers(entries, self.keep):
            _remove_now(self.root / name)
            removed += 1
        if removed:
            log.info("removed %d workspaces and job folders a previous run of this drone left", removed)
        return removed

    def create(self, job_id: str) -> Path:
        path = self.root / job_id
        if path.exists():  # a previous attempt of the same job on this drone
            shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def create_private(self, job_id: str) -> Path:
        """A directory only the drone reads (keys, credentials), outside the workspace."""
        path = self.root.parent / "private" / job_id
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, mode=0o700)
        return path

    def create_tmp(self, job_id: str) -> Path:
        """The job's private /tmp (its HOME inside), removed with the job."""
        path = self.root.parent / "tmp" / job_id
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, mode=0o700)
        return path

    async def release(self, workspace: Path, job_id: str = "") -> None:
        """The job is over: remove its workspace, or keep it among the last `keep` (then named by `job_id`
        too, when its own name is another)."""
        if self.keep <= 0:
            await self.remove(workspace)
            return
        link = None
        if job_id and workspace.name != job_id:
            link = self.root / job_id
            with contextlib.suppress(OSError):
                link.unlink(missing_ok=True)
                os.symlink(workspace.name, link)
        self._kept.append((workspace, link))
        while len(self._kept) > self.keep:
            old, old_link = self._kept.popleft()
            if old_link is not None:
                with contextlib.suppress(OSError):
                    old_link.unlink()
            await self.remove(old)

    async def remove(self, path: Path) -> None:
        try:
            path.rmdir()  # empty (often, for short jobs): no thread needed
            return
        except OSError:
            pass
        with contextlib.suppress(OSError):
            # A job's /tmp holding only its empty home (every short job's): two rmdirs, no thread either
            # (a thread's hand-over and wake-up cost the drone more than the rmtree of an empty folder).
            # rmdir never follows a symlink a job put there.
            (path / "home").rmdir()
            path.rmdir()
            return
        await asyncio.to_thread(shutil.rmtree, path, True)


def _remove_now(path: Path) -> None:
    """Remove a file, a link (never what it points to) or a folder and everything in it."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(OSError):
            path.unlink()
        return
    shutil.rmtree(path, ignore_errors=True)
