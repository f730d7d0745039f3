"""How drones get in: `apiary keys` (a CurveZMQ key pair, and what to do with it) and `apiary join-token`."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apiary.cli.console import say
from apiary.core.config import Config

if TYPE_CHECKING:
    from apiary.cli.client import Client


def make_keys(args: argparse.Namespace, config: Config) -> None:
    """apiary keys: a CurveZMQ key pair for the queen or a drone, written to files, and the next steps."""
    import socket

    import zmq.auth

    from apiary.drone.keys import create_key_pair

    drone = args.drone or (args.name is not None and args.name != "queen")
    if drone:
        name = args.name or config.drone.id or socket.gethostname().split(".")[0]
        directory = Path(args.dir).expanduser() if args.dir else config.drone.work_path / "keys"
    else:
        name = args.name or "queen"
        directory = Path(args.dir).expanduser() if args.dir else config.queen.data_path / "keys"
    public, secret = create_key_pair(directory.absolute(), name, force=args.force)
    key = zmq.auth.load_certificate(public)[0].decode()
    who = f"drone key pair {name}" if drone else "queen key pair"
    say(f"{who} written:")
    say(f"  public: {public}    (the key: {key})")
    say(f"  secret: {secret}    (mode 0600: keep it on this machine)")
    if drone:
        say("Next:")
        say(f"  1. copy {public.name} into the queen's authorized_keys folder (no restart needed)")
        say("  2. copy the queen's public key file (queen.key) here, and set in this drone's [drone] table:")
        say(f'       curve_secret_key = "{secret}"')
        say('       queen_public_key = "/path/to/queen.key"')
        return
    authorized = public.parent / "authorized"
    authorized.mkdir(exist_ok=True)
    say(f"  authorized drone keys: {authorized}/")
    say("Next:")
    say("  1. set in the queen's [queen] table (then restart it):")
    say(f'       curve_secret_key = "{secret}"')
    say(f'       authorized_keys = "{authorized}"')
    say("  2. on each drone machine run apiary keys --drone, and copy the drone's .key file into")
    say(f"     {authorized}/")
    say(f"  3. copy {public} to each drone machine and set its [drone] queen_public_key to that copy")


async def join_token(client: Client, args: argparse.Namespace) -> int:
    """apiary join-token: a one-time token for a drone, and the command to run on its machine."""
    body: dict[str, Any] = {"expires_in": args.expires}
    if args.id:
        body["id"] = args.id
    from apiary.cli.remote import drone_endpoint

    made = await client.request("POST", "/drones/join-tokens", body)
    # The queen names the endpoint it bound; a wildcard one (tcp://0.0.0.0:P) becomes the host we reached it at.
    run = re.sub(r"--queen (\S+)", lambda m: f"--queen {drone_endpoint(m.group(1), client.url)}", made["run"])
    print(made["token"])  # alone on stdout, for scripts
    print(f"on the drone's machine (within {args.expires:g} s, once):\n  {run}", file=sys.stderr)
    return 0
