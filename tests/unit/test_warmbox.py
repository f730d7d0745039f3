"""The line that turns a sandbox made ahead into the job's command (drone/warmbox.py): the command runs with
exactly the environment it is given, its exit status its own; what the line cannot carry starts cold."""

from __future__ import annotations

import subprocess

import pytest

from apiary.drone.warmbox import LAUNCHER, SCRIPT_MAX, launch_script


def _through_launcher(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """What the launcher does in the box, without the box: read the line on stdin, become the command."""
    script = launch_script(command, env)
    assert script is not None
    return subprocess.run(["/bin/sh", "-c", LAUNCHER], input=script, capture_output=True, env={"LEFT": "over"},
                          timeout=10)


@pytest.mark.parametrize("value", ["plain", "it's", 'say "hi"', "$(touch /tmp/apiary-pwned) `id` ${HOME}",
                                   "two\nlines", " spaces  ", "", "ünïcode ☃", "a\\b", "--", "-i"])
def test_a_value_reaches_the_command_as_it_is(value: str) -> None:
    done = _through_launcher('printf %s "$V"', {"V": value, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == value


def test_the_command_gets_exactly_its_environment_and_no_stdin() -> None:
    env = {"PATH": "/usr/bin:/bin", "A": "1", "lower-case.dotted": "kept as env passes it"}
    # The environment the command's shell was started with (its children get what sh passes on).
    done = _through_launcher("tr '\\0' '\\n' </proc/$$/environ; cat; echo end", env)
    lines = done.stdout.decode().splitlines()
    assert lines[-1] == "end"  # cat read /dev/null, not the launcher's pipe
    assert sorted(lines[:-1]) == sorted(f"{k}={v}" for k, v in env.items())  # nothing of the launcher's


@pytest.mark.parametrize(("command", "code"), [("exit 3", 3), ("true", 0), ("kill -9 $$", -9), ("exec /no/such", 127)])
def test_the_exit_status_is_the_commands_own(command: str, code: int) -> None:
    assert _through_launcher(command, {"PATH": "/usr/bin:/bin"}).returncode == code


@pytest.mark.parametrize(("command", "env", "why"), [
    ("true", {"A=B": "x"}, "a name with = would be read as another variable"),
    ("true", {"": "x"}, "an empty name"),
    ("true", {"A": "nul\0"}, "a NUL cannot be passed"),
    ("printf '\0'", {}, "a NUL cannot be passed"),
    ("true", {"BIG": "x" * SCRIPT_MAX}, "longer than one write into the pipe"),
])
def test_what_the_line_cannot_carry_starts_cold(command: str, env: dict[str, str], why: str) -> None:
    assert launch_script(command, env) is None, why
