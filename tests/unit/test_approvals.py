"""Approval gates' decisions (apiary.core.approvals), as tables: the key, what waits, who may decide,
what an approval's continuation reuses, when nobody decided in time."""

from __future__ import annotations

import pytest

from apiary.core.approvals import (
    ApprovalError,
    can_wait,
    continuation,
    decide,
    held,
    human,
    may_decide,
    timed_out,
    waiting_gates,
    waiting_lines,
)
from apiary.core.pipeline import PipelineError, load_pipeline

GATE = {"role": "admin", "timeout": 3600.0}


def _stages(*spec: str) -> list[dict]:
    """"b<a" is stage b needing a; a "!" after the name makes it a gate ("d!<b")."""
    out = []
    for s in spec:
        name, _, needs = s.partition("<")
        gate = name.endswith("!")
        out.append({"name": name.rstrip("!"), "needs": needs.split(",") if needs else [],
                    **({"approval": GATE} if gate else {})})
    return out


@pytest.mark.parametrize(("yaml", "said"), [
    ("approval: {role: boss}", "stages[0].approval.role: must be one of admin, member, got 'boss'"),
    ("approval: {timeout: soon}", "stages[0].approval.timeout: 'soon' is not a duration"),
    ("approval: {timeout: 800h}", "stages[0].approval.timeout: at most 30 days, got 800h"),
    ("approval: {who: me}", "stages[0].approval.who: unknown key 'who' (allowed: role, timeout)"),
    ("approval: [admin]", "stages[0].approval: must be a mapping like {role: admin, timeout: 24h}, got list"),
])
def test_a_malformed_approval_is_refused_at_trigger_time_with_its_line_and_field(yaml: str, said: str) -> None:
    with pytest.raises(PipelineError) as err:
        load_pipeline(f"stages:\n  - name: ship\n    {yaml}\n    steps: [\"true\"]\n", ".apiary.yml")
    assert str(err.value).startswith(f".apiary.yml, line 3: {said}")


def test_a_gate_compiles_with_its_defaults() -> None:
    stages = load_pipeline('stages: [{name: a, steps: ["true"]}, {name: ship, needs: [a], approval: true, '
                           'steps: ["true"]}, {name: m, approval: {role: member, timeout: 90m}, steps: ["true"]}]',
                           ".apiary.yml")["stages"]
    assert [s.get("approval") for s in stages] == [None, {"role": "admin", "timeout": 86400.0},
                                                   {"role": "member", "timeout": 5400.0}]


def test_a_cycle_through_a_gate_is_refused_like_any_cycle_of_needs() -> None:
    with pytest.raises(PipelineError, match="needs form a cycle"):
        load_pipeline('stages: [{name: a, needs: [g], steps: ["true"]}, {name: g, needs: [a], approval: true, '
                      'steps: ["true"]}]', ".apiary.yml")


@pytest.mark.parametrize(("stages", "approved", "hold", "gates"), [
    (_stages("a", "b"), set(), set(), []),
    (_stages("a", "g!<a", "c<g"), set(), {"g", "c"}, ["g"]),
    (_stages("a", "g!<a", "c<g", "d<c"), set(), {"g", "c", "d"}, ["g"]),  # what needs a gate, transitively
    (_stages("a", "g!<a", "c<g"), {"g"}, set(), []),
    (_stages("g!", "h!<g", "c<h"), set(), {"g", "h", "c"}, ["g"]),  # the first gate on the way waits first
    (_stages("g!", "h!<g", "c<h"), {"g"}, {"h", "c"}, ["h"]),
    (_stages("c<g", "g!"), set(), {"g", "c"}, ["g"]),  # needs pointing forward
])
def test_what_a_gate_holds_and_which_gates_wait(stages: list, approved: set, hold: set, gates: list) -> None:
    assert held(stages, approved) == hold
    job = {"approvals": [{"stage": s, "decision": "approved"} for s in approved]}
    assert [g["stage"] for g in waiting_gates(stages, job)] == gates


def test_the_drone_says_which_gate_it_stops_at() -> None:
    stages = _stages("a", "g!<a", "c<g")
    assert waiting_lines(stages, held(stages, set())) == [
        "apiary: stage g waits for an approval (an admin, within 1h)"]


@pytest.mark.parametrize(("required", "role", "has_users", "may"), [
    ("admin", "admin", True, True),
    ("admin", "member", True, False),
    ("admin", None, True, False),
    ("member", "member", True, True),
    ("member", "admin", True, True),
    ("admin", None, False, True),  # a queen without users: its owner, on loopback
])
def test_who_may_decide(required: str, role: str | None, has_users: bool, may: bool) -> None:
    assert may_decide(required, role, has_users) is may


def test_a_decision_is_recorded_only_on_the_gate_the_job_waits_at() -> None:
    stages = _stages("a", "g!<a", "c<g")
    job = {"number": 3, "approvals": []}
    assert decide(job, stages, "g", "approved", "ada", 5.0, "ok") == [
        {"stage": "g", "decision": "approved", "by": "ada", "at": 5.0, "comment": "ok"}]
    with pytest.raises(ApprovalError, match="does not wait for an approval of 'c': it waits at g"):
        decide(job, stages, "c", "approved", "ada", 5.0)


def test_an_approved_jobs_continuation_reuses_what_passed_and_its_own_artifacts() -> None:
    job = {"_id": "J", "number": 4, "resume": {"stages": {"a": {"status": "passed", "job": "OLD", "number": 1}},
                                                "artifacts_of": ["OLD"]}}
    outcome = {"stages": [{"name": "a", "status": "reused"}, {"name": "b", "status": "passed"},
                          {"name": "g", "status": "waiting"}, {"name": "c", "status": "waiting"}]}
    resume = continuation(job, outcome, [{"stage": "g", "decision": "approved"}])
    assert resume == {"from_job": "J", "approved": ["g"], "artifacts_of": ["OLD", "J"],
                      "stages": {"a": {"status": "passed", "job": "OLD", "number": 1},
                                 "b": {"status": "passed", "job": "J", "number": 4}}}


@pytest.mark.parametrize(("status", "since", "now", "gate"), [
    ("waiting", 100.0, 3699.0, None),
    ("waiting", 100.0, 3700.0, "g"),
    ("queued", 100.0, 9999.0, None),  # approved meanwhile
    ("waiting", None, 9999.0, None),
])
def test_when_nobody_decided_in_time(status: str, since: float | None, now: float, gate: str | None) -> None:
    job = {"status": status, "waiting_since": since, "approvals": []}
    found = timed_out(job, _stages("a", "g!<a"), now)
    assert (found and found["stage"]) == gate


@pytest.mark.parametrize(("seconds", "said"), [(86400.0, "24h"), (172800.0, "2d"), (5400.0, "90m"), (3600.0, "1h"),
                                               (45.0, "45s"), (1.5, "1.5s")])
def test_a_timeout_is_said_as_people_write_it(seconds: float, said: str) -> None:
    assert human(seconds) == said


ONE_GATE = 'stages: [{name: a, steps: ["true"]}, {name: g, needs: [a], approval: true, steps: ["true"]}]'
TWO_GATES = ('stages: [{name: g, approval: true, steps: ["true"]}, {name: h, needs: [g], approval: true, '
             'steps: ["true"]}]')
DEPLOY_GATE = 'stages: [{name: a, steps: ["true"]}, {name: ship, deploy: true, approval: true, steps: ["true"]}]'


@pytest.mark.parametrize(("pipeline", "job_type", "approved", "may"), [
    (ONE_GATE, "TEST", [], True),
    ('stages: [{name: a, steps: ["true"]}]', "TEST", [], False),  # no gate: a drone's wait is believed never
    (ONE_GATE, "TEST", ["g"], False),  # its continuation, the gate approved: nothing left to wait at
    (TWO_GATES, "TEST", ["g"], True),  # the next gate on the way
    (TWO_GATES, "TEST", ["g", "h"], False),
    (DEPLOY_GATE, "TEST", [], False),  # the gate is in a stage this job's type does not run
    (DEPLOY_GATE, "TEST_DEPLOY", [], True),
    (None, "TEST", [], False),  # no pipeline at all
])
def test_a_job_can_wait_only_at_a_gate_it_has_now(pipeline: str | None, job_type: str, approved: list[str],
                                                   may: bool) -> None:
    job = {"type": job_type, "approvals": [{"stage": s, "decision": "approved"} for s in approved],
           **({"pipeline": load_pipeline(pipeline, ".apiary.yml")} if pipeline else {})}
    assert can_wait(job) is may
