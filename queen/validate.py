"""Reading what API clients send: JSON bodies and query values (one field's checks are apiary.core.fields').

Every fault raises BadRequest naming the field, so the client learns what to
fix; nothing is changed by a request that fails here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from apiary.core.errors import BadRequest
from apiary.core.storable import MAX_DEPTH, unstorable

if TYPE_CHECKING:
    from aiohttp import web


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object holding only what the store can keep, or BadRequest naming the field.

    JSON is UTF-8 (RFC 8259), whatever charset the Content-Type names.
    """
    from aiohttp.web_protocol import RequestPayloadError  # here: commands import parse_params without aiohttp

    try:
        raw = await request.read()
    except RequestPayloadError:
        raise BadRequest("body: cannot be read (a bad Content-Encoding, or cut short)", field="body") from None
    try:
        body = json.loads(raw.decode(), parse_constant=_no_constant, object_pairs_hook=one_of_each)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"body: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                         field="body") from None
    except UnicodeDecodeError:
        raise BadRequest("body: not UTF-8 text", field="body") from None
    except RecursionError:
        raise BadRequest(f"body: nested more than {MAX_DEPTH} levels deep", field="body") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise BadRequest(f"body: not valid JSON ({exc})", field="body") from None
    if not isinstance(body, dict):
        raise BadRequest("body: must be a JSON object", field="body")
    _storable(body)
    return body


def one_of_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; ValueError for a key given twice (which one counts is a guess: the
    checks may have read one and the store keep the other)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key[:64]!r} twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise BadRequest(f"body: not valid JSON ({name} is not a JSON number)", field="body")


def _storable(body: dict[str, Any]) -> None:
    fault = unstorable(body)
    if fault is not None:
        field = fault[0].lstrip(".") or "body"
        raise BadRequest(f"{field}: {fault[1]}", field=field)


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}: must be an integer, got {raw!r}", field=name) from None
    if not low <= value <= high:
        raise BadRequest(f"{name}: must be between {low} and {high}, got {value}", field=name)
    return value


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``--param NAME=VALUE`` flags as a mapping (for `apiary trigger` and `apiary run`)."""
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise BadRequest(f"--param {pair!r}: expected NAME=VALUE", field="--param")
        params[name] = value
    return params
