"""CurveZMQ on the drone port, the queen's side: her key pair, the authorized drone keys, the ZAP handler.

Keys are pyzmq certificate files (the format of `zmq.auth.create_certificates`):
``NAME.key`` holds a public key, ``NAME.key_secret`` the pair; the drone's
side is drone/keys.py, what both check is core/curve.py. The queen's
ROUTER is a CURVE server with the queen's secret key; ZeroMQ asks the ZAP
handler installed here, on the broker's context, about each client key, and a
key that is not in the ``authorized_keys`` folder is refused during the
handshake: the peer's frames never reach the broker and it is sent nothing.
The folder is looked at again (at most once a second, when a handshake needs
it) and re-read when it changed, so adding a drone needs no restart. The
queen's own key is always admitted: `apiary up`'s local drone presents it.

Two libzmq behaviours shape this module. A CURVE server without a ZAP handler
admits every client key, so the ROUTER also sets ZAP_ENFORCE_DOMAIN, which
refuses every handshake instead. And a client refused by ZAP (status 400) may
stop reconnecting (libzmq issues #990, #3519), so the drone watches its
handshakes and dials again itself, saying what is wrong (drone/keys.py); the
queen watches hers (`apiary.shared.handshakes.HandshakeMonitor`) to log what a peer got wrong.

Without a secret key there is no CURVE: a queen allows that on a loopback
``drone_bind`` (127.0.0.1, ::1, localhost: `apiary up`, the tests) and refuses
to start on any other unless ``allow_insecure_drones`` is set.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils import z85

from apiary.core.config import QueenConfig
from apiary.core.curve import DRONE_KEY_SETTINGS, LOG_EVERY, Every, KeyPair, check_key_pair, is_key, is_loopback
from apiary.core.errors import ConfigError

log = logging.getLogger(__name__)
# pyzmq's authenticator logs every ZAP request at DEBUG (a flood of handshakes
# would flood a DEBUG log); its own logger keeps that apart from ours.
_zap_log = logging.getLogger(__name__ + ".zap")
_zap_log.setLevel(logging.INFO)

ZAP_DOMAIN = "apiary"


@dataclasses.dataclass(frozen=True)
class ServerCurve:
    """The queen's side: its key pair and the folder of drone keys it admits."""

    keys: KeyPair
    authorized: Path


# -- the queen's keys -----------------------------------------------------------------


def server_curve(config: QueenConfig) -> ServerCurve | None:
    """The queen's CURVE settings, files read; None without CURVE.

    ConfigError (exit 2) for unreadable key files, and for a drone port that
    other machines reach with no keys, unless ``allow_insecure_drones``.
    """
    if not config.curve_secret_key:
        if not (config.allow_insecure_drones or is_loopback(config.drone_bind)):
            raise ConfigError(
                f"[queen] drone_bind: {config.drone_bind} accepts drones from other machines, but curve_secret_key "
                "is not set, so they would not be authenticated: make keys with apiary keys and set "
                "curve_secret_key and authorized_keys, or bind 127.0.0.1, or set allow_insecure_drones = true")
        return None
    keys = _read_key_pair(config.curve_secret_key, "[queen] curve_secret_key")
    folder = Path(config.authorized_keys).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"[queen] authorized_keys: {folder} is not a folder (put drones' public .key files in one)")
    return ServerCurve(keys, folder)


def _read_key_pair(path_text: str, setting: str) -> KeyPair:
    """The key pair in a ``.key_secret`` file; ConfigError naming `setting` if it is not one.

    The drone reads its own the same way (drone/keys.py): the sides share no I/O code, only the checks.
    """
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ConfigError(f"{setting}: no such key file: {path} (apiary keys makes one)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{setting}: cannot read the key file {path}: {exc}") from None
    pair = check_key_pair(public, secret, path, setting)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s: %s is readable by other users (mode %o); chmod 600 it", setting, path, mode & 0o777)
    return pair


# -- authorized keys and the ZAP handler -----------------------------------------------


class AuthorizedKeys:
    """The public keys of the ``*.key`` files in a folder, re-read when the folder changes.

    `key in keys` looks at the folder (names, sizes, modification times) at
    most every `look_every` seconds and re-reads it when that changed. A file
    that is not a key is skipped with a warning, given once per change.
    """

    def __init__(self, folder: Path, look_every: float = 1.0) -> None:
        self.folder = folder
        self.look_every = look_every
        self._keys: dict[bytes, str] = {}  # public key (Z85) -> its file's name without .key
        self._seen: Any = None
        self._looked = float("-inf")

    def __contains__(self, key: object) -> bool:
        self.refresh()
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def name_of(self, key: bytes) -> str | None:
        """The name of the file that holds `key` (the drone id it may take), or None."""
        self.refresh()
        return self._keys.get(key)

    def refresh(self, force: bool = False) -> bool:
        """Re-read the folder if it changed (and was not looked at lately); whether it was re-read."""
        now = time.monotonic()
        if not force and now - self._looked < self.look_every:
            return False
        self._looked = now
        seen = self._look()
        if seen == self._seen:
            return False
        self._seen = seen
        if isinstance(seen, str):
            log.warning("authorized_keys: cannot read %s: %s; no drone key is admitted", self.folder, seen)
            self._keys = {}
            return True
        keys: dict[bytes, str] = {}
        for name, _, _ in seen:
            try:
                public, _ = zmq.auth.load_certificate(self.folder / name)
            except (OSError, ValueError) as exc:
                log.warning("authorized_keys: skipping %s: %s", self.folder / name, exc)
                continue
            if not is_key(public):
                log.warning("authorized_keys: skipping %s: not a 40-character Z85 CURVE key", self.folder / name)
                continue
            keys[public] = name.removesuffix(".key")
        self._keys = keys
        log.info("authorized drone keys: %d in %s", len(keys), self.folder)
        return True

    def _look(self) -> tuple[tuple[str, int, int], ...] | str:
        try:
            with os.scandir(self.folder) as entries:
                return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries
                                    if e.name.endswith(".key") and e.is_file()))
        except OSError as exc:
            return exc.strerror or str(exc)


class DroneAuthenticator(AsyncioAuthenticator):
    """The ZAP handler of the broker's context: admits the authorized keys and the queen's own.

    Lifecycle: `start()` in the running loop before the ROUTER binds,
    `stop()` before the context is terminated. A refused handshake is logged
    at most once a minute per peer address.
    """

    def __init__(self, context: zmq.Context[Any], curve: ServerCurve) -> None:
        super().__init__(context, log=_zap_log)
        self.keys = AuthorizedKeys(curve.authorized)
        self.own = curve.keys.public
        self.refused = 0
        self._peer = "?"
        self._told = Every(LOG_EVERY)
        self.configure_curve_callback(ZAP_DOMAIN, self)

    def start(self) -> None:
        self.keys.refresh(force=True)
        super().start()

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # The address is frame 3 of a ZAP request; `callback` only gets the key.
        # Requests are handled one at a time, so this is the callback's peer.
        self._peer = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)

    def curve_user_id(self, client_public_key: bytes) -> str:
        """The User-Id on the admitted peer's messages: its key file's name, the drone id it may register
        (empty for the queen's own key, which `apiary up`'s drone may use under any id)."""
        key = z85.encode(client_public_key)
        return "" if key == self.own else self.keys.name_of(key) or ""

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's credentials-provider hook: whether this Z85 client key may connect."""
        if key == self.own or key in self.keys:
            return True
        self.refused += 1
        if self._told.due(self._peer):
            log.warning("refused a drone handshake from %s: key %s is not in authorized_keys %s "
                        "(%d refused so far; logged at most once a minute per address)",
                        self._peer, key.decode("ascii", "replace"), self.keys.folder, self.refused)
        return False


# -- handshake outcomes, for log lines a person can act on -----------------------------


def queen_handshake_problem(endpoint: str, event: int, value: int, curve: bool) -> str | None:
    """What a peer's failed handshake means, for the queen's log; None when not worth a line
    (refused keys are logged by the ZAP handler, with the peer's address). Best effort: which
    side of a mismatched handshake libzmq reports the mismatch on depends on timing."""
    if event != zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return None
    if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        if curve:
            return (f"refused a peer without CURVE keys on {endpoint}: a drone needs {DRONE_KEY_SETTINGS} "
                    "(logged at most once a minute)")
        return (f"refused a peer using CURVE on {endpoint}: this queen has no curve_secret_key "
                "(logged at most once a minute)")
    if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC and curve:
        return (f"refused a CURVE peer on {endpoint} whose queen_public_key is not this queen's "
                "(logged at most once a minute)")
    return None


