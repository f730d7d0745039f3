"""Step retry's decisions (apiary.core.retry), as tables: the key as written, compiled and refused (with
its line and field), and whether an attempt's end calls for another."""

from __future__ import annotations

import json

import pytest

from apiary.core.pipeline import PipelineError, load_pipeline, parse_pipeline
from apiary.core.retry import TIMED_OUT, again, compile_retry, retry_attempt

ANY = {"attempts": 3, "when": ["exit any", "timeout"]}
EXIT1 = {"attempts": 3, "when": ["exit 1"]}
EXIT1_TIMEOUT = {"attempts": 3, "when": ["exit 1", "timeout"]}


@pytest.mark.parametrize("written, compiled", [
    (None, None),
    (3, ANY),
    (1, None),  # one attempt: no retry at all
    ({"attempts": 3}, ANY),
    ({"attempts": 2, "when": ["exit 1", "timeout"]}, {"attempts": 2, "when": ["exit 1", "timeout"]}),
    ({"attempts": 2, "when": ["failure"]}, {"attempts": 2, "when": ["exit any"]}),
    ({"attempts": 2, "when": "Exit  7"}, {"attempts": 2, "when": ["exit 7"]}),
    ({"attempts": 10, "when": ["exit 1", "exit 1", "exit any"]}, {"attempts": 10, "when": ["exit 1", "exit any"]}),
    (ANY, ANY),  # compiled is compiled again to itself
])
def test_retry_compiles(written: object, compiled: object) -> None:
    assert compile_retry(written, "r") == compiled


@pytest.mark.parametrize("written, path, words", [
    (0, "r.attempts", "from 1 to 10, got 0"),
    (11, "r.attempts", "from 1 to 10, got 11"),
    (True, "r", "a number of attempts"),
    ("3", "r", "a number of attempts"),
    ({"attempts": 2.5}, "r.attempts", "whole number"),
    ({"when": ["exit 1"]}, "r.attempts", "got None"),
    ({"attempts": 2, "tries": 3}, "r.tries", "unknown key 'tries'"),
    ({"attempts": 2, "when": []}, "r.when", "non-empty list"),
    ({"attempts": 2, "when": ["exit 0"]}, "r.when[0]", "exit N (1 to 255)"),
    ({"attempts": 2, "when": ["exit 1", "exit 256"]}, "r.when[1]", "not a reason to retry"),
    ({"attempts": 2, "when": ["crash"]}, "r.when[0]", "'crash' is not a reason"),
    ({"attempts": 2, "when": [1]}, "r.when[0]", "not a reason"),
])
def test_bad_retry_is_refused_naming_the_field(written: object, path: str, words: str) -> None:
    with pytest.raises(Exception) as err:
        compile_retry(written, "r")
    assert err.value.path == path and words in err.value.problem  # type: ignore[attr-defined]


@pytest.mark.parametrize("rule, attempt, code, timed_out, expected", [
    (None, 1, 1, False, False),  # no retry
    (ANY, 1, 0, False, False),  # passed
    (ANY, 1, 1, False, True),
    (ANY, 1, 2, False, True),
    (ANY, 1, -9, False, True),  # killed by a signal: a failure too
    (ANY, 2, 1, False, True),
    (ANY, 3, 1, False, False),  # the last attempt decides
    (ANY, 1, TIMED_OUT, True, True),
    (EXIT1, 1, 1, False, True),
    (EXIT1, 1, 2, False, False),  # exit 2 is not exit 1
    (EXIT1, 1, TIMED_OUT, True, False),  # a timeout is not exit 1
    (EXIT1, 1, TIMED_OUT, False, False),  # exit 124 by itself is not exit 1 either
    (EXIT1_TIMEOUT, 1, TIMED_OUT, True, True),
    (EXIT1_TIMEOUT, 2, 1, False, True),
    ({"attempts": 2, "when": ["timeout"]}, 1, 1, False, False),
    ({"attempts": 2, "when": ["exit 124"]}, 1, TIMED_OUT, False, True),  # exit 124 by itself
])
def test_whether_an_attempt_is_followed_by_another(rule: dict | None, attempt: int, code: int, timed_out: bool,
                                                   expected: bool) -> None:
    assert again(rule, attempt, code, timed_out) is expected


@pytest.mark.parametrize("value, kept", [
    ({"attempt": 2, "of": 3}, {"attempt": 2, "of": 3}),
    ({"attempt": 2, "of": 3, "x": "y"}, {"attempt": 2, "of": 3}),
    ({"attempt": 4, "of": 3}, None),
    ({"attempt": 0, "of": 3}, None),
    ({"attempt": 2, "of": 99}, None),
    ({"attempt": True, "of": 3}, None),
    ({"attempt": "2", "of": 3}, None),
    ("2/3", None),
    (None, None),
])
def test_the_queen_keeps_only_a_well_formed_attempt(value: object, kept: object) -> None:
    assert retry_attempt(value) == kept


def test_a_step_with_retry_and_timeout_compiles_and_compiles_again_unchanged() -> None:
    pipeline = load_pipeline("stages:\n  - name: t\n    steps:\n      - run: ./flaky\n"
                             "        retry: {attempts: 3, when: [exit 1, timeout]}\n        timeout: 1m30s\n")
    step = pipeline["stages"][0]["steps"][0]
    assert step["retry"] == EXIT1_TIMEOUT and step["timeout"] == 90.0
    assert parse_pipeline(json.loads(json.dumps(pipeline))) == pipeline


@pytest.mark.parametrize("step, message", [
    ("      - run: x\n        retry: {attempts: 30}\n",
     ".apiary.yml, line 6: stages[0].steps[0].retry.attempts: must be a whole number from 1 to 10, got 30"),
    ("      - run: x\n        retry:\n          attempts: 2\n          when: [exit 1, sometimes]\n",
     ".apiary.yml, line 8: stages[0].steps[0].retry.when[1]: 'sometimes' is not a reason to retry"),
    ("      - run: x\n        timeout: soon\n",
     ".apiary.yml, line 6: stages[0].steps[0].timeout: 'soon' is not a duration"),
    ("      - run: x\n        retry: {attempts: 2, when: [timeout]}\n",
     ".apiary.yml, line 6: stages[0].steps[0].retry.when: timeout is retried only for a step with a timeout"),
    ("      - run: x\n        ignore_exit_code: true\n        retry: 2\n",
     ".apiary.yml, line 7: stages[0].steps[0].retry: a step whose exit code is ignored has nothing to retry"),
])
def test_a_bad_retry_in_a_file_names_its_line_and_field(step: str, message: str) -> None:
    with pytest.raises(PipelineError) as err:
        load_pipeline("stages:\n  - name: t\n    env: {}\n    steps:\n" + step)
    assert str(err.value).startswith(message), str(err.value)


# -- the outcome of a step that was retried (apiary.core.outcome) -----------------------------------------


def _outcome(codes: list[int], status: str, attempts: int = 3, steps: tuple[str, ...] = ("flaky", "after"),
             after: int | None = 0) -> dict:
    """A stage whose first step ran once per code in `codes` (its attempts), then `after` ran (None: not)."""
    from apiary.core.outcome import job_outcome
    stage = {"name": "t", "needs": [], "deploy": False, "env": {}, "hooks": {},
             "steps": [{"run": s, "title": s, "ignore_exit_code": False} for s in steps]}
    commands, events = {}, []
    for i, code in enumerate(codes, 1):
        commands[str(i)] = {"num": i, "command": "flaky", "title": "flaky", "phase": "test", "stage": "t",
                            "started": 100.0 + i, "exitCode": code, "duration": 1.0,
                            "retry": {"attempt": i, "of": attempts}}
    if after is not None:
        n = len(codes) + 1
        commands[str(n)] = {"num": n, "command": "after", "title": "after", "phase": "test", "stage": "t",
                            "started": 200.0, "exitCode": after, "duration": 1.0}
    for c in commands.values():
        events.append({"seq": len(events) + 1, "attempt": 1, "type": "job:cmd:start", "num": c["num"]})
        events.append({"seq": len(events) + 1, "attempt": 1, "type": "job:cmd:done", "num": c["num"],
                       "exitCode": c["exitCode"]})
    job = {"_id": "j", "status": status, "type": "TEST", "attempts": 1, "commands": commands, "phases": {},
           "pipeline": {"stages": [stage], "parallel": 1}}
    return job_outcome(job, events)


def test_a_step_that_passed_on_a_retry_passed_and_is_flaky() -> None:
    out = _outcome([1, 1, 0], "passed")
    stage = out["stages"][0]
    assert stage["status"] == "passed" and stage["flaky"] is True and out["failure"] is None
    shown = [(c["num"], c["status"], c["attempt"], c["retried"], c["flaky"]) for c in stage["commands"]]
    assert shown == [(1, "failed", {"attempt": 1, "of": 3}, True, False),
                     (2, "failed", {"attempt": 2, "of": 3}, True, False),
                     (3, "passed", {"attempt": 3, "of": 3}, False, True),
                     (4, "passed", None, False, False)]  # the next step is the pipeline's second, not "not run"


def test_a_step_that_failed_every_attempt_fails_the_stage_with_its_last_attempt() -> None:
    out = _outcome([1, 2], "failed", attempts=2, after=None)
    stage = out["stages"][0]
    assert stage["status"] == "failed" and stage["flaky"] is False
    assert [(c["num"], c["status"]) for c in stage["commands"]] == [(1, "failed"), (2, "failed"), (None, "not_run")]
    assert out["failure"]["num"] == 2 and out["failure"]["also"] == []  # the attempt retried is not a failure


def test_a_step_that_passed_first_time_is_not_flaky() -> None:
    out = _outcome([0], "passed")
    assert out["stages"][0]["flaky"] is False and out["stages"][0]["commands"][0]["retried"] is False


def test_a_followed_job_says_each_attempt_and_a_steps_own_timeout() -> None:
    import io

    from apiary.cli.follow import Renderer
    out = io.StringIO()
    r = Renderer(out, out)
    r.raw[id(out)] = False
    for num, code, timed_out in ((1, 124, True), (2, 0, False)):
        r.event({"type": "job:cmd:start", "num": num, "phase": "test", "stage": "t", "title": "slow", "screencmd": "slow",
                 "retry": {"attempt": num, "of": 2}})
        r.event({"type": "job:cmd:done", "num": num, "exitCode": code, "duration": 1.0, "timedOut": timed_out})
    assert out.getvalue() == ("\n▶ [test/t] slow (attempt 1 of 2)\n✗ timed out, exit 124 1.00s\n"
                              "\n▶ [test/t] slow (attempt 2 of 2)\n✓ 1.00s\n")


def test_a_phase_step_that_passed_on_a_retry_is_not_the_jobs_failure() -> None:
    # environment: a flaky step passed on attempt 2; then stage unit failed: unit is the failure.
    from apiary.core.outcome import job_outcome
    stage = {"name": "unit", "needs": [], "deploy": False, "env": {}, "hooks": {},
             "steps": [{"run": "exit 7", "title": "exit 7", "ignore_exit_code": False}]}
    commands = {
        "1": {"num": 1, "command": "flaky-env", "title": "flaky-env", "phase": "environment", "started": 1.0,
              "exitCode": 1, "duration": 1.0, "retry": {"attempt": 1, "of": 2}},
        "2": {"num": 2, "command": "flaky-env", "title": "flaky-env", "phase": "environment", "started": 2.0,
              "exitCode": 0, "duration": 1.0, "retry": {"attempt": 2, "of": 2}},
        "3": {"num": 3, "command": "exit 7", "title": "exit 7", "phase": "test", "stage": "unit", "started": 3.0,
              "exitCode": 7, "duration": 1.0},
    }
    events = []
    for c in commands.values():
        events.append({"seq": len(events) + 1, "attempt": 1, "type": "job:cmd:start", "num": c["num"]})
        events.append({"seq": len(events) + 1, "attempt": 1, "type": "job:cmd:done", "num": c["num"],
                       "exitCode": c["exitCode"]})
    job = {"_id": "j", "status": "failed", "type": "TEST", "attempts": 1, "commands": commands, "phases": {},
           "pipeline": {"stages": [stage], "parallel": 1}}
    failure = job_outcome(job, events)["failure"]
    assert (failure["stage"], failure["num"], failure["exitCode"], failure["also"]) == ("unit", 3, 7, [])


def test_a_stage_that_failed_is_not_called_flaky_though_a_step_of_it_passed_on_a_retry() -> None:
    out = _outcome([1, 0], "failed", attempts=2, after=5)
    stage = out["stages"][0]
    assert stage["status"] == "failed" and stage["flaky"] is False
    assert stage["commands"][1]["flaky"] is True  # the step itself still says it passed on its retry
