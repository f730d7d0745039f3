"""What commit the drone reports after a checkout: the detached HEAD's sha, and nothing planted by the job."""

from __future__ import annotations

import os
from pathlib import Path

from apiary.drone.checkout import checked_out

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


def workspace_with_head(root: Path, text: str) -> Path:
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text(text)
    return root


def test_a_detached_head_is_the_commit_checked_out(tmp_path: Path) -> None:
    assert checked_out(workspace_with_head(tmp_path / "a", SHA + "\n")) == SHA
    assert checked_out(workspace_with_head(tmp_path / "b", SHA.upper() + "\n")) == SHA
    assert checked_out(workspace_with_head(tmp_path / "c", "b" * 64 + "\n")) == "b" * 64  # sha-256 repositories


def test_anything_but_a_whole_sha_reports_nothing(tmp_path: Path) -> None:
    for n, text in enumerate(["ref: refs/heads/main\n", SHA[:12] + "\n", "", "x" * 40, SHA + " " + SHA]):
        assert checked_out(workspace_with_head(tmp_path / str(n), text)) is None, text
    assert checked_out(tmp_path / "no-git") is None
    (tmp_path / "file-git").mkdir()
    (tmp_path / "file-git" / ".git").write_text(SHA)  # a file, not a directory
    assert checked_out(tmp_path / "file-git") is None


def test_a_symlink_or_a_fifo_planted_by_the_job_is_not_followed(tmp_path: Path) -> None:
    # A job's on_start hook runs before the checkout: whatever it planted, the drone reads nothing outside
    # the workspace (a secret that happens to look like a sha must not become the job's commit).
    outside = tmp_path / "drone-private"
    outside.mkdir()
    (outside / "HEAD").write_text(SHA)
    linked_dir = tmp_path / "linked-dir"
    linked_dir.mkdir()
    (linked_dir / ".git").symlink_to(outside)
    assert checked_out(linked_dir) is None

    linked_head = tmp_path / "linked-head"
    (linked_head / ".git").mkdir(parents=True)
    (linked_head / ".git" / "HEAD").symlink_to(outside / "HEAD")
    assert checked_out(linked_head) is None

    fifo = tmp_path / "fifo"
    (fifo / ".git").mkdir(parents=True)
    os.mkfifo(fifo / ".git" / "HEAD")
    assert checked_out(fifo) is None  # returns at once: a fifo is not opened for a blocking read
