from __future__ import annotations

from pathlib import Path

import pytest

from apiary.drone.workspace import Workspaces, leftovers


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


async def test_a_jobs_tmp_goes_whatever_it_holds_and_nothing_a_link_in_it_names(tmp_path: Path) -> None:
    spaces = Workspaces(tmp_path / "work" / "workspaces")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    empty_home = spaces.create_tmp("j1")
    (empty_home / "home").mkdir()
    full_home = spaces.create_tmp("j2")
    (full_home / "home").mkdir()
    (full_home / "home" / ".cache").write_text("x")
    linked_home = spaces.create_tmp("j3")
    (linked_home / "home").symlink_to(outside)
    for tmp in (empty_home, full_home, linked_home):
        await spaces.remove(tmp)
        assert not tmp.exists()
    assert (outside / "keep").read_text() == "x"


@pytest.mark.parametrize(("entries", "keep", "gone"), [
    ({"k-aa": None, "j1": None, "j2": "k-bb", "k-bb": None}, 0, {"k-aa", "j1", "j2", "k-bb"}),  # nothing kept
    ({"k-aa": None, "k-bb": None, "j2": "k-bb"}, 3, {"k-aa"}),          # the spare kit / a killed job's: gone
    ({"j1": None}, 3, set()),                                            # named by its job: kept
    ({"j3": "k-cc"}, 3, {"j3"}),                                         # a link to nothing
    ({}, 3, set()),
])
def test_a_starting_drone_removes_what_no_kept_workspace_is(entries: dict, keep: int, gone: set) -> None:
    assert leftovers(entries, keep) == gone


def test_a_starting_drone_sweeps_what_a_killed_run_left(tmp_path: Path) -> None:
    root = tmp_path / "work" / "workspaces"
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("k-0123456789abcdef", "j1"):
        (root / name / "src").mkdir(parents=True)
    (root / "k-0123456789abcdef" / "link").symlink_to(outside)
    for folder in ("tmp", "private"):
        (tmp_path / "work" / folder / "k-0123456789abcdef" / "home").mkdir(parents=True)
    spaces = Workspaces(root)
    assert spaces.sweep() == 4
    assert [list(p.iterdir()) for p in (root, tmp_path / "work" / "tmp", tmp_path / "work" / "private")] == [[], [], []]
    assert outside.is_dir()  # a link in a workspace: removed, never followed
    assert spaces.sweep() == 0
    assert Workspaces(tmp_path / "none" / "workspaces").sweep() == 0  # a first start: nothing there
