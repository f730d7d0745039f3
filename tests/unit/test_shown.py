"""What a line of a job's output shows (apiary.core.shown): the job page's visible text, whole or in pieces."""

from __future__ import annotations

import random

import pytest

from apiary.core.shown import HOLD_MAX, LineText, plain, shown_lines

ESC = "\x1b"
# Lines as a job prints them, and what the job page shows of each (web/static/apiary.js's visible();
# tests/e2e/test_job_context.py checks the same lines against the page itself).
SHOWN = [
    ("plain text", "plain text"),
    ("tab\tkept", "tab\tkept"),
    (f"{ESC}[31mred{ESC}[0m normal", "red normal"),  # colours
    (f"{ESC}[1;38;5;196mbold 256{ESC}[m", "bold 256"),
    (f"{ESC}]0;EVIL title{ESC}\\after title", "after title"),  # OSC 0, ended by ST
    (f"{ESC}]2;EVIL{chr(7)}after bel", "after bel"),  # OSC 2, ended by BEL
    (f"{ESC}]8;;javascript:alert(1){ESC}\\link: jslink{ESC}]8;;{ESC}\\ done", "link: jslink done"),  # OSC 8
    (f"{ESC}]8;id=1;https://example.com/x{chr(7)}docs{ESC}]8;;{chr(7)}", "docs"),
    (f"{ESC}[2K{ESC}[1Gcleared{ESC}[1A{ESC}[?25l", "cleared"),  # cursor moves, erase, private modes
    ("10%\r50%\r100% done", "100% done"),  # a progress bar: what was drawn last
    ("line with CRLF\r", "line with CRLF"),  # a CR at the end is dropped first
    ("gone\r\r", ""),
    (f"{ESC}(Bcharset{ESC}=", "charset"),  # ESC ( B, ESC =
    (f"{ESC}Pq#0;2;0;0;0{ESC}\\after dcs", "after dcs"),  # DCS (sixel)
    (f"{ESC}]0;unended title", ""),  # an unended OSC runs to the end of the line
    (f"{ESC}]0;broken{ESC}Ztext", "0;brokentext"),  # broken by another escape: ESC ] and ESC Z go, the rest shows
    (f"{ESC}Xsos string", ""),  # SOS (like PM, APC) unended: to the end of the line
    (f"{ESC}[12{chr(7)}x", "12x"),  # a CSI without its final byte: ESC [ goes
    (f"bell{chr(7)} back{chr(8)}space{chr(0x7f)}", "bell backspace"),
    (f"end{ESC}", "end"),
    (f"{ESC}]0;ti\rtle{chr(7)}X", "tleX"),  # the CR comes first, cutting the title
    (f"{ESC}[", ""),
]


@pytest.mark.parametrize(("line", "shown"), SHOWN)
def test_a_line_shows_what_the_page_draws(line: str, shown: str) -> None:
    assert plain(line) == shown


@pytest.mark.parametrize(("line", "shown"), SHOWN)
def test_a_line_in_pieces_shows_the_same(line: str, shown: str) -> None:
    for cut in range(len(line) + 1):
        assert pieces(LineText(), [line[:cut], line[cut:]]) == shown, cut
    assert pieces(LineText(), list(line)) == shown


def pieces(text: LineText, parts: list[str]) -> str:
    out = ""
    for part in parts:
        wiped, more = text.feed(part)
        out = (("" if wiped else out) + more)
    return out + text.end()


def test_any_line_cut_anywhere_shows_as_whole() -> None:
    rng = random.Random(16)
    atoms = ["a", "bc", " ", ESC, ESC + "[", "31", ";", "m", ESC + "]", "0;t", "8;;", "http://x", chr(7), "\\",
             "\r", "(", "B", "P", "X", "^", "_", "\t", chr(8), "?", "!", "@", "~", "[", "]"]
    text = LineText()
    for _ in range(5000):
        line = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 25)))
        parts, rest = [], line
        while rest:
            cut = rng.randint(1, 6)
            parts.append(rest[:cut])
            rest = rest[cut:]
        assert pieces(text, parts) == plain(line), (line, parts)  # one LineText, line after line


def test_a_very_long_cut_off_sequence_is_held_bounded() -> None:
    text = LineText()
    _, shown = text.feed(f"before{ESC}]0;" + "t" * 100_000)
    assert shown == "before" and len(text.held) <= HOLD_MAX
    assert text.feed(chr(7) + "after") == (False, "after")


def test_many_lines_at_once_show_as_each_line() -> None:
    rng = random.Random(61)
    atoms = ["a", " ", ESC, ESC + "[", "31", "m", ESC + "]", "0;t", chr(7), "\\", "\r", "\n", "\n", "(", "P", "X"]
    for _ in range(3000):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 40)))
        assert shown_lines(text) == "\n".join(plain(line) for line in text.split("\n")), text
    for line, shown in SHOWN:
        assert shown_lines(f"x\n{line}\n{line}") == f"x\n{shown}\n{shown}"
