"""Running a client command: which queen it talks to (apiary.cli.address), the client it talks through, and its
exit status."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from apiary.cli.address import QueenAddress, checked, choose, recorded_url
from apiary.cli.runner import run, until_signalled
from apiary.core.config import Config

if TYPE_CHECKING:
    from apiary.cli.client import Client

# A client command: the client of the chosen queen and the parsed arguments in, its exit status out.
Command = Callable[["Client", argparse.Namespace], Awaitable[int]]


def find_queen(args: argparse.Namespace, config: Config, where: Mapping[str, str]) -> QueenAddress:
    """The queen a client command talks to (apiary.cli.address has the precedence), checked.

    `where` is settings.origins(): whether [client] url was set by the file or by APIARY_CLIENT_URL."""
    origin = where.get("client.url")
    env = config.client.url if origin == "APIARY_CLIENT_URL" else None
    configured = (config.client.url, f"{origin} url") if origin and origin != "APIARY_CLIENT_URL" else None
    recorded = recorded_url(config.queen.data_path)
    if getattr(args, "command", None) == "user" and not args.url and recorded is not None \
            and (config.queen.data_path / "setup-token").exists():
        # The setup token goes to the queen it belongs to, whatever [client] url says.
        return checked(QueenAddress(*recorded))
    return checked(choose(getattr(args, "url", None), env, configured, recorded))


def run_client_command(command: Command, args: argparse.Namespace, config: Config,
                       where: Mapping[str, str]) -> int:
    """Run `command` against the queen find_queen chooses; its exit status."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")  # a job's output must not fail on a narrow terminal encoding
    args.setup_file = config.queen.data_path / "setup-token"
    address = find_queen(args, config, where)
    code = run(until_signalled(_with_client(address, config.client.token, command, args)), fast_loop=False)
    return 130 if code is None else code  # None: interrupted


async def _with_client(address: QueenAddress, token: str, command: Command, args: argparse.Namespace) -> int:
    # Imported here: aiohttp is only needed by the client commands.
    from apiary.cli.client import Client

    async with Client(address.url, token, origin=address.origin) as client:
        return await command(client, args)
