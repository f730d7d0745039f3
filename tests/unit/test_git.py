"""A malformed ref is refused before git runs. Real git over file://, HTTP and ssh: tests/e2e/test_git.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from apiary.core.errors import GitError
from apiary.core.refs import parse_ref
from apiary.queen.gitread import read_at_ref


@pytest.mark.parametrize("ref, fault", [
    ({}, "needs a branch"),
    ({"id": "abc1234"}, "must be a full sha"),
    ({"id": "not-a-sha"}, "not a commit sha"),
    ({"branch": "-upload-pack=evil"}, "not a valid ref name"),
    ({"branch": "a..b"}, "not a valid ref name"),
    ({"branch": "main", "fetch": "refs/pull/7/merge"}, "not both"),
])
async def test_a_malformed_ref_is_refused_before_git_runs(ref: dict[str, str], fault: str, tmp_path: Path) -> None:
    with pytest.raises(GitError, match=fault):
        parse_ref(ref)
    with pytest.raises(GitError, match=fault):
        await read_at_ref(tmp_path / "cache", "file:///nowhere.git", ref, None)
    assert not (tmp_path / "cache").exists()
