"""CurveZMQ as both sides see it, with no I/O: what a key is, the checks of a key file's keys, loopback endpoints.

The queen (queen/curve.py) and the drone (drone/keys.py) each read their own
key files; what they read is checked here, so a bad key is refused with the
same words on either side. `Every` keeps the log lines about refused or
failed handshakes to one a minute per peer, on both sides.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from collections.abc import Hashable
from pathlib import Path

from .errors import ConfigError

# The Z85 alphabet (ZeroMQ RFC 32) in which CURVE keys are written, the same as pyzmq's zmq.utils.z85.Z85CHARS.
_Z85 = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")
# The settings a drone needs for CURVE, as messages on both sides name them.
DRONE_KEY_SETTINGS = "[drone] curve_secret_key and queen_public_key"
LOG_EVERY = 60.0  # seconds between two log lines about the same refused peer or handshake fault


@dataclasses.dataclass(frozen=True)
class KeyPair:
    public: bytes  # Z85 text, 40 bytes, as ZeroMQ's CURVE options take it
    secret: bytes


def is_key(key: bytes | None) -> bool:
    """A CURVE key in Z85 text (40 characters)."""
    return key is not None and len(key) == 40 and set(key) <= _Z85


def check_public_key(public: bytes, path: Path, setting: str) -> bytes:
    """`public`, read from the key file `path`; ConfigError naming `setting` if it is not a key."""
    if not is_key(public):
        raise ConfigError(f"{setting}: {path}: the public key is not a 40-character Z85 CURVE key")
    return public


def check_key_pair(public: bytes, secret: bytes | None, path: Path, setting: str) -> KeyPair:
    """The key pair read from the ``.key_secret`` file `path`; ConfigError naming `setting` if it is not one."""
    check_public_key(public, path, setting)
    if secret is None:
        raise ConfigError(f"{setting}: {path} holds no secret key (give the .key_secret file)")
    if not is_key(secret):
        raise ConfigError(f"{setting}: {path}: the secret key is not a 40-character Z85 CURVE key")
    return KeyPair(public, secret)


def is_loopback(endpoint: str) -> bool:
    """Whether a tcp:// endpoint binds only this machine's loopback (127.0.0.0/8, ::1, localhost)."""
    host = endpoint.removeprefix("tcp://").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # *, an interface name, a host name: assume other machines reach it


class Every:
    """Says yes to a key at most once every `seconds` (a log line per peer per minute, say)."""

    def __init__(self, seconds: float, most: int = 10_000) -> None:
        self.seconds = seconds
        self.most = most
        self._last: dict[Hashable, float] = {}

    def due(self, key: Hashable, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if now - self._last.get(key, float("-inf")) < self.seconds:
            return False
        if len(self._last) >= self.most:
            self._last.clear()  # a flood of addresses must not grow this without end
        self._last[key] = now
        return True

    def clear(self) -> None:
        self._last.clear()
