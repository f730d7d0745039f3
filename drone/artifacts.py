"""Sends the files a pipeline declares as artifacts to the queen, after the job's phases.

Globs are relative to the workspace (``dist/*.whl``, ``reports/**/*.xml``);
matches outside it (through ``..`` or symlinks) are refused. Each file goes as
``job:artifact`` events of ARTIFACT_PART_BYTES, through the same outbox as all
other events, so an artifact is delivered exactly once like the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from queen.protocol import ARTIFACT_PART_BYTES, Msg

EmitFn = Callable[[Msg, dict[str, Any]], None]


def match(workspace: Path, globs: list[str]) -> tuple[list[Path], list[str]]:
    """Files under `workspace` matching `globs` (each once, sorted), and notes on what did not match."""
    root = workspace.resolve()
    found: dict[Path, None] = {}
    notes = []
    for pattern in globs:
        hits = [p for p in sorted(workspace.glob(pattern)) if p.is_file()]
        inside = [p for p in hits if p.resolve().is_relative_to(root)]
        if len(inside) < len(hits):
            notes.append(f"artifacts: {pattern}: {len(hits) - len(inside)} file(s) outside the workspace ignored")
        if not inside:
            notes.append(f"artifacts: no file matches {pattern}")
        for p in inside:
            found[p] = None
    return list(found), notes


def _read_part(path: Path, part: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(part * ARTIFACT_PART_BYTES)
        return f.read(ARTIFACT_PART_BYTES)


async def send(workspace: Path, globs: list[str], emit: EmitFn, max_bytes: int,
               room: Callable[[], Awaitable[None]] | None = None) -> None:
    """Emit the matching files part by part; `room()` is awaited before each part, so
    at most a few parts wait for the queen's ack in memory at a time."""
    files, notes = match(workspace, globs)
    total = 0
    for note in notes:
        emit(Msg.JOB_STDOUT, {"text": note + "\n"})
    for path in files:
        name = path.relative_to(workspace).as_posix()
        size = path.stat().st_size
        if total + size > max_bytes:
            emit(Msg.JOB_STDERR, {"text": f"artifacts: {name} ({size:,} bytes) skipped: over the limit of "
                                          f"{max_bytes:,} bytes per job\n"})
            continue
        total += size
        parts = max(1, -(-size // ARTIFACT_PART_BYTES))
        for part in range(parts):
            if room is not None:
                await room()
            chunk = await asyncio.to_thread(_read_part, path, part)
            emit(Msg.JOB_ARTIFACT, {"name": name, "part": part, "parts": parts, "size": size, "data": chunk})
        emit(Msg.JOB_STDOUT, {"text": f"artifacts: {name} ({size:,} bytes) uploaded\n"})
