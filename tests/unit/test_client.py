"""The client's renderer: colours to a terminal, none to a pipe. The commands against a real queen:
tests/e2e/test_client.py."""

from __future__ import annotations

import io

from apiary.cli.follow import Renderer


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colours_pass_through_to_a_terminal_and_are_stripped_from_a_pipe_even_when_cut() -> None:
    events = [{"type": "job:cmd:start", "num": 1, "phase": "test", "stage": "s", "title": "t", "screencmd": "t"},
              {"type": "job:cmd:stdout", "num": 1, "text": "a \x1b[3"}, {"type": "job:cmd:stdout", "num": 1,
                                                                          "text": "1mred\x1b[0m no newline"},
              {"type": "job:cmd:done", "num": 1, "exitCode": 0, "duration": 0.5}]
    pipe, tty = io.StringIO(), Terminal()
    for out, err in ((pipe, io.StringIO()), (tty, Terminal())):
        renderer = Renderer(out, err)
        for event in events:
            renderer.event(event)
    assert pipe.getvalue() == "\n▶ [test/s] t\na red no newline\n✓ 0.50s\n"
    assert "a \x1b[31mred\x1b[0m no newline\n" in tty.getvalue() and "\x1b[1;36m▶ [test/s] t" in tty.getvalue()
