"""sandbox_show: paths a job sees read-only even inside hidden or closed folders (the drone's own Python by
default), never the credentials. The setting's checks and the command line it gives; jobs in real sandboxes:
tests/e2e/test_sandbox.py."""

from __future__ import annotations

import pwd
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from apiary.core.config import DroneConfig, parse_config
from apiary.core.errors import ConfigError
from apiary.drone.sandbox import JobPaths, Limits, Sandbox


PYTHON = list(dict.fromkeys([Path(sys.base_prefix), Path(sys.prefix)]))  # the installation and the venv, if any


def test_by_default_jobs_are_shown_the_python_the_drone_runs_on() -> None:
    config = DroneConfig()
    config.check()
    assert config.sandbox_show == "python" and config.shown_paths == PYTHON


@pytest.mark.parametrize(("value", "shown", "fault"), [
    ("/opt/tools, ~/bin", [Path("/opt/tools"), Path.home() / "bin"], None),
    ("/opt/../usr/", [Path("/usr")], None),
    ("", [], None),
    ("python, /opt/tools", [*PYTHON, Path("/opt/tools")], None),
    ("tools", None, "must be absolute paths or python, separated by commas, got 'tools'"),
    ("/opt, /", None, "not /"),
    ("/srv/..", None, "not /"),
    ("/proc", None, "cannot show /proc"),
    ("/dev/shm", None, "cannot show /dev/shm"),
    ("/sys", None, "cannot show /sys"),
    ("~/.apiary/drone/workspaces", None, "the drone's work dir"),
    ("~/.apiary/drone", None, "the drone's work dir"),
])
def test_sandbox_show_is_checked(value: str, shown: list[Path] | None, fault: str | None) -> None:
    if fault is None:
        config = parse_config({"drone": {"sandbox_show": value}}, {}, "test").drone
        assert config.shown_paths == shown
    else:
        with pytest.raises(ConfigError, match="sandbox_show") as raised:
            parse_config({"drone": {"sandbox_show": value}}, {}, "test")
        assert fault in str(raised.value)


def _args(argv: list[str], flag: str) -> list[str]:
    """The paths `flag` applies to, in order (a bind's destination)."""
    width = {"--tmpfs": 1, "--ro-bind": 2, "--bind": 2}[flag]
    return [argv[i + width] for i, a in enumerate(argv) if a == flag]


def test_a_shown_path_is_bound_back_inside_what_is_hidden_and_what_it_hides_stays_hidden(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    for folder in (home / ".ssh", home / ".pyenv" / "versions" / "3.11", home / "tools" / "work" / "plugins"):
        folder.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    python, tools, work = home / ".pyenv" / "versions" / "3.11", home / "tools", home / "tools" / "work"
    box = Sandbox("/usr/bin/bwrap", "none", [home, home / ".ssh", work], Limits(),
                  shown=(python, tools, work / "plugins", home / ".ssh", Path("/"), python / ".." / "3.11"))
    # A credential is never shown, nor the whole machine; a path is shown once.
    assert box.shown == (python, tools, work / "plugins")
    argv = box.command(["true"], JobPaths(tmp_path / "ws", tmp_path / "tmp"))
    text = " ".join(argv)
    hidden, bound = _args(argv, "--tmpfs"), _args(argv, "--ro-bind")
    assert hidden[:3] == [str(home), str(home / ".ssh"), str(work)]
    assert {str(python), str(tools), str(work / "plugins")} <= set(bound)
    # Shown after the home is hidden; the work dir, inside a shown folder, hidden again after it, and the
    # plugins' code inside the work dir bound back after that.
    assert text.index(f"--ro-bind {python} {python}") > text.index(f"--tmpfs {home} ")
    assert hidden.count(str(work)) == 2
    second = [i for i, a in enumerate(argv) if a == "--tmpfs" and argv[i + 1] == str(work)][1]
    assert second > argv.index(str(tools))
    assert ".ssh" not in " ".join(bound)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder anyone may pass (pytest's tmp_path lies in one only its user may)."""
    path = Path(tempfile.mkdtemp(prefix="apiary-show-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_a_shown_python_in_roots_home_is_reachable_by_the_job_user(open_dir: Path) -> None:
    closed = open_dir / "root"  # as /root: 0700
    python = closed / ".pyenv" / "versions" / "3.11.7"
    python.mkdir(parents=True)
    closed.chmod(0o700)
    nobody = pwd.struct_passwd(("nobody", "x", 65534, 65534, "", "/nonexistent", "/usr/sbin/nologin"))
    box = Sandbox("/usr/bin/bwrap", "none", [], Limits(), job_user=nobody, shown=(python,))
    argv = box.command(["true"], JobPaths(Path("/srv/ws"), Path("/srv/tmp")))
    text = " ".join(argv)
    # The closed folder becomes an empty one the job user can pass, with the folders down to the Python
    # made passable in it and the Python bound back read-only.
    assert f"--tmpfs {closed}" in text and f"--ro-bind {python} {python}" in text
    for folder in (closed / ".pyenv", closed / ".pyenv" / "versions"):
        assert f"--perms 0755 --dir {folder} --chmod 0755 {folder}" in text
    assert str(python.parent / "3.11.7" / "bin") not in text  # inside the bound folder: the machine's own


def test_folders_inside_a_shown_one_are_the_machines_own() -> None:
    from apiary.drone.sandbox import _passable

    hidden, shown = Path("/srv/drone"), Path("/srv/drone/tools")
    args = _passable([hidden], [shown / "bin" / "python", Path("/srv/drone/ws/j1")], (shown,))
    # Not the shown folder nor one inside it (the machine's own, bound read-only: --chmod would fail there).
    assert [args[i + 3] for i in range(0, len(args), 7)] == ["/srv/drone/ws"]
    again = shown / "cache"  # emptied again inside the shown folder: what it holds is made as before
    args = _passable([hidden, again], [again / "a" / "b"], (shown,))
    assert [args[i + 3] for i in range(0, len(args), 7)] == [str(again / "a")]
