"""Running a client command: which queen it talks to, the client it talks through, and its exit status."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from apiary.cli.runner import run, until_signalled
from apiary.core.config import Config, with_changes

if TYPE_CHECKING:
    from apiary.cli.client import Client

# A client command: the client of the chosen queen and the parsed arguments in, its exit status out.
Command = Callable[["Client", argparse.Namespace], Awaitable[int]]


def run_client_command(command: Command, args: argparse.Namespace, config: Config) -> int:
    """Run `command` against the queen at --url or [client] url; its exit status."""
    settings = config.client
    if args.url:
        settings = with_changes(settings, lambda key: "--url", url=args.url)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")  # a job's output must not fail on a narrow terminal encoding
    args.setup_file = config.queen.data_path / "setup-token"
    recorded = config.queen.data_path / "queen.url"
    if args.command == "user" and not args.url and args.setup_file.exists() and recorded.exists():
        # The setup token goes to the queen it belongs to, whatever [client] url says.
        settings = with_changes(settings, lambda key: str(recorded), url=recorded.read_text().strip())
    code = run(until_signalled(_with_client(settings.url, settings.token, command, args)), fast_loop=False)
    return 130 if code is None else code  # None: interrupted


async def _with_client(url: str, token: str, command: Command, args: argparse.Namespace) -> int:
    # Imported here: aiohttp is only needed by the client commands.
    from apiary.cli.client import Client

    async with Client(url, token) as client:
        return await command(client, args)
