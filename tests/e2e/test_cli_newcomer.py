"""What a newcomer met in the CLI (issue 16), as subprocesses against a real queen and drone: a command a signal
killed under a shell (exit 128+N, as in the sandbox) is named by its signal; apiary config hides a password in any
setting; apiary drone finds the local queen's drone endpoint; a job is named as apiary ls shows it, REPO#N."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.cluster import FAST, Cluster, Proc
from tests.e2e.test_cli_address import apiary as run_as
from tests.e2e.test_cli_address import free_pair, user_env
from tests.e2e.test_client import apiary, url

# The inner shell dies of SIGSEGV; the step's shell reports it as any shell does, exit 139.
CRASH = """stages:
  - name: run
    steps:
      - run: echo starting; sh -c 'kill -SEGV $$'; exit $?
        title: Crash
"""


async def test_exit_139_is_shown_as_sigsegv(queen: Cluster, tmp_path: Path) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("crash", CRASH)
    done = await apiary(tmp_path, "trigger", "crash", "--follow", *url(queen))
    assert done.code == 1, done
    lines = done.out.splitlines()
    assert any(line.startswith("✗ exit 139 (SIGSEGV) ") for line in lines), done.out + "\n---\n" + done.err
    assert any(line.startswith("Failed in stage run: Crash, exit code 139 (SIGSEGV) (command ") for line in lines), done
    print(f"\na command killed by SIGSEGV under its shell, as the CLI shows it:\n{done.out}")


async def test_config_hides_a_password_in_any_setting(tmp_path: Path) -> None:
    config = tmp_path / "apiary.toml"
    config.write_text('[drone]\npip_args = "--index-url https://user:TOKEN@pypi.example/simple"\n'
                      '[queen]\nmongodb_url = "mongodb://ci:hunter2@db/apiary"\n')
    shown = await apiary(tmp_path, "config", "-c", str(config), "--data-dir", str(tmp_path / "none"))
    assert shown.code == 0, shown
    assert "TOKEN" not in shown.out and "hunter2" not in shown.out, shown.out
    assert 'pip_args = "--index-url https://user:***@pypi.example/simple"' in shown.out
    assert 'mongodb_url = "mongodb://ci:***@db/apiary"' in shown.out


async def test_config_shows_the_drones_queen_as_apiary_drone_finds_it_and_hides_a_key_written_inline(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "queen.endpoint").write_text("tcp://127.0.0.1:9312\n")  # what apiary up --port 9311 wrote
    (tmp_path / "keys").mkdir()
    config = tmp_path / "apiary.toml"
    key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"  # a z85 secret key where a file's path goes
    config.write_text(f'[queen]\ncurve_secret_key = "{key}"\nauthorized_keys = "{tmp_path / "keys"}"\n')
    shown = await apiary(tmp_path, "config", "-c", str(config), "--data-dir", str(data))
    assert shown.code == 0, shown
    assert key not in shown.out
    assert 'curve_secret_key = "***"  # set, not shown (not a file: the key itself?)' in shown.out
    drone = shown.out.split("[drone]", 1)[1]
    assert f'queen = "tcp://127.0.0.1:9312"  # {data / "queen.endpoint"}' in drone


async def test_every_command_taking_a_job_takes_it_as_apiary_ls_names_it(queen: Cluster, tmp_path: Path) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", """stages:
  - name: build
    steps: ["echo built-$APIARY_JOB_NUMBER > out.txt; echo building"]
artifacts: [out.txt]
""")
    first = await apiary(tmp_path, "trigger", "app", "--follow", *url(queen))
    second = await apiary(tmp_path, "trigger", "app", "--follow", *url(queen))
    assert first.code == 0 and second.code == 0, (first, second)
    first_id = first.out.split("\n", 1)[0].rsplit("/", 1)[1]
    listing = await apiary(tmp_path, "ls", *url(queen))
    assert [line.split()[:2] for line in listing.out.splitlines()[1:]] == [
        [second.out.split("\n", 1)[0].rsplit("/", 1)[1], "app#2"], [first_id, "app#1"]]

    # The API: a repository's jobs by number.
    assert [j["id"] for j in (await queen.get("/repos/app/jobs?number=1"))["jobs"]] == [first_id]
    assert (await queen.get("/repos/app/jobs?number=7"))["jobs"] == []

    logs = await apiary(tmp_path, "logs", "app#1", *url(queen))
    assert logs.code == 0 and "building" in logs.out and "Job passed" in logs.out, logs
    by_id = await apiary(tmp_path, "logs", first_id, *url(queen))
    assert by_id.out == logs.out
    listed = await apiary(tmp_path, "artifacts", "app#1", *url(queen))
    assert listed.code == 0 and listed.out.splitlines()[1].split()[0] == "out.txt", listed
    got = await apiary(tmp_path, "artifacts", "app#2", "out.txt", "-o", "-", *url(queen))
    assert got.code == 0 and got.out.startswith("built-"), got
    again = await apiary(tmp_path, "rerun", "app#1", *url(queen))
    assert again.code == 0 and again.out.startswith("app #3 "), again
    assert (await queen.get("/repos/app/jobs?number=3"))["jobs"][0]["rerun_of"] == first_id
    ended = await apiary(tmp_path, "cancel", "app#1", *url(queen))
    assert ended.code == 1 and "has already ended (passed)" in ended.err, ended  # found, and ended
    for missing in ("app#9", "nope#1"):
        none = await apiary(tmp_path, "logs", missing, *url(queen))
        assert none.code == 2 and none.out == "" and none.err.startswith("apiary: error: no "), none
    print(f"\napiary logs app#1, artifacts app#1, rerun app#1, cancel app#1: found as apiary ls names them\n{logs.out}")


async def test_apiary_drone_without_queen_finds_the_local_queens_drone_endpoint(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_pair()
    env = {**user_env(home), **FAST}
    up = Proc("up", ["up", "--port", str(port)], tmp_path / "logs", env)
    drone = Proc("drone", ["drone", "--id", "extra", "--capacity", "1"], tmp_path / "logs", env)
    lost = Proc("lost", ["drone", "--id", "lost", "--queen", "tcp://127.0.0.1:9"], tmp_path / "logs", env)
    try:
        await up.start()
        await up.wait_output("Press Ctrl-C to stop")
        recorded = home / ".apiary" / "queen" / "queen.endpoint"
        assert recorded.read_text() == f"tcp://127.0.0.1:{port + 1}\n"

        await drone.start()  # no --queen, no config: the endpoint apiary up wrote down, and where it came from
        await drone.wait_output(f"queen tcp://127.0.0.1:{port + 1} \\(from {recorded}\\)")
        for _ in range(100):
            code, out, err = await run_as(env, "drones")
            if code == 0 and "extra" in out:
                break
            await asyncio.sleep(0.1)
        assert "extra" in out and "local" in out, (out, err, drone.logs())

        # Nothing answers: one warning naming the endpoint and where it came from, not silence.
        await lost.start()
        await lost.wait_output("queen tcp://127.0.0.1:9 \\(from --queen\\)")
        warning = "no queen answers at tcp://127.0.0.1:9 (from --queen) after 5 s"
        for _ in range(300):
            if warning in lost.stderr.read_text():
                break
            await asyncio.sleep(0.1)
        assert lost.stderr.read_text().count(warning) == 1, lost.logs()
    finally:
        for proc in (lost, drone, up):
            await proc.stop()
    print(f"\napiary up --port {port}; apiary drone found tcp://127.0.0.1:{port + 1} in {recorded}")
