"""Output at rest: each event's text one zstd frame, read back as it was; the raw log's coding."""

from __future__ import annotations

import pytest

from apiary.queen.pages import log_coding
from apiary.queen.store import chunks


def test_output_text_is_stored_as_a_frame_and_read_back_unchanged() -> None:
    event = {"seq": 3, "type": "job:cmd:stdout", "num": 1, "text": "naïve café ☕\n" * 500}
    stored = chunks.pack(event)
    assert "text" not in stored and stored["n"] == len(event["text"].encode())
    assert len(stored["z"]) < stored["n"] / 10
    assert event["text"].startswith("naïve")  # the recorder publishes the event as it came
    assert chunks.text_size(stored) == stored["n"]
    assert chunks.expand(dict(stored)) == event


@pytest.mark.parametrize("event", [
    {"seq": 1, "type": "job:cmd:stdout", "text": "short\n"},  # a frame would not pay for itself
    {"seq": 2, "type": "job:cmd:start", "num": 1, "command": "make"},  # no text at all
])
def test_events_without_text_worth_compressing_are_stored_as_they_are(event: dict) -> None:
    assert chunks.pack(event) is event
    assert chunks.expand(dict(event)) == event


def test_frames_concatenate_into_one_stream_old_text_events_included() -> None:
    first = chunks.pack({"text": "a" * 100})
    old = {"text": "stored before compression\n"}  # an event kept as text, read as a frame
    stream = chunks.frame_of(first) + chunks.frame_of(old) + chunks.frame_of({"type": "job:cmd:done"})
    assert chunks.zstd.decompress(stream) == b"a" * 100 + b"stored before compression\n"


@pytest.mark.parametrize(("accept", "coding"), [
    ("gzip, deflate, br, zstd", "zstd"),  # what browsers send
    ("gzip, deflate", "gzip"),
    ("", "identity"),
    ("identity", "identity"),
    ("zstd;q=0, gzip;q=0.5", "gzip"),
    ("zstd;q=0.1, gzip;q=1", "gzip"),  # the client's preference
    ("gzip, zstd", "zstd"),  # a tie: the log is kept as zstd
    ("x-gzip", "gzip"),
    ("zstd;q=inf, gzip;q=0.5", "gzip"),
    ("zstd;q=1.0001", "identity"),
    ("zstd;q=nan", "identity"),
    ("ZSTD", "zstd"),
    ("*", "zstd"),
    ("*;q=0, gzip", "gzip"),
    ("gzip;q=nonsense", "identity"),
    ("br", "identity"),
])
def test_the_raw_log_is_sent_in_the_best_coding_the_client_accepts(accept: str, coding: str) -> None:
    assert log_coding(accept) == coding
