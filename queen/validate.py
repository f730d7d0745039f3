"""Checking what API clients send: JSON bodies, fields and query values.

Every fault raises BadRequest naming the field, so the client learns what to
fix; nothing is changed by a request that fails here.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from apiary.core.errors import BadRequest
from apiary.core.storable import MAX_DEPTH, unstorable

if TYPE_CHECKING:
    from aiohttp import web

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


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
        body = json.loads(raw.decode(), parse_constant=_no_constant)
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


def _no_constant(name: str) -> Any:
    raise BadRequest(f"body: not valid JSON ({name} is not a JSON number)", field="body")


def _storable(body: dict[str, Any]) -> None:
    fault = unstorable(body)
    if fault is not None:
        field = fault[0].lstrip(".") or "body"
        raise BadRequest(f"{field}: {fault[1]}", field=field)


def get_str(body: dict[str, Any], name: str, default: str | None = None, *, required: bool = False,
            pattern: re.Pattern[str] | None = None, prefix: str = "") -> str | None:
    field = prefix + name
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{field}: required", field=field)
        return default
    if not isinstance(value, str):
        raise BadRequest(f"{field}: must be a string, got {type(value).__name__}", field=field)
    if pattern is not None and not pattern.match(value):
        raise BadRequest(f"{field}: {value!r} is not allowed here", field=field)
    return value


def is_web_link(url: object) -> bool:
    """Whether a page may show `url` as a link: an http or https address with a host, nothing else.

    Browsers run ``javascript:`` links and render ``data:`` ones as pages; they
    also drop leading spaces and control characters before reading the
    scheme, so any such character disqualifies the URL outright.
    """
    if not isinstance(url, str) or len(url) > 2048 or not url.isprintable() or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a port that is not a number raises ValueError)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def get_number(body: dict[str, Any], name: str, *, low: float, integer: bool = False, prefix: str = "") -> Any:
    field = prefix + name
    value = body.get(name)
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < low:
        what = "an integer" if integer else "a number"
        raise BadRequest(f"{field}: must be {what} of at least {low:g}, got {value!r}", field=field)
    return value


def no_unknown(body: dict[str, Any], known: set[str], prefix: str = "") -> None:
    for key in body:
        if key not in known:
            raise BadRequest(f"{prefix}{key}: unknown field (known: {', '.join(sorted(known))})", field=prefix + key)


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
