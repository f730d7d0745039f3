"""The settings a command runs with: the config file, ``APIARY_*`` variables, its flags; and `apiary config`.

Reading the file and the environment happens here, at the edge; apiary.core.config
only parses and validates what it is given, so the drone and the queen can share it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apiary.cli.address import next_to
from apiary.core.config import Config, parse_config, with_changes
from apiary.core.errors import ConfigError
from apiary.core.refs import hide_password

DEFAULT_CONFIG = "apiary.toml"


def config_path(given: str | None) -> str | None:
    """The config file to read: `given` (-c), else ./apiary.toml if there is one, else none."""
    if given is None and Path(DEFAULT_CONFIG).is_file():
        return DEFAULT_CONFIG
    return given


def read_file(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The TOML document at `path` (none: empty); ConfigError naming the file when it cannot be read."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read `path` (optional) and APIARY_* variables from `env` (default: os.environ); validate; return Config."""
    env = os.environ if env is None else env
    return parse_config(read_file(path), env, "defaults" if path is None else str(path))


def origins(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where each setting that is not a default comes from: ``{"client.token": "APIARY_CLIENT_TOKEN", …}``.

    The variables win over the file, as in load_config; call it once load_config has accepted both."""
    env = os.environ if env is None else env
    found: dict[str, str] = {}
    for table, section in read_file(path).items():
        if isinstance(section, dict):
            found.update({f"{table}.{key}": f"{path} [{table}]" for key in section})
    for name in env:
        for table in ("queen", "drone", "client"):
            if name.startswith(f"APIARY_{table.upper()}_"):
                found[f"{table}.{name[len(table) + 8:].lower()}"] = name
    return found


def with_flags(config: Config, args: argparse.Namespace) -> Config:
    """`config` with the command's flags applied; a bad value is named by its flag (``--http-port``).

    ``--port P`` is the HTTP port P and the drone endpoint next to it, P+1 (unless --drone-bind says)."""
    port = getattr(args, "port", None)
    if port is not None:
        if getattr(args, "http_port", None) is not None:
            raise ConfigError("--port and --http-port: give one of them")
        args.http_port = port
        if getattr(args, "drone_bind", None) is None:
            args.drone_bind = next_to(config.queen.drone_bind, port)

    def pick(section: Any, names: dict[str, str]) -> Any:
        changes = {field: getattr(args, flag) for flag, field in names.items()
                   if getattr(args, flag, None) is not None}
        if not changes:
            return section
        return with_changes(section, lambda key: f"--{key.replace('_', '-')}", **changes)

    queen = pick(config.queen, {"http_host": "http_host", "http_port": "http_port", "drone_bind": "drone_bind",
                                "data_dir": "data_dir", "mongodb_url": "mongodb_url"})
    drone = pick(config.drone, {"capacity": "capacity", "speed": "speed", "id": "id", "work_dir": "work_dir",
                                "queen": "queen"})
    return dataclasses.replace(config, queen=queen, drone=drone)


# Settings whose values are secrets: `apiary config` shows *** and where the value comes from.
SECRET_SETTINGS = {"client.token"}
# Settings that name a key file: shown as a path, never as a key written in their place.
KEY_FILE_SETTINGS = {"curve_secret_key"}

def hide_passwords(value: Any) -> Any:
    """`value` with hide_password applied to every string in it, in lists and tables too."""
    if isinstance(value, str):
        return hide_password(value)
    if isinstance(value, (list, tuple)):
        return [hide_passwords(v) for v in value]
    if isinstance(value, dict):
        return {k: hide_passwords(v) for k, v in value.items()}
    return value


def as_toml(config: Config, where: Mapping[str, str] | None = None, client_origin: str = "",
            drone_origin: str = "") -> str:
    """apiary config: every setting in force, as a TOML document; secrets as ``"***"`` and where they come from.

    `where` maps ``table.key`` to its origin (origins()); `client_origin` and `drone_origin` say where [client]
    url and [drone] queen were found (apiary.cli.address), which may be the queen's own record of its address
    rather than a setting. A key setting (``curve_secret_key``) naming no file holds the key itself: ***."""
    where = where or {}
    lines = []
    for table in ("queen", "drone", "client"):
        lines.append(f"[{table}]")
        for field in dataclasses.fields(getattr(config, table)):
            name, value = f"{table}.{field.name}", getattr(getattr(config, table), field.name)
            note = where.get(name, "")
            if name in SECRET_SETTINGS and value:
                text, note = '"***"', f"set, not shown; from {note or 'defaults'}"
            elif field.name in KEY_FILE_SETTINGS and value and not Path(value).expanduser().exists():
                text, note = '"***"', f"set, not shown (not a file: the key itself?); from {note or 'defaults'}"
            else:  # any setting may hold a URL with a password (pip_args' --index-url, a store's URL)
                text = json.dumps(hide_passwords(value))
            if name == "client.url" and client_origin:
                note = client_origin
            if name == "drone.queen" and drone_origin:
                note = drone_origin
            lines.append(f"{field.name} = {text}" + (f"  # {note}" if note else ""))
        lines.append("")
    return "\n".join(lines)
