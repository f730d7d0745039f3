"""What a plugin's results() answer becomes on the wire: numbers the queen refuses become null."""

from __future__ import annotations

import pytest

from apiary.core.protocol import Msg, decode, encode
from apiary.drone.jobplugins import carried


@pytest.mark.parametrize(("data", "sent", "dropped"), [
    ({"lines": 5, "ratio": 0.5, "ok": True, "name": "x", "none": None}, None, []),
    ({"coverage": float("nan")}, {"coverage": None}, ["coverage"]),
    ({"a": {"b": [1, float("-inf"), 2**53, 2**53 + 1]}}, {"a": {"b": [1, None, 2**53, None]}}, ["a.b[1]", "a.b[3]"]),
    ({"big": -2**60, "huge": 1e300}, {"big": None, "huge": None}, ["big", "huge"]),
])
def test_numbers_the_wire_refuses_become_null_naming_the_field(data: dict, sent: dict | None,
                                                               dropped: list[str]) -> None:
    named: list[str] = []
    out = carried(data, "", named)
    assert out == (data if sent is None else sent) and named == dropped
    body = {"id": "J", "seq": 1, "attempt": 1, "plugin": "p", "data": out}
    assert decode(encode(Msg.JOB_PLUGIN, body))[1] == body  # the queen takes it
