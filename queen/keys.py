"""The typed keys under which the queen's long-lived state hangs on the aiohttp app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from apiary.core.config import QueenConfig
    from apiary.queen.auth import Gate
    from apiary.queen.connections import Connections
    from apiary.queen.hive import Hive
    from apiary.queen.hub import Hub
    from apiary.queen.plugin_context import QueenContext
    from apiary.queen.plugin_registry import Plugins
    from apiary.queen.store import Store

CONFIG: web.AppKey[QueenConfig] = web.AppKey("config")
STORE: web.AppKey[Store] = web.AppKey("store")
HUB: web.AppKey[Hub] = web.AppKey("hub")
HIVE: web.AppKey[Hive] = web.AppKey("hive")
VERSION: web.AppKey[str] = web.AppKey("version", str)
PLUGINS: web.AppKey[Plugins] = web.AppKey("plugins")
# Filled when the queen starts (queen/plugin_reactions.py); the dict itself never changes.
PLUGIN_CONTEXTS: web.AppKey[dict[str, QueenContext]] = web.AppKey("plugin_contexts")
GATE: web.AppKey[Gate] = web.AppKey("gate")
CONNECTIONS: web.AppKey[Connections] = web.AppKey("connections")
