"""CurveZMQ on the drone port: key files, the queen's authorized drone keys, the ZAP handler.

Keys are pyzmq certificate files (the format of `zmq.auth.create_certificates`):
``NAME.key`` holds a public key, ``NAME.key_secret`` the pair. The queen's
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
handshakes (`HandshakeMonitor`) and dials again itself, saying what is wrong.

Without a secret key there is no CURVE: a queen allows that on a loopback
``drone_bind`` (127.0.0.1, ::1, localhost: `apiary up`, the tests) and refuses
to start on any other unless ``allow_insecure_drones`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils.monitor import recv_monitor_message
from zmq.utils import z85
from zmq.utils.z85 import Z85CHARS

from apiary.core.config import DroneConfig, QueenConfig
from apiary.core.errors import ApiaryError, ConfigError

log = logging.getLogger(__name__)
# pyzmq's authenticator logs every ZAP request at DEBUG (a flood of handshakes
# would flood a DEBUG log); its own logger keeps that apart from ours.
_zap_log = logging.getLogger(__name__ + ".zap")
_zap_log.setLevel(logging.INFO)

ZAP_DOMAIN = "apiary"
LOG_EVERY = 60.0  # seconds between two log lines about the same refused peer or handshake fault
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
_Z85 = frozenset(Z85CHARS)


@dataclasses.dataclass(frozen=True)
class KeyPair:
    public: bytes  # Z85 text, 40 bytes, as ZeroMQ's CURVE options take it
    secret: bytes


@dataclasses.dataclass(frozen=True)
class ServerCurve:
    """The queen's side: its key pair and the folder of drone keys it admits."""

    keys: KeyPair
    authorized: Path


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
    readable by others, whatever the umask.
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


def is_key(key: bytes | None) -> bool:
    """A CURVE key in Z85 text (40 characters)."""
    return key is not None and len(key) == 40 and set(key) <= _Z85


def read_key_pair(path_text: str, setting: str) -> KeyPair:
    """The key pair in a ``.key_secret`` file; ConfigError naming `setting` if it is not one."""
    path = Path(path_text).expanduser()
    public, secret = _read(path, setting)
    if secret is None:
        raise ConfigError(f"{setting}: {path} holds no secret key (give the .key_secret file)")
    if not is_key(secret):
        raise ConfigError(f"{setting}: {path}: the secret key is not a 40-character Z85 CURVE key")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s: %s is readable by other users (mode %o); chmod 600 it", setting, path, mode & 0o777)
    return KeyPair(public, secret)


def read_public_key(path_text: str, setting: str) -> bytes:
    """The public key in a ``.key`` (or ``.key_secret``) file; ConfigError naming `setting` if none."""
    return _read(Path(path_text).expanduser(), setting)[0]


def _read(path: Path, setting: str) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise ConfigError(f"{setting}: no such key file: {path} (apiary keys makes one)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{setting}: cannot read the key file {path}: {exc}") from None
    if not is_key(public):
        raise ConfigError(f"{setting}: {path}: the public key is not a 40-character Z85 CURVE key")
    return public, secret


# -- what each side runs with ---------------------------------------------------------


def is_loopback(endpoint: str) -> bool:
    """Whether a tcp:// endpoint binds only this machine's loopback (127.0.0.0/8, ::1, localhost)."""
    host = endpoint.removeprefix("tcp://").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # *, an interface name, a host name: assume other machines reach it


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
    keys = read_key_pair(config.curve_secret_key, "[queen] curve_secret_key")
    folder = Path(config.authorized_keys).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"[queen] authorized_keys: {folder} is not a folder (put drones' public .key files in one)")
    return ServerCurve(keys, folder)


def client_curve(config: DroneConfig) -> ClientCurve | None:
    """A drone's CURVE settings, files read; None when it has no keys."""
    if not config.curve_secret_key:
        return None
    return ClientCurve(read_key_pair(config.curve_secret_key, "[drone] curve_secret_key"),
                       read_public_key(config.queen_public_key, "[drone] queen_public_key"))


# -- the queen: authorized keys and the ZAP handler ------------------------------------


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

HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_DRONE_KEYS = "[drone] curve_secret_key and queen_public_key"


def drone_handshake_problem(queen: str, event: int, value: int, curve: ClientCurve | None) -> str:
    """What a failed handshake with the queen means, for the drone's log."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        key = curve.keys.public.decode() if curve else "?"
        return (f"the queen at {queen} refused this drone's key {key}: copy the drone's public key file "
                "(the .key beside [drone] curve_secret_key) into the queen's authorized_keys folder; retrying")
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        if curve is None:
            return (f"the queen at {queen} requires CURVE: set {_DRONE_KEYS} "
                    "(apiary keys --drone makes a key pair); retrying")
        return f"the queen at {queen} does not use CURVE: unset {_DRONE_KEYS}, or give the queen keys; retrying"
    if curve is not None:
        return (f"the CURVE handshake with the queen at {queen} failed: check that [drone] queen_public_key is "
                "this queen's public key and that the queen has curve_secret_key set; retrying")
    return (f"the handshake with the queen at {queen} failed ({_event_name(event)} {value}): "
            f"if it requires CURVE, set {_DRONE_KEYS}; retrying")


def queen_handshake_problem(endpoint: str, event: int, value: int, curve: bool) -> str | None:
    """What a peer's failed handshake means, for the queen's log; None when not worth a line
    (refused keys are logged by the ZAP handler, with the peer's address). Best effort: which
    side of a mismatched handshake libzmq reports the mismatch on depends on timing."""
    if event != zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return None
    if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        if curve:
            return (f"refused a peer without CURVE keys on {endpoint}: a drone needs {_DRONE_KEYS} "
                    "(logged at most once a minute)")
        return (f"refused a peer using CURVE on {endpoint}: this queen has no curve_secret_key "
                "(logged at most once a minute)")
    if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC and curve:
        return (f"refused a CURVE peer on {endpoint} whose queen_public_key is not this queen's "
                "(logged at most once a minute)")
    return None


def _event_name(event: int) -> str:
    try:
        return zmq.Event(event).name or str(event)
    except ValueError:
        return str(event)


class HandshakeMonitor:
    """Reports a socket's handshake events to ``on_event(event, value)``, from a task.

    Lifecycle: made in the running loop before the socket connects or binds;
    `close()` before the socket and its context are closed (a monitor socket
    left open would make the context's term() wait forever).
    """

    def __init__(self, sock: zmq.Socket[Any], on_event: Callable[[int, int], None],
                 events: int = HANDSHAKE_FAILED | zmq.EVENT_HANDSHAKE_SUCCEEDED) -> None:
        self._sock = sock
        self._monitor = sock.get_monitor_socket(events)
        self._task = asyncio.get_running_loop().create_task(self._run(on_event))

    async def _run(self, on_event: Callable[[int, int], None]) -> None:
        while True:
            event = await recv_monitor_message(self._monitor)
            if event["event"] == zmq.EVENT_MONITOR_STOPPED:
                return
            try:
                on_event(event["event"], event["value"])
            except Exception:
                log.exception("error handling handshake event %s", event["event"])

    def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self._monitor.close(linger=0)


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
