"""The job state machine: every change of a job's status is decided here, and only here.

    transition(state, event, policy) -> (state, effects)

Pure: no I/O, no clock (events carry their times). The queen's hive, dispatcher
and recorder read a job's `JobState` from the store (or from memory), ask
`transition` what follows an event, and carry out the effects it returns:
a compare-and-set `Write` of the job document (fenced by `Write.expect`, so a
decision taken on a state that changed meanwhile lands nowhere), `CancelCopy`
to a drone, `Release` of a drone's slot. They decide nothing themselves.

    queued ──Dispatched──> dispatched ──Started──> running ──Finished──> passed | failed | errored | cancelled
      ^  <──NotDelivered──┘    │                      │
      │                        └──────DroneGone───────┤ (retry while attempts remain, else errored)
      └──── Finished(retry: setup failed, drone stopped) ┘
    queued ──CancelAsked──> cancelled;  dispatched | running ──CancelAsked──> CancelCopy (the drone ends it),
                                         or cancelled at once when its drone is away
    running ──Finished(waiting)──> waiting (an approval gate; its drone freed) ──Decided(approve)──> queued
                                   (its continuation, a partial run) | ──Decided(reject), GateTimedOut──> failed
                                   | ──CancelAsked──> cancelled
    running ──Finished(waiting)──> waiting (remote stages: child jobs run them, apiary.core.spread)
                                   ──Folded(resume)──> queued (its continuation) | ──Folded(error)──> failed
    (a Finished(waiting) of a job somebody asked to cancel ends it cancelled: the cancel is not lost at the gate;
     one of a job with no gate it can wait at now, `Finished.at_gate` false, ends it errored)

Attempts are the fencing token (as in Woodpecker's and procrastinate's workers): a
job's attempt number grows by one per dispatch and every drone event carries it;
`admit` refuses an event of another attempt or drone, so a drone that was paused
and written off can never change a job given to another attempt, even on the
same drone. A cancel names the attempt it concerns, so a drone never applies an
older attempt's cancel to a newer one. A job is `cancelled` only when somebody
asked for it: a drone that stops or vanishes makes the attempt end in a retry
or `errored`, with the reason (DESIGN.md §5, docs/design-notes.md "The job state machine").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from .protocol import FINAL_STATES, JobStatus

# -- the state ------------------------------------------------------------------


class StateFields(TypedDict):
    """The fields of a job document (apiary.core.models.Job) that hold its state."""

    status: str  # a JobStatus value
    attempts: int  # the current attempt: 0 before the first dispatch
    drone: str | None  # the current attempt's drone


@dataclass(frozen=True)
class JobState:
    """What the state machine knows of a job: its status, its current attempt (0 before the first
    dispatch), the drone that attempt went to, how many attempts ended in a retry (`failures`), and
    when the current attempt was dispatched and started (seconds since the epoch, for its history)."""

    status: JobStatus = JobStatus.QUEUED
    attempt: int = 0
    drone: str | None = None
    failures: int = 0
    dispatched: float | None = None
    started: float | None = None
    cancelling: bool = False  # somebody asked to cancel it and its drone was told: it must not run again
    cancel_reason: str | None = None  # why, when more than "cancelled" ("superseded by app#13")
    for_children: bool = False  # waiting: for its child jobs (apiary.core.spread), not at an approval gate

    @classmethod
    def of(cls, job: Mapping[str, Any]) -> JobState:
        """The state of a stored job document (``status``, ``attempts``, ``drone``, ``history``, times)."""
        # Attempts that never started are listed but not counted (the embedded store keeps false as 0).
        counted = [r for r in (job.get("history") or {}).values() if not isinstance(r, dict) or r.get("counted", True)]
        last = (job.get("history") or {}).get(str(job.get("attempts") or 0))
        return cls(JobStatus(job["status"]), int(job.get("attempts") or 0), job.get("drone"),
                   len(counted), job.get("dispatched"), job.get("started"),
                   bool(job.get("cancel_requested")),  # the embedded store keeps true as 1
                   job.get("cancel_reason") if isinstance(job.get("cancel_reason"), str) else None,
                   isinstance(last, dict) and bool(last.get("children")))

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES

    @property
    def on_drone(self) -> bool:
        return self.status in (JobStatus.DISPATCHED, JobStatus.RUNNING)

    def fields(self) -> StateFields:
        """The job document fields of this state, for a job being created (``JobState().fields()``)."""
        return {"status": self.status.value, "attempts": self.attempt, "drone": self.drone}

    def expect(self) -> dict[str, Any]:
        """The job document fields that must still hold for a change decided on this state."""
        return {"status": self.status.value, "attempts": self.attempt, "drone": self.drone}


@dataclass(frozen=True)
class Policy:
    """`max_attempts`: how many attempts a job gets when drones are lost or fail to set it up."""

    max_attempts: int = 3


# -- events ---------------------------------------------------------------------


@dataclass(frozen=True)
class Dispatched:
    """The dispatcher gives the job to `drone` at `now` (seconds since the epoch)."""

    drone: str
    now: float


@dataclass(frozen=True)
class NotDelivered:
    """The job never reached `drone` (the send failed, the drone left first, or it says it never heard of it)."""

    drone: str


@dataclass(frozen=True)
class Started:
    """`drone` reports attempt `attempt` started at `timestamp` (``job:started``)."""

    drone: str
    attempt: int
    timestamp: float


@dataclass(frozen=True)
class Finished:
    """`drone` reports attempt `attempt` ended (``job:done``): `result` as it said it; `retry` when the
    attempt could not be set up there (an infrastructure fault, not the job's). `at_gate`: the queen's own
    word, never the drone's, that the job has an approval gate it can be waiting at now
    (apiary.core.approvals.can_wait); a ``waiting`` result without it ends the job errored."""

    drone: str
    attempt: int
    result: Any
    timestamp: float
    error: str | None = None
    retry: bool = False
    usage: dict[str, Any] | None = None
    at_gate: bool = False
    for_children: bool = False  # the queen's word: what it waits at is its remote stages' child jobs (core/spread)


@dataclass(frozen=True)
class DroneGone:
    """`drone` lost the job's attempt: silent past the heartbeat timeout, restarted without it, or it
    did not return after a queen restart. `reason` says which, for the job's history. An attempt it
    never reported starting goes back to the queue uncounted; a started one is retried or errored."""

    drone: str
    reason: str
    now: float


@dataclass(frozen=True)
class CancelAsked:
    """Somebody cancelled the job at `now`; `reachable`: its drone is connected and can be told;
    `reason`: why, when more than a person's cancel ("superseded by app#13"), for the job's error."""

    now: float
    reachable: bool = True
    reason: str | None = None


@dataclass(frozen=True)
class Decided:
    """Somebody approved or rejected approval gate `stage` of a job waiting for it (apiary.core.approvals)
    at `now`. `approvals`: the job's decisions with this one last ([{stage, decision, by, at, comment?}]);
    `resume`: on approval, the partial run that goes on (apiary.core.partial), queued."""

    stage: str
    approve: bool
    by: str
    now: float
    approvals: list[dict[str, Any]]
    resume: dict[str, Any] | None = None


@dataclass(frozen=True)
class GateTimedOut:
    """Nobody decided on gate `stage` of a waiting job within its `timeout` (said as given: "24h")."""

    stage: str
    timeout: str
    now: float
    approvals: list[dict[str, Any]]


@dataclass(frozen=True)
class Folded:
    """Every child job a waiting job made for its remote stages has ended (apiary.core.spread.fold) at `now`:
    `resume` is its continuation (queued again, a partial run), else `error` says why it fails (a cell failed
    in its child). `children`: the job's ``children`` with their final statuses."""

    now: float
    children: list[dict[str, Any]]
    resume: dict[str, Any] | None = None
    error: str | None = None
    failed_child: dict[str, Any] | None = None  # the child `error` names (apiary.core.spread.Fold.child)


Event = Dispatched | NotDelivered | Started | Finished | DroneGone | CancelAsked | Decided | GateTimedOut | Folded

# -- effects --------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    """Set `fields` on the job document, only if it still matches `expect` (compare-and-set)."""

    fields: dict[str, Any]
    expect: dict[str, Any]


@dataclass(frozen=True)
class CancelCopy:
    """Tell `drone` to stop its copy of attempt `attempt` (``job:cancel``); `force`: somebody cancelled it
    again, so its cleanup is stopped too. Any number of plain cancels of one copy are one cancel."""

    drone: str
    attempt: int
    force: bool = False


@dataclass(frozen=True)
class Release:
    """The job no longer holds a slot on `drone`."""

    drone: str


Effect = Write | CancelCopy | Release


# -- the decision ---------------------------------------------------------------


def transition(state: JobState, event: Event, policy: Policy) -> tuple[JobState, list[Effect]]:
    """What follows `event` for a job in `state`: the new state and the effects that carry it out.

    An event that does not apply to `state` (a cancel of an ended job, a drone's end of an attempt
    already written off) changes nothing: the same state and no effects. Never raises for such events.
    """
    match event:
        case Dispatched(drone=drone, now=now) if state.status is JobStatus.QUEUED:
            new = dataclasses.replace(state, status=JobStatus.DISPATCHED, attempt=state.attempt + 1, drone=drone,
                                      dispatched=now, started=None)
            return new, [_write(state, new, dispatched=now, started=None)]
        case DroneGone(drone=drone, now=now) if state.cancelling and state.on_drone and state.drone == drone:
            # Cancelled, and its drone went before confirming it: it ends here, it is not run again.
            new = dataclasses.replace(state, status=JobStatus.CANCELLED)
            return new, [_write(state, new, finished=now, error=_cancelled(state.cancel_reason)), Release(drone)]
        case NotDelivered(drone=drone) if state.status is JobStatus.DISPATCHED and state.drone == drone:
            # It never ran: back to the queue, and the attempt does not count against max_attempts (its
            # number stays used: attempt numbers only grow, they are the fencing token).
            new = dataclasses.replace(state, status=JobStatus.QUEUED, drone=None)
            return new, [_write(state, new), Release(drone)]
        case Started(drone=drone, attempt=attempt, timestamp=at) if state.on_drone and _same(state, drone, attempt):
            new = dataclasses.replace(state, status=JobStatus.RUNNING, started=at)
            return new, [_write(state, new, started=at)]
        case Finished() if state.on_drone and _same(state, event.drone, event.attempt):
            return _finished(state, event, policy)
        case DroneGone(drone=drone, reason=reason, now=now) if state.status is JobStatus.DISPATCHED \
                and state.drone == drone:
            # It never reported a start: back to the queue, not counted against max_attempts; its
            # attempt number stays used, so whatever that copy still says is refused. Listed all the same.
            new = dataclasses.replace(state, status=JobStatus.QUEUED, drone=None)
            record = {"attempt": state.attempt, "drone": drone, "dispatched": state.dispatched, "started": None,
                      "ended": now, "reason": f"{reason}; it had not started (not counted)", "counted": False}
            return new, [_write(state, new, **{f"history.{state.attempt}": record}), Release(drone)]
        case DroneGone(drone=drone, reason=reason, now=now) if state.status is JobStatus.RUNNING \
                and state.drone == drone:
            return _attempt_over(state, reason, now, policy)
        case Decided(approve=True, now=now) if state.status is JobStatus.WAITING:
            # Its continuation goes to the queue: a partial run of the same job (a new attempt, numbered on).
            new = dataclasses.replace(state, status=JobStatus.QUEUED, drone=None)
            return new, [_write(state, new, approvals=event.approvals, resume=event.resume)]
        case Decided(now=now) if state.status is JobStatus.WAITING:
            new = dataclasses.replace(state, status=JobStatus.FAILED)
            return new, [_write(state, new, approvals=event.approvals, finished=now,
                                error=f"stage {event.stage} was rejected by {event.by}")]
        case GateTimedOut(now=now) if state.status is JobStatus.WAITING:
            new = dataclasses.replace(state, status=JobStatus.FAILED)
            return new, [_write(state, new, approvals=event.approvals, finished=now,
                                error=f"nobody approved stage {event.stage} within {event.timeout}")]
        case Folded() if state.status is JobStatus.WAITING and event.resume is not None:
            # Its child jobs passed: it goes on from them (apiary.core.spread), a new attempt like an approval's.
            new = dataclasses.replace(state, status=JobStatus.QUEUED, drone=None)
            return new, [_write(state, new, children=event.children, resume=event.resume)]
        case Folded(now=now) if state.status is JobStatus.WAITING:
            new = dataclasses.replace(state, status=JobStatus.FAILED)
            return new, [_write(state, new, children=event.children, finished=now,
                                error=event.error or "a child job did not pass",
                                **({"failed_child": event.failed_child} if event.failed_child else {}))]
        case CancelAsked(now=now) if state.status is JobStatus.WAITING:
            new = dataclasses.replace(state, status=JobStatus.CANCELLED)
            return new, [_write(state, new, finished=now, error=_cancelled(event.reason) if event.reason
                                else "cancelled while its child jobs ran" if state.for_children
                                else "cancelled while it waited for an approval")]
        case CancelAsked(now=now) if state.status is JobStatus.QUEUED:
            new = dataclasses.replace(state, status=JobStatus.CANCELLED)
            return new, [_write(state, new, finished=now, error=_cancelled(event.reason))]
        case CancelAsked(reachable=True) if state.on_drone and state.drone is not None:
            # The drone ends it (cleanup runs there) and reports job:done cancelled. Noted on the job: if the
            # drone is lost or stops before it says so, the job ends cancelled instead of running again.
            new = dataclasses.replace(state, cancelling=True, cancel_reason=state.cancel_reason or event.reason)
            effects = [CancelCopy(state.drone, state.attempt, force=state.cancelling)]
            noted = {"cancel_requested": True, **({"cancel_reason": event.reason} if event.reason else {})}
            return new, ([] if state.cancelling else [Write(noted, state.expect())]) + effects
        case CancelAsked(now=now) if state.on_drone:
            new = dataclasses.replace(state, status=JobStatus.CANCELLED)
            away = "cancelled while its drone was away" + (f" ({event.reason})" if event.reason else "")
            effects: list[Effect] = [_write(state, new, finished=now, error=away)]
            return new, effects + ([Release(state.drone)] if state.drone else [])
    return state, []


Verdict = Literal["accept", "stale", "late"]


def admit(state: JobState, drone: str, attempt: int) -> Verdict:
    """Whether an event from `drone` about attempt `attempt` may be stored and applied (fencing).

    ``accept``: it is the current attempt on its drone. ``late``: that attempt's job was ended by
    the queen (cancelled while its drone was away, errored): keep what it printed, change nothing,
    stop the copy. ``stale``: another attempt or drone: store nothing, stop that copy.
    """
    if attempt != state.attempt or drone != state.drone:
        return "stale"
    if state.final:
        return "late"
    return "accept" if state.on_drone else "stale"


def final_status(result: Any) -> JobStatus:
    """The status a drone's ``job:done`` result means; anything unknown or not final is an error."""
    try:
        status = JobStatus(result)
    except ValueError:
        return JobStatus.ERRORED
    return status if status in FINAL_STATES else JobStatus.ERRORED


def drone_event(drone: str, kind: str, body: Mapping[str, Any]) -> Started | Finished | None:
    """The event a drone's message of type `kind` (``job:started``, ``job:done``) with `body` means
    for its job's state; None for the messages that do not change it (output, commands, phases)."""
    if kind == "job:started":
        return Started(drone, int(body.get("attempt", 1)), body["timestamp"])
    if kind == "job:done":
        return finished_event(drone, body)
    return None


def finished_event(drone: str, body: Mapping[str, Any]) -> Finished:
    """The `Finished` event a ``job:done`` body from `drone` means."""
    return Finished(drone, int(body.get("attempt", 1)), body.get("result"), body["timestamp"],
                    body.get("error") if isinstance(body.get("error"), str) else None,
                    body.get("retry") is True,
                    body.get("usage") if isinstance(body.get("usage"), dict) else None)


# -- helpers --------------------------------------------------------------------


def _cancelled(reason: str | None) -> str:
    """A cancelled job's error: "cancelled", or "cancelled: superseded by app#13"."""
    return f"cancelled: {reason}" if reason else "cancelled"


def _same(state: JobState, drone: str, attempt: int) -> bool:
    return state.drone == drone and state.attempt == attempt


def _write(old: JobState, new: JobState, **fields: Any) -> Write:
    changed: dict[str, Any] = {"status": new.status.value}
    if new.attempt != old.attempt:
        changed["attempts"] = new.attempt
    if new.drone != old.drone:
        changed["drone"] = new.drone
    return Write({**changed, **fields}, old.expect())


def _finished(state: JobState, event: Finished, policy: Policy) -> tuple[JobState, list[Effect]]:
    if event.retry and state.cancelling:
        # It could not finish there, and somebody asked to cancel it: it ends cancelled.
        new = dataclasses.replace(state, status=JobStatus.CANCELLED)
        return new, [_write(state, new, finished=event.timestamp, error=_cancelled(state.cancel_reason)),
                     Release(event.drone)]
    if event.retry:
        reason = f"drone {event.drone}: {event.error or 'the attempt could not finish there'}"
        return _attempt_over(state, reason, event.timestamp, policy)
    if event.result == JobStatus.WAITING.value and state.cancelling:
        # It reached its gate as somebody cancelled it (or a newer job superseded it): it ends cancelled,
        # not waiting for an approval nobody should give.
        new = dataclasses.replace(state, status=JobStatus.CANCELLED)
        return new, [_write(state, new, finished=event.timestamp, error=_cancelled(state.cancel_reason)),
                     Release(event.drone)]
    if event.result == JobStatus.WAITING.value and not event.at_gate:
        # A wait at a gate the pipeline does not have (or that nobody can decide on now): nobody could
        # approve it and no timeout would end it, so a drone could leave any job waiting forever.
        new = dataclasses.replace(state, status=JobStatus.ERRORED)
        return new, [_write(state, new, finished=event.timestamp,
                            error=f"drone {event.drone} reported a wait at no approval gate"), Release(event.drone)]
    if event.result == JobStatus.WAITING.value:
        # It ran what it could before an approval gate: it waits, holding no drone (apiary.core.approvals).
        # Its attempt is listed (not counted against max_attempts): the page shows it as the part before the wait.
        new = dataclasses.replace(state, status=JobStatus.WAITING)
        record = {"attempt": state.attempt, "drone": state.drone, "dispatched": state.dispatched,
                  "started": state.started, "ended": event.timestamp, "reason": "stopped at its approval gate",
                  "counted": False, "gate": True}
        if event.for_children:
            record.update(reason="stopped for its child jobs", children=True)
        return new, [_write(state, new, waiting_since=event.timestamp, **{f"history.{state.attempt}": record}),
                     Release(event.drone)]
    status = final_status(event.result)
    new = dataclasses.replace(state, status=status)
    fields: dict[str, Any] = {"finished": event.timestamp}
    if event.error is not None:
        fields["error"] = event.error
    if status is JobStatus.CANCELLED and state.cancel_reason:
        fields["error"] = _cancelled(state.cancel_reason)  # the drone only knows it was cancelled
    if event.usage is not None:
        fields["usage"] = event.usage
    return new, [_write(state, new, **fields), Release(event.drone)]


def _attempt_over(state: JobState, reason: str, now: float, policy: Policy) -> tuple[JobState, list[Effect]]:
    """Attempt `state.attempt` ended without a result of the job's own: retry while attempts remain."""
    record = {"attempt": state.attempt, "drone": state.drone, "dispatched": state.dispatched,
              "started": state.started, "ended": now, "reason": reason}
    failures = state.failures + 1
    if failures < policy.max_attempts:
        new = JobState(JobStatus.QUEUED, state.attempt, None, failures)
        fields: dict[str, Any] = {}
    else:
        new = dataclasses.replace(state, status=JobStatus.ERRORED, failures=failures)
        made = f"{failures} attempt{'s' if failures > 1 else ''} made, none finished"
        fields = {"finished": now, "error": f"{reason}; {made}"}
    effects: list[Effect] = [_write(state, new, **fields, **{f"history.{state.attempt}": record})]
    if state.drone is not None:
        effects.append(Release(state.drone))
    return new, effects
