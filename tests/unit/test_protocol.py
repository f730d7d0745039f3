from __future__ import annotations

import re

import msgpack
import pytest

from apiary.core.errors import ProtocolError
from apiary.core.protocol import (
    DRONE_SENDS,
    JOB_EVENTS,
    QUEEN_SENDS,
    JobStatus,
    Msg,
    decode,
    drone_info_fault,
    encode,
    reported_load,
)


def test_a_message_survives_encoding() -> None:
    body = {"id": "J1", "seq": 3, "attempt": 1, "num": 1, "text": "héllo\n"}
    assert decode(encode(Msg.JOB_CMD_STDOUT, body)) == (Msg.JOB_CMD_STDOUT, body)


@pytest.mark.parametrize(("frame", "words"), [
    (b"\xc1", "not msgpack"),
    (msgpack.packb({"a": 1}), "[type, body]"),
    (msgpack.packb(["job:teleport", {}]), "unknown message type"),
    (msgpack.packb(["ack", []]), "not a map"),
    (msgpack.packb(["ack", {"id": "J"}]), "'seq' missing"),
    (msgpack.packb(["ack", {"id": "J", "seq": True}]), "'seq' missing or not int"),
    (msgpack.packb(["job:cmd:done", {"id": "J", "seq": 1, "attempt": 1, "num": 1, "exitCode": "0", "duration": 1.0}]), "exitCode"),
])
def test_malformed_frames_are_refused_with_the_reason(frame: bytes, words: str) -> None:
    with pytest.raises(ProtocolError, match=words.replace("[", r"\[").replace("]", r"\]")):
        decode(frame)


def test_each_side_refuses_the_other_sides_messages() -> None:
    ack = encode(Msg.ACK, {"id": "J", "seq": 1, "attempt": 1})
    with pytest.raises(ProtocolError, match="not sent in this direction"):
        decode(ack, DRONE_SENDS)
    assert decode(ack, QUEEN_SENDS)[0] is Msg.ACK
    assert not DRONE_SENDS & QUEEN_SENDS


def test_final_states() -> None:
    assert {s for s in JobStatus if s.final} == {JobStatus.PASSED, JobStatus.FAILED, JobStatus.ERRORED,
                                                 JobStatus.CANCELLED}


@pytest.mark.parametrize(("kind", "body", "where"), [
    (Msg.DRONE_INFO, {"id": "d", "capacity": 1, "speed": float("nan"), "version": 1, "jobs": []}, "speed"),
    (Msg.DRONE_INFO, {"id": "d", "capacity": 1, "speed": float("inf"), "version": 1, "jobs": []}, "speed"),
    (Msg.DRONE_HEARTBEAT, {"jobs": [], "load": float("-inf")}, "load"),
    (Msg.JOB_CMD_DONE, {"id": "J", "seq": 2, "attempt": 1, "num": 1, "exitCode": 0, "duration": 0.1,
                        "usage": {"cpu_seconds": float("nan")}}, "usage.cpu_seconds"),
    (Msg.JOB_PLUGIN, {"id": "J", "seq": 2, "attempt": 1, "plugin": "p", "data": {"counts": [1.0, float("inf")]}}, "data.counts[1]"),
])
def test_numbers_that_json_cannot_carry_are_refused_naming_the_field(kind: Msg, body: dict, where: str) -> None:
    with pytest.raises(ProtocolError, match=f"field '{re.escape(where)}' is not a finite number") as info:
        decode(encode(kind, body))
    assert info.value.kind is kind


@pytest.mark.parametrize(("drone_id", "body", "words"), [
    ("d1", {"id": "d1", "capacity": 2, "speed": 1.5}, None),
    ("<b>x</b>", {"id": "<b>x</b>", "capacity": 1, "speed": 1.0}, "letters, digits"),
    ("d1", {"id": "d1", "capacity": 1, "speed": 1.0, "session": ["x"]}, "session must be"),
    ("d1", {"id": "d1", "capacity": 0, "speed": 1.0}, "capacity must be between 1 and 4096"),
    ("d1", {"id": "d1", "capacity": 10**9, "speed": 1.0}, "capacity must be between 1 and 4096"),
    ("d1", {"id": "d1", "capacity": 1, "speed": 0.0}, "speed must be greater than 0"),
    ("d1", {"id": "d1", "capacity": 1, "speed": 1e300}, "at most 1e+06"),
    ("d1", {"id": "d1", "capacity": 1, "speed": 1.0, "jobs": [f"j{i}" for i in range(20_000)]}, "at most 4096"),
    ("d1", {"id": "d1", "capacity": 1, "speed": 1.0, "host": "h" * 1_000_000}, "at most 255"),
    ("d1", {"id": "d1", "capacity": 1, "speed": 1.0, "plugins": [None]}, "plugins must be"),
])
def test_what_a_drone_says_of_itself_must_be_in_range(drone_id: str, body: dict, words: str | None) -> None:
    fault = drone_info_fault({"jobs": [], **body})
    assert fault is None if words is None else words in (fault or ""), fault


def test_a_heartbeats_load_out_of_range_is_ignored() -> None:
    assert reported_load({"load": 1.25}) == 1.25
    assert reported_load({"load": -1}) is None
    assert reported_load({"load": 1e12}) is None
    assert reported_load({"load": "high"}) is None
    assert reported_load({}) is None


@pytest.mark.parametrize(("kind", "body", "words"), [
    (Msg.JOB_STARTED, {"id": "J", "seq": 1, "attempt": 1, "timestamp": 1e300}, "'timestamp' is beyond ±2**53"),
    (Msg.JOB_STARTED, {"id": "J", "seq": 1, "attempt": 1, "timestamp": 1e12}, "'timestamp' must be between 0 and 1e+10"),
    (Msg.JOB_STARTED, {"id": "J", "seq": 1, "attempt": 1, "timestamp": -5.0}, "'timestamp' must be between"),
    (Msg.JOB_CMD_DONE, {"id": "J", "seq": 2, "attempt": 1, "num": 1, "exitCode": 2**63 - 1, "duration": 0.1}, "beyond"),
    (Msg.JOB_CMD_DONE, {"id": "J", "seq": 2, "attempt": 1, "num": 1, "exitCode": 2**40, "duration": 0.1}, "'exitCode' must be"),
    (Msg.JOB_CMD_DONE, {"id": "J", "seq": 2, "attempt": 1, "num": 1, "exitCode": 0, "duration": 1e9}, "'duration' must be"),
    (Msg.JOB_CMD_DONE, {"id": "J", "seq": 2, "attempt": 1, "num": 1, "exitCode": 0, "duration": 0.1,
                        "usage": {"peak_rss": -1e300}}, "'usage.peak_rss' is beyond"),
    (Msg.JOB_CMD_STDOUT, {"id": "J", "seq": 2**60, "attempt": 1, "num": 1, "text": "x"}, "'seq' is beyond"),
    # the queen keeps a job's first command number and sends it back on a retry (first_cmd)
    (Msg.JOB_CMD_START, {"id": "J", "seq": 2, "attempt": 1, "num": 2**53, "command": "x", "screencmd": "x",
                         "phase": "test"}, "'num' must be between 1 and 1e+09"),
    (Msg.JOB_CMD_STDOUT, {"id": "J", "seq": 2, "attempt": 1, "num": 0, "text": "x"}, "'num' must be between"),
])
def test_numbers_out_of_any_sane_range_are_refused(kind: Msg, body: dict, words: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(words)):
        decode(encode(kind, body))


def test_usual_numbers_pass() -> None:
    body = {"id": "J", "seq": 2, "attempt": 1, "num": 1, "exitCode": -9, "duration": 12.5,
            "usage": {"peak_rss": 2**31, "cpu_seconds": 0.25}}
    assert decode(encode(Msg.JOB_CMD_DONE, body)) == (Msg.JOB_CMD_DONE, body)


def test_a_drone_reports_the_commit_it_checked_out_as_a_checked_job_event() -> None:
    frame = encode(Msg.JOB_CHECKOUT, {"id": "j1", "seq": 4, "attempt": 1, "commit": "ab" * 20})
    assert decode(frame, DRONE_SENDS) == (Msg.JOB_CHECKOUT, {"id": "j1", "seq": 4, "attempt": 1, "commit": "ab" * 20})
    assert Msg.JOB_CHECKOUT in JOB_EVENTS and Msg.JOB_CHECKOUT not in QUEEN_SENDS
    with pytest.raises(ProtocolError, match="'commit'"):
        decode(encode(Msg.JOB_CHECKOUT, {"id": "j1", "seq": 4, "attempt": 1, "commit": 7}), DRONE_SENDS)


_HEAD = msgpack.packb(["drone:heartbeat", {"jobs": [], "x": 0}])[:-1]  # the body's last value still to come


@pytest.mark.parametrize("frame", [
    _HEAD + b"\x91" * 1000 + b"\x90",  # 1 KB nested 1000 levels: once a RecursionError that stopped the broker
    _HEAD + b"\x91" * 100_000 + b"\x90",
    _HEAD + b"\x81\xa1k" * 65 + b"\x90",  # maps too
    msgpack.packb(["job:plugin", {"id": "J", "seq": 1, "attempt": 1, "plugin": "p", "data": {}}])[:-1] + b"\x91" * 70
    + b"\xc0",
])
def test_deeply_nested_frames_are_refused_as_malformed(frame: bytes) -> None:
    with pytest.raises(ProtocolError, match="nested more than 64 levels|not msgpack"):
        decode(frame)
    with pytest.raises(ProtocolError):
        decode(frame, QUEEN_SENDS)


def test_nesting_up_to_the_bound_is_accepted() -> None:
    data: object = 1
    for _ in range(60):
        data = [data]
    body = {"id": "J", "seq": 1, "attempt": 1, "plugin": "p", "data": {"x": data}}
    assert decode(encode(Msg.JOB_PLUGIN, body)) == (Msg.JOB_PLUGIN, body)


@pytest.mark.parametrize("frame", [
    b"", b"\x00", b"\xdd\xff\xff\xff\xff", b"\xc7\x05\x01abc", msgpack.packb([b"\xff", {}]),
    msgpack.packb(["ack", {1: 2}], strict_types=False), msgpack.packb(["ack", {"id": "J", "seq": 1, "attempt": 1}])[:-1],
    msgpack.packb(["drone:heartbeat", {"jobs": [], "load": 2**64 - 1}]),
    msgpack.packb(["drone:heartbeat", {"jobs": [], "x": msgpack.ExtType(5, b"x")}]),
])
def test_no_frame_raises_anything_but_a_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(frame, DRONE_SENDS)
