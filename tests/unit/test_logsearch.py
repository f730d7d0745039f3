"""Searching a job's output finds lines where the job page's log view has them: (command, line)."""

from __future__ import annotations

import random

import pytest

from apiary.core.errors import BadRequest
from apiary.core.shown import plain
from apiary.queen.logsearch import TEXT_MAX, LineSearch, search_query

Chunk = tuple[int, str, str]  # command number, stream, text


def page_lines(chunks: list[Chunk]) -> dict[int, list[tuple[str, str]]]:
    """The log view's lines per command, as web/static/apiary.js's LogView.append makes them:
    (text, stream of the chunk that began the line)."""
    views: dict[int, tuple[list[list[str]], list[bool]]] = {}
    for num, stream, text in chunks:
        if not text:
            continue
        lines, state = views.setdefault(num, ([], [False]))
        parts = text.split("\n")
        end = len(parts) - 1
        i = 0
        if state[0]:
            lines[-1][0] += parts[0]
            i = 1
        while i < len(parts):
            if i == end and parts[i] == "":
                break
            lines.append([parts[i], stream])
            i += 1
        state[0] = not text.endswith("\n")
    return {num: [(t, s) for t, s in lines] for num, (lines, _) in views.items()}


def expected(chunks: list[Chunk], needle: str) -> list[tuple[int, int, str]]:
    """Where the page's search finds `needle`: in the text each line shows (apiary.core.shown.plain)."""
    found = []
    for num, lines in page_lines(chunks).items():
        found += [(num, i, s) for i, (t, s) in enumerate(lines) if needle.lower() in plain(t).lower()]
    return sorted(found)


def found(chunks: list[Chunk], needle: str, limit: int = 1000) -> LineSearch:
    search = LineSearch(needle, limit)
    for num, stream, text in chunks:
        search.feed(num, stream, text)
    return search


@pytest.mark.parametrize(("chunks", "needle", "lines"), [
    ([(1, "stdout", "a\nerror here\nb\n")], "ERROR", [(1, 1, "error here")]),
    # A line continued across chunks, the word cut in two.
    ([(1, "stdout", "abc\nfoo ERR"), (1, "stdout", "OR bar\nnext\n")], "error", [(1, 1, "foo ERROR bar")]),
    # stderr continues the open stdout line, as the page draws it; the line keeps the stream that began it.
    ([(1, "stdout", "half "), (1, "stderr", "boom\nnew boom\n")], "boom", [(1, 0, "half boom"), (1, 1, "new boom")]),
    # Two commands interleaved (parallel stages) count their lines apart.
    ([(1, "stdout", "x\n"), (2, "stdout", "hit\n"), (1, "stdout", "hit\n")], "hit", [(2, 0, "hit"), (1, 1, "hit")]),
    # An empty line counts; a final newline makes no empty line.
    ([(3, "stdout", "\n\nhit\n")], "hit", [(3, 2, "hit")]),
    ([(3, "stdout", "no\n")], "yes", []),
])
def test_lines_and_their_numbers(chunks: list[Chunk], needle: str, lines: list[tuple[int, int, str]]) -> None:
    search = found(chunks, needle)
    assert [(m["num"], m["line"], m["text"]) for m in search.matches] == lines
    assert not search.result()["truncated"]


def cut_randomly(rng: random.Random, text: str, longest: int) -> list[Chunk]:
    """`text` as output events of commands 1 and 2 on either stream, cut anywhere, at most `longest` long."""
    chunks: list[Chunk] = []
    while text:
        cut = rng.randint(1, longest)
        chunks.append((rng.choice([1, 2]), rng.choice(["stdout", "stderr"]), text[:cut]))
        text = text[cut:]
    return chunks


@pytest.mark.parametrize("longest", [3, 9, 40])
def test_the_same_lines_as_the_page_however_the_output_is_cut(longest: int) -> None:
    rng = random.Random(16)
    for _ in range(300):
        words = ["ok", "Error", "err", "or", "\n", "\n", "ERR", "xerrorx", " ", "İ", "\n\n"]
        text = "".join(rng.choice(words) for _ in range(rng.randint(0, 80)))
        chunks = cut_randomly(rng, text, longest)
        for needle in ("error", "r\no", "ok"):
            got = sorted((m["num"], m["line"], m["stream"]) for m in found(chunks, needle).matches)
            assert got == expected(chunks, needle), (needle, chunks)


def test_matches_stop_at_the_limit_and_say_so() -> None:
    search = found([(1, "stdout", "hit\n" * 10)], "hit", limit=3)
    result = search.result()
    assert [m["line"] for m in result["matches"]] == [0, 1, 2] and result["truncated"] is True


def test_a_long_line_is_returned_cut_and_matched_whole() -> None:
    chunks: list[Chunk] = [(1, "stdout", "x" * 5000), (1, "stdout", "x" * 5000 + "needle" + "\n")]
    (match,) = found(chunks, "needle").matches
    assert match["line"] == 0 and len(match["text"]) == TEXT_MAX


@pytest.mark.parametrize("q", [None, "", "x" * 201])
def test_the_query_is_one_to_200_characters(q: str | None) -> None:
    with pytest.raises(BadRequest) as err:
        search_query(q)
    assert err.value.field == "q"


ESC = "\x1b"
COLOURED = (f"{ESC}[31mred{ESC}[0m normal\n"
            f"{ESC}]0;EVIL title{chr(7)}visible after the title\n"
            f"{ESC}]8;;javascript:alert(1){ESC}\\link: jslink{ESC}]8;;{ESC}\\\n"
            "downloading 10%\rdownloading 100%\n"
            f"{ESC}[2K{ESC}[1Gmoved{ESC}[1A\n")


@pytest.mark.parametrize(("needle", "lines"), [
    ("red normal", [(0, "red normal")]),  # the colour between the words is no text
    ("31m", []),
    ("EVIL", []),  # a window title is not shown
    ("visible", [(1, "visible after the title")]),
    ("link: jslink", [(2, "link: jslink")]),  # an OSC 8 link's text is shown
    ("javascript", []),  # its address is not
    ("10%", []),  # redrawn by what followed the carriage return
    ("100%", [(3, "downloading 100%")]),
    ("moved", [(4, "moved")]),
    ("[2K", []),
])
def test_a_line_is_searched_as_the_page_shows_it(needle: str, lines: list[tuple[int, str]]) -> None:
    for size in (len(COLOURED), 7, 3, 1):  # whole, and cut anywhere (a sequence between two chunks)
        chunks: list[Chunk] = [(1, "stdout", COLOURED[i:i + size]) for i in range(0, len(COLOURED), size)]
        assert [(m["line"], m["text"]) for m in found(chunks, needle).matches] == lines, size


def test_a_match_a_carriage_return_wipes_later_is_no_match_and_does_not_fill_the_limit() -> None:
    chunks: list[Chunk] = [(1, "stdout", "hit 1"), (1, "stdout", "\rdone\nhit 2\nhit 3\n")]
    search = found(chunks, "hit", limit=1)
    assert [m["line"] for m in search.result()["matches"]] == [1] and search.result()["truncated"] is True
    search = LineSearch("hit", 1)
    search.feed(1, "stdout", "hit 1")  # the line is open: its match may yet be wiped, the search goes on
    assert not search.full
    search.feed(1, "stdout", "\r\n")  # a CR at the end of the line is dropped: the match stands
    assert [m["text"] for m in search.result()["matches"]] == ["hit 1"]


@pytest.mark.parametrize("longest", [2, 9])
def test_escapes_cut_anywhere_are_searched_as_the_page_shows_them(longest: int) -> None:
    rng = random.Random(31)
    words = ["err", "or", "\n", ESC + "[31m", ESC + "[0m", ESC + "]0;error" + chr(7), ESC + "]8;;http://e/error",
             ESC + "\\", "\r", "x", " ", ESC, "[", chr(7)]
    for _ in range(400):
        text = "".join(rng.choice(words) for _ in range(rng.randint(0, 40)))
        chunks = cut_randomly(rng, text, longest)
        search = found(chunks, "error")
        result = search.result()
        got = sorted((m["num"], m["line"], m["stream"]) for m in result["matches"])
        assert got == expected(chunks, "error"), chunks
        lines = page_lines(chunks)
        for m in result["matches"]:
            assert m["text"] == plain(lines[m["num"]][m["line"]][0]), chunks
