"""The plugin API: the one module a plugin imports (DESIGN.md §6, docs/plugins.md). Standard library only.

A plugin is any object, usually a module, named by an entry point in group
``apiary.plugins``. Every attribute is optional; Apiary uses what is there.

Drone side: called by the drone in the plugin's own environment, in a child
process (``plugins/host.py``), with plain data in and plain data out. The
``job`` argument holds ``id``, ``number``, ``type``, ``repo`` {name, url,
provider}, ``ref``, ``trigger``, ``parameters`` and ``workspace`` (a path);
never secrets (commands see them as environment variables).

    config_schema                  {field: spec}; see `check_config`
    phases(job, config)            {phase: [command, ...]} for environment,
                                   prepare, test, deploy, cleanup; a command is
                                   a string or {"run", "title", "ignore_exit_code"}
    env(job, config)               {NAME: value} for every command of the job
    artifacts(job, config)         [glob, ...] collected with the pipeline's
    reports(job, config)           [glob, ...] JUnit reports read with the pipeline's
                                   `reports.junit`; their counts become the
                                   plugin's figures (apiary.drone.testreports)
    results(job, config)           after the test phase: a dict of figures
                                   (test counts, coverage) sent as ``job:plugin``

Queen side: imported by the queen (install the plugin next to Apiary there),
run in its event loop; `ctx` is a `PluginContext` (below).

    config_schema                  validated when a repository's settings are saved
    check_config(config)           further checks; raise ValueError("field: what is wrong")
                                   (or ConfigProblem(field, text) from here)
    queen_secrets(config)          the names of secrets the config names deeper than a
                                   schema field marked ``secret`` (notify's targets):
                                   kept on the queen like those, never given to jobs
    async webhook(request, ctx)    POST /hooks/<plugin>/<repo>: an aiohttp request
                                   in, a response out (ctx.ignored, ctx.queued…)
    async background(ctx)          runs as long as the queen (schedules, pollers)
    async job_started(job, ctx)    a job of any repository started on a drone
    async job_done(job, ctx)       a job of any repository ended

What a plugin may use from here: `PluginContext` (the type of ``ctx``),
`ConfigProblem`, `TriggerRefused` and `AlreadyQueued` (under Apiary's root exception,
``apiary.core.errors.ApiaryError``), `check_config` and `SECRET_NAME`.

A plugin that raises or hangs fails the job (drone side) or is logged (queen
side); neither the drone nor the queen goes down with it.

This file is also loaded by path, without the rest of Apiary, in a plugin's
own environment (``plugins/host.py``): it imports nothing but the standard
library, and Apiary's root exception only when Apiary is there.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import logging

    import aiohttp
    from aiohttp import web

try:
    from apiary.core.errors import ApiaryError
except ImportError:  # a plugin's own environment, without Apiary (plugins/host.py)

    class ApiaryError(Exception):  # type: ignore[no-redef]
        """Apiary's root exception (apiary.core.errors), where Apiary is not installed."""


# What a repository's secret may be called: the queen's rule (apiary.core.fields ENV_NAME, kept equal by
# tests/unit/test_plugin_api.py). For a config field naming a secret (a webhook's secret, a token).
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

SCHEMA_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict}
SPEC_KEYS = {"type", "required", "default", "choices", "items", "help", "secret"}


class ConfigProblem(ApiaryError, ValueError):
    """A plugin config that does not validate; `field` is the config's key (``url``, ``schedules[0].cron``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field, self.problem = field, problem


class TriggerRefused(ApiaryError):
    """`PluginContext.trigger` could not queue the job; the message says why (a ref, a parameter…)."""


class AlreadyQueued(TriggerRefused):
    """`PluginContext.trigger` was given a webhook delivery (``source["delivery"]``) that already queued
    `job` (a forge sending it again): nothing new is queued. A plugin that does not know it answers
    as for any refusal."""

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(f"this delivery already queued job {job['_id']}")
        self.job = job


@runtime_checkable
class PluginContext(Protocol):
    """What a plugin's queen-side code gets as ``ctx``: one per plugin, for as long as the queen runs.

    The queen implements it (queen/plugin_context.py); a plugin uses only what
    is declared here. Every call of the plugin (webhook, reaction) is cut off
    after 30 seconds, and so is every request of `http`.
    """

    name: str  # the plugin's entry-point name
    http: aiohttp.ClientSession  # for calls out (commit statuses, reports); User-Agent ``apiary``
    log: logging.Logger  # ``apiary.plugin.<name>``

    async def repo(self, name: str) -> dict[str, Any] | None:
        """A repository's settings (``_id`` is its name, ``default_branch``, ``branches``…), or None."""
        ...

    def config_of(self, repo: dict[str, Any]) -> dict[str, Any] | None:
        """This plugin's config in `repo`'s settings (defaults filled), or None if the repository does not use it."""
        ...

    async def repos(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Every repository that uses this plugin, with its config."""
        ...

    async def secret(self, repo: str, name: str) -> str | None:
        """The value of repository `repo`'s secret `name`, or None (never log it)."""
        ...

    def branch_allowed(self, repo: dict[str, Any], branch: str) -> bool:
        """Whether `repo`'s branch filters (``include``, then ``exclude`` shell patterns) let `branch` trigger."""
        ...

    async def trigger(self, repo: dict[str, Any], *, branch: str | None = None, commit: str | None = None,
                      fetch: str | None = None, job_type: str = "TEST", parameters: dict[str, str] | None = None,
                      trigger: dict[str, Any] | None = None,
                      source: dict[str, Any] | None = None) -> dict[str, Any]:
        """Queue a job of `repo` and return it; raise TriggerRefused saying why not.

        `branch` (default the repository's ``default_branch``) or `fetch` (a ref
        to fetch, such as a pull request's), optionally pinned to `commit`;
        `job_type` TEST, DEPLOY or TEST_DEPLOY; `parameters` {NAME: value},
        each value a string or a number. These are checked as the API checks a
        request for a job, and refused with the same messages. `trigger` holds
        ``type`` (push, pull_request, tag, schedule…), ``author`` {name, email,
        username}, ``message``, ``url`` (http(s) only; another is left out),
        ``timestamp``, and for a pull or merge request ``fork`` (false only when
        it comes from a branch of the same repository: its jobs may then get
        secrets), ``head_branch`` and ``base_branch`` (its source and target
        branches: the history finds its jobs by either); `source` adds details
        to ``trigger.source``, whose type is ``plugin`` and plugin this one's
        name. A ``source["delivery"]`` (the forge's id of the webhook delivery)
        queues at most one job per repository, even across restarts: given
        again, nothing is queued and AlreadyQueued names the earlier job.
        """
        ...

    async def job(self, job_id: str) -> dict[str, Any] | None:
        """A job, as stored, or None."""
        ...

    async def jobs(self, repo: str, *, branch: str | None = None, before: str | None = None,
                   limit: int = 20) -> list[dict[str, Any]]:
        """Repository `repo`'s jobs, newest (last triggered) first, without their pipelines: of `branch` if given
        (a pull request's jobs count for its head and base branches), triggered before job id `before` if given;
        at most `limit` (100)."""
        ...

    def job_url(self, job: dict[str, Any]) -> str:
        """The job's page on the dashboard."""
        ...

    def ignored(self, reason: str) -> web.Response:
        """A webhook's answer 202: understood, nothing queued (an unknown repository, a branch left out…)."""
        ...

    def unauthorized(self, reason: str) -> web.Response:
        """A webhook's answer 401: the payload's signature or token is missing or wrong; nothing queued."""
        ...

    def queued(self, jobs: list[dict[str, Any]]) -> web.Response:
        """A webhook's answer 201 with the jobs queued (id, number, repo, url)."""
        ...


def check_config(schema: dict[str, Any] | None, config: Any, plugin: Any = None) -> dict[str, Any]:
    """`config` checked against `schema`, with defaults filled in; raise ConfigProblem naming the field.

    A schema maps each field to a spec: ``type`` (str, int, float, bool, list,
    dict), ``required`` (default false), ``default``, ``choices`` (allowed
    values), ``items`` (the type of a list's items), ``help`` (shown on the
    settings page) and ``secret`` (true: the field names a repository secret
    that this plugin uses on the queen, such as a webhook's secret or a forge
    token; jobs never get that secret). Fields the schema does not name are
    refused. Without a
    schema any mapping passes. `plugin`'s own ``check_config`` runs last.
    """
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigProblem("", f"must be a mapping of settings, got {_kind(config)}")
    if schema is not None:
        config = _apply(schema, config)
    extra = getattr(plugin, "check_config", None)
    if callable(extra):
        try:
            extra(config)
        except ConfigProblem:
            raise
        except ValueError as exc:  # plugins need not import Apiary: a ValueError says what is wrong
            raise ConfigProblem("", str(exc)) from None
    return config


def _apply(schema: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(config) - set(schema))
    if unknown:
        known = ", ".join(sorted(schema)) or "none"
        raise ConfigProblem(str(unknown[0]), f"unknown setting (known: {known})")
    out = dict(config)
    for field, spec in schema.items():
        if field not in config or config[field] is None:
            if spec.get("required"):
                raise ConfigProblem(field, "required")
            if "default" in spec:
                out[field] = spec["default"]
            else:
                out.pop(field, None)
            continue
        value = config[field]
        kind = spec.get("type")
        if kind is not None:
            want = SCHEMA_TYPES[kind]
            if isinstance(value, bool) and kind != "bool" or not isinstance(value, want):
                raise ConfigProblem(field, f"must be a {_NAMES[kind]}, got {_kind(value)}")
        items = spec.get("items")
        if items is not None and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, bool) and items != "bool" or not isinstance(item, SCHEMA_TYPES[items]):
                    raise ConfigProblem(f"{field}[{i}]", f"must be a {_NAMES[items]}, got {_kind(item)}")
        choices = spec.get("choices")
        if choices is not None and value not in choices:
            raise ConfigProblem(field, f"must be one of {', '.join(map(str, choices))}, got {value!r}")
    return out


def check_schema(schema: Any) -> None:
    """Raise ConfigProblem if a plugin's own `config_schema` is malformed (a plugin author's mistake)."""
    if not isinstance(schema, dict):
        raise ConfigProblem("config_schema", "must be a dict of field specs")
    for field, spec in schema.items():
        if not isinstance(spec, dict) or set(spec) - SPEC_KEYS:
            raise ConfigProblem(f"config_schema.{field}", f"a spec has only the keys {', '.join(sorted(SPEC_KEYS))}")
        for key in ("type", "items"):
            if key in spec and spec[key] not in SCHEMA_TYPES:
                raise ConfigProblem(f"config_schema.{field}.{key}", f"must be one of {', '.join(SCHEMA_TYPES)}")


_NAMES = {"str": "string", "int": "whole number", "float": "number", "bool": "true or false", "list": "list",
          "dict": "mapping"}


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    return {str: "a string", int: "a number", float: "a number", list: "a list", dict: "a mapping"}.get(
        type(value), type(value).__name__)
