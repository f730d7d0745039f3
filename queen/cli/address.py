"""Which queen a client command talks to, and where that choice came from; the ports `--port` gives.

A client command takes the first of (`choose`):

    --url URL                  the flag
    APIARY_CLIENT_URL          the environment
    [client] url               the config file (-c, else ./apiary.toml)
    DATA_DIR/queen.url         what the queen running on this machine wrote down (apiary up, apiary queen;
                               DATA_DIR: --data-dir, APIARY_QUEEN_DATA_DIR, [queen] data_dir, ~/.apiary/queen)
    http://127.0.0.1:8420      the default

The origin goes into every message about the address ("no queen answers at URL (from ORIGIN)"),
so that a user sees which of these to change.

`apiary drone` finds the queen's drone endpoint the same way (`choose_endpoint`): --queen, [drone] queen or
APIARY_DRONE_QUEEN, DATA_DIR/queen.endpoint (what the queen on this machine bound, written beside queen.url),
tcp://127.0.0.1:8421.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from apiary.core.config import ClientConfig, DroneConfig, with_changes
from apiary.core.errors import ConfigError

URL_FILE = "queen.url"  # the file apiary.queen.app writes in the data dir (its URL_FILE)
ENDPOINT_FILE = "queen.endpoint"  # its drone endpoint, beside it (apiary.queen.app's ENDPOINT_FILE)
DEFAULT_URL = ClientConfig().url
DEFAULT_ENDPOINT = DroneConfig().queen

# What a client command uses without --url, for its --help.
PRECEDENCE = ("APIARY_CLIENT_URL, else [client] url in the config file, else the address "
              "the queen on this machine wrote to DATA_DIR/queen.url (apiary up or apiary queen), "
              f"else {DEFAULT_URL}")


@dataclasses.dataclass(frozen=True)
class QueenAddress:
    """The queen's base URL and where it was found (a flag, a variable, a file, or ``default``)."""

    url: str
    origin: str


def choose(flag: str | None, env: str | None, configured: tuple[str, str] | None,
           recorded: tuple[str, str] | None) -> QueenAddress:
    """The address to use, by precedence. `configured` and `recorded` are (url, where) or None."""
    return _first([(flag, "--url"), (env, "APIARY_CLIENT_URL"), configured, recorded], DEFAULT_URL)


def choose_endpoint(flag: str | None, configured: tuple[str, str] | None,
                    recorded: tuple[str, str] | None) -> QueenAddress:
    """The drone endpoint `apiary drone` connects to, by precedence: --queen, the setting ([drone] queen or
    APIARY_DRONE_QUEEN: (endpoint, where)), what the local queen recorded ((endpoint, path)), the default."""
    return _first([(flag, "--queen"), configured, recorded], DEFAULT_ENDPOINT)


def _first(candidates: list[tuple[str | None, str] | None], default: str) -> QueenAddress:
    """The first (value, where) given with a value, else `default` (from "default")."""
    for found in candidates:
        if found is not None and found[0]:
            return QueenAddress(found[0], found[1])
    return QueenAddress(default, "default")


def recorded_endpoint(data_path: Path) -> tuple[str, str] | None:
    """(endpoint, path) of the drone endpoint a queen with this data dir wrote, or None."""
    return _recorded(data_path / ENDPOINT_FILE)


def recorded_url(data_path: Path) -> tuple[str, str] | None:
    """(url, path) that a queen with this data dir wrote, or None when there is none (or it cannot be read)."""
    return _recorded(data_path / URL_FILE)


def _recorded(path: Path) -> tuple[str, str] | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return (text, str(path)) if text else None


def checked(address: QueenAddress) -> QueenAddress:
    """`address` if its URL is an http(s) URL; else ConfigError naming where it came from."""
    with_changes(ClientConfig(), lambda key: address.origin, url=address.url)
    return address


def next_to(drone_bind: str, port: int) -> str:
    """`drone_bind` with its port set to the one after `port` (`--port P`: drones at P+1; P=0: any free port)."""
    if port == 0:
        drone_port = "*"
    elif port >= 65535:
        raise ConfigError(f"--port: {port} leaves no port after it for drones (give --drone-bind too)")
    else:
        drone_port = str(port + 1)
    return re.sub(r":(\*|\d+)$", ":" + drone_port, drone_bind)
