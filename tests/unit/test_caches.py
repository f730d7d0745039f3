"""Pipeline caches' decisions (apiary.core.caches): keys, paths, scopes, which cache, what to evict."""

from __future__ import annotations

import pytest

from apiary.core.caches import (
    CacheError,
    Stored,
    cache_path,
    check_template,
    choose,
    compile_caches,
    evict,
    hash_globs,
    job_fields,
    part_fault,
    render,
    scopes,
    upload_fault,
)
from apiary.core.pipeline import PipelineError, load_pipeline


@pytest.mark.parametrize("template", [
    "pip-{{ hashFiles('requirements*.txt') }}",
    "pip-{{hashFiles('a.txt', \"b/**/*.lock\")}}",
    "{{ os }}-{{ arch }}-{{ branch }}",
    "py-{{ parameters.PY }}",
    "plain",
])
def test_templates_accepted(template: str) -> None:
    check_template(template, ["PY"], "cache[0].key")


@pytest.mark.parametrize("template, problem", [
    ("{{ env.HOME }}", "unknown {{ env.HOME }}"),
    ("{{ parameters.NOPE }}", "no parameter 'NOPE' is declared"),
    ("pip-{{ hashFiles(requirements.txt) }}", "hashFiles takes quoted patterns"),
    ("pip-{{ hashFiles() }}", "hashFiles takes 1 to"),
    ("pip-{{ hashFiles('/etc/passwd') }}", "relative to the workspace"),
    ("pip-{{ hashFiles('../x') }}", "relative to the workspace"),
    ("pip-{{ branch }", "a '{{' without its '}}'"),
    ("{{ __import__('os') }}", "unknown"),
])
def test_templates_refused(template: str, problem: str) -> None:
    with pytest.raises(CacheError) as info:
        check_template(template, ["PY"], "cache[0].key")
    assert problem in info.value.problem


def test_hash_globs() -> None:
    assert hash_globs("hashFiles('a', \"b*\" )") == ["a", "b*"]


def test_render_fills_in() -> None:
    seen = []

    def hashed(globs: list[str]) -> str:
        seen.append(globs)
        return "abc"

    key = render("pip-{{ os }}-{{ arch }}-{{ branch }}-{{ parameters.PY }}-{{ parameters.UNSET }}-"
                 "{{ hashFiles('req*.txt') }}", branch="main", os_name="linux", arch="x86_64",
                 parameters={"PY": "3.12"}, hash_files=hashed)
    assert key == "pip-linux-x86_64-main-3.12--abc"
    assert seen == [["req*.txt"]]


@pytest.mark.parametrize("given, kept", [
    ("~/.cache/pip", "~/.cache/pip"),
    ("~/.cache/pip/", "~/.cache/pip"),
    ("~", "~"),
    ("node_modules", "node_modules"),
    ("./build/./out/", "build/out"),
])
def test_paths_kept(given: str, kept: str) -> None:
    assert cache_path(given, "p") == kept


@pytest.mark.parametrize("given, problem", [
    ("/etc", "no other absolute path"),
    ("~/../root", "no '..'"),
    ("a/../../b", "no '..'"),
    ("~root/.ssh", "not another user's"),
    (".", "the whole workspace"),
    ("", "must be a path"),
    (3, "must be a path"),
])
def test_paths_refused(given: object, problem: str) -> None:
    with pytest.raises(CacheError) as info:
        cache_path(given, "p")
    assert problem in info.value.problem


def test_pipeline_refuses_with_file_line_and_field() -> None:
    text = "cache:\n  - key: pip\n    paths: [~/.cache/pip, /etc]\nstages:\n  - name: a\n    steps: [echo]\n"
    with pytest.raises(PipelineError) as info:
        load_pipeline(text)
    assert str(info.value).startswith(".apiary.yml, line 3: cache[0].paths[1]: '/etc' must be inside")


def test_pipeline_compiles_and_compiles_again() -> None:
    text = ("parameters: {PY: '3.12'}\ncache: [{key: \"pip-{{ hashFiles('requirements*.txt') }}\", "
            "paths: [~/.cache/pip, node_modules/], restore_keys: [pip-]}]\nstages: [{name: a, steps: [echo]}]\n")
    compiled = load_pipeline(text)
    assert compiled["cache"] == [{"key": "pip-{{ hashFiles('requirements*.txt') }}",
                                  "paths": ["~/.cache/pip", "node_modules"], "restore_keys": ["pip-"]}]
    assert compile_caches(compiled["cache"]) == compiled["cache"]


@pytest.mark.parametrize("value, problem", [
    ("pip", "must be a list"),
    ([{"key": "a"}], "must be a non-empty list of paths"),
    ([{"key": "a", "paths": ["x"], "when": 1}], "unknown key 'when'"),
    ([{"key": "a", "paths": ["x"]}, {"key": "a", "paths": ["y"]}], "the key of an earlier cache"),
    ([{"key": "", "paths": ["x"]}], "one-line string"),
])
def test_entries_refused(value: object, problem: str) -> None:
    with pytest.raises(CacheError) as info:
        compile_caches(value)
    assert problem in info.value.problem


@pytest.mark.parametrize("job, default, write, read", [
    ({"kind": "push", "ref": {"branch": "main"}}, "main", "main", ("main",)),
    ({"kind": "push", "ref": {"branch": "feature"}}, "main", "feature", ("feature", "main")),
    ({"kind": "manual", "ref": {"branch": "feature"}}, "main", "feature", ("feature", "main")),
    # a pull request from a fork whose branch is called main: never the repository's main
    ({"kind": "fork", "ref": {"fetch": "refs/pull/7/merge", "branch": "main"}}, "main",
     "pull:refs/pull/7/merge", ("pull:refs/pull/7/merge", "main")),
    ({"kind": "pull_request", "ref": {"fetch": "refs/pull/8/head"}}, "main",
     "pull:refs/pull/8/head", ("pull:refs/pull/8/head", "main")),
    ({"kind": "tag", "ref": {"fetch": "refs/tags/v1"}}, "main", "ref:refs/tags/v1", ("ref:refs/tags/v1", "main")),
])
def test_scopes(job: dict, default: str, write: str, read: tuple[str, ...]) -> None:
    assert scopes(job, default).write == write
    assert scopes(job, default).read == read


_STORED = [
    Stored("1", "main", "pip-aaa", 10, used=1.0),
    Stored("2", "main", "pip-bbb", 10, used=5.0),
    Stored("3", "feature", "pip-ccc", 10, used=2.0),
    Stored("4", "pull:refs/pull/7/merge", "pip-zzz", 10, used=9.0),
]


@pytest.mark.parametrize("key, restore, read, chosen", [
    ("pip-aaa", [], ("feature", "main"), "1"),  # exact, on the default branch
    ("pip-ccc", [], ("feature", "main"), "3"),  # exact, its own
    ("pip-new", ["pip-"], ("feature", "main"), "3"),  # its own scope's prefix match before main's
    ("pip-new", ["pip-"], ("main",), "2"),  # the most recently used of the prefix matches
    ("pip-new", [], ("main",), None),  # no restore keys: a miss
    ("npm-x", ["npm-"], ("feature", "main"), None),
    ("pip-zzz", ["pip-"], ("other", "main"), "2"),  # another pull request's cache is not seen
])
def test_choose(key: str, restore: list[str], read: tuple[str, ...], chosen: str | None) -> None:
    found = choose(_STORED, key, restore, read)
    assert (found.id if found else None) == chosen


@pytest.mark.parametrize("sizes_used, cap, keep, gone", [
    ([("a", 10, 1.0), ("b", 10, 2.0), ("c", 10, 3.0)], 30, None, []),
    ([("a", 10, 1.0), ("b", 10, 2.0), ("c", 10, 3.0)], 25, None, ["a"]),
    ([("a", 10, 3.0), ("b", 10, 2.0), ("c", 10, 1.0)], 15, None, ["c", "b"]),
    ([("a", 10, 1.0), ("new", 10, 0.5)], 15, "new", ["a"]),  # the one just saved goes last
    ([("a", 10, 1.0), ("new", 40, 9.0)], 15, "new", ["a", "new"]),  # ... unless it alone is over
    ([("a", 10, 1.0), ("b", 10, 1.0)], 15, None, ["a"]),  # a tie: the older id
    ([("a", 10**12, 1.0)], 0, None, []),  # 0: no cap
])
def test_evict(sizes_used: list[tuple[str, int, float]], cap: int, keep: str | None, gone: list[str]) -> None:
    stored = [Stored(i, "main", "k" + i, size, used) for i, size, used in sizes_used]
    assert evict(stored, cap, keep) == gone


@pytest.mark.parametrize("sizes_used, cap, uploading, gone", [
    ([("a", 10, 1.0), ("b", 10, 2.0)], 30, 10, []),
    ([("a", 10, 1.0), ("b", 10, 2.0)], 30, 15, ["a"]),  # uploads in progress count
    ([("a", 10, 1.0), ("b", 10, 2.0)], 30, 25, ["a", "b"]),
    ([("a", 10, 1.0)], 0, 10**12, []),  # 0: no cap
])
def test_evict_counts_uploads_in_progress(sizes_used: list[tuple[str, int, float]], cap: int, uploading: int,
                                          gone: list[str]) -> None:
    stored = [Stored(i, "main", "k" + i, size, used) for i, size, used in sizes_used]
    assert evict(stored, cap, None, uploading=uploading) == gone


P = 100  # a part's bytes, for the table


@pytest.mark.parametrize("part, parts, size, length, cap, problem", [
    (0, 1, 40, 40, 1000, None),
    (0, 3, 250, 100, 1000, None),
    (2, 3, 250, 50, 1000, None),  # the last part: the rest
    (0, 1, 0, 0, 1000, None),
    (0, 1, 10**12, 0, 0, "1 parts for"),  # cap 0: no cap, the layout is still checked
    (0, 10**9, 250, 100, 1000, "1,000,000,000 parts for 250 bytes"),  # an upload that never completes
    (5, 11, 1000, 100, 1000, "11 parts for 1,000 bytes"),  # one part more than the cap allows
    (0, 3, 250, 101, 1000, "part 0 has 101 bytes where 100 belong"),  # a part over the part size
    (2, 3, 250, 60, 1000, "part 2 has 60 bytes where 50 belong"),  # data beyond the declared size
    (0, 1, 10, 90, 1000, "part 0 has 90 bytes where 10 belong"),  # a size smaller than the data
    (0, 11, 1001, 100, 1000, "1,001 bytes, over the repository's cap of 1,000"),
    (3, 3, 250, 50, 1000, "makes no sense"),
    (0, 0, 0, 0, 1000, "makes no sense"),
    (0, 1, -5, 0, 1000, "makes no sense"),
])
def test_part_fault(part: int, parts: int, size: int, length: int, cap: int, problem: str | None) -> None:
    found = part_fault(part, parts, size, length, cap, P)
    assert (found is None) if problem is None else (found is not None and problem in found), found


@pytest.mark.parametrize("size, uploading, cap, refused", [
    (400, 0, 1000, False),
    (400, 600, 1000, False),
    (400, 601, 1000, True),  # the uploads in progress and this one: over the cap
    (10**12, 10**12, 0, False),  # 0: no cap
])
def test_upload_fault(size: int, uploading: int, cap: int, refused: bool) -> None:
    assert (upload_fault(size, uploading, cap) is not None) == refused


@pytest.mark.parametrize("body, fields", [
    ({"index": 0, "key": "k", "state": "hit", "restored_key": "k0", "scope": "main", "size": 5},
     {"caches.0.key": "k", "caches.0.restore": "hit", "caches.0.restored_key": "k0", "caches.0.scope": "main",
      "caches.0.size": 5}),
    ({"index": 1, "key": "k", "state": "miss"}, {"caches.1.key": "k", "caches.1.restore": "miss"}),
    ({"index": 1, "key": "k", "state": "saved", "size": 7, "files": 2},
     {"caches.1.key": "k", "caches.1.save": "saved", "caches.1.saved_size": 7, "caches.1.files": 2}),
    ({"index": 0, "key": "k", "state": "part", "part": 0, "parts": 1, "data": b"x"}, {}),
    ({"index": 99, "key": "k", "state": "hit"}, {}),
])
def test_job_fields(body: dict, fields: dict) -> None:
    assert job_fields(body) == fields
