"""The sandbox's command line and environment, built without running them. Jobs in real sandboxes:
tests/e2e/test_sandbox.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from apiary.drone.sandbox import JobPaths, Limits, Sandbox


def test_the_sandbox_shows_the_workspace_and_a_private_tmp_and_hides_apiarys_files(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "queen").mkdir()
    (tmp_path / "secrets.key").write_text("key")
    box = Sandbox("/usr/bin/bwrap", "isolated", [tmp_path / "work", tmp_path / "queen", tmp_path / "secrets.key",
                                                 tmp_path / "absent"], Limits(), slirp="/usr/bin/slirp4netns")
    paths = JobPaths(tmp_path / "work" / "ws", tmp_path / "work" / "tmp" / "j", tmp_path / "work" / "private")
    argv = box.command(["/bin/sh", "-c", "true"], paths)
    text = " ".join(argv)
    assert argv[:2] == ["/usr/bin/bwrap", "--unshare-pid"] and "--unshare-net" in argv and argv[-3:] == [
        "/bin/sh", "-c", "true"]
    assert f"--tmpfs {tmp_path / 'work'}" in text and f"--tmpfs {tmp_path / 'queen'}" in text
    assert f"--ro-bind /dev/null {tmp_path / 'secrets.key'}" in text and "absent" not in text
    # The workspace after what hides it; the checkout's key folder read-only, for the checkout alone.
    assert text.index(f"--bind {paths.workspace} {paths.workspace}") > text.index(f"--tmpfs {tmp_path / 'work'}")
    checkout = " ".join(box.command(["true"], paths, network="host"))
    assert f"--ro-bind {paths.private} {paths.private}" in checkout and str(paths.private) not in text
    assert "--unshare-net" not in checkout

    env = box.environment({"SECRET": "s"}, {"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "x", "LC_ALL": "C"}, paths)
    assert env == {"PATH": "/bin", "LC_ALL": "C", "HOME": "/tmp/home", "TMPDIR": "/tmp", "SECRET": "s"}
    assert Sandbox(None, "isolated", [], Limits()).command(["true"], paths) == ["true"]


def test_folders_made_inside_an_emptied_one_are_opened_for_the_job_user() -> None:
    from apiary.drone.sandbox import _passable

    hidden, tmp = Path("/srv/apiary/drone"), Path("/tmp")
    args = _passable([hidden, tmp], [hidden / "workspaces" / "j1", Path("/tmp/gt/home/.apiary/drone/workspaces/j1")])
    made = [args[i + 3] for i in range(0, len(args), 7)]
    assert made == [str(hidden / "workspaces"), "/tmp/gt", "/tmp/gt/home", "/tmp/gt/home/.apiary",
                    "/tmp/gt/home/.apiary/drone", "/tmp/gt/home/.apiary/drone/workspaces"]
    first = str(hidden / "workspaces")
    assert args[:7] == ["--perms", "0755", "--dir", first, "--chmod", "0755", first]
    assert _passable([hidden], [Path("/srv/ws/j1")]) == []  # the machine's own folders stay as they are


@pytest.mark.parametrize(("job_network", "override", "joined", "own_network", "resolv"), [
    ("isolated", None, True, False, True),  # a command of a job joins the job's network (jobnet.py)
    ("isolated", None, False, True, True),  # joined none: a network of its own, with no way out
    ("isolated", "host", True, False, False),  # the checkout: the drone's network
    ("none", None, False, True, False),
    ("host", None, False, False, False),
])
def test_a_command_joins_its_jobs_network_or_has_its_own(tmp_path: Path, job_network: str, override: str | None,
                                                         joined: bool, own_network: bool, resolv: bool) -> None:
    box = Sandbox("/usr/bin/bwrap", job_network, [], Limits(), slirp="/usr/bin/slirp4netns")
    box.resolv = tmp_path / "resolv.conf"  # as when the machine's resolver is on its loopback
    paths = JobPaths(tmp_path / "ws", tmp_path / "tmp")
    argv = box.command(["true"], paths, network=override, joined=joined)
    assert ("--unshare-net" in argv) is own_network
    assert (f"--ro-bind {box.resolv} /etc/resolv.conf" in " ".join(argv)) is resolv
    # Everything else a command has stays its own: processes, IPC, host name, mounts.
    assert {"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"} <= set(argv)


def test_a_jobs_network_is_held_by_a_process_bubblewrap_ends_with_the_drone() -> None:
    box = Sandbox("/usr/bin/bwrap", "isolated", [], Limits(), slirp="/usr/bin/slirp4netns")
    holder = box.holder_command(7)
    assert holder[0] == "/usr/bin/bwrap" and {"--unshare-net", "--die-with-parent"} <= set(holder)
    assert holder[holder.index("--info-fd") + 1] == "7" and holder[-2:] == ["sleep", "infinity"]
    slirp = box.slirp_command(1234, 8, 9)
    assert "--disable-host-loopback" in slirp and slirp[-2:] == ["1234", "tap0"]
    assert slirp[slirp.index("--exit-fd") + 1] == "9"  # it ends when the drone's end of that pipe closes
