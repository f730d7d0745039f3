"""One place for the address: `apiary up --port P` and the client commands, as a user runs them (subprocesses,
HOME of their own, no flags), then --url / APIARY_CLIENT_URL / the config file over it, and no queen at all."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from tests.cluster import FAST, Proc


def free_pair() -> int:
    """A port P with P+1 free too (as far as one can tell before using them)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as other:
            try:
                other.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free ports next to each other")


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's environment: their own HOME (so ~/.apiary/queen is theirs), no APIARY_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APIARY_")}
    return {**env, "HOME": str(home), "USER": "tester", **extra}


async def apiary(env: dict[str, str], *args: str, stdin: str = "", cwd: Path | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "apiary.cli", *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    return proc.returncode or 0, out.decode(), err.decode()


PIPELINE = """stages:
  - name: hello
    steps: ["echo hello from $APIARY_REPO"]
"""


async def test_up_port_and_the_client_commands_find_it_with_no_flags(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_pair()
    env = user_env(home)
    up = Proc("up", ["up", "--port", str(port)], tmp_path / "logs", {**env, **FAST})
    await up.start()
    try:
        await up.wait_output("Press Ctrl-C to stop")
        printed = up.stdout.read_text()
        assert f"dashboard: http://127.0.0.1:{port}/" in printed
        assert f"drones:    tcp://127.0.0.1:{port + 1}    (add one: apiary drone --queen tcp://127.0.0.1:{port + 1})" \
            in printed
        data = home / ".apiary" / "queen"

        # Every client command, no --url, no config: the queen this machine's apiary up wrote down.
        work = tmp_path / "work"
        work.mkdir()
        (work / "pipeline.yml").write_text(PIPELINE)
        code, out, err = await apiary(env, "repo", "add", "try", "--pipeline", "pipeline.yml", cwd=work)
        assert code == 0 and "try: pipeline kept on the queen" in out, err
        code, out, err = await apiary(env, "trigger", "try", "--follow")
        assert code == 0 and f"http://127.0.0.1:{port}/jobs/" in out and "hello from try" in out, (out, err)
        code, out, err = await apiary(env, "drones")
        assert code == 0 and out.splitlines()[1].split()[0] == "local", (out, err)
        assert (await apiary(env, "drones", "--endpoint"))[1] == f"tcp://127.0.0.1:{port + 1}\n"
        code, out, err = await apiary(env, "ls")
        assert code == 0 and "try#1" in out and "passed" in out, (out, err)
        code, out, err = await apiary(env, "config")
        assert code == 0 and f'url = "http://127.0.0.1:{port}"  # {data / "queen.url"}' in out, out

        # The first admin, with the setup token of the data dir found the same way (no --data-dir).
        code, out, err = await apiary(env, "user", "add", "ada", stdin="correct horse\n")
        assert code == 0 and "ada is an admin of this queen" in out and f":{port}/signin" in out, err
        code, token, err = await apiary(env, "token", "create", "--user", "ada", stdin="correct horse\n")
        assert code == 0 and token.startswith("apiary_"), err
        token = token.strip()
        signed = {**env, "APIARY_CLIENT_TOKEN": token}
        code, out, err = await apiary(signed, "ls")
        assert code == 0 and "try#1" in out, err
        code, out, err = await apiary(signed, "config")
        assert token not in out and 'token = "***"  # set, not shown; from APIARY_CLIENT_TOKEN' in out, out

        # What says otherwise wins: APIARY_CLIENT_URL over the recorded address, --url over both; each
        # failure names where the address came from.
        nowhere = "http://127.0.0.1:9"
        code, out, err = await apiary({**signed, "APIARY_CLIENT_URL": nowhere}, "ls")
        assert (code, err) == (1, (f"apiary: error: no queen answers at {nowhere} (from APIARY_CLIENT_URL): "
                                  "start one with apiary up, or give its address with --url\n"))
        code, out, err = await apiary({**signed, "APIARY_CLIENT_URL": nowhere}, "ls", "--url",
                                      f"http://127.0.0.1:{port}")
        assert code == 0 and "try#1" in out, err
        (work / "apiary.toml").write_text(f'[client]\nurl = "{nowhere}"\n')
        code, out, err = await apiary(signed, "ls", cwd=work)  # ./apiary.toml
        assert code == 1 and f"no queen answers at {nowhere} (from apiary.toml [client] url)" in err, err
    finally:
        await up.stop()

    # The queen is gone: one line naming the file the address came from; no traceback.
    code, out, err = await apiary(env, "ls")
    assert (code, out) == (1, "")
    assert err == (f"apiary: error: no queen answers at http://127.0.0.1:{port} (from {data / 'queen.url'}): "
                   "start one with apiary up, or give its address with --url\n")


async def test_help_says_what_each_command_does_with_an_example(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    commands = [["up"], ["queen"], ["drone"], ["run"], ["repo"], ["repo", "add"], ["repo", "ls"], ["repo", "show"],
                ["trigger"], ["rerun"], ["ls"], ["logs"], ["artifacts"], ["cancel"], ["drones"], ["prune"],
                ["join-token"], ["user"], ["token"], ["config"], ["keys"]]
    results = await asyncio.gather(*(apiary(env, *c, "--help") for c in commands))
    for command, (code, out, err) in zip(commands, results, strict=True):
        assert code == 0, (command, err)
        description = out.split("\n\n")[1]
        assert description.endswith(".") and "\n" not in description.strip(), (command, description)
        assert "\nexamples:\n  apiary " in out, (command, out)
    code, out, _ = await apiary(env, "ls", "--help")
    assert "APIARY_CLIENT_URL, else [client] url" in " ".join(out.split())  # the precedence
