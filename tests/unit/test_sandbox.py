"""The sandbox's command line and environment, built without running them. Jobs in real sandboxes:
tests/e2e/test_sandbox.py."""

from __future__ import annotations

from pathlib import Path

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
    # The workspace after what hides it; the checkout's key folder read-only.
    assert text.index(f"--bind {paths.workspace} {paths.workspace}") > text.index(f"--tmpfs {tmp_path / 'work'}")
    assert f"--ro-bind {paths.private} {paths.private}" in text
    assert "--unshare-net" not in box.command(["true"], paths, network="host")
    env = box.environment({"SECRET": "s"}, {"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "x", "LC_ALL": "C"}, paths)
    assert env == {"PATH": "/bin", "LC_ALL": "C", "HOME": "/tmp/home", "TMPDIR": "/tmp", "SECRET": "s"}
    assert Sandbox(None, "isolated", [], Limits()).command(["true"], paths) == ["true"]
