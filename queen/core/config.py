"""Configuration: the frozen dataclasses of every process's settings, and their validation.

`parse_config(data, env, where)` takes the ``[queen]``, ``[drone]`` and ``[client]``
tables already read from a TOML file (every key optional, see config.example.toml),
lets ``APIARY_<TABLE>_<KEY>`` variables in `env` override them
(``APIARY_QUEEN_HTTP_PORT=9000``), then validates. Any fault raises ConfigError
naming where it came from, the key and what is wrong. This module does no I/O:
reading the file and ``os.environ`` is the command line's (apiary.cli.settings).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shlex
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .protocol import DRONE_ID, MAX_CAPACITY, MAX_SPEED
from .refs import display_url

_HOST = re.compile(r"^([A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\])$")
_ENDPOINT = re.compile(r"^tcp://(\*|[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):(\*|\d{1,5})$")


@dataclasses.dataclass(frozen=True)
class QueenConfig:
    """The queen's settings."""

    http_host: str = "127.0.0.1"
    http_port: int = 8420
    drone_bind: str = "tcp://127.0.0.1:8421"
    data_dir: str = "~/.apiary/queen"
    mongodb_url: str = "embedded"
    database: str = "apiary"
    public_url: str = ""
    http_timeout: float = 10.0
    heartbeat_interval: float = 1.0
    heartbeat_liveness: int = 3
    max_attempts: int = 3
    secrets_key_file: str = ""
    anonymous_read: bool = False
    curve_secret_key: str = ""
    authorized_keys: str = ""
    allow_insecure_drones: bool = False
    cache_max_bytes: int = 2 * 2**30  # a repository's pipeline caches together (tar.zst); 0: no cap
    debug_role: str = "admin"  # who may open a debug shell in a failed job: admin, or member (apiary.core.debug)
    debug_max_sessions: int = 1  # debug shells open at once in one job
    # HOST:PORT of a listener serving GET /metrics alone, to whoever reaches it (a Prometheus on this machine
    # or a private network); "": /metrics only on the API port, to admins (apiary.queen.metrics)
    metrics_bind: str = ""

    def check(self) -> None:
        _port("http_port", self.http_port)
        _choice("debug_role", self.debug_role, ("admin", "member"))
        if not 1 <= self.debug_max_sessions <= 16:
            raise _fault("debug_max_sessions", f"must be from 1 to 16, got {self.debug_max_sessions}")
        if self.cache_max_bytes < 0:
            raise _fault("cache_max_bytes", f"must be 0 (no cap) or more, got {self.cache_max_bytes}")
        _key_pair("curve_secret_key", self.curve_secret_key, "authorized_keys", self.authorized_keys)
        if self.max_attempts < 1:
            raise _fault("max_attempts", f"must be 1 or more, got {self.max_attempts}")
        _endpoint("drone_bind", self.drone_bind)
        if self.metrics_bind:
            host, _, port = self.metrics_bind.rpartition(":")
            if not (_HOST.match(host) and port.isdigit() and 0 <= int(port) <= 65535):
                raise _fault("metrics_bind", f"must look like HOST:PORT (e.g. 127.0.0.1:9464) or be empty, "
                                             f"got {self.metrics_bind!r}")
        if not (self.mongodb_url == "embedded" or self.mongodb_url.startswith(("mongodb://", "mongodb+srv://"))):
            shown = display_url(self.mongodb_url)
            raise _fault("mongodb_url", f'must be "embedded" or a mongodb:// URL, got {shown!r}')
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,63}", self.database):
            raise _fault("database", f"must be a plain database name, got {self.database!r}")
        _positive("heartbeat_interval", self.heartbeat_interval)
        _positive("heartbeat_liveness", self.heartbeat_liveness)
        _positive("http_timeout", self.http_timeout)

    @property
    def data_path(self) -> Path:
        # Absolute: children (the embedded store, bubblewrap) run elsewhere and must not read it relative.
        return Path(self.data_dir).expanduser().absolute()

    @property
    def secrets_key_path(self) -> Path:
        """The key that seals repository secrets at rest (queen/sealing.py)."""
        if self.secrets_key_file:
            return Path(self.secrets_key_file).expanduser().absolute()
        return self.data_path / "secrets.key"


@dataclasses.dataclass(frozen=True)
class DroneConfig:
    """A drone's settings."""

    queen: str = "tcp://127.0.0.1:8421"
    curve_secret_key: str = ""
    queen_public_key: str = ""
    id: str = ""
    capacity: int = 0
    speed: float = 1.0
    work_dir: str = "~/.apiary/drone"
    heartbeat_interval: float = 1.0
    heartbeat_liveness: int = 3
    resend_after: float = 2.0
    output_flush_ms: float = 5.0
    output_chunk_bytes: int = 65536
    artifact_max_bytes: int = 256 * 1024 * 1024
    cache_max_bytes: int = 2 * 2**30  # one pipeline cache's files, saved or restored (uncompressed)
    keep_workspaces: int = 0
    log_max_bytes: int = 100 * 2**20
    workspace_max_bytes: int = 20 * 2**30
    outbox_memory_bytes: int = 64 * 2**20
    send_window_bytes: int = 4 * 2**20
    install_plugins: bool = True
    pip_args: str = ""
    plugin_timeout: float = 60.0
    plugin_install_timeout: float = 900.0
    kill_grace: float = 10.0
    sandbox: str = "auto"
    job_network: str = "isolated"
    sandbox_hide: str = ""
    # Shown to jobs read-only, even inside hidden or closed folders (credentials excepted). "python" is the
    # Python the drone runs on (sys.base_prefix, and its virtual environment, sys.prefix), so that it works in
    # jobs when it lives in a home they cannot enter, or under /tmp (a job's /tmp is its own).
    sandbox_show: str = "python"
    job_user: str = "nobody"
    pass_env: str = ""
    job_max_open_files: int = 65536
    job_max_memory: int = 8 * 2**30
    job_max_processes: int = 4096

    def check(self) -> None:
        _endpoint("queen", self.queen)
        _key_pair("curve_secret_key", self.curve_secret_key, "queen_public_key", self.queen_public_key)
        _positive("plugin_timeout", self.plugin_timeout)
        _positive("plugin_install_timeout", self.plugin_install_timeout)
        if not 0 <= self.kill_grace <= 3600:
            raise _fault("kill_grace", f"must be between 0 and 3600 seconds, got {self.kill_grace}")
        _choice("sandbox", self.sandbox, ("auto", "bwrap", "off"))
        _choice("job_network", self.job_network, ("isolated", "host", "none"))
        for entry in (e.strip() for e in self.sandbox_show.split(",")):
            if entry and entry != "python" and not entry.startswith(("/", "~")):
                raise _fault("sandbox_show", f"must be absolute paths or python, separated by commas, got {entry!r}")
            if entry and os.path.normpath(Path(entry).expanduser()) == "/":
                raise _fault("sandbox_show", "must name folders or files, not / (jobs see the machine read-only)")
        for shown in self.shown_paths:
            # What the sandbox gives each job of its own, or keeps from it: never shown from the machine.
            for own in (Path("/proc"), Path("/dev"), Path("/sys")):
                if shown == own or own in shown.parents:
                    raise _fault("sandbox_show", f"cannot show {shown}: each job has a {own} of its own")
            work = Path(os.path.normpath(self.work_path))
            if shown == work or work in shown.parents:
                raise _fault("sandbox_show", f"cannot show {shown}: it is the drone's work dir or within it "
                                             f"({work}: other jobs' workspaces, the drone's keys)")
        for key in ("job_max_open_files", "job_max_memory", "job_max_processes"):
            if getattr(self, key) < 0:
                raise _fault(key, f"must be 0 (no limit) or more, got {getattr(self, key)}")
        for name in self.pass_env_names:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise _fault("pass_env", f"must be variable names separated by commas, got {name!r}")
        try:
            shlex.split(self.pip_args)
        except ValueError as exc:
            raise _fault("pip_args", f"cannot split it as a shell would: {exc}") from None
        if self.id and not DRONE_ID.match(self.id):
            raise _fault("id", f"must be letters, digits, '.', '_' or '-' (at most 64), got {self.id!r}")
        if not 0 <= self.capacity <= MAX_CAPACITY:
            raise _fault("capacity", f"must be 0 (one slot per CPU) up to {MAX_CAPACITY}, got {self.capacity}")
        _positive("speed", self.speed)
        if self.speed > MAX_SPEED:
            raise _fault("speed", f"must be at most {MAX_SPEED:g}, got {self.speed}")
        _positive("heartbeat_interval", self.heartbeat_interval)
        _positive("heartbeat_liveness", self.heartbeat_liveness)
        _positive("resend_after", self.resend_after)
        if self.outbox_memory_bytes < 0:
            raise _fault("outbox_memory_bytes", f"must be 0 or more, got {self.outbox_memory_bytes}")
        if self.send_window_bytes < 65536:
            raise _fault("send_window_bytes", f"must be at least 65536, got {self.send_window_bytes}")
        _positive("output_flush_ms", self.output_flush_ms)
        if self.keep_workspaces < 0:
            raise _fault("keep_workspaces", f"must be 0 or more, got {self.keep_workspaces}")
        for key in ("log_max_bytes", "workspace_max_bytes"):
            if getattr(self, key) < 0:
                raise _fault(key, f"must be 0 (no cap) or more, got {getattr(self, key)}")
        if self.artifact_max_bytes < 0:
            raise _fault("artifact_max_bytes", f"must be 0 or more, got {self.artifact_max_bytes}")
        if self.cache_max_bytes < 0:
            raise _fault("cache_max_bytes", f"must be 0 (no caches) or more, got {self.cache_max_bytes}")
        if self.output_chunk_bytes < 1024:
            raise _fault("output_chunk_bytes", f"must be at least 1024, got {self.output_chunk_bytes}")

    @property
    def pass_env_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.pass_env.split(",") if n.strip())

    @property
    def hidden_paths(self) -> list[Path]:
        return [Path(p.strip()).expanduser().absolute() for p in self.sandbox_hide.split(",") if p.strip()]

    @property
    def shown_paths(self) -> list[Path]:
        entries = [q for p in self.sandbox_show.split(",")
                   for q in ((sys.base_prefix, sys.prefix) if p.strip() == "python" else (p.strip(),))]
        return list(dict.fromkeys(Path(os.path.normpath(Path(p).expanduser())) for p in entries if p))

    @property
    def drone_id(self) -> str:
        return self.id or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def slots(self) -> int:
        return self.capacity or os.cpu_count() or 1

    @property
    def work_path(self) -> Path:
        return Path(self.work_dir).expanduser().absolute()


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """Settings of the commands that talk to a queen (apiary prune, later trigger, ls, logs)."""

    url: str = "http://127.0.0.1:8420"
    token: str = ""

    def check(self) -> None:
        if not re.match(r"^https?://[^\s/]+(/\S*)?$", self.url):
            raise _fault("url", f"must be an http:// or https:// URL, got {display_url(self.url)!r}")


@dataclasses.dataclass(frozen=True)
class Config:
    queen: QueenConfig = QueenConfig()
    drone: DroneConfig = DroneConfig()
    client: ClientConfig = ClientConfig()


_TABLES: dict[str, type] = {"queen": QueenConfig, "drone": DroneConfig, "client": ClientConfig}


class _Fault(Exception):
    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message


def _fault(key: str, message: str) -> _Fault:
    return _Fault(key, message)


def _port(key: str, value: int) -> None:
    if not 0 <= value <= 65535:
        raise _fault(key, f"must be a port number 0-65535 (0: any free port), got {value}")


def _endpoint(key: str, value: str) -> None:
    if not _ENDPOINT.match(value):
        raise _fault(key, f"must look like tcp://HOST:PORT, got {display_url(value)!r}")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _fault(key, f"must be one of {', '.join(choices)}, got {value!r}")


def _positive(key: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise _fault(key, f"must be a finite number greater than 0, got {value}")


def _key_pair(key: str, value: str, other: str, other_value: str) -> None:
    """CurveZMQ needs both settings or neither (queen/curve.py reads the files when a process starts).
    The fault names the one that is set, so that it says where it came from."""
    if value and not other_value:
        raise _fault(key, f"is set but {other} is not: CurveZMQ needs both (see apiary keys)")
    if other_value and not value:
        raise _fault(other, f"is set but {key} is not: CurveZMQ needs both (see apiary keys)")


def _convert(table: str, key: str, want: type, raw: Any, where: str) -> Any:
    """`raw` as the field's type; strings (from the environment) are parsed."""
    if isinstance(raw, str) and want is bool:
        flag = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(raw.strip().lower())
        if flag is None:
            raise ConfigError(f"{where}: [{table}] {key}: expected true or false, got {raw!r}")
        return flag
    if want is bool:
        if not isinstance(raw, bool):
            raise ConfigError(f"{where}: [{table}] {key}: expected true or false, got {type(raw).__name__} {raw!r}")
        return raw
    if isinstance(raw, str) and want is not str:
        try:
            raw = {int: int, float: float}[want](raw.strip())
        except (KeyError, ValueError):
            raise ConfigError(f"{where}: [{table}] {key}: expected {want.__name__}, got {raw!r}") from None
    if want is float and isinstance(raw, int) and not isinstance(raw, bool):
        raw = float(raw)
    if not isinstance(raw, want) or isinstance(raw, bool):
        raise ConfigError(f"{where}: [{table}] {key}: expected {want.__name__}, got {type(raw).__name__} {raw!r}")
    return raw


def parse_config(data: dict[str, Any], env: Mapping[str, str], where: str) -> Config:
    """The settings in `data` (a parsed TOML document) overridden by APIARY_* variables in `env`, validated.

    `where` names the document in messages: the file's path, or ``defaults`` when there is none.
    """
    for table in data:
        if table not in _TABLES:
            raise ConfigError(f"{where}: unknown table [{table}] (known: {', '.join(_TABLES)})")
    sections = {}
    for table, cls in _TABLES.items():
        section = data.get(table, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: {table} must be a table ([{table}])")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for key, raw in section.items():
            if key not in fields:
                raise ConfigError(f"{where}: [{table}] {key}: unknown key (known: {', '.join(fields)})")
            values[key] = _convert(table, key, _field_type(fields[key]), raw, where)
            origin[key] = where
        prefix = f"APIARY_{table.upper()}_"
        for name, raw in env.items():
            if not name.startswith(prefix):
                continue
            key = name[len(prefix):].lower()
            if key not in fields:
                raise ConfigError(f"{name}: unknown setting [{table}] {key} (known: {', '.join(fields)})")
            values[key] = _convert(table, key, _field_type(fields[key]), raw, name)
            origin[key] = name
        section_obj = cls(**values)
        try:
            section_obj.check()
        except _Fault as fault:
            raise ConfigError(f"{origin.get(fault.key, 'defaults')}: [{table}] {fault.key}: {fault.message}") from None
        sections[table] = section_obj
    return Config(**sections)


def with_changes(section: Any, origin: Callable[[str], str], **changes: Any) -> Any:
    """`section` with `changes` applied (e.g. command-line flags), validated again.

    `origin(key)` names where a faulty value came from, e.g. ``--http-port``.
    """
    updated = dataclasses.replace(section, **changes)
    try:
        updated.check()
    except _Fault as fault:
        raise ConfigError(f"{origin(fault.key)}: {fault.message}") from None
    return updated


def _field_type(field: dataclasses.Field[Any]) -> type:
    # annotations are strings under `from __future__ import annotations`
    return {"str": str, "int": int, "float": float, "bool": bool}[str(field.type)]
