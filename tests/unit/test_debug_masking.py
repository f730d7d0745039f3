"""The debug shell's masking of output that comes a few characters at a time, with pauses (drone/masking.py).

A shell's output is released when a hold timer runs out (drone/debugshell.py HOLD), so a secret printed one
character at a time must not come out in clear piece by piece: at most its first 2 characters ever show."""

from __future__ import annotations

import pytest

from apiary.drone.debugshell import HOLD, prompt_label
from apiary.drone.masking import Masker

SECRET = "s3cr3tV4lue-XYZ"


def paced(chunks: list[str], pause: bool = True) -> str:
    """What a person sees: each chunk fed, then (the pause) the hold timer's release; the stream's end."""
    stream = Masker([SECRET]).stream()
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
