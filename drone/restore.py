"""Puts a partial run's restored artifacts (apiary.core.partial) back into the job's workspace.

The queen sends them in the job's ``queue:new`` (``resume.files``: ``[{name, data, job}]``, bounded
by apiary.queen.resume.MAX_RESTORE_BYTES). A name is a workspace-relative POSIX path as the
artifact was collected; it is written only inside the workspace: an absolute name, a ``..``, a
folder on the way that is a symlink, or a file that is one (a checkout may hold such links) is
refused and said, never followed. A file the checkout has already is left as the checkout made it.

A file marked ``given`` is the queen's own for this job (a test shard's list, apiary.queen.shards): it
replaces whatever the checkout holds at its name (a committed file or link there is removed, never
followed), since a repository must not choose what a shard runs; one that cannot be written is in
`refused` (the job fails rather than run with the checkout's).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from .artifacts import ArtifactError

log = logging.getLogger(__name__)

SHARD_LIST = ".apiary/shard-tests.txt"  # a shard's list (apiary.queen.shards.SHARD_FILE): said as such


class GivenFileError(ArtifactError):
    """A ``given`` file could not be written (`refused`'s first): the job fails saying so, in these words."""


def restore(workspace: Path, files: Sequence[Mapping[str, Any]], owner: tuple[int, int] | None = None,
            refused: list[str] | None = None) -> list[str]:
    """Write `files` under `workspace` (owned by `owner` (uid, gid) when given); return a line per file
    saying what was done with it. `refused` gains each ``given`` file that could not be written, saying why."""
    root = workspace.resolve()
    lines = []
    for f in files:
        name, data, given = str(f.get("name") or ""), f.get("data"), f.get("given") is True
        if not isinstance(data, bytes):
            continue
        try:
            why = _write(root, name, data, owner, given)
        except OSError as exc:
            why = f"not restored: {exc.strerror or exc}"
        except ValueError as exc:  # a NUL in the name ("embedded null byte"): the name is the job's
            why = f"not restored: {exc}"
        if given:
            why = why.replace("not restored", "not written")
            lines.append(f"apiary: {name} ({len(data):,} bytes), this job's file from the queen: {why}\n")
            if why.startswith("not written") and refused is not None:
                refused.append(f"{'shard list' if name == SHARD_LIST else 'given file'}: could not write {name}, "
                               f"this job's file from the queen: {why.removeprefix('not written: ')}")
        else:
            lines.append(f"artifacts: {name} ({len(data):,} bytes) from job {f.get('job', '?')}: {why}\n")
    return lines


def _write(root: Path, name: str, data: bytes, owner: tuple[int, int] | None, given: bool = False) -> str:
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or ".." in rel.parts or any(p in ("", ".") for p in rel.parts):
        return "not restored: names stay inside the workspace"
    folder = root
    for part in rel.parts[:-1]:
        folder = folder / part
        try:
            st = os.lstat(folder)
        except FileNotFoundError:
            os.mkdir(folder, 0o755)
            if owner is not None:
                os.chown(folder, *owner)
            continue
        if not stat.S_ISDIR(st.st_mode):  # a link (or a file) where a folder goes: never followed
            return f"not restored: {folder.relative_to(root)} is not a folder"
    target = folder / rel.name
    replaced = False
    if given:  # the queen's file wins over the checkout's (a file or a link: removed, never followed)
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISDIR(st.st_mode):
                return f"not restored: the checkout has a folder {name}"
            os.unlink(target)
            replaced = True
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        return "the checkout has it already; kept as checked out"
    with os.fdopen(fd, "wb") as out:
        if owner is not None:
            os.fchown(out.fileno(), *owner)
        out.write(data)
    return "written (the checkout's copy replaced)" if replaced else ("written" if given else "restored")
