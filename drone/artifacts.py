"""Sends the files a pipeline declares as artifacts to the queen, after the job's phases.

Patterns are relative to the workspace (``dist/*.whl``, ``reports/**/*.xml``;
``*`` and ``?`` stay within a folder, ``**`` crosses folders, ``[...]`` is a
class: apiary.core.globs, in time polynomial in pattern and path, as they are
the pusher's). The workspace is walked without entering symlinked folders, so no
pattern can lead the drone through the rest of its file system; a matching
symlinked file is resolved and refused when it points outside the workspace.
Each file goes as ``job:artifact`` events of ARTIFACT_PART_BYTES, through the
same outbox as all other events, so an artifact is delivered exactly once like
the log. A file that cannot be read fails the job (the executor says why).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from apiary.core.globs import matcher
from apiary.core.protocol import ARTIFACT_PART_BYTES, Msg

EmitFn = Callable[[Msg, dict[str, Any]], None]


def workspace_files(root: Path) -> list[str]:
    """Every file under `root` as a relative POSIX path, sorted; symlinked folders are not entered."""
    files = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        rel = Path(folder).relative_to(root)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        files.extend((rel / name).as_posix() for name in names)
    return sorted(files)


@dataclasses.dataclass(frozen=True)
class Found:
    """A file to send: its name in the workspace, the file itself (symlinks resolved) and its identity."""

    name: str
    path: Path
    device: int
    inode: int
    size: int


def resolved(root: Path, rel: str) -> Path | None:
    """Where `rel` (a path under `root`, which is resolved) leads once its links are followed, or None
    when they loop or cannot be followed (a job may leave `a -> a` behind): a file the job left like
    that is skipped, never an error of the drone."""
    try:
        return (root / rel).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a loop, on Python before 3.13
        return None


def match(workspace: Path, globs: list[str]) -> tuple[list[Found], list[str]]:
    """Files under `workspace` matching `globs` (each once, in order), and notes on what was left out."""
    root = workspace.resolve()
    listed = workspace_files(root)
    found: dict[str, Found] = {}
    notes = []
    for pattern in globs:
        clean = pattern.removeprefix("./")
        if clean.startswith("/") or ".." in Path(clean).parts:
            notes.append(f"artifacts: {pattern}: patterns stay inside the workspace; ignored")
            continue
        matches = matcher(clean)
        hits = [rel for rel in listed if matches(rel)]
        inside = []
        for rel in hits:
            real = resolved(root, rel)
            if real is None:
                continue
            try:
                st = real.stat()
            except OSError:
                continue
            if real.is_relative_to(root) and stat.S_ISREG(st.st_mode):
                inside.append(Found(rel, real, st.st_dev, st.st_ino, st.st_size))
        if len(inside) < len(hits):
            notes.append(f"artifacts: {pattern}: {len(hits) - len(inside)} link(s) to outside the workspace, "
                         "to no file or looping ignored")
        if not inside:
            notes.append(f"artifacts: no file matches {pattern}")
        for f in inside:
            found.setdefault(f.name, f)
    return list(found.values()), notes


def _read_part(found: Found, part: int) -> bytes:
    """One part of the file matched, and only of that file: one swapped for a link elsewhere is refused."""
    fd = os.open(found.path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (found.device, found.inode):
            raise ArtifactError(f"{found.name} was replaced while it was being sent")
        f.seek(part * ARTIFACT_PART_BYTES)
        return f.read(ARTIFACT_PART_BYTES)


class ArtifactError(Exception):
    """An artifact could not be sent; the job fails saying why."""


async def send(workspace: Path, globs: list[str], emit: EmitFn, max_bytes: int,
               room: Callable[[], Awaitable[None]] | None = None) -> None:
    """Emit the matching files part by part; `room()` is awaited before each part, so
    at most a few parts wait for the queen's ack in memory at a time."""
    files, notes = await asyncio.to_thread(match, workspace, globs)
    for note in notes:
        emit(Msg.JOB_STDOUT, {"text": note + "\n"})
    await _send_found(files, emit, max_bytes, room)


async def _send_found(files: list[Found], emit: EmitFn, max_bytes: int,
                      room: Callable[[], Awaitable[None]] | None = None) -> None:
    total = 0
    for found in files:
        name, size = found.name, found.size
        if total + size > max_bytes:
            emit(Msg.JOB_STDERR, {"text": f"artifacts: {name} ({size:,} bytes) skipped: over the limit of "
                                          f"{max_bytes:,} bytes per job\n"})
            continue
        total += size
        parts = max(1, -(-size // ARTIFACT_PART_BYTES))
        for part in range(parts):
            if room is not None:
                await room()
            try:
                chunk = await asyncio.to_thread(_read_part, found, part)
            except OSError as exc:
                raise ArtifactError(f"{name}: {exc.strerror or exc}") from None
            emit(Msg.JOB_ARTIFACT, {"name": name, "part": part, "parts": parts, "size": size, "data": chunk})
        emit(Msg.JOB_STDOUT, {"text": f"artifacts: {name} ({size:,} bytes) uploaded\n"})
