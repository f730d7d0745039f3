from __future__ import annotations

import msgpack
import pytest

from queen.errors import ProtocolError
from queen.protocol import DRONE_SENDS, QUEEN_SENDS, JobStatus, Msg, decode, encode


def test_a_message_survives_encoding() -> None:
    body = {"id": "J1", "seq": 3, "num": 1, "text": "héllo\n"}
    assert decode(encode(Msg.JOB_CMD_STDOUT, body)) == (Msg.JOB_CMD_STDOUT, body)


@pytest.mark.parametrize(("frame", "words"), [
    (b"\xc1", "not msgpack"),
    (msgpack.packb({"a": 1}), "[type, body]"),
    (msgpack.packb(["job:teleport", {}]), "unknown message type"),
    (msgpack.packb(["ack", []]), "not a map"),
    (msgpack.packb(["ack", {"id": "J"}]), "'seq' missing"),
    (msgpack.packb(["ack", {"id": "J", "seq": True}]), "'seq' missing or not int"),
    (msgpack.packb(["job:cmd:done", {"id": "J", "seq": 1, "num": 1, "exitCode": "0", "duration": 1.0}]), "exitCode"),
])
def test_malformed_frames_are_refused_with_the_reason(frame: bytes, words: str) -> None:
    with pytest.raises(ProtocolError, match=words.replace("[", r"\[").replace("]", r"\]")):
        decode(frame)


def test_each_side_refuses_the_other_sides_messages() -> None:
    ack = encode(Msg.ACK, {"id": "J", "seq": 1})
    with pytest.raises(ProtocolError, match="not sent in this direction"):
        decode(ack, DRONE_SENDS)
    assert decode(ack, QUEEN_SENDS)[0] is Msg.ACK
    assert not DRONE_SENDS & QUEEN_SENDS


def test_final_states() -> None:
    assert {s for s in JobStatus if s.final} == {JobStatus.PASSED, JobStatus.FAILED, JobStatus.ERRORED,
                                                 JobStatus.CANCELLED}
