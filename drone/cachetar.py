"""A cache's files: hashed (for keys), packed into a tar.zst, checked and unpacked. Blocking: call in a thread.

Everything here treats the job's files and a stored cache as hostile. The job's home and workspace are
walked through directory descriptors without following a symlink anywhere (a job that made
``~/.cache`` a link to ``/root`` gets that link saved, never root's files). A cache is unpacked in two
passes over its stream: the first checks every member and refuses the whole cache at the first bad one
(a name outside ``home/`` and ``workspace/``, ``..``, an absolute name, a hard link, a device, a
symlink whose target leaves its root, more than `max_bytes` of files or MAX_MEMBERS members); the
second writes, again through descriptors with O_NOFOLLOW, so a symlink the checkout (or the cache
itself) put in the way is not followed either. A stream that decompresses to more than its members
claim is cut off.

In the tar, ``home/REL`` is ``~/REL`` and ``workspace/REL`` the workspace's REL.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import stat
import sys
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from apiary.core.caches import split_path
from apiary.core.errors import ApiaryError
from apiary.core.globs import matcher

from .artifacts import workspace_files

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

MAX_MEMBERS = 200_000
MAX_DEPTH = 64
HASH_MAX_FILES = 10_000  # files one hashFiles() reads at most
HASH_MAX_BYTES = 1024**3  # and bytes
ROOTS = ("home", "workspace")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class CacheRefused(ApiaryError):
    """A stored cache that is not restored: what is wrong with it (nothing was written)."""


class CacheTooBig(ApiaryError):
    """The files to save come to more than the cap."""


# -- hashFiles ---------------------------------------------------------------------------

def hash_files(workspace: Path, globs: list[str]) -> str:
    """A sha256 hex digest of the workspace's regular files matching `globs` (names and contents, in name
    order; symlinks are not followed), or "" when none matches. Raises CacheTooBig past HASH_MAX_FILES
    files or HASH_MAX_BYTES bytes."""
    matchers = [matcher(g.removeprefix("./")) for g in globs]
    names = [n for n in workspace_files(workspace) if any(m(n) for m in matchers) and not n.startswith(".git/")]
    if not names:
        return ""
    if len(names) > HASH_MAX_FILES:
        raise CacheTooBig(f"hashFiles({', '.join(globs)}) matches {len(names):,} files (at most {HASH_MAX_FILES:,})")
    total, outer = 0, hashlib.sha256()
    for name in names:
        try:
            fd = os.open(workspace / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue  # a symlink, or gone
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            inner = hashlib.sha256()
            while chunk := f.read(1 << 20):
                total += len(chunk)
                if total > HASH_MAX_BYTES:
                    raise CacheTooBig(f"hashFiles({', '.join(globs)}) reads more than {HASH_MAX_BYTES:,} bytes")
                inner.update(chunk)
        outer.update(name.encode() + b"\0" + inner.digest())
    return outer.hexdigest()


# -- packing ------------------------------------------------------------------------------

def pack(roots: Mapping[str, Path], paths: Sequence[str], dest: Path, max_bytes: int) -> tuple[int, list[str]]:
    """Write the cache's `paths` (compiled: ``~/x`` or ``x``) under `roots` ({"home": ..., "workspace": ...})
    to `dest` as a tar.zst; return (files packed, notes on what was left out). Raises CacheTooBig."""
    notes: list[str] = []
    counted = {"bytes": 0, "members": 0}
    with zstd.ZstdFile(dest, "wb", level=3) as zst, tarfile.open(fileobj=zst, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path in paths:
            root_name, rel = split_path(path)
            parts = [p for p in rel.split("/") if p]
            try:
                fd = os.open(roots[root_name], _DIR_FLAGS)
            except OSError as exc:
                notes.append(f"{path}: {exc.strerror}")
                continue
            try:
                _pack_path(tar, fd, root_name, parts, path, notes, counted, max_bytes)
            finally:
                os.close(fd)
    return counted["members"], notes


def _pack_path(tar: tarfile.TarFile, root_fd: int, root_name: str, parts: list[str], path: str,
               notes: list[str], counted: dict[str, int], max_bytes: int) -> None:
    fd, opened = root_fd, []
    try:
        for part in parts[:-1]:  # every folder on the way must be a folder, not a link to one
            try:
                fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                notes.append(f"{path}: not saved (missing, or a symlink on the way)")
                return
            opened.append(fd)
        name = "/".join([root_name, *parts])
        if not parts:  # the whole home
            _pack_dir(tar, fd, name, notes, counted, max_bytes, 0)
            return
        _pack_entry(tar, fd, parts[-1], name, notes, counted, max_bytes, 0, missing_note=f"{path}: not found")
    finally:
        for f in opened:
            os.close(f)


def _pack_entry(tar: tarfile.TarFile, dir_fd: int, entry: str, name: str, notes: list[str],
                counted: dict[str, int], max_bytes: int, depth: int, missing_note: str | None = None) -> None:
    try:
        st = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        if missing_note:
            notes.append(missing_note)
        return
    info = tarfile.TarInfo(name)
    info.mtime, info.mode = int(st.st_mtime), stat.S_IMODE(st.st_mode) & 0o777
    if stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(entry, dir_fd=dir_fd)
        fault = link_fault(name.split("/"), info.linkname)
        if fault:  # unpack refuses a whole cache holding it (a virtualenv's bin/python -> /usr/bin/python3)
            notes.append(f"{name}: not saved: {fault}")
            return
    counted["members"] += 1
    if counted["members"] > MAX_MEMBERS:
        raise CacheTooBig(f"more than {MAX_MEMBERS:,} files")
    if stat.S_ISLNK(st.st_mode):
        tar.addfile(info)
    elif stat.S_ISDIR(st.st_mode):
        if depth >= MAX_DEPTH:
            notes.append(f"{name}: more than {MAX_DEPTH} folders deep; not saved")
            return
        try:
            fd = os.open(entry, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError:
            return  # swapped for something else meanwhile
        try:
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
            _pack_dir(tar, fd, name, notes, counted, max_bytes, depth + 1)
        finally:
            os.close(fd)
    elif stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            return
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return
            counted["bytes"] += st.st_size
            if counted["bytes"] > max_bytes:
                raise CacheTooBig(f"more than {max_bytes:,} bytes of files")
            info.size = st.st_size
            tar.addfile(info, _Exact(f, st.st_size))
    # sockets, fifos, devices: not a cache's business


def _pack_dir(tar: tarfile.TarFile, fd: int, name: str, notes: list[str], counted: dict[str, int], max_bytes: int,
              depth: int) -> None:
    with os.scandir(fd) as entries:
        names = sorted(e.name for e in entries)
    for entry in names:
        _pack_entry(tar, fd, entry, f"{name}/{entry}", notes, counted, max_bytes, depth)


class _Exact(io.RawIOBase):
    """`size` bytes of `f`: what it has, then zeros (a file that shrank while it was packed)."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.f.read(n)
        data += b"\0" * (n - len(data))
        self.left -= n
        return data


# -- unpacking -----------------------------------------------------------------------------

def check(src: Path, max_bytes: int, paths: Sequence[str]) -> int:
    """Walk the tar.zst at `src` and return how many members it has; raise CacheRefused at the first
    member that may not be restored (outside the entry's compiled `paths` included), or past `max_bytes`
    of files. Writes nothing."""
    count = 0
    for member, _ in _members(src, max_bytes, paths):
        count += 1
    return count


def unpack(src: Path, roots: Mapping[str, Path], max_bytes: int, owner: tuple[int, int] | None = None, *,
           paths: Sequence[str]) -> list[str]:
    """Restore the tar.zst at `src` (checked first with `check`: only members at or under the cache
    entry's compiled `paths`, ``~/x`` or ``x``) under `roots`; return notes on members left out (a
    symlink or other file in the way). `owner`: (uid, gid) the files are given to."""
    check(src, max_bytes, paths)
    notes: list[str] = []
    fds = {name: os.open(path, _DIR_FLAGS) for name, path in roots.items()}
    try:
        for member, tar in _members(src, max_bytes, paths):
            root, rel = member.name.split("/", 1)
            note = _write(fds[root], rel.split("/"), member, tar, owner)
            if note:
                notes.append(f"{member.name}: {note}")
    finally:
        for fd in fds.values():
            os.close(fd)
    return notes


def _members(src: Path, max_bytes: int, paths: Sequence[str]) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    total = 0
    with zstd.ZstdFile(src, "rb") as zst:
        try:
            with tarfile.open(fileobj=zst, mode="r|") as tar:
                for count, member in enumerate(tar, 1):
                    if count > MAX_MEMBERS:
                        raise CacheRefused(f"more than {MAX_MEMBERS:,} members")
                    fault = member_fault(member, paths)
                    if fault:
                        raise CacheRefused(f"{member.name[:200]!r}: {fault}")
                    total += member.size if member.isreg() else 0
                    if total > max_bytes:
                        raise CacheRefused(f"more than {max_bytes:,} bytes of files")
                    yield member, tar
        except (tarfile.TarError, zstd.ZstdError, EOFError) as exc:
            raise CacheRefused(f"not a readable tar.zst: {exc}") from None


def member_fault(member: tarfile.TarInfo, paths: Sequence[str] | None = None) -> str | None:
    """Why `member` may not be restored, or None. `paths`: the cache entry's compiled paths (``~/x``, ``x``);
    a member must be one of them or under one (a hostile tar would otherwise overwrite any checked-out
    file: a restore replaces what is there). None: any name in a root (packing checks links only). Pure."""
    name = member.name
    if name.startswith("/") or "\\" in name or "\0" in name:
        return "an absolute or odd name"
    parts = name.split("/")
    if parts[0] not in ROOTS or len(parts) < 2 or any(p in ("", ".", "..") for p in parts[1:]):
        return "outside home/ and workspace/, or with '..'"
    if len(parts) > MAX_DEPTH + 2:
        return f"more than {MAX_DEPTH} folders deep"
    if paths is not None and not _within(parts, paths):
        return f"outside the cache's paths ({', '.join(paths)[:200]})"
    if member.islnk():
        return "a hard link"
    if member.issym():
        return link_fault(parts, member.linkname)
    if not (member.isreg() or member.isdir()):
        return "not a file, folder or symlink"
    return None


def link_fault(parts: list[str], target: str) -> str | None:
    """Why a symlink at `parts` (["workspace", "a", "l"]) to `target` may not be restored, or None. Pure.

    Checked as text, so '..' may only lead the target (npm's ``node_modules/.bin/x -> ../pkg/cli.js``):
    one after a name (``c -> a/b/..``) would climb from wherever ``a/b`` links to (``a/b -> ..``: out of
    the root), which the text does not show. Leading ones climb from the link's own folder, which is a
    real folder: a restore writes through no symlink (_write)."""
    if not target or target.startswith("/") or "\0" in target:
        return f"a symlink to an absolute path ({target[:100]!r})"
    steps = target.split("/")
    lead = 0
    while lead < len(steps) and steps[lead] == "..":
        lead += 1
    if ".." in steps[lead:]:
        return f"a symlink with '..' after a name ({target[:100]!r})"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname("/".join(parts[1:])), target))
    if resolved == ".." or resolved.startswith(("../", "/")):
        return f"a symlink that points out of {parts[0]}/ ({target[:100]!r})"
    return None


def _within(parts: list[str], paths: Sequence[str]) -> bool:
    """Whether the member ``parts`` (["home", ".cache", "pip", "x"]) is one of `paths` or under one."""
    for path in paths:
        root, rel = split_path(path)
        want = [p for p in rel.split("/") if p]
        if parts[0] == root and parts[1:1 + len(want)] == want:
            return True
    return False


def _write(root_fd: int, parts: list[str], member: tarfile.TarInfo, tar: tarfile.TarFile,
           owner: tuple[int, int] | None) -> str | None:
    """Write one checked member; a note when it is left out."""
    fd, opened = root_fd, []
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
                _give(part, fd, owner)
            except FileExistsError:
                pass
            try:
                fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                return "a symlink or a file is in the way; left out"
            opened.append(fd)
        last = parts[-1]
        try:
            st: Any = os.stat(last, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if member.isdir():
            if st is not None and stat.S_ISDIR(st.st_mode):
                return None
            if st is not None:
                os.unlink(last, dir_fd=fd)
            os.mkdir(last, (member.mode & 0o777) | 0o700, dir_fd=fd)
            _give(last, fd, owner)
            return None
        if st is not None and stat.S_ISDIR(st.st_mode):
            return "a folder is in the way; left out"
        if st is not None:
            os.unlink(last, dir_fd=fd)
        if member.issym():
            os.symlink(member.linkname, last, dir_fd=fd)
            _give(last, fd, owner)
            return None
        out = os.open(last, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      member.mode & 0o777 | 0o600, dir_fd=fd)
        with os.fdopen(out, "wb") as f:
            data = tar.extractfile(member)
            left = member.size
            while left > 0 and data is not None:
                chunk = data.read(min(left, 1 << 20))
                if not chunk:
                    break
                f.write(chunk)
                left -= len(chunk)
            if owner is not None:
                os.fchown(out, *owner)
            os.utime(out, (member.mtime, member.mtime))
        return None
    finally:
        for f in opened:
            os.close(f)


def _give(name: str, dir_fd: int, owner: tuple[int, int] | None) -> None:
    if owner is not None:
        os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)
