"""Caches: what a pipeline's ``cache:`` says, and the decisions made from it. Pure, no I/O.

``cache: [{key: "pip-{{ hashFiles('requirements*.txt') }}", paths: [~/.cache/pip, node_modules],
restore_keys: ["pip-"]}]`` (top level of a pipeline). Each entry is saved after a passing job and
restored after the checkout of the next one (drone/caches.py does the files, queen/caches.py the
storing). Keys are templates: ``{{ hashFiles('glob', ...) }}`` (a digest of the workspace's files
that match, after the checkout), ``{{ branch }}``, ``{{ os }}``, ``{{ arch }}`` and
``{{ parameters.NAME }}`` (a declared parameter); ``restore_keys`` are templates too, used as
prefixes when no cache has the exact key. Paths are inside the job's home (``~/...``) or the
workspace (relative); no ``..``, no other absolute path.

Where a cache is kept (its *scope*): a push, tag, manual or scheduled job of branch B writes B's
and reads B's, then the default branch's; a pull or merge request writes only a scope of its own
(``pull:<ref>``, a name no branch can have: git refuses ':' in ref names) and reads it, then the
default branch's. So no job but one of the default branch can put a cache where other branches
will find it (cache poisoning, docs/security.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .fields import kind_of

MAX_CACHES = 8  # entries in a pipeline's `cache:`
MAX_PATHS = 32  # paths per entry
MAX_KEY = 512  # characters of a key once filled in
MAX_RESTORE_KEYS = 8
MAX_GLOBS = 16  # patterns in one hashFiles()
KEYS = ("key", "paths", "restore_keys")

_PLACE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_HASH = re.compile(r"^hashFiles\((.*)\)$", re.DOTALL)
_QUOTED = re.compile(r"""\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*(?:,|$)""")
_PLAIN = ("branch", "os", "arch")
_PARAM = re.compile(r"^parameters\.([A-Za-z_][A-Za-z0-9_]*)$")


class CacheError(InputError):
    """A `cache:` entry that does not validate: `path` below the pipeline, `problem` what is wrong."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}", field=path)
        self.path, self.problem = path, problem


# -- compiling -----------------------------------------------------------------------

def compile_caches(value: Any, parameters: Sequence[str] = (), at: str = "cache") -> list[dict[str, Any]]:
    """The compiled ``cache`` list: [{key, paths, restore_keys}] with paths as written (``~/x`` or
    ``dir/x``, ``./`` dropped, trailing ``/`` dropped). A mapping is one entry. Raises CacheError."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise CacheError(at, f"must be a list of {{key, paths}} mappings, got {kind_of(value)}")
    if len(value) > MAX_CACHES:
        raise CacheError(at, f"at most {MAX_CACHES} caches, got {len(value)}")
    out, seen = [], set()
    for i, entry in enumerate(value):
        where = f"{at}[{i}]"
        if not isinstance(entry, dict):
            raise CacheError(where, f"must be a mapping with 'key' and 'paths', got {kind_of(entry)}")
        for name in entry:
            if name not in KEYS:
                raise CacheError(f"{where}.{name}", f"unknown key {name!r} (allowed: {', '.join(KEYS)})")
        key = entry.get("key")
        if not isinstance(key, str) or not key.strip() or "\n" in key or len(key) > MAX_KEY:
            raise CacheError(f"{where}.key", f"must be a one-line string of 1 to {MAX_KEY} characters, "
                             f"got {kind_of(key)}")
        check_template(key, parameters, f"{where}.key")
        if key in seen:
            raise CacheError(f"{where}.key", f"{key!r} is the key of an earlier cache too")
        seen.add(key)
        paths = entry.get("paths")
        if not isinstance(paths, list) or not paths:
            raise CacheError(f"{where}.paths", f"must be a non-empty list of paths, got {kind_of(paths)}")
        if len(paths) > MAX_PATHS:
            raise CacheError(f"{where}.paths", f"at most {MAX_PATHS} paths, got {len(paths)}")
        clean = [cache_path(p, f"{where}.paths[{j}]") for j, p in enumerate(paths)]
        restore = entry.get("restore_keys")
        if restore is None:
            restore = []
        if isinstance(restore, str):
            restore = [restore]
        if not isinstance(restore, list) or len(restore) > MAX_RESTORE_KEYS:
            raise CacheError(f"{where}.restore_keys", f"must be a list of at most {MAX_RESTORE_KEYS} key "
                             f"prefixes, got {kind_of(restore)}")
        for j, prefix in enumerate(restore):
            if not isinstance(prefix, str) or not prefix.strip() or "\n" in prefix or len(prefix) > MAX_KEY:
                raise CacheError(f"{where}.restore_keys[{j}]", f"must be a one-line string of 1 to {MAX_KEY} "
                                 f"characters, got {kind_of(prefix)}")
            check_template(prefix, parameters, f"{where}.restore_keys[{j}]")
        out.append({"key": key, "paths": clean, "restore_keys": list(restore)})
    return out


def cache_path(value: Any, at: str) -> str:
    """A path as kept: ``~/rel`` (the job's home) or ``rel`` (the workspace). Raises CacheError."""
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\0" in value:
        raise CacheError(at, f"must be a path in the home (~/...) or the workspace, got {kind_of(value)}")
    text = value.strip()
    home = text == "~" or text.startswith("~/")
    if text.startswith("~") and not home:
        raise CacheError(at, f"{value!r}: only the job's own home (~/...), not another user's")
    rel = text[1:].lstrip("/") if home else text
    if rel.startswith("/"):
        raise CacheError(at, f"{value!r} must be inside the job's home (~/...) or the workspace (a relative "
                         "path): no other absolute path")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CacheError(at, f"{value!r} must stay inside the home or the workspace (no '..')")
    if not parts and not home:
        raise CacheError(at, f"{value!r}: the whole workspace cannot be a cache (name folders in it)")
    rel = "/".join(parts)
    return ("~/" + rel if rel else "~") if home else rel


def split_path(path: str) -> tuple[str, str]:
    """("home" or "workspace", the path relative to it) of a compiled cache path."""
    if path == "~" or path.startswith("~/"):
        return "home", path[2:]
    return "workspace", path


def check_template(template: str, parameters: Sequence[str], at: str) -> None:
    """Raise CacheError unless every ``{{ ... }}`` of `template` is one this module fills in."""
    for match in _PLACE.finditer(template):
        expr = match.group(1).strip()
        if expr in _PLAIN:
            continue
        param = _PARAM.match(expr)
        if param:
            if param.group(1) not in parameters:
                raise CacheError(at, f"{{{{ {expr} }}}}: no parameter {param.group(1)!r} is declared")
            continue
        if _HASH.match(expr):
            hash_globs(expr, at)
            continue
        raise CacheError(at, f"unknown {{{{ {expr[:60]} }}}}: use {{{{ hashFiles('glob', ...) }}}}, {{{{ branch }}}}, "
                         "{{ os }}, {{ arch }} or {{ parameters.NAME }}")
    rest = _PLACE.sub("", template)
    if "{{" in rest or "}}" in rest:
        raise CacheError(at, "a '{{' without its '}}' (write {{ branch }})")


def hash_globs(expr: str, at: str = "cache") -> list[str]:
    """The patterns of ``hashFiles('a', "b")``: quoted, relative to the workspace. Raises CacheError."""
    match = _HASH.match(expr.strip())
    if match is None:
        raise CacheError(at, f"{expr!r} is not hashFiles('glob', ...)")
    args, globs, pos = match.group(1), [], 0
    while pos < len(args):
        if not args[pos:].strip():
            break
        quoted = _QUOTED.match(args, pos)
        if quoted is None:
            raise CacheError(at, f"hashFiles takes quoted patterns separated by commas: hashFiles('requirements*.txt'), "
                             f"got hashFiles({args[:60]})")
        globs.append(quoted.group(1) if quoted.group(1) is not None else quoted.group(2))
        pos = quoted.end()
    if not globs or len(globs) > MAX_GLOBS:
        raise CacheError(at, f"hashFiles takes 1 to {MAX_GLOBS} patterns, got {len(globs)}")
    for glob in globs:
        if not glob or glob.startswith("/") or ".." in glob.split("/"):
            raise CacheError(at, f"hashFiles({glob!r}): patterns are relative to the workspace (no leading '/', "
                             "no '..')")
    return globs


# -- filling in ----------------------------------------------------------------------

# (patterns) -> a hex digest of the workspace's files that match ("" when none does)
HashFn = Callable[[list[str]], str]


def render(template: str, *, branch: str, os_name: str, arch: str, parameters: Mapping[str, str],
           hash_files: HashFn) -> str:
    """`template` filled in, cut to MAX_KEY. An unset parameter is ''; so is a hashFiles nothing matched."""
    def fill(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        if expr == "branch":
            return branch
        if expr == "os":
            return os_name
        if expr == "arch":
            return arch
        param = _PARAM.match(expr)
        if param:
            return str(parameters.get(param.group(1), ""))
        return hash_files(hash_globs(expr))

    return _PLACE.sub(fill, template)[:MAX_KEY]


# -- where a job's caches are kept ---------------------------------------------------

@dataclass(frozen=True)
class Scopes:
    """Where a job saves its caches (`write`) and where it looks, in order (`read`)."""

    write: str
    read: tuple[str, ...]


def scopes(job: Mapping[str, Any], default_branch: str) -> Scopes:
    """A job's cache scopes, from the job document (never from what its drone says): a branch job's
    branch, then the default branch; a pull or merge request's (or any job without a branch) a scope
    of its own (``pull:<ref>``, ``ref:<ref>``), then the default branch."""
    ref = job.get("ref") or {}
    kind = str(job.get("kind") or "")
    branch = str(ref.get("branch") or "")
    if kind in ("pull_request", "fork"):
        own = "pull:" + str(ref.get("fetch") or branch or job.get("_id") or "")
    elif branch:
        own = branch
    else:
        own = "ref:" + str(ref.get("fetch") or job.get("_id") or "")
    read = (own,) if own == default_branch or not default_branch else (own, default_branch)
    return Scopes(own, read)


@dataclass(frozen=True)
class Stored:
    """A cache as the queen keeps it: id, scope, key, compressed size (bytes), last use (seconds since 1970)."""

    id: str
    scope: str
    key: str
    size: int = 0
    used: float = 0.0


def choose(stored: Iterable[Stored], key: str, restore_keys: Sequence[str], read: Sequence[str]) -> Stored | None:
    """The cache a job restores: for each scope in `read` order, the one with exactly `key`, else the
    most recently used whose key starts with the first restore key that matches any, then the next; None
    when nothing matches."""
    by_scope: dict[str, list[Stored]] = {}
    for s in stored:
        by_scope.setdefault(s.scope, []).append(s)
    for scope in read:
        here = sorted(by_scope.get(scope, []), key=lambda s: (-s.used, s.id))
        exact = [s for s in here if s.key == key]
        if exact:
            return exact[0]
        for prefix in restore_keys:
            if not prefix:
                continue
            hit = [s for s in here if s.key.startswith(prefix)]
            if hit:
                return hit[0]
    return None


def evict(stored: Iterable[Stored], cap: int, keep: str | None = None, uploading: int = 0) -> list[str]:
    """Ids to delete so the rest and `uploading` (bytes the repository's incomplete uploads declare: they
    count, but are not evicted) fit in `cap` bytes: least recently used first (older id first on a tie);
    `keep` (the cache just saved) goes last, and only when it alone is over the cap. cap 0: no cap."""
    items = list(stored)
    if cap <= 0:
        return []
    total = sum(s.size for s in items) + uploading
    out = []
    for s in sorted(items, key=lambda s: (s.id == keep, s.used, s.id)):
        if total <= cap:
            break
        out.append(s.id)
        total -= s.size
    return out


def part_fault(part: int, parts: int, size: int, length: int, cap: int, part_bytes: int) -> str | None:
    """Why the queen does not store part `part` (`length` bytes) of a cache upload the drone says is
    `parts` parts of `size` bytes (the tar.zst), or None. `cap`: the repository's cache_max_bytes (0: no
    cap); `part_bytes`: the protocol's part size. A drone splits its tar exactly (every part `part_bytes`
    but the last), so the layout is checked exactly: a `parts` beyond what `size` needs (an upload that
    never completes) and data beyond `size` (a cap that undercounts) are refused. Pure."""
    if size < 0 or parts < 1 or not 0 <= part < parts:
        return f"part {part} of {parts} of {size} bytes makes no sense"
    if cap > 0 and size > cap:
        return f"{size:,} bytes, over the repository's cap of {cap:,}"
    need = max(1, -(-size // part_bytes))
    if parts != need:
        return f"{parts:,} parts for {size:,} bytes (parts of {part_bytes:,} bytes: {need:,})"
    want = part_bytes if part < parts - 1 else size - (parts - 1) * part_bytes
    if length != want:
        return f"part {part} has {length:,} bytes where {want:,} belong"
    return None


def upload_fault(size: int, uploading: int, cap: int) -> str | None:
    """Why a new cache upload of `size` bytes is refused while the repository's other incomplete uploads
    declare `uploading` bytes, or None. Uploads in progress count toward the cap (they hold store space
    until they complete or go stale) and are never evicted for each other, so together they must fit.
    cap 0: no cap. Pure."""
    if cap > 0 and uploading + size > cap:
        return (f"{size:,} bytes while the repository's uploads in progress hold {uploading:,}: over its cap "
                f"of {cap:,}")
    return None


# -- what a job records --------------------------------------------------------------

_RESTORE_STATES = ("hit", "miss", "refused")
_SAVE_STATES = ("saved", "skipped")


def job_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``$set`` fields a ``job:cache`` event records on its job: ``caches.<index>.{key, restore (hit,
    miss, refused), restored_key, scope, size, save (saved, skipped), saved_size, files, note}``. Parts
    being saved record nothing."""
    index, state = body.get("index"), body.get("state")
    if not isinstance(index, int) or not 0 <= index < MAX_CACHES or state not in (*_RESTORE_STATES, *_SAVE_STATES):
        return {}
    at = f"caches.{index}"
    fields: dict[str, Any] = {f"{at}.key": str(body.get("key") or "")[:MAX_KEY]}
    if "note" in body:
        fields[f"{at}.note"] = str(body["note"])[:300]
    if state in _RESTORE_STATES:
        fields[f"{at}.restore"] = state
        for name in ("restored_key", "scope"):
            if isinstance(body.get(name), str):
                fields[f"{at}.{name}"] = body[name][:MAX_KEY]
        if isinstance(body.get("size"), int):
            fields[f"{at}.size"] = body["size"]
    else:
        if state == "skipped" and not fields[f"{at}.key"]:
            fields[f"{at}.restore"] = "skipped"  # no key could be made: neither restored nor saved
        fields[f"{at}.save"] = state
        if isinstance(body.get("size"), int):
            fields[f"{at}.saved_size"] = body["size"]
        if isinstance(body.get("files"), int):
            fields[f"{at}.files"] = body["files"]
    return fields
