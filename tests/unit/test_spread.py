"""Remote stages' decisions (apiary.core.spread): what the parent's drone holds, which children start, the fold."""

from __future__ import annotations

from typing import Any

import pytest

from apiary.core import spread
from apiary.core.jobstate import Folded, JobState, Policy, transition
from apiary.core.outcome import job_outcome
from apiary.core.pipeline import PipelineError, load_pipeline, parse_pipeline
from apiary.core.protocol import JobStatus

STAGE_MATRIX = """
artifacts: ["out/*"]
stages:
  - {name: build, steps: [make]}
  - {name: lint, steps: [ruff]}
  - name: test
    needs: [build]
    matrix: {py: ["3.11", "3.12"], spread: true}
    steps: ["tox -e py$py"]
  - {name: report, needs: [test], steps: [./report.sh]}
"""
JOB_MATRIX = """
matrix: {os: [linux, bsd], spread: true}
stages:
  - {name: build, steps: [make]}
  - {name: test, needs: [build], steps: [make test]}
"""


def _pipeline(text: str = STAGE_MATRIX) -> dict[str, Any]:
    return dict(load_pipeline(text))


def _parent(pipeline: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    return {"_id": "P", "number": 7, "repo": "app", "ref": {"branch": "main", "id": "a" * 40}, "type": "TEST",
            "pipeline": pipeline or _pipeline(), "status": "waiting", "attempts": 1, "drone": "d1",
            "kind": "push", "secrets": ["TOKEN"], "trigger": {"type": "api"}, "parameters": {},
            "concurrency": {"group": "g", "key": "app/g"}, **fields}


def _outcome(**status: str) -> dict[str, Any]:
    return {"stages": [{"name": n, "status": s} for n, s in status.items()]}


def test_spread_cells_are_remote_units_and_compile_to_themselves() -> None:
    p = _pipeline()
    assert {s["name"]: s.get("remote") for s in p["stages"]} == {
        "build": None, "lint": None, "report": None,
        "test (3.11)": {"kind": "spread", "unit": "test (3.11)"},
        "test (3.12)": {"kind": "spread", "unit": "test (3.12)"}}
    assert parse_pipeline(p) == p
    job = _pipeline(JOB_MATRIX)
    assert spread.units(job["stages"]) == {"linux": ["build (linux)", "test (linux)"],
                                           "bsd": ["build (bsd)", "test (bsd)"]}
    assert "remote" not in str(_pipeline(STAGE_MATRIX.replace(", spread: true", "")))


@pytest.mark.parametrize(("text", "message"), [
    (STAGE_MATRIX.replace("spread: true", "spread: yes please"),
     ".apiary.yml, line 8: stages[2].matrix.spread: must be true or false"),
    (STAGE_MATRIX.replace("steps: [ruff]}", "steps: [ruff], approval: {role: admin}}"),
     ".apiary.yml, line 5: stages[1].approval: a pipeline with spread (or sharded) stages takes no approval gate"),
    (STAGE_MATRIX.replace("steps: [make]}", "steps: [make], remote: {kind: far, unit: x}}"),
     ".apiary.yml, line 4: stages[0].remote: is not a key of a pipeline"),
    # the compiler's key, written by hand: the job would wait for child jobs nobody makes
    ('stages: [{name: t, remote: {kind: shard, unit: "x"}, steps: [echo]}]',
     ".apiary.yml, line 1: stages[0].remote: is not a key of a pipeline: Apiary writes it"),
    ("stages:\n  - name: t\n    matrix: {a: [x, y]}\n    remote: {kind: spread, unit: \"t (x)\"}\n    steps: [e]\n",
     ".apiary.yml, line 4: stages[0].remote: is not a key of a pipeline"),
    ("stages:\n  - name: t\n    remote: {kind: shard, unit: \"t (shard 1 of 2)\"}\n    steps: [e]\n",
     ".apiary.yml, line 3: stages[0].remote: is not a key of a pipeline"),
    # a shard written out by hand, without the listing stage that makes its list
    ('stages:\n  - name: "t (shard 1 of 2)"\n    shards: {of: t, index: 1, count: 2, tests: ls}\n'
     '    remote: {kind: shard, unit: "t (shard 1 of 2)"}\n    steps: [e]\n',
     ".apiary.yml, line 4: stages[0].remote: is not a key of a pipeline"),
    # more than 256 stages once the matrices are expanded: the matrix named, not a server error
    ("stages:\n  - name: t\n    matrix: {a: [%s], b: [%s]}\n    steps: [e]\n"
     "  - {name: v, steps: [e]}\n" % (",".join(map(str, range(16))), ",".join(map(str, range(16)))),
     ".apiary.yml, line 3: stages[0].matrix: the pipeline would have 257 stages once its matrices are expanded"),
])
def test_bad_spread_is_refused_naming_the_line_and_field(text: str, message: str) -> None:
    with pytest.raises(PipelineError) as err:
        load_pipeline(text)
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.parametrize(("resume", "skipped", "held"), [
    (None, [], {"test (3.11)", "test (3.12)", "report"}),  # the first attempt: the cells and what needs them
    ({"stages": {"test (3.11)": {"status": "passed"}, "test (3.12)": {"status": "passed"}}}, [], set()),
    ({"stages": {"test (3.11)": {"status": "passed"}}}, [], {"test (3.12)", "report"}),
    (None, ["test (3.11)", "test (3.12)"], set()),  # skipped by a when: nothing to spread
])
def test_what_the_parents_drone_holds(resume: Any, skipped: list[str], held: set[str]) -> None:
    assert spread.held(_pipeline()["stages"], resume, skipped) == held


def test_the_drone_says_which_cells_run_elsewhere() -> None:
    stages = _pipeline()["stages"]
    assert spread.waiting_lines(stages, spread.held(stages, None)) == [
        "apiary: stage test (3.11) runs as a job of its own (spread)",
        "apiary: stage test (3.12) runs as a job of its own (spread)"]
    sharded = _pipeline('stages:\n  - {name: test, shards: {count: 2, tests: ls}, steps: [t]}\n')["stages"]
    assert spread.waiting_lines(sharded, spread.held(sharded, None)) == [  # the list may yet be refused
        f"apiary: stage test (shard {i} of 2) is to run as a job of its own (shard) once the queen has split the "
        "test list" for i in (1, 2)]
    # a re-run from the failed stage: the listing reused, the failed shard runs with the list it had
    rerun = {"stages": {"test · list": {"status": "passed", "job": "J40", "number": 40},
                        "test (shard 1 of 2)": {"status": "passed", "job": "J41", "number": 41}}}
    assert spread.waiting_lines(sharded, spread.held(sharded, rerun), rerun) == [
        "apiary: stage test (shard 2 of 2) is to run again as a job of its own (shard), with the list it had in job #40"]


@pytest.mark.parametrize(("fields", "waits"), [
    ({}, True),
    ({"resume": {"stages": {"test (3.11)": {"status": "passed"}, "test (3.12)": {"status": "passed"}}}}, False),
    ({"parent": {"id": "X"}}, False),  # a child never waits for children
    ({"pipeline": _pipeline(STAGE_MATRIX.replace(", spread: true", ""))}, False),
])
def test_a_drones_wait_is_believed_only_for_remote_stages_to_run(fields: dict[str, Any], waits: bool) -> None:
    assert spread.can_wait(_parent(**fields)) is waits


@pytest.mark.parametrize(("outcome", "children", "ready"), [
    (_outcome(build="passed", lint="passed"), [], ["test (3.11)", "test (3.12)"]),
    (_outcome(build="failed"), [], []),
    (_outcome(build="passed"), [{"unit": "test (3.11)", "wave": 1}], ["test (3.12)"]),  # made already
    (_outcome(build="passed"), [{"unit": "test (3.11)", "wave": 0}], ["test (3.11)", "test (3.12)"]),  # older
])
def test_which_children_start(outcome: dict[str, Any], children: list[Any], ready: list[str]) -> None:
    assert spread.ready(_parent(children=children), outcome) == ready


def test_a_child_runs_its_cell_alone_on_the_parents_commit_and_artifacts() -> None:
    parent = _parent(resume={"artifacts_of": ["OLD"], "stages": {}})
    child = spread.child_job(parent, "test (3.12)", {"SHARD": "1"}, [{"name": "list.txt", "text": "a\n"}],
                             "C", 9, 100.0)
    assert [s["name"] for s in child["pipeline"]["stages"]] == ["test (3.12)"]
    stage = child["pipeline"]["stages"][0]
    assert stage["needs"] == [] and "remote" not in stage and stage["env"] == {"py": "3.12", "SHARD": "1"}
    assert child["pipeline"]["hooks"] == {"on_start": [], "on_success": [], "on_failure": []}
    assert "concurrency" not in child and "concurrency" not in child["pipeline"]
    assert child["ref"] == parent["ref"] and child["secrets"] == ["TOKEN"] and child["status"] == "queued"
    assert child["parent"] == {"id": "P", "number": 7, "unit": "test (3.12)", "wave": 1}
    assert child["resume"] == {"from_job": "P", "stages": {}, "artifacts_of": ["OLD", "P"], "unit": "test (3.12)",
                               "given": [{"name": "list.txt", "text": "a\n"}]}
    with pytest.raises(spread.SpreadError, match="a child of a child"):
        spread.child_job(child, "test (3.12)", {}, [], "D", 10, 100.0)
    with pytest.raises(spread.SpreadError, match="no remote stage"):
        spread.child_job(parent, "nope", {}, [], "D", 10, 100.0)


def test_plugin_stages_are_the_parents() -> None:
    child = spread.child_job(_parent(), "test (3.11)", {}, [], "C", 9, 1.0)
    stages = [*child["pipeline"]["stages"], {"name": "pytest (plugin)"}]
    assert [s["name"] for s in spread.child_stages(child, stages)] == ["test (3.11)"]
    assert len(spread.child_stages(_parent(), stages)) == 2


@pytest.mark.parametrize(("env", "files", "path"), [
    ({"1BAD": "x"}, [], "children.env"),
    ({f"V{i}": "x" for i in range(65)}, [], "children.env"),
    ({"A": "x" * 5000}, [], "children.env.A"),
    ({}, [{"name": "../x", "text": ""}], "children.files[0].name"),
    ({}, [{"name": "/etc/passwd", "text": ""}], "children.files[0].name"),
    ({}, [{"name": "a/./b", "text": ""}], "children.files[0].name"),
    ({}, [{"name": ".git/config", "text": ""}], "children.files[0].name"),
    ({}, [{"name": "a", "text": b"x"}], "children.files[0].text"),
    ({}, [{"name": f"f{i}", "text": ""} for i in range(17)], "children.files"),
    ({}, [{"name": "a", "text": "x" * (1024 * 1024 + 1)}], "children.files"),
])
def test_what_the_queen_gives_a_child_is_bounded(env: Any, files: Any, path: str) -> None:
    with pytest.raises(spread.SpreadError) as err:
        spread.check_given(env, files)
    assert err.value.path == path


def _kid(unit: str, status: str, number: int, error: str | None = None) -> dict[str, Any]:
    return {"_id": f"K{number}", "number": number, "status": status, "parent": {"unit": unit, "id": "P"},
            **({"error": error} if error else {})}


OUT = _outcome(build="passed", lint="passed", **{"test (3.11)": "passed", "test (3.12)": "passed"})


@pytest.mark.parametrize(("kids", "error"), [
    ([_kid("test (3.11)", "passed", 8), _kid("test (3.12)", "failed", 9)], "test (3.12) failed in job #9"),
    ([_kid("test (3.11)", "cancelled", 8), _kid("test (3.12)", "passed", 9)], "test (3.11) was cancelled in job #8"),
    ([_kid("test (3.11)", "errored", 8, "drone lost"), _kid("test (3.12)", "passed", 9)],
     "test (3.11) errored in job #8: drone lost"),
])
def test_a_cell_that_did_not_pass_fails_the_parent(kids: list[Any], error: str) -> None:
    fold = spread.fold(_parent(), OUT, kids)
    assert fold is not None and fold.resume is None and fold.error == error


def test_the_fold_waits_for_every_child_then_goes_on_from_them() -> None:
    assert spread.fold(_parent(), OUT, [_kid("test (3.11)", "passed", 8), _kid("test (3.12)", "running", 9)]) is None
    fold = spread.fold(_parent(resume={"artifacts_of": ["OLD"]}), OUT,
                       [_kid("test (3.11)", "passed", 8), _kid("test (3.12)", "passed", 9)])
    assert fold is not None and fold.error is None
    assert fold.resume == {"from_job": "P", "artifacts_of": ["OLD", "P", "K8", "K9"], "stages": {
        "build": {"status": "passed", "job": "P", "number": 7}, "lint": {"status": "passed", "job": "P", "number": 7},
        "test (3.11)": {"status": "passed", "job": "K8", "number": 8},
        "test (3.12)": {"status": "passed", "job": "K9", "number": 9}}}


@pytest.mark.parametrize(("fold", "status", "fields"), [
    (Folded(5.0, [{"unit": "u"}], resume={"stages": {}}), JobStatus.QUEUED, {"resume", "children"}),
    (Folded(5.0, [], error="test (2) failed in job #9"), JobStatus.FAILED, {"finished", "error", "children"}),
    (Folded(5.0, [], error="test (2) was cancelled in job #9", failed_child={"unit": "test (2)", "status": "cancelled"}),
     JobStatus.FAILED, {"finished", "error", "children", "failed_child"}),
])
def test_the_state_machine_folds_a_waiting_parent(fold: Folded, status: JobStatus, fields: set[str]) -> None:
    state = JobState(JobStatus.WAITING, 1, None)
    new, effects = transition(state, fold, Policy())
    assert new.status is status
    assert set(effects[0].fields) - {"status", "drone"} == fields  # type: ignore[union-attr]
    assert transition(JobState(JobStatus.CANCELLED, 1, None), fold, Policy()) == (
        JobState(JobStatus.CANCELLED, 1, None), [])  # an ended parent stays so


def test_the_parents_outcome_shows_each_cell_with_its_child() -> None:
    job = _parent(status="waiting", children=[
        {"unit": "test (3.11)", "job": "K8", "number": 8, "status": "running", "wave": 1},
        {"unit": "test (3.12)", "job": "K9", "number": 9, "status": "queued", "wave": 1}],
        commands={"1": {"num": 1, "stage": "build", "phase": "test", "exitCode": 0, "started": 1.0, "duration": 1},
                  "2": {"num": 2, "stage": "lint", "phase": "test", "exitCode": 0, "started": 1.0, "duration": 1}})
    stages = {s["name"]: s for s in job_outcome(job, [])["stages"]}
    assert stages["test (3.11)"]["status"] == "running" and stages["test (3.11)"]["reason"] == "running in job #8"
    assert stages["test (3.12)"]["status"] == "waiting" and stages["test (3.12)"]["reason"] == "queued as job #9"
    assert stages["test (3.12)"]["child"] == {"job": "K9", "number": 9, "status": "queued"}
    failed = _parent(status="failed", error="test (3.12) failed in job #9", children=[
        {"unit": "test (3.11)", "job": "K8", "number": 8, "status": "passed", "wave": 1},
        {"unit": "test (3.12)", "job": "K9", "number": 9, "status": "failed", "wave": 1}], commands=job["commands"])
    stages = {s["name"]: s["status"] for s in job_outcome(failed, [])["stages"]}
    assert stages == {"build": "passed", "lint": "passed", "test (3.11)": "passed", "test (3.12)": "failed",
                      "report": "not_run"}


def test_a_parent_that_ran_its_stages_in_children_ran_something() -> None:
    whole = _parent(_pipeline(JOB_MATRIX), status="passed", children=[
        {"unit": "linux", "job": "K8", "number": 8, "status": "passed", "wave": 1},
        {"unit": "bsd", "job": "K9", "number": 9, "status": "passed", "wave": 1}],
        resume={"stages": {n: {"status": "passed", "job": k, "number": int(k[1:])} for n, k in (
            ("build (linux)", "K8"), ("test (linux)", "K8"), ("build (bsd)", "K9"), ("test (bsd)", "K9"))}})
    outcome = job_outcome(whole, [])
    assert {s["status"] for s in outcome["stages"]} == {"passed"}
    assert outcome["ran_nothing"] is None  # not "Passed, but this job ran no stage"


def test_a_cell_whose_child_had_not_ended_when_the_parent_did_is_not_shown_waiting() -> None:
    failed = _parent(status="failed", error="the job timed out after 20 s", children=[
        {"unit": "test (3.11)", "job": "K8", "number": 8, "status": "running", "wave": 1},
        {"unit": "test (3.12)", "job": "K9", "number": 9, "status": "queued", "wave": 1}])
    stages = {s["name"]: s for s in job_outcome(failed, [])["stages"]}
    assert stages["test (3.12)"]["status"] == "not_run"
    assert stages["test (3.12)"]["reason"] == "job #9 was stopped when this job failed"


def test_apiary_run_has_no_pool_and_runs_the_cells_in_its_workspace() -> None:
    here = spread.here(_pipeline())
    assert not any(s.get("remote") for s in here["stages"]) and spread.held(here["stages"], None) == set()
    plain = _pipeline(STAGE_MATRIX.replace(", spread: true", ""))
    assert spread.here(plain) is plain


def test_a_child_is_never_superseded_on_its_own() -> None:
    from apiary.core.concurrency import superseded
    new = {"_id": "9", "repo": "app", "ref": {"branch": "main"}, "trigger": {"type": "push"}, "kind": "push",
           "type": "TEST"}
    older = [{**new, "_id": "1"}, {**new, "_id": "2", "parent": {"id": "1", "number": 1, "unit": "test (1)"}}]
    assert superseded(new, older, auto_cancel=True) == ["1"]  # the parent; its child goes with it


def _entry(unit: str, status: str, number: int) -> dict[str, Any]:
    return {"unit": unit, "job": f"K{number}", "number": number, "status": status, "wave": 1}


@pytest.mark.parametrize(("children", "ids", "reason"), [
    ([_entry("a", "running", 8), _entry("b", "queued", 9)], [], None),  # nothing failed: every cell goes on
    ([_entry("a", "failed", 8), _entry("b", "running", 9), _entry("c", "queued", 10), _entry("d", "passed", 11)],
     ["K9", "K10"], "a failed in job #8: no new stage of the job starts once one failed"),
    ([_entry("a", "cancelled", 8), _entry("c", "queued", 10)], ["K10"],
     "a was cancelled in job #8: no new stage of the job starts once one failed"),
    ([_entry("a", "passed", 8), _entry("b", "errored", 9), _entry("c", "passed", 10)], [],
     "b errored in job #9: no new stage of the job starts once one failed"),
])
def test_once_a_cell_fails_its_siblings_are_looked_at(children: list[Any], ids: list[str],
                                                       reason: str | None) -> None:
    assert spread.stopped(children) == (ids, reason)


@pytest.mark.parametrize(("kid", "stop"), [
    ({"status": "queued"}, True),
    ({"status": "dispatched", "dispatched": 90.0}, True),  # not started yet
    ({"status": "running", "dispatched": 90.0}, False),  # running before the failure: it finishes, as a stage does
    ({"status": "running", "dispatched": 100.5}, True),  # took the failed one's slot after it ended
    ({"status": "running"}, False),
])
def test_a_sibling_that_had_not_started_is_cancelled(kid: dict[str, Any], stop: bool) -> None:
    assert spread.stop_sibling(kid, 100.0) is stop


def test_the_fold_names_the_cell_that_failed_not_a_sibling_stopped_for_it() -> None:
    stopped = _kid("test (3.11)", "cancelled", 8, "cancelled: test (3.12) failed in job #9: no new stage of the job "
                                                  "starts once one failed")
    fold = spread.fold(_parent(), OUT, [stopped, _kid("test (3.12)", "failed", 9)])
    assert fold is not None and fold.error == "test (3.12) failed in job #9"
    # The child it names, as a field (a bisect reads a cancelled one as no verdict, a failed one as bad).
    assert fold.child == {"unit": "test (3.12)", "job": "K9", "number": 9, "status": "failed"}
    fold = spread.fold(_parent(), OUT, [_kid("test (3.11)", "cancelled", 8, "cancelled: by ann"),
                                        _kid("test (3.12)", "passed", 9)])
    assert fold is not None and (fold.child or {}).get("status") == "cancelled"
    # One cancelled by somebody and another that failed: the failure is named (the job says something).
    fold = spread.fold(_parent(), OUT, [_kid("test (3.11)", "cancelled", 8, "cancelled: by ann"),
                                        _kid("test (3.12)", "failed", 9)])
    assert fold is not None and fold.error == "test (3.12) failed in job #9", fold


@pytest.mark.parametrize(("fields", "now", "error"), [
    ({"started": 100.0}, 119.0, None),  # 19 s in
    ({"started": 100.0}, 121.0, "the job timed out after 20 s"),
    # a continuation's start is its own attempt's: the job's time counts from its first start
    ({"started": 150.0, "history": {"1": {"started": 100.0}, "2": {"started": 150.0}}}, 121.0,
     "the job timed out after 20 s"),
    ({"started": None}, 10**9, None),  # never started
    ({"started": 100.0, "pipeline": {"timeout": None}}, 10**9, None),  # no timeout
    ({"started": 100.0, "pipeline": {"timeout": 120.0}}, 221.0, "the job timed out after 2 min"),
])
def test_a_waiting_parents_timeout_counts_from_its_first_start(fields: dict[str, Any], now: float,
                                                                error: str | None) -> None:
    job = {"pipeline": {"timeout": 20.0}, **fields}
    got = spread.overdue(job, now)
    assert (got if got is None else got[:len(error or "")]) == error


def test_artifacts_over_the_cap_are_named_with_their_jobs() -> None:
    left = [("K8", "out/big-m.bin", 1_000_000), ("K9", "out/big-n.bin", 1_000_000)]
    error = spread.over_cap(left, 12 * 2**20, {"K8": 8, "K9": 9})
    assert error.startswith("the artifacts of its child jobs come to more than the 12,582,912 bytes")
    assert "out/big-m.bin (1,000,000 bytes, job #8), out/big-n.bin (1,000,000 bytes, job #9)" in error
    many = spread.over_cap([("K8", f"f{i}", 1) for i in range(8)], 10, {})
    assert "f4 (1 bytes) and 3 more" in many


def test_a_parents_duration_runs_from_its_first_start_across_its_wait() -> None:
    from apiary.queen.api import public_job
    parent = _parent(status="passed", started=130.0, finished=130.2, children=[
        {"unit": "test (3.11)", "job": "K8", "number": 8, "status": "passed", "wave": 1}],
        history={"1": {"started": 100.0, "children": True}})
    assert public_job(parent)["duration"] == 30.2  # not the continuation's 0.2 s
    assert public_job({**parent, "children": []})["duration"] == 0.2  # a job without children: its attempt


def test_following_a_parent_times_the_job_from_its_first_start() -> None:
    import io

    from apiary.cli.follow import Renderer
    out = io.StringIO()
    r = Renderer(out, out)
    r.event({"type": "job:started", "timestamp": 100.0})
    r.between("its child jobs ended: the job goes on (attempt 2)", same_run=True)
    r.event({"type": "job:started", "timestamp": 130.0})
    r.event({"type": "job:done", "timestamp": 130.2, "result": "passed"})
    assert "Job passed in 30.20s" in out.getvalue()


def test_a_continuation_is_sent_what_is_left_of_the_jobs_timeout() -> None:
    parent = _parent(started=None, history={"1": {"started": 100.0}},
                     children=[{"unit": "test (3.11)", "job": "K8", "number": 8, "status": "passed", "wave": 1}])
    parent["pipeline"] = {**parent["pipeline"], "timeout": 20.0}
    assert spread.continued(parent, 112.5)["timeout"] == 8.0  # 7.5 s left, in whole seconds
    assert spread.continued(parent, 150.0)["timeout"] == 1.0  # past it: the drone stops it at once
    assert spread.continued({**parent, "children": []}, 150.0)["timeout"] == 20.0  # not a parent: its own


def test_a_parents_test_report_adds_up_its_childrens() -> None:
    def report(tests: int, failed: int, seconds: float) -> dict[str, Any]:
        return {"tests": tests, "passed": tests - failed, "failed": failed, "errors": 0, "skipped": 0,
                "stored": tests, "listed": {"passed": tests - failed, "failed": failed}, "seconds": seconds,
                "files": [{"path": "junit.xml", "tests": tests}]}
    kids = [{"job": "K8", "number": 8, "unit": "test (shard 1 of 2)", "report": report(3, 0, 1.5)},
            {"job": "K9", "number": 9, "unit": "test (shard 2 of 2)", "report": report(5, 1, 2.25)},
            {"job": "K10", "number": 10, "unit": "lint", "report": None}]  # a child without a report
    got = spread.family_report(None, kids)
    assert got is not None
    assert {k: got[k] for k in ("tests", "passed", "failed", "stored", "seconds")} == {
        "tests": 8, "passed": 7, "failed": 1, "stored": 8, "seconds": 3.75}
    assert got["listed"] == {"passed": 7, "failed": 1}
    assert got["files"] == [{"path": "junit.xml", "tests": 3, "number": 8}, {"path": "junit.xml", "tests": 5, "number": 9}]
    assert [(j["number"], j["failed"]) for j in got["jobs"]] == [(8, 0), (9, 1)]
    # the parent's own report counts too; with no child's, its own as it is; nobody's: none
    assert spread.family_report(report(2, 0, 1.0), kids)["tests"] == 10  # type: ignore[index]
    assert spread.family_report(report(2, 0, 1.0), []) == report(2, 0, 1.0)
    assert spread.family_report(None, kids[2:]) is None


@pytest.mark.parametrize(("resume", "children", "reused"), [
    # a re-run from the failed stage: 3.11 passed in the earlier job's child K8 (reused), 3.12 runs again here
    ({"stages": {"build": {"status": "passed", "job": "OLD"}, "test (3.11)": {"status": "passed", "job": "K8"}}},
     [{"unit": "test (3.12)", "job": "K20", "wave": 1}], [("test (3.11)", "K8")]),
    # a continuation names its own children as where its cells passed: they are its children, counted once
    ({"stages": {"test (3.11)": {"status": "passed", "job": "K8"}, "test (3.12)": {"status": "passed", "job": "K9"}}},
     [{"unit": "test (3.11)", "job": "K8"}, {"unit": "test (3.12)", "job": "K9"}], []),
    ({"stages": {"test (3.11)": {"status": "failed", "job": "K8"}}}, [], []),  # only what passed is reused
    (None, [], []),
])
def test_a_reruns_reused_cells_count_their_childrens_tests(resume: Any, children: list[Any],
                                                           reused: list[Any]) -> None:
    assert spread.reused_children(_parent(resume=resume, children=children)) == reused


@pytest.mark.parametrize(("fields", "said"), [
    ({"status": "failed", "error": "the job timed out after 10 s (its child jobs' time counts: they were cancelled)",
      "pipeline": {"timeout": 10.0}}, "its parent job #7 timed out after 10 s"),
    ({"status": "failed", "error": "the job timed out after 2 min", "pipeline": {"timeout": 120.0}},
     "its parent job #7 timed out after 2 min"),  # its continuation's drone said so
    ({"status": "failed", "error": "test (3.11) failed in job #8"}, "its parent job #7 failed"),
    ({"status": "cancelled", "error": "cancelled"}, "its parent job #7 cancelled"),
])
def test_a_child_cancelled_for_its_parent_says_why_in_the_parents_words(fields: dict[str, Any], said: str) -> None:
    assert spread.parent_ended(_parent(**fields)) == said


def test_a_childs_own_timeout_is_a_backstop_past_its_parents() -> None:
    """The parent's timeout counts from its first start and cancels its children; a child that started at once
    must not time out on its own a moment before, as if it were its own fault."""
    pipeline = {**_pipeline(), "timeout": 10.0}
    child = spread.child_job(_parent(pipeline), "test (3.11)", {}, [], "K8", 8, 100.0)
    assert child["pipeline"]["timeout"] == 10.0 + spread.CHILD_TIMEOUT_GRACE
    assert spread.child_job(_parent(), "test (3.11)", {}, [], "K8", 8, 100.0)["pipeline"]["timeout"] is None


def test_following_a_parent_says_its_whole_time_and_counts_its_attempts_as_people_do() -> None:
    import io

    from apiary.cli.follow import Follower, shown_attempt
    waited = {"1": {"attempt": 1, "started": 100.0, "children": True, "counted": False}}
    # it goes on after its children with the same attempt; a retry of its continuation is its second
    assert [shown_attempt(n, {"history": waited}) for n in (1, 2, 3)] == [1, 1, 2]
    assert shown_attempt(2, {"history": {"1": {"attempt": 1, "reason": "drone lost"}}}) == 2
    out = io.StringIO()
    follower = Follower(None, {"id": "P"}, out, io.StringIO())  # type: ignore[arg-type]
    follower.attempt_over(1, {"history": waited})
    follower.attempt_over(2, {"history": {**waited, "2": {"attempt": 2, "reason": "drone d1 was lost"}}})
    follower.held = {"type": "job:done", "attempt": 1, "timestamp": 100.03, "result": "waiting"}
    follower.renderer.started = 100.0
    follower.finish({"status": "failed", "error": "test (shard 1 of 2) failed in job #5", "attempts": 1,
                     "children": [{"job": "K5"}], "started": 100.0, "finished": 115.3, "duration": 15.3})
    text = out.getvalue()
    assert text.startswith("its child jobs ended: the job goes on\n"), text
    assert "attempt 1 ended: drone d1 was lost; the queen runs it again (attempt 2)" in text, text
    assert "in 15.30s" in text, text  # its whole time, not its first part's 0.03 s
