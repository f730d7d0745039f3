"""The job state machine, as a table: each row a state, an event, and what must follow."""

from __future__ import annotations

import dataclasses

import pytest

from apiary.core.jobstate import (
    CancelAsked,
    CancelCopy,
    Dispatched,
    DroneGone,
    Finished,
    JobState,
    NotDelivered,
    Policy,
    Release,
    Started,
    Write,
    admit,
    drone_event,
    final_status,
    transition,
)
from apiary.core.protocol import JobStatus as S

P = Policy(max_attempts=3)
QUEUED = JobState()
DISPATCHED = JobState(S.DISPATCHED, 1, "d1", dispatched=10.0)
RUNNING = JobState(S.RUNNING, 1, "d1", dispatched=10.0, started=11.0)
PASSED = JobState(S.PASSED, 1, "d1")
LAST_TRY = JobState(S.RUNNING, 3, "d1", failures=2)
CANCELLING = JobState(S.RUNNING, 1, "d1", dispatched=10.0, started=11.0, cancelling=True)

# (name, state before, event, state after, effects other than the write, fields the write sets)
TABLE = [
    ("dispatch takes a queued job", QUEUED, Dispatched("d1", 10.0),
     JobState(S.DISPATCHED, 1, "d1", dispatched=10.0), [],
     {"status": "dispatched", "attempts": 1, "drone": "d1", "dispatched": 10.0, "started": None}),
    ("a dispatched job that never arrived goes back uncounted (its attempt number stays used)", DISPATCHED,
     NotDelivered("d1"), JobState(S.QUEUED, 1, None, dispatched=10.0), [Release("d1")],
     {"status": "queued", "drone": None}),
    ("the drone starts it", DISPATCHED, Started("d1", 1, 11.0),
     JobState(S.RUNNING, 1, "d1", dispatched=10.0, started=11.0), [], {"status": "running", "started": 11.0}),
    ("it passes", RUNNING, Finished("d1", 1, "passed", 12.0),
     JobState(S.PASSED, 1, "d1", dispatched=10.0, started=11.0), [Release("d1")],
     {"status": "passed", "finished": 12.0}),
    ("it fails, with the drone's reason", RUNNING, Finished("d1", 1, "failed", 12.0, error="stage test failed"),
     JobState(S.FAILED, 1, "d1", dispatched=10.0, started=11.0), [Release("d1")],
     {"status": "failed", "finished": 12.0, "error": "stage test failed"}),
    ("an unknown result is an error", RUNNING, Finished("d1", 1, "running", 12.0),
     JobState(S.ERRORED, 1, "d1", dispatched=10.0, started=11.0), [Release("d1")],
     {"status": "errored", "finished": 12.0}),
    ("a drone that cancelled it on request", RUNNING, Finished("d1", 1, "cancelled", 12.0, error="cancelled"),
     JobState(S.CANCELLED, 1, "d1", dispatched=10.0, started=11.0), [Release("d1")],
     {"status": "cancelled", "finished": 12.0, "error": "cancelled"}),
    ("a setup failure is retried", RUNNING, Finished("d1", 1, "errored", 12.0, error="setup failed: pip failed", retry=True),
     JobState(S.QUEUED, 1, None, failures=1), [Release("d1")],
     {"status": "queued", "drone": None,
      "history.1": {"attempt": 1, "drone": "d1", "dispatched": 10.0, "started": 11.0, "ended": 12.0,
                    "reason": "drone d1: setup failed: pip failed"}}),
    ("a setup failure on the last attempt ends errored", LAST_TRY,
     Finished("d1", 3, "errored", 12.0, error="setup failed: pip failed", retry=True),
     JobState(S.ERRORED, 3, "d1", failures=3), [Release("d1")],
     {"status": "errored", "finished": 12.0,
      "error": "drone d1: setup failed: pip failed; 3 attempts made, none finished",
      "history.3": {"attempt": 3, "drone": "d1", "dispatched": None, "started": None, "ended": 12.0,
                    "reason": "drone d1: setup failed: pip failed"}}),
    ("a running job whose drone is lost is retried", RUNNING, DroneGone("d1", "drone d1 was lost", 20.0),
     JobState(S.QUEUED, 1, None, failures=1), [Release("d1")],
     {"status": "queued", "drone": None,
      "history.1": {"attempt": 1, "drone": "d1", "dispatched": 10.0, "started": 11.0, "ended": 20.0,
                    "reason": "drone d1 was lost"}}),
    ("a dispatched job whose drone is lost goes back uncounted, and is listed", DISPATCHED,
     DroneGone("d1", "lost", 20.0), JobState(S.QUEUED, 1, None, dispatched=10.0), [Release("d1")],
     {"status": "queued", "drone": None,
      "history.1": {"attempt": 1, "drone": "d1", "dispatched": 10.0, "started": None, "ended": 20.0,
                    "reason": "lost; it had not started (not counted)", "counted": False}}),
    ("the last attempt's lost drone ends it errored, saying why", LAST_TRY,
     DroneGone("d1", "drone d1 stopped", 20.0), JobState(S.ERRORED, 3, "d1", failures=3), [Release("d1")],
     {"status": "errored", "finished": 20.0, "error": "drone d1 stopped; 3 attempts made, none finished",
      "history.3": {"attempt": 3, "drone": "d1", "dispatched": None, "started": None, "ended": 20.0,
                    "reason": "drone d1 stopped"}}),
    ("a cancel while queued ends it at once", QUEUED, CancelAsked(30.0), JobState(S.CANCELLED), [],
     {"status": "cancelled", "finished": 30.0, "error": "cancelled"}),
    ("a cancel while running asks the drone, for this attempt, and notes it", RUNNING, CancelAsked(30.0),
     CANCELLING, [CancelCopy("d1", 1)], {"cancel_requested": True}),
    ("a cancel while dispatched asks the drone too", DISPATCHED, CancelAsked(30.0),
     JobState(S.DISPATCHED, 1, "d1", dispatched=10.0, cancelling=True), [CancelCopy("d1", 1)],
     {"cancel_requested": True}),
    ("a cancelled job whose drone is lost before confirming ends cancelled, not retried", CANCELLING,
     DroneGone("d1", "drone d1 was lost", 31.0), JobState(S.CANCELLED, 1, "d1", dispatched=10.0, started=11.0,
                                                          cancelling=True), [Release("d1")],
     {"status": "cancelled", "finished": 31.0, "error": "cancelled"}),
    ("a cancelled job its stopping drone hands back ends cancelled", CANCELLING,
     Finished("d1", 1, "errored", 31.0, error="stopped while the job ran", retry=True),
     JobState(S.CANCELLED, 1, "d1", dispatched=10.0, started=11.0, cancelling=True), [Release("d1")],
     {"status": "cancelled", "finished": 31.0, "error": "cancelled"}),
    ("a cancel while its drone is away ends it here", RUNNING, CancelAsked(30.0, reachable=False),
     JobState(S.CANCELLED, 1, "d1", dispatched=10.0, started=11.0), [Release("d1")],
     {"status": "cancelled", "finished": 30.0, "error": "cancelled while its drone was away"}),
]

# Events that do not apply: nothing changes, nothing is done.
NOTHING = [
    ("a cancel of an ended job", PASSED, CancelAsked(30.0)),
    ("a second dispatch", DISPATCHED, Dispatched("d2", 11.0)),
    ("a start from another drone", DISPATCHED, Started("d2", 1, 11.0)),
    ("a start of an older attempt", JobState(S.DISPATCHED, 2, "d1"), Started("d1", 1, 11.0)),
    ("the end of an attempt already written off (the paused drone)", JobState(S.QUEUED, 1, None, failures=1),
     Finished("d1", 1, "passed", 12.0)),
    ("the end of an older attempt on the same drone", JobState(S.RUNNING, 2, "d1", failures=1),
     Finished("d1", 1, "cancelled", 12.0)),
    ("a lost drone that no longer has the job", RUNNING, DroneGone("d2", "lost", 20.0)),
    ("a lost drone of an ended job", PASSED, DroneGone("d1", "lost", 20.0)),
    ("an undelivered job that had started", RUNNING, NotDelivered("d1")),
    ("a second cancel while the drone is stopping it", CANCELLING, Dispatched("d2", 32.0)),
]


@pytest.mark.parametrize(("name", "before", "event", "after", "effects", "fields"), TABLE, ids=[r[0] for r in TABLE])
def test_transition(name: str, before: JobState, event: object, after: JobState, effects: list[object],
                    fields: dict[str, object] | None) -> None:
    state, done = transition(before, event, P)  # type: ignore[arg-type]
    assert state == after
    writes = [e for e in done if isinstance(e, Write)]
    assert [e for e in done if not isinstance(e, Write)] == effects
    if fields is None:
        assert writes == []
    else:
        assert len(writes) == 1
        assert writes[0].fields == fields
        # Compare-and-set: the write lands only on the state it was decided on.
        assert writes[0].expect == before.expect()


@pytest.mark.parametrize(("name", "before", "event"), NOTHING, ids=[r[0] for r in NOTHING])
def test_events_that_do_not_apply_change_nothing(name: str, before: JobState, event: object) -> None:
    assert transition(before, event, P) == (before, [])  # type: ignore[arg-type]


def test_a_paused_drone_returning_leaves_the_retry_to_run_and_pass_on_it() -> None:
    # The drone is paused past the heartbeat timeout while attempt 1 runs.
    state, _ = transition(RUNNING, DroneGone("d1", "drone d1 was lost (silent for 3 s)", 20.0), P)
    assert (state.status, state.attempt, state.drone) == (S.QUEUED, 1, None)
    # It comes back: whatever attempt 1 says is stale, and its copy is cancelled by attempt number.
    assert admit(state, "d1", 1) == "stale"
    assert transition(state, Finished("d1", 1, "passed", 21.0), P) == (state, [])
    # Attempt 2 goes to the same drone; its events are accepted and it passes.
    state, _ = transition(state, Dispatched("d1", 22.0), P)
    assert state.attempt == 2 and admit(state, "d1", 2) == "accept" and admit(state, "d1", 1) == "stale"
    state, _ = transition(state, Started("d1", 2, 22.5), P)
    state, _ = transition(state, Finished("d1", 2, "passed", 23.0), P)
    assert state.status is S.PASSED


def test_a_stopped_drone_or_queen_never_makes_a_job_cancelled() -> None:
    # A drone that stops reports an errored attempt to retry; a queen that restarts finds the drone
    # without the job, or without the drone: both are a lost attempt. Nobody asked to cancel.
    stopped = transition(RUNNING, Finished("d1", 1, "errored", 12.0, error="stopped while the job ran", retry=True), P)[0]
    restarted = transition(RUNNING, DroneGone("d1", "drone d1 no longer runs this job (it restarted)", 12.0), P)[0]
    vanished = transition(RUNNING, DroneGone("d1", "drone d1 did not return after the queen restarted", 12.0), P)[0]
    assert {stopped.status, restarted.status, vanished.status} == {S.QUEUED}
    for _ in range(2):
        stopped, _ = transition(stopped, Dispatched("d1", 13.0), P)
        stopped, _ = transition(stopped, Started("d1", stopped.attempt, 13.5), P)
        stopped, _ = transition(stopped, DroneGone("d1", "drone d1 stopped", 14.0), P)
    assert stopped.status is S.ERRORED  # out of attempts: errored with the reason, not cancelled


def test_attempt_numbers_only_grow_so_a_returning_copy_is_always_stale() -> None:
    # Dispatched to a drone that paused before starting it: written off, sent again (to the same drone).
    state, _ = transition(DISPATCHED, DroneGone("d1", "drone d1 was lost", 20.0), P)
    assert (state.status, state.attempt, state.failures) == (S.QUEUED, 1, 0)  # not counted against max
    state, _ = transition(state, Dispatched("d1", 21.0), P)
    assert state.attempt == 2 and admit(state, "d1", 1) == "stale" and admit(state, "d1", 2) == "accept"


def test_a_second_cancel_asks_the_drone_again_without_writing_again_and_stops_the_cleanup_too() -> None:
    state, effects = transition(CANCELLING, CancelAsked(40.0), P)
    assert state == CANCELLING and effects == [CancelCopy("d1", 1, force=True)]


@pytest.mark.parametrize(("state", "drone", "attempt", "verdict"), [
    (RUNNING, "d1", 1, "accept"),
    (DISPATCHED, "d1", 1, "accept"),
    (RUNNING, "d2", 1, "stale"),  # another drone claiming the job
    (RUNNING, "d1", 0, "stale"),  # an older attempt
    (JobState(S.QUEUED, 1, None), "d1", 1, "stale"),  # written off, waiting for its next attempt
    (JobState(S.CANCELLED, 1, "d1"), "d1", 1, "late"),  # ended here while the drone was away
    (JobState(S.CANCELLED, 1, "d1"), "d1", 0, "stale"),
])
def test_fencing(state: JobState, drone: str, attempt: int, verdict: str) -> None:
    assert admit(state, drone, attempt) == verdict


def test_drone_messages_become_events() -> None:
    assert drone_event("d1", "job:started", {"timestamp": 5.0, "attempt": 2}) == Started("d1", 2, 5.0)
    assert drone_event("d1", "job:done", {"timestamp": 6.0, "result": "failed", "attempt": 2, "retry": True,
                                          "error": 7}) == Finished("d1", 2, "failed", 6.0, None, True)
    assert drone_event("d1", "job:stdout", {"text": "x"}) is None


def test_a_result_that_is_not_a_final_state_is_an_error() -> None:
    assert final_status("passed") is S.PASSED
    assert final_status("running") is S.ERRORED
    assert final_status(None) is S.ERRORED


def test_a_stored_job_reads_as_its_state() -> None:
    job = {"status": "running", "attempts": 2, "drone": "d1", "history": {"1": {}}, "dispatched": 1.0, "started": 2.0,
           "cancel_requested": True}
    assert JobState.of(job) == JobState(S.RUNNING, 2, "d1", 1, 1.0, 2.0, cancelling=True)
    assert JobState.of({"status": "queued"}) == JobState()
    # An attempt that never started is listed, not counted (the embedded store keeps false as 0).
    listed = {"status": "queued", "attempts": 2, "history": {"1": {"counted": 0}, "2": {"reason": "lost"}}}
    assert JobState.of(listed).failures == 1


# -- approval gates (apiary.core.approvals): a job waits on no drone until somebody decides ---------------------

from apiary.core.jobstate import Decided, GateTimedOut  # noqa: E402  (the gates' events, beside their table)

WAITING = JobState(S.WAITING, 1, "d1", dispatched=10.0, started=11.0)
YES = [{"stage": "deploy", "decision": "approved", "by": "ada", "at": 50.0}]
NO = [{"stage": "deploy", "decision": "rejected", "by": "bob", "at": 50.0}]
LATE = [{"stage": "deploy", "decision": "timed_out", "by": None, "at": 50.0}]
GOES_ON = {"from_job": "J", "stages": {"build": {"status": "passed", "job": "J", "number": 4}}, "artifacts_of": ["J"],
           "approved": ["deploy"]}

GATES = [
    ("a drone that reached a gate: the job waits, its slot freed", RUNNING,
     Finished("d1", 1, "waiting", 12.0, at_gate=True),
     WAITING, [Release("d1")],
     {"status": "waiting", "waiting_since": 12.0,
      "history.1": {"attempt": 1, "drone": "d1", "dispatched": 10.0, "started": 11.0, "ended": 12.0,
                    "reason": "stopped at its approval gate", "counted": False, "gate": True}}),
    ("approved: its continuation is queued, a partial run", WAITING, Decided("deploy", True, "ada", 50.0, YES, GOES_ON),
     JobState(S.QUEUED, 1, None, dispatched=10.0, started=11.0), [],
     {"status": "queued", "drone": None, "approvals": YES, "resume": GOES_ON}),
    ("rejected: it fails, naming who", WAITING, Decided("deploy", False, "bob", 50.0, NO),
     JobState(S.FAILED, 1, "d1", dispatched=10.0, started=11.0), [],
     {"status": "failed", "approvals": NO, "finished": 50.0, "error": "stage deploy was rejected by bob"}),
    ("nobody decided in time: it fails, saying so", WAITING, GateTimedOut("deploy", "24h", 50.0, LATE),
     JobState(S.FAILED, 1, "d1", dispatched=10.0, started=11.0), [],
     {"status": "failed", "approvals": LATE, "finished": 50.0, "error": "nobody approved stage deploy within 24h"}),
    ("a cancel while it waits ends it at once (no drone to ask)", WAITING, CancelAsked(50.0),
     JobState(S.CANCELLED, 1, "d1", dispatched=10.0, started=11.0), [],
     {"status": "cancelled", "finished": 50.0, "error": "cancelled while it waited for an approval"}),
    ("a newer job supersedes a waiting one: it says by which", WAITING, CancelAsked(50.0, reason="superseded by app#9"),
     JobState(S.CANCELLED, 1, "d1", dispatched=10.0, started=11.0), [],
     {"status": "cancelled", "finished": 50.0, "error": "cancelled: superseded by app#9"}),
    ("a gate reached as a newer job superseded it: cancelled, not waiting",
     dataclasses.replace(RUNNING, cancelling=True, cancel_reason="superseded by app#9"),
     Finished("d1", 1, "waiting", 12.0),
     dataclasses.replace(RUNNING, status=S.CANCELLED, cancelling=True, cancel_reason="superseded by app#9"),
     [Release("d1")], {"status": "cancelled", "finished": 12.0, "error": "cancelled: superseded by app#9"}),
    # A drone cannot leave a job waiting forever: a wait at no gate the job has now (none in its pipeline,
    # or all approved; apiary.core.approvals.can_wait) could be decided by nobody and would never time out.
    ("a drone's wait at no approval gate ends the job errored", RUNNING, Finished("d1", 1, "waiting", 12.0),
     JobState(S.ERRORED, 1, "d1", dispatched=10.0, started=11.0), [Release("d1")],
     {"status": "errored", "finished": 12.0, "error": "drone d1 reported a wait at no approval gate"}),
    ("a job:done cannot say it is at a gate: only the queen does", RUNNING,
     drone_event("d1", "job:done", {"timestamp": 12.0, "result": "waiting", "attempt": 1, "at_gate": True}),
     JobState(S.ERRORED, 1, "d1", dispatched=10.0, started=11.0), [Release("d1")],
     {"status": "errored", "finished": 12.0, "error": "drone d1 reported a wait at no approval gate"}),
    ("the continuation is dispatched as the next attempt", JobState(S.QUEUED, 1, None), Dispatched("d2", 60.0),
     JobState(S.DISPATCHED, 2, "d2", dispatched=60.0), [],
     {"status": "dispatched", "attempts": 2, "drone": "d2", "dispatched": 60.0, "started": None}),
]

GATES_NOTHING = [
    ("a decision on a job that does not wait", RUNNING, Decided("deploy", True, "ada", 50.0, YES, GOES_ON)),
    ("a decision on an ended job", PASSED, Decided("deploy", False, "bob", 50.0, NO)),
    ("a time-out of a job approved meanwhile", JobState(S.QUEUED, 1, None), GateTimedOut("deploy", "1h", 50.0, LATE)),
    ("a waiting job is on no drone: losing its old one changes nothing", WAITING, DroneGone("d1", "lost", 50.0)),
    ("a waiting job's old attempt cannot end it", WAITING, Finished("d1", 1, "passed", 50.0)),
]


@pytest.mark.parametrize(("name", "before", "event", "after", "effects", "fields"), GATES, ids=[r[0] for r in GATES])
def test_approval_gates(name: str, before: JobState, event: object, after: JobState, effects: list[object],
                        fields: dict[str, object]) -> None:
    test_transition(name, before, event, after, effects, fields)


@pytest.mark.parametrize(("name", "before", "event"), GATES_NOTHING, ids=[r[0] for r in GATES_NOTHING])
def test_gate_events_that_do_not_apply_change_nothing(name: str, before: JobState, event: object) -> None:
    assert transition(before, event, P) == (before, [])  # type: ignore[arg-type]


def test_a_waiting_job_is_neither_final_nor_on_a_drone_and_its_drone_events_are_stale() -> None:
    assert not WAITING.final and not WAITING.on_drone
    assert admit(WAITING, "d1", 1) == "stale"
    # Its attempt before the gate is listed, not counted: the continuation keeps every retry it had.
    stored = {"status": "waiting", "attempts": 1, "drone": "d1",
              "history": {"1": {"attempt": 1, "counted": False, "gate": True}}}
    assert JobState.of(stored).failures == 0
