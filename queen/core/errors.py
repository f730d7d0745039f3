"""Apiary's exceptions, one root for everything the project raises on purpose.

    ApiaryError
    ├── ConfigError        a config file or variable is wrong (CLI: message, exit 2)
    ├── ProtocolError      a ZeroMQ frame is malformed (logged and dropped)
    ├── StoreError         the store cannot be reached or started
    ├── GitError           git cannot fetch or read what a job names (git's own words)
    └── InputError         bad input, from anyone: an API call, a pipeline, a command's
        │                  arguments (message + field; HTTP 400, CLI exit 2)
        ├── PipelineError  a pipeline that does not parse or validate (core/pipeline.py)
        ├── BadRequest     an API call is wrong: 400, names the field
        ├── NotFound       404
        └── Conflict       409

The plugin-facing ones are in the plugin API, apiary.plugins.api (standard
library only: in a plugin's own environment they sit under a stand-in root):

    ApiaryError
    ├── ConfigProblem      a plugin's config is wrong, naming the field (also a ValueError)
    └── TriggerRefused     a plugin's ctx.trigger() could not queue the job

Each edge turns them into a clear message: the CLI prints and exits, the API
answers JSON ``{"error": message, "field": name}`` with the error's `status`,
the broker logs and drops.
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


class GitError(ApiaryError):
    """Git could not fetch or read what a job names; the message carries git's own words."""


class InputError(ApiaryError):
    """Input that cannot be used, whoever gave it; `field` names where the fault is, when one place is to blame."""

    status = 400  # what the API answers
    exit_code = 2  # the same faults, met by a command (apiary run), are usage errors

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BadRequest(InputError):
    status = 400


class NotFound(InputError):
    status = 404


class Conflict(InputError):
    status = 409
