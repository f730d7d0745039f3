"""Reading a pipeline at a ref (queen) and checking a ref out (drone), with real git over file://, HTTP and ssh."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from apiary.core.errors import GitError
from apiary.drone.checkout import CheckoutPlan, checkout_plan
from apiary.queen.gitread import read_at_ref
from tests.gitserver import SampleRepo, commit, git, http_server, keygen, make_repo, ssh_server

TOKEN = "tok-5ecr3t-value"
WRONG_TOKEN = "wrong-4a8b-token"


@dataclass
class Remote:
    """A sample repository as one transport serves it, with credentials that work and ones that do not."""

    kind: str
    url: str
    auth: dict[str, Any] | None
    bad_auth: dict[str, Any] | None
    repo: SampleRepo


@pytest.fixture(scope="session")
def sample_repo(tmp_path_factory: pytest.TempPathFactory) -> SampleRepo:
    return make_repo(tmp_path_factory.mktemp("sample"))


@pytest.fixture
def repo(sample_repo: SampleRepo, tmp_path: Path) -> SampleRepo:
    """A copy of the sample repository this test may change."""
    path = tmp_path / "repos" / sample_repo.path.name
    shutil.copytree(sample_repo.path, path)
    return replace(sample_repo, path=path)


@pytest.fixture(params=["file", "https", "ssh"])
async def remote(request: pytest.FixtureRequest, repo: SampleRepo, tmp_path: Path) -> AsyncIterator[Remote]:
    root = repo.path.parent
    if request.param == "file":
        yield Remote("file", repo.url, None, None, repo)
    elif request.param == "https":
        async with http_server(root, token=TOKEN) as base:
            yield Remote("https", f"{base}/{repo.path.name}", {"type": "https", "token": TOKEN},
                         {"type": "https", "token": WRONG_TOKEN}, repo)
    else:
        async with ssh_server(tmp_path / "sshd", root) as (base, key):
            other_key = keygen(tmp_path / "other_key")
            yield Remote("ssh", f"{base}/{repo.path.name}", {"type": "ssh", "key": key},
                         {"type": "ssh", "key": other_key}, repo)


@pytest.fixture
async def https_remote(repo: SampleRepo) -> AsyncIterator[Remote]:
    async with http_server(repo.path.parent, token=TOKEN) as base:
        yield Remote("https", f"{base}/{repo.path.name}", {"type": "https", "token": TOKEN},
                     {"type": "https", "token": WRONG_TOKEN}, repo)


@pytest.fixture
async def ssh_remote(repo: SampleRepo, tmp_path: Path) -> AsyncIterator[Remote]:
    async with ssh_server(tmp_path / "sshd", repo.path.parent) as (base, key):
        yield Remote("ssh", f"{base}/{repo.path.name}", {"type": "ssh", "key": key},
                     {"type": "ssh", "key": keygen(tmp_path / "other_key")}, repo)


def ref_of(kind: str, repo: SampleRepo) -> tuple[dict[str, str], str]:
    """A job ref of each kind, and the commit it must end on."""
    return {
        "branch": ({"branch": "main"}, repo.shas["main"]),
        "sha": ({"id": repo.shas["feature"]}, repo.shas["feature"]),
        "branch+id": ({"branch": "main", "id": repo.shas["first"]}, repo.shas["first"]),
        "pull": ({"fetch": "refs/pull/7/merge"}, repo.shas["pull"]),
        # What the queen hands a drone after reading the pipeline: the ref with the commit it resolved.
        "pull+id": ({"fetch": "refs/pull/7/merge", "id": repo.shas["pull"]}, repo.shas["pull"]),
    }[kind]


REF_KINDS = ["branch", "sha", "branch+id", "pull", "pull+id"]


# --- the queen reads .apiary.yml at a ref ---------------------------------------------------------

@pytest.mark.parametrize("kind", REF_KINDS)
async def test_reads_the_pipeline_at_each_kind_of_ref(remote: Remote, kind: str, tmp_path: Path) -> None:
    ref, sha = ref_of(kind, remote.repo)
    assert await read_at_ref(tmp_path / "cache", remote.url, ref, remote.auth) == (sha, remote.repo.pipeline[sha])


async def test_a_commit_without_the_file_reads_as_none(remote: Remote, tmp_path: Path) -> None:
    sha = remote.repo.shas["bare"]
    assert await read_at_ref(tmp_path / "cache", remote.url, {"branch": "bare"}, remote.auth) == (sha, None)


async def test_reads_any_path(repo: SampleRepo, tmp_path: Path) -> None:
    assert await read_at_ref(tmp_path / "cache", repo.url, {"branch": "feature"}, None, path="feature.txt") == (
        repo.shas["feature"], "new\n")


async def test_an_unknown_branch_fails_with_gits_message(remote: Remote, tmp_path: Path) -> None:
    with pytest.raises(GitError) as failed:
        await read_at_ref(tmp_path / "cache", remote.url, {"branch": "nope"}, remote.auth)
    message = str(failed.value)
    assert "couldn't find remote ref refs/heads/nope" in message
    assert "branch nope" in message and remote.url in message


async def test_an_unknown_commit_fails_with_gits_message(repo: SampleRepo, tmp_path: Path) -> None:
    with pytest.raises(GitError, match=r"(?s)commit 0{40} of file://.*fatal: .*0{40}"):
        await read_at_ref(tmp_path / "cache", repo.url, {"id": "0" * 40}, None)


async def test_a_branch_that_moves_is_read_at_its_new_tip(repo: SampleRepo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert await read_at_ref(cache, repo.url, {"branch": "main"}, None) == (repo.shas["main"], "v2")
    work = tmp_path / "more"
    git(tmp_path, "clone", "-q", repo.url, str(work))
    sha = commit(work, {".apiary.yml": "v3"}, "v3")
    git(work, "push", "-q", "origin", "main")
    assert await read_at_ref(cache, repo.url, {"branch": "main"}, None) == (sha, "v3")


async def test_concurrent_reads_of_one_url_share_its_cache(repo: SampleRepo, tmp_path: Path) -> None:
    refs = [ref_of(kind, repo) for kind in REF_KINDS] * 3
    results = await asyncio.gather(*(read_at_ref(tmp_path / "cache", repo.url, ref, None) for ref, _ in refs))
    assert [sha for sha, _ in results] == [sha for _, sha in refs]
    assert len(list((tmp_path / "cache").iterdir())) == 1


async def test_a_refused_token_fails_without_showing_it(https_remote: Remote, tmp_path: Path) -> None:
    with pytest.raises(GitError) as failed:
        await read_at_ref(tmp_path / "cache", https_remote.url, {"branch": "main"}, https_remote.bad_auth)
    message = str(failed.value)
    assert "terminal prompts disabled" in message and "token" in message
    assert WRONG_TOKEN not in message and https_remote.url in message


async def test_no_token_for_a_private_repository_fails(https_remote: Remote, tmp_path: Path) -> None:
    with pytest.raises(GitError, match="could not read Username"):
        await read_at_ref(tmp_path / "cache", https_remote.url, {"branch": "main"}, None)


async def test_a_token_with_its_own_username(repo: SampleRepo, tmp_path: Path) -> None:
    async with http_server(repo.path.parent, token=TOKEN, username="ci-bot") as base:
        url = f"{base}/{repo.path.name}"
        auth = {"type": "https", "token": TOKEN, "username": "ci-bot"}
        assert await read_at_ref(tmp_path / "cache", url, {"branch": "main"}, auth) == (repo.shas["main"], "v2")
        with pytest.raises(GitError):
            await read_at_ref(tmp_path / "cache", url, {"branch": "main"}, {"type": "https", "token": TOKEN})


async def test_a_refused_ssh_key_fails_with_sshs_message(ssh_remote: Remote, tmp_path: Path) -> None:
    with pytest.raises(GitError, match="Permission denied"):
        await read_at_ref(tmp_path / "cache", ssh_remote.url, {"branch": "main"}, ssh_remote.bad_auth)


async def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until git is killed and the connection closes
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(GitError, match=r"git fetch of branch main of http://127\.0\.0\.1:\d+/x\.git timed out"):
            await read_at_ref(tmp_path / "cache", f"http://127.0.0.1:{port}/x.git", {"branch": "main"}, None,
                              timeout=0.5)
    finally:
        server.close()
        await server.wait_closed()


# --- the drone checks a ref out --------------------------------------------------------------------

async def run_plan(plan: CheckoutPlan, workspace: Path) -> tuple[int, str]:
    """Run the plan's commands as the executor does: /bin/sh -c each, in order, stop at the first failure."""
    workspace.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(workspace.parent), "GIT_CONFIG_NOSYSTEM": "1", **plan.env}
    output = ""
    for command in plan.commands:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, cwd=workspace, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        output += f"$ {command}\n" + out.decode(errors="replace")
        if proc.returncode:
            return proc.returncode, output
    return 0, output


@pytest.mark.parametrize("kind", REF_KINDS)
async def test_checks_out_each_kind_of_ref(remote: Remote, kind: str, tmp_path: Path) -> None:
    ref, sha = ref_of(kind, remote.repo)
    plan = checkout_plan(remote.url, ref, remote.auth, tmp_path / "private")
    code, output = await run_plan(plan, tmp_path / "ws")
    plan.cleanup()
    assert code == 0, output
    assert git(tmp_path / "ws", "rev-parse", "HEAD") == sha
    assert (tmp_path / "ws" / ".apiary.yml").read_text() == remote.repo.pipeline[sha]
    assert f"checked out {sha}" in output
    assert git(tmp_path / "ws", "status", "--porcelain") == ""


async def test_a_shallow_checkout_still_finds_an_older_commit_of_the_branch(repo: SampleRepo, tmp_path: Path) -> None:
    plan = checkout_plan(repo.url, {"branch": "main", "id": repo.shas["first"]}, None, tmp_path / "private", depth=1)
    code, output = await run_plan(plan, tmp_path / "ws")
    assert code == 0, output
    assert git(tmp_path / "ws", "rev-parse", "HEAD") == repo.shas["first"]
    assert git(tmp_path / "ws", "rev-list", "--count", "HEAD") == "1"


async def test_checking_out_an_unknown_branch_fails_with_gits_message(remote: Remote, tmp_path: Path) -> None:
    code, output = await run_plan(checkout_plan(remote.url, {"branch": "nope"}, remote.auth, tmp_path / "p"),
                                  tmp_path / "ws")
    assert code != 0
    assert "couldn't find remote ref refs/heads/nope" in output
    assert f"apiary: could not fetch branch nope from {remote.url}" in output


async def test_checking_out_an_unknown_commit_fails(repo: SampleRepo, tmp_path: Path) -> None:
    code, output = await run_plan(checkout_plan(repo.url, {"id": "0" * 40}, None, tmp_path / "p"), tmp_path / "ws")
    assert code != 0 and "fatal:" in output and "could not fetch commit" in output


async def test_a_refused_token_fails_the_checkout_without_showing_it(https_remote: Remote, tmp_path: Path) -> None:
    plan = checkout_plan(https_remote.url, {"branch": "main"}, https_remote.bad_auth, tmp_path / "p")
    code, output = await run_plan(plan, tmp_path / "ws")
    assert code != 0
    assert "terminal prompts disabled" in output and "could not fetch branch main" in output
    assert WRONG_TOKEN not in output


async def test_a_refused_ssh_key_fails_the_checkout(ssh_remote: Remote, tmp_path: Path) -> None:
    plan = checkout_plan(ssh_remote.url, {"branch": "main"}, ssh_remote.bad_auth, tmp_path / "p")
    code, output = await run_plan(plan, tmp_path / "ws")
    plan.cleanup()
    assert code != 0 and "Permission denied (publickey)" in output


async def test_credentials_stay_out_of_the_commands(repo: SampleRepo, tmp_path: Path) -> None:
    https = checkout_plan("https://git.example.com/a.git", {"branch": "main"}, {"type": "https", "token": TOKEN},
                          tmp_path / "p")
    assert https.key_file is None
    assert TOKEN not in "\n".join(https.commands)
    assert "Authorization: Basic" in "".join(https.env.values())

    key = keygen(tmp_path / "k")
    ssh = checkout_plan("ssh://git@git.example.com/a.git", {"branch": "main"}, {"type": "ssh", "key": key},
                        tmp_path / "private")
    assert ssh.key_file is not None and ssh.key_file.parent == tmp_path / "private"
    assert stat.S_IMODE(ssh.key_file.stat().st_mode) == 0o600
    assert ssh.key_file.read_text() == key
    assert str(ssh.key_file) in ssh.env["GIT_SSH_COMMAND"]
    assert "PRIVATE KEY" not in "\n".join(ssh.commands + list(ssh.env.values()))
    ssh.cleanup()
    ssh.cleanup()
    assert not ssh.key_file.exists()


def test_a_plan_fetches_only_the_named_ref(repo: SampleRepo, tmp_path: Path) -> None:
    plan = checkout_plan(repo.url, {"fetch": "refs/pull/7/merge"}, None, tmp_path / "p")
    assert plan.commands[2].startswith("git fetch --no-tags origin +refs/pull/7/merge:refs/apiary/pull/7/merge ||")
    assert plan.commands[3] == "git checkout -q --detach FETCH_HEAD"
