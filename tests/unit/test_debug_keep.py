"""A drone's kept workspaces (apiary.drone.debugshell): kept only for a failed job that asks, deleted when the
window ends, when the disk is short (no shell open there), and by the next drone process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from apiary.core.protocol import Msg
from apiary.drone import debugshell
from apiary.drone.masking import Masker
from apiary.drone.sandbox import JobPaths, Limits, Sandbox

KEEP = {"id": "J1", "pipeline": {"debug": {"keep": True, "idle": 60.0, "total": 0.2}}}


def _shells(tmp_path: Path, sent: list[Any]) -> debugshell.DebugShells:
    return debugshell.DebugShells(Sandbox(None, "host", [], Limits()), tmp_path / "work",
                                  lambda msg, body: sent.append((msg, body)) or True)


def _paths(tmp_path: Path) -> JobPaths:
    paths = JobPaths(tmp_path / "work" / "workspaces" / "w1", tmp_path / "work" / "tmp" / "w1")
    for p in (paths.workspace, paths.tmp):
        p.mkdir(parents=True)
        (p / "made.txt").write_text("x")
    return paths


@pytest.mark.parametrize(("job", "status", "kept"), [
    (KEEP, "failed", True), (KEEP, "passed", False), (KEEP, "errored", False), (KEEP, "cancelled", False),
    ({"id": "J1", "pipeline": {}}, "failed", False),
    ({"id": "J1", "pipeline": {"debug": {"keep": False}}}, "failed", False),
])
def test_which_jobs_are_kept(tmp_path: Path, job: dict, status: str, kept: bool) -> None:
    assert _shells(tmp_path, []).wants(job, status) is kept


async def test_the_window_ends_and_the_next_process_cleans_up(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(debugshell, "CHECK_EVERY", 0.05)
    sent: list[Any] = []
    shells = _shells(tmp_path, sent)
    shells.start()
    paths = _paths(tmp_path)
    shells.keep(KEEP, paths, {}, Masker([]))
    assert (tmp_path / "work" / "debug" / "J1.json").exists()
    for _ in range(100):
        await asyncio.sleep(0.05)
        if not paths.workspace.exists():
            break
    assert not paths.workspace.exists() and not paths.tmp.exists() and "J1" not in shells.kept
    await shells.close()
    # Kept, then the drone dies: the next one deletes it at its start.
    shells = _shells(tmp_path, sent)
    paths = _paths(tmp_path)
    shells.keep({**KEEP, "pipeline": {"debug": {"keep": True, "idle": 60.0, "total": 3600.0}}}, paths, {}, Masker([]))
    again = _shells(tmp_path, sent)
    again.start()
    assert not paths.workspace.exists() and not (tmp_path / "work" / "debug" / "J1.json").exists()
    await again.close()
    # A shell asked for there is refused, saying why.
    again.open({"session": "abcdefgh12", "job": "J1", "rows": 24, "cols": 80, "idle": 60.0, "total": 60.0})
    assert sent[-1][0] is Msg.DEBUG_CLOSED and "not kept on this drone" in sent[-1][1]["detail"]


async def test_a_short_disk_drops_kept_workspaces(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(debugshell, "CHECK_EVERY", 0.05)
    monkeypatch.setattr(debugshell, "LOW_DISK_BYTES", 2**62)  # as if the disk were nearly full
    shells = _shells(tmp_path, [])
    shells.start()
    paths = _paths(tmp_path)
    shells.keep({**KEEP, "pipeline": {"debug": {"keep": True, "idle": 60.0, "total": 3600.0}}}, paths, {}, Masker([]))
    for _ in range(100):
        await asyncio.sleep(0.05)
        if not paths.workspace.exists():
            break
    assert not paths.workspace.exists()
    await shells.close()
