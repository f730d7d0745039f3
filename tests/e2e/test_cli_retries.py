"""A job the queen runs again (its drone killed or stopped mid-job) as the CLI shows it: `apiary trigger --follow`
and `apiary logs` follow the job, not its first attempt, to its final state; a line says where an attempt ended.
Subprocesses against a real queen and real drones."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from tests.cluster import Cluster, Proc, _env
from tests.e2e.test_client import Command, apiary, url

# First attempt: says so and waits (until the test ends: a killed drone leaves its command behind); any later one:
# says so and ends. A file in the test's directory tells them apart.
ONCE = ('if [ -e {flag} ]; then echo "second attempt"; else touch {flag}; echo "first attempt"; '
        'for i in $(seq 600); do [ -e {flag}.end ] && exit 1; sleep 0.1; done; fi')


def pipeline(flag: Path) -> str:
    return f"stages: [{{name: s, steps: [{ONCE.format(flag=flag)!r}]}}]"

SEPARATOR = re.compile(r"^attempt 1 ended: (.+); the queen runs it again \(attempt 2\)$", re.MULTILINE)


def assert_two_attempts(out: str) -> str:
    """The separator's reason; the first attempt's line before it, the second's after, the job's end last."""
    found = SEPARATOR.search(out)
    assert found, out
    before, after = out[:found.start()], out[found.end():]
    assert re.search(r"^first attempt$", before, re.MULTILINE) and not re.search(r"^second attempt$", before, re.MULTILINE), out
    assert re.search(r"^second attempt$", after, re.MULTILINE) and "Job errored" not in out, out
    assert re.fullmatch(r"Job passed in \d+\.\d\ds", out.rstrip("\n").rsplit("\n", 1)[-1]), out
    return found.group(1)


async def test_follow_and_logs_of_a_job_whose_drone_was_killed_end_with_the_retry(queen: Cluster,
                                                                                  tmp_path: Path) -> None:
    doomed = await queen.add_drone("doomed", speed=2.0)  # the faster one gets the job first
    await queen.add_drone("spare", speed=1.0)
    await queen.create_pipeline_repo("app", pipeline(tmp_path / "flag"))
    follow = await Command(tmp_path, ("trigger", "app", "--follow", *url(queen))).start()
    await follow.wait_output("first attempt\n")
    await doomed.stop(signal.SIGKILL)

    done = await follow.finish(timeout=60)
    (tmp_path / "flag.end").touch()  # the killed drone's command ends
    assert done.code == 0, done
    assert "doomed" in assert_two_attempts(done.out)  # the queen's reason: the drone was lost
    job_id = done.out.split("\n", 1)[0].rsplit("/", 1)[1]
    assert (await queen.job(job_id))["status"] == "passed"

    shown = await apiary(tmp_path, "logs", job_id, *url(queen))
    assert shown.code == 0, shown
    assert "doomed" in assert_two_attempts(shown.out)
    print(f"\nfollowed a job whose drone was killed (SIGKILL): exit 0, the separator, then 'passed'\n{done.out}")


async def test_follow_of_a_job_whose_drone_stopped_mid_job_is_not_its_first_attempts_end(cluster: Cluster,
                                                                                        tmp_path: Path) -> None:
    # The drone's own job:done (errored: stopped while the job ran) is stored for attempt 1; the job goes on.
    await cluster.start_queen()
    first = await cluster.add_drone("first")
    await cluster.create_pipeline_repo("app", pipeline(tmp_path / "flag"))
    follow = await Command(tmp_path, ("trigger", "app", "--follow", *url(cluster))).start()
    await follow.wait_output("first attempt\n")
    await cluster.add_drone("second")
    await first.stop(signal.SIGTERM)

    done = await follow.finish(timeout=60)
    assert done.code == 0, done
    assert "stopped while the job ran" in assert_two_attempts(done.out)
    job_id = done.out.split("\n", 1)[0].rsplit("/", 1)[1]
    events = await cluster.events(job_id)
    assert [e.get("result") for e in events if e["type"] == "job:done"] == ["errored", "passed"]

    again = await apiary(tmp_path, "logs", job_id, *url(cluster))
    assert again.code == 0 and "stopped while the job ran" in assert_two_attempts(again.out), again
    print(f"\nfollowed a job whose drone stopped mid-job (SIGTERM): exit 0, then 'passed'\n{done.out}")


async def test_follow_across_apiary_up_stopped_with_ctrl_c_and_started_again(tmp_path: Path) -> None:
    # The newcomer's case: one apiary up, its local drone stopped with it mid-job; the same port again.
    data, work = tmp_path / "data", tmp_path / "work"
    args = ["up", "--data-dir", str(data), "--http-port", "0", "--drone-bind", "tcp://127.0.0.1:*",
            "--work-dir", str(work)]
    up = Proc("up", args, tmp_path / "logs", _env())
    await up.start()
    try:
        base = (await up.wait_output(r"API:\s+(\S+)/api/v1")).group(1)
        (tmp_path / "pipeline.yml").write_text(pipeline(tmp_path / "flag"))
        repo = await apiary(tmp_path, "repo", "add", "app", "--pipeline", str(tmp_path / "pipeline.yml"),
                            "--queen-url", base)
        assert repo.code == 0, repo
        follow = await Command(tmp_path, ("trigger", "app", "--follow", "--url", base)).start()
        await follow.wait_output("first attempt\n")
        assert await up.stop(signal.SIGINT) is not None  # Ctrl-C
        await follow.wait_output("reconnecting", "err")
        up.args = [*args[:3], "--http-port", base.rsplit(":", 1)[1], *args[5:]]
        await up.start()
        done = await follow.finish(timeout=60)
    finally:
        (tmp_path / "flag.end").touch()
        await up.stop()
    assert done.code == 0, done
    assert_two_attempts(done.out)
    print(f"\nfollowed a job across apiary up stopped with Ctrl-C and started again: exit 0\n{done.out}")

