"""Per-job directories: a fresh workspace for each job, and a private one for its credentials.

A job's workspace is removed when the job ends, unless the drone keeps the
last ``keep`` workspaces for inspection (``keep_workspaces``); then the oldest
beyond that number goes. A workspace made before its job came (jobkit.py) has
a name of its own; kept, it is also found by its job's id, a link beside it.
Private directories are always removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections import deque
from pathlib import Path


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
