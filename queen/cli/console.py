"""The terminal a command talks to: its lines out, a password in."""

from __future__ import annotations

import sys

from apiary.core.errors import ApiaryError


def say(text: str) -> None:
    """`text` as a line on stdout, flushed at once (a pipe or a test reads it while the process runs on)."""
    print(text, flush=True)


def password(confirm: bool) -> str:
    """A password from the terminal (asked twice for a new one), or the first line of stdin."""
    import getpass

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    entered = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != entered:
        raise ApiaryError("the passwords differ")
    return entered
