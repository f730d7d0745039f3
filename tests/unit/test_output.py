from __future__ import annotations

import asyncio

from apiary.drone.masking import Masker
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


def masked() -> tuple[list[tuple[str, str]], OutputBuffer]:
    chunks: list[tuple[str, str]] = []
    buf = OutputBuffer(lambda s, t: chunks.append((s, t)), flush_after=5.0, max_bytes=1 << 20,
                       masker=Masker(["zebra-horse-42"]))
    return chunks, buf


def joined(chunks: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for stream, text in chunks:
        if out and out[-1][0] == stream:
            out[-1] = (stream, out[-1][1] + text)
        else:
            out.append((stream, text))
    return out


async def test_a_possible_secret_start_is_not_held_behind_the_other_streams_later_text() -> None:
    # Cut by the other stream after 3 chars: they show; the rest of the secret, when it comes, is masked.
    chunks, buf = masked()
    buf.feed("stdout", b"token=zeb")
    buf.feed("stderr", b"warning\n")
    buf.feed("stdout", b"ra-horse-42 used\n")
    buf.close()
    assert joined(chunks) == [("stdout", "token=zeb"), ("stderr", "warning\n"), ("stdout", "******** used\n")]

    # After 4 chars or more (enough to say much of a secret) the start is shown as a mask.
    chunks, buf = masked()
    buf.feed("stdout", b"token=zebra-")
    buf.feed("stderr", b"warning\n")
    buf.feed("stdout", b"horse-42 used\n")
    buf.close()
    assert joined(chunks) == [("stdout", "token=********"), ("stderr", "warning\n"), ("stdout", " used\n")]


async def test_a_released_start_that_is_no_secret_after_all_goes_on_as_written() -> None:
    chunks, buf = masked()
    buf.feed("stdout", b"animals: zeb")
    buf.feed("stderr", b"warning\n")
    buf.feed("stdout", b"ras and horses\n")
    buf.feed("stderr", b"zebra-horse-42\n")
    buf.close()
    assert joined(chunks) == [("stdout", "animals: zeb"), ("stderr", "warning\n"),
                              ("stdout", "ras and horses\n"), ("stderr", "********\n")]


async def test_many_lines_alternating_with_secrets_about_keep_their_order() -> None:
    chunks, buf = masked()
    for i in range(1000):
        # Each write ends with what may start the secret ("z"): without releasing it, it would follow the
        # other stream's next line.
        buf.feed("stdout" if i % 2 == 0 else "stderr", f"line-{i} z".encode())
    buf.close()
    assert joined(chunks) == [("stdout" if i % 2 == 0 else "stderr", f"line-{i} z") for i in range(1000)]
