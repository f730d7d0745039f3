"""What of a job's output the CLI writes: text, colours on a terminal, no other control sequence."""

from __future__ import annotations

import io

import pytest

from apiary.cli.escapes import MAX_CUT, Unescaper, visible
from apiary.cli.follow import Renderer

TITLE = "\x1b]0;my title\x07"
LINK = "\x1b]8;;https://example.com\x1b\\docs\x1b]8;;\x1b\\"


@pytest.mark.parametrize(("text", "on_terminal", "to_file"), [
    ("plain\ttext\r\n", "plain\ttext\r\n", "plain\ttext\r\n"),
    ("\x1b[1;32mgreen\x1b[0m", "\x1b[1;32mgreen\x1b[0m", "green"),
    (f"{TITLE}after", "after", "after"),  # a window title, ended by BEL
    ("\x1b]2;t\x1b\\after", "after", "after"),  # ... by ESC \
    (f"see {LINK}.", "see docs.", "see docs."),  # an OSC 8 link keeps its text
    ("\x1b(Bset\x1b)0", "set", "set"),  # character sets
    ("\x1b]52;c;c2VjcmV0\x07clip", "clip", "clip"),  # the clipboard
    ("\x1b[2K\x1b[1Aup\x1b[?25l", "up", "up"),  # cursor and screen: not colours
    ("\x1bPq#0;2;0;0;0\x1b\\sixel", "sixel", "sixel"),  # a DCS string
    ("bell\x07 nul\x00 c1\x9b31m", "bell nul c131m", "bell nul c131m"),
    ("\x1b]0;no end\nnext", "\nnext", "\nnext"),  # an unended OSC ends with its line
    ("lone \x1b", "lone ", "lone "),
])
def test_only_text_and_colours_on_a_terminal_reach_the_reader(text: str, on_terminal: str, to_file: str) -> None:
    assert visible(text, colours=True) == on_terminal
    assert visible(text, colours=False) == to_file
    # Cut anywhere between two chunks, the same comes out.
    for cut in range(len(text) + 1):
        for colours, expected in ((True, on_terminal), (False, to_file)):
            u = Unescaper(colours)
            got = u.feed(text[:cut]) + u.feed(text[cut:])
            assert got == expected, (cut, colours)


def test_a_cut_sequence_waits_for_its_end_and_a_never_ending_one_is_no_sequence() -> None:
    u = Unescaper(colours=True)
    assert u.feed("a \x1b]8;;https://exa") == "a "
    assert u.feed("mple.com\x07link\x1b]8;;") == "link"
    assert u.feed("\x07 b\x1b[3") == " b"
    assert u.feed("1mred") == "\x1b[31mred"
    u = Unescaper(colours=False)
    assert u.feed("\x1b]0;" + "x" * MAX_CUT) == "0;" + "x" * MAX_CUT  # too long to be held: shown as text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_follower_strips_titles_and_links_on_a_terminal_and_in_a_file() -> None:
    events = [{"type": "job:cmd:stdout", "num": 1, "text": "\x1b]0;my ti"},
              {"type": "job:cmd:stdout", "num": 1, "text": f"tle\x07\x1b[31mred\x1b[0m {LINK}\n"},
              {"type": "job:cmd:stderr", "num": 1, "text": "\x1b(Bwarn\n"}]
    for out, err, colours in ((Terminal(), Terminal(), True), (io.StringIO(), io.StringIO(), False)):
        renderer = Renderer(out, err)
        for event in events:
            renderer.event(event)
        assert out.getvalue() == ("\x1b[31mred\x1b[0m docs\n" if colours else "red docs\n")
        assert err.getvalue() == "warn\n"
