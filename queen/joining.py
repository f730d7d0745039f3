"""Join tokens, the queen's side: the API that makes them, and the one a drone joins through.

An admin makes a token (``POST /api/v1/drones/join-tokens``, ``apiary join-token``):
``apiary_join_`` and base64url JSON of the queen's address (``api``), its
public key (``key``) and a secret. On the build machine ``apiary drone --join
TOKEN`` makes the drone's key pair, sends its public key with the secret to
``POST /api/v1/drones/join``, checks that the queen that answers has the key
the token names (a man in the middle has not), and keeps the queen's public
key. The queen writes the drone's key to ``authorized_keys/ID.key`` (the id is
the token's, when the admin fixed one), so the drone is admitted at once and
its id is bound to that key. A token works once and for `TOKEN_SECONDS`; only a
hash of its secret is stored. The token's format is core/tokens.py's, shared
with the drone (drone/joining.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aiohttp import web

from apiary.core.curve import is_key
from apiary.core.errors import BadRequest, Conflict
from apiary.core.fields import get_number, get_str, no_unknown
from apiary.core.protocol import DRONE_ID
from apiary.core.tokens import TOKEN_SECONDS, certificate, make_token
from apiary.queen.strict_json import json_response
from apiary.queen.throttle import retry_after
from apiary.queen.users import new_secret, same, token_hash
from apiary.queen.validate import read_json

from . import keys

routes = web.RouteTableDef()


def _curve(request: web.Request) -> Any:
    curve = request.app[keys.HIVE].broker.curve
    if curve is None:
        raise Conflict("this queen's drones do not use keys (no [queen] curve_secret_key): drones join with "
                       "apiary drone --queen alone; set up keys first (apiary keys) to use join tokens", field="key")
    return curve


@routes.post("/api/v1/drones/join-tokens")
async def make_join_token(request: web.Request) -> web.Response:
    """A one-time token for one drone (admins): ``{"id"?: ID, "expires_in"?: seconds}``."""
    curve = _curve(request)
    body = await read_json(request) if request.can_read_body else {}
    no_unknown(body, {"id", "expires_in"})
    drone_id = get_str(body, "id")
    if drone_id is not None and not DRONE_ID.match(drone_id):
        raise BadRequest("id: letters, digits, '.', '_' or '-' (at most 64)", field="id")
    lifetime = get_number(body, "expires_in", low=60) or TOKEN_SECONDS
    if lifetime > 30 * 86400:
        raise BadRequest("expires_in: at most 30 days", field="expires_in")
    secret = new_secret()
    expires = time.time() + lifetime
    identity = request.get("identity") or {}
    await request.app[keys.STORE].add_join_token(token_hash(secret), drone_id, expires, identity.get("user", ""))
    token = make_token(request.app[keys.PLUGINS].base_url, curve.keys.public.decode(), secret, drone_id)
    return json_response({"token": token, "id": drone_id, "expires": expires,
                          "run": f"apiary drone --queen {request.app[keys.HIVE].endpoint} --join {token}"},
                         status=201)


@routes.post("/api/v1/drones/join")
async def join(request: web.Request) -> web.Response:
    """A drone's public key authorized with a token: ``{"token", "id", "key"}`` -> the queen's key."""
    curve = _curve(request)
    gate = request.app[keys.GATE]
    address = f"addr:{request.remote}"
    wait = gate.by_address.wait(address, time.monotonic())
    if wait:
        return json_response({"error": f"too many failed attempts: try again in {retry_after(wait)} s",
                              "field": "token"}, status=429, headers={"Retry-After": retry_after(wait)})
    body = await read_json(request)
    no_unknown(body, {"token", "id", "key"})
    secret = get_str(body, "token", required=True) or ""
    drone_id = get_str(body, "id", required=True) or ""
    key = get_str(body, "key", required=True) or ""
    if not DRONE_ID.match(drone_id):
        raise BadRequest("id: letters, digits, '.', '_' or '-' (at most 64)", field="id")
    if not is_key(key.encode()):
        raise BadRequest("key: a CURVE public key in Z85 (40 characters)", field="key")
    store = request.app[keys.STORE]
    found = await store.get_join_token(token_hash(secret))
    if found is None or found["expires"] < time.time() or (found.get("id") and found["id"] != drone_id):
        gate.by_address.failed(address, time.monotonic())
        why = "for another drone id" if found and found["expires"] >= time.time() else "unknown, used or expired"
        raise BadRequest(f"token: {why}; ask an admin for a new one (apiary join-token)", field="token")
    path: Path = curve.authorized / f"{drone_id}.key"
    if path.exists():
        import zmq.auth  # only here: the API needs it for this one check

        existing = zmq.auth.load_certificate(path)[0]
        if not same(existing.decode(), key):
            raise Conflict(f"id: drone {drone_id} has another key already ({path.name}); an admin removes it first, "
                           "or join under another id", field="id")
    if not await store.use_join_token(found["_id"]):  # used meanwhile
        raise BadRequest("token: unknown, used or expired; ask an admin for a new one", field="token")
    tmp = path.with_suffix(".key.tmp")
    tmp.write_text(certificate(key))
    tmp.replace(path)
    return json_response({"id": drone_id, "queen_key": curve.keys.public.decode(),
                          "authorized": path.name}, status=201)
