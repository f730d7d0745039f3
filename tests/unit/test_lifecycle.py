from __future__ import annotations

from apiary.core.protocol import Msg
from apiary.queen.lifecycle import job_update


def test_events_set_the_job_fields_they_describe() -> None:
    start = job_update(Msg.JOB_CMD_START, {"num": 2, "command": "make", "screencmd": "make", "stage": "b"})
    assert start == {"commands.2.num": 2, "commands.2.command": "make", "commands.2.stage": "b"}
    assert job_update(Msg.JOB_CMD_DONE, {"num": 2, "exitCode": 1, "duration": 0.5}) == {
        "commands.2.exitCode": 1, "commands.2.duration": 0.5}
    assert job_update(Msg.JOB_TESTED, {"code": 1, "timestamp": 6.0}) == {"phases.test.code": 1, "tested": 6.0}
    assert job_update(Msg.JOB_CMD_STDOUT, {"num": 1, "text": "x"}) == {}


def test_the_status_is_not_the_projections_to_set() -> None:
    # job:started and job:done go through the state machine (apiary.core.jobstate), nothing here.
    assert job_update(Msg.JOB_STARTED, {"timestamp": 5.0}) == {}
    assert job_update(Msg.JOB_DONE, {"timestamp": 7.0, "result": "failed"}) == {}


SHA1 = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
SHA256 = "a" * 64


def test_the_commit_a_drone_checked_out_becomes_the_jobs_ref_id() -> None:
    # (commit reported, fields set): only a whole commit id; the rest of the ref (branch, fetch) is left as it was.
    table = [
        (SHA1, {"ref.id": SHA1}),
        (SHA1.upper(), {"ref.id": SHA1}),
        (SHA256, {"ref.id": SHA256}),
        (SHA1[:12], {}),
        ("main", {}),
        ("", {}),
        (SHA1 + "\n", {}),
        ("$where: 1", {}),
    ]
    for commit, fields in table:
        assert job_update(Msg.JOB_CHECKOUT, {"commit": commit}) == fields, commit
    # Applied twice (a resend after a queen restart), the same document.
    once = job_update(Msg.JOB_CHECKOUT, {"commit": SHA1})
    assert {**once, **job_update(Msg.JOB_CHECKOUT, {"commit": SHA1})} == once
