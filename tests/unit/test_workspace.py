from __future__ import annotations

from pathlib import Path

from apiary.drone.workspace import Workspaces


async def test_workspaces_are_removed_unless_the_last_n_are_kept(tmp_path: Path) -> None:
    gone = Workspaces(tmp_path / "a")
    ws = gone.create("j1")
    (ws / "f").write_text("x")
    await gone.release(ws)
    assert not ws.exists()

    kept = Workspaces(tmp_path / "b", keep=2)
    paths = [kept.create(f"j{i}") for i in range(4)]
    for p in paths:
        await kept.release(p)
    assert [p.exists() for p in paths] == [False, False, True, True]


def test_a_private_directory_is_outside_the_workspace_and_only_for_the_drone(tmp_path: Path) -> None:
    spaces = Workspaces(tmp_path / "work" / "workspaces")
    private = spaces.create_private("j1")
    assert not private.resolve().is_relative_to((tmp_path / "work" / "workspaces").resolve())
    assert private.stat().st_mode & 0o077 == 0
