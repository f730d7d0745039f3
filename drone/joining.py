"""`apiary drone --join TOKEN`: a drone's key pair, authorized by the queen with a one-time token.

The token (core/tokens.py) names the queen's API and its public key. The
drone makes its key pair under ``work_dir/keys`` (once), sends the public key
with the token to ``POST /api/v1/drones/join``, checks the queen's answer
names the same queen key, and keeps that key as ``work_dir/keys/queen.key``.
Run again with the same token once joined, it finds its keys and asks nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
from pathlib import Path

import aiohttp
import zmq.auth

from apiary.core.config import DroneConfig
from apiary.core.errors import ApiaryError
from apiary.core.tokens import certificate, read_token

from .keys import create_key_pair

log = logging.getLogger(__name__)


async def join(config: DroneConfig, token: str) -> DroneConfig:
    """`config` with the CURVE settings of a drone that joined with `token`; ApiaryError saying what failed."""
    try:
        given = read_token(token)
    except ValueError as exc:
        raise ApiaryError(f"--join: {exc}") from None
    if given["id"] and config.id and config.id != given["id"]:
        raise ApiaryError(f"--join: the token is for drone {given['id']}, not {config.id} (leave out --id)")
    # A key names one drone for good: the id is the token's, or this one's, or the host's (not HOST-PID).
    drone_id = given["id"] or config.id or socket.gethostname().split(".")[0]
    config = dataclasses.replace(config, id=drone_id)
    folder = config.work_path / "keys"
    public, secret = folder / f"{drone_id}.key", folder / f"{drone_id}.key_secret"
    queen_key = folder / "queen.key"
    joined = dataclasses.replace(config, curve_secret_key=str(secret), queen_public_key=str(queen_key))
    if secret.exists() and queen_key.exists() and zmq.auth.load_certificate(queen_key)[0].decode() == given["key"]:
        log.info("drone %s: joined this queen before (keys in %s)", drone_id, folder)
        return joined
    if not secret.exists():
        create_key_pair(folder, drone_id)
    key = zmq.auth.load_certificate(public)[0].decode()
    url = given["api"].rstrip("/") + "/api/v1/drones/join"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http, http.post(
                url, json={"token": given["secret"], "id": drone_id, "key": key}) as resp:
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise ApiaryError(f"--join: cannot reach the queen at {given['api']}: {exc}") from None
    try:
        answer = json.loads(text)
    except ValueError:
        answer = {}
    if resp.status != 201:
        raise ApiaryError(f"--join: the queen at {given['api']} refused: {answer.get('error') or resp.status}")
    if answer.get("queen_key") != given["key"]:
        raise ApiaryError(f"--join: the server at {given['api']} is not the queen that made the token (its key "
                          "differs); nothing kept")
    Path(queen_key).write_text(certificate(given["key"]))
    log.info("drone %s joined: its key %s is authorized on the queen; keys in %s", drone_id, answer.get("authorized"),
             folder)
    return joined
