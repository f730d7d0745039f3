"""``POST /hooks/<plugin>/<repo>``: a request handed to a plugin's ``webhook``, timed out, its faults answered.

Plugin code is not trusted to behave: a webhook that takes longer than
CALL_TIMEOUT answers 504, one that raises or returns no response answers 500
naming the plugin, and the error is logged.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from apiary.queen import keys
from apiary.queen.plugin_context import CALL_TIMEOUT, IN_WEBHOOK
from apiary.queen.strict_json import json_response

log = logging.getLogger(__name__)


async def webhook(request: web.Request) -> web.StreamResponse:
    """Hand the request to the plugin's webhook handler, with the plugin's context."""
    name = request.match_info["plugin"]
    contexts = request.app[keys.PLUGIN_CONTEXTS]
    plugin = request.app[keys.PLUGINS].loaded.get(name)
    handler = getattr(plugin, "webhook", None)
    if plugin is None or handler is None or name not in contexts:
        return json_response({"error": f"no plugin {name!r} with a webhook is installed on this queen",
                              "field": "plugin"}, status=404)
    webhook_call = IN_WEBHOOK.set(True)  # the jobs it queues record a webhook as their trigger
    try:
        response = await asyncio.wait_for(handler(request, contexts[name]), CALL_TIMEOUT)
    except TimeoutError:
        log.error("plugin %s: webhook did not answer within %g s", name, CALL_TIMEOUT)
        return json_response({"error": f"plugin {name}: no answer within {CALL_TIMEOUT:g} s"}, status=504)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.exception("plugin %s: webhook raised", name)
        return json_response({"error": f"plugin {name}: {type(exc).__name__}: {exc}"}, status=500)
    finally:
        IN_WEBHOOK.reset(webhook_call)
    if not isinstance(response, web.StreamResponse):
        log.error("plugin %s: webhook returned %r, not a response", name, type(response).__name__)
        return json_response({"error": f"plugin {name}: gave no response"}, status=500)
    return response
