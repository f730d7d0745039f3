"""Pipeline caches through a real queen, real drones and a real git repository: saved after a passing job,
restored after the checkout of the next, by key, restore keys and the default branch; a pull request
from a fork never writes where other branches look; the repository's caches stay under their cap, uploads in
progress included, and the store keeps no upload that breaks its declared layout; a cache that would restore
files outside the job's home and workspace is refused whole."""

from __future__ import annotations

import asyncio
import io
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from apiary.core.protocol import ARTIFACT_PART_BYTES, PROTOCOL_VERSION, Msg, decode, encode
from apiary.queen.store import Store
from apiary.queen.store.caches import CacheUploadRefused
from tests.cluster import Cluster
from tests.e2e.test_client import apiary, url
from tests.e2e.test_forges import add_repo, gh_pull_request, gh_push, github_hook, queued_job
from tests.e2e.test_store_and_recorder import store  # noqa: F401  (fixture)
from tests.gitserver import commit, git

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

PIPELINE = """\
cache:
  - key: "pip-{{ hashFiles('requirements*.txt') }}"
    paths: [~/.cache/pip, node_modules]
    restore_keys: ["pip-"]
stages:
  - name: build
    steps: ["sh ci.sh"]
"""

# Says what the cache brought (in the home and in the workspace), then adds its own mark where none is.
CI = """\
echo "home=$(cat ~/.cache/pip/stamp 2>/dev/null || echo none) ws=$(cat node_modules/stamp 2>/dev/null || echo none) \
poison=$(cat ~/.cache/pip/poison 2>/dev/null || echo none)"
mkdir -p ~/.cache/pip node_modules
[ -f ~/.cache/pip/stamp ] || echo "job$APIARY_JOB_NUMBER" > ~/.cache/pip/stamp
[ -f node_modules/stamp ] || echo "job$APIARY_JOB_NUMBER" > node_modules/stamp
"""


def _repo(root: Path) -> tuple[Path, str]:
    work = root / "work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    commit(work, {".apiary.yml": PIPELINE, "ci.sh": CI, "requirements.txt": "flask==3\n"}, "first")
    bare = root / "proj.git"
    git(root, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", str(bare), "main")
    return work, bare.as_uri()


async def _run(queen: Cluster, repo: str = "proj", **body: Any) -> tuple[dict[str, Any], str]:
    job = await queen.wait_job((await queen.trigger(repo, **body))["id"])
    text = "".join(e.get("text", "") for e in await queen.events(job["id"]))
    assert job["status"] == "passed", (job, text)
    line = next(t for t in text.splitlines() if t.startswith(("home=", "poison=")))
    return job, line


async def test_saved_restored_by_key_then_restore_keys_then_the_default_branch(queen: Cluster, tmp_path: Path) -> None:
    work, url = _repo(tmp_path / "git")
    await queen.add_drone("d1")
    await queen.request("POST", "/repos", {"name": "proj", "url": url}, expect=201)

    first, seen = await _run(queen)
    assert seen == "home=none ws=none poison=none"
    cache = first["caches"]["0"]
    assert (cache["restore"], cache["save"]) == ("miss", "saved") and cache["saved_size"] > 0
    key = cache["key"]
    assert key.startswith("pip-") and len(key) == 4 + 64

    second, seen = await _run(queen)  # the same files: the exact key, from this branch
    assert seen == f"home=job{first['number']} ws=job{first['number']} poison=none"
    cache = second["caches"]["0"]
    assert (cache["restore"], cache["restored_key"], cache["scope"], cache.get("save")) == ("hit", key, "main", None)

    commit(work, {"requirements.txt": "flask==3\nrequests==2\n"}, "more requirements")
    git(work, "push", "-q", url.removeprefix("file://"), "main")
    third, seen = await _run(queen)  # a new key: the restore key finds the older cache, this job saves its own
    assert seen == f"home=job{first['number']} ws=job{first['number']} poison=none"
    cache = third["caches"]["0"]
    assert cache["key"] != key and (cache["restore"], cache["restored_key"], cache["save"]) == ("hit", key, "saved")

    git(work, "checkout", "-q", "-b", "feature")
    commit(work, {"feature.txt": "f\n"}, "a feature")
    git(work, "push", "-q", url.removeprefix("file://"), "feature")
    branch, seen = await _run(queen, branch="feature")  # nothing of its own yet: the default branch's
    cache = branch["caches"]["0"]
    assert (cache["restore"], cache["scope"], cache["restored_key"]) == ("hit", "main", third["caches"]["0"]["key"])

    listed = (await queen.get("/repos/proj/caches"))["caches"]
    assert sorted((c["scope"], c["key"]) for c in listed) == sorted([("main", key), ("main", third["caches"]["0"]["key"])])
    assert all(c["size"] > 0 for c in listed)


async def test_a_fork_pull_request_writes_only_its_own_scope(queen: Cluster) -> None:
    """Through GitHub's webhooks: a push to main saves; a pull request from a fork restores main's cache,
    poisons it and saves it, where only it looks; another branch still gets main's, unpoisoned."""
    await queen.add_drone("d1")
    await add_repo(queen, "github", pipeline=r"""
cache: [{key: "deps-{{ branch }}", paths: [~/.cache/pip], restore_keys: [deps-]}]
stages:
  - name: build
    steps:
      - 'echo "poison=$(cat ~/.cache/pip/poison 2>/dev/null || echo none)"; mkdir -p ~/.cache/pip; echo ok > ~/.cache/pip/ok'
      - 'if [ -z "$APIARY_BRANCH" ]; then echo poisoned > ~/.cache/pip/poison; fi'
""", config={"pull_request_type": "TEST"})
    push = await queen.wait_job((await queued_job(queen, *await github_hook(queen, "push", gh_push())))["id"])
    assert (push["status"], push["caches"]["0"]["save"]) == ("passed", "saved")

    fork = await queued_job(queen, *await github_hook(queen, "pull_request", gh_pull_request()))
    fork = await queen.wait_job(fork["id"])
    assert (fork["kind"], fork["status"]) == ("fork", "passed")
    cache = fork["caches"]["0"]
    assert (cache["restore"], cache["scope"], cache["restored_key"], cache["save"]) == ("hit", "main", "deps-main",
                                                                                         "saved")
    listed = {(c["scope"], c["key"]) for c in (await queen.get("/repos/app/caches"))["caches"]}
    assert listed == {("main", "deps-main"), ("pull:refs/pull/7/head", "deps-")}

    other, seen = await _run(queen, "app", branch="other")  # deps-other: by the prefix, main's; never the fork's
    assert (other["caches"]["0"]["scope"], other["caches"]["0"]["restored_key"]) == ("main", "deps-main")
    assert seen == "poison=none"


async def test_one_cache_shared_by_the_drones_through_the_queen(queen: Cluster, tmp_path: Path) -> None:
    _, url = _repo(tmp_path / "git")
    await queen.add_drone("d1")
    await queen.request("POST", "/repos", {"name": "proj", "url": url}, expect=201)
    first, _ = await _run(queen)
    await queen.drones.pop("d1").stop()
    await queen.add_drone("d2", capacity=2)  # another drone, two jobs at once: both from the queen's copy
    both = await asyncio.gather(_run(queen), _run(queen))
    for job, seen in both:
        assert job["drone"] == "d2"
        assert seen == f"home=job{first['number']} ws=job{first['number']} poison=none"
        assert job["caches"]["0"]["restore"] == "hit"


async def test_the_repository_caches_stay_under_the_cap_least_recently_used_first(cluster: Cluster,
                                                                                  tmp_path: Path) -> None:
    await cluster.start_queen(env={"APIARY_QUEEN_CACHE_MAX_BYTES": "250000"})
    await cluster.add_drone("d1")
    await cluster.create_pipeline_repo("proj", """
parameters: {N: {default: "0"}}
cache: [{key: "blob-{{ parameters.N }}", paths: [blob]}]
stages: [{name: make, steps: ["[ -f blob ] || head -c 100000 /dev/urandom > blob"]}]
""")
    saved = []
    for n in ("1", "2", "1", "3"):  # 1 is used again after 2 was saved: 2 is the least recently used
        job = await cluster.wait_job((await cluster.trigger("proj", parameters={"N": n}))["id"])
        assert job["status"] == "passed"
        saved.append(job["caches"]["0"])
    assert [(c["restore"], c.get("save")) for c in saved] == [("miss", "saved"), ("miss", "saved"), ("hit", None),
                                                              ("miss", "saved")]
    listed = (await cluster.get("/repos/proj/caches"))["caches"]
    assert sorted(c["key"] for c in listed) == ["blob-1", "blob-3"]
    assert sum(c["size"] for c in listed) <= 250000
    print(f"caches kept: {[(c['key'], c['size']) for c in listed]}")


async def test_links_out_are_not_saved_and_a_cache_over_the_drone_cap_is_not_saved(cluster: Cluster,
                                                                                  tmp_path: Path) -> None:
    await cluster.start_queen()
    await cluster.add_drone("d1", env={"APIARY_DRONE_CACHE_MAX_BYTES": "500000"})
    outside = tmp_path / "outside"
    outside.mkdir()
    await cluster.create_pipeline_repo("proj", f"""
cache:
  - {{key: links, paths: [deps]}}
  - {{key: huge, paths: [~/big]}}
stages: [{{name: make, steps: ["ls deps/ 2>/dev/null; mkdir -p deps && ln -sfn {outside} deps/out && ln -sfn ../.. deps/up && echo ok > deps/file", "head -c 600000 /dev/urandom > ~/big"]}}]
""")
    first = await cluster.wait_job((await cluster.trigger("proj"))["id"])
    said = "".join(e.get("text", "") for e in await cluster.events(first["id"]))
    assert first["status"] == "passed"
    # Nothing outside was read, and the links a restore would refuse the whole cache for are left out, said.
    assert first["caches"]["0"]["save"] == "saved"
    assert "workspace/deps/out: not saved: a symlink to an absolute path" in said, said
    assert "workspace/deps/up: not saved: a symlink that points out of workspace/" in said, said
    assert first["caches"]["1"]["save"] == "skipped" and "500,000" in first["caches"]["1"]["note"]
    second = await cluster.wait_job((await cluster.trigger("proj"))["id"])
    text = "".join(e.get("text", "") for e in await cluster.events(second["id"]))
    assert second["status"] == "passed"
    assert second["caches"]["0"]["restore"] == "hit", second["caches"]
    assert list(outside.iterdir()) == []
    assert "file\n" in text  # the cache's own file is back (ls deps/ before the step makes them again)


async def test_in_the_sandbox_the_job_user_gets_its_restored_files(queen: Cluster) -> None:
    """bubblewrap, jobs as nobody: ~ is the job's own home inside the sandbox; what is restored there and in
    the workspace is the job user's to change."""
    await queen.add_drone("d1", env={"APIARY_DRONE_SANDBOX": "auto", "APIARY_DRONE_JOB_USER": "nobody"})
    await queen.create_pipeline_repo("boxed", r"""
cache: [{key: deps, paths: [~/.cache/pip, node_modules]}]
stages:
  - name: build
    steps:
      - 'echo "poison=$(cat ~/.cache/pip/stamp 2>/dev/null || echo none) as $(id -un) home $HOME"'
      - 'mkdir -p ~/.cache/pip/sub node_modules && echo more >> ~/.cache/pip/stamp && touch ~/.cache/pip/sub/x node_modules/y'
""")
    first, seen = await _run(queen, "boxed")
    assert seen == "poison=none as nobody home /tmp/home" and first["caches"]["0"]["save"] == "saved"
    second, seen = await _run(queen, "boxed")  # its writes into what was restored passed: the files are nobody's
    assert seen == "poison=more as nobody home /tmp/home" and second["caches"]["0"]["restore"] == "hit"


async def test_a_cache_path_outside_the_home_and_workspace_is_refused_at_trigger_time(queen: Cluster,
                                                                                      tmp_path: Path) -> None:
    work, url = _repo(tmp_path / "git")
    commit(work, {".apiary.yml": PIPELINE.replace("[~/.cache/pip, node_modules]", "[~/.cache/pip, /etc]")}, "bad")
    git(work, "push", "-q", url.removeprefix("file://"), "main")
    await queen.request("POST", "/repos", {"name": "proj", "url": url}, expect=201)
    status, answer = await queen.request("POST", "/repos/proj/jobs", {})
    assert status == 400
    assert answer["error"] == (".apiary.yml, line 3: cache[0].paths[1]: '/etc' must be inside the job's home (~/...) "
                               "or the workspace (a relative path): no other absolute path"), answer
    assert (await queen.get("/repos/proj/jobs"))["jobs"] == []  # nothing was queued


async def test_the_caches_listed_and_cleared_from_the_terminal(queen: Cluster, tmp_path: Path) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("proj", """
cache: [{key: "deps-{{ branch }}", paths: [deps]}]
stages: [{name: make, steps: ["mkdir -p deps && echo x > deps/x"]}]
""")
    for branch in ("main", "dev"):
        assert (await queen.wait_job((await queen.trigger("proj", branch=branch))["id"]))["status"] == "passed"
    listed = await apiary(tmp_path, "caches", "proj", *url(queen))
    assert listed.code == 0, listed
    rows = [line.split() for line in listed.out.splitlines()]
    assert rows[0] == ["SCOPE", "KEY", "SIZE", "USED"]
    assert sorted(r[:2] for r in rows[1:3]) == [["dev", "deps-dev"], ["main", "deps-main"]]
    assert listed.out.splitlines()[-1].endswith("in all, of 2.0 GiB kept"), listed
    cleared = await apiary(tmp_path, "caches", "proj", "--clear", "--scope", "dev", *url(queen))
    assert (cleared.code, cleared.out) == (0, "proj: 1 cache deleted\n"), cleared
    assert [(c["scope"], c["key"]) for c in (await queen.get("/repos/proj/caches"))["caches"]] == [("main", "deps-main")]
    status, answer = await queen.request("DELETE", "/repos/proj/caches?scope=")
    assert status == 400 and answer["field"] == "scope"


async def test_a_hostile_cache_a_drone_uploaded_is_refused_whole_by_the_next_job(queen: Cluster,
                                                                                 tmp_path: Path) -> None:
    """A drone that is not Apiary's (a bare socket) runs a job and uploads a tar that climbs out of the
    workspace and links out of it; the next job, on a real drone, restores none of it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, link, data in [("workspace/deps/ok", tarfile.REGTYPE, "", b"fine"),
                                       ("workspace/deps/out", tarfile.SYMTYPE, str(outside), b""),
                                       ("workspace/deps/out/pwned", tarfile.REGTYPE, "", b"x"),
                                       ("workspace/../../../escape", tarfile.REGTYPE, "", b"x")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    blob = zstd.compress(raw.getvalue())
    await queen.create_pipeline_repo("proj", """
cache: [{key: deps, paths: [deps]}]
stages: [{name: make, steps: ["ls deps 2>/dev/null; echo listed"]}]
""")
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(queen.endpoint)
    try:
        await sock.send(encode(Msg.DRONE_INFO, {"id": "evil", "capacity": 1, "speed": 1.0, "version": PROTOCOL_VERSION,
                                                "jobs": []}))
        job = await queen.trigger("proj")
        while True:
            kind, body = decode(await asyncio.wait_for(sock.recv(), 10))
            if kind is Msg.QUEUE_NEW:
                break
        head = {"id": body["id"], "attempt": body["attempt"]}
        seq = int(body.get("first_seq") or 1)
        for msg, fields in [(Msg.JOB_STARTED, {"timestamp": time.time()}),
                            (Msg.JOB_CACHE, {"index": 0, "key": "deps", "state": "part", "part": 0, "parts": 1,
                                             "size": len(blob), "data": blob}),
                            (Msg.JOB_CACHE, {"index": 0, "key": "deps", "state": "saved", "size": len(blob)}),
                            (Msg.JOB_DONE, {"timestamp": time.time(), "result": "passed"})]:
            await sock.send(encode(msg, {**head, "seq": seq, **fields}))
            seq += 1
        await queen.wait_job(job["id"])
        await sock.send(encode(Msg.DRONE_BYE, {}))
    finally:
        sock.close()
        ctx.term()
    assert [c["key"] for c in (await queen.get("/repos/proj/caches"))["caches"]] == ["deps"]

    await queen.add_drone("d1")
    second = await queen.wait_job((await queen.trigger("proj"))["id"])
    assert second["status"] == "passed"
    cache = second["caches"]["0"]
    assert cache["restore"] == "refused" and "a symlink to an absolute path" in cache["note"], cache
    assert list(outside.iterdir()) == [] and not list(tmp_path.rglob("escape"))
    text = "".join(e.get("text", "") for e in await queen.events(second["id"]))
    assert "ok" not in text.split("listed")[0]  # not even the harmless file: refused whole


async def test_the_store_holds_only_uploads_that_fit_the_cap_and_their_declared_layout(store: Store) -> None:  # noqa: F811
    """A drone that is not ours sends cache parts: an upload that never completes, data beyond its declared
    size, a size over the cap. Nothing of it is kept; uploads in progress count toward the cap."""
    mib = 2**20
    store.cache_max_bytes = 10 * mib
    part = ARTIFACT_PART_BYTES

    def body(job: str, n: int, parts: int, size: int, data: bytes, key: str = "k") -> tuple[str, str, str, dict]:
        return "app", "main", job, {"index": 0, "key": key, "part": n, "parts": parts, "size": size, "data": data}

    async def held() -> list[tuple[str, bool]]:
        return sorted((d["_id"], d["complete"]) for d in await store.cache_docs.find({}).to_list(None))

    assert await store.save_cache_part(*body("old", 0, 1, 3 * mib, b"o" * 3 * mib))  # a complete cache
    for job, n, parts, size, data, problem in [
        ("j1", 0, 10**6, 100, b"x" * 100, "1,000,000 parts for 100 bytes"),  # never completes
        ("j2", 0, 1, 10, b"x" * 1000, "part 0 has 1,000 bytes where 10 belong"),  # undercounts the cap
        ("j3", 0, 3, 11 * mib, b"x" * part, "over the repository's cap"),
        ("j4", 1, 2, 6 * mib, b"x" * 2 * mib, "an upload the queen does not hold"),  # no first part
    ]:
        with pytest.raises(CacheUploadRefused, match=problem):
            await store.save_cache_part(*body(job, n, parts, size, data))
    assert await held() == [("old:1:0", True)]
    assert len(await store.cache_part_files.find({}, {"_id": 1}).to_list(None)) == 1  # nothing of theirs stored

    # An upload of 8 MiB in progress counts: the complete 3 MiB one is evicted for it, and another of 3 MiB
    # finds no room until it is gone.
    assert not await store.save_cache_part(*body("big", 0, 2, 8 * mib, b"b" * part))
    assert await held() == [("big:1:0", False)]
    with pytest.raises(CacheUploadRefused, match="uploads in progress hold 8,388,608"):
        await store.save_cache_part(*body("small", 0, 1, 3 * mib, b"s" * 3 * mib))
    with pytest.raises(CacheUploadRefused, match="its first part said otherwise"):  # changes its mind halfway
        await store.save_cache_part(*body("big", 1, 3, 9 * mib, b"b" * part))
    assert await held() == []  # dropped whole
    assert await store.save_cache_part(*body("small", 0, 1, 3 * mib, b"s" * 3 * mib))
    assert await held() == [("small:1:0", True)]
