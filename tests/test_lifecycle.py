from __future__ import annotations

from apiary.queen.lifecycle import final_status, job_update
from apiary.core.protocol import Msg


def test_events_set_the_job_fields_they_describe() -> None:
    assert job_update(Msg.JOB_STARTED, {"timestamp": 5.0}, "d1") == {"status": "running", "started": 5.0, "drone": "d1"}
    start = job_update(Msg.JOB_CMD_START, {"num": 2, "command": "make", "screencmd": "make", "stage": "b"}, "d1")
    assert start == {"commands.2.num": 2, "commands.2.command": "make", "commands.2.stage": "b"}
    assert job_update(Msg.JOB_CMD_DONE, {"num": 2, "exitCode": 1, "duration": 0.5}, "d1") == {
        "commands.2.exitCode": 1, "commands.2.duration": 0.5}
    assert job_update(Msg.JOB_TESTED, {"code": 1, "timestamp": 6.0}, "d1") == {"phases.test.code": 1, "tested": 6.0}
    assert job_update(Msg.JOB_DONE, {"timestamp": 7.0, "result": "failed"}, "d1") == {"status": "failed", "finished": 7.0}
    assert job_update(Msg.JOB_CMD_STDOUT, {"num": 1, "text": "x"}, "d1") == {}


def test_a_result_that_is_not_a_final_state_is_an_error() -> None:
    assert final_status("passed") == "passed"
    assert final_status("running") == "errored"
    assert final_status(None) == "errored"
