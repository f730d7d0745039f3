"""People on a queen: `apiary user add` (its first admin, by the setup token, then others), `apiary token create`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from apiary.cli.console import password, say
from apiary.core.errors import ApiaryError

if TYPE_CHECKING:
    from apiary.cli.client import Client


async def add_user(client: Client, args: argparse.Namespace) -> int:
    """apiary user add: an admin made with this machine's setup token while the queen has none, else a user
    made with an admin's API token. Never a member in place of the first admin."""
    from apiary.cli.client import ApiError

    setup_file: Path = args.setup_file  # the token also decided which queen `client` talks to
    token = _setup_token(setup_file)
    if token is None and (await client.request("GET", "/me")).get("setup"):
        raise ApiaryError(f"the queen at {client.url} has no admin yet, and its setup token is not at {setup_file}: "
                          "run this on the queen's machine as the user it runs as, with its data dir "
                          "(--data-dir DIR, -c CONFIG or APIARY_QUEEN_DATA_DIR, as given to apiary queen or up)")
    if token is not None:
        if args.role == "member":
            raise ApiaryError("the queen has no admin yet: the first user made here is its admin "
                              "(leave out --role member)")
        entered = password(confirm=True)
        try:
            await client.request("POST", "/setup", {"token": token, "username": args.name, "password": entered})
        except ApiError as exc:
            if exc.status == 409:  # a token file left behind
                raise ApiaryError(f"the queen at {client.url} has an admin already (and {setup_file} is left "
                                  "over): an admin adds people, with an API token (apiary token create)") from None
            raise
        say(f"{args.name} is an admin of this queen; sign in at {client.url}/signin "
            f"(and make a CLI token: apiary token create --user {args.name})")
        return 0
    entered = password(confirm=True)
    await client.request("POST", "/users", {"username": args.name, "password": entered,
                                            "role": args.role or "member"})
    say(f"{args.name} added ({args.role or 'member'})")
    return 0


def _setup_token(path: Path) -> str | None:
    """The queen's setup token from its data dir, or None when there is none (it has an admin)."""
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
    except PermissionError:
        raise ApiaryError(f"cannot read {path}: run this as the user the queen runs as") from None


async def create_token(client: Client, args: argparse.Namespace) -> int:
    """apiary token create: sign in as --user with a password, print a new API token of theirs once.

    Signed in afresh, without the API token this client may carry (APIARY_CLIENT_TOKEN): a bearer token
    is who a request is, so sent along it would make the token its user's, not --user's. The body names
    --user too, and the queen refuses a request signed in as anyone else."""
    from apiary.cli.client import Client as Fresh

    async with Fresh(client.url, origin=client.origin) as fresh:
        session = await fresh.request("POST", "/session", {"username": args.user, "password": password(False)})
        made = await fresh.request("POST", "/tokens", {"name": args.name, "user": session["user"]},
                                   headers={"X-CSRF-Token": session["csrf"], "Cookie": fresh.cookie})
    print(made["token"])  # alone on stdout, for scripts
    print(f"a token of {session['user']}'s; keep it: export APIARY_CLIENT_TOKEN=<the token> (or [client] token); "
          "it is not shown again", file=sys.stderr)
    return 0
