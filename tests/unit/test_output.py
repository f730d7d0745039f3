from __future__ import annotations

import asyncio

from apiary.drone.output import OutputBuffer


def collect() -> tuple[list[tuple[str, str]], OutputBuffer]:
    chunks: list[tuple[str, str]] = []
    return chunks, OutputBuffer(lambda s, t: chunks.append((s, t)), flush_after=0.005, max_bytes=1024)


async def test_a_character_split_across_reads_is_never_split_across_events() -> None:
    chunks, buf = collect()
    data = "é€😀\n".encode()
    for i in range(len(data)):
        buf.feed("stdout", data[i:i + 1])
        buf.flush()
    buf.close()
    assert "".join(t for _, t in chunks) == "é€😀\n"
    assert all("\ufffd" not in t for _, t in chunks)


async def test_lines_are_coalesced_until_the_timer_or_the_size_limit() -> None:
    chunks, buf = collect()
    for i in range(10):
        buf.feed("stdout", f"line {i}\n".encode())
    assert chunks == []
    await asyncio.sleep(0.02)
    assert chunks == [("stdout", "".join(f"line {i}\n" for i in range(10)))]
    buf.feed("stdout", b"x" * 2000)
    assert chunks[-1] == ("stdout", "x" * 2000)


async def test_switching_streams_keeps_their_order() -> None:
    chunks, buf = collect()
    buf.feed("stdout", b"a\n")
    buf.feed("stderr", b"b\n")
    buf.feed("stdout", b"c\n")
    buf.close()
    assert chunks == [("stdout", "a\n"), ("stderr", "b\n"), ("stdout", "c\n")]


async def test_a_truncated_character_at_the_end_becomes_a_replacement() -> None:
    chunks, buf = collect()
    buf.feed("stdout", "é".encode()[:1])
    buf.close()
    assert chunks == [("stdout", "\ufffd")]
