"""Artifacts' pure parts: glob patterns, matching in a workspace (links never followed out of it), a file
swapped after matching. Uploads by real drones: tests/e2e/test_artifacts.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from apiary.core.globs import matches
from apiary.core.protocol import Msg
from apiary.drone import artifacts


@pytest.mark.parametrize(("pattern", "path", "hit"), [
    ("out/*.txt", "out/a.txt", True),
    ("out/*.txt", "out/deep/a.txt", False),
    ("out/**/*.txt", "out/a.txt", True),
    ("out/**/*.txt", "out/x/y/a.txt", True),
    ("**/*.xml", "reports/unit.xml", True),
    ("**", "any/thing", True),
    ("?.log", "a.log", True),
    ("?.log", "ab.log", False),
    ("[ab].txt", "b.txt", True),
    ("[!ab].txt", "b.txt", False),
    ("dist/*.whl", "dist/pkg-1.0-py3-none-any.whl", True),
    ("a.txt", "a_txt", False),
])
def test_patterns_match_as_globs_do(pattern: str, path: str, hit: bool) -> None:
    assert matches(pattern, path) is hit


def test_a_symlinked_folder_is_never_walked_and_links_out_of_the_workspace_are_refused(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "out").mkdir(parents=True)
    (ws / "out" / "ok.txt").write_text("ok\n")
    (ws / "rootlink").symlink_to("/")  # a pattern through it would walk the whole machine
    (ws / "escape.txt").symlink_to("/etc/hostname")
    (ws / "inner.txt").symlink_to(ws / "out" / "ok.txt")
    started = time.monotonic()
    found, notes = artifacts.match(ws, ["rootlink/**", "**/*.txt", "../*", "/etc/*"])
    assert time.monotonic() - started < 5
    assert [f.name for f in found] == ["inner.txt", "out/ok.txt"]
    assert found[0].path == (ws / "out" / "ok.txt").resolve()
    assert "artifacts: no file matches rootlink/**" in notes
    assert any("1 link(s) to outside the workspace" in n for n in notes)
    assert sum("patterns stay inside the workspace" in n for n in notes) == 2


async def test_a_file_swapped_for_a_link_after_matching_fails_the_upload(tmp_path: Path) -> None:
    (tmp_path / "report.txt").write_text("mine\n")
    sent: list[tuple[Msg, dict]] = []
    found, _ = artifacts.match(tmp_path, ["*.txt"])
    (tmp_path / "report.txt").unlink()
    (tmp_path / "report.txt").symlink_to("/etc/hostname")
    with pytest.raises(artifacts.ArtifactError):
        await artifacts._send_found(found, lambda m, f: sent.append((m, f)), 10**9)
    assert not [f for m, f in sent if m is Msg.JOB_ARTIFACT]


def test_a_link_that_loops_is_left_out_and_the_other_files_are_kept(tmp_path: Path) -> None:
    # A job may leave `out/self.xml -> self.xml` behind: the drone skips it, the job keeps its artifacts.
    ws = tmp_path / "ws"
    (ws / "out").mkdir(parents=True)
    (ws / "out" / "data.txt").write_text("data\n")
    (ws / "out" / "self.xml").symlink_to("self.xml")
    (ws / "out" / "a").symlink_to("b")
    (ws / "out" / "b").symlink_to("a")
    found, notes = artifacts.match(ws, ["out/**"])
    assert [f.name for f in found] == ["out/data.txt"]
    assert any("3 link(s) to outside the workspace, to no file or looping ignored" in n for n in notes)
