"""CurveZMQ settings without processes: key pairs and their files, loopback endpoints, join tokens, the
authorized folder read again. Real queens and drones over CURVE: tests/e2e/test_curve.py (which imports Keys and
the keys fixture from here)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import zmq.auth
from zmq.utils.z85 import Z85CHARS

from apiary.core.config import DroneConfig, QueenConfig, parse_config
from apiary.core.curve import Every, is_key, is_loopback
from apiary.core.errors import ApiaryError, ConfigError
from apiary.core.tokens import make_token, read_token
from apiary.drone.keys import client_curve, create_key_pair
from apiary.queen.curve import AuthorizedKeys, server_curve


@dataclasses.dataclass
class Keys:
    dir: Path  # every key pair made here
    authorized: Path  # the queen's authorized_keys: worker's public key only

    @property
    def queen(self) -> dict[str, str]:
        return {"APIARY_QUEEN_CURVE_SECRET_KEY": str(self.dir / "queen.key_secret"),
                "APIARY_QUEEN_AUTHORIZED_KEYS": str(self.authorized)}

    def drone(self, name: str) -> dict[str, str]:
        return {"APIARY_DRONE_CURVE_SECRET_KEY": str(self.dir / f"{name}.key_secret"),
                "APIARY_DRONE_QUEEN_PUBLIC_KEY": str(self.dir / "queen.key")}

    def pair(self, name: str) -> tuple[bytes, bytes]:
        public, secret = zmq.auth.load_certificate(self.dir / f"{name}.key_secret")
        assert secret is not None
        return public, secret

    @property
    def queen_public(self) -> bytes:
        return zmq.auth.load_certificate(self.dir / "queen.key")[0]


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    """Key pairs for the queen, an authorized drone `worker` and strangers `stranger` and `late`."""
    k = Keys(tmp_path / "keys", tmp_path / "authorized")
    k.authorized.mkdir()
    for name in ("queen", "worker", "stranger", "late"):
        create_key_pair(k.dir, name)
    shutil.copy(k.dir / "worker.key", k.authorized / "worker.key")
    return k


# -- settings, without processes -----------------------------------------------------------


def test_loopback_endpoints() -> None:
    for endpoint in ("tcp://127.0.0.1:8421", "tcp://127.0.0.1:*", "tcp://127.1.2.3:1", "tcp://[::1]:8421",
                     "tcp://localhost:8421"):
        assert is_loopback(endpoint), endpoint
    for endpoint in ("tcp://0.0.0.0:8421", "tcp://*:8421", "tcp://[::]:8421", "tcp://192.168.1.5:8421",
                     "tcp://eth0:8421", "tcp://build.example:8421"):
        assert not is_loopback(endpoint), endpoint


def test_curve_settings_come_in_pairs_and_key_files_are_checked(tmp_path: Path, keys: Keys) -> None:
    with pytest.raises(ConfigError, match=r"\[queen\] curve_secret_key: is set but authorized_keys is not"):
        parse_config({}, {"APIARY_QUEEN_CURVE_SECRET_KEY": "/k"}, "defaults")
    with pytest.raises(ConfigError, match=r"\[drone\] queen_public_key: is set but curve_secret_key is not"):
        parse_config({}, {"APIARY_DRONE_QUEEN_PUBLIC_KEY": "/k"}, "defaults")
    insecure = parse_config({}, {"APIARY_QUEEN_ALLOW_INSECURE_DRONES": "yes"}, "defaults")
    assert insecure.queen.allow_insecure_drones is True

    public = QueenConfig(drone_bind="tcp://0.0.0.0:8421")
    with pytest.raises(ConfigError) as err:
        server_curve(public)
    assert "drone_bind" in str(err.value) and "curve_secret_key" in str(err.value)
    assert server_curve(dataclasses.replace(public, allow_insecure_drones=True)) is None
    assert server_curve(QueenConfig()) is None  # the default: loopback, no keys

    secure = QueenConfig(drone_bind="tcp://0.0.0.0:8421", curve_secret_key=str(keys.dir / "queen.key_secret"),
                         authorized_keys=str(keys.authorized))
    curve = server_curve(secure)
    assert curve is not None and curve.keys.public == keys.queen_public
    for changes, words in (({"curve_secret_key": str(tmp_path / "nope")}, "curve_secret_key: no such key file"),
                           ({"curve_secret_key": str(keys.dir / "queen.key")}, "holds no secret key"),
                           ({"authorized_keys": str(tmp_path / "nope")}, "authorized_keys: ")):
        with pytest.raises(ConfigError, match=words):
            server_curve(dataclasses.replace(secure, **changes))
    with pytest.raises(ApiaryError, match="exists"):
        create_key_pair(keys.dir, "queen")


def test_a_drone_checks_its_key_files_as_the_queen_checks_hers(tmp_path: Path, keys: Keys) -> None:
    drone = DroneConfig(curve_secret_key=str(keys.dir / "worker.key_secret"), queen_public_key=str(keys.dir / "queen.key"))
    curve = client_curve(drone)
    assert curve is not None and (curve.keys.public, curve.keys.secret) == keys.pair("worker")
    assert curve.server == keys.queen_public
    assert client_curve(DroneConfig()) is None
    (tmp_path / "junk.key").write_text("not a key\n")
    for changes, words in (({"curve_secret_key": str(tmp_path / "nope")}, r"\[drone\] curve_secret_key: no such key file"),
                           ({"curve_secret_key": str(keys.dir / "worker.key")}, "holds no secret key"),
                           ({"queen_public_key": str(tmp_path / "junk.key")}, "cannot read the key file .*No public key"),
                           ({"queen_public_key": str(tmp_path / "nope")}, r"\[drone\] queen_public_key: no such key file")):
        with pytest.raises(ConfigError, match=words):
            client_curve(dataclasses.replace(drone, **changes))


def test_join_tokens_read_back_what_was_made() -> None:
    queen = "rq:Hb^7Jq&-2@8xQ.=%m#kT!v(/b<[Wz)3*{p}9c"
    assert is_key(queen.encode()) and not is_key(queen[:-1].encode()) and not is_key(b"~" * 40)
    # The core's Z85 alphabet is pyzmq's: every character of it makes a key.
    assert is_key(Z85CHARS[:40]) and is_key(Z85CHARS[-40:])
    token = make_token("https://ci.example", queen, "s3cret", "build-1")
    assert read_token(f"  {token}\n") == {"api": "https://ci.example", "key": queen, "secret": "s3cret", "id": "build-1"}
    assert read_token(make_token("https://ci.example", queen, "s3cret"))["id"] == ""
    for bad, words in ((token[len("apiary_join_"):], "starts with apiary_join_"), (token[:-7], "cut short or altered"),
                       (make_token("https://ci.example", "x" * 40 + "~", "s"), "not a CURVE key")):
        with pytest.raises(ValueError, match=words):
            read_token(bad)


def test_the_authorized_folder_is_read_again_when_it_changes(tmp_path: Path, keys: Keys) -> None:
    folder = AuthorizedKeys(keys.authorized, look_every=0.0)
    worker, stranger = keys.pair("worker")[0], keys.pair("stranger")[0]
    assert worker in folder and stranger not in folder and len(folder) == 1
    shutil.copy(keys.dir / "stranger.key", keys.authorized / "stranger.key")
    (keys.authorized / "junk.key").write_text("not a key\n")
    (keys.authorized / "notes.txt").write_text("ignored\n")
    assert stranger in folder and len(folder) == 2  # junk.key skipped with a warning
    (keys.authorized / "worker.key").unlink()
    assert worker not in folder
    lazy = AuthorizedKeys(keys.authorized, look_every=3600)
    assert stranger in lazy
    (keys.authorized / "stranger.key").unlink()
    assert stranger in lazy  # not looked at again so soon
    assert lazy.refresh(force=True) and stranger not in lazy

    every = Every(60.0)
    assert every.due("a", now=0.0) and not every.due("a", now=59.0) and every.due("b", now=59.0)
    assert every.due("a", now=60.0)
