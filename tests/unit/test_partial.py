"""Partial runs' decisions (apiary.core.partial): which stages a partial run reuses, and what a re-run
from the failed stage may reuse of a failed job."""

from __future__ import annotations

from pathlib import Path

import pytest

from apiary.core.errors import Conflict
from apiary.core.outcome import job_outcome
from apiary.core.partial import plan, rerun_from_failed, reused_line
from apiary.drone.restore import restore


def _stages(*spec: str) -> list[dict]:
    """"b<a" is stage b needing a."""
    out = []
    for s in spec:
        name, _, needs = s.partition("<")
        out.append({"name": name, "needs": needs.split(",") if needs else [], "steps": [{"run": "true"}]})
    return out


PASSED = {"status": "passed", "job": "J1", "number": 1}


@pytest.mark.parametrize(("stages", "given", "reused"), [
    (_stages("a", "b<a"), {}, []),
    (_stages("a", "b<a"), {"a": PASSED}, ["a"]),
    (_stages("a", "b<a", "c<b"), {"a": PASSED, "c": PASSED}, ["a"]),  # c's input is made again: it runs
    (_stages("a", "b<a"), {"a": {**PASSED, "status": "failed"}}, []),
    (_stages("b<a", "a"), {"a": PASSED, "b": PASSED}, ["b", "a"]),  # needs pointing forward
    (_stages("a"), {"gone": PASSED, "a": PASSED}, ["a"]),  # a stage the phase does not have: ignored
    (_stages("d<t"), {"d": PASSED}, ["d"]),  # a need of the other phase (tests passed before deploys run)
])
def test_which_stages_a_partial_run_reuses(stages: list[dict], given: dict, reused: list[str]) -> None:
    decided = plan(stages, {"stages": given})
    assert sorted(decided.reused) == sorted(reused)
    assert [reused_line(line, [s["name"] for s in stages]) for line in decided.lines] == \
        [s["name"] for s in stages if s["name"] in reused]


def _failed(outcome_stages: dict[str, str], status: str = "failed", pipeline: dict | None = None) -> tuple:
    stages = _stages(*outcome_stages)
    job = {"_id": "OLD", "number": 7, "status": status, "pipeline": pipeline or {"stages": stages}}
    outcome = {"stages": [{"name": s["name"], "needs": s["needs"], "status": st}
                          for s, st in zip(stages, outcome_stages.values())]}
    return job, outcome, job["pipeline"]


@pytest.mark.parametrize(("outcome", "reused"), [
    ({"a": "passed", "b<a": "failed", "c<b": "not_run"}, {"a"}),
    ({"a": "passed", "lint": "passed", "b<a": "failed"}, {"a", "lint"}),
    ({"a": "failed", "lint": "passed"}, {"lint"}),
    ({"a": "passed", "b": "failed", "c<a": "skipped"}, {"a"}),  # skipped: not run, so run now
])
def test_a_rerun_from_the_failed_stage_reuses_what_passed(outcome: dict, reused: set) -> None:
    resume = rerun_from_failed(*_failed(outcome), artifact_bytes=10, max_bytes=100)
    assert set(resume["stages"]) == reused
    assert resume["from_job"] == "OLD" and resume["artifacts_of"] == ["OLD"]
    assert all(e == {"status": "passed", "job": "OLD", "number": 7} for e in resume["stages"].values())


def test_an_approval_gate_is_never_reused_nor_what_needs_it() -> None:
    job, outcome, pipeline = _failed({"a": "passed", "g<a": "passed", "after<g": "passed", "b<after": "failed"})
    next(s for s in pipeline["stages"] if s["name"] == "g")["approval"] = {"role": "admin", "timeout": 60.0}
    assert set(rerun_from_failed(job, outcome, pipeline, 0, 100)["stages"]) == {"a"}


def test_a_stage_reused_before_points_at_the_job_that_ran_it() -> None:
    job, outcome, pipeline = _failed({"a": "reused", "b<a": "failed"})
    job["resume"] = {"stages": {"a": {"status": "passed", "job": "FIRST", "number": 3}}}
    resume = rerun_from_failed(job, outcome, pipeline, 0, 100)
    assert resume["stages"] == {"a": {"status": "passed", "job": "FIRST", "number": 3}}


def test_a_cell_that_ran_in_a_child_job_points_at_that_job() -> None:
    job, outcome, pipeline = _failed({"a": "passed", "b<a": "failed"})
    next(s for s in outcome["stages"] if s["name"] == "a")["child"] = {"job": "KID", "number": 30, "status": "passed"}
    resume = rerun_from_failed(job, outcome, pipeline, 0, 100)
    assert resume["stages"] == {"a": {"status": "passed", "job": "KID", "number": 30}}  # not the parent, #29


@pytest.mark.parametrize(("case", "said"), [
    ("passed", "only a failed job"),
    ("cancelled", "only a failed job"),
    ("nothing passed", "no stage that passed"),
    ("pipeline changed", "the pipeline changed"),
    ("too big", "more than a re-run from the failed stage restores"),
])
def test_a_rerun_from_the_failed_stage_is_refused_saying_why(case: str, said: str) -> None:
    job, outcome, pipeline = _failed({"a": "passed", "b<a": "failed"}, status=case if case in
                                     ("passed", "cancelled") else "failed")
    if case == "nothing passed":
        job, outcome, pipeline = _failed({"a": "failed", "b<a": "not_run"})
    if case == "pipeline changed":
        pipeline = {"stages": _stages("a", "b<a", "c")}
    with pytest.raises(Conflict, match=said):
        rerun_from_failed(job, outcome, pipeline, 200 if case == "too big" else 0, 100)


def test_the_outcome_shows_a_stage_the_drone_reused_with_the_job_it_passed_in() -> None:
    stages = _stages("a", "b<a")
    job = {"status": "passed", "attempts": 1, "pipeline": {"stages": stages},
           "resume": {"stages": {"a": PASSED}},
           "commands": {"1": {"num": 1, "stage": "b", "phase": "test", "command": "true", "exitCode": 0,
                              "started": 1.0, "duration": 0.1}}}
    said = plan(stages, job["resume"]).lines
    events = [{"seq": 1, "attempt": 1, "type": "job:stderr", "text": said[0] + "\n"},
              {"seq": 2, "attempt": 1, "type": "job:cmd:start", "num": 1}]
    shown = {s["name"]: s for s in job_outcome(job, events)["stages"]}
    assert shown["a"]["status"] == "reused" and shown["a"]["reused_from"] == {"job": "J1", "number": 1}
    assert shown["b"]["status"] == "passed"
    # Asked to reuse it, but the drone did not say it did (an older drone, or it never got that far): not reused.
    assert job_outcome(job, events[1:])["stages"][0]["status"] != "reused"


def test_restored_artifacts_stay_inside_the_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (tmp_path / "outside").mkdir()
    (ws / "link").symlink_to(tmp_path / "outside")
    (ws / "kept.txt").write_text("checked out")
    files = [{"name": n, "data": b"x", "job": "J"} for n in
             ("out/deep/a.txt", "../escape.txt", "/abs.txt", "link/in.txt", "kept.txt")]
    lines = restore(ws, files)
    assert (ws / "out/deep/a.txt").read_bytes() == b"x"
    assert [line.split(": ", 2)[-1].strip() for line in lines] == [
        "restored", "not restored: names stay inside the workspace", "not restored: names stay inside the workspace",
        "not restored: link is not a folder", "the checkout has it already; kept as checked out"]
    assert not list((tmp_path / "outside").iterdir()) and not (tmp_path / "escape.txt").exists()
    assert (ws / "kept.txt").read_text() == "checked out"


def test_a_restored_name_with_a_nul_byte_is_refused_and_the_rest_restored(tmp_path: Path) -> None:
    # The name is the earlier job's (any byte it chose): os.open raises ValueError for a NUL, not OSError.
    files = [{"name": n, "data": b"x", "job": "J"} for n in ("a\0b.txt", "out/x\0/c.txt", "ok.txt")]
    lines = restore(tmp_path, files)
    assert [line.split(": ", 2)[-1].strip() for line in lines] == [
        "not restored: embedded null byte", "not restored: embedded null byte", "restored"]
    assert (tmp_path / "ok.txt").read_bytes() == b"x" and not (tmp_path / "a").exists()
