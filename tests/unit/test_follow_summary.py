"""What a followed job prints: lines of parallel stages under the right header, and the failure summary."""

from __future__ import annotations

import io
from typing import Any

from apiary.cli.follow import Renderer, shell_signal, summary_lines

PAGE = "http://q:8420/jobs/J"


def render(*events: dict[str, Any]) -> str:
    out, err = io.StringIO(), io.StringIO()
    r = Renderer(out, err)
    r.err = out  # one stream, to read the order
    r.raw[id(out)] = False
    for e in events:
        r.event(e)
    return out.getvalue()


def start(num: int, stage: str, title: str) -> dict[str, Any]:
    return {"type": "job:cmd:start", "num": num, "phase": "test", "stage": stage, "title": title, "screencmd": title}


def test_a_stage_alone_keeps_its_header_and_a_bare_end_line() -> None:
    text = render(start(1, "a", "make"), {"type": "job:cmd:stdout", "num": 1, "text": "ok\n"},
                  {"type": "job:cmd:done", "num": 1, "exitCode": 0, "duration": 1.5})
    assert text == "\n▶ [test/a] make\nok\n✓ 1.50s\n"


def test_interleaved_stages_name_whose_line_and_whose_end_it_is() -> None:
    text = render(start(1, "a", "make"), start(2, "b", "lint"),
                  {"type": "job:cmd:stdout", "num": 1, "text": "built\n"},
                  {"type": "job:cmd:done", "num": 2, "exitCode": -9, "duration": 0.25},
                  {"type": "job:cmd:stdout", "num": 1, "text": "more\n"},
                  {"type": "job:cmd:done", "num": 1, "exitCode": 0, "duration": 2.0})
    assert text.splitlines() == ["", "▶ [test/a] make", "", "▶ [test/b] lint", "… [test/a] make", "built",
                                 "✗ killed by SIGKILL [test/b] lint 0.25s", "… [test/a] make", "more", "✓ 2.00s"]


FAILED = {
    "status": "failed", "error": None,
    "stages": [
        {"name": "build", "status": "passed", "duration": 1.5, "reason": None, "commands": []},
        {"name": "lint", "status": "failed", "duration": 0.2, "reason": None, "commands": []},
        {"name": "test", "status": "skipped", "duration": None, "reason": "a stage it needs failed", "commands": []},
    ],
    "failure": {"stage": "lint", "num": 4, "title": "ruff .", "command": "ruff .", "exitCode": 1, "signal": None,
                "last_lines": ["\x1b[31mE501\x1b[0m x.py"], "anchor": "cmd-4", "error": None},
}


def test_the_summary_says_what_failed_and_where() -> None:
    table = [
        (FAILED, ["Failed in stage lint: ruff ., exit code 1 (command 4)", "  │ E501 x.py",
                  "stages: build ✓ passed 1.5s · lint ✗ failed 0.2s · test ↷ skipped (a stage it needs failed)",
                  f"log: {PAGE}#cmd-4"]),
        ({**FAILED, "failure": {**FAILED["failure"], "signal": "SIGKILL", "exitCode": -9, "last_lines": [],
                                "error": "the job timed out after 1 min"}, "stages": []},
         ["Failed in stage lint: ruff ., killed by SIGKILL (command 4)", "  the job timed out after 1 min",
          f"log: {PAGE}#cmd-4"]),
        ({"status": "errored", "stages": [], "failure": {**FAILED["failure"], "exitCode": None, "last_lines": [],
                                                         "error": "lost its drone 3 times"}},
         ["Errored in stage lint: ruff ., it never ended (its drone was lost) (command 4)",
          "  lost its drone 3 times", f"log: {PAGE}#cmd-4"]),
        ({"status": "errored", "stages": [], "failure": {"num": None, "error": "drone error: boom"}},
         ["Errored: drone error: boom", f"page: {PAGE}"]),
        ({"status": "cancelled", "failure": None, "stages": [
            {"name": "wait", "status": "cancelled", "duration": 3.0, "reason": None, "started": 1.0,
             "commands": [{"num": 2, "title": "sleep 60", "status": "cancelled"}]},
            {"name": "ship", "status": "not_run", "duration": None, "reason": "the job was cancelled", "commands": []}]},
         ["Cancelled in stage wait: sleep 60 (command 2)",
          "stages: wait ⊘ cancelled 3.0s · ship – not run (the job was cancelled)", f"log: {PAGE}#cmd-2"]),
        ({"status": "cancelled", "failure": None, "stages": []}, ["Cancelled before any stage ran", f"page: {PAGE}"]),
        ({"status": "passed", "failure": None, "stages": FAILED["stages"]}, []),
        ({"status": "running", "failure": None, "stages": []}, []),
    ]
    for outcome, lines in table:
        assert summary_lines(outcome, PAGE) == lines, outcome


def test_an_exit_code_a_shell_gives_for_a_signal_names_it() -> None:
    table = [(139, "SIGSEGV"), (143, "SIGTERM"), (137, "SIGKILL"), (129, "SIGHUP"), (128, None), (1, None),
             (0, None), (-11, None), (None, None), (200, None), (True, None), ("139", None)]
    for code, named in table:
        assert shell_signal(code) == named, code


def test_a_command_killed_by_a_signal_under_a_shell_says_which() -> None:
    text = render(start(1, "t", "crash"), {"type": "job:cmd:done", "num": 1, "exitCode": 139, "duration": 0.5},
                  start(2, "t", "fail"), {"type": "job:cmd:done", "num": 2, "exitCode": 3, "duration": 0.5})
    assert "✗ exit 139 (SIGSEGV) 0.50s" in text.splitlines() and "✗ exit 3 0.50s" in text.splitlines()
    failure = {**FAILED["failure"], "exitCode": 139, "shell_signal": "SIGSEGV", "last_lines": []}
    assert summary_lines({**FAILED, "failure": failure, "stages": []}, PAGE)[0] == \
        "Failed in stage lint: ruff ., exit code 139 (SIGSEGV) (command 4)"
    # An outcome without the field (a queen from before it): the code alone.
    older = {k: v for k, v in failure.items() if k != "shell_signal"}
    assert summary_lines({**FAILED, "failure": older, "stages": []}, PAGE)[0] == \
        "Failed in stage lint: ruff ., exit code 139 (command 4)"


def test_a_command_the_drone_stopped_is_not_shown_as_a_failure() -> None:
    text = render(start(1, "a", "sleep 60"), {"type": "job:cmd:done", "num": 1, "exitCode": 143, "duration": 3.0,
                                               "stopped": True},
                  start(2, "b", "false"), {"type": "job:cmd:done", "num": 2, "exitCode": 1, "duration": 0.5,
                                           "stopped": False})
    assert "⊘ stopped, exit 143 (SIGTERM) 3.00s" in text.splitlines()
    assert "✗ exit 1 0.50s" in text.splitlines()


def test_a_job_cancelled_after_a_command_failed_says_both() -> None:
    outcome = {"status": "cancelled", "stages": [],
               "failure": {"stage": "fails", "num": 4, "title": "exit 3", "exitCode": 3, "signal": None,
                           "shell_signal": None, "last_lines": [], "anchor": "cmd-4", "error": None,
                           "also": [{"stage": "crash", "num": 6, "title": "kill -SEGV $$", "anchor": "cmd-6"}]}}
    lines = summary_lines(outcome, PAGE)
    assert lines[:3] == ["Failed in stage fails: exit 3, exit code 3 (command 4)",
                         "  also failed: stage crash: kill -SEGV $$ (command 6)", "  then the job was cancelled"]
    assert lines[-1] == f"log: {PAGE}#cmd-4"
