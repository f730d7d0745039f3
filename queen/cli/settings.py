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

from apiary.core.config import Config, parse_config, with_changes
from apiary.core.errors import ConfigError

DEFAULT_CONFIG = "apiary.toml"


def config_path(given: str | None) -> str | None:
    """The config file to read: `given` (-c), else ./apiary.toml if there is one, else none."""
    if given is None and Path(DEFAULT_CONFIG).is_file():
        return DEFAULT_CONFIG
    return given


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read `path` (optional) and APIARY_* variables from `env` (default: os.environ); validate; return Config."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{where}: no such file") from None
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    return parse_config(data, env, where)


def with_flags(config: Config, args: argparse.Namespace) -> Config:
    """`config` with the command's flags applied; a bad value is named by its flag (``--http-port``)."""
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


def as_toml(config: Config) -> str:
    """apiary config: every setting in force, as a TOML document."""
    lines = []
    for table in ("queen", "drone", "client"):
        lines.append(f"[{table}]")
        for field in dataclasses.fields(getattr(config, table)):
            value = getattr(getattr(config, table), field.name)
            lines.append(f"{field.name} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)
