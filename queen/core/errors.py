"""Apiary's exceptions, one root for everything the project raises on purpose.

    ApiaryError
    ├── ConfigError        a config file or variable is wrong (CLI: message, exit 2)
    ├── ProtocolError      a ZeroMQ frame is malformed (logged and dropped)
    ├── StoreError         the store cannot be reached or started
    └── RequestError       an API call is wrong (HTTP status + JSON message)
        ├── BadRequest     400, names the field
        ├── NotFound       404
        └── Conflict       409

Each edge turns them into a clear message: the CLI prints and exits, the API
answers JSON ``{"error": message, "field": name}``, the broker logs and drops.
"""

from __future__ import annotations


class ApiaryError(Exception):
    """Something Apiary can explain to its user."""

    exit_code = 1  # the CLI's exit status when this ends a command


class ConfigError(ApiaryError):
    """The configuration is invalid."""

    exit_code = 2


class ProtocolError(ApiaryError):
    """A ZeroMQ message could not be understood; `kind` is its type when that much was read."""

    def __init__(self, message: str, kind: object = None) -> None:
        super().__init__(message)
        self.kind = kind


class StoreError(ApiaryError):
    """The store could not be started or reached."""


class RequestError(ApiaryError):
    status = 400
    exit_code = 2  # the same faults, met by a command (apiary run), are usage errors

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BadRequest(RequestError):
    status = 400


class NotFound(RequestError):
    status = 404


class Conflict(RequestError):
    status = 409
