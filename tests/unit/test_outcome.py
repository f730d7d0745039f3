"""A job's outcome (apiary.core.outcome): what each stage and command came to, and why the job failed."""

from __future__ import annotations

from typing import Any

import pytest

from apiary.core.outcome import job_outcome, last_lines, layout, plain, shell_signal, short_title, signal_name


def stage(name: str, *steps: str, needs: tuple[str, ...] = (), deploy: bool = False,
          ignore: tuple[int, ...] = ()) -> dict[str, Any]:
    return {"name": name, "needs": list(needs), "deploy": deploy, "env": {}, "hooks": {},
            "steps": [{"run": s, "title": s, "ignore_exit_code": i in ignore} for i, s in enumerate(steps)]}


class Run:
    """A job as the queen stores it, built event by event as a drone would send them."""

    def __init__(self, *stages: dict[str, Any], type: str = "TEST", parallel: int = 4) -> None:
        self.job: dict[str, Any] = {"_id": "j1", "status": "running", "type": type, "attempts": 1, "commands": {},
                                    "phases": {}, "pipeline": {"stages": list(stages), "parallel": parallel}}
        self.events: list[dict[str, Any]] = []
        self.attempt = 1
        self.num = 0
        self.clock = 100.0

    def _event(self, type: str, **body: Any) -> None:
        self.events.append({"job": "j1", "seq": len(self.events) + 1, "attempt": self.attempt, "type": type, **body})

    def start(self, title: str, stage: str | None = None, phase: str = "test", hook: str | None = None) -> int:
        self.num += 1
        self.clock += 1
        cmd = {"num": self.num, "command": title, "title": title, "phase": phase, "started": self.clock}
        if stage:
            cmd["stage"] = stage
        if hook:
            cmd["hook"] = hook
        self.job["commands"][str(self.num)] = cmd
        self._event("job:cmd:start", **{k: v for k, v in cmd.items() if k != "started"}, timestamp=self.clock)
        return self.num

    def done(self, num: int, code: int, duration: float = 2.0, stopped: bool | None = None) -> None:
        """`stopped`: what a drone of today says (None: an older drone, which did not say)."""
        said = {} if stopped is None else {"stopped": stopped}
        self.job["commands"][str(num)].update(exitCode=code, duration=duration, **said)
        self._event("job:cmd:done", num=num, exitCode=code, duration=duration, **said)

    def say(self, text: str) -> None:
        self._event("job:stderr", text=text)

    def run(self, title: str, stage: str | None, code: int = 0, phase: str = "test") -> int:
        num = self.start(title, stage, phase)
        self.done(num, code)
        return num

    def end(self, status: str, error: str | None = None) -> None:
        self.job["status"] = status
        if error:
            self.job["error"] = error

    def outcome(self) -> dict[str, Any]:
        return job_outcome(self.job, self.events)


def states(outcome: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {s["name"]: (s["status"], s["reason"]) for s in outcome["stages"]}


def cmd_states(outcome: dict[str, Any], name: str) -> list[tuple[str, str]]:
    s = next(s for s in outcome["stages"] if s["name"] == name)
    return [(c["title"], c["status"]) for c in s["commands"]]


# -- the cases --------------------------------------------------------------------------------

def test_a_passed_job_has_every_stage_passed_and_no_failure() -> None:
    r = Run(stage("build", "make"), stage("test", "make test", needs=("build",)))
    r.run("make", "build")
    r.run("make test", "test")
    r.end("passed")
    out = r.outcome()
    assert states(out) == {"build": ("passed", None), "test": ("passed", None)}
    assert out["failure"] is None and out["status"] == "passed"
    build = out["stages"][0]
    assert build["started"] == 101.0 and build["duration"] == 2.0 and build["needs"] == []
    assert out["stages"][1]["needs"] == ["build"]


def test_a_failed_step_fails_its_stage_the_rest_of_it_never_ran_and_a_stage_needing_it_is_skipped() -> None:
    r = Run(stage("build", "make", "make docs"), stage("lint", "ruff"), stage("test", "pytest", needs=("build",)))
    r.run("ruff", "lint")
    failing = r.run("make", "build", code=2)
    r.say("apiary: stage test skipped: a stage it needs failed\n")
    r.end("failed")
    out = r.outcome()
    assert states(out) == {"build": ("failed", None), "lint": ("passed", None),
                           "test": ("skipped", "a stage it needs failed")}
    assert cmd_states(out, "build") == [("make", "failed"), ("make docs", "not_run")]
    assert cmd_states(out, "test") == [("pytest", "not_run")]
    assert out["failure"] == {"stage": "build", "num": failing, "title": "make", "command": "make", "exitCode": 2,
                              "signal": None, "shell_signal": None, "last_lines": [], "anchor": f"cmd-{failing}",
                              "error": None, "also": []}


def test_a_stage_name_with_spaces_is_skipped_with_the_drones_reason() -> None:
    r = Run(stage("unit tests", "a"), stage("e2e tests", "b"), parallel=1)
    r.run("a", "unit tests", code=1)
    r.say("apiary: stage e2e tests skipped: an earlier stage failed\n")
    r.end("failed")
    assert states(r.outcome())["e2e tests"] == ("skipped", "an earlier stage failed")


def test_a_cancelled_command_is_cancelled_not_failed_and_the_stages_after_it_did_not_run() -> None:
    r = Run(stage("build", "make"), stage("test", "sleep 60", "echo after"), stage("ship", "x", needs=("test",)))
    r.run("make", "build")
    num = r.start("sleep 60", "test")
    r.done(num, -15)  # the drone's SIGTERM
    r.say("job cancelled\n")
    r.end("cancelled", "cancelled")
    out = r.outcome()
    assert states(out) == {"build": ("passed", None), "test": ("cancelled", None),
                           "ship": ("not_run", "the job was cancelled")}
    assert cmd_states(out, "test") == [("sleep 60", "cancelled"), ("echo after", "not_run")]
    assert out["failure"] is None
    assert out["stages"][1]["commands"][0]["signal"] == "SIGTERM"


def test_a_command_that_traps_the_cancel_and_exits_1_is_still_cancelled() -> None:
    r = Run(stage("test", "make test"))
    num = r.start("make test", "test")
    r.done(num, 2)  # make ends with its own code when its children get SIGTERM
    r.say("job cancelled\n")
    r.end("cancelled", "cancelled")
    assert cmd_states(r.outcome(), "test") == [("make test", "cancelled")]


def test_in_a_cancelled_job_a_stage_that_had_failed_before_the_cancel_stays_failed() -> None:
    r = Run(stage("a", "false"), stage("b", "sleep 60"))
    b = r.start("sleep 60", "b")
    r.run("false", "a", code=1)
    r.done(b, -15)
    r.say("job cancelled\n")
    r.end("cancelled", "cancelled")
    assert states(r.outcome()) == {"a": ("failed", None), "b": ("cancelled", None)}


def test_a_job_cancelled_after_a_command_failed_keeps_the_failure_and_why_later_stages_could_not_run() -> None:
    r = Run(stage("fails", "exit 3"), stage("unit", "sleep 60"), stage("crash", "x", needs=("fails",)))
    slow = r.start("sleep 60", "unit")
    failed = r.run("exit 3", "fails", code=3)
    r.done(slow, 143, stopped=True)
    r.say("job cancelled\n")
    r.end("cancelled", "cancelled")
    out = r.outcome()
    assert states(out) == {"fails": ("failed", None), "unit": ("cancelled", None),
                           "crash": ("not_run", "a stage it needs failed")}
    assert (out["failure"]["num"], out["failure"]["exitCode"], out["failure"]["error"]) == (failed, 3, None)


def test_cleanup_after_a_cancel_is_its_own_result() -> None:
    r = Run(stage("test", "sleep 60"))
    r.done(r.start("sleep 60", "test"), -9)
    r.say("job cancelled\n")
    r.run("rm -rf tmp", None, code=1, phase="cleanup")
    r.end("cancelled", "cancelled")
    out = r.outcome()
    assert cmd_states(out, "test") == [("sleep 60", "cancelled")]
    assert out["stages"][0]["commands"][0]["signal"] == "SIGKILL"


@pytest.mark.parametrize(("a_code", "a_stopped", "b_code", "b_stopped", "expected"), [
    # A sandboxed command's SIGTERM is exit 143 (its sandbox's init says a signal so): stopped, so cancelled.
    (143, True, 0, False, {"a": "cancelled", "b": "passed"}),
    # It ended by itself with 143 just before the cancel came: failed, however it looks.
    (143, False, 143, True, {"a": "failed", "b": "cancelled"}),
    # A trap that exits 1 on the SIGTERM: stopped all the same.
    (1, True, -15, True, {"a": "cancelled", "b": "cancelled"}),
])
def test_in_a_cancelled_job_the_drone_says_which_commands_it_stopped(
        a_code: int, a_stopped: bool, b_code: int, b_stopped: bool, expected: dict[str, str]) -> None:
    r = Run(stage("a", "serve"), stage("b", "watch"))
    a, b = r.start("serve", "a"), r.start("watch", "b")
    r.done(b, b_code, stopped=b_stopped)
    r.done(a, a_code, stopped=a_stopped)
    r.say("job cancelled\n")
    r.end("cancelled", "cancelled")
    assert {name: state for name, (state, _) in states(r.outcome()).items()} == expected


def test_a_command_the_drone_stopped_in_a_job_that_timed_out_failed() -> None:
    r = Run(stage("test", "sleep 60"))
    r.done(r.start("sleep 60", "test"), 143, stopped=True)
    r.say("apiary: the job timed out after 1 s; stopped\n")
    r.end("failed", "the job timed out after 1 s")
    assert states(r.outcome()) == {"test": ("failed", None)}


def test_a_job_cancelled_in_the_queue_ran_nothing() -> None:
    r = Run(stage("a", "x"), stage("b", "y", needs=("a",)))
    r.end("cancelled", "cancelled")
    assert states(r.outcome()) == {"a": ("not_run", "the job was cancelled"), "b": ("not_run", "the job was cancelled")}


def test_a_timeout_fails_with_the_signal_named_and_the_jobs_error() -> None:
    r = Run(stage("test", "sleep 60"))
    num = r.start("sleep 60", "test")
    r.done(num, -15)
    r.say("apiary: the job timed out after 1 s; stopped\n")
    r.end("failed", "the job timed out after 1 s")
    failure = r.outcome()["failure"]
    assert (failure["num"], failure["signal"], failure["error"]) == (num, "SIGTERM", "the job timed out after 1 s")


def test_a_running_job_shows_running_and_waiting_stages() -> None:
    r = Run(stage("build", "make"), stage("lint", "ruff"), stage("test", "pytest", needs=("build",)))
    r.start("make", "build")
    r.run("ruff", "lint")
    out = r.outcome()
    assert states(out) == {"build": ("running", None), "lint": ("passed", None),
                           "test": ("waiting", "waits for build")}
    assert out["stages"][0]["duration"] is None and out["failure"] is None
    assert cmd_states(out, "build") == [("make", "running")]


def test_a_queued_job_waits() -> None:
    r = Run(stage("a", "x"))
    r.job["status"] = "queued"
    assert states(r.outcome()) == {"a": ("waiting", None)}


def test_a_job_queued_again_after_its_drone_was_lost_waits_with_nothing_running() -> None:
    r = Run(stage("a", "x", "y"), stage("b", "z", needs=("a",)))
    r.run("x", "a")
    r.start("y", "a")  # its drone lost meanwhile: no end will come for attempt 1
    r.job["status"] = "queued"
    out = r.outcome()
    assert states(out) == {"a": ("waiting", None), "b": ("waiting", "waits for a")}
    assert out["failure"] is None


def test_a_failed_checkout_fails_the_job_before_any_stage() -> None:
    r = Run(stage("test", "pytest"))
    num = r.run("git fetch origin main", "checkout", code=128, phase="environment")
    r.job["phases"]["environment"] = {"state": "failed"}
    r.end("failed")
    out = r.outcome()
    assert states(out) == {"test": ("not_run", "the environment phase failed")}
    assert (out["failure"]["stage"], out["failure"]["num"], out["failure"]["exitCode"]) == ("checkout", num, 128)


def test_an_ignored_exit_code_does_not_fail_the_stage() -> None:
    r = Run(stage("test", "flaky", "make", ignore=(0,)))
    r.run("flaky", "test", code=1)
    r.run("make", "test")
    r.end("passed")
    out = r.outcome()
    assert states(out) == {"test": ("passed", None)}
    assert [c["ignored"] for c in out["stages"][0]["commands"]] == [True, False]


def test_a_failing_hook_does_not_fail_its_stage_nor_become_the_failure() -> None:
    r = Run(stage("test", "make"))
    r.run("make", "test", code=1)
    hook = r.start("notify", "test", hook="on_failure")
    r.done(hook, 7)
    r.end("failed")
    out = r.outcome()
    assert states(out) == {"test": ("failed", None)}
    assert out["failure"]["num"] == 1
    assert [c["hook"] for c in out["stages"][0]["commands"]] == [None, "on_failure"]


def test_the_first_command_to_fail_is_the_failure_when_parallel_stages_fail() -> None:
    r = Run(stage("a", "slow"), stage("b", "fast"))
    slow = r.start("slow", "a")
    r.run("fast", "b", code=3)
    r.done(slow, 1)
    r.end("failed")
    failure = r.outcome()["failure"]
    assert failure["title"] == "fast"
    assert failure["also"] == [{"stage": "a", "num": slow, "title": "slow", "anchor": f"cmd-{slow}"}]


def test_a_failed_job_with_no_failed_command_says_the_jobs_error() -> None:
    r = Run(stage("a", "x"))
    r.run("x", "a")
    r.end("failed", "artifacts: dist/*.whl matched no file")
    failure = r.outcome()["failure"]
    assert failure["num"] is None and failure["error"] == "artifacts: dist/*.whl matched no file"


def test_a_drone_lost_attempt_is_not_this_attempts_outcome() -> None:
    r = Run(stage("a", "x"))
    r.start("x", "a")  # attempt 1: the drone is lost, the command never ends
    r.attempt = 2
    r.job["attempts"] = 2
    num = r.run("x", "a")
    r.end("passed")
    out = r.outcome()
    assert states(out) == {"a": ("passed", None)}
    assert [c["num"] for c in out["stages"][0]["commands"]] == [num]


def test_deploy_stages_after_failed_tests_are_skipped() -> None:
    r = Run(stage("test", "pytest"), stage("ship", "deploy.sh", deploy=True), type="TEST_DEPLOY")
    r.run("pytest", "test", code=1)
    r.job["phases"]["deploy"] = {"state": "skipped"}
    r.end("failed")
    out = r.outcome()
    assert states(out) == {"test": ("failed", None), "ship": ("skipped", "the test stages failed")}
    assert out["stages"][1]["needs"] == ["test"]  # a deploy stage runs after every test stage


def test_a_plugins_stage_is_shown_after_the_pipelines() -> None:
    r = Run(stage("a", "x"))
    r.run("x", "a")
    r.run("pytest", "python tests")
    r.end("passed")
    assert list(states(r.outcome())) == ["a", "python tests"]


def test_without_events_every_stored_command_counts() -> None:
    r = Run(stage("a", "x"))
    r.run("x", "a", code=1)
    r.end("failed")
    assert job_outcome(r.job, [])["failure"]["num"] == 1


def test_the_api_form_of_a_job_reads_the_same() -> None:
    r = Run(stage("a", "x"))
    r.run("x", "a")
    r.end("passed")
    api = {**r.job, "commands": list(r.job["commands"].values())}
    assert job_outcome(api, r.events) == r.outcome()


# -- helpers -------------------------------------------------------------------------------------

def test_signals_are_named() -> None:
    table = [(-9, "SIGKILL"), (-15, "SIGTERM"), (-2, "SIGINT"), (0, None), (1, None), (137, None), (None, None),
             (-99, "signal 99")]
    for code, name in table:
        assert signal_name(code) == name, code


def test_last_lines_are_the_last_ten_without_the_trailing_blank() -> None:
    text = "".join(f"line {i}\n" for i in range(1, 30)) + "\n\n"
    assert last_lines(text) == [f"line {i}" for i in range(20, 30)]
    assert last_lines("one\r\ntwo") == ["one", "two"]
    assert last_lines("") == []
    assert len(last_lines("x" * 5000)[0]) == 400


def test_plain_drops_colours_and_control_sequences() -> None:
    assert plain("\x1b[1;31mFAILED\x1b[0m test_x") == "FAILED test_x"
    assert plain("\x1b]0;title\x07text\x08") == "text"


def test_layout_puts_stages_in_columns_by_the_depth_of_their_needs() -> None:
    def s(name: str, *needs: str) -> dict[str, Any]:
        return {"name": name, "needs": list(needs)}

    table = [
        ([], []),
        ([s("a")], [["a"]]),
        ([s("a"), s("b")], [["a", "b"]]),  # parallel: one column
        ([s("a"), s("b", "a"), s("c", "b")], [["a"], ["b"], ["c"]]),  # a chain
        ([s("a"), s("b"), s("c", "a", "b"), s("d", "a")], [["a", "b"], ["c", "d"]]),  # a fan-in
        ([s("a"), s("b", "a"), s("c", "a", "b")], [["a"], ["b"], ["c"]]),  # the deepest need decides
        ([s("late", "early"), s("early")], [["early"], ["late"]]),  # needs may point forward
        ([s("a", "gone")], [["a"]]),  # a need outside the graph (DEPLOY jobs)
        ([s("a", "b"), s("b", "a")], None),  # a cycle (the compiler refuses them): ends, every stage placed
    ]
    for stages, columns in table:
        got = layout(stages)
        if columns is None:
            assert sorted(n for c in got for n in c) == ["a", "b"]
        else:
            assert got == columns, stages


def test_a_command_that_never_ended_in_an_errored_job_is_the_failure_without_an_exit_code() -> None:
    r = Run(stage("a", "x"))
    num = r.start("x", "a")  # the drone was lost for the last time: no job:cmd:done
    r.end("errored", "lost its drone 3 times")
    out = r.outcome()
    assert cmd_states(out, "a") == [("x", "failed")]
    assert (out["failure"]["num"], out["failure"]["exitCode"], out["failure"]["error"]) == (
        num, None, "lost its drone 3 times")


# -- a signal through a shell, steps still to come, a job that ran nothing, titles ----------------

@pytest.mark.parametrize(("code", "name"), [
    (139, "SIGSEGV"), (143, "SIGTERM"), (137, "SIGKILL"), (130, "SIGINT"), (134, "SIGABRT"), (129, "SIGHUP"),
    (128 + 34, "SIGRTMIN"), (128 + 64, "SIGRTMAX"),
    (128, None),  # 128 + 0: no signal
    (128 + 40, None),  # a real-time signal between SIGRTMIN and SIGRTMAX: no name on this system
    (193, None), (255, None), (2, None), (0, None), (-11, None), (None, None), (True, None),
])
def test_a_shell_exit_code_of_128_plus_a_signal_names_it(code: Any, name: str | None) -> None:
    assert shell_signal(code) == name


def test_a_command_a_signal_killed_under_a_shell_names_it_in_its_entry_and_the_failure() -> None:
    r = Run(stage("test", "./crash", "./after"))
    num = r.run("./crash", "test", code=139)
    r.end("failed")
    out = r.outcome()
    crash, after = out["stages"][0]["commands"]
    assert (crash["exitCode"], crash["signal"], crash["shell_signal"]) == (139, None, "SIGSEGV")
    assert after["shell_signal"] is None
    failure = out["failure"]
    assert (failure["num"], failure["exitCode"], failure["signal"], failure["shell_signal"]) == (
        num, 139, None, "SIGSEGV")
    r2 = Run(stage("test", "x"))
    r2.run("x", "test", code=-9)  # the drone's own kill: signal, not shell_signal
    r2.end("failed")
    assert (r2.outcome()["failure"]["signal"], r2.outcome()["failure"]["shell_signal"]) == ("SIGKILL", None)


@pytest.mark.parametrize(("job", "big", "small", "expected"), [
    # Running, in its first step: the second waits (it is not "not run").
    ("running", "running", None, [("make", "running"), ("big log", "waiting")]),
    # Between two steps: the stage runs, the next step waits.
    ("running", 0, None, [("make", "passed"), ("big log", "waiting")]),
    # Its first step failed while the job runs on (another stage): the second will never run.
    ("running", 2, None, [("make", "failed"), ("big log", "not_run")]),
    # The job is over: a step that never ran did not run.
    ("failed", 2, "failed", [("make", "failed"), ("big log", "not_run")]),
    ("passed", 0, "passed", [("make", "passed"), ("big log", "passed")]),
])
def test_a_running_stages_steps_to_come_wait_and_only_an_ended_ones_did_not_run(
        job: str, big: Any, small: Any, expected: list[tuple[str, str]]) -> None:
    r = Run(stage("build", "make", "big log"), stage("slow", "sleep 60"))
    r.start("sleep 60", "slow")
    num = r.start("make", "build")
    if big != "running":
        r.done(num, big)
    if small is not None:
        r.done(1, 0)
        if small == "passed":
            r.run("big log", "build")
        r.end(job)
    assert cmd_states(r.outcome(), "build") == expected


def test_a_waiting_stages_steps_wait() -> None:
    r = Run(stage("build", "make"), stage("test", "pytest", "coverage", needs=("build",)))
    r.start("make", "build")
    assert cmd_states(r.outcome(), "test") == [("pytest", "waiting"), ("coverage", "waiting")]


@pytest.mark.parametrize(("stages", "plugins", "type", "why"), [
    ([stage("test", "pytest")], [], "DEPLOY", "the pipeline has no deploy stages for a DEPLOY job"),
    ([stage("ship", "deploy.sh", deploy=True)], [], "TEST",
     "the pipeline has only deploy stages, which a TEST job does not run"),
    ([], ["python"], "TEST", "the pipeline has no stages of its own and its plugins (python) added none"),
    ([stage("test", "pytest")], ["report", "python"], "DEPLOY",
     "the pipeline has no deploy stages for a DEPLOY job and its plugins (report, python) added none"),
])
def test_a_job_that_passed_without_running_a_stage_says_why(
        stages: list[dict[str, Any]], plugins: list[str], type: str, why: str) -> None:
    r = Run(*stages, type=type)
    r.job["pipeline"]["plugins"] = [{"name": p, "pip": None, "config": {}} for p in plugins]
    r.run("git fetch origin main", "checkout", phase="environment")  # the checkout is no stage of the job's
    r.end("passed")
    assert r.outcome()["ran_nothing"] == why


def test_a_job_that_ran_a_stage_or_did_not_pass_has_no_ran_nothing() -> None:
    r = Run(stage("a", "x"))
    r.run("x", "a")
    r.end("passed")
    assert r.outcome()["ran_nothing"] is None
    r = Run(stage("a", "x"), type="DEPLOY")
    r.end("cancelled", "cancelled")  # it ran nothing because it was cancelled: that says why already
    assert r.outcome()["ran_nothing"] is None
    r = Run(type="TEST")
    r.job["pipeline"]["plugins"] = [{"name": "python"}]
    r.run("pytest", "python tests")  # the plugin's stage ran
    r.end("passed")
    assert r.outcome()["ran_nothing"] is None


LONG = "python -c 'import sys; print(sys.argv)' first-argument second-argument-x > 'output.txt'"


@pytest.mark.parametrize(("text", "title"), [
    ("make test", "make test"),
    ("  make test  \nsecond line", "make test"),
    ("x" * 80, "x" * 80),  # at the limit: whole
    (LONG, "python -c 'import sys; print(sys.argv)' first-argument second-argument-x >…"),
    ("a " + "b" * 100, "a " + "b" * 77 + "…"),  # no space late enough: cut in the word, with the ellipsis
    ("", ""),
])
def test_a_title_made_from_a_command_is_cut_at_a_word_with_an_ellipsis(text: str, title: str) -> None:
    assert short_title(text) == title
    assert len(short_title(text)) <= 80


def test_the_failure_and_the_steps_titles_are_cut_at_a_word_not_as_stored() -> None:
    cut = LONG[:80]  # the title the compiler and the drone stored, cut in a word: "... > 'outp"
    assert cut.endswith("> 'outp")
    r = Run({"name": "test", "needs": [], "deploy": False, "env": {}, "hooks": {},
             "steps": [{"run": LONG, "title": cut, "ignore_exit_code": False},
                       {"run": LONG + " again", "title": cut, "ignore_exit_code": False},
                       {"run": "echo own", "title": "My own title", "ignore_exit_code": False}]})
    num = r.start(cut, "test")
    r.job["commands"][str(num)]["command"] = LONG
    r.done(num, 2)
    r.end("failed")
    out = r.outcome()
    want = short_title(LONG)
    assert out["failure"]["title"] == want and out["failure"]["command"] == LONG
    assert [c["title"] for c in out["stages"][0]["commands"]] == [want, want, "My own title"]
