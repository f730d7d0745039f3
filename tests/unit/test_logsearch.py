"""Searching a job's output finds lines where the job page's log view has them: (command, line)."""

from __future__ import annotations

import random

import pytest

from apiary.core.errors import BadRequest
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
    found = []
    for num, lines in page_lines(chunks).items():
        found += [(num, i, s) for i, (t, s) in enumerate(lines) if needle.lower() in t.lower()]
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


@pytest.mark.parametrize("longest", [3, 9, 40])
def test_the_same_lines_as_the_page_however_the_output_is_cut(longest: int) -> None:
    rng = random.Random(16)
    for _ in range(300):
        words = ["ok", "Error", "err", "or", "\n", "\n", "ERR", "xerrorx", " ", "İ", "\n\n"]
        text = "".join(rng.choice(words) for _ in range(rng.randint(0, 80)))
        chunks: list[Chunk] = []
        while text:
            cut = rng.randint(1, longest)
            chunks.append((rng.choice([1, 2]), rng.choice(["stdout", "stderr"]), text[:cut]))
            text = text[cut:]
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
