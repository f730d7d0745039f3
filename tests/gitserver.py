"""Real git repositories and servers on 127.0.0.1 for tests: file://, smart HTTP and ssh.

* `make_repo` builds a bare repository with known commits on a few branches
  and a ``refs/pull/7/merge`` ref, and says which ``.apiary.yml`` each holds.
* `http_server` serves every bare repository under a directory over git's smart
  HTTP protocol (aiohttp running ``git http-backend`` as CGI), optionally
  behind an HTTP Basic token check like a forge's.
* `ssh_server` runs a private ``sshd`` that admits one generated key.

Each server is an async context manager yielding a base URL; append
``/NAME.git`` to reach a repository. Everything is stopped and removed on exit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

SSHD = "/usr/sbin/sshd"
TOKEN_USER = "x-access-token"


def git_env(home: Path) -> dict[str, str]:
    """An environment where git ignores the machine's config and commits deterministically."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C", "GIT_AUTHOR_NAME": "Ada Tester", "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada Tester", "GIT_COMMITTER_EMAIL": "ada@example.com",
        "GIT_AUTHOR_DATE": "2024-01-01T12:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T12:00:00Z",
    }


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` with `git_env`; return its stdout, raise with its stderr on failure."""
    done = subprocess.run(["git", *args], cwd=cwd, env=git_env(cwd), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}:\n{done.stderr}")
    return done.stdout.strip()


def commit(work: Path, files: dict[str, str | None], message: str) -> str:
    """Write (or with None remove) `files` in the work tree `work`, commit them, return the sha."""
    for name, text in files.items():
        target = work / name
        if text is None:
            git(work, "rm", "-q", "--", name)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        git(work, "add", "--", name)
    git(work, "commit", "-q", "--allow-empty", "-m", message)
    return git(work, "rev-parse", "HEAD")


@dataclass
class SampleRepo:
    """A bare repository and what is in it: `shas` by name, `pipeline` (.apiary.yml text or None) by sha."""

    path: Path
    shas: dict[str, str] = field(default_factory=dict)
    pipeline: dict[str, str | None] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.path.as_uri()


def make_repo(root: Path, name: str = "project.git") -> SampleRepo:
    """Build `root/name`, a bare repository with this history:

    * ``main``: ``first`` (pipeline "v1"), then ``main`` (pipeline "v2")
    * ``feature``: from ``first``, ``feature`` (pipeline "feature")
    * ``bare``: from ``first``, ``bare`` (no .apiary.yml)
    * ``refs/pull/7/merge``: ``pull`` merging ``feature`` into ``main`` (pipeline "pull 7")
    """
    root.mkdir(parents=True, exist_ok=True)
    work = root / (name.removesuffix(".git") + "-work")
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    repo = SampleRepo(root / name)

    def add(label: str, pipeline: str | None, extra: dict[str, str | None] | None = None) -> None:
        files: dict[str, str | None] = {".apiary.yml": pipeline, **(extra or {})}
        sha = commit(work, files, f"{label}: pipeline {pipeline}")
        repo.shas[label] = sha
        repo.pipeline[sha] = pipeline

    add("first", "v1", {"README": "hello\n"})
    add("main", "v2")
    git(work, "checkout", "-q", "-b", "feature", repo.shas["first"])
    add("feature", "feature", {"feature.txt": "new\n"})
    git(work, "checkout", "-q", "-b", "bare", repo.shas["first"])
    add("bare", None)
    git(work, "checkout", "-q", "-b", "pull", repo.shas["main"])
    git(work, "merge", "-q", "--no-ff", "--no-commit", "-X", "ours", "feature")
    add("pull", "pull 7")
    git(root, "init", "-q", "--bare", str(repo.path))
    for branch in ("main", "feature", "bare"):
        git(work, "push", "-q", str(repo.path), f"{branch}:refs/heads/{branch}")
    git(work, "push", "-q", str(repo.path), "pull:refs/pull/7/merge")
    git(repo.path, "symbolic-ref", "HEAD", "refs/heads/main")
    return repo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- smart HTTP ------------------------------------------------------------------------------------

def basic_auth(token: str, username: str = TOKEN_USER) -> str:
    return "Basic " + base64.b64encode(f"{username}:{token}".encode()).decode()


def _cgi_response(output: bytes) -> web.Response:
    """Turn a CGI program's output (headers, blank line, body) into a response."""
    head, sep, body = output.partition(b"\r\n\r\n")
    if not sep:
        head, _, body = output.partition(b"\n\n")
    status, headers = 200, {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers[name.strip()] = value.strip()
    return web.Response(status=status, headers=headers, body=body)


@contextlib.asynccontextmanager
async def http_server(root: Path, token: str | None = None, username: str = TOKEN_USER) -> AsyncIterator[str]:
    """Serve the repositories under `root` over smart HTTP; yield ``http://127.0.0.1:PORT``.

    With a `token`, every request must carry ``Authorization: Basic`` of
    `username`:`token`, or gets 401 as a forge answers.
    """
    expected = basic_auth(token, username) if token is not None else None

    async def handle(request: web.Request) -> web.Response:
        if expected is not None and request.headers.get("Authorization") != expected:
            return web.Response(status=401, text="bad credentials\n",
                                headers={"WWW-Authenticate": 'Basic realm="apiary-test"'})
        body = await request.read()  # aiohttp has already undone any Content-Encoding: gzip
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": request.path,
            "REQUEST_METHOD": request.method, "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": username if expected else "", "REMOTE_ADDR": request.remote or "127.0.0.1",
            # Protocol v2 is asked for in a header; http-backend reads it from the environment.
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
        }
        proc = await asyncio.create_subprocess_exec(
            "git", "http-backend", env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(body)
        if proc.returncode != 0 and not out:
            return web.Response(status=500, text=err.decode(errors="replace"))
        return _cgi_response(out)

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# --- ssh -------------------------------------------------------------------------------------------

def keygen(path: Path) -> str:
    """Generate an ed25519 key pair at `path` (and `path`.pub); return the private key's text."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "apiary-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path.read_text()


@contextlib.asynccontextmanager
async def ssh_server(directory: Path, root: Path) -> AsyncIterator[tuple[str, str]]:
    """Run sshd on 127.0.0.1 admitting one new key; yield (``ssh://USER@127.0.0.1:PORT`` + `root`, the key).

    The user is whoever runs the tests (root on CI). Raises RuntimeError if
    sshd is missing: ssh tests must not pass by not running.
    """
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None or shutil.which("ssh") is None:
        raise RuntimeError(f"{SSHD}, ssh or ssh-keygen not found: install them "
                           "(apt-get install -y openssh-server openssh-client) to run the ssh tests")
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        Path("/run/sshd").mkdir(mode=0o755)  # sshd's privilege separation directory; the service makes it
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "ssh_host_ed25519_key"
    keygen(host_key)
    client_key = keygen(directory / "client_key")
    authorized = directory / "authorized_keys"
    authorized.write_text((directory / "client_key.pub").read_text())
    authorized.chmod(0o600)
    config = directory / "sshd_config"
    config.write_text("\n".join([
        "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"PidFile {directory / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}", "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
        "AcceptEnv GIT_PROTOCOL", "LogLevel VERBOSE", "",
    ]))
    log_path = directory / "sshd.log"
    for _attempt in range(5):  # the port is free when chosen; another process may take it before sshd does
        port = free_port()
        with open(log_path, "wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                SSHD, "-D", "-e", "-f", str(config), "-p", str(port), stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file, stderr=log_file)
        try:
            if await _sshd_ready(proc, log_path, port):
                yield f"ssh://{getpass.getuser()}@127.0.0.1:{port}{root}", client_key
                return
        finally:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
    raise RuntimeError(f"sshd did not start:\n{log_path.read_text(errors='replace')}")


async def _sshd_ready(proc: asyncio.subprocess.Process, log_path: Path, port: int, timeout: float = 10.0) -> bool:
    """True once sshd listens; False if it exited because the port was taken; raise on other failures."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if f"Server listening on 127.0.0.1 port {port}" in text:
            return True
        if proc.returncode is not None:
            if "Address already in use" in text:
                return False
            raise RuntimeError(f"sshd exited with {proc.returncode}:\n{text}")
        await asyncio.sleep(0.02)
    raise RuntimeError(f"sshd did not listen within {timeout:g} s:\n{log_path.read_text(errors='replace')}")
