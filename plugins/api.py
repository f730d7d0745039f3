"""The plugin contract (DESIGN.md §6, docs/plugins.md). Standard library only.

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
    results(job, config)           after the test phase: a dict of figures
                                   (test counts, coverage) sent as ``job:plugin``

Queen side: imported by the queen (install the plugin next to Apiary there),
run in its event loop; `ctx` is the queen's PluginContext (queen/plugins.py).

    config_schema                  validated when a repository's settings are saved
    check_config(config)           further checks; raise ValueError("field: what is wrong")
                                   (or ConfigProblem(field, text) from here)
    async webhook(request, ctx)    POST /hooks/<plugin>/<repo>: an aiohttp request
                                   in, a response out (ctx.ignored, ctx.queued…)
    async background(ctx)          runs as long as the queen (schedules, pollers)
    async job_started(job, ctx)    a job of any repository started on a drone
    async job_done(job, ctx)       a job of any repository ended

A plugin that raises or hangs fails the job (drone side) or is logged (queen
side); neither the drone nor the queen goes down with it.
"""

from __future__ import annotations

from typing import Any

SCHEMA_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict}
SPEC_KEYS = {"type", "required", "default", "choices", "items", "help", "secret"}


class ConfigProblem(ValueError):
    """A plugin config that does not validate; `field` is the config's key (``url``, ``schedules[0].cron``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field, self.problem = field, problem


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
