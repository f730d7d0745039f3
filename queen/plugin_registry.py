"""The queen's plugins (DESIGN.md §6): found by entry point, loaded, and their config schemas applied.

Plugins are entry points in group ``apiary.plugins`` installed next to the
queen (the built-ins in ``plugins/`` are). A plugin that fails to import, or
whose ``config_schema`` is malformed, is logged and left out. `Plugins` (on
the app under ``keys.PLUGINS``) holds the rest and checks repositories'
plugin settings against their schemas, naming the field at fault.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from apiary.core.errors import BadRequest
from apiary.core.models import PluginSetting
from apiary.core.storable import unstorable
from apiary.core.yamlread import YamlFault, read_yaml
from apiary.plugins.api import ConfigProblem, check_config, check_schema

log = logging.getLogger(__name__)

# In a repository's plugins setting, the job parameters a plugin passes on: text as written.
_PARAMETER_TEXT = re.compile(r"\[\d+\]\.config\.(?:.*\.)?parameters\.[^.\[\]]+")

GROUP = "apiary.plugins"


class Plugins:
    """The plugins installed next to the queen, by entry-point name."""

    def __init__(self, loaded: dict[str, Any]) -> None:
        self.loaded = loaded
        self.base_url = ""  # the dashboard's address, known once the queen listens

    @classmethod
    def discover(cls) -> Plugins:
        """Every plugin of group ``apiary.plugins`` that loads and whose schema is well formed."""
        loaded: dict[str, Any] = {}
        for ep in entry_points(group=GROUP):
            try:
                plugin = ep.load()
                if getattr(plugin, "config_schema", None) is not None:
                    check_schema(plugin.config_schema)
            except Exception as exc:  # a broken plugin must not stop the queen
                log.error("plugin %s (%s) not loaded: %s: %s", ep.name, ep.value, type(exc).__name__, exc)
                continue
            loaded[ep.name] = plugin
        log.debug("plugins: %s", ", ".join(sorted(loaded)) or "none")
        return cls(loaded)

    def check_settings(self, value: Any, where: str = "plugins") -> list[PluginSetting]:
        """A repository's ``plugins`` setting, validated: [{"name", "config"}]; the queen must have each."""
        if isinstance(value, str):  # YAML text, as typed on the settings page
            try:
                # A plugin's job parameters (schedule, after) are text as typed: 3.10 stays 3.10.
                value = read_yaml(value, {}, empty="", as_text=_PARAMETER_TEXT.fullmatch) if value.strip() else []
            except YamlFault as fault:
                line = f" (line {fault.line})" if fault.line else ""
                raise BadRequest(f"{where}: {fault.problem}{line}", field=where) from None
            if (fault := unstorable(value)) is not None:  # dates, 2**64, aliases that never end…
                raise BadRequest(f"{where}{fault[0]}: {fault[1]}", field=where + fault[0])
        if value is None:
            return []
        if not isinstance(value, list):
            raise BadRequest(f"{where}: must be a list of plugins (a name, or name and config)", field=where)
        out: list[PluginSetting] = []
        seen = set()
        for i, item in enumerate(value):
            here = f"{where}[{i}]"
            if isinstance(item, str):
                item = {"name": item}
            if not isinstance(item, dict) or set(item) - {"name", "config"}:
                raise BadRequest(f"{here}: must be a name or {{name, config}}", field=here)
            name = item.get("name")
            if not isinstance(name, str) or name not in self.loaded:
                known = ", ".join(sorted(self.loaded)) or "none"
                raise BadRequest(f"{here}.name: no plugin {name!r} is installed on the queen (installed: {known})",
                                 field=f"{here}.name")
            if name in seen:
                raise BadRequest(f"{here}.name: {name} is named twice", field=f"{here}.name")
            seen.add(name)
            out.append({"name": name, "config": self.check_config(name, item.get("config"), f"{here}.config")})
        return out

    def check_config(self, name: str, config: Any, where: str) -> dict[str, Any]:
        """`config` for plugin `name`, validated when the queen has the plugin (else returned as given)."""
        plugin = self.loaded.get(name)
        if plugin is None:
            if config is not None and not isinstance(config, dict):
                raise BadRequest(f"{where}: must be a mapping of settings", field=where)
            return dict(config or {})
        try:
            return check_config(getattr(plugin, "config_schema", None), config, plugin)
        except ConfigProblem as exc:
            field = f"{where}.{exc.field}" if exc.field else where
            raise BadRequest(f"{field}: {exc.problem}", field=field) from None
        except Exception as exc:  # the plugin's own check_config broke
            log.exception("plugin %s: check_config raised", name)
            raise BadRequest(f"{where}: plugin {name} could not check it: {type(exc).__name__}: {exc}",
                             field=where) from None

    def schema(self, name: str) -> dict[str, Any]:
        """Plugin `name`'s ``config_schema`` ({} if it has none or is not installed)."""
        return dict(getattr(self.loaded.get(name), "config_schema", None) or {})

    def queen_secrets(self, repo: Mapping[str, Any]) -> set[str]:
        """The names of `repo`'s secrets that its queen plugins use themselves (schema fields marked
        ``secret``): they stay on the queen, whatever kinds of job they say they are for."""
        names = set()
        for entry in repo.get("plugins") or []:
            config = entry.get("config") or {}
            for field, spec in self.schema(entry.get("name", "")).items():
                if spec.get("secret"):
                    value = config.get(field, spec.get("default"))
                    if isinstance(value, str) and value:
                        names.add(value)
            # Secrets named deeper in a config (notify's targets): the plugin's queen_secrets(config) says which.
            deeper = getattr(self.loaded.get(entry.get("name", "")), "queen_secrets", None)
            if callable(deeper):
                try:
                    names.update(n for n in deeper(config) if isinstance(n, str) and n)
                except Exception:
                    log.exception("plugin %s: queen_secrets raised", entry.get("name"))
        return names
