"""The debug shell's masking of output that comes a few characters at a time, with pauses (drone/masking.py).

A shell's output is released when a hold timer runs out (drone/debugshell.py HOLD), so a secret printed one
character at a time must not come out in clear piece by piece: at most its first 2 characters ever show."""

from __future__ import annotations

import pytest

from apiary.drone.debugshell import HOLD, prompt_label
from apiary.drone.masking import Masker

SECRET = "s3cr3tV4lue-XYZ"


def paced(chunks: list[str], pause: bool = True, secret: str = SECRET) -> str:
    """What a person sees: each chunk fed, then (the pause) the hold timer's release; the stream's end."""
    stream = Masker([secret]).stream()
    out = []
    for chunk in chunks:
        out.append(stream.feed(chunk))
        if pause:
            out.append(stream.release(paced=True))
    out.append(stream.flush())
    return "".join(out)


def pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize(("chunks", "shown"), [
    (pieces(SECRET + "\n", 1), "s3********\n"),                # one char at a time
    (pieces(SECRET + "\n", 2), "s3********\n"),
    (pieces(SECRET + "\n", 3), "********\n"),                   # 3 chars at once: none of them shows
    (["s3", SECRET[2:] + "\n"], "s3********\n"),                # a 2-char start, then the rest
    (["s3c", "r", "3", "tV4lue-XYZ\n"], "********\n"),
    (["x=s", "3", "c", "r", "3tV4lue-XYZ done\n"], "x=s3******** done\n"),
    ([SECRET + "\n"], "********\n"),                            # all at once
    (["s3cat\n"], "s3cat\n"),                                   # fed at once: no secret, shown as it is
    (["ls -l\n", "total 0\n"], "ls -l\ntotal 0\n"),            # ordinary echo is not held
])
def test_at_most_two_characters_of_a_secret_show_whatever_the_pacing(chunks: list[str], shown: str) -> None:
    assert paced(chunks) == shown


def test_a_typed_start_of_a_secret_that_goes_elsewhere_shows_what_follows() -> None:
    # "s3c" typed slowly looks like the secret's start: masked; what follows it shows as typed.
    assert paced(["s", "3", "c", "a", "t", "\n"]) == "s3********at\n"


def test_the_hold_delay_is_short_for_interactive_echo() -> None:
    print(f"debug shell: a possible secret's start is held {HOLD * 1000:g} ms before it is released")
    assert 0 < HOLD <= 0.2


@pytest.mark.parametrize(("job", "label"), [
    ({"repo": {"name": "app"}, "number": 7}, "app#7"),
    ({"repo": {"name": "we$(rm -rf ~)b\\n"}, "number": 2}, "werm-rfbn#2"),  # a pusher's name: nothing for bash
    ({"repo": {"name": "app"}, "number": None}, ""),
    ({"number": 3}, ""),
])
def test_the_prompt_names_the_job(job: dict, label: str) -> None:
    assert prompt_label(job) == label


# What a terminal shows, not what was written: escape sequences and overwrites between a secret's characters hide
# nothing from a person, so the masker matches the characters as they show (drone/masking.py `project`).
TOKEN = "s3cr3t-Tok3n-XYZ-998877"


def shell(chunks: list[str], pause: bool = True) -> str:
    return paced(chunks, pause, TOKEN)


def screen(raw: str) -> str:
    """What a terminal shows of one line of `raw`: escape sequences dropped, backspace steps back, \\r to column 0."""
    import re
    raw = re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[ -/]*[0-~]"
                 "|[\x00-\x07\x0e-\x1f\u200b-\u200f\u2060-\u2064\ufeff]", "", raw)  # what shows nothing
    cells: list[str] = []
    col = 0
    for c in raw:
        if c == "\b":
            col = max(0, col - 1)
        elif c == "\r":
            col = 0
        elif c == "\n":
            break
        else:
            cells[col:col + 1] = [c]
            col += 1
    return "".join(cells).rstrip()


def each(text: str, between: str = "") -> list[str]:
    return [c + between for c in text]


@pytest.mark.parametrize(("name", "chunks", "pause"), [
    ("plain", [TOKEN + "\n"], False),
    ("SGR in the middle, one write", ["\x1b[m".join((TOKEN[:11], TOKEN[11:])) + "\n"], False),
    ("SGR between every char", ["".join(c + "\x1b[0m" for c in TOKEN) + "\n"], False),
    ("colour set and reset around each char", ["".join(f"\x1b[3{i % 8}m{c}\x1b[39m" for i, c in enumerate(TOKEN))
                                               + "\n"], False),
    ("OSC between chars", ["\x1b]0;x\x07".join((TOKEN[:5], TOKEN[5:])) + "\n"], False),
    ("other ESC and controls between chars", ["\x1b7\x07\x00".join((TOKEN[:5], TOKEN[5:])) + "\n"], False),
    ("zero-width chars between chars", ["\u200b\u2060\ufeff".join(TOKEN) + "\n"], False),
    ("space-backspace between chars, one write", ["".join(each(TOKEN, " \b")) + "\n"], False),
    ("space-backspace, one char a write, pauses", each(TOKEN, " \b") + ["\n"], True),
    ("char then space-backspace as two writes, pauses", [p for c in TOKEN for p in (c, " \b")] + ["\n"], True),
    ("SGR, one char a write, pauses", each(TOKEN, "\x1b[m") + ["\n"], True),
    ("escape sequence split over writes", [TOKEN[:11] + "\x1b", "[", "m" + TOKEN[11:] + "\n"], True),
    ("overstrike x-backspace-x", ["".join(c + "\b" + c for c in TOKEN) + "\n"], False),
    ("a wrong char overwritten", [TOKEN[:-1] + "X\b" + TOKEN[-1] + "\n"], False),
    ("a wrong char overwritten later", [TOKEN[:-1] + "X\b", TOKEN[-1] + "\n"], True),
    ("CR rewrite of the whole line", ["s3c\r" + TOKEN + "\n"], False),
    ("CR rewrite, paced", ["xxxxx\r"] + each(TOKEN) + ["\n"], True),
])
def test_a_secret_never_shows_however_escapes_and_overwrites_arrange_it(name: str, chunks: list[str],
                                                                         pause: bool) -> None:
    raw = shell(chunks, pause)
    shown = screen(raw)
    assert TOKEN[:3] not in shown and TOKEN[-3:] not in shown, (name, raw, shown)
    assert "********" in raw


def test_escape_sequences_in_a_masked_secret_are_kept() -> None:
    # The colour a program set or reset inside the secret still applies after it.
    assert Masker([TOKEN]).mask(f"x \x1b[1m{TOKEN[:4]}\x1b[31m{TOKEN[4:]}\x1b[0m y") == "x \x1b[1m********\x1b[31m\x1b[0m y"
    assert Masker([TOKEN]).mask("plain \x1b[32mgreen\x1b[0m") == "plain \x1b[32mgreen\x1b[0m"


def test_a_secret_holding_what_shows_nothing_is_masked_as_it_shows() -> None:
    value = "pass\u200bword\x07x"
    assert Masker([value]).mask(f"[{value}]") == "[********]"
