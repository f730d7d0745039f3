"""The drone's side of CurveZMQ: its key files and its handshakes with the queen.

Keys are pyzmq certificate files (the format of `zmq.auth.create_certificates`):
``NAME.key`` holds a public key, ``NAME.key_secret`` the pair. A drone with
``curve_secret_key`` and ``queen_public_key`` is a CURVE client (`client_curve`);
the keys are checked as the queen checks hers (core/curve.py).

A client refused by the queen's ZAP handler (status 400) may stop reconnecting
(libzmq issues #990, #3519), so the drone watches its handshakes
(`apiary.shared.handshakes.HandshakeMonitor`), dials again itself, and logs what is wrong
(`drone_handshake_problem`) in words a person can act on.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import stat
import tempfile
from pathlib import Path

import zmq
import zmq.auth

from apiary.core.config import DroneConfig
from apiary.core.curve import DRONE_KEY_SETTINGS, KeyPair, check_key_pair, check_public_key
from apiary.core.errors import ApiaryError, ConfigError

log = logging.getLogger(__name__)

_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


@dataclasses.dataclass(frozen=True)
class ClientCurve:
    """A drone's side: its key pair and the queen's public key."""

    keys: KeyPair
    server: bytes


# -- key files -----------------------------------------------------------------------


def create_key_pair(directory: Path, name: str, force: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (mode 0600) in `directory`; their paths.

    Existing files are kept (ApiaryError) unless `force`. The secret is
    written in a private temporary folder and moved in, so it is never
    readable by others, whatever the umask. (`apiary keys` makes the queen's pair with it too.)
    """
    if not _KEY_NAME.match(name):
        raise ApiaryError(f"--name: must be letters, digits, '.', '_' or '-' (at most 64), got {name!r}")
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if not force:
        for path in (public, secret):
            if path.exists():
                raise ApiaryError(f"{path} exists; --force replaces it (drones or a queen holding the old "
                                  "public key would then be refused)")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".keys-") as tmp:
        made_public, made_secret = zmq.auth.create_certificates(tmp, name)
        os.chmod(made_secret, 0o600)
        os.chmod(made_public, 0o644)
        os.replace(made_secret, secret)
        os.replace(made_public, public)
    return public, secret


def read_key_pair(path_text: str, setting: str) -> KeyPair:
    """The key pair in a ``.key_secret`` file; ConfigError naming `setting` if it is not one."""
    path = Path(path_text).expanduser()
    pair = check_key_pair(*_load(path, setting), path, setting)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s: %s is readable by other users (mode %o); chmod 600 it", setting, path, mode & 0o777)
    return pair


def read_public_key(path_text: str, setting: str) -> bytes:
    """The public key in a ``.key`` (or ``.key_secret``) file; ConfigError naming `setting` if none."""
    path = Path(path_text).expanduser()
    return check_public_key(_load(path, setting)[0], path, setting)


def _load(path: Path, setting: str) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise ConfigError(f"{setting}: no such key file: {path} (apiary keys makes one)")
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{setting}: cannot read the key file {path}: {exc}") from None


def client_curve(config: DroneConfig) -> ClientCurve | None:
    """A drone's CURVE settings, files read; None when it has no keys."""
    if not config.curve_secret_key:
        return None
    return ClientCurve(read_key_pair(config.curve_secret_key, "[drone] curve_secret_key"),
                       read_public_key(config.queen_public_key, "[drone] queen_public_key"))


# -- handshakes with the queen ---------------------------------------------------------


def drone_handshake_problem(queen: str, event: int, value: int, curve: ClientCurve | None) -> str:
    """What a failed handshake with the queen means, for the drone's log."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        key = curve.keys.public.decode() if curve else "?"
        return (f"the queen at {queen} refused this drone's key {key}: copy the drone's public key file "
                "(the .key beside [drone] curve_secret_key) into the queen's authorized_keys folder; retrying")
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        if curve is None:
            return (f"the queen at {queen} requires CURVE: set {DRONE_KEY_SETTINGS} "
                    "(apiary keys --drone makes a key pair); retrying")
        return (f"the queen at {queen} does not use CURVE: unset {DRONE_KEY_SETTINGS}, or give the queen keys; "
                "retrying")
    if curve is not None:
        return (f"the CURVE handshake with the queen at {queen} failed: check that [drone] queen_public_key is "
                "this queen's public key and that the queen has curve_secret_key set; retrying")
    return (f"the handshake with the queen at {queen} failed ({_event_name(event)} {value}): "
            f"if it requires CURVE, set {DRONE_KEY_SETTINGS}; retrying")


def _event_name(event: int) -> str:
    try:
        return zmq.Event(event).name or str(event)
    except ValueError:
        return str(event)


