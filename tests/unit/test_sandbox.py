"""The sandbox's command line and environment, built without running them. Jobs in real sandboxes:
tests/e2e/test_sandbox.py."""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from apiary.drone.sandbox import JobPaths, Limits, Sandbox, limit_options


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


NET = (("net", 6),)  # a root drone's job network: the fd of its namespace
USER_NET = (("user", 5), ("net", 6))  # another user's: its user namespace too


@pytest.mark.parametrize(("job_network", "override", "join", "own_network", "resolv", "nsenter"), [
    # A command of a job joins the job's network (jobnet.py) through the fds it is given.
    ("isolated", None, NET, False, True, ["/usr/bin/nsenter", "--net=/proc/self/fd/6", "--"]),
    ("isolated", None, USER_NET, False, True,
     ["/usr/bin/nsenter", "--user=/proc/self/fd/5", "--net=/proc/self/fd/6", "--preserve-credentials", "--"]),
    ("isolated", None, (), True, True, []),  # joined none: a network of its own, with no way out
    ("isolated", "host", NET, False, False, []),  # the checkout: the drone's network
    ("none", None, (), True, False, []),
    ("host", None, (), False, False, []),
])
def test_a_command_joins_its_jobs_network_or_has_its_own(tmp_path: Path, job_network: str, override: str | None,
                                                         join: tuple[tuple[str, int], ...], own_network: bool,
                                                         resolv: bool, nsenter: list[str]) -> None:
    box = Sandbox("/usr/bin/bwrap", job_network, [], Limits(), slirp="/usr/bin/slirp4netns")
    box.resolv = tmp_path / "resolv.conf"  # as when the machine's resolver is on its loopback
    paths = JobPaths(tmp_path / "ws", tmp_path / "tmp")
    argv = box.command(["true"], paths, network=override, join=join)
    assert ("--unshare-net" in argv) is own_network
    assert (f"--ro-bind {box.resolv} /etc/resolv.conf" in " ".join(argv)) is resolv
    # nsenter, when it joins, execs bubblewrap: nothing of the drone's runs in the child.
    assert argv[:argv.index("/usr/bin/bwrap")] == nsenter
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


GiB = 2**30


@pytest.mark.parametrize(("limits", "hard", "options"), [
    (Limits(), {}, []),
    # A drone's defaults where its own hard limits are finite (files, processes) and unlimited (data): the soft
    # limit is the job's, the hard one stays the drone's unless it was unlimited, as setrlimit in the child did.
    (Limits(65536, 8 * GiB, 4096), {"nofile": 1048576, "data": None, "nproc": 96365},
     ["--nofile=65536:1048576", f"--data={8 * GiB}:{8 * GiB}", "--nproc=4096:96365"]),
    (Limits(65536, 0, 4096), {"nofile": 20000, "nproc": 1000}, ["--nofile=20000:20000", "--nproc=1000:1000"]),
    (Limits(memory=GiB), {}, [f"--data={GiB}:{GiB}"]),  # only what is set; absent: unlimited
])
def test_limits_are_prlimits_options_within_the_drones_own(limits: Limits, hard: dict[str, int | None],
                                                           options: list[str]) -> None:
    assert limit_options(limits, hard) == options


AS_NOBODY = ["--", "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--",
             "/bin/sh", "-c", "true"]


@pytest.mark.parametrize(("bwrap", "limits", "user", "join", "head", "tail", "preexec"), [
    # Sandboxed: limits, network and user are programs around bubblewrap, no code in the child.
    ("/usr/bin/bwrap", Limits(open_files=64), False, NET,
     ["/usr/bin/prlimit", "--nofile=64:64", "--", "/usr/bin/nsenter", "--net=/proc/self/fd/6", "--"],
     ["--", "/bin/sh", "-c", "true"], False),
    ("/usr/bin/bwrap", Limits(open_files=64), True, NET,
     ["/usr/bin/prlimit", "--nofile=64:64", "--", "/usr/bin/nsenter", "--net=/proc/self/fd/6", "--"], AS_NOBODY, False),
    ("/usr/bin/bwrap", Limits(), True, (), [], AS_NOBODY, False),
    # Without bubblewrap (the rare path) the command is as given; the child sets the limits and the user.
    (None, Limits(open_files=64), True, (), ["/bin/sh"], ["/bin/sh", "-c", "true"], True),
    (None, Limits(), False, (), ["/bin/sh"], ["/bin/sh", "-c", "true"], False),
])
def test_a_sandboxed_command_line_sets_its_limits_network_and_user_itself(
        tmp_path: Path, bwrap: str | None, limits: Limits, user: bool, join: tuple[tuple[str, int], ...],
        head: list[str], tail: list[str], preexec: bool) -> None:
    nobody = pwd.struct_passwd(("nobody", "x", 65534, 65534, "", "/nonexistent", "/usr/sbin/nologin"))
    box = Sandbox(bwrap, "isolated", [], limits, nobody if user else None, slirp="/usr/bin/slirp4netns",
                  hard={"nofile": None})
    argv = box.command(["/bin/sh", "-c", "true"], JobPaths(tmp_path / "ws", tmp_path / "tmp"), join=join)
    if bwrap is not None:
        assert argv[:len(head) + 1] == [*head, bwrap]
        assert argv[argv.index("--chdir") + 2:] == tail
    else:
        assert argv[:len(head)] == head and argv[-len(tail):] == tail
    assert box.needs_preexec is preexec


def test_util_linuxs_programs_run_by_their_full_path_never_the_jobs_path(tmp_path: Path) -> None:
    box = Sandbox("/usr/bin/bwrap", "isolated", [], Limits(open_files=8), slirp="/usr/bin/slirp4netns",
                  tools={"prlimit": "/sbin/prlimit", "nsenter": "/opt/ul/nsenter", "setpriv": "/opt/ul/setpriv"},
                  hard={})
    argv = box.command(["true"], JobPaths(tmp_path / "ws", tmp_path / "tmp"), join=NET)
    assert argv[0] == "/sbin/prlimit" and "/opt/ul/nsenter" in argv
