"""The store and the recorder on their own, over a real embedded store (nx-27017 and PyMongo): the
compare-and-set that carries out the job state machine, and the recorder's rules (once, in order,
fenced by attempt and drone) without a queen or drones around them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from apiary.core.jobstate import CancelCopy, Dispatched, JobState, Policy, Release, Write, transition
from apiary.core.protocol import JobStatus, Msg
from apiary.queen.embedded import embedded_store
from apiary.queen.hub import Hub
from apiary.queen.recorder import Recorder
from apiary.queen.sealing import Sealer
from apiary.queen.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with embedded_store(tmp_path) as url:
        store = await Store.connect(url, "apiary", Sealer(Fernet.generate_key()))
        try:
            yield store
        finally:
            await store.close()


def new_job(job_id: str) -> dict[str, Any]:
    return {"_id": job_id, "repo": "app", "number": 1, **JobState().fields(), "commands": {}, "phases": {}}


async def dispatched(store: Store, job_id: str, drone: str) -> JobState:
    await store.insert_job(new_job(job_id))
    state, effects = transition(JobState(), Dispatched(drone, 1.0), Policy())
    write = next(e for e in effects if isinstance(e, Write))
    assert await store.change_job(job_id, write.expect, write.fields)
    return state


async def test_a_change_lands_only_on_the_state_it_was_decided_on(store: Store) -> None:
    await store.insert_job(new_job("j1"))
    first = JobState().expect()
    assert await store.change_job("j1", first, {"status": "dispatched", "attempts": 1, "drone": "d1"})
    # A second decision taken on the old state (a cancel racing the dispatch) lands nowhere.
    assert not await store.change_job("j1", first, {"status": "cancelled"})
    assert (await store.get_job("j1"))["status"] == "dispatched"
    # The same change applied twice (a replay) still matches: it is idempotent.
    state = JobState(JobStatus.DISPATCHED, 1, "d1").expect()
    assert await store.change_job("j1", state, {"started": 2.0})
    assert await store.change_job("j1", state, {"started": 2.0})


async def test_a_job_stored_before_attempts_existed_matches_the_zero_state(store: Store) -> None:
    await store.jobs.insert_one({"_id": "old", "status": "queued"})  # no attempts, no drone
    assert await store.change_job("old", JobState().expect(), {"status": "cancelled"})


async def test_events_are_stored_once_and_paged_by_bytes(store: Store) -> None:
    docs = [{"_id": f"j:{n}", "job": "j", "seq": n, "type": "job:stdout", "text": "x" * 1000} for n in range(1, 11)]
    await store.insert_events(docs)
    await store.insert_events(docs[3:5])  # a resend: skipped, no error
    events, more = await store.events_after("j", 0, max_bytes=2500)
    assert [e["seq"] for e in events] == [1, 2, 3] and more
    assert await store.last_seq("j") == 10


class Recorded:
    """What the recorder asks its hive to do: acks and effects, in order."""

    def __init__(self) -> None:
        self.acks: list[tuple[str, str, int, int]] = []
        self.effects: list[tuple[str, JobStatus, list[Any]]] = []

    def ack(self, drone: str, job: str, seq: int, attempt: int) -> None:
        self.acks.append((drone, job, seq, attempt))

    def carry(self, job: str, state: JobState, effects: list[Any]) -> None:
        self.effects.append((job, state.status, effects))


async def record(store: Store, recorder: Recorder, *events: tuple[str, Msg, dict[str, Any]],
                 acks: Recorded) -> None:
    """Submit `events` and run the recorder until it has answered each (an ack or a cancel)."""
    task = asyncio.create_task(recorder.run())
    try:
        for drone, msg, body in events:
            recorder.submit(drone, msg, body)
        for _ in range(250):
            await asyncio.sleep(0.02)
            answered = {(a[1], a[2]) for a in acks.acks}
            if all((body["id"], body["seq"]) in answered or msg is Msg.JOB_STDOUT and body["seq"] > 1000
                   for _, msg, body in events) and not recorder._pending:
                break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_recorder_stores_in_order_and_carries_out_the_state_machine(store: Store) -> None:
    state = await dispatched(store, "j1", "d1")
    seen = Recorded()
    recorder = Recorder(store, Hub(), seen.ack, seen.carry, Policy())
    recorder.track("j1", state)
    body = {"id": "j1", "attempt": 1}
    await record(store, recorder,
                 ("d1", Msg.JOB_STARTED, {**body, "seq": 1, "timestamp": 2.0}),
                 ("d1", Msg.JOB_STDOUT, {**body, "seq": 3, "text": "too early\n"}),  # a gap: waits for seq 2
                 ("d1", Msg.JOB_STDOUT, {**body, "seq": 2, "text": "hello\n"}),
                 ("d1", Msg.JOB_STDOUT, {**body, "seq": 3, "text": "too early\n"}),  # the resend fills it
                 ("d1", Msg.JOB_DONE, {**body, "seq": 4, "timestamp": 3.0, "result": "passed"}),
                 ("d1", Msg.JOB_DONE, {**body, "seq": 4, "timestamp": 3.0, "result": "passed"}),  # resent
                 acks=seen)
    job = await store.get_job("j1")
    assert (job["status"], job["started"], job["finished"]) == ("passed", 2.0, 3.0)
    assert [e["seq"] for e in (await store.events_after("j1"))[0]] == [1, 2, 3, 4]
    assert seen.acks[-1] == ("d1", "j1", 4, 1)
    assert seen.effects[-1] == ("j1", JobStatus.PASSED, [Release("d1")])


async def test_the_recorder_refuses_a_stale_attempt_and_asks_to_stop_that_copy(store: Store) -> None:
    # Attempt 1 was written off; attempt 2 runs on the same drone.
    await store.insert_job({**new_job("j2"), "status": "running", "attempts": 2, "drone": "d1"})
    seen = Recorded()
    recorder = Recorder(store, Hub(), seen.ack, seen.carry, Policy())
    recorder.track("j2", JobState(JobStatus.RUNNING, 2, "d1"), first_seq=5)
    await record(store, recorder,
                 ("d1", Msg.JOB_DONE, {"id": "j2", "attempt": 1, "seq": 9, "timestamp": 3.0, "result": "cancelled"}),
                 ("d2", Msg.JOB_STDOUT, {"id": "j2", "attempt": 2, "seq": 5, "text": "an impostor\n"}),
                 acks=seen)
    assert (await store.get_job("j2"))["status"] == "running"
    assert await store.last_seq("j2") == 0  # nothing of either was stored
    assert ("d1", "j2", 9, 1) in seen.acks  # acked for attempt 1 only: attempt 2's events keep their seqs
    assert ("j2", JobStatus.RUNNING, [CancelCopy("d1", 1)]) in seen.effects
    assert ("j2", JobStatus.RUNNING, [CancelCopy("d2", 2)]) in seen.effects


async def test_a_write_the_hive_overtook_is_not_applied(store: Store) -> None:
    state = await dispatched(store, "j3", "d1")
    seen = Recorded()
    recorder = Recorder(store, Hub(), seen.ack, seen.carry, Policy())
    recorder.track("j3", state)
    # The queen ended the job while the drone was away (a cancel it could not deliver).
    assert await store.change_job("j3", state.expect(), {"status": "cancelled", "error": "cancelled while away"})
    await record(store, recorder, ("d1", Msg.JOB_STARTED, {"id": "j3", "attempt": 1, "seq": 1, "timestamp": 2.0}),
                 acks=seen)
    job = await store.get_job("j3")
    assert job["status"] == "cancelled"  # the drone's late start did not revive it
    assert await store.last_seq("j3") == 1  # what it said is kept
