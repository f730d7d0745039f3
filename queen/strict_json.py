"""JSON as the queen writes it: strict RFC 8259, never ``NaN`` or ``Infinity``.

Python's json writes non-finite floats as bare ``NaN``/``Infinity``, which
browsers' ``JSON.parse`` and strict clients refuse. Inputs are checked where
they enter (the wire protocol, API bodies, config), so this is the last line:
a non-finite number that still reaches an answer is written as ``null`` and
logged, never as invalid JSON. Every API answer and WebSocket message goes
through `dumps`.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


def dumps(value: Any) -> str:
    """`value` as strict JSON text; non-finite floats become null."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        log.warning("a non-finite number reached an answer; written as null")
        return json.dumps(_finite(value), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_response(data: Any, *, status: int = 200, headers: Any = None) -> web.Response:
    """aiohttp's json_response, written by `dumps`."""
    return web.json_response(data, status=status, headers=headers, dumps=dumps)
