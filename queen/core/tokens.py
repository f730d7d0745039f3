"""Join tokens and the public key files they lead to: the format the queen writes and the drone reads.

Pure, no I/O. A token is ``apiary_join_`` and base64url JSON of the queen's
API address (``api``), its public key (``key``), a secret and, when the admin
fixed one, the drone's id. The queen makes them (queen/joining.py), the drone
reads them (drone/joining.py); `certificate` is the text of a public key file
either side writes for a key it was given.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json

from .curve import is_key

PREFIX = "apiary_join_"
TOKEN_SECONDS = 3600.0  # how long a token works, unless its maker says otherwise


def make_token(api: str, queen_key: str, secret: str, drone_id: str | None = None) -> str:
    """The token a drone joins with: the queen's `api` address and public key, the `secret`, the drone's id if fixed."""
    fields = {"api": api, "key": queen_key, "secret": secret, **({"id": drone_id} if drone_id else {})}
    data = json.dumps(fields, separators=(",", ":")).encode()
    return PREFIX + base64.urlsafe_b64encode(data).decode().rstrip("=")


def read_token(token: str) -> dict[str, str]:
    """The token's ``api``, ``key``, ``secret`` and ``id`` ("": any); ValueError saying what is wrong."""
    token = token.strip()
    if not token.startswith(PREFIX):
        raise ValueError(f"a join token starts with {PREFIX} (apiary join-token on the queen makes one)")
    body = token[len(PREFIX):]
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError):
        raise ValueError("the join token is cut short or altered; copy it whole") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("api", "key", "secret")):
        raise ValueError("the join token is not one Apiary made")
    if not is_key(data["key"].encode()):
        raise ValueError("the join token's queen key is not a CURVE key")
    drone_id = data.get("id", "")
    if not isinstance(drone_id, str):
        raise ValueError("the join token is not one Apiary made")
    return {"api": data["api"], "key": data["key"], "secret": data["secret"], "id": drone_id}


def certificate(public_key: str) -> str:
    """A public key file as ZeroMQ writes them (zmq.auth.load_certificate reads it)."""
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return (f"#   ****  Written on {now} by apiary (a drone joined with a token)  ****\n"
            "#   ZeroMQ CURVE Public Certificate\n\n"
            "metadata\ncurve\n"
            f'    public-key = "{public_key}"\n')
